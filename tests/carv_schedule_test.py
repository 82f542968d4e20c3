"""CARV refresh schedule and baselines against direct loops."""

import jax
import numpy as np
import pytest

from jaxvr import carv
from jaxvr.errors import ConfigError, ShapeError
from jaxvr.video.tubes import chunk_bounds, chunk_index


def _flags_loop(rates, num_frames):
  """The accumulator rule written frame by frame, region by region."""
  tidx = chunk_index(rates.shape[0], num_frames)
  acc = np.ones(rates.shape[1:], np.float32)
  out = np.zeros((num_frames,) + rates.shape[1:], bool)
  for f in range(num_frames):
    for i in range(rates.shape[1]):
      for j in range(rates.shape[2]):
        acc[i, j] += rates[tidx[f], i, j]
        if acc[i, j] >= 1 - 1e-6:
          out[f, i, j] = True
          acc[i, j] -= 1
  return out


def test_refresh_rates_normalisation():
  rng = np.random.default_rng(0)
  sig = rng.uniform(2.0, 5.0, (2, 3, 4)).astype(np.float32)
  rates = np.asarray(carv.refresh_rates(sig, 4))
  np.testing.assert_allclose(rates.mean(), 0.25, rtol=1e-6)
  unit = (sig - sig.min()) / (sig.max() - sig.min())
  np.testing.assert_allclose(rates, unit / unit.mean() / 4, rtol=1e-5)
  assert rates.flat[sig.argmin()] == 0.0
  inv = np.asarray(carv.refresh_rates(sig, 4, invert=True))
  np.testing.assert_allclose(inv, (1 - unit) / (1 - unit).mean() / 4,
                             rtol=1e-5)
  assert inv.flat[sig.argmax()] == 0.0 and inv.flat[sig.argmin()] > 0
  const = np.asarray(carv.refresh_rates(np.full((1, 2, 2), 3.0), 5))
  np.testing.assert_allclose(const, 0.2)
  with pytest.raises(ConfigError, match='budget'):
    carv.refresh_rates(sig, 0)
  with pytest.raises(ShapeError, match='significance'):
    carv.refresh_rates(sig[0], 4)


@pytest.mark.parametrize('n,expected', [(4, [0, 3, 7, 11]), (3, [0, 2, 5, 8])])
def test_uniform_rate_refreshes_every_n_frames(n, expected):
  rates = np.full((2, 1, 1), 1.0 / n, np.float32)
  flags = np.asarray(carv.refresh_flags(rates, 12))
  assert np.flatnonzero(flags[:, 0, 0]).tolist()[:4] == expected


def test_refresh_flags_matches_loop_with_uneven_frames():
  rng = np.random.default_rng(1)
  sig = rng.standard_normal((4, 3, 2)).astype(np.float32)
  rates = np.asarray(carv.refresh_rates(sig, 3))
  flags = np.asarray(carv.refresh_flags(rates, 11))  # 11 frames, 4 chunks
  np.testing.assert_array_equal(flags, _flags_loop(rates, 11))
  assert flags[0].all()


def test_apply_refresh_matches_loop_and_stream():
  rng = np.random.default_rng(2)
  video = rng.integers(0, 256, (11, 10, 13, 3), dtype=np.uint8)
  rates = np.asarray(carv.refresh_rates(rng.uniform(size=(4, 3, 4)), 2))
  flags = np.asarray(carv.refresh_flags(rates, 11))
  out = np.asarray(carv.apply_refresh(video, flags))
  assert out.dtype == np.uint8
  bh, bw = chunk_bounds(3, 10), chunk_bounds(4, 13)
  ref = np.zeros_like(video)
  held = np.zeros_like(video[0])
  for f in range(11):
    for i in range(3):
      for j in range(4):
        if flags[f, i, j]:
          region = np.s_[bh[i]:bh[i + 1], bw[j]:bw[j + 1]]
          held[region] = video[f][region]
    ref[f] = held
  np.testing.assert_array_equal(out, ref)
  streamed = np.concatenate(list(carv.apply_refresh_stream(
      iter(video), flags, block=4)))
  np.testing.assert_array_equal(streamed, ref)
  with pytest.raises(ShapeError, match='flags'):
    carv.apply_refresh(video, flags[:5])


def test_every_nth_frame_and_random_chunk():
  every = np.asarray(carv.every_nth_frame_flags(10, (2, 3), 4))
  assert every.shape == (10, 2, 3)
  assert np.flatnonzero(every[:, 1, 2]).tolist() == [0, 4, 8]
  assert (every == every[:, :1, :1]).all()
  rand = np.asarray(carv.nth_random_chunk_flags(jax.random.key(0), 13, (5, 6),
                                                4))
  assert rand[0].all()
  for i in range(5):          # every row and column of chunks takes part
    for j in range(6):
      later = np.flatnonzero(rand[1:, i, j]) + 1
      assert len(later) >= 2 and (np.diff(later) == 4).all()
      assert later[0] <= 4
  phases = {int(np.flatnonzero(rand[1:, i, j])[0] + 1) % 4
            for i in range(5) for j in range(6)}
  assert len(phases) > 1
  with pytest.raises(ConfigError, match='n'):
    carv.every_nth_frame_flags(10, (2, 3), 0)


def test_motion_energy_is_float_and_chunked():
  video = np.zeros((4, 4, 6, 3), np.uint8)
  video[0] = 255      # 255 -> 0 would wrap to 1 in uint8 arithmetic
  video[2, :2] = 10   # top half changes at frames 2 and 3
  energy = np.asarray(carv.motion_energy(video, (2, 2, 3)))
  v = video.astype(np.float64)
  diff = np.abs(np.diff(v, axis=0)).mean(-1)
  diff = np.concatenate([diff[:1], diff])
  ref = diff.reshape(2, 2, 2, 2, 3, 2).mean(axis=(1, 3, 5))
  np.testing.assert_allclose(energy, ref, rtol=1e-6)
  assert energy[0, 0, 0] == pytest.approx((255 + 255) / 2)
  with pytest.raises(ShapeError, match='video'):
    carv.motion_energy(video[:1], (1, 2, 3))


def test_schedule_spends_the_budget():
  rng = np.random.default_rng(3)
  video = rng.uniform(size=(40, 9, 12, 3)).astype(np.float32)
  sig = rng.uniform(size=(4, 3, 4))
  flags = carv.schedule_from_significance(sig, video.shape[0], 5)
  # mean rate 1/N: about T/N refreshes per region, plus the one at frame 0
  per_region = np.asarray(flags).sum(0)
  assert abs(per_region.mean() - (1 + 40 / 5)) <= 1.0
  # the most significant region refreshes more than the least (code default)
  hi, lo = np.unravel_index(sig[0].argmax(), (3, 4)), np.unravel_index(
      sig[0].argmin(), (3, 4))
  assert np.asarray(flags)[:10][:, hi[0], hi[1]].sum() > np.asarray(flags)[
      :10][:, lo[0], lo[1]].sum()
