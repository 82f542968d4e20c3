"""Baselines for CARV at the same refresh budget.

Chhabra & Yang, "Algorithmic Video Reduction by Estimating Chunk Significance
Using Spatial-Temporal Masked Auto Encoders", compare CARV with:

* **Every Nth frame**: the whole frame is refreshed at frames ``0, N, 2N, ...``.
* **Nth random chunk**: every chunk region is refreshed every ``N`` frames
  with its own random phase ``phi`` in ``[0, N)``: at frames ``f`` with
  ``f = phi (mod N)``, plus frame 0 for all (so that every region has content;
  this adds at most one refresh per region over the whole video). Every chunk
  row and column takes part (the released code's indentation slip refreshed
  only one row of chunks).

And a control they do not have:

* **Motion energy**: a significance map from the mean absolute temporal
  difference of each chunk, fed to the same :mod:`jaxvr.carv.schedule` as
  the ST-MAE map. If CARV does no better than this, the ST-MAE adds nothing
  over a trivial signal. Differences are taken in float32 (never on uint8,
  which wraps around).

All flag arrays are bool ``[T, h', w']``, as :func:`schedule.refresh_flags`
returns, ready for :func:`schedule.apply_refresh`.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxvr.errors import ConfigError, ShapeError
from jaxvr.video.tubes import chunk_means


def _check_budget(n) -> int:
  if int(n) != n or int(n) < 1:
    raise ConfigError(f'n: expected a positive whole number of frames, got {n}')
  return int(n)


def _check_grid(grid_hw: Sequence[int]) -> tuple[int, int]:
  if len(grid_hw) != 2 or any(int(g) < 1 for g in grid_hw):
    raise ShapeError(f"grid_hw: expected (h', w') chunk counts, got {grid_hw}")
  return int(grid_hw[0]), int(grid_hw[1])


def every_nth_frame_flags(num_frames: int, grid_hw: Sequence[int],
                          n: int) -> jax.Array:
  """Whole frames at ``0, N, 2N, ...``: bool ``[T, h', w']``."""
  n = _check_budget(n)
  h, w = _check_grid(grid_hw)
  fire = jnp.arange(num_frames) % n == 0
  return jnp.broadcast_to(fire[:, None, None], (num_frames, h, w))


def nth_random_chunk_flags(key: jax.Array, num_frames: int,
                           grid_hw: Sequence[int], n: int) -> jax.Array:
  """Every chunk every ``N`` frames with a random phase: bool ``[T, h', w']``.

  Args:
    key: random key for the phases.
    num_frames: ``T``.
    grid_hw: ``(h', w')`` chunk regions per frame.
    n: refresh period ``N``.

  Returns:
    Flags, True at frame 0 and where ``f = phase (mod N)``.
  """
  n = _check_budget(n)
  h, w = _check_grid(grid_hw)
  phase = jax.random.randint(key, (h, w), 0, n)
  f = jnp.arange(num_frames)[:, None, None]
  return (f == 0) | ((f - phase[None]) % n == 0)


def motion_energy(video: jax.Array, grid: Sequence[int]) -> jax.Array:
  """Per-chunk mean absolute temporal difference.

  Args:
    video: ``[T, H, W, C]`` (any dtype; converted to float32 first), ``T >= 2``.
    grid: ``(t', h', w')`` chunk grid (e.g. the ST-MAE token grid).

  Returns:
    float32 ``[t', h', w']``: frame ``f >= 1`` contributes
    ``mean_c |v[f] - v[f-1]|`` to its chunk; frame 0 reuses the difference
    of frame 1, so every temporal chunk has values.
  """
  if np.ndim(video) != 4 or np.shape(video)[0] < 2:
    raise ShapeError(f'video: expected [T >= 2, H, W, C], got shape '
                     f'{np.shape(video)}')
  v = jnp.asarray(video, jnp.float32)
  diff = jnp.abs(v[1:] - v[:-1]).mean(axis=-1)
  diff = jnp.concatenate([diff[:1], diff], axis=0)
  return chunk_means(diff, tuple(grid))
