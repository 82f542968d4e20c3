"""Shared-work losses of many masks equal the plain forward pass, every variant."""

import dataclasses

import jax
import numpy as np
import pytest

from jaxvr import stmae
from jaxvr.stmae import many_masks

BASE = stmae.STMAEConfig(
    img_size=16, patch_size=8, embed_dim=32, depth=1, num_heads=2,
    decoder_embed_dim=16, decoder_depth=2, decoder_num_heads=2, num_frames=4,
    t_patch_size=2, pred_t_dim=4, cls_embed=True, sep_pos_embed=True,
    norm_pix_loss=True)

VARIANTS = {
    'official': {},
    'no cls, joint tables, no qkv bias': dict(
        cls_embed=False, sep_pos_embed=False, no_qkv_bias=True,
        norm_pix_loss=False),
    'pyslowfast decoder': dict(decoder_cls_from_encoder=True,
                               decoder_sep_pos_embed=False,
                               target_frames='stride', pred_t_dim=2),
    'no decoder block': dict(decoder_depth=0),
    'scanned, three blocks': dict(decoder_depth=3, scan_blocks=True),
}


def _largest_gone_share(shared, got, config):
  """Largest weight share of the base keys a mask replaces, over rows and masks."""
  visible = np.asarray(got.mask) == 0  # [N, L]
  gone = np.zeros(visible.shape[:1] + (shared.exp_logits.shape[-1],), bool)
  gone[:, int(config.cls_embed):] = visible
  e = np.asarray(shared.exp_logits)  # [H, R, R]
  share = np.einsum('hrj,nj->nhr', e, gone) / np.asarray(shared.weighted)[..., -1]
  return float(share.max())


def _losses(config, params, video, noise, ratio, sharpen=1.0):
  if sharpen != 1.0:  # peaked first-block attention (large logits)
    block = params['decoder_blocks_0']['attn']
    block['q'] = dict(block['q'], kernel=block['q']['kernel'] * sharpen)
  tokens = stmae.encode_tokens(params, config, video)
  want = stmae.forward_from_tokens(params, config, tokens, noise=noise,
                                   mask_ratio=ratio)
  keep = stmae.len_keep(config.num_tokens, ratio)
  shared = jax.jit(many_masks.shared_work, static_argnums=1)(
      params, config, tokens)
  got = jax.jit(many_masks.mask_losses, static_argnums=(1, 4))(
      params, config, shared, noise, keep)
  return want, got, shared


@pytest.mark.parametrize('name', list(VARIANTS))
def test_equals_forward_from_tokens(name):
  config = dataclasses.replace(BASE, **VARIANTS[name])
  params = stmae.init_params(config, jax.random.key(0))
  video = jax.random.normal(jax.random.key(1), (1,) + config.video_shape)
  noise = stmae.sample_noise(jax.random.key(2), 6, config.num_tokens)
  # 0.5 keeps 4 of 8 tokens, 0.8 keeps one
  for ratio in (0.5, 0.8):
    want, got, _ = _losses(config, params, video, noise, ratio)
    np.testing.assert_array_equal(np.asarray(got.mask), np.asarray(want.mask))
    np.testing.assert_allclose(np.asarray(got.per_token_loss),
                               np.asarray(want.per_token_loss), rtol=2e-5)
    np.testing.assert_allclose(np.asarray(got.sample_loss),
                               np.asarray(want.sample_loss), rtol=2e-5)


def test_peaked_attention_stays_exact():
  """Logits 30x larger: the replaced base keys carry most of some rows'
  weight, so the batch takes the exact sum instead of the subtraction."""
  params = stmae.init_params(BASE, jax.random.key(3))
  params = jax.tree.map(np.asarray, params)
  video = 3.0 * jax.random.normal(jax.random.key(4), (1,) + BASE.video_shape)
  noise = stmae.sample_noise(jax.random.key(5), 8, BASE.num_tokens)
  want, got, shared = _losses(BASE, params, video, noise, 0.5, sharpen=30.0)
  assert _largest_gone_share(shared, got, BASE) > 0.5
  assert np.all(np.isfinite(np.asarray(got.per_token_loss)))
  np.testing.assert_allclose(np.asarray(got.per_token_loss),
                             np.asarray(want.per_token_loss), rtol=1e-4)


def test_bench_model_size_matches_at_ratio_098():
  """The CARV bench shape (392 tokens, 8 visible): the case the sharing is for."""
  config = stmae.STMAEConfig(
      img_size=112, patch_size=16, embed_dim=32, depth=1, num_heads=2,
      decoder_embed_dim=32, decoder_depth=1, decoder_num_heads=4,
      num_frames=16, t_patch_size=2, pred_t_dim=8, cls_embed=True,
      sep_pos_embed=True, norm_pix_loss=True)
  params = stmae.init_params(config, jax.random.key(6))
  video = jax.random.normal(jax.random.key(7), (1,) + config.video_shape)
  noise = stmae.sample_noise(jax.random.key(8), 4, config.num_tokens)
  want, got, shared = _losses(config, params, video, noise, 0.98)
  assert _largest_gone_share(shared, got, config) < 0.5  # the subtraction
  np.testing.assert_allclose(np.asarray(got.per_token_loss),
                             np.asarray(want.per_token_loss), rtol=2e-5)
