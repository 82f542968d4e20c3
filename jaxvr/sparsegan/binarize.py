"""Binary pixel masks: straight-through rounding and exact-count random masks.

Straight-through rounding follows Theis, Shi, Cunningham and Huszar, "Lossy
Image Compression with Compressive Autoencoders" (ICLR 2017,
arXiv:1703.00395): round in the forward pass, pass the gradient through
unchanged in the backward pass. The sparse-pixel GAN (Nittala et al.,
"Relevance of Sparse pixel representations to Lossy Video Compression")
binarises the mask generator's confidences this way, at training and at test
time alike.

The random masks are the "No Mask Gen" baselines of the same paper: a fixed
number ``k = round(d * H * W)`` of pixels per frame, drawn uniformly without
replacement and independently for every frame, so the density is exactly
``k / (H * W)`` in every frame.
"""

import functools

import jax
import jax.numpy as jnp

from jaxvr.errors import ConfigError, ShapeError


@jax.custom_jvp
def straight_through_round(c: jax.Array) -> jax.Array:
  """Rounds confidences to a binary mask with an identity gradient.

  The forward value is ``1`` where ``c >= 0.5`` and ``0`` elsewhere, in the
  dtype of ``c`` (the paper's ``floor(c + 0.5)`` for ``c`` in [0, 1], without
  the float rounding of ``c + 0.5`` just below one half). It is exactly
  binary for every input. The derivative with respect to ``c`` is taken to
  be 1 (forward and reverse mode).

  Args:
    c: confidences of any shape, usually ``[B, T, H, W, 1]`` in [0, 1]. Must
      be a floating dtype.

  Returns:
    Binary mask, same shape and dtype as ``c``.
  """
  return _hard_round(c)


def _hard_round(c):
  c = jnp.asarray(c)
  if not jnp.issubdtype(c.dtype, jnp.floating):
    raise ShapeError(
        f'straight_through_round: expected a floating array c, got dtype '
        f'{c.dtype}')
  return (c >= 0.5).astype(c.dtype)


@straight_through_round.defjvp
def _straight_through_round_jvp(primals, tangents):
  (c,), (dc,) = primals, tangents
  return _hard_round(c), dc


def mask_count(height: int, width: int, density: float) -> int:
  """Number of kept pixels per frame, ``round(density * height * width)``."""
  return int(round(float(density) * height * width))


@functools.partial(jax.jit, static_argnums=(1, 2))
def _random_mask(key, shape, k):
  b, t, h, w, _ = shape
  n = h * w
  keys = jax.random.split(key, b * t)
  # Positions of the k smallest of n i.i.d. uniforms: a uniform k-subset.
  scores = jax.vmap(lambda kk: jax.random.uniform(kk, (n,)))(keys)
  _, idx = jax.lax.top_k(-scores, k) if k > 0 else (None, None)
  mask = jnp.zeros((b * t, n), jnp.float32)
  if k > 0:
    rows = jnp.arange(b * t)[:, None]
    mask = mask.at[rows, idx].set(1.0)
  return mask.reshape(shape)


def random_mask(key: jax.Array, shape, density: float) -> jax.Array:
  """Uniform random binary mask with an exact pixel count in every frame.

  Every frame ``(b, t)`` keeps exactly ``k = round(density * H * W)`` pixels,
  drawn uniformly without replacement, independently of all other frames.

  Args:
    key: a ``jax.random.key``.
    shape: ``(B, T, H, W, 1)``.
    density: fraction of kept pixels per frame, in [0, 1]; a Python number
      (the count is static).

  Returns:
    float32 mask of shape ``[B, T, H, W, 1]`` with values in {0, 1}.

  Raises:
    ShapeError: ``shape`` is not ``(B, T, H, W, 1)`` with positive sizes.
    ConfigError: ``density`` is outside [0, 1] or not a number.
  """
  try:
    shape = tuple(int(s) for s in shape)
  except TypeError as err:
    raise ShapeError(
        f'random_mask: shape must be a tuple (B, T, H, W, 1), got {shape!r}'
    ) from err
  if len(shape) != 5 or shape[-1] != 1 or min(shape) < 1:
    raise ShapeError(
        f'random_mask: shape must be (B, T, H, W, 1) with positive sizes, '
        f'got {shape}')
  try:
    density = float(density)
  except (TypeError, ValueError, jax.errors.ConcretizationTypeError) as err:
    raise ConfigError(
        f'random_mask: density must be a Python number in [0, 1], got '
        f'{density!r}') from err
  if not 0.0 <= density <= 1.0:
    raise ConfigError(
        f'random_mask: density must lie in [0, 1], got {density}')
  return _random_mask(key, shape, mask_count(shape[2], shape[3], density))
