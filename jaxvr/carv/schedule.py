"""CARV refresh schedule: per-chunk refresh rates applied to a video.

Chhabra & Yang, "Algorithmic Video Reduction by Estimating Chunk Significance
Using Spatial-Temporal Masked Auto Encoders".

1. :func:`refresh_rates` turns a significance map ``[t', h', w']`` into rates:
   min-max to ``[0, 1]``, divide by the mean, divide by the budget ``N``, so
   that on average a chunk refreshes once every ``N`` frames. By default a
   higher significance (higher ST-MAE loss) gives a higher rate, as the
   authors' released code does; the paper's text describes the opposite
   (rarely changing, low-loss chunks refreshed more); ``invert=True`` follows
   the text (it uses ``1 - s`` after the min-max step). After min-max the
   least significant chunk has rate 0 and is only sent at frame 0.
2. :func:`refresh_flags` runs the accumulator as a ``lax.scan`` over frames:
   each spatial chunk region of the full-resolution video keeps an
   accumulator that starts at 1; at every frame it adds the rate of its chunk
   (the temporal chunk is the one containing the frame, by the
   :mod:`jaxvr.video.tubes` chunk convention); when the accumulator reaches 1
   (``>= 1 - 1e-6``, absorbing float32 rounding of repeated sums) the region
   is refreshed and 1 is subtracted. Frame 0 is therefore always refreshed.
3. :func:`apply_refresh` builds the reduced video: a refreshed region takes
   the current frame, the others keep their last refreshed content.
   :func:`apply_refresh_stream` does the same block by block for long videos.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator

import jax
import jax.numpy as jnp
import numpy as np

from jaxvr.errors import ConfigError, ShapeError
from jaxvr.video.tubes import chunk_index

TOLERANCE = 1e-6


def refresh_rates(significance: jax.Array, budget: float, *,
                  invert: bool = False) -> jax.Array:
  """Per-chunk refresh rates from a significance map.

  Args:
    significance: ``[t', h', w']`` map (any real values).
    budget: ``N``; on average a chunk is refreshed once every ``N`` frames.
    invert: refresh low-significance chunks more (the paper's text) instead
      of high-significance ones (the released code, default).

  Returns:
    float32 ``[t', h', w']`` rates with mean ``1 / N``. A constant map gives
    every chunk the rate ``1 / N``.

  Raises:
    ShapeError: the map is not rank 3.
    ConfigError: ``budget`` is not positive.
  """
  if np.ndim(significance) != 3:
    raise ShapeError(f"significance: expected [t', h', w'], got shape "
                     f'{np.shape(significance)}')
  if not float(budget) > 0:
    raise ConfigError(f'budget: expected a positive number of frames, got '
                      f'{budget}')
  s = jnp.asarray(significance, jnp.float32)
  lo, hi = s.min(), s.max()
  span = hi - lo
  unit = jnp.where(span > 0, (s - lo) / jnp.where(span > 0, span, 1.0), 1.0)
  if invert:
    unit = jnp.where(span > 0, 1.0 - unit, 1.0)
  return unit / unit.mean() / jnp.float32(budget)


@functools.partial(jax.jit, static_argnames=('num_frames',))
def refresh_flags(rates: jax.Array, num_frames: int) -> jax.Array:
  """Which chunk regions are refreshed at each frame (accumulator scan).

  Args:
    rates: ``[t', h', w']`` per-chunk rates (:func:`refresh_rates`).
    num_frames: ``T`` frames of the full-length video (``>= t'``).

  Returns:
    bool ``[T, h', w']``; frame ``f`` uses temporal chunk
    ``chunk_index(t', T)[f]``.
  """
  per_frame = jnp.asarray(rates, jnp.float32)[
      jnp.asarray(chunk_index(rates.shape[0], num_frames))]

  def step(acc, rate):
    acc = acc + rate
    fire = acc >= 1.0 - TOLERANCE
    return jnp.where(fire, acc - 1.0, acc), fire

  _, flags = jax.lax.scan(step, jnp.ones(rates.shape[1:], jnp.float32),
                          per_frame)
  return flags


def _pixel_masks(flags: jax.Array, height: int, width: int) -> jax.Array:
  """``[F, h', w']`` chunk flags -> ``[F, H, W]`` pixel flags."""
  hi = jnp.asarray(chunk_index(flags.shape[1], height))
  wi = jnp.asarray(chunk_index(flags.shape[2], width))
  return flags[:, hi][:, :, wi]


@jax.jit
def _apply_block(held: jax.Array, frames: jax.Array, flags: jax.Array):
  masks = _pixel_masks(flags, frames.shape[1], frames.shape[2])

  def step(prev, xs):
    frame, mask = xs
    out = jnp.where(mask[..., None], frame, prev)
    return out, out

  return jax.lax.scan(step, held, (frames, masks))


def _check(video, flags) -> None:
  if np.ndim(video) != 4:
    raise ShapeError(f'video: expected [T, H, W, C], got shape '
                     f'{np.shape(video)}')
  if np.ndim(flags) != 3 or np.shape(flags)[0] != np.shape(video)[0]:
    raise ShapeError(f"flags: expected [T={np.shape(video)[0]}, h', w'], got "
                     f'shape {np.shape(flags)}')
  _, h, w = np.shape(flags)
  if h > np.shape(video)[1] or w > np.shape(video)[2]:
    raise ShapeError(f'flags: {h}x{w} chunks do not fit frames of '
                     f'{np.shape(video)[1]}x{np.shape(video)[2]}')


def apply_refresh(video: jax.Array, flags: jax.Array) -> jax.Array:
  """Reduced video: refreshed regions take the frame, others hold.

  Args:
    video: ``[T, H, W, C]`` full-resolution video (any size and dtype).
    flags: bool ``[T, h', w']`` from :func:`refresh_flags` or a baseline;
      frame 0 should be all True (otherwise unrefreshed regions start black).

  Returns:
    ``[T, H, W, C]`` video of the same dtype.
  """
  _check(video, flags)
  video = jnp.asarray(video)
  _, out = _apply_block(jnp.zeros_like(video[0]), video, jnp.asarray(flags))
  return out


def apply_refresh_stream(frames: Iterable[np.ndarray], flags: jax.Array, *,
                         block: int = 32) -> Iterator[np.ndarray]:
  """:func:`apply_refresh` over a stream of frames, ``block`` at a time.

  Args:
    frames: iterable of ``[H, W, C]`` frames (or ``[B, H, W, C]`` blocks);
      at most ``len(flags)`` frames in total.
    flags: bool ``[T, h', w']`` for the whole video.
    block: frames per device call (bounds memory).

  Yields:
    Reduced frames as NumPy ``[b, H, W, C]`` blocks, in order.
  """
  flags = np.asarray(flags)
  held, pos, pending = None, 0, []

  def flush(chunk):
    nonlocal held, pos
    if pos + len(chunk) > len(flags):
      raise ShapeError(f'frames: more frames than flags ({len(flags)})')
    _check(chunk, flags[pos:pos + len(chunk)])
    if held is None:
      held = jnp.zeros_like(jnp.asarray(chunk[0]))
    held, out = _apply_block(held, jnp.asarray(chunk),
                             jnp.asarray(flags[pos:pos + len(chunk)]))
    pos += len(chunk)
    return np.asarray(out)

  for item in frames:
    item = np.asarray(item)
    pending.extend(item if item.ndim == 4 else [item])
    while len(pending) >= block:
      chunk, pending = np.stack(pending[:block]), pending[block:]
      yield flush(chunk)
  if pending:
    yield flush(np.stack(pending))


def refresh_fraction(flags: jax.Array) -> float:
  """Fraction of chunk regions refreshed over all frames (the spent budget)."""
  return float(jnp.mean(jnp.asarray(flags, jnp.float32)))


def schedule_from_significance(significance: jax.Array, num_frames: int,
                               budget: float, *,
                               invert: bool = False) -> jax.Array:
  """:func:`refresh_rates` then :func:`refresh_flags`: bool ``[T, h', w']``."""
  rates = refresh_rates(significance, budget, invert=invert)
  if num_frames < rates.shape[0]:
    raise ShapeError(f'num_frames: expected at least {rates.shape[0]} frames '
                     f"(one per temporal chunk), got {num_frames}")
  return refresh_flags(rates, int(num_frames))
