"""Array transforms on videos: resize, crops, normalization, luma.

The transforms take channels-last videos ``[..., T, H, W, C]`` (or frames
``[..., H, W, C]`` where noted), are jittable, and work on any float dtype.
uint8 input is converted to float32 first. The host-side helpers at the end
(NumPy, not jittable) check uint8 RGB frame arrays, pad them to even sizes
and resize them with Pillow.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxvr import errors

# ST-MAE / Kinetics normalization (pixel values in [0, 1] first).
MEAN = 0.45
STD = 0.225

# BT.601 limited-range ("TV") luma from full-range 8-bit RGB:
# Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255, R, G, B in 0..255.
_LUMA_WEIGHTS = np.array([65.481, 128.553, 24.966], np.float64) / 255.0
_LUMA_OFFSET = 16.0


def _as_float(x, dtype=jnp.float32):
  x = jnp.asarray(x)
  return x.astype(dtype) if not jnp.issubdtype(x.dtype, jnp.floating) else x


def resize(video, size: tuple[int, int], *, method: str = 'lanczos3',
           antialias: bool = True):
  """Resizes the two spatial axes of ``[..., H, W, C]`` to ``size = (h, w)``.

  Uses ``jax.image.resize`` (antialiased when downscaling). The result is
  float (uint8 input becomes float32 in 0..255, not rounded or clipped).
  """
  x = _as_float(video)
  if x.ndim < 3:
    raise errors.ShapeError(f'video: expected [..., H, W, C], got shape {x.shape}')
  h, w = int(size[0]), int(size[1])
  if h < 1 or w < 1:
    raise errors.SizeError(f'size: expected positive (h, w), got {size}')
  shape = (*x.shape[:-3], h, w, x.shape[-1])
  return jax.image.resize(x, shape, method=method, antialias=antialias)


def short_side_size(height: int, width: int, short: int) -> tuple[int, int]:
  """The (h, w) with short side ``short`` and the aspect ratio kept (rounded)."""
  scale = short / min(height, width)
  return int(round(height * scale)), int(round(width * scale))


def resize_short_side(video, short: int, **kwargs):
  """Resizes ``[..., H, W, C]`` so that min(H, W) == ``short``."""
  h, w = video.shape[-3], video.shape[-2]
  return resize(video, short_side_size(h, w, short), **kwargs)


def center_crop_offsets(height: int, width: int, size: tuple[int, int]):
  """Top-left corner of the centred ``size`` crop: ((H-h)//2, (W-w)//2)."""
  h, w = size
  if h > height or w > width:
    raise errors.SizeError(
        f'crop {h}x{w} does not fit in a {height}x{width} frame')
  return (height - h) // 2, (width - w) // 2


def center_crop(video, size: tuple[int, int]):
  """Crops ``[..., H, W, C]`` to the centred ``size = (h, w)``."""
  y, x = center_crop_offsets(video.shape[-3], video.shape[-2], size)
  return video[..., y:y + size[0], x:x + size[1], :]


def random_crop(key, video, size: tuple[int, int]):
  """Crops ``[..., H, W, C]`` to ``size`` at a uniformly random position."""
  height, width = video.shape[-3], video.shape[-2]
  h, w = size
  if h > height or w > width:
    raise errors.SizeError(f'crop {h}x{w} does not fit in a {height}x{width} frame')
  ky, kx = jax.random.split(key)
  y = jax.random.randint(ky, (), 0, height - h + 1)
  x = jax.random.randint(kx, (), 0, width - w + 1)
  starts = (0,) * (video.ndim - 3) + (y, x, 0)
  sizes = (*video.shape[:-3], h, w, video.shape[-1])
  return jax.lax.dynamic_slice(jnp.asarray(video), starts, sizes)


def normalize(video, mean: float = MEAN, std: float = STD, dtype=jnp.float32):
  """uint8 (0..255) or float video -> ``(x / 255 - mean) / std``."""
  return ((jnp.asarray(video, dtype) / 255.0) - mean) / std


def denormalize(x, mean: float = MEAN, std: float = STD):
  """Inverse of ``normalize``: float in 0..255 (not rounded or clipped)."""
  return (jnp.asarray(x) * std + mean) * 255.0


def to_uint8(x):
  """Rounds and clips a float video in 0..255 to uint8."""
  return jnp.clip(jnp.round(jnp.asarray(x)), 0, 255).astype(jnp.uint8)


def luma(rgb, dtype=jnp.float32):
  """BT.601 limited-range luma Y in 0..255 from 8-bit full-range RGB.

  ``Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255``: the Y plane that
  ffmpeg's default RGB -> YUV conversion (swscale, BT.601, limited range)
  produces, before its rounding to integers. The metric fixtures use the Y
  plane of decoded limited-range H.264 exactly as coded, which is this
  convention; feed decoded Y planes straight in when you have them. The
  product runs at ``precision=HIGHEST`` on every backend, so Y is the same
  on CPU, GPU and TPU (no TF32 or bf16 matmul inputs).

  Args:
    rgb: ``[..., 3]`` RGB in 0..255 (uint8 or float).

  Returns:
    ``[...]`` float luma, nominal range 16..235.
  """
  rgb = jnp.asarray(rgb)
  if rgb.shape[-1] != 3:
    raise errors.ShapeError(f'rgb: expected last axis 3 (RGB), got shape {rgb.shape}')
  w = jnp.asarray(_LUMA_WEIGHTS, dtype)
  # HIGHEST: GPU/TPU matmuls otherwise default to TF32/bf16 inputs, which
  # would move Y (and with it PSNR-Y, SSIM-Y and ST-RRED) by up to ~0.5.
  y = jnp.matmul(rgb.astype(dtype), w, precision=jax.lax.Precision.HIGHEST)
  return y + _LUMA_OFFSET


def check_frames(frames, name: str = 'frames') -> np.ndarray:
  """``frames`` as a contiguous uint8 ``[T, H, W, 3]`` RGB array, no empty axis.

  Args:
    frames: the array to check.
    name: what the caller calls it, for the error message.

  Raises:
    ShapeError: another shape or dtype, or an empty axis.
  """
  frames = np.asarray(frames)
  if frames.ndim != 4 or frames.shape[-1] != 3:
    raise errors.ShapeError(
        f'{name}: expected uint8 [T,H,W,3] RGB, got shape {frames.shape}')
  if frames.dtype != np.uint8:
    raise errors.ShapeError(
        f'{name}: expected dtype uint8 (0..255 RGB), got {frames.dtype}')
  if min(frames.shape[:3]) == 0:
    raise errors.ShapeError(
        f'{name}: expected at least one frame of at least one pixel, got '
        f'shape {frames.shape}')
  return np.ascontiguousarray(frames)


def frame_block(frames, size: tuple[int, int] | None) -> np.ndarray:
  """One ``[H, W, 3]`` frame or ``[b, H, W, 3]`` block as a checked block.

  Args:
    frames: uint8 RGB frame or block (an item of a stream of frames).
    size: ``(H, W)`` every frame of the stream must have, or None.

  Returns:
    uint8 ``[b, H, W, 3]`` (see :func:`check_frames`).
  """
  frames = np.asarray(frames)
  if frames.ndim == 3:
    frames = frames[None]
  frames = check_frames(frames)
  if size is not None and frames.shape[1:3] != size:
    raise errors.ShapeError(
        f'frames: every frame must have the size of the first, {size[1]}x'
        f'{size[0]}; got {frames.shape[2]}x{frames.shape[1]}')
  return frames


def pad_even(frames: np.ndarray, time: bool = False) -> np.ndarray:
  """Edge-pads height and width (and ``T`` with ``time``) up to even sizes.

  4:2:0 encoders need even frame sizes, and 2x samplers even extents; the
  receiver crops the padding off again.

  Args:
    frames: ``[T, H, W, C]``.
    time: also pad the frame count.

  Returns:
    ``[T', H', W', C]`` with even ``H'``, ``W'`` (and ``T'``); ``frames``
    itself when nothing needs padding.
  """
  t, h, w = frames.shape[:3]
  pad = ((0, t % 2 if time else 0), (0, h % 2), (0, w % 2), (0, 0))
  if not any(p for _, p in pad):
    return frames
  return np.pad(frames, pad, mode='edge')


def resize_short_side_pil(frames, short: int) -> np.ndarray:
  """Host-side short-side resize of uint8 ``[T, H, W, 3]`` with Pillow LANCZOS.

  The exact procedure of the codec anchors (``PIL.Image.resize`` to
  ``(round(w*s), round(h*s))`` with ``s = short / min(h, w)``), for
  reproducing numbers computed that way. Returns uint8. Inside jitted code
  use ``resize_short_side`` (``jax.image.resize``) instead.
  """
  from PIL import Image

  frames = np.asarray(frames)
  if frames.ndim != 4 or frames.dtype != np.uint8:
    raise errors.ShapeError(
        f'frames: expected uint8 [T,H,W,C], got {frames.dtype} {frames.shape}')
  h, w = short_side_size(frames.shape[1], frames.shape[2], short)
  return np.stack([
      np.asarray(Image.fromarray(f).resize((w, h), Image.Resampling.LANCZOS))
      for f in frames])
