"""Strided spatiotemporal convolutional dictionary: synthesis and its adjoint.

A dictionary of K kernels ``[K, T, kh, kw]`` spans all T frames of a window
``[T, H, W]``; each code ``a[k, i, j]`` adds ``a[k, i, j] * kernels[k]`` onto the
pixels ``[:, i*s : i*s+kh, j*s : j*s+kw]`` (spatial stride s). Code positions
are the VALID ones, ``Hc = (H - kh) // s + 1`` (likewise Wc): no padding and no
kernel flip, so the analysis operator ``Phi^T`` is a strided cross-correlation.
When ``(H - kh) % s != 0`` the last rows (columns) are covered by no code and
the synthesis leaves them at zero.

PetaVision-style centred padding (code grid ``H/s x W/s``, patch P) is the
same model applied to the image zero-padded by ``(P - s) / 2`` on every side:
see :func:`centred_padding`.

Reference: C. J. Rozell, D. H. Johnson, R. G. Baraniuk, B. A. Olshausen,
"Sparse coding via thresholding and local competition in neural circuits",
Neural Computation 20(10), 2008.
"""

from __future__ import annotations

import functools
import operator

import jax
import jax.numpy as jnp
from jax import lax

from jaxvr.errors import ConfigError, ShapeError

_DN = ('NCHW', 'OIHW', 'NCHW')
_DN_SYNTH = ('NCHW', 'IOHW', 'NCHW')


def code_shape(image_shape, kernel_shape, stride: int) -> tuple[int, int, int]:
  """Shape ``(K, Hc, Wc)`` of the code array for one window.

  Args:
    image_shape: ``(T, H, W)`` of a window (a leading batch axis is ignored).
    kernel_shape: ``(K, T, kh, kw)`` of the dictionary.
    stride: spatial stride s >= 1.

  Returns:
    ``(K, (H - kh) // s + 1, (W - kw) // s + 1)``.

  Raises:
    ShapeError: the frame counts differ or a kernel is larger than the image.
    ConfigError: the stride is not a positive integer.
  """
  stride = check_stride(stride)
  t, h, w = tuple(image_shape)[-3:]
  k, kt, kh, kw = kernel_shape
  if kt != t:
    raise ShapeError(f'kernels: expected {t} frames (axis 1) to match x '
                     f'[T,H,W] = {tuple(image_shape)}, got shape {tuple(kernel_shape)}')
  if kh > h or kw > w:
    raise ShapeError(f'kernels: spatial size {(kh, kw)} exceeds the image size '
                     f'{(h, w)} of x')
  return k, (h - kh) // stride + 1, (w - kw) // stride + 1


def as_int(name: str, value, minimum: int) -> int:
  """Returns an integer-like value (int, numpy integer) as a Python int.

  Raises:
    ConfigError: value is not an integer (bools and floats included) or is
      below ``minimum``.
  """
  try:
    if isinstance(value, bool):
      raise TypeError
    v = operator.index(value)
  except TypeError:
    raise ConfigError(f'{name}: expected an int >= {minimum}, got '
                      f'{value!r}') from None
  if v < minimum:
    raise ConfigError(f'{name}: expected an int >= {minimum}, got {value!r}')
  return v


def check_stride(stride) -> int:
  """Returns ``stride`` as a Python int >= 1 or raises ConfigError."""
  return as_int('stride', stride, 1)


def check_kernels(kernels) -> None:
  """Raises ShapeError unless ``kernels`` is a floating ``[K, T, kh, kw]``."""
  shape = tuple(getattr(kernels, 'shape', ()))
  if len(shape) != 4 or min(shape) < 1:
    raise ShapeError(f'kernels: expected a non-empty [K,T,kh,kw] array, got '
                     f'shape {shape}')
  if not jnp.issubdtype(kernels.dtype, jnp.floating):
    raise ShapeError(f'kernels: expected a floating dtype, got {kernels.dtype}')


