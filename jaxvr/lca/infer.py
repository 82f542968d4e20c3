"""Locally Competitive Algorithm (LCA) as one jitted ``lax.scan``.

LCA integrates ``tau du/dt = Phi^T(M * (x - Phi a)) + a - u`` with
``a = T_lam(u)`` (Rozell et al. 2008). Each step is

    u <- (1 - eta) u + eta (Phi^T e + a),   e = M * (x - Phi a)

with ``eta = dt/tau`` (explicit Euler, lca-pytorch) or ``eta = 1 - exp(-dt/tau)``
(exponential Euler, PetaVision's HyPerLCALayer). The inhibition is applied in
residual form (one synthesis and one analysis per step), which is exact with a
mask and for kernels of any norm. With a soft threshold the fixed points are
the minimisers of

    F(a) = 1/2 sum(M * (x - Phi a)^2) + lam sum(|a|)     (a >= 0 if nonneg)

Reference: C. J. Rozell, D. H. Johnson, R. G. Baraniuk, B. A. Olshausen,
"Sparse coding via thresholding and local competition in neural circuits",
Neural Computation 20(10), 2008.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from jaxvr.errors import ConfigError, ShapeError
from jaxvr.lca import operators as ops

THRESHOLDS = ('soft', 'hard')
INTEGRATORS = ('euler', 'exponential')


class LcaResult(NamedTuple):
  """Output of :func:`lca`.

  Attributes:
    codes: activities ``a = T_lam(u)`` after the last step, ``[(B,) K, Hc, Wc]``.
    state: membrane potentials u after the last step, same shape.
    energy: ``[(B,) n_steps]`` energy of the activities entering each step
      (``energy[n]`` is the energy of ``T_lam(u_n)``, ``u_0`` = start), or
      None when not requested. Soft threshold: the objective F; hard
      threshold: ``1/2 ||M (x - Phi a)||^2 + lam^2/2 ||a||_0``.
  """
  codes: jax.Array
  state: jax.Array
  energy: jax.Array | None


def transfer(u: jax.Array, lam, threshold: str = 'soft',
             nonneg: bool = False) -> jax.Array:
  """Thresholding transfer function ``a = T_lam(u)``.

  Args:
    u: membrane potentials, any shape.
    lam: threshold (scalar).
    threshold: 'soft' (``sign(u) max(|u| - lam, 0)``) or 'hard'
      (``u 1[|u| > lam]``).
    nonneg: one-sided variant (``max(u - lam, 0)`` resp. ``u 1[u > lam]``).

  Returns:
    Activities with the shape of u.
  """
  if threshold == 'soft':
    if nonneg:
      return jnp.maximum(u - lam, 0)
    return jnp.sign(u) * jnp.maximum(jnp.abs(u) - lam, 0)
  if threshold == 'hard':
    active = (u > lam) if nonneg else (jnp.abs(u) > lam)
    return jnp.where(active, u, 0)
  raise ConfigError(f'threshold: expected one of {THRESHOLDS}, got {threshold!r}')


def prepare(x, kernels, stride, mask=None, start=None, start_name='u0',
            dtype=None):
  """Validates and casts the common inputs of the solvers.

  Args:
    x: ``[T, H, W]`` or ``[B, T, H, W]`` windows.
    kernels: ``[K, T, kh, kw]``.
    stride: spatial stride.
    mask: None, ``[T, H, W]`` or ``[B, T, H, W]`` (nonzero = observed).
    start: None or codes/state ``[K, Hc, Wc]`` (``[B, K, Hc, Wc]`` if batched).
    start_name: name of ``start`` in error messages.
    dtype: compute dtype (default: x's floating dtype, else float32).

  Returns:
    ``(x, kernels, mask, start, code_shape)`` as jax arrays of ``dtype``
    (mask broadcast to x's shape, start zeros if None).

  Raises:
    ShapeError, ConfigError: on inconsistent shapes or bad values.
  """
  ops.check_stride(stride)
  ops.check_kernels(kernels)
  xshape = tuple(getattr(x, 'shape', ()))
  if len(xshape) not in (3, 4):
    raise ShapeError(f'x: expected [T,H,W] or [B,T,H,W], got shape {xshape}')
  if dtype is None:
    xd = getattr(x, 'dtype', None) or jnp.asarray(x).dtype
    dtype = xd if jnp.issubdtype(xd, jnp.floating) else jnp.float32
  dtype = jax.dtypes.canonicalize_dtype(dtype)
  x = jnp.asarray(x, dtype)
  kernels = jnp.asarray(kernels, dtype)
  cshape = ops.code_shape(xshape, kernels.shape, stride)
  full_cshape = xshape[:-3] + cshape
  if mask is not None:
    mshape = tuple(getattr(mask, 'shape', ()))
    if mshape not in (xshape, xshape[-3:]):
      raise ShapeError(f'mask: expected shape {xshape[-3:]} or {xshape} '
                       f'(that of x), got {mshape}')
    mask = jnp.broadcast_to(jnp.asarray(mask != 0, dtype), xshape)
  if start is None:
    start = jnp.zeros(full_cshape, dtype)
  else:
    sshape = tuple(getattr(start, 'shape', ()))
    if sshape != full_cshape:
      raise ShapeError(f'{start_name}: expected shape {full_cshape} (codes of '
                       f'x), got {sshape}')
    start = jnp.asarray(start, dtype)
  return x, kernels, mask, start, cshape


def check_scalar(name, value, positive=False):
  """Raises ConfigError unless value is a finite (positive) real >= 0."""
  if isinstance(value, jax.core.Tracer):
    return value
  try:
    v = float(value)
  except (TypeError, ValueError):
    raise ConfigError(f'{name}: expected a real scalar, got {value!r}') from None
  if not math.isfinite(v) or v < 0 or (positive and v == 0):
    kind = 'positive' if positive else 'non-negative'
    raise ConfigError(f'{name}: expected a finite {kind} scalar, got {value!r}')
  return v


def check_steps(n_steps) -> int:
  """Returns n_steps as a Python int or raises ConfigError unless >= 0."""
  return ops.as_int('n_steps', n_steps, 0)


def lca(x, kernels, *, stride: int, lam, n_steps: int, dt_over_tau,
        mask=None, threshold: str = 'soft', nonneg: bool = False, u0=None,
        integrator: str = 'euler', return_energy: bool = False,
        dtype=None, method: str = 'auto', a0=None) -> LcaResult:
  """Runs LCA and returns codes, final state and (optionally) the energy.

  Args:
    x: windows ``[T, H, W]`` or ``[B, T, H, W]``.
    kernels: dictionary ``[K, T, kh, kw]``.
    stride: spatial stride s.
    lam: threshold lambda (scalar, traced: no recompilation per value).
    n_steps: number of integration steps (static).
    dt_over_tau: ``dt / tau``; stability needs roughly ``eta < 2 / L``.
    mask: optional observation mask ``[T, H, W]`` or ``[B, T, H, W]``.
    threshold: 'soft' or 'hard'.
    nonneg: one-sided threshold (codes >= 0).
    u0: initial membrane potentials (warm start, e.g. the previous window's
      state); zeros if None.
    a0: alternatively, warm-start codes (e.g. the previous window's codes):
      ``u0 = a0 + lam sign(a0)`` for the soft threshold (so that
      ``T_lam(u0) = a0``), ``u0 = a0`` for the hard one. Not with u0.
    integrator: 'euler' (``eta = dt/tau``) or 'exponential'
      (``eta = 1 - exp(-dt/tau)``).
    return_energy: also return the energy trace.
    dtype: compute dtype (default: that of x, float32 for integer x).
    method: operator implementation, 'conv', 'fft' or 'auto' (see
      :func:`jaxvr.lca.operators.resolve_method`).

  Returns:
    :class:`LcaResult`.
  """
  if threshold not in THRESHOLDS:
    raise ConfigError(f'threshold: expected one of {THRESHOLDS}, got {threshold!r}')
  if integrator not in INTEGRATORS:
    raise ConfigError(f'integrator: expected one of {INTEGRATORS}, got '
                      f'{integrator!r}')
  n_steps = check_steps(n_steps)
  stride = ops.check_stride(stride)
  check_scalar('lam', lam)
  check_scalar('dt_over_tau', dt_over_tau, positive=True)
  if a0 is not None:
    if u0 is not None:
      raise ConfigError('a0: give either u0 (state) or a0 (codes), not both')
    x, kernels, mask, a0, _ = prepare(x, kernels, stride, mask, a0, 'a0',
                                      dtype)
    u0 = a0 + lam * jnp.sign(a0) if threshold == 'soft' else a0
  x, kernels, mask, u0, _ = prepare(x, kernels, stride, mask, u0, 'u0', dtype)
  if integrator == 'exponential':
    eta = -jnp.expm1(-jnp.asarray(dt_over_tau, x.dtype))
  else:
    eta = jnp.asarray(dt_over_tau, x.dtype)
  lam = jnp.asarray(lam, x.dtype)
  run = functools.partial(_lca_scan, stride=stride, n_steps=n_steps,
                          threshold=threshold, nonneg=nonneg,
                          return_energy=return_energy,
                          method=ops.resolve_method(method, kernels.shape))
  if x.ndim == 4:
    m_axis = None if mask is None else 0
    run = jax.vmap(run, in_axes=(0, None, m_axis, 0, None, None))
  return LcaResult(*run(x, kernels, mask, u0, lam, eta))


def infer(x, kernels, *, stride: int, lam, mask=None, n_steps: int,
          dt_over_tau, threshold: str = 'soft', nonneg: bool = False, u0=None,
          integrator: str = 'euler', return_trace: bool = False, dtype=None,
          method: str = 'auto', a0=None):
  """Sparse codes of x by LCA (see :func:`lca` for the arguments).

  Args:
    x: windows ``[T, H, W]`` or ``[B, T, H, W]``.
    kernels: ``[K, T, kh, kw]``.
    stride: spatial stride s.
    lam: threshold lambda.
    mask: optional observation mask (in-painting), shaped like x or
      ``[T, H, W]``.
    n_steps: number of LCA steps.
    dt_over_tau: integration step ``dt / tau``.
    threshold: 'soft' or 'hard'.
    nonneg: one-sided threshold.
    u0: warm-start membrane potentials ``[(B,) K, Hc, Wc]``.
    integrator: 'euler' or 'exponential'.
    return_trace: also return the energy trace ``[(B,) n_steps]``.
    dtype: compute dtype.
    method: operator implementation ('conv', 'fft', 'auto').
    a0: warm-start codes instead of u0 (see :func:`lca`).

  Returns:
    codes ``[K, Hc, Wc]`` (``[B, K, Hc, Wc]`` for batched x), or
    ``(codes, energy)`` with ``return_trace=True``.
  """
  res = lca(x, kernels, stride=stride, lam=lam, n_steps=n_steps,
            dt_over_tau=dt_over_tau, mask=mask, threshold=threshold,
            nonneg=nonneg, u0=u0, integrator=integrator,
            return_energy=return_trace, dtype=dtype, method=method, a0=a0)
  return (res.codes, res.energy) if return_trace else res.codes


@functools.partial(jax.jit, static_argnames=(
    'stride', 'n_steps', 'threshold', 'nonneg', 'return_energy', 'method'))
def _lca_scan(x, kernels, mask, u0, lam, eta, *, stride, n_steps, threshold,
              nonneg, return_energy, method):
  """One window: ``x [T,H,W]``, ``u0 [K,Hc,Wc]``."""
  synth, adjoint = ops.make_operator(kernels, stride, x.shape[-2:], method)
  xm = x if mask is None else x * mask

  def step(u, _):
    a = transfer(u, lam, threshold, nonneg)
    r = xm - synth(a)
    if mask is not None:
      r = r * mask
    u_new = u + eta * (adjoint(r) + a - u)
    if not return_energy:
      return u_new, None
    if threshold == 'soft':
      penalty = lam * jnp.sum(jnp.abs(a))
    else:
      penalty = 0.5 * lam * lam * jnp.sum(a != 0).astype(a.dtype)
    return u_new, 0.5 * jnp.sum(r * r) + penalty

  u, energy = lax.scan(step, u0, None, length=n_steps)
  return transfer(u, lam, threshold, nonneg), u, energy


def objective(x, kernels, codes, *, stride: int, lam, mask=None) -> jax.Array:
  """LASSO objective ``1/2 sum(M (x - Phi a)^2) + lam sum(|a|)``.

  Args:
    x: ``[T, H, W]`` or ``[B, T, H, W]``.
    kernels: ``[K, T, kh, kw]``.
    codes: ``[K, Hc, Wc]`` (``[B, K, Hc, Wc]`` for batched x).
    stride: spatial stride s.
    lam: lambda.
    mask: optional observation mask (1 = observed).

  Returns:
    Scalar (or ``[B]`` for batched x): plain sums, no mean.
  """
  check_scalar('lam', lam)
  stride = ops.check_stride(stride)
  x, kernels, mask, codes, _ = prepare(x, kernels, stride, mask, codes,
                                       'codes', None)
  return _objective(x, kernels, codes, mask, jnp.asarray(lam, x.dtype),
                    stride=stride)


@functools.partial(jax.jit, static_argnames=('stride',))
def _objective(x, kernels, codes, mask, lam, *, stride):
  r = x - ops.synthesis(codes, kernels, stride, x.shape[-2:])
  if mask is not None:
    r = r * mask
  axes = tuple(range(-3, 0))
  return (0.5 * jnp.sum(r * r, axis=axes)
          + lam * jnp.sum(jnp.abs(codes), axis=axes))
