"""MSE and PSNR against the reference fixture (float64 NumPy values)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvr import errors, metrics

CASES = ('codec', 'blurnoise')


@pytest.mark.parametrize('case', CASES)
def test_float64_matches_fixture(metrics_ref, case):
  r, d = metrics_ref[f'{case}__ref'], metrics_ref[f'{case}__dis']
  mse = metrics.mse(r, d, dtype=jnp.float64)
  psnr = metrics.psnr(r, d, dtype=jnp.float64)
  assert mse.dtype == jnp.float64 and mse.shape == (r.shape[0],)
  np.testing.assert_allclose(mse, metrics_ref[f'{case}__mse_per_frame'], rtol=1e-12)
  np.testing.assert_allclose(psnr, metrics_ref[f'{case}__psnr_per_frame'], rtol=1e-12)
  np.testing.assert_allclose(metrics.mse_clip(r, d, dtype=jnp.float64),
                             metrics_ref[f'{case}__mse_clip'], rtol=1e-12)
  for conv in ('mean', 'from_mse'):
    got = metrics.psnr_clip(r, d, convention=conv, dtype=jnp.float64)
    np.testing.assert_allclose(got, metrics_ref[f'{case}__psnr_clip_{conv}'], rtol=1e-12)
  # x64 was only enabled for the call.
  assert not jax.config.jax_enable_x64


@pytest.mark.parametrize('case', CASES)
def test_float32_matches_fixture(metrics_ref, case):
  r, d = metrics_ref[f'{case}__ref'], metrics_ref[f'{case}__dis']
  mse = metrics.mse(r, d)
  assert mse.dtype == jnp.float32
  np.testing.assert_allclose(mse, metrics_ref[f'{case}__mse_per_frame'], rtol=1e-6)
  np.testing.assert_allclose(metrics.psnr(r, d), metrics_ref[f'{case}__psnr_per_frame'],
                             rtol=1e-6)
  mean = float(metrics.psnr_clip(r, d, convention='mean'))
  from_mse = float(metrics.psnr_clip(r, d, convention='from_mse'))
  assert mean == pytest.approx(metrics_ref[f'{case}__psnr_clip_mean'], rel=1e-6)
  assert from_mse == pytest.approx(metrics_ref[f'{case}__psnr_clip_from_mse'], rel=1e-6)
  assert mean > from_mse  # Jensen: the two conventions really differ.


def test_channels_and_data_range(metrics_ref):
  r = metrics_ref['codec__ref'][:3].astype(np.float64)
  d = metrics_ref['codec__dis'][:3].astype(np.float64)
  rgb_r = np.stack([r, r[:, ::-1], 255 - r], axis=-1)
  rgb_d = np.stack([d, d[:, ::-1], 255 - d], axis=-1)
  expected = np.mean((rgb_r - rgb_d) ** 2, axis=(1, 2, 3))
  np.testing.assert_allclose(metrics.mse(rgb_r, rgb_d, dtype=jnp.float64), expected,
                             rtol=1e-12)
  np.testing.assert_allclose(metrics.mse(rgb_r, rgb_d, dtype=jnp.float64),
                             metrics.mse(r, d, dtype=jnp.float64), rtol=1e-12)
  # PSNR is invariant to rescaling data and peak together.
  np.testing.assert_allclose(metrics.psnr(r / 255, d / 255, data_range=1.0),
                             metrics.psnr(r, d), rtol=1e-5)


def test_identical_gives_zero_and_inf(metrics_ref):
  r = metrics_ref['blurnoise__ref']
  assert np.all(np.asarray(metrics.mse(r, r)) == 0)
  assert np.all(np.isposinf(np.asarray(metrics.psnr(r, r))))


def test_jittable(metrics_ref):
  r = jnp.asarray(metrics_ref['blurnoise__ref'])
  d = jnp.asarray(metrics_ref['blurnoise__dis'])
  f = jax.jit(lambda a, b: (metrics.psnr(a, b),
                            metrics.psnr_clip(a, b, convention='from_mse')))
  per_frame, clip = f(r, d)
  np.testing.assert_allclose(per_frame, metrics.psnr(r, d), rtol=1e-6)
  assert float(clip) == pytest.approx(metrics_ref['blurnoise__psnr_clip_from_mse'],
                                      rel=1e-6)


def test_bad_input():
  a = np.zeros((2, 8, 8), np.uint8)
  with pytest.raises(errors.ShapeError, match='dist'):
    metrics.psnr(a, np.zeros((2, 8, 9), np.uint8))
  with pytest.raises(errors.ShapeError, match='rank'):
    metrics.mse(a[0], a[0])
  with pytest.raises(errors.ShapeError, match='dtype'):
    metrics.mse(a.astype(bool), a.astype(bool))
  with pytest.raises(errors.ConfigError, match='convention'):
    metrics.psnr_clip(a, a, convention='median')
  with pytest.raises(errors.ConfigError, match='dtype'):
    metrics.mse(a, a, dtype=np.int32)
