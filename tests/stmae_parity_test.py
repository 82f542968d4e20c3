"""ST-MAE parity with the official PyTorch model (fixture stmae_parity_a)."""

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxvr.stmae as stmae
from jaxvr.errors import ConfigError, ShapeError

TOL = dict(atol=1e-4, rtol=1e-4)


@pytest.fixture(scope='session')
def ref(fixtures_dir, parity_model, parity_arrays):
  meta = json.loads((fixtures_dir / 'stmae_parity_a.json').read_text())
  params, config = parity_model
  sd = {k[len('param/'):]: v for k, v in parity_arrays.items()
        if k.startswith('param/')}
  arrays = {k: v for k, v in parity_arrays.items() if not k.startswith('param/')}
  video = arrays['input'].transpose(0, 2, 3, 4, 1)
  out = stmae.forward(params, config, video, noise=arrays['noise'],
                      mask_ratio=meta['mask_ratio'])
  return dict(config=config, params=params, sd=sd, a=arrays, video=video,
              out=out, meta=meta)


def test_config_derived_sizes(ref):
  c, meta = ref['config'], ref['meta']['derived']
  assert list(c.grid) == meta['grid_t_h_w']
  assert c.num_tokens == meta['num_tokens_L']
  assert c.t_pred_patch_size == meta['t_pred_patch_size']
  assert c.pred_dim == meta['pred_dim']
  assert list(c.target_frame_index) == meta['target_frame_index']
  assert stmae.len_keep(c.num_tokens, 0.75) == meta['len_keep']


def test_ids_and_mask_exact(ref):
  out, a = ref['out'], ref['a']
  np.testing.assert_array_equal(np.asarray(out.ids_keep), a['ids_keep'])
  np.testing.assert_array_equal(np.asarray(out.ids_restore), a['ids_restore'])
  np.testing.assert_array_equal(np.asarray(out.mask), a['mask'])


def test_arrays_match(ref):
  out, a = ref['out'], ref['a']
  np.testing.assert_allclose(np.asarray(out.latent), a['latent'], **TOL)
  np.testing.assert_allclose(np.asarray(out.pred), a['pred'], **TOL)
  np.testing.assert_allclose(np.asarray(out.per_token_loss),
                             a['per_patch_loss'], **TOL)
  np.testing.assert_allclose(float(out.loss), float(a['loss_f64']), **TOL)
  tok = stmae.encode_tokens(ref['params'], ref['config'], ref['video'])
  np.testing.assert_allclose(
      np.asarray(tok.tokens).reshape(a['patch_embed_out'].shape),
      a['patch_embed_out'], **TOL)
  np.testing.assert_array_equal(np.asarray(tok.target), a['target'])


@pytest.mark.slow
def test_jit_matches_no_jit(ref):
  """The whole forward pass run eagerly, op by op (slow to dispatch)."""
  a = ref['a']
  with jax.disable_jit():
    eager = stmae.forward(ref['params'], ref['config'], ref['video'],
                          noise=a['noise'], mask_ratio=0.75)
  np.testing.assert_array_equal(np.asarray(eager.ids_keep), a['ids_keep'])
  np.testing.assert_allclose(np.asarray(eager.pred), np.asarray(ref['out'].pred),
                             atol=1e-5, rtol=1e-5)
  np.testing.assert_allclose(float(eager.loss), float(ref['out'].loss),
                             rtol=1e-5)


def test_split_forward_matches(ref):
  """Embedding once and masking many times gives the full forward's numbers."""
  c, p, a = ref['config'], ref['params'], ref['a']
  tok = stmae.encode_tokens(p, c, ref['video'][:1])
  # one video shared by both noise rows
  out = stmae.forward_from_tokens(p, c, tok, noise=a['noise'], mask_ratio=0.75)
  full = stmae.forward(p, c, np.repeat(ref['video'][:1], 2, axis=0),
                       noise=a['noise'], mask_ratio=0.75)
  np.testing.assert_array_equal(np.asarray(out.mask), a['mask'])
  np.testing.assert_allclose(np.asarray(out.pred), np.asarray(full.pred),
                             atol=1e-5, rtol=1e-5)
  np.testing.assert_allclose(np.asarray(out.pred[0]), a['pred'][0], **TOL)
  np.testing.assert_allclose(np.asarray(out.sample_loss),
                             np.asarray(full.sample_loss), rtol=1e-5)
  # per-sample losses average to the batch loss (equal masked counts)
  np.testing.assert_allclose(float(full.sample_loss.mean()), float(full.loss),
                             rtol=1e-6)


def test_key_masking_uses_uniform_noise(ref):
  c, p = ref['config'], ref['params']
  key = jax.random.key(3)
  out = stmae.forward(p, c, ref['video'], key=key, mask_ratio=0.75)
  noise = jax.random.uniform(key, (2, c.num_tokens))
  want = np.argsort(np.asarray(noise), axis=1, kind='stable')[:, :16]
  np.testing.assert_array_equal(np.asarray(out.ids_keep), want)
  assert np.asarray(out.mask).sum(axis=1).tolist() == [48.0, 48.0]


