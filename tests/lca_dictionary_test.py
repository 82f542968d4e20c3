"""Hebbian dictionary learning (jaxvr.lca.dictionary)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvr.errors import ConfigError
from jaxvr.lca import dictionary as dl
from jaxvr.lca import fista, objective


@pytest.fixture(scope='session')
def ref_a(fixtures_dir):
  return dict(np.load(fixtures_dir / 'lca_ref_a.npz'))


def test_hebbian_term_matches_fixture(ref_a):
  with jax.enable_x64(True):
    for prefix, mask in (('', None), ('masked_', ref_a['mask'])):
      h = dl.hebbian(ref_a['x'], ref_a['kernels'], ref_a[prefix + 'codes_lam1'],
                     stride=2, mask=mask)
      name = 'hebbian_masked_lam1' if mask is not None else 'hebbian_full_lam1'
      np.testing.assert_allclose(h, ref_a[name], rtol=0, atol=1e-10)
    counts = dl.activity_counts(jnp.asarray(ref_a['codes_lam1']))
    np.testing.assert_array_equal(counts, ref_a['times_active_full_lam1'])
    new = dl.lcapt_update(ref_a['kernels'], ref_a['x'], ref_a['codes_lam1'],
                          stride=2, eta=float(ref_a['lcapt_style_eta']))
    np.testing.assert_allclose(new, ref_a['lcapt_style_updated_kernels_full_lam1'],
                               rtol=0, atol=1e-12)


def test_hebbian_update_rule(ref_a):
  """Momentum and per-feature count scaling follow the documented formula."""
  with jax.enable_x64(True):
    state = dl.init_state(ref_a['kernels'])
    state = state._replace(velocity=jnp.full_like(state.kernels, 0.01))
    lr, tau = 0.5, 4.0
    new = dl.hebbian_update(state, ref_a['x'], ref_a['codes_lam1'], stride=2,
                            lr=lr, momentum='viscosity', momentum_tau=tau,
                            decay=0.1)
    m = np.exp(-1 / tau)
    count = np.maximum(ref_a['times_active_full_lam1'], 1)[:, None, None, None]
    w0 = np.asarray(state.kernels)
    dw = ((1 - m) * lr * ref_a['hebbian_full_lam1'] / count + m * 0.01
          - 0.1 * w0)
    want = w0 + dw
    want /= np.sqrt((want ** 2).sum(axis=(1, 2, 3), keepdims=True))
    np.testing.assert_allclose(new.kernels, want, atol=1e-10)
    np.testing.assert_allclose(new.velocity, dw, atol=1e-10)
    assert int(new.step) == 1
  with pytest.raises(ConfigError, match='momentum'):
    dl.hebbian_update(state, ref_a['x'], ref_a['codes_lam1'], stride=2, lr=0.1,
                      momentum='adam')
  with pytest.raises(ConfigError, match='momentum_tau'):
    dl.hebbian_update(state, ref_a['x'], ref_a['codes_lam1'], stride=2, lr=0.1,
                      momentum='simple', momentum_tau=1.5)


def _moving_windows(fixtures_dir, n=6, size=16):
  """3-frame windows of a real image translating by one pixel per frame."""
  img = np.load(fixtures_dir / 'csc_race.npz')['image_before_highpass']
  rng = np.random.default_rng(0)
  out = []
  for _ in range(n):
    r, c = rng.integers(0, img.shape[0] - size - 3, 2)
    dy, dx = rng.integers(-1, 2, 2)
    frames = [img[r + 1 + t * dy:r + 1 + t * dy + size,
                  c + 1 + t * dx:c + 1 + t * dx + size] for t in range(3)]
    win = np.stack(frames)
    out.append((win - win.mean()) / win.std())
  return np.stack(out).astype(np.float32)


def test_learning_reduces_error_and_keeps_unit_norm(fixtures_dir):
  x = _moving_windows(fixtures_dir)
  w0 = np.random.default_rng(1).standard_normal((12, 3, 6, 6))
  state = dl.init_state(jnp.asarray(w0, jnp.float32))
  kw = dict(stride=2, lam=0.3, lr=0.5, n_steps=40, solver='fista',
            momentum='simple', momentum_tau=0.5)
  history = []
  for _ in range(8):
    state, metrics = dl.learn_step(state, x, **kw)
    history.append(float(metrics['objective']))
  norms = np.sqrt((np.asarray(state.kernels) ** 2).sum(axis=(1, 2, 3)))
  np.testing.assert_allclose(norms, 1.0, atol=1e-5)
  assert int(state.step) == 8
  # Re-coded with the learned kernels, the batch costs clearly less.
  def coded_cost(kernels):
    codes = fista(x, kernels, stride=2, lam=0.3, n_steps=40)
    return float(jnp.mean(objective(x, kernels, codes, stride=2, lam=0.3)))

  before = coded_cost(dl.normalize(jnp.asarray(w0, jnp.float32)))
  after = coded_cost(state.kernels)
  assert after < 0.9 * before
  assert history[0] == pytest.approx(before, rel=1e-4)
  assert history[-1] < history[0]
