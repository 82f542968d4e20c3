"""Hebbian learning of a strided spatiotemporal convolutional dictionary.

After the codes of a batch have settled (LCA or FISTA at fixed kernels), each
kernel moves along the Hebbian term "code times residual",

    H_k = sum_{b,i,j} a[b,k,i,j] * R_b[:, i*s : i*s+kh, j*s : j*s+kw],
    R_b = M_b * (x_b - Phi a_b),

which is minus the gradient of the data term ``1/2 sum(M (x - Phi a)^2)`` with
respect to the kernels at fixed codes. PetaVision's rule (HebbianUpdater with
``normalizeDw``, MomentumUpdater, NormalizeL2) divides each feature's update by
its number of contributions (the number of nonzero codes of that feature: with
VALID code positions every patch element lands inside the image), mixes in the
previous update as momentum, and renormalises every kernel to unit L2 norm
over its whole ``T x kh x kw`` support. lca-pytorch's ``update_weights`` is
also provided (scale ``1 / (1 + n_k)``, no momentum).

References: B. A. Olshausen, D. J. Field, "Emergence of simple-cell receptive
field properties by learning a sparse code for natural images", Nature 381,
1996; C. J. Rozell et al., "Sparse coding via thresholding and local
competition in neural circuits", Neural Computation 20(10), 2008; Y. Wang et
al., "Sparse MP4", SSIAI 2020 (PetaVision-trained 3-frame dictionaries).
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxvr.errors import ConfigError
from jaxvr.lca import operators as ops
from jaxvr.lca.fista import fista
from jaxvr.lca.infer import infer, objective, prepare

MOMENTUM_METHODS = ('viscosity', 'simple', 'none')


class DictionaryState(NamedTuple):
  """Learner state.

  Attributes:
    kernels: unit-norm dictionary ``[K, T, kh, kw]``.
    velocity: previous update dW (momentum memory), same shape.
    step: number of updates applied (int32 scalar).
  """
  kernels: jax.Array
  velocity: jax.Array
  step: jax.Array


def normalize(kernels: jax.Array, eps: float = 1e-12) -> jax.Array:
  """Divides each kernel by (its L2 norm over ``(T, kh, kw)`` + eps)."""
  norm = jnp.sqrt(jnp.sum(kernels * kernels, axis=(1, 2, 3), keepdims=True))
  return kernels / (norm + eps)


def init_state(kernels) -> DictionaryState:
  """Learner state for an initial dictionary ``[K, T, kh, kw]`` (normalised)."""
  ops.check_kernels(kernels)
  kernels = normalize(jnp.asarray(kernels))
  return DictionaryState(kernels, jnp.zeros_like(kernels),
                         jnp.zeros((), jnp.int32))


def _data_term(kernels, x, codes, mask, stride):
  r = x - ops.synthesis(codes, kernels, stride, x.shape[-2:])
  if mask is not None:
    r = r * mask
  return 0.5 * jnp.sum(r * r)


def hebbian(x, kernels, codes, *, stride: int, mask=None) -> jax.Array:
  """Hebbian term ``sum a * residual`` (minus the data-term gradient).

  Args:
    x: ``[T, H, W]`` or ``[B, T, H, W]``.
    kernels: ``[K, T, kh, kw]``.
    codes: ``[(B,) K, Hc, Wc]`` (held fixed).
    stride: spatial stride s.
    mask: optional observation mask shaped like x or ``[T, H, W]``.

  Returns:
    ``[K, T, kh, kw]``, summed over the batch.
  """
  stride = ops.check_stride(stride)
  x, kernels, mask, codes, _ = prepare(x, kernels, stride, mask, codes,
                                       'codes')
  return _hebbian(x, kernels, codes, mask, stride=stride)


@functools.partial(jax.jit, static_argnames=('stride',))
def _hebbian(x, kernels, codes, mask, *, stride):
  codes = jax.lax.stop_gradient(codes)
  return -jax.grad(_data_term)(kernels, x, codes, mask, stride)


def activity_counts(codes: jax.Array) -> jax.Array:
  """Number of nonzero codes per feature ``[K]`` over batch and positions."""
  axes = tuple(i for i in range(codes.ndim) if i != codes.ndim - 3)
  return jnp.sum(codes != 0, axis=axes)


def _momentum_factor(method: str, momentum_tau: float) -> float:
  if method not in MOMENTUM_METHODS:
    raise ConfigError(f'momentum: expected one of {MOMENTUM_METHODS}, got '
                      f'{method!r}')
  if method == 'none':
    return 0.0
  if method == 'viscosity':
    if not momentum_tau > 0:
      raise ConfigError(f'momentum_tau: expected > 0 for viscosity, got '
                        f'{momentum_tau!r}')
    return math.exp(-1.0 / momentum_tau)
  if not 0 <= momentum_tau < 1:
    raise ConfigError(f'momentum_tau: expected a factor in [0, 1) for simple '
                      f'momentum, got {momentum_tau!r}')
  return float(momentum_tau)


def hebbian_update(state: DictionaryState, x, codes, *, stride: int,
                   lr: float, mask=None, momentum: str = 'viscosity',
                   momentum_tau: float = 100.0, decay: float = 0.0,
                   normalize_dw: bool = True) -> DictionaryState:
  """One PetaVision-style dictionary step at fixed codes.

  ``dW = lr * H / n_k`` (``normalize_dw``; n_k = nonzero codes of feature k,
  at least 1), then ``dW <- (1 - m) dW + m dW_prev - decay W`` with
  ``m = exp(-1/momentum_tau)`` ('viscosity') or ``m = momentum_tau``
  ('simple'), ``W <- normalize(W + dW)``.

  Args:
    state: current :class:`DictionaryState`.
    x: ``[T, H, W]`` or ``[B, T, H, W]`` inputs.
    codes: settled codes ``[(B,) K, Hc, Wc]``.
    stride: spatial stride s.
    lr: learning rate (PetaVision ``dWMax``).
    mask: optional observation mask.
    momentum: 'viscosity', 'simple' or 'none'.
    momentum_tau: time constant (viscosity) or factor in [0, 1) (simple).
    decay: weight decay coefficient.
    normalize_dw: divide each feature's update by its activity count.

  Returns:
    The new state.
  """
  m = _momentum_factor(momentum, momentum_tau)
  stride = ops.check_stride(stride)
  x, _, mask, codes, _ = prepare(x, state.kernels, stride, mask, codes,
                                 'codes')
  return _update(state, x, codes, mask, lr, m, decay, stride=stride,
                 normalize_dw=normalize_dw)


@functools.partial(jax.jit, static_argnames=('stride', 'normalize_dw'))
def _update(state, x, codes, mask, lr, m, decay, *, stride, normalize_dw):
  dw = lr * _hebbian(x, state.kernels, codes, mask, stride=stride)
  if normalize_dw:
    count = jnp.maximum(activity_counts(codes), 1).astype(dw.dtype)
    dw = dw / count[:, None, None, None]
  dw = (1 - m) * dw + m * state.velocity - decay * state.kernels
  return DictionaryState(normalize(state.kernels + dw), dw, state.step + 1)


def lcapt_update(kernels, x, codes, *, stride: int, eta: float,
                 mask=None) -> jax.Array:
  """lca-pytorch's ``update_weights``: ``W + eta/(1+n_k) H``, then normalise.

  Args:
    kernels: ``[K, T, kh, kw]``.
    x: ``[T, H, W]`` or ``[B, T, H, W]``.
    codes: ``[(B,) K, Hc, Wc]``.
    stride: spatial stride s.
    eta: learning rate.
    mask: optional observation mask.

  Returns:
    Updated, unit-norm kernels.
  """
  h = hebbian(x, kernels, codes, stride=stride, mask=mask)
  count = activity_counts(jnp.asarray(codes)).astype(h.dtype)
  scale = eta / (1 + count)
  return normalize(jnp.asarray(kernels, h.dtype) + scale[:, None, None, None] * h)


def learn_step(state: DictionaryState, x, *, stride: int, lam: float,
               lr: float, n_steps: int, mask=None, solver: str = 'lca',
               dt_over_tau: float = 0.1, nonneg: bool = False,
               momentum: str = 'viscosity', momentum_tau: float = 100.0,
               decay: float = 0.0, method: str = 'auto'):
  """Sparse-codes a batch at fixed kernels, then applies :func:`hebbian_update`.

  Args:
    state: current :class:`DictionaryState`.
    x: batch of windows ``[B, T, H, W]`` (or one window ``[T, H, W]``).
    stride: spatial stride s.
    lam: sparsity lambda.
    lr: Hebbian learning rate.
    n_steps: inference steps per batch.
    mask: optional observation mask.
    solver: 'lca' (Euler, soft threshold) or 'fista'.
    dt_over_tau: LCA step (ignored by FISTA).
    nonneg: non-negative codes.
    momentum: 'viscosity', 'simple' or 'none'.
    momentum_tau: momentum time constant or factor.
    decay: weight decay.
    method: operator implementation ('conv', 'fft', 'auto').

  Returns:
    ``(new_state, metrics)`` with metrics ``objective`` (mean over the batch
    before the update), ``data_term`` (mean 1/2 squared residual) and
    ``density`` (fraction of nonzero codes).
  """
  if solver not in ('lca', 'fista'):
    raise ConfigError(f"solver: expected 'lca' or 'fista', got {solver!r}")
  if solver == 'lca':
    codes = infer(x, state.kernels, stride=stride, lam=lam,
                            mask=mask, n_steps=n_steps,
                            dt_over_tau=dt_over_tau, nonneg=nonneg,
                            method=method)
  else:
    codes = fista(x, state.kernels, stride=stride, lam=lam,
                            mask=mask, n_steps=n_steps, nonneg=nonneg,
                            method=method)
  obj = objective(x, state.kernels, codes, stride=stride, lam=lam,
                            mask=mask)
  l1 = lam * jnp.sum(jnp.abs(codes), axis=(-3, -2, -1))
  metrics = {'objective': jnp.mean(obj), 'data_term': jnp.mean(obj - l1),
             'density': jnp.mean(codes != 0)}
  new = hebbian_update(state, x, codes, stride=stride, lr=lr, mask=mask,
                       momentum=momentum, momentum_tau=momentum_tau,
                       decay=decay)
  return new, metrics