def test_joint_pos_embed_matches(ref):
  """sep_pos_embed=False with the equivalent joint tables gives the same model."""
  sd = dict(ref['sd'])
  for prefix in ('pos_embed', 'decoder_pos_embed'):
    spatial = sd.pop(f'{prefix}_spatial')
    temporal = sd.pop(f'{prefix}_temporal')
    klass = sd.pop(f'{prefix}_class')
    rows = np.tile(spatial, (1, temporal.shape[1], 1)) + np.repeat(
        temporal, spatial.shape[1], axis=1)
    sd[prefix] = np.concatenate([klass, rows], axis=1)
  config = dataclasses.replace(ref['config'], sep_pos_embed=False)
  assert not config.decoder_sep
  params = stmae.convert_state_dict(sd, config)
  out = stmae.forward(params, config, ref['video'], noise=ref['a']['noise'],
                      mask_ratio=0.75)
  np.testing.assert_allclose(np.asarray(out.pred), ref['a']['pred'], **TOL)


def test_norm_pix_loss_uses_unbiased_variance(ref):
  config = dataclasses.replace(ref['config'], norm_pix_loss=True)
  target = np.asarray(stmae.compute_target(config, ref['video']), np.float64)
  raw = ref['a']['target_raw'].astype(np.float64)
  want = (raw - raw.mean(-1, keepdims=True)) / np.sqrt(
      raw.var(-1, ddof=1, keepdims=True) + 1e-6)
  np.testing.assert_allclose(target, want, atol=1e-5)
  out = stmae.forward(ref['params'], config, ref['video'],
                      noise=ref['a']['noise'], mask_ratio=0.75)
  err = ((ref['a']['pred'] - want) ** 2).mean(-1)
  mask = ref['a']['mask']
  np.testing.assert_allclose(float(out.loss), (err * mask).sum() / mask.sum(),
                             rtol=1e-4)


def test_bfloat16_close_to_float32(ref):
  config = dataclasses.replace(ref['config'], dtype=jnp.bfloat16)
  assert config.dtype == 'bfloat16'
  out = stmae.forward(ref['params'], config, ref['video'],
                      noise=ref['a']['noise'], mask_ratio=0.75)
  assert out.pred.dtype == jnp.bfloat16 and out.loss.dtype == jnp.float32
  np.testing.assert_allclose(float(out.loss), float(ref['a']['loss']),
                             rtol=0.05)


def test_jit_matches_no_jit_masking_and_target(ref):
  c, a = ref['config'], ref['a']
  jitted = jax.jit(stmae.ids_from_noise, static_argnums=1)(a['noise'], 16)
  with jax.disable_jit():
    eager = stmae.ids_from_noise(jnp.asarray(a['noise']), 16)
    target = stmae.compute_target(c, ref['video'])
  for x, y in zip(jitted, eager, strict=True):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
  np.testing.assert_array_equal(np.asarray(target), a['target'])


def test_init_params_tree_matches_conversion(ref):
  # a one-block model keeps the (compile-bound) init fast
  config = dataclasses.replace(ref['config'], depth=1, decoder_depth=1)
  params = stmae.init_params(config, jax.random.key(0))
  shapes = jax.tree.map(np.shape, params)
  want = {k: v for k, v in jax.tree.map(np.shape, ref['params']).items()
          if k not in ('blocks_1', 'decoder_blocks_1')}
  assert shapes == want
  # official init: zero biases, unit LayerNorm scales, small tables
  assert float(jnp.abs(params['blocks_0']['attn']['q']['bias']).max()) == 0.0
  assert float(params['norm']['scale'].min()) == 1.0
  assert 0.005 < float(params['pos_embed_spatial'].std()) < 0.03


def test_bad_inputs(ref):
  c, p, a = ref['config'], ref['params'], ref['a']
  video = ref['video']
  with pytest.raises(ShapeError, match='video'):
    stmae.forward(p, c, video[:, :4], noise=a['noise'], mask_ratio=0.75)
  with pytest.raises(ShapeError, match='video'):
    stmae.forward(p, c, video[0], noise=a['noise'], mask_ratio=0.75)
  with pytest.raises(ShapeError, match='video'):
    stmae.forward(p, c, video.astype(np.int32), noise=a['noise'],
                  mask_ratio=0.75)
  with pytest.raises(ShapeError, match='noise'):
    stmae.forward(p, c, video, noise=a['noise'][:, :10], mask_ratio=0.75)
  with pytest.raises(ConfigError, match='noise/key'):
    stmae.forward(p, c, video, noise=a['noise'], key=jax.random.key(0),
                  mask_ratio=0.75)
  with pytest.raises(ConfigError, match='no visible token'):
    stmae.forward(p, c, video, noise=a['noise'], mask_ratio=0.99)
  with pytest.raises(ConfigError, match='mask_ratio'):
    stmae.forward(p, c, video, noise=a['noise'], mask_ratio=1.0)


def test_len_keep_truncates_like_python():
  assert stmae.len_keep(1568, 0.9) == 156
  assert stmae.len_keep(392, 0.98) == 7
  with pytest.raises(ConfigError, match='no visible token'):
    stmae.len_keep(10, 0.9)  # 10 * 0.09999999999999998 -> 0


def test_config_errors():
  with pytest.raises(ConfigError, match='img_size'):
    stmae.STMAEConfig(img_size=30, patch_size=8)
  with pytest.raises(ConfigError, match='pred_t_dim'):
    stmae.STMAEConfig(num_frames=8, t_patch_size=2, pred_t_dim=3)
  with pytest.raises(ConfigError, match='dtype'):
    stmae.STMAEConfig(dtype='int8')
  # official linspace frame choice: the last target frame is 15, not 14
  assert stmae.vit_large_config().target_frame_index == (
      0, 2, 4, 6, 8, 10, 12, 15)
  assert stmae.pyslowfast_config().target_frame_index == tuple(range(0, 16, 2))
