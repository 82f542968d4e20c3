"""SSIM (Wang settings) against the scikit-image reference fixture."""

import importlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvr import errors, metrics

CASES = ('codec', 'blurnoise')


@pytest.mark.parametrize('case', CASES)
def test_float64_matches_fixture(metrics_ref, case):
  r, d = metrics_ref[f'{case}__ref'], metrics_ref[f'{case}__dis']
  per_frame, maps = metrics.ssim(r, d, return_map=True, dtype=jnp.float64)
  t, h, w = r.shape
  assert per_frame.dtype == jnp.float64 and maps.shape == (t, h - 10, w - 10)
  np.testing.assert_allclose(per_frame, metrics_ref[f'{case}__ssim_per_frame'],
                             rtol=0, atol=1e-9)
  np.testing.assert_allclose(maps[0], metrics_ref[f'{case}__ssim_map_frame0'],
                             rtol=0, atol=1e-9)
  assert float(metrics.ssim_clip(r, d, dtype=jnp.float64)) == pytest.approx(
      metrics_ref[f'{case}__ssim_clip_mean'], abs=1e-9)
  assert not jax.config.jax_enable_x64


@pytest.mark.parametrize('case', CASES)
def test_float32_matches_fixture(metrics_ref, case):
  r, d = metrics_ref[f'{case}__ref'], metrics_ref[f'{case}__dis']
  per_frame, maps = metrics.ssim(r, d, return_map=True)
  assert per_frame.dtype == jnp.float32
  np.testing.assert_allclose(per_frame, metrics_ref[f'{case}__ssim_per_frame'],
                             rtol=0, atol=1e-5)
  np.testing.assert_allclose(maps[0], metrics_ref[f'{case}__ssim_map_frame0'],
                             rtol=0, atol=5e-4)
  assert float(metrics.ssim_clip(r, d)) == pytest.approx(
      metrics_ref[f'{case}__ssim_clip_mean'], abs=1e-5)


def test_matches_scikit_image_on_other_data(metrics_ref):
  skm = pytest.importorskip('skimage.metrics')
  # A different pair than the fixture values: swapped roles, shifted frames.
  r = metrics_ref['blurnoise__dis'][1:4].astype(np.float64)
  d = metrics_ref['blurnoise__ref'][:3].astype(np.float64)
  want = [skm.structural_similarity(a, b, gaussian_weights=True, sigma=1.5,
                                    use_sample_covariance=False, data_range=255)
          for a, b in zip(r, d, strict=True)]
  np.testing.assert_allclose(metrics.ssim(r, d, dtype=jnp.float64), want,
                             rtol=0, atol=1e-9)


def test_properties(metrics_ref):
  r, d = metrics_ref['blurnoise__ref'], metrics_ref['blurnoise__dis']
  same = np.asarray(metrics.ssim(r, r))
  assert np.all(same == 1.0)
  np.testing.assert_allclose(metrics.ssim(r, d), metrics.ssim(d, r), atol=1e-6)
  # A worse distortion scores lower (higher is better).
  noisy = np.clip(d.astype(np.float64) + 3 * (d.astype(np.float64) - r), 0, 255)
  assert np.all(np.asarray(metrics.ssim(r, noisy)) < np.asarray(metrics.ssim(r, d)))


def test_jittable(metrics_ref):
  r = jnp.asarray(metrics_ref['blurnoise__ref'])
  d = jnp.asarray(metrics_ref['blurnoise__dis'])
  got = jax.jit(metrics.ssim)(r, d)
  np.testing.assert_allclose(got, metrics_ref['blurnoise__ssim_per_frame'], atol=1e-5)


def test_steps_do_not_change_the_result(metrics_ref, monkeypatch):
  mod = importlib.import_module('jaxvr.metrics.ssim')
  r, d = metrics_ref['blurnoise__ref'], metrics_ref['blurnoise__dis']
  whole, whole_maps = metrics.ssim(r, d, return_map=True)
  assert mod._steps(r, jnp.float32) == [(0, r.shape[0])]
  # One frame per step at most: 9 frames in steps of 1.
  monkeypatch.setattr(mod, 'CPU_STEP_BYTES', 1)
  assert len(mod._steps(r, jnp.float32)) == r.shape[0]
  stepped, stepped_maps = metrics.ssim(r, d, return_map=True)
  np.testing.assert_allclose(stepped, whole, rtol=0, atol=1e-7)
  np.testing.assert_allclose(stepped_maps, whole_maps, rtol=0, atol=1e-6)
  # Under an outer jit the clip is one step whatever the budget.
  np.testing.assert_allclose(jax.jit(metrics.ssim)(r, d), whole, rtol=0, atol=1e-6)


def test_bad_input():
  a = np.zeros((2, 16, 16), np.uint8)
  with pytest.raises(errors.SizeError, match='11x11'):
    metrics.ssim(a[:, :10], a[:, :10])
  with pytest.raises(errors.ShapeError, match='dist'):
    metrics.ssim(a, a[:1])
  with pytest.raises(errors.ShapeError, match='rank'):
    metrics.ssim(a[..., None], a[..., None])
