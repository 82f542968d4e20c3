"""Pixel-wise fidelity metrics: MSE and PSNR, per frame and per clip.

Conventions follow the project's metric reference: inputs are luma (or any
channels) in 0..``data_range`` units, MSE of a frame is the mean of squared
differences over all its pixels (and channels), and PSNR is
``10 log10(data_range**2 / MSE)``. A frame with MSE 0 has PSNR ``+inf``.

Two clip-level PSNR conventions are in common use and they differ (Jensen):

* ``"mean"``: arithmetic mean of the per-frame PSNR (libvmaf's ``psnr_y``);
* ``"from_mse"``: ``10 log10(data_range**2 / mean_t MSE_t)`` (ffmpeg's ``psnr``
  filter summary).

Higher PSNR is better; lower MSE is better.

Precision: float32 by default. Pass ``dtype=jnp.float64`` for double precision;
when called eagerly the computation then runs under ``jax.enable_x64(True)``
without changing the global setting. Under an outer ``jax.jit`` float64 needs
``jax_enable_x64`` switched on globally.
"""

from __future__ import annotations

import contextlib
import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxvr.errors import ConfigError, ShapeError

PSNR_CONVENTIONS = ('mean', 'from_mse')


def x64_scope(*dtypes) -> contextlib.AbstractContextManager:
  """Context in which the requested dtypes are available to JAX.

  Returns ``jax.enable_x64(True)`` when one of ``dtypes`` is 64-bit and x64 is
  not already on, otherwise a no-op context.

  Args:
    *dtypes: dtypes (or None) the computation will use.
  """
  wide = any(d is not None and np.dtype(d).itemsize == 8 for d in dtypes)
  if wide and not jax.config.jax_enable_x64:
    return jax.enable_x64(True)
  return contextlib.nullcontext()


def check_float_dtype(name: str, dtype) -> np.dtype:
  """Returns ``dtype`` as a numpy dtype, or raises ConfigError if not float."""
  try:
    dt = np.dtype(dtype)
  except TypeError as err:
    raise ConfigError(f'{name}: expected a float dtype, got {dtype!r}') from err
  if dt.kind != 'f':
    raise ConfigError(f'{name}: expected a float dtype, got {dt}')
  return dt


def check_pair(ref, dist, ranks=(3,), what='[T, H, W]'):
  """Validates a (reference, distorted) pair of videos.

  Args:
    ref: reference video, array-like.
    dist: distorted video, array-like.
    ranks: accepted ranks.
    what: human-readable expected layout, used in messages.

  Raises:
    ShapeError: if either input is not a real numeric array of an accepted rank,
      or their shapes differ.
  """
  for name, arr in (('ref', ref), ('dist', dist)):
    if not hasattr(arr, 'shape') or not hasattr(arr, 'dtype'):
      raise ShapeError(f'{name}: expected an array {what}, got {type(arr).__name__}')
    if len(arr.shape) not in ranks:
      raise ShapeError(
          f'{name}: expected an array {what} (rank {" or ".join(map(str, ranks))}),'
          f' got shape {tuple(arr.shape)}')
    kind = np.dtype(arr.dtype).kind
    if kind not in 'uif':
      raise ShapeError(f'{name}: expected a real numeric dtype, got {arr.dtype}')
    if any(s == 0 for s in arr.shape):
      raise ShapeError(f'{name}: expected a non-empty array {what}, got shape {tuple(arr.shape)}')
  if tuple(ref.shape) != tuple(dist.shape):
    raise ShapeError(
        f'dist: expected the same shape as ref {tuple(ref.shape)}, got {tuple(dist.shape)}')


def _as_array(x):
  return x if isinstance(x, jax.Array) else np.asarray(x)


@functools.partial(jax.jit, static_argnames=('dtype',))
def _mse_impl(ref, dist, dtype):
  d = ref.astype(dtype) - dist.astype(dtype)
  return jnp.mean(d * d, axis=tuple(range(1, d.ndim)))


