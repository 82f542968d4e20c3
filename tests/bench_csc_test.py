"""The CSC race's shared objective and stopping clock (eval.csc_race)."""

import numpy as np

import jaxvr.lca as lca
from eval import csc_race


def _optimum(fixtures_dir):
  d = np.load(fixtures_dir / 'csc_race.npz')
  codes = np.zeros(tuple(d['code_shape']))
  codes.flat[d['opt_flat_index']] = d['opt_value']
  return codes


def test_objective_matches_jaxvr_on_valid_codes(fixtures_dir):
  p = csc_race.load(fixtures_dir)
  op = csc_race.FftOp(p['kernels'], 128)
  codes = np.random.default_rng(0).standard_normal((32, 121, 121)) * 0.01
  want = float(lca.objective(p['x'][None], p['kernels'][:, None], codes,
                             stride=1, lam=p['lam']))
  got = csc_race.objective(op, p['x'], p['lam'], codes)
  assert abs(got - want) < 1e-4 * abs(want)
  # the pixel-grid layout of the same codes gives the same value
  grid = csc_race.on_pixel_grid(codes, 128)
  assert csc_race.objective(op, p['x'], p['lam'], grid) == got
  np.testing.assert_allclose(op.adjoint(op.synth(grid))[:, 121:], 0)


def test_gap_clock_records_first_iterate_under_each_tolerance(fixtures_dir):
  p = csc_race.load(fixtures_dir)
  opt = _optimum(fixtures_dir)
  # F(s a*) - F* = (1 - s)^2 / 2 ||Phi a*||^2 (s = 1 is optimal on the ray):
  # this s puts the gap at 5e-3, between the two tolerances
  energy = np.sum(csc_race.FftOp(p['kernels'], 128).synth(
      csc_race.on_pixel_grid(opt, 128)) ** 2)
  s = 1 - np.sqrt(2 * 5e-3 * p['fstar'] / energy)
  clock = csc_race.GapClock(p, (1e-2, 1e-3))
  assert not clock(1, np.zeros_like(opt))
  assert not clock(2, s * opt)
  assert 1e-2 in clock.hits and 1e-3 not in clock.hits
  assert clock(3, opt)
  assert clock.hits[1e-2]['iters'] == 2 and clock.hits[1e-3]['iters'] == 3
  assert 4e-3 < clock.hits[1e-2]['gap'] < 6e-3
  assert abs(clock.hits[1e-3]['gap']) < 1e-9
  # the checks themselves are not on the clock
  assert 0 <= clock.hits[1e-3]['seconds'] < clock.excluded
