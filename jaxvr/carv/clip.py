"""Where CARV's model clip comes from in a full-resolution span, and back.

The ST-MAE sees ``num_frames`` evenly spaced frames, short side resized to
its ``img_size`` and centre-cropped to a square (:func:`model_clip`); its
chunk map is carried back onto a grid tiling the whole frame
(:func:`full_frame_map`). The conventions are those of
:mod:`jaxvr.carv.pipeline`, steps 1 and 3.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxvr.errors import ShapeError, SizeError
from jaxvr.stmae.model import STMAEConfig
from jaxvr.video import transforms
from jaxvr.video.transforms import check_frames
from jaxvr.video.tubes import chunk_bounds


@dataclasses.dataclass(frozen=True)
class ClipGeometry:
  """Where the model clip sits in the span of video it was cut from.

  Attributes:
    num_frames: ``T`` frames of the span.
    frame_ids: the ``config.num_frames`` span frames the clip holds.
    video_hw: ``(H, W)`` of the full-resolution frames.
    resized_hw: frame size after the short-side resize.
    crop_offset: top-left corner of the square crop in the resized frame.
    size: side of the crop (the model's ``img_size``).
    patch: the model's spatial patch size.
  """
  num_frames: int
  frame_ids: tuple[int, ...]
  video_hw: tuple[int, int]
  resized_hw: tuple[int, int]
  crop_offset: tuple[int, int]
  size: int
  patch: int

  def full_grid(self) -> tuple[int, int]:
    """``(h'', w'')`` chunks tiling the whole frame (see module docstring)."""
    return tuple(len(self.axis_index(a)) for a in (0, 1))

  def axis_index(self, axis: int) -> np.ndarray:
    """Crop chunk under the centre of every full-frame chunk along ``axis``."""
    full, resized = self.video_hw[axis], self.resized_hw[axis]
    n_model = self.size // self.patch
    scale = resized / full
    n_full = max(n_model, int(round(full * scale / self.patch)))
    n_full = min(n_full, full)
    bounds = chunk_bounds(n_full, full)
    centre = (bounds[:-1] + bounds[1:]) / 2.0
    pos = centre * scale - self.crop_offset[axis]
    return np.clip(np.floor(pos / self.patch), 0, n_model - 1).astype(np.int32)


def clip_frame_ids(num_frames: int, clip_frames: int) -> tuple[int, ...]:
  """``clip_frames`` evenly spaced frame ids of a span of ``num_frames``.

  ``floor(i * T / n)``: the identity when ``T == n``.

  Raises:
    SizeError: the span is shorter than the clip.
  """
  if num_frames < clip_frames:
    raise SizeError(f'video: expected at least {clip_frames} frames (the '
                    f"model's num_frames), got {num_frames}")
  return tuple(int(i * num_frames // clip_frames) for i in range(clip_frames))


def clip_geometry(video_shape: Sequence[int],
                  config: STMAEConfig) -> ClipGeometry:
  """The :class:`ClipGeometry` of a ``[T, H, W, ...]`` span for ``config``."""
  t, h, w = (int(s) for s in video_shape[:3])
  rh, rw = transforms.short_side_size(h, w, config.img_size)
  rh, rw = max(rh, config.img_size), max(rw, config.img_size)
  oy, ox = transforms.center_crop_offsets(rh, rw, (config.img_size,) * 2)
  return ClipGeometry(t, clip_frame_ids(t, config.num_frames), (h, w),
                      (rh, rw), (oy, ox), config.img_size, config.patch_size)


@functools.partial(jax.jit, static_argnames=('resized_hw', 'crop'))
def _prepare(frames, *, resized_hw, crop):
  x = transforms.resize(frames, resized_hw)
  x = transforms.center_crop(x, crop)
  return transforms.normalize(jnp.clip(x, 0.0, 255.0))


def model_clip(video: np.ndarray, config: STMAEConfig,
               frame_ids: Sequence[int] | None = None
               ) -> tuple[jax.Array, ClipGeometry]:
  """The normalised model-input clip of a full-resolution span.

  Args:
    video: uint8 ``[T, H, W, 3]`` span to reduce (or only the clip frames,
      with ``frame_ids`` naming where they come from).
    config: the ST-MAE config (``num_frames``, ``img_size``).
    frame_ids: which frames of ``video`` form the clip; default
      :func:`clip_frame_ids`.

  Returns:
    ``(clip float32 [num_frames, img_size, img_size, 3], geometry)``.
  """
  video = check_frames(video)
  geom = clip_geometry(video.shape, config)
  ids = geom.frame_ids if frame_ids is None else tuple(frame_ids)
  frames = video[np.asarray(ids)] if len(video) != len(ids) else video
  if len(frames) != config.num_frames:
    raise ShapeError(f'frame_ids: expected {config.num_frames} clip frames, '
                     f'got {len(frames)}')
  clip = _prepare(jnp.asarray(frames), resized_hw=geom.resized_hw,
                  crop=(config.img_size, config.img_size))
  return clip, geom


def full_frame_map(significance: jax.Array,
                   geometry: ClipGeometry) -> jax.Array:
  """Carries a crop map ``[t', h', w']`` onto the full frame ``[t', h'', w'']``."""
  if np.ndim(significance) != 3:
    raise ShapeError(f"significance: expected [t', h', w'], got shape "
                     f'{np.shape(significance)}')
  s = jnp.asarray(significance)
  return s[:, geometry.axis_index(0)][:, :, geometry.axis_index(1)]