def analysis(r: jax.Array, kernels: jax.Array, stride: int) -> jax.Array:
  """Adjoint (analysis) operator ``Phi^T r``: strided cross-correlation.

  Args:
    r: image-space array ``[T, H, W]`` or ``[B, T, H, W]``.
    kernels: dictionary ``[K, T, kh, kw]``.
    stride: spatial stride s.

  Returns:
    ``[K, Hc, Wc]`` (or ``[B, K, Hc, Wc]``) with
    ``out[k,i,j] = sum_{t,p,q} kernels[k,t,p,q] * r[t, i*s+p, j*s+q]``.
  """
  batched = r.ndim == 4
  lhs = r if batched else r[None]
  out = lax.conv_general_dilated(
      lhs, kernels.astype(lhs.dtype), window_strides=(stride, stride),
      padding='VALID', dimension_numbers=_DN,
      precision=lax.Precision.HIGHEST)
  return out if batched else out[0]


def synthesis(a: jax.Array, kernels: jax.Array, stride: int,
              image_hw: tuple[int, int]) -> jax.Array:
  """Synthesis operator ``Phi a``: sum of strided, shifted kernels.

  Implemented as one input-dilated convolution with the spatially flipped,
  I/O-swapped kernels; the bottom/right remainder not covered by any code is
  produced as zeros by the padding, so this is the exact adjoint of
  :func:`analysis`.

  Args:
    a: codes ``[K, Hc, Wc]`` or ``[B, K, Hc, Wc]``.
    kernels: dictionary ``[K, T, kh, kw]``.
    stride: spatial stride s.
    image_hw: ``(H, W)`` of the image to synthesise.

  Returns:
    ``[T, H, W]`` (or ``[B, T, H, W]``).
  """
  batched = a.ndim == 4
  lhs = a if batched else a[None]
  _, _, kh, kw = kernels.shape
  hc, wc = lhs.shape[-2:]
  h, w = image_hw
  rem_h = h - ((hc - 1) * stride + kh)
  rem_w = w - ((wc - 1) * stride + kw)
  out = lax.conv_general_dilated(
      lhs, kernels[:, :, ::-1, ::-1].astype(lhs.dtype), window_strides=(1, 1),
      padding=((kh - 1, kh - 1 + rem_h), (kw - 1, kw - 1 + rem_w)),
      lhs_dilation=(stride, stride), dimension_numbers=_DN_SYNTH,
      precision=lax.Precision.HIGHEST)
  return out if batched else out[0]


METHODS = ('auto', 'conv', 'fft')


def resolve_method(method: str, kernel_shape) -> str:
  """Picks the operator implementation.

  Args:
    method: 'conv' (``lax.conv_general_dilated``), 'fft' (zero-padded FFTs,
      exact linear, no wrap-around) or 'auto' ('fft' for kernels of 49 or more
      taps per frame, where it is several times cheaper on CPU, else 'conv').
    kernel_shape: ``(K, T, kh, kw)``.

  Returns:
    'conv' or 'fft'.
  """
  if method not in METHODS:
    raise ConfigError(f'method: expected one of {METHODS}, got {method!r}')
  if method == 'auto':
    return 'fft' if kernel_shape[-1] * kernel_shape[-2] >= 49 else 'conv'
  return method


def make_operator(kernels: jax.Array, stride: int, image_hw, method='conv'):
  """Returns ``(synth, adjoint)`` closures for a fixed dictionary.

  Both accept an optional leading batch axis. With ``method='fft'`` the
  kernel spectra are computed once here (call this outside any loop) and each
  application costs K + T real FFTs of size ``H x W``; the codes are placed
  on the pixel grid with interior (stride) padding, and since every code's
  patch ends inside the image no product wraps around, so the result equals
  the convolution form up to rounding.

  Args:
    kernels: ``[K, T, kh, kw]``.
    stride: spatial stride s.
    image_hw: ``(H, W)``.
    method: 'conv', 'fft' or 'auto' (see :func:`resolve_method`).

  Returns:
    ``synth(a [.., K, Hc, Wc]) -> [.., T, H, W]`` and
    ``adjoint(r [.., T, H, W]) -> [.., K, Hc, Wc]``.
  """
  method = resolve_method(method, kernels.shape)
  h, w = image_hw
  if method == 'conv':
    return (lambda a: synthesis(a, kernels, stride, (h, w)),
            lambda r: analysis(r, kernels, stride))
  k, _, kh, kw = kernels.shape
  hc, wc = (h - kh) // stride + 1, (w - kw) // stride + 1
  pad = [(0, h - kh), (0, w - kw)]
  rdtype = kernels.dtype
  fdtype = jnp.promote_types(rdtype, jnp.float32)  # FFTs need >= float32
  spec = jnp.fft.rfft2(jnp.pad(kernels.astype(fdtype), [(0, 0), (0, 0)] + pad))

  def synth(a):
    lead = [(0, 0, 0)] * (a.ndim - 2)
    a = a.astype(fdtype)
    grid = lax.pad(a, jnp.zeros((), a.dtype), lead + [
        (0, h - ((hc - 1) * stride + 1), stride - 1),
        (0, w - ((wc - 1) * stride + 1), stride - 1)])
    prod = jnp.sum(jnp.fft.rfft2(grid)[..., None, :, :] * spec, axis=-4)
    return jnp.fft.irfft2(prod, s=(h, w)).astype(rdtype)

  def adjoint(r):
    prod = jnp.sum(jnp.fft.rfft2(r.astype(fdtype))[..., None, :, :, :]
                   * jnp.conj(spec),
                   axis=-3)
    full = jnp.fft.irfft2(prod, s=(h, w)).astype(rdtype)
    return full[..., :(hc - 1) * stride + 1:stride, :(wc - 1) * stride + 1:stride]

  return synth, adjoint


