"""ST-RRED and ST-RRED-SSN: reduced-reference spatio-temporal entropic differences.

R. Soundararajan and A. C. Bovik, "Video quality assessment by reduced
reference spatio-temporal entropic differencing", IEEE Transactions on Circuits
and Systems for Video Technology 23(4), 684-694, 2013.

The operational definition is the 2011 LIVE release, step by step as in the
project's metric reference (section 4):

1. Frames are taken in non-overlapping pairs (0,1), (2,3), ...; with odd T the
   last frame is ignored. ``a`` is the first frame of a pair, ``b`` the second.
2. One subband per frame: the steerable pyramid (sp5 filters, ``reflect1``
   edges, height 4) band of orientation 4 at the coarsest level, computed as
   ``lo0filt``, then three times ``lofilt`` + keep every other row/column,
   then band filter 4 -- all same-size correlations with mirror padding that
   does not repeat the edge sample. Size ``ceil(H/8) x ceil(W/8)``.
3. GSM fit on ``y(a)`` (spatial) and on ``y(a) - y(b)`` (temporal): 9x9
   covariance of all overlapping 3x3 neighbourhoods (population normalisation),
   made positive semi-definite (negative eigenvalues set to 0, the rest
   rescaled to keep the trace), then per non-overlapping 3x3 block
   ``s2 = x^T C^-1 x / 9`` and the entropy
   ``h = sum_k [log2(s2 lambda_k + 0.1) + ln(2 pi e)]`` over positive eigenvalues.
4. Maps ``S = h log2(1 + s2)``, ``Tm = h_d log2(1 + s2) log2(1 + s2_d)``; per
   pair the mean absolute map difference (spatial, temporal) and the absolute
   difference of map means (the "single number" variants).
5. ST-RRED = mean spatial * mean temporal; ST-RRED-SSN likewise with the
   single-number columns.

**Both indices are distortions: lower is better.** Identical videos give 0,
the index is symmetric in (ref, dist) and a static video (every pair has
a == b) gives 0 whatever its spatial distortion. Inputs must be 8-bit-scale
luma (0..255): the neural-noise variance 0.1 is in absolute units.

Defined behaviour for degenerate content (where the references disagree or
are ill-posed): eigenvalues of C at or below
``max(9 eps lambda_max, (16 eps 255)^2)`` (``eps`` of the computation dtype)
count as zero; ``C^-1`` is the pseudo-inverse on the remaining eigenvectors,
so flat frames and exactly-zero bands give s2 = 0 and h = 0.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxvr.errors import ConfigError, SizeError
from jaxvr.metrics.pixel import (
    _as_array,
    check_float_dtype,
    check_pair,
    x64_scope,
)

BLOCK = 3
SIGMA_NSQ = 0.1
MIN_SIZE = 72
LEVELS = 3

# Simoncelli-Freeman steerable pyramid filter set ``sp5Filters`` (matlabPyrTools;
# the same taps ship in PyPI ``pyrtools``). Tabulated to 8 decimals there.
SP5_LO0 = np.array([
    [0.00341614, -0.01551246, -0.03848215, -0.01551246, 0.00341614],
    [-0.01551246, 0.05586982, 0.15925570, 0.05586982, -0.01551246],
    [-0.03848215, 0.15925570, 0.40304148, 0.15925570, -0.03848215],
    [-0.01551246, 0.05586982, 0.15925570, 0.05586982, -0.01551246],
    [0.00341614, -0.01551246, -0.03848215, -0.01551246, 0.00341614],
])

# ``lofilt`` as tabulated; the filter set multiplies these values by 2.
_SP5_LO_TABLE = np.array([
    [0.00085404, -0.00244917, -0.00387812, -0.00944432, -0.00962054,
     -0.00944432, -0.00387812, -0.00244917, 0.00085404],
    [-0.00244917, -0.00523281, -0.00661117, 0.00410600, 0.01002988,
     0.00410600, -0.00661117, -0.00523281, -0.00244917],
    [-0.00387812, -0.00661117, 0.01396746, 0.03277038, 0.03981393,
     0.03277038, 0.01396746, -0.00661117, -0.00387812],
    [-0.00944432, 0.00410600, 0.03277038, 0.06426333, 0.08169618,
     0.06426333, 0.03277038, 0.00410600, -0.00944432],
    [-0.00962054, 0.01002988, 0.03981393, 0.08169618, 0.10096540,
     0.08169618, 0.03981393, 0.01002988, -0.00962054],
    [-0.00944432, 0.00410600, 0.03277038, 0.06426333, 0.08169618,
     0.06426333, 0.03277038, 0.00410600, -0.00944432],
    [-0.00387812, -0.00661117, 0.01396746, 0.03277038, 0.03981393,
     0.03277038, 0.01396746, -0.00661117, -0.00387812],
    [-0.00244917, -0.00523281, -0.00661117, 0.00410600, 0.01002988,
     0.00410600, -0.00661117, -0.00523281, -0.00244917],
    [0.00085404, -0.00244917, -0.00387812, -0.00944432, -0.00962054,
     -0.00944432, -0.00387812, -0.00244917, 0.00085404],
])
SP5_LO = 2.0 * _SP5_LO_TABLE

# Band filter 4 (1-based, matlabPyrTools order): column 4 of the 49x6 ``bfilts``
# matrix reshaped column-major to 7x7. Rows = vertical axis (odd), columns even.
SP5_BAND4 = np.array([
    [-0.00277643, -0.00496194, -0.01026699, -0.01455399, -0.01026699,
     -0.00496194, -0.00277643],
    [0.00986904, 0.00893064, -0.01189859, -0.02755155, -0.01189859,
     0.00893064, 0.00986904],
    [0.01021852, 0.03075356, 0.08226445, 0.11732297, 0.08226445,
     0.03075356, 0.01021852],
    [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
    [-0.01021852, -0.03075356, -0.08226445, -0.11732297, -0.08226445,
     -0.03075356, -0.01021852],
    [-0.00986904, -0.00893064, 0.01189859, 0.02755155, 0.01189859,
     -0.00893064, -0.00986904],
    [0.00277643, 0.00496194, 0.01026699, 0.01455399, 0.01026699,
     0.00496194, 0.00277643],
])

_LN_2PIE = float(np.log(2.0 * np.pi * np.e))


class StrredResult(NamedTuple):
  """ST-RRED outputs. All are distortions: lower is better, 0 = no difference.

  Attributes:
    strred: ST-RRED of the clip, ``srred * trred``.
    strred_ssn: ST-RRED-SSN of the clip, ``srred_ssn * trred_ssn``.
    spatial: ``[P]`` per-pair spatial score (rreds), ``P = T // 2``.
    temporal: ``[P]`` per-pair temporal score (rredt).
    spatial_ssn: ``[P]`` per-pair single-number spatial score (rredssn).
    temporal_ssn: ``[P]`` per-pair single-number temporal score (rredtsn).
    srred: mean of ``spatial``.
    trred: mean of ``temporal``.
    srred_ssn: mean of ``spatial_ssn``.
    trred_ssn: mean of ``temporal_ssn``.
  """
  strred: float | jax.Array
  strred_ssn: float | jax.Array
  spatial: jax.Array
  temporal: jax.Array
  spatial_ssn: jax.Array
  temporal_ssn: jax.Array
  srred: float | jax.Array
  trred: float | jax.Array
  srred_ssn: float | jax.Array
  trred_ssn: float | jax.Array


def _parity(filt, axis):
  """+1 / -1 if ``filt`` is even / odd along ``axis``, else 0."""
  flipped = np.flip(filt, axis)
  if np.array_equal(filt, flipped):
    return 1
  if np.array_equal(filt, -flipped):
    return -1
  return 0


def _taps(x, k, stride, axis, parity):
  """The ``k`` strided shifted views of ``x`` along ``axis``, folded by parity.

  With a symmetric (``parity`` +1) or antisymmetric (-1) kernel, views ``i``
  and ``k-1-i`` share one tap, so they are added (subtracted) first.
  Returns a list of ``(tap_index, view)``.
  """
  n_out = -(-(x.shape[axis] - k + 1) // stride)

  def view(i):
    return jax.lax.slice_in_dim(x, i, i + (n_out - 1) * stride + 1, stride, axis)

  if parity == 0:
    return [(i, view(i)) for i in range(k)]
  r = k // 2
  views = [(i, view(i) + parity * view(k - 1 - i)) for i in range(r)]
  if parity > 0:
    views.append((r, view(r)))
  return views


def _corr(x, filt, stride):
  """Same-size 2-D correlation with ``reflect1`` edges, then subsampling.

  Written as sums of shifted, strided slices (folded when the kernel is
  symmetric or antisymmetric along an axis), which XLA fuses into a few
  loops; on CPU this is several times faster than a one-channel
  ``conv_general_dilated``.

  Args:
    x: ``[N, H, W]`` frames.
    filt: ``[k, k]`` numpy kernel, k odd.
    stride: 1, or 2 to keep rows/columns 0, 2, 4, ...

  Returns:
    ``[N, ceil(H/stride), ceil(W/stride)]``.
  """
  k = filt.shape[0]
  r = k // 2
  # Materialise the padded frames: fused into every shifted read, the mirror
  # padding's index arithmetic would be recomputed per tap (much slower).
  xp = jax.lax.optimization_barrier(
      jnp.pad(x, ((0, 0), (r, r), (r, r)), mode='reflect'))
  out = None
  for i, rows in _taps(xp, k, stride, 1, _parity(filt, 0)):
    for j, cols in _taps(rows, k, stride, 2, _parity(filt, 1)):
      if filt[i, j] == 0.0:
        continue
      term = jnp.asarray(filt[i, j], x.dtype) * cols
      out = term if out is None else out + term
  return out


def _subband(frames):
  lo = _corr(frames, SP5_LO0, 1)
  for _ in range(LEVELS):
    lo = _corr(lo, SP5_LO, 2)
  return _corr(lo, SP5_BAND4, 1)


def _gsm(band, sub_dtype):
  """GSM multipliers and entropies of ``[N, h, w]`` subbands (block 3)."""
  n, h, w = band.shape
  h3, w3 = (h // BLOCK) * BLOCK, (w // BLOCK) * BLOCK
  y = band[:, :h3, :w3]
  hi = jax.lax.Precision.HIGHEST
  nbhd = jnp.stack(
      [y[:, i:h3 - BLOCK + 1 + i, j:w3 - BLOCK + 1 + j].reshape(n, -1)
       for i in range(BLOCK) for j in range(BLOCK)], axis=1)  # [N, 9, M]
  centred = nbhd - jnp.mean(nbhd, axis=-1, keepdims=True)
  cov = jnp.einsum('nkm,nlm->nkl', centred, centred, precision=hi)
  cov = cov / nbhd.shape[-1]
  cov = 0.5 * (cov + jnp.swapaxes(cov, 1, 2))
  lam, vec = jnp.linalg.eigh(cov)
  # PSD repair: clip negative eigenvalues, keep the trace.
  clipped = jnp.maximum(lam, 0.0)
  kept = jnp.sum(clipped, axis=-1, keepdims=True)
  total = jnp.sum(lam, axis=-1, keepdims=True)
  lam = jnp.where(kept > 0, clipped * (total / jnp.where(kept > 0, kept, 1.0)),
                  0.0)
  eps = float(jnp.finfo(lam.dtype).eps)
  floor = (16.0 * float(jnp.finfo(sub_dtype).eps) * 255.0) ** 2
  tol = jnp.maximum(9.0 * eps * jnp.max(lam, axis=-1, keepdims=True), floor)
  pos = lam > tol
  inv = jnp.where(pos, 1.0 / jnp.where(pos, lam, 1.0), 0.0)
  blocks = y.reshape(n, h3 // BLOCK, BLOCK, w3 // BLOCK, BLOCK)
  blocks = blocks.transpose(0, 2, 4, 1, 3).reshape(n, BLOCK * BLOCK, -1)
  proj = jnp.einsum('nkl,nkb->nlb', vec, blocks, precision=hi)
  s2 = jnp.einsum('nlb,nl->nb', proj * proj, inv, precision=hi)
  s2 = s2 / (BLOCK * BLOCK)
  terms = jnp.log2(s2[:, None, :] * lam[:, :, None] + SIGMA_NSQ) + _LN_2PIE
  ent = jnp.sum(jnp.where(pos[:, :, None], terms, 0.0), axis=1)
  grid = (n, h3 // BLOCK, w3 // BLOCK)
  return s2.reshape(grid), ent.reshape(grid)


class StrredDetails(NamedTuple):
  """Intermediate arrays of one ST-RRED run (index 0 = ref, 1 = dist).

  Attributes:
    subband: ``[2, P, 2, h, w]`` band of every used frame (axis 2: a, b).
    s2: ``[2, P, 2, h', w']`` GSM multipliers (axis 2: spatial of ``a``,
      temporal of ``a - b``); ``h' = floor(h / 3)``.
    entropy: ``[2, P, 2, h', w']`` entropies, same layout.
    spatial_map: ``[2, P, h', w']`` scaled spatial entropy maps ``S``.
    temporal_map: ``[2, P, h', w']`` scaled temporal entropy maps ``Tm``.
  """
  subband: jax.Array
  s2: jax.Array
  entropy: jax.Array
  spatial_map: jax.Array
  temporal_map: jax.Array


@functools.partial(jax.jit,
                   static_argnames=('dtype', 'eig_dtype', 'frame_batch'))
def _strred_jit(ref, dist, dtype, eig_dtype, frame_batch):
  """Scores and intermediates; one compiled kernel serves every entry point."""
  t, h, w = ref.shape
  p = t // 2

  # Frames are filtered a few at a time, frame i of both videos together:
  # bounded memory for long clips, and on CPU a cache-sized working set is
  # several times faster. (No stacked copy of the two clips is made.)
  bands = jax.lax.map(
      lambda rd: _subband(jnp.stack(rd).astype(dtype)),
      (ref[:2 * p], dist[:2 * p]),
      batch_size=min(max(1, frame_batch // 2), 2 * p))  # [2P, 2, h, w]
  bands = jnp.moveaxis(bands, 1, 0).reshape(2, p, 2, *bands.shape[2:])

  def one_video(bands):  # [P, 2, h, w] -> per-video intermediates
    ya = bands[:, 0]
    both = jnp.stack([ya, ya - bands[:, 1]], axis=1).astype(eig_dtype)
    s2, ent = _gsm(both.reshape(2 * p, *both.shape[2:]), dtype)
    s2 = s2.reshape(p, 2, *s2.shape[1:])
    ent = ent.reshape(p, 2, *ent.shape[1:])
    log_s = jnp.log2(1.0 + s2[:, 0])
    smap = ent[:, 0] * log_s
    tmap = ent[:, 1] * log_s * jnp.log2(1.0 + s2[:, 1])
    means = (jnp.mean(smap, axis=(-2, -1)), jnp.mean(tmap, axis=(-2, -1)))
    return s2, ent, smap, tmap, means

  # The same compiled code handles both videos (the frame loop above and
  # lax.map here), so identical inputs give bit-identical maps: exactly 0 for
  # identical videos, exact symmetry.
  s2, ent, smap, tmap, (smean, tmean) = jax.lax.map(one_video, bands)

  axes = (-2, -1)
  spatial = jnp.mean(jnp.abs(smap[0] - smap[1]), axis=axes)
  temporal = jnp.mean(jnp.abs(tmap[0] - tmap[1]), axis=axes)
  spatial_ssn = jnp.abs(smean[0] - smean[1])
  temporal_ssn = jnp.abs(tmean[0] - tmean[1])
  srred, trred = jnp.mean(spatial), jnp.mean(temporal)
  srred_ssn, trred_ssn = jnp.mean(spatial_ssn), jnp.mean(temporal_ssn)
  result = StrredResult(
      strred=srred * trred, strred_ssn=srred_ssn * trred_ssn,
      spatial=spatial, temporal=temporal, spatial_ssn=spatial_ssn,
      temporal_ssn=temporal_ssn, srred=srred, trred=trred,
      srred_ssn=srred_ssn, trred_ssn=trred_ssn)
  details = StrredDetails(subband=bands, s2=s2, entropy=ent,
                          spatial_map=smap, temporal_map=tmap)
  return result, details


def _dtypes(dtype, eig_dtype):
  dt = check_float_dtype('dtype', dtype)
  et = dt if eig_dtype is None else check_float_dtype('eig_dtype', eig_dtype)
  if et.itemsize < dt.itemsize:
    raise ConfigError(
        f'eig_dtype: expected at least the precision of dtype {dt}, got {et}')
  return dt, et


def _check_frames(ref, dist):
  ref, dist = _as_array(ref), _as_array(dist)
  check_pair(ref, dist, ranks=(3,), what='[T, H, W] (luma in 0..255)')
  t, h, w = ref.shape
  if t < 2:
    raise SizeError(f'ref: ST-RRED needs at least 2 frames (one pair), got {t}')
  if h < MIN_SIZE or w < MIN_SIZE:
    raise SizeError(
        f'ref: ST-RRED needs frames of at least {MIN_SIZE}x{MIN_SIZE} pixels '
        f'(height-4 pyramid), got {h}x{w}')
  return ref, dist


def _run(ref, dist, dtype, eig_dtype, frame_batch):
  ref, dist = _check_frames(ref, dist)
  dt, et = _dtypes(dtype, eig_dtype)
  if int(frame_batch) < 1:
    raise ConfigError(f'frame_batch: expected a positive integer, got {frame_batch}')
  with x64_scope(dt, et):
    res, details = _strred_jit(ref, dist, dtype=dt, eig_dtype=et,
                               frame_batch=int(frame_batch))
  if not isinstance(res.strred, jax.core.Tracer):
    scalars = ('strred', 'strred_ssn', 'srred', 'trred', 'srred_ssn', 'trred_ssn')
    # One device-to-host transfer for the six scalars, not six round trips.
    values = jax.device_get([getattr(res, k) for k in scalars])
    res = res._replace(**{k: float(v) for k, v in zip(scalars, values, strict=True)})
  return res, details


def strred(ref, dist, *, dtype=jnp.float32, eig_dtype=None,
           frame_batch: int = 8) -> StrredResult:
  """ST-RRED and ST-RRED-SSN of a distorted video. LOWER is better.

  Both indices are distortion measures: 0 means no measurable difference and
  larger means worse. (They are not fidelities like PSNR or SSIM.)

  Args:
    ref: reference luma ``[T, H, W]`` in 0..255 (8-bit scale, e.g. the decoded
      Y plane), ``T >= 2``, ``H, W >= 72``. Any real dtype.
    dist: distorted luma, same shape and scale.
    dtype: dtype of the filtering stage (float32 default, float64 for a
      double-precision run matching the LIVE MATLAB release).
    eig_dtype: dtype of the covariance / eigen / entropy stage (default
      ``dtype``). ``jnp.float64`` with ``dtype=float32`` is a cheap way to gain
      accuracy. 64-bit dtypes run eagerly under ``jax.enable_x64(True)``; under
      an outer ``jax.jit`` they need ``jax_enable_x64`` on globally.
    frame_batch: frames filtered per step, both videos together (at least
      one frame of each); bounds memory, on accelerators a larger value may be
      faster. Does not change the result.

  Returns:
    A :class:`StrredResult`. ``strred``, ``strred_ssn`` and the four means are
    Python floats when called eagerly (0-d arrays under an outer jit); the
    per-pair fields are ``[T // 2]`` arrays of dtype ``eig_dtype``.

  Raises:
    ShapeError: wrong rank, dtype or mismatched shapes.
    SizeError: fewer than 2 frames, or frames smaller than 72 pixels.
    ConfigError: a non-float dtype or a non-positive ``frame_batch``.
  """
  return _run(ref, dist, dtype, eig_dtype, frame_batch)[0]


def strred_details(ref, dist, *, dtype=jnp.float32, eig_dtype=None,
                   frame_batch: int = 8):
  """ST-RRED together with its intermediate arrays, for inspection and tests.

  Same arguments and checks as :func:`strred`.

  Returns:
    ``(StrredResult, StrredDetails)``.
  """
  return _run(ref, dist, dtype, eig_dtype, frame_batch)
