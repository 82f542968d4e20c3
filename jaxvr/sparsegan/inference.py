"""Encoding and decoding videos with trained sparse-pixel GAN weights.

Nittala, Tumarada, Churiwala, "Relevance of Sparse pixel representations to
Lossy Video Compression". The encoder runs the mask generator ``G_M`` on the
video and binarises its confidences with the same rounding as in training
(``floor(c + 0.5)``); the payload (:mod:`jaxvr.sparsegan.payload`) holds the
binary mask and the exact colours of the kept pixels. The decoder runs the
inpainting generator ``G_I`` on the kept pixels and copies them into its
output, so kept pixels come back exactly.

The networks are fully convolutional, so frames are not cut to the
training frame size: each frame is split into the fewest tiles of at most
``MAX_TILE`` px a side (one tile up to that size), each tile side rounded up
to a multiple of 8 (the hourglass pools three times) by padding at the
bottom/right (edge replication for the encoder, empty mask for the
decoder). Whole-frame tiles see more context and have no seams: the 5 %
inpainter scores 23.48 dB on the validation clips in one 112 px tile
against 23.41 dB in its 64 px training tiles. Frames are cut into windows
of the training clip length ``T`` (the last one padded by repeating its
final frame), and every (tile, window) clip is run with a fresh ConvGRU
state, as in training. Clips go through one jitted function in fixed-size
batches, so a video compiles once per model and tile shape. Content is
kept at its native scale: for a model trained on downscaled frames, feed it
videos downscaled the same way for matching statistics.

Both sides draw their noise (``r`` for ``G_M``, the hole noise ``z`` for
``G_I``) from a fixed seed, so encoding and decoding are deterministic; the
mask noise never has to be sent because the mask itself is.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import pathlib
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxvr import errors
from jaxvr.sparsegan import payload as payload_lib
from jaxvr.sparsegan.binarize import random_mask, straight_through_round
from jaxvr.sparsegan.models import HOLE_NOISE_STD, Models, build_models
from jaxvr.video.transforms import check_frames

DEFAULT_WEIGHTS = 'sparsegan_small'
# Bundled No-Mask-Gen inpainting generators, by random-mask density.
RANDOM_MASK_WEIGHTS = {0.05: 'sparsegan_random5', 0.10: 'sparsegan_random10'}
_CHUNK = 8   # clips per jitted call
MAX_TILE = 256   # largest tile side (px)


def default_weights_dir(density: float | None = None) -> pathlib.Path:
  """Folder of the bundled weights.

  Args:
    density: None for the full model (learned masks,
      ``jaxvr/assets/sparsegan_small``); a random-mask density for the
      No-Mask-Gen generator trained at that density (5 % or 10 %; other
      densities use the closest one).
  """
  from jaxvr.assets import ASSETS
  if density is None:
    return ASSETS / DEFAULT_WEIGHTS
  closest = min(RANDOM_MASK_WEIGHTS, key=lambda d: abs(d - float(density)))
  return ASSETS / RANDOM_MASK_WEIGHTS[closest]


@dataclasses.dataclass(frozen=True, eq=False)
class SparseGan:
  """Trained generators and what they need to run.

  Attributes:
    params: ``{'frame': ...}`` plus ``{'mask': ...}`` for the full model.
    config: the training config (``model``, ``data`` sections are read).
    models: the Flax modules built from it.
  """
  params: Any
  config: ml_collections.ConfigDict
  models: Models

  @property
  def frame_size(self) -> int:
    """The training frame size (inference tiles may be larger)."""
    return int(self.config.data.frame_size)

  @property
  def num_frames(self) -> int:
    """Window length ``T`` (the training clip length)."""
    return int(self.config.data.num_frames)

  @property
  def density(self) -> float:
    """The target (or, for No-Mask-Gen weights, random-mask) density."""
    return float(self.config.model.density)

  @property
  def has_mask_generator(self) -> bool:
    return self.models.mask is not None and 'mask' in self.params

  @property
  def _mask_fn(self):
    return _mask_fn(self.models.mask)

  def _frame_fn(self, flip_ensemble: bool = False):
    return _frame_fn(self.models.frame, flip_ensemble)


# Jitted per module (Flax modules are hashable), not per weights object:
# evaluating new parameters with the same architecture (validation during
# training) reuses the compiled functions.
@functools.lru_cache(maxsize=8)
def _mask_fn(mask_gen):
  def fn(params, frames, key):
    r = jax.random.uniform(key, frames.shape[:-1] + (1,), jnp.float32)
    c = mask_gen.apply({'params': params}, frames, r)
    return straight_through_round(c) > 0.5
  return jax.jit(fn)


# Flips of [B, T, H, W, C] clips averaged by ``flip_ensemble``: identity,
# left-right, up-down.
FLIP_AXES = ((), (3,), (2,))


@functools.lru_cache(maxsize=8)
def _frame_fn(frame_gen, flip_ensemble: bool = False):
  def one(params, known, mask, base, key, axes):
    def flip(a):
      return jnp.flip(a, axes) if axes else a
    z = HOLE_NOISE_STD * jax.random.normal(key, known.shape, jnp.float32)
    _, decoded = frame_gen.apply({'params': params}, flip(known), flip(mask),
                                 z, flip(base) if frame_gen.residual else None)
    return flip(decoded)

  def fn(params, known, mask, base, key):
    if not flip_ensemble:
      return one(params, known, mask, base, key, ())
    outs = [one(params, known, mask, base, jax.random.fold_in(key, i), axes)
            for i, axes in enumerate(FLIP_AXES)]
    return sum(outs) / len(outs)
  return jax.jit(fn)


@functools.lru_cache(maxsize=8)
def _fills_fn(frame_gen):
  return jax.jit(frame_gen.fills)


def load(directory: str | os.PathLike | None = None) -> SparseGan:
  """Loads weights written by ``train.sparse_gan --export`` (or the default).

  Args:
    directory: a weights folder; None loads the bundled default weights.

  Returns:
    The ``SparseGan``.

  Raises:
    CheckpointError: if the folder is missing or holds no parameters.
  """
  from jaxvr import checkpoint
  path = pathlib.Path(directory) if directory else default_weights_dir()
  if not path.is_dir():
    raise errors.CheckpointError(
        f'sparse GAN weights {path}: no such folder; train weights with '
        '`python -m train.sparse_gan ... --export DIR`')
  # Bundled weights may be stored as float16 (half the bytes); compute in f32.
  params, cfg = checkpoint.load_params(path, float_dtype=jnp.float32)
  if 'model' not in cfg or 'data' not in cfg or 'frame' not in params:
    raise errors.CheckpointError(
        f'sparse GAN weights {path}: expected frame-generator parameters and '
        f'a trainer config with model and data sections')
  config = ml_collections.ConfigDict(cfg)
  return SparseGan(params, config, build_models(config))


@functools.lru_cache(maxsize=2)
def _default() -> SparseGan:
  return load(None)


def _weights(weights: SparseGan | str | os.PathLike | None) -> SparseGan:
  if weights is None:
    return _default()
  if isinstance(weights, SparseGan):
    return weights
  return load(weights)


def tile_shape(h: int, w: int, max_tile: int = MAX_TILE) -> tuple[int, int]:
  """Tile ``(height, width)`` for ``h x w`` frames.

  The fewest tiles of at most ``max_tile`` px a side, as even as possible,
  each side a multiple of 8.
  """
  def side(n):
    tiles = -(-n // max_tile)
    per_tile = -(-n // tiles)
    return -(-per_tile // 8) * 8
  return side(h), side(w)


def _to_clips(x: np.ndarray, size: tuple[int, int], length: int,
              mode: str) -> np.ndarray:
  """``[T, H, W, C]`` -> ``[N, length, th, tw, C]`` (tiles x windows)."""
  t, h, w, _ = x.shape
  th, tw = size
  ph, pw = -h % th, -w % tw
  pt = -t % length
  x = np.pad(x, ((0, pt), (0, ph), (0, pw), (0, 0)),
             mode='edge' if mode == 'edge' else 'constant')
  if pt and mode != 'edge':   # windows are padded by repeating a frame
    x[t:] = x[t - 1]
  tt, hh, ww, c = x.shape
  x = x.reshape(tt // length, length, hh // th, th, ww // tw, tw, c)
  return x.transpose(0, 2, 4, 1, 3, 5, 6).reshape(-1, length, th, tw, c)


def _from_clips(clips: np.ndarray, shape: tuple[int, ...],
                size: tuple[int, int], length: int) -> np.ndarray:
  """Inverse of ``_to_clips``, cropped back to ``shape`` ``(T, H, W)``."""
  t, h, w = shape[:3]
  th, tw = size
  nt, nh, nw = -(-t // length), -(-h // th), -(-w // tw)
  c = clips.shape[-1]
  x = clips.reshape(nt, nh, nw, length, th, tw, c)
  x = x.transpose(0, 3, 1, 4, 2, 5, 6).reshape(nt * length, nh * th,
                                               nw * tw, c)
  return x[:t, :h, :w]


def _run_chunks(fn, arrays: list[np.ndarray], key: jax.Array) -> np.ndarray:
  """Applies ``fn(*chunk, key_i)`` to fixed-size chunks of the clip axis."""
  n = arrays[0].shape[0]
  outs = []
  for i, start in enumerate(range(0, n, _CHUNK)):
    parts = [a[start:start + _CHUNK] for a in arrays]
    m = parts[0].shape[0]
    if m < _CHUNK:
      parts = [np.concatenate([p, np.repeat(p[-1:], _CHUNK - m, 0)])
               for p in parts]
    out = fn(*parts, jax.random.fold_in(key, i))
    outs.append(np.asarray(out)[:m])
  return np.concatenate(outs)


def predict_mask(video: np.ndarray, weights: SparseGan | None = None, *,
                 seed: int = 0) -> np.ndarray:
  """The learned binary mask of a video.

  Args:
    video: uint8 ``[T, H, W, 3]``.
    weights: a ``SparseGan`` (or weights folder); None = default weights.
    seed: seed of the mask noise ``r``.

  Returns:
    bool ``[T, H, W]``.

  Raises:
    ConfigError: if the weights have no mask generator (No-Mask-Gen
      weights).
  """
  w = _weights(weights)
  video = check_frames(video, 'video')
  if not w.has_mask_generator:
    raise errors.ConfigError('weights: these are No-Mask-Gen (random-mask) '
                             'weights without a mask generator; use '
                             'random_video_mask')
  tile = tile_shape(*video.shape[1:3])
  clips = _to_clips(video, tile, w.num_frames, 'edge')
  frames = clips.astype(np.float32) / 255.0
  fn = functools.partial(w._mask_fn, w.params['mask'])
  masks = _run_chunks(fn, [frames], jax.random.key(seed))
  return _from_clips(masks, video.shape, tile, w.num_frames)[..., 0]


def random_video_mask(shape: tuple[int, int, int], density: float, *,
                      seed: int = 0) -> np.ndarray:
  """Exact-count uniformly random mask: ``round(density * H * W)`` per frame.

  Args:
    shape: ``(T, H, W)``.
    density: kept fraction in (0, 1].
    seed: sampling seed.

  Returns:
    bool ``[T, H, W]``.
  """
  if len(shape) != 3 or min(shape) < 1:
    raise errors.ShapeError(f'shape: expected (T, H, W) with positive sizes, '
                            f'got {shape}')
  t, h, w = (int(s) for s in shape)
  m = random_mask(jax.random.key(seed), (1, t, h, w, 1), float(density))
  return np.asarray(m)[0, ..., 0] > 0.5


def inpaint(sparse: np.ndarray, mask: np.ndarray,
            weights: SparseGan | None = None, *, seed: int = 0,
            flip_ensemble: bool = False) -> np.ndarray:
  """Restores a video from its kept pixels with the inpainting generator.

  Args:
    sparse: uint8 ``[T, H, W, 3]``, the kept pixels (others are ignored).
    mask: ``[T, H, W]``, True where a pixel was kept.
    weights: a ``SparseGan`` (or weights folder); None = default weights.
    seed: seed of the hole noise ``z``.
    flip_ensemble: average the restorations of the clip, its left-right
      and its up-down mirror image (each mirrored back): three generator
      runs; +0.09 dB with the 5 % inpainter on the validation clips.

  Returns:
    uint8 ``[T, H, W, 3]``; kept pixels equal ``sparse`` exactly.
  """
  w = _weights(weights)
  sparse = check_frames(sparse, 'sparse')
  mask = np.asarray(mask).astype(bool)
  if mask.shape != sparse.shape[:3]:
    raise errors.ShapeError(f'mask: expected shape {sparse.shape[:3]} like '
                            f'the video, got {mask.shape}')
  known = np.where(mask[..., None], sparse, 0).astype(np.float32) / 255.0
  mask_f = mask[..., None].astype(np.float32)
  tile = tile_shape(*sparse.shape[1:3])
  clips = _to_clips(known, tile, w.num_frames, 'zero')
  mclips = _to_clips(mask_f, tile, w.num_frames, 'zero')
  if w.models.frame.residual:
    # The classical fills see the whole video (no tile or window borders);
    # the generator corrects them tile by tile.
    base = np.asarray(_fills_fn(w.models.frame)(known, mask_f))
    bclips = _to_clips(base, tile, w.num_frames, 'edge')
  else:
    bclips = clips   # ignored
  fn = functools.partial(w._frame_fn(flip_ensemble), w.params['frame'])
  out = _run_chunks(fn, [clips, mclips, bclips], jax.random.key(seed))
  out = _from_clips(out, sparse.shape, tile, w.num_frames)
  out = np.clip(np.round(out * 255.0), 0, 255).astype(np.uint8)
  return np.where(mask[..., None], sparse, out)


def encode(video: np.ndarray, weights: SparseGan | None = None, *,
           fps: float = 24.0, seed: int = 0,
           mask: np.ndarray | None = None
           ) -> payload_lib.SparsePixelPayload:
  """Encodes a video as a sparse-pixel payload with the learned mask.

  Args:
    video: uint8 ``[T, H, W, 3]``.
    weights: a ``SparseGan`` (or weights folder); None = default weights.
    fps: frame rate stored in the payload.
    seed: seed of the mask noise.
    mask: use this ``[T, H, W]`` mask instead of the mask generator (random
      masks, ablations).

  Returns:
    The payload; ``payload.size`` is its byte count.
  """
  video = check_frames(video, 'video')
  if mask is None:
    mask = predict_mask(video, weights, seed=seed)
  return payload_lib.encode(video, mask, fps=fps)


def encode_random(video: np.ndarray, density: float, *, fps: float = 24.0,
                  seed: int = 0) -> payload_lib.SparsePixelPayload:
  """Encodes a video with an exact-count random mask of ``density``."""
  video = check_frames(video, 'video')
  return payload_lib.encode(
      video, random_video_mask(video.shape[:3], density, seed=seed), fps=fps)


def decode(payload: payload_lib.SparsePixelPayload | bytes,
           weights: SparseGan | None = None, *, seed: int = 0,
           flip_ensemble: bool = False) -> np.ndarray:
  """Decodes a payload: the inpainting generator restores the frames.

  Args:
    payload: a ``SparsePixelPayload`` or its bytes.
    weights: a ``SparseGan`` (or weights folder); None = default weights.
    seed: seed of the hole noise (the encoder does not need it).
    flip_ensemble: see ``inpaint``.

  Returns:
    uint8 ``[T, H, W, 3]``.
  """
  sparse, mask = payload_lib.decode(payload)
  if sparse.shape[-1] != 3:
    raise errors.ShapeError(f'payload: expected 3 colour channels, got '
                            f'{sparse.shape[-1]}')
  return inpaint(sparse, mask, weights, seed=seed, flip_ensemble=flip_ensemble)