def lipschitz(kernels: jax.Array, image_shape, stride: int, *, mask=None,
              n_iter: int = 100, seed: int = 0) -> jax.Array:
  """Largest eigenvalue ``L = ||Phi||_2^2`` of ``Phi^T M Phi`` by power iteration.

  Args:
    kernels: dictionary ``[K, T, kh, kw]``.
    image_shape: ``(T, H, W)`` of one window.
    stride: spatial stride s.
    mask: optional observation mask ``[T, H, W]`` (1 = observed); with a mask
      the result is ``||diag(M) Phi||^2``.
    n_iter: number of power iterations (the estimate increases towards L).
    seed: seed of the random start vector.

  Returns:
    Scalar estimate of L (a lower bound that converges to L).
  """
  check_kernels(kernels)
  stride = check_stride(stride)
  shape = code_shape(image_shape, kernels.shape, stride)
  t, h, w = tuple(image_shape)[-3:]
  m = None if mask is None else jnp.asarray(mask, kernels.dtype)
  return power_iteration(kernels, m, stride=stride, shape=shape, hw=(h, w),
                         n_iter=n_iter, seed=seed)


@functools.partial(jax.jit, static_argnames=('stride', 'shape', 'hw', 'method'))
def power_iteration(kernels, mask, *, stride, shape, hw, n_iter=100, seed=0,
                    method='conv'):
  """Jitted power iteration on ``Phi^T M Phi`` (see :func:`lipschitz`).

  ``n_iter`` and ``seed`` are traced, so changing them does not recompile.
  """
  synth, adjoint = make_operator(kernels, stride, hw, method)

  def gram(v):
    r = synth(v)
    if mask is not None:
      r = r * mask
    return adjoint(r)

  v0 = jax.random.normal(jax.random.key(seed), shape, kernels.dtype)
  v0 = v0 / jnp.linalg.norm(v0)

  def body(_, v):
    g = gram(v)
    return g / jnp.maximum(jnp.linalg.norm(g), jnp.finfo(v.dtype).tiny)

  v = lax.fori_loop(0, n_iter, body, v0)
  return jnp.vdot(v, gram(v))


def centred_padding(patch: int, stride: int) -> int:
  """Zero padding per side that maps PetaVision's centred code grid to VALID.

  A code layer at ``nxScale = 1/s`` with patch size P (P a multiple of an even
  s) has codes touching ``[s*i - (P-s)/2, s*i - (P-s)/2 + P)``; padding the
  image by ``(P - s) / 2`` on every side turns that into the VALID model of
  this module with an ``H/s x W/s`` code grid.

  Args:
    patch: spatial patch size P.
    stride: spatial stride s.

  Returns:
    ``(P - s) // 2``.

  Raises:
    ConfigError: P is not a multiple of s or ``P - s`` is odd.
  """
  stride = check_stride(stride)
  if patch % stride or (patch - stride) % 2 or patch < stride:
    raise ConfigError(f'patch: expected a multiple of stride {stride} with '
                      f'even patch - stride, got {patch}')
  return (patch - stride) // 2
