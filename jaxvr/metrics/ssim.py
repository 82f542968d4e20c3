"""Structural similarity (SSIM) with the original Wang et al. settings.

Z. Wang, A. C. Bovik, H. R. Sheikh and E. P. Simoncelli, "Image quality
assessment: from error visibility to structural similarity", IEEE Transactions
on Image Processing 13(4), 600-612, 2004.

Settings (the project's metric reference, section 3): an 11x11 sampled Gaussian
window with sigma 1.5 normalised to sum 1, weighted population moments (no
N/(N-1) factor), ``C1 = (0.01 L)^2``, ``C2 = (0.03 L)^2`` with ``L =
data_range``, and only the positions where the whole window lies inside the
frame (the map is ``[H-10, W-10]``). Frame SSIM is the mean of that map; it
equals scikit-image's ``structural_similarity(..., gaussian_weights=True,
sigma=1.5, use_sample_covariance=False, data_range=255)``. No automatic
downscaling is applied. Higher is better; identical frames give exactly 1.

Moments are computed on frames shifted by a per-frame constant, which leaves
the variances and covariance unchanged in exact arithmetic and avoids most of
the float32 cancellation in ``E[x^2] - mu^2``. They are taken of the sum
``u = x + y`` and the difference ``v = x - y`` rather than of ``x`` and ``y``
(four maps either way): identical frames then give ``v = 0`` exactly and SSIM
exactly 1 whatever the rounding, and swapping the frames gives the same value
bit for bit.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxvr.errors import SizeError
from jaxvr.metrics.pixel import (
    _as_array,
    check_float_dtype,
    check_pair,
    x64_scope,
)

WINDOW = 11
SIGMA = 1.5
K1 = 0.01
K2 = 0.03


def gaussian_window(size: int = WINDOW, sigma: float = SIGMA) -> np.ndarray:
  """1-D sampled Gaussian with offsets ``-(size//2)..size//2``, sum 1 (float64)."""
  r = np.arange(size, dtype=np.float64) - (size // 2)
  g = np.exp(-(r * r) / (2.0 * sigma * sigma))
  return g / g.sum()


def _valid_filter(x, taps, axis):
  """Valid-mode correlation of ``x`` with symmetric 1-D ``taps`` along ``axis``.

  Mirror-image taps share one multiplication (the window is symmetric).
  """
  k = len(taps)
  n = x.shape[axis] - k + 1

  def view(i):
    return jax.lax.slice_in_dim(x, i, i + n, axis=axis)

  out = taps[k // 2] * view(k // 2)
  for i in range(k // 2):
    out = out + taps[i] * (view(i) + view(k - 1 - i))
  return out


def _taps(dtype):
  return [jnp.asarray(w, dtype) for w in gaussian_window()]


@functools.partial(jax.jit, static_argnames=('size', 'dtype'))
def _sum_difference(ref, dist, start, size, dtype):
  """Shifted sum ``u`` and difference ``v`` of frames ``start..start+size``.

  Returns ``u = (x - s) + (y - s)`` and ``v = (x - s) - (y - s)``, each
  ``[size, H, W]``, and the shift ``s`` ``[size, 1, 1]``: half the frame mean
  of ``x + y`` (the same value bit for bit when the frames are swapped). The
  mean is a product with a vector of ones: XLA's CPU reduction would first
  write both cast clips to memory, a dot reads ``x + y`` once.
  """
  x = jax.lax.dynamic_slice_in_dim(ref, start, size).astype(dtype)
  y = jax.lax.dynamic_slice_in_dim(dist, start, size).astype(dtype)
  _, h, w = x.shape
  row_sums = jnp.einsum('thw,w->th', x + y, jnp.ones((w,), dtype),
                        precision=jax.lax.Precision.HIGHEST)
  shift = (0.5 / (h * w)) * jnp.sum(row_sums, axis=1)[:, None, None]
  xc = x - shift
  yc = y - shift
  return xc + yc, xc - yc, shift


@jax.jit
def _vertical(u, v):
  """Local means of ``u``, ``v``, ``u^2``, ``v^2`` along H: four ``[T, H-10, W]``.

  ``u`` and ``v`` are written once (by the previous stage) and the squares
  are formed in every tap: fewer operations per tap than casting and
  shifting the input frames there, less memory than writing the squares too.
  """
  taps = _taps(u.dtype)
  return tuple(_valid_filter(m, taps, axis=1) for m in (u, v, u * u, v * v))


@jax.jit
def _horizontal_map(parts, shift, data_range):
  """Filters the four maps along W and forms the SSIM map ``[T, H-10, W-10]``.

  In terms of ``u`` and ``v``: ``2 mu_x mu_y = (U^2 - V^2) / 2`` and
  ``mu_x^2 + mu_y^2 = (U^2 + V^2) / 2`` with ``U = mu_u``, ``V = mu_v``;
  ``2 sigma_xy = (var_u - var_v) / 2`` and ``sigma_x^2 + sigma_y^2 =
  (var_u + var_v) / 2``. Identical frames give ``v = 0`` exactly, so the
  numerator and denominator are the same expression and SSIM is exactly 1;
  swapping the frames only flips the sign of ``v``, so SSIM is exactly
  symmetric.
  """
  dtype = parts[0].dtype
  taps = _taps(dtype)
  mu, mv, eu, ev = (_valid_filter(p, taps, axis=2) for p in parts)
  big_u = mu + 2.0 * shift
  var_u = eu - mu * mu
  var_v = ev - mv * mv
  L = jnp.asarray(data_range, dtype)
  c1 = 2.0 * (K1 * L) ** 2
  c2 = 2.0 * (K2 * L) ** 2
  num = (big_u * big_u - mv * mv + c1) * (var_u - var_v + c2)
  den = (big_u * big_u + mv * mv + c1) * (var_u + var_v + c2)
  return num / den


@jax.jit
def _frame_mean(smap):
  return jnp.mean(smap, axis=(1, 2))


# Bytes of float intermediates (u, v and the four filtered maps) one CPU step
# may hold. On CPU a whole clip's intermediates go through main memory and
# are allocated afresh in new pages on every call; steps of a few frames stay
# in cache and in reused memory (measured about 1.5x faster at 288x352).
# Accelerators get the whole clip in one step.
CPU_STEP_BYTES = 12 << 20


def _platform(x) -> str:
  """Platform the computation on ``x`` runs on (its device, else the default)."""
  if isinstance(x, jax.Array):
    return next(iter(x.devices())).platform
  return jax.devices()[0].platform


def _steps(ref, dtype):
  """``[(start, stop)]`` frame ranges of near-equal size covering the clip."""
  t, h, w = ref.shape
  if isinstance(ref, jax.core.Tracer) or _platform(ref) != 'cpu':
    return [(0, t)]
  per_frame = (2 * h + 4 * (h - WINDOW + 1)) * w * np.dtype(dtype).itemsize
  n = -(-t // max(1, CPU_STEP_BYTES // per_frame))
  edges = [t * i // n for i in range(n + 1)]
  return list(zip(edges[:-1], edges[1:], strict=True))


@jax.jit
def _concatenated(parts):
  return jnp.concatenate(parts)


def _joined(parts):
  return parts[0] if len(parts) == 1 else _concatenated(tuple(parts))


def _ssim_impl(ref, dist, data_range, dtype, return_map):
  # Separate compiled stages: on CPU, XLA runs these several times faster as
  # separate programs than fused into one (in one program XLA fuses the
  # vertical pass into every tap of the horizontal one, and the reduction
  # fused with the filters runs slowly). Under an outer jit they become one
  # program again.
  steps = _steps(ref, dtype)
  if len(steps) > 1:  # one transfer, not one per step
    ref, dist = jax.device_put(ref), jax.device_put(dist)
  per_frame, maps = [], []
  for start, stop in steps:
    u, v, shift = _sum_difference(ref, dist, start, size=stop - start, dtype=dtype)
    smap = _horizontal_map(_vertical(u, v), shift, data_range)
    per_frame.append(_frame_mean(smap))
    if return_map:
      maps.append(smap)
  return (_joined(per_frame), _joined(maps)) if return_map else _joined(per_frame)


def ssim(ref, dist, data_range: float = 255.0, *, return_map: bool = False,
         dtype=jnp.float32):
  """Per-frame SSIM (Wang et al. 2004 settings). Higher is better (max 1).

  Args:
    ref: reference luma ``[T, H, W]`` in 0..``data_range`` (any real dtype).
    dist: distorted luma, same shape.
    data_range: nominal value range (255 for 8-bit data, not max - min).
    return_map: also return the SSIM maps.
    dtype: computation dtype (float32 default; float64 runs eagerly under
      ``jax.enable_x64(True)``, or needs global x64 under an outer jit).

  Returns:
    ``[T]`` SSIM of each frame, or ``([T], [T, H-10, W-10])`` with the maps of
    the valid region when ``return_map`` is true.

  Raises:
    ShapeError: wrong rank, dtype or mismatched shapes.
    SizeError: frames smaller than the 11x11 window.
  """
  ref, dist = _as_array(ref), _as_array(dist)
  check_pair(ref, dist, ranks=(3,), what='[T, H, W]')
  _, h, w = ref.shape
  if h < WINDOW or w < WINDOW:
    raise SizeError(
        f'ref: SSIM needs frames of at least {WINDOW}x{WINDOW} pixels, got {h}x{w}')
  dt = check_float_dtype('dtype', dtype)
  with x64_scope(dt):
    return _ssim_impl(ref, dist, data_range, dtype=dt, return_map=bool(return_map))


def ssim_clip(ref, dist, data_range: float = 255.0, *, dtype=jnp.float32):
  """Clip SSIM: arithmetic mean of the per-frame SSIM. Higher is better.

  Args:
    ref: reference luma ``[T, H, W]``.
    dist: distorted luma, same shape.
    data_range: nominal value range.
    dtype: computation dtype.

  Returns:
    Scalar mean SSIM over frames.
  """
  per_frame = ssim(ref, dist, data_range, dtype=dtype)
  with x64_scope(per_frame.dtype):
    return jnp.mean(per_frame)
