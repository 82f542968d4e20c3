"""Classical restoration baselines for the Sparse MP4 decimation.

What a decoder can do with the same transmitted samples and no learned
prior: fill each kept frame's missing checkerboard sites bilinearly (the
mean of the observed 4-neighbours), then make each dropped frame either a
copy of the previous kept frame or the linear interpolation (mean) of its
two kept neighbours. A trailing dropped frame (even T) copies its
predecessor in both modes.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from jaxvr import errors

MODES = ('linear', 'copy')


def fill_checkerboard(frames, mask):
  """Fills unobserved sites with the mean of their observed 4-neighbours.

  Args:
    frames: ``[N, H, W, C]`` float, anything at unobserved sites.
    mask: bool ``[N, H, W]``, True where observed.

  Returns:
    ``[N, H, W, C]``: observed sites unchanged, others the neighbour mean
    (0 where no neighbour is observed).
  """
  m = mask[..., None].astype(frames.dtype)
  v = frames * m
  pad = ((0, 0), (1, 1), (1, 1), (0, 0))
  vp, mp = jnp.pad(v, pad), jnp.pad(m, pad)

  def neighbours(a):
    return a[:, :-2, 1:-1] + a[:, 2:, 1:-1] + a[:, 1:-1, :-2] + a[:, 1:-1, 2:]

  est = neighbours(vp) / jnp.maximum(neighbours(mp), 1.0)
  return jnp.where(m > 0, frames, est)


@functools.partial(jax.jit, static_argnames=('mode',))
def interpolate(observed, mask, mode: str = 'linear'):
  """Restores a Sparse MP4 decimated video without learning.

  Args:
    observed: ``[T, H, W, C]`` (0..255), zeros at unobserved sites.
    mask: bool ``[T, H, W]`` observation mask (kept frames 0, 2, 4, ...).
    mode: 'linear' (mean of the two kept neighbours) or 'copy' (previous
      kept frame) for the dropped frames.

  Returns:
    float ``[T, H, W, C]`` in 0..255.
  """
  if mode not in MODES:
    raise errors.ConfigError(f'mode: expected one of {MODES}, got {mode!r}')
  observed = jnp.asarray(observed, jnp.float32)
  t = observed.shape[0]
  kept = fill_checkerboard(observed[0::2], mask[0::2])    # [ceil(T/2), ...]
  prev = kept[: t // 2]                                    # before each dropped frame
  nxt = jnp.concatenate([kept[1:], kept[-1:]])[: t // 2]   # after it (or a copy)
  if mode == 'linear':
    has_next = (2 * jnp.arange(t // 2) + 2 < t)[:, None, None, None]
    dropped = jnp.where(has_next, 0.5 * (prev + nxt), prev)
  else:
    dropped = prev
  out = jnp.zeros_like(observed)
  out = out.at[0::2].set(kept)
  return out.at[1::2].set(dropped)
