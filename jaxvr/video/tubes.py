"""Tubelets and chunk grids: videos <-> token rows, coarse grids <-> pixels.

Two conversions used by the ST-MAE and by CARV:

* :func:`patchify` / :func:`unpatchify` cut a channels-last video
  ``[N, T, H, W, C]`` into non-overlapping ``u x p x p`` tubelets and back.
  The layout is the official ST-MAE one (Feichtenhofer et al., 2022,
  "Masked Autoencoders As Spatiotemporal Learners"): token index
  ``t * (H' * W') + h * W' + w`` (time slowest, then row, then column) and,
  inside a token, the values ordered ``(sub-frame, row, column, channel)``
  with the channel fastest. That is the order of the model's prediction and
  loss target; it is not the order of the patch-embedding kernel.

* :func:`chunk_bounds`, :func:`chunk_index` and :func:`expand_chunk_grid` map a
  coarse grid of per-chunk values ``[t', h', w']`` onto a video ``[T, H, W]``
  of any size. Along an axis of ``size`` samples split into ``n`` chunks,
  chunk ``i`` covers the half-open range ``[b_i, b_{i+1})`` with
  ``b_i = floor(i * size / n + 1/2)`` (``i * size / n`` rounded to the
  nearest integer, halves rounding up). So ``b_0 = 0``, ``b_n = size``, the
  chunks tile the axis without gaps or overlap, their lengths differ by at
  most one when ``n`` does not divide ``size``, and they are exactly
  ``size / n`` long when it does (then chunk ``i`` is the ``i``-th tubelet).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxvr.errors import ShapeError, SizeError


def _tube_shape(patch: Sequence[int]) -> tuple[int, int, int]:
  if len(patch) != 3 or any(int(s) < 1 for s in patch):
    raise SizeError(
        f'patch: expected three positive sizes (u, p_h, p_w), got {patch}')
  return tuple(int(s) for s in patch)


def patchify(video: jax.Array, patch: Sequence[int]) -> jax.Array:
  """Cuts a video into tubelet rows in the official ST-MAE order.

  Args:
    video: ``[N, T, H, W, C]`` array.
    patch: ``(u, p_h, p_w)`` tubelet size; must divide ``(T, H, W)``.

  Returns:
    ``[N, L, u * p_h * p_w * C]`` with ``L = (T/u) (H/p_h) (W/p_w)``; token
    index ``t * (H'W') + h * W' + w``, value index
    ``((sub_frame * p_h + row) * p_w + col) * C + channel``.

  Raises:
    ShapeError: ``video`` is not rank 5.
    SizeError: the tubelet does not divide the video.
  """
  u, ph, pw = _tube_shape(patch)
  if video.ndim != 5:
    raise ShapeError(
        f'video: expected [N, T, H, W, C], got shape {tuple(video.shape)}')
  n, t, h, w, c = video.shape
  if t % u or h % ph or w % pw:
    raise SizeError(
        f'video: shape {tuple(video.shape)} does not divide into {u}x{ph}x{pw} '
        'tubelets (T, H, W must be multiples of the tubelet size)')
  x = video.reshape(n, t // u, u, h // ph, ph, w // pw, pw, c)
  x = x.transpose(0, 1, 3, 5, 2, 4, 6, 7)
  return x.reshape(n, (t // u) * (h // ph) * (w // pw), u * ph * pw * c)


def unpatchify(tokens: jax.Array, grid: Sequence[int], patch: Sequence[int],
               channels: int = 3) -> jax.Array:
  """Inverse of :func:`patchify`.

  Args:
    tokens: ``[N, L, u * p_h * p_w * channels]`` in :func:`patchify` order.
    grid: ``(T', H', W')`` token grid with ``T' H' W' = L``.
    patch: ``(u, p_h, p_w)`` tubelet size.
    channels: number of channels ``C``.

  Returns:
    ``[N, T' u, H' p_h, W' p_w, C]`` video.

  Raises:
    ShapeError: ``tokens`` does not have the shape the grid and patch imply.
  """
  u, ph, pw = _tube_shape(patch)
  gt, gh, gw = (int(g) for g in grid)
  expected = (gt * gh * gw, u * ph * pw * channels)
  if tokens.ndim != 3 or tuple(tokens.shape[1:]) != expected:
    raise ShapeError(
        f'tokens: expected [N, {expected[0]}, {expected[1]}] for grid {grid}, '
        f'patch {patch} and {channels} channels, got {tuple(tokens.shape)}')
  n = tokens.shape[0]
  x = tokens.reshape(n, gt, gh, gw, u, ph, pw, channels)
  x = x.transpose(0, 1, 4, 2, 5, 3, 6, 7)
  return x.reshape(n, gt * u, gh * ph, gw * pw, channels)


def chunk_bounds(n_chunks: int, size: int) -> np.ndarray:
  """Integer chunk boundaries along one axis.

  Args:
    n_chunks: number of chunks ``n >= 1``.
    size: number of samples along the axis, ``size >= n``.

  Returns:
    int64 ``[n + 1]`` array ``b`` with ``b_i = floor(i * size / n + 1/2)``;
    chunk ``i`` covers ``[b_i, b_{i+1})``.

  Raises:
    SizeError: ``n_chunks < 1`` or ``size < n_chunks`` (a chunk would be empty).
  """
  n, size = int(n_chunks), int(size)
  if n < 1:
    raise SizeError(f'n_chunks: expected at least 1, got {n_chunks}')
  if size < n:
    raise SizeError(
        f'size: expected at least n_chunks={n} samples so that no chunk is '
        f'empty, got {size}')
  i = np.arange(n + 1, dtype=np.int64)
  return (2 * i * size + n) // (2 * n)


def chunk_index(n_chunks: int, size: int) -> np.ndarray:
  """Chunk number of every sample along one axis (see :func:`chunk_bounds`).

  Args:
    n_chunks: number of chunks.
    size: number of samples.

  Returns:
    int32 ``[size]`` array with values in ``[0, n_chunks)``, non-decreasing.
  """
  bounds = chunk_bounds(n_chunks, size)
  idx = np.searchsorted(bounds, np.arange(size), side='right') - 1
  return idx.astype(np.int32)


def expand_chunk_grid(grid: jax.Array, shape: Sequence[int]) -> jax.Array:
  """Spreads per-chunk values over a full-resolution video.

  Args:
    grid: ``[t', h', w', ...]`` per-chunk values (trailing axes carried along).
    shape: ``(T, H, W)`` of the target video, each at least the matching grid
      size; need not be a multiple of it.

  Returns:
    ``[T, H, W, ...]`` where every sample holds the value of the chunk that
    contains it (:func:`chunk_bounds` convention).

  Raises:
    ShapeError: ``grid`` has fewer than 3 axes or ``shape`` is not 3 sizes.
    SizeError: a target size is smaller than the grid size.
  """
  if grid.ndim < 3:
    raise ShapeError(
        f"grid: expected [t', h', w', ...], got shape {tuple(grid.shape)}")
  if len(shape) != 3:
    raise ShapeError(f'shape: expected (T, H, W), got {shape}')
  out = jnp.asarray(grid)
  for axis, size in enumerate(shape):
    idx = chunk_index(grid.shape[axis], size)
    out = jnp.take(out, jnp.asarray(idx), axis=axis)
  return out


def chunk_means(video: jax.Array, grid: Sequence[int]) -> jax.Array:
  """Averages a video ``[T, H, W, ...]`` over each chunk of a coarse grid.

  The reverse direction of :func:`expand_chunk_grid` (same chunk convention);
  trailing axes are kept.

  Args:
    video: ``[T, H, W, ...]`` values.
    grid: ``(t', h', w')`` number of chunks along each axis.

  Returns:
    ``[t', h', w', ...]`` float32 chunk means.
  """
  if video.ndim < 3 or len(grid) != 3:
    raise ShapeError(
        f'video: expected [T, H, W, ...] and a 3-axis grid, got shape '
        f'{tuple(video.shape)} and grid {grid}')
  out = jnp.asarray(video, jnp.float32)
  for axis, n in enumerate(grid):
    idx = jnp.asarray(chunk_index(n, video.shape[axis]))
    moved = jnp.moveaxis(out, axis, 0)
    sums = jax.ops.segment_sum(moved, idx, num_segments=int(n))
    counts = jnp.bincount(idx, length=int(n)).astype(jnp.float32)
    counts = counts.reshape((-1,) + (1,) * (moved.ndim - 1))
    out = jnp.moveaxis(sums / counts, 0, axis)
  return out
