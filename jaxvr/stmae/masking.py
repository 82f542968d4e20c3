"""Per-sample random token masking of the ST-MAE.

Follows "Masked Autoencoders As Spatiotemporal Learners" (Feichtenhofer, Fan,
Li, He, NeurIPS 2022) and its official code: every sample draws one uniform
noise value per token, keeps the ``len_keep`` tokens with the smallest noise
(in ascending-noise order) and masks the rest.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxvr.errors import ConfigError, ShapeError


class MaskIds(NamedTuple):
  """Token permutation of one masking draw.

  Attributes:
    ids_keep: int32 ``[N, len_keep]`` visible token ids, ascending noise.
    ids_restore: int32 ``[N, L]`` inverse of the ascending-noise permutation.
    mask: float32 ``[N, L]``, 1 = masked (removed), 0 = visible, token order.
  """
  ids_keep: jax.Array
  ids_restore: jax.Array
  mask: jax.Array


def len_keep(num_tokens: int, mask_ratio: float) -> int:
  """Number of visible tokens, ``int(L * (1 - mask_ratio))`` as official.

  The product is computed in Python float64 and truncated, not rounded:
  ``1 - 0.9`` is ``0.09999999999999998``, so ``L = 10`` at ratio 0.9 keeps
  no token and ``L = 1568`` keeps 156.

  Args:
    num_tokens: ``L``.
    mask_ratio: fraction of tokens to mask, in ``[0, 1)``.

  Returns:
    The number of visible tokens, at least 1.

  Raises:
    ConfigError: the ratio is outside ``[0, 1)`` or leaves no visible token.
  """
  ratio = float(mask_ratio)
  if not 0.0 <= ratio < 1.0:
    raise ConfigError(f'mask_ratio: expected a value in [0, 1), got {mask_ratio}')
  keep = int(num_tokens * (1 - ratio))
  if keep < 1:
    raise ConfigError(
        f'mask_ratio: {mask_ratio} leaves no visible token out of {num_tokens} '
        f'(int({num_tokens} * (1 - {mask_ratio})) = {keep}); use a smaller ratio')
  return keep


def sample_noise(key: jax.Array, batch: int, num_tokens: int) -> jax.Array:
  """Uniform ``[0, 1)`` masking noise, float32 ``[batch, num_tokens]``."""
  return jax.random.uniform(key, (batch, num_tokens), jnp.float32)


def ids_from_noise(noise: jax.Array, keep: int) -> MaskIds:
  """Turns masking noise into kept ids, restore ids and the binary mask.

  Args:
    noise: ``[N, L]`` float noise (smallest values are kept).
    keep: number of visible tokens (static), e.g. from :func:`len_keep`.

  Returns:
    :class:`MaskIds`. A stable argsort is used, so ties keep token order.

  Raises:
    ShapeError: ``noise`` is not rank 2.
    ConfigError: ``keep`` is not in ``[1, L]``.
  """
  if noise.ndim != 2:
    raise ShapeError(f'noise: expected [N, L], got shape {tuple(noise.shape)}')
  num_tokens = noise.shape[1]
  if not 1 <= keep <= num_tokens:
    raise ConfigError(f'keep: expected 1..{num_tokens} visible tokens, got {keep}')
  ids_shuffle = jnp.argsort(noise, axis=1, stable=True).astype(jnp.int32)
  positions = jnp.broadcast_to(
      jnp.arange(num_tokens, dtype=jnp.int32), ids_shuffle.shape)
  # Inverse permutation by scatter (same result as a second argsort, cheaper).
  ids_restore = jax.vmap(
      lambda perm, pos: jnp.zeros_like(pos).at[perm].set(pos))(
          ids_shuffle, positions)
  ids_keep = ids_shuffle[:, :keep]
  mask = (ids_restore >= keep).astype(jnp.float32)
  return MaskIds(ids_keep, ids_restore, mask)
