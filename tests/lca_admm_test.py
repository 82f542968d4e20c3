"""ADMM for the stride-1 convolutional LASSO reaches the same optimum as FISTA."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxvr.lca as lca
from jaxvr.errors import ConfigError, ShapeError

LAM = 0.05


def _problem(t, seed=0, k=6, n=20, kh=5):
  rng = np.random.default_rng(seed)
  kernels = rng.standard_normal((k, t, kh, kh))
  kernels /= np.linalg.norm(kernels.reshape(k, -1), axis=1)[:, None, None, None]
  x = rng.standard_normal((t, n, n))
  return jnp.asarray(x, jnp.float32), jnp.asarray(kernels, jnp.float32)


def _optimum(x, kernels, nonneg=False):
  codes = lca.fista(x, kernels, stride=1, lam=LAM, n_steps=3000, nonneg=nonneg)
  return float(lca.objective(x, kernels, codes, stride=1, lam=LAM))


@pytest.mark.parametrize('t', [1, 2])
def test_reaches_the_fista_optimum(t):
  # t = 1 takes the Sherman-Morrison solve, t = 2 the per-frequency Woodbury.
  x, kernels = _problem(t)
  res = lca.admm_solve(x, kernels, lam=LAM, n_steps=300, return_trace=True)
  fstar = _optimum(x, kernels)
  assert res.codes.shape == lca.code_shape(x.shape, kernels.shape, 1)
  final = float(lca.objective(x, kernels, res.codes, stride=1, lam=LAM))
  assert abs(final - fstar) / fstar < 1e-4
  # The trace is the objective of the returned (sparse) iterate.
  np.testing.assert_allclose(float(res.objective[-1]), final, rtol=1e-5)
  # Far fewer iterations than plain proximal gradient need: 1e-3 within 150.
  gap = (np.asarray(res.objective) - fstar) / fstar
  assert gap[149] < 1e-3


def test_nonneg_and_sparsity():
  x, kernels = _problem(1, seed=1)
  codes = lca.admm(x, kernels, lam=LAM, n_steps=300, nonneg=True)
  assert float(jnp.min(codes)) >= 0
  fstar = _optimum(x, kernels, nonneg=True)
  final = float(lca.objective(x, kernels, codes, stride=1, lam=LAM))
  assert abs(final - fstar) / fstar < 1e-4
  # Soft thresholding leaves exact zeros, as the LASSO optimum has.
  assert 0 < float(jnp.mean(codes != 0)) < 0.5


def test_batched_matches_single_windows():
  x0, kernels = _problem(1, seed=2)
  x1, _ = _problem(1, seed=3)
  batched = lca.admm(jnp.stack([x0, x1]), kernels, lam=LAM, n_steps=40)
  for i, xi in enumerate((x0, x1)):
    np.testing.assert_allclose(batched[i], lca.admm(xi, kernels, lam=LAM,
                                                    n_steps=40),
                               rtol=1e-3, atol=1e-4)


def test_fixed_rho_still_converges_and_jits_with_traced_lam():
  x, kernels = _problem(1, seed=4)
  run = jax.jit(lambda lam: lca.admm_solve(x, kernels, lam=lam, n_steps=400,
                                           rho=1.0).codes)
  codes = run(jnp.float32(LAM))
  final = float(lca.objective(x, kernels, codes, stride=1, lam=LAM))
  assert abs(final - _optimum(x, kernels)) / final < 1e-3


def test_bad_input_is_refused():
  x, kernels = _problem(1)
  with pytest.raises(ConfigError, match='relax'):
    lca.admm_solve(x, kernels, lam=LAM, n_steps=5, relax=2.5)
  with pytest.raises(ConfigError, match='rho'):
    lca.admm(x, kernels, lam=LAM, n_steps=5, rho=-1.0)
  with pytest.raises(ConfigError, match='lam'):
    lca.admm(x, kernels, lam=-0.1, n_steps=5)
  with pytest.raises(ShapeError, match='kernels'):
    lca.admm(x, kernels[:, :, :, :3].repeat(2, axis=1), lam=LAM, n_steps=5)


def test_reaches_the_race_optimum(fixtures_dir):
  # The CSC race problem (128x128 frame, 32 8x8 kernels, lam 0.1) with its
  # optimum F* from an independent float64 solve.
  d = np.load(fixtures_dir / 'csc_race.npz')
  x = jnp.asarray(d['image'][None], jnp.float32)
  kernels = jnp.asarray(d['kernels'][:, None], jnp.float32)
  _, trace = lca.admm(x, kernels, lam=float(d['lam']), n_steps=150,
                      return_trace=True)
  gap = (np.asarray(trace, np.float64) - float(d['Fstar'])) / float(d['Fstar'])
  assert gap[-1] < 1e-3
  assert gap[-1] > -1e-5  # F* is the minimum