def _psnr_from_mse(mse, data_range):
  peak = jnp.asarray(data_range, mse.dtype)
  return 10.0 * jnp.log10(peak * peak / mse)


def mse(ref, dist, *, dtype=jnp.float32) -> jax.Array:
  """Mean squared error per frame. Lower is better.

  Args:
    ref: reference video ``[T, H, W]`` or ``[T, H, W, C]``, any real dtype.
    dist: distorted video, same shape as ``ref``.
    dtype: computation dtype (float32 default, float64 for double precision).

  Returns:
    ``[T]`` MSE of each frame (mean over all its pixels and channels).

  Raises:
    ShapeError: wrong rank, dtype or mismatched shapes.
  """
  ref, dist = _as_array(ref), _as_array(dist)
  check_pair(ref, dist, ranks=(3, 4), what='[T, H, W] or [T, H, W, C]')
  dt = check_float_dtype('dtype', dtype)
  with x64_scope(dt):
    return _mse_impl(ref, dist, dtype=dt)


def psnr(ref, dist, data_range: float = 255.0, *, dtype=jnp.float32) -> jax.Array:
  """Peak signal-to-noise ratio per frame, in dB. Higher is better.

  ``PSNR_t = 10 log10(data_range**2 / MSE_t)``; identical frames give ``+inf``.

  Args:
    ref: reference video ``[T, H, W]`` or ``[T, H, W, C]``.
    dist: distorted video, same shape as ``ref``.
    data_range: peak value (255 for 8-bit data, also for limited-range luma).
    dtype: computation dtype (float32 default, float64 for double precision).

  Returns:
    ``[T]`` PSNR of each frame.
  """
  ref, dist = _as_array(ref), _as_array(dist)
  check_pair(ref, dist, ranks=(3, 4), what='[T, H, W] or [T, H, W, C]')
  dt = check_float_dtype('dtype', dtype)
  with x64_scope(dt):
    return _psnr_from_mse(_mse_impl(ref, dist, dtype=dt), data_range)


def psnr_clip(ref, dist, data_range: float = 255.0, *, convention: str = 'mean',
              dtype=jnp.float32) -> jax.Array:
  """Clip-level PSNR in dB under one of the two common conventions.

  Higher is better.

  Args:
    ref: reference video ``[T, H, W]`` or ``[T, H, W, C]``.
    dist: distorted video, same shape as ``ref``.
    data_range: peak value.
    convention: ``"mean"`` = mean of per-frame PSNR (libvmaf ``psnr_y``);
      ``"from_mse"`` = PSNR of the clip's mean MSE (ffmpeg ``psnr`` summary).
    dtype: computation dtype.

  Returns:
    Scalar PSNR of the clip.

  Raises:
    ConfigError: unknown ``convention``.
  """
  if convention not in PSNR_CONVENTIONS:
    raise ConfigError(
        f'convention: expected one of {PSNR_CONVENTIONS}, got {convention!r}')
  ref, dist = _as_array(ref), _as_array(dist)
  check_pair(ref, dist, ranks=(3, 4), what='[T, H, W] or [T, H, W, C]')
  dt = check_float_dtype('dtype', dtype)
  with x64_scope(dt):
    per_frame = _mse_impl(ref, dist, dtype=dt)
    if convention == 'mean':
      return jnp.mean(_psnr_from_mse(per_frame, data_range))
    return _psnr_from_mse(jnp.mean(per_frame), data_range)


def mse_clip(ref, dist, *, dtype=jnp.float32) -> jax.Array:
  """Clip-level MSE: mean over frames of the per-frame MSE. Lower is better.

  Args:
    ref: reference video ``[T, H, W]`` or ``[T, H, W, C]``.
    dist: distorted video, same shape as ``ref``.
    dtype: computation dtype.

  Returns:
    Scalar MSE of the clip.
  """
  per_frame = mse(ref, dist, dtype=dtype)
  with x64_scope(per_frame.dtype):
    return jnp.mean(per_frame)
