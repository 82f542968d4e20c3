"""CARV chunk significance: against per-sample forwards, batch/device invariance."""


import jax
import numpy as np
import pytest

import jaxvr.stmae as stmae
from jaxvr import carv
from jaxvr.errors import ConfigError, ShapeError
from jaxvr.sharding import make_mesh

N_SAMPLES = 24
RATIO = 0.75


@pytest.fixture(scope='session')
def model(parity_model, parity_arrays):
  params, config = parity_model
  video = parity_arrays['input'][0].transpose(1, 2, 3, 0)  # C,T,H,W -> T,H,W,C
  return config, params, video


@pytest.fixture(scope='session')
def reference(model):
  """Both estimators from one official-style forward per mask."""
  config, params, video = model
  key = jax.random.key(7)
  noise = np.stack([np.asarray(jax.random.uniform(
      jax.random.fold_in(key, i), (config.num_tokens,)))
                    for i in range(N_SAMPLES)])
  out = stmae.forward(params, config, np.repeat(video[None], N_SAMPLES, 0),
                      noise=noise, mask_ratio=RATIO)
  mask = np.asarray(out.mask, np.float64)
  vis = 1 - mask
  per_token = np.asarray(out.per_token_loss, np.float64)
  # the official per-sample loss: masked mean of the per-token errors
  sample = (per_token * mask).sum(1) / mask.sum(1)
  visible = (sample[:, None] * vis).sum(0) / vis.sum(0)
  masked = (per_token * mask).sum(0) / mask.sum(0)
  assert vis.sum(0).min() > 0 and mask.sum(0).min() > 0
  return key, visible.reshape(config.grid), masked.reshape(config.grid)


@pytest.mark.parametrize('n_devices,batch_size', [(2, 3), (8, 5)])
def test_matches_per_sample_forward(model, reference, n_devices, batch_size):
  config, params, video = model
  key, visible, masked = reference
  sums = carv.significance_sums(params, config, video, key,
                                n_samples=N_SAMPLES, mask_ratio=RATIO,
                                batch_size=batch_size,
                                mesh=make_mesh(n_devices), progress=False)
  got_v = carv.significance_from_sums(sums, 'visible', config.grid, N_SAMPLES)
  got_m = carv.significance_from_sums(sums, 'masked', config.grid, N_SAMPLES)
  assert got_v.shape == config.grid
  np.testing.assert_allclose(np.asarray(got_v), visible, rtol=1e-5)
  np.testing.assert_allclose(np.asarray(got_m), masked, rtol=1e-5)
  # every sample counted once: L * len_keep visible slots in total
  assert float(sums['n_visible'].sum()) == N_SAMPLES * 16


def test_estimate_significance_one_device(model, reference):
  config, params, video = model
  key, visible, _ = reference
  got = carv.estimate_significance(params, config, video, key,
                                   n_samples=N_SAMPLES, mask_ratio=RATIO,
                                   batch_size=None, estimator='visible',
                                   mesh=make_mesh(1), progress=True)
  np.testing.assert_allclose(np.asarray(got), visible, rtol=1e-5)


def test_unseen_chunks_get_the_mean_loss():
  sums = {'loss_visible': np.array([6.0, 0.0]), 'n_visible': np.array([2., 0.]),
          'error_masked': np.array([0.0, 4.0]), 'n_masked': np.array([0., 2.]),
          'loss_total': np.float32(10.0)}
  vis = carv.significance_from_sums(sums, 'visible', (1, 1, 2), 4)
  msk = carv.significance_from_sums(sums, 'masked', (1, 1, 2), 4)
  np.testing.assert_allclose(np.asarray(vis).ravel(), [3.0, 2.5])
  np.testing.assert_allclose(np.asarray(msk).ravel(), [2.5, 2.0])


def test_batch_size_rounding():
  assert carv.resolve_batch_size(None, 500, 8) == 64  # CPU: 8 per device
  assert carv.resolve_batch_size(5, 500, 2) == 6
  with pytest.raises(ConfigError, match='batch_size'):
    carv.resolve_batch_size(0, 10, 1)


def test_bad_inputs(model):
  config, params, video = model
  key = jax.random.key(0)
  kw = dict(n_samples=4, mask_ratio=RATIO)
  with pytest.raises(ShapeError, match='video'):
    carv.estimate_significance(params, config, video[None], key, **kw)
  with pytest.raises(ShapeError, match='video'):
    carv.estimate_significance(params, config, video.astype(np.uint8), key,
                               **kw)
  with pytest.raises(ConfigError, match='estimator'):
    carv.estimate_significance(params, config, video, key, estimator='max',
                               **kw)
  with pytest.raises(ConfigError, match='n_samples'):
    carv.estimate_significance(params, config, video, key, n_samples=0,
                               mask_ratio=RATIO)
  with pytest.raises(ConfigError, match='no visible token'):
    carv.estimate_significance(params, config, video, key, n_samples=4,
                               mask_ratio=0.99)


@pytest.mark.slow
def test_bfloat16_map_rank_agrees_at_bench_config():
  """bfloat16 compute keeps the chunk ranking (Spearman >= 0.99)."""
  import dataclasses

  config = stmae.STMAEConfig(
      img_size=112, patch_size=16, embed_dim=192, depth=4, num_heads=3,
      decoder_embed_dim=128, decoder_depth=2, decoder_num_heads=4,
      num_frames=16, t_patch_size=2, pred_t_dim=8, cls_embed=True,
      sep_pos_embed=True, norm_pix_loss=True)
  params = stmae.init_params(config, jax.random.key(0))
  t, y, x = np.meshgrid(np.arange(16), np.arange(112), np.arange(112),
                        indexing='ij')
  clip = np.stack([np.sin((x + 3 * t) / 9.0), np.cos((y - 2 * t) / 7.0),
                   np.sin((x + y) / 13.0 + t / 4)], -1)
  clip = ((clip * 0.5 + 0.5 - 0.45) / 0.225).astype(np.float32)
  key = jax.random.key(1)
  maps = [carv.estimate_significance(
      params, dataclasses.replace(config, dtype=dt), clip, key,
      n_samples=200, mask_ratio=0.98, progress=False)
          for dt in ('float32', 'bfloat16')]
  assert maps[0].shape == (8, 7, 7)
  assert carv.spearman(*maps) >= 0.99
