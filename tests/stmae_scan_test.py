"""ST-MAE per-block remat and scanned blocks: same function, two layouts."""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvr import stmae
from jaxvr.configs import stmae as stmae_configs
from jaxvr.errors import CheckpointError, ConfigError
from jaxvr.stmae.forward import forward_unjitted
from jaxvr.training import stmae as trainer

CONFIG = stmae.STMAEConfig(
    img_size=16, patch_size=8, embed_dim=32, depth=2, num_heads=2,
    decoder_embed_dim=16, decoder_depth=2, decoder_num_heads=2, num_frames=4,
    t_patch_size=2, pred_t_dim=4, cls_embed=True, sep_pos_embed=True,
    norm_pix_loss=True)


@functools.partial(jax.jit, static_argnums=0,
                   compiler_options={'xla_backend_optimization_level': 0})
def _loss_and_grad(config, params, video, noise):
  loss = lambda p: forward_unjitted(p, config, video, noise, 0.5).loss
  return jax.value_and_grad(loss)(params)


@pytest.fixture(scope='module')
def setup():
  params = stmae.init_params(CONFIG, jax.random.key(0))
  video = jax.random.normal(jax.random.key(1), (2,) + CONFIG.video_shape)
  noise = stmae.sample_noise(jax.random.key(2), 2, CONFIG.num_tokens)
  return params, video, noise, _loss_and_grad(CONFIG, params, video, noise)


@pytest.mark.parametrize('remat,scan', [('dots', True), ('full', False)])
def test_remat_and_scan_give_the_same_loss_and_gradient(setup, remat, scan):
  params, video, noise, (want_loss, want_grads) = setup
  config = dataclasses.replace(CONFIG, remat=remat, scan_blocks=scan)
  layout = stmae.stack_blocks(params, config) if scan else params
  loss, grads = _loss_and_grad(config, layout, video, noise)
  if scan:
    assert grads['blocks']['attn']['q']['kernel'].shape == (2, 32, 32)
    grads = stmae.unstack_blocks(grads, config)
  np.testing.assert_allclose(float(loss), float(want_loss), rtol=1e-6)
  for a, b in zip(jax.tree.leaves(want_grads), jax.tree.leaves(grads),
                  strict=True):
    np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-4,
                               atol=1e-7)


def test_stack_and_unstack_round_trip(setup):
  params = setup[0]
  config = dataclasses.replace(CONFIG, scan_blocks=True)
  stacked = stmae.stack_blocks(params, config)
  assert 'blocks_0' not in stacked and 'decoder_blocks_1' not in stacked
  want = jax.tree.map(lambda a: a.shape, stmae.abstract_params(config))
  assert jax.tree.map(jnp.shape, stacked) == want
  back = stmae.unstack_blocks(stacked, config)
  assert jax.tree.structure(back) == jax.tree.structure(params)
  for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(back), strict=True):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  # A scanned model starts from the same values as the default layout.
  fresh = stmae.init_params(config, jax.random.key(0))
  for a, b in zip(jax.tree.leaves(stacked), jax.tree.leaves(fresh),
                  strict=True):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  with pytest.raises(CheckpointError, match='stacked over 2'):
    stmae.unstack_blocks(params, config)
  with pytest.raises(CheckpointError, match='missing'):
    stmae.stack_blocks(stacked, config)


def test_training_config_and_export_layout():
  config = stmae_configs.get_config('smoke')
  config.scan_blocks = True
  config.remat = 'dots'
  model_cfg = trainer.model_config(config)
  assert model_cfg.scan_blocks and model_cfg.remat == 'dots'
  params = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype),
                        stmae.abstract_params(model_cfg))
  exported, export_cfg = trainer.export_params(params, config)
  assert not export_cfg.scan_blocks and export_cfg.remat == 'none'
  assert jax.tree.map(jnp.shape, exported) == jax.tree.map(
      jnp.shape, stmae.abstract_params(export_cfg))
  config.remat = 'sometimes'
  with pytest.raises(ConfigError, match='config.remat'):
    trainer.model_config(config)
  with pytest.raises(ConfigError, match='remat'):
    dataclasses.replace(CONFIG, remat='all')
