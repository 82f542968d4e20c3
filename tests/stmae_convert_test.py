"""Weight conversion: official mae_st and PySlowFast state dicts -> Flax."""

import dataclasses
import fractions
import json
import sys

import jax
import numpy as np
import pytest

import jaxvr.stmae as stmae
from jaxvr.errors import CheckpointError, ConfigError


@pytest.fixture(scope='session')
def vitl_keys(fixtures_dir):
  return json.loads((fixtures_dir / 'stmae_vitl_k400_keys.json').read_text())


@pytest.fixture(scope='session')
def vitl_config(vitl_keys):
  kw = dict(vitl_keys['constructor_kwargs'])
  implied = dict(vitl_keys['implied_by_factory'])
  kw['no_qkv_bias'] = not implied.pop('qkv_bias')
  kw.update(implied)
  return stmae.STMAEConfig(**kw)


def _zeros(shape):
  # A read-only zero view: ViT-L's 318M parameters cost no memory.
  return np.broadcast_to(np.zeros((), np.float32), tuple(shape))


def _to_pyslowfast(sd, depth, tokens):
  """Renames a mae_st decoder the way the released PySlowFast files name it."""
  out = {}
  for k, v in sd.items():
    if k.startswith('decoder_blocks.'):
      i, rest = k[len('decoder_blocks.'):].split('.', 1)
      k = f'pred_head.transforms.0.{i}.{rest}'
    elif k.startswith('decoder_norm.'):
      k = f'pred_head.transforms.0.{depth}.' + k[len('decoder_norm.'):]
    elif k.startswith('decoder_pred.'):
      k = 'pred_head.projections.0.' + k[len('decoder_pred.'):]
    elif k.startswith('decoder_pos_embed_') or k == 'decoder_cls_token':
      continue
    out[k] = v
  out['decoder_pos_embed'] = tokens
  return out


def test_vitl_every_key_maps(vitl_keys, vitl_config):
  sd = {e['key']: _zeros(e['shape']) for e in vitl_keys['keys']}
  assert len(sd) == vitl_keys['num_keys'] == 467
  params = stmae.convert_state_dict(sd, vitl_config)
  # every torch tensor became exactly one Flax leaf of the expected shape
  assert len(jax.tree.leaves(params)) == len(sd)
  assert jax.tree.map(np.shape, params) == jax.tree.map(
      lambda s: s.shape, stmae.abstract_params(vitl_config))
  assert stmae.param_count(params) == vitl_keys['total_params'] == 317731584


def test_vitl_pyslowfast_release_layout(vitl_keys, vitl_config):
  sd = {e['key']: _zeros(e['shape']) for e in vitl_keys['keys']}
  psf = _to_pyslowfast(sd, 4, _zeros((1, 1 + 1568, 512)))
  ckpt = {'model_state': psf, 'epoch': 800}
  with pytest.raises(CheckpointError, match='PySlowFast'):
    stmae.convert_state_dict(ckpt, vitl_config)
  config = stmae.config_for_state_dict(ckpt, vitl_config)
  assert config.decoder_cls_from_encoder and config.decoder_num_heads == 8
  assert config.target_frame_index == tuple(range(0, 16, 2))
  params = stmae.convert_state_dict(ckpt, config)
  assert len(jax.tree.leaves(params)) == len(psf)
  assert params['decoder_pos_embed'].shape == (1, 1569, 512)
  assert 'decoder_cls_token' not in params


@pytest.fixture(scope='session')
def small(fixtures_dir):
  d = np.load(fixtures_dir / 'stmae_parity_a.npz')
  meta = json.loads((fixtures_dir / 'stmae_parity_a.json').read_text())
  config = stmae.STMAEConfig(**meta['model_kwargs'],
                             layernorm_eps=meta['layernorm_eps'])
  sd = {k[len('param/'):]: d[k] for k in d.files if k.startswith('param/')}
  return config, sd


def test_conversion_rules(small):
  config, sd = small
  params = stmae.convert_state_dict({'model': sd}, config)
  w = sd['patch_embed.proj.weight']  # [D, C, kt, p, p]
  k = params['patch_embed']['kernel']  # [kt, p, p, C, D]
  assert k[1, 2, 3, 0, 5] == w[5, 0, 1, 2, 3]
  np.testing.assert_array_equal(params['blocks_1']['attn']['v']['kernel'],
                                sd['blocks.1.attn.v.weight'].T)
  np.testing.assert_array_equal(params['decoder_blocks_0']['norm2']['scale'],
                                sd['decoder_blocks.0.norm2.weight'])
  np.testing.assert_array_equal(params['decoder_pred']['bias'],
                                sd['decoder_pred.bias'])
  # DDP prefixes and a fused qkv are understood too
  fused = {}
  for key, v in sd.items():
    if '.attn.q.' in key:
      kind = key.rsplit('.', 1)[1]
      parts = [sd[key.replace('.attn.q.', f'.attn.{n}.')] for n in 'qkv']
      fused[key.replace('.attn.q.', '.attn.qkv.')] = np.concatenate(parts, 0)
      assert kind in ('weight', 'bias')
    elif '.attn.k.' not in key and '.attn.v.' not in key:
      fused[key] = v
  again = stmae.convert_state_dict(
      {'module.' + k: v for k, v in fused.items()}, config)
  jax.tree.map(np.testing.assert_array_equal, again, params)


def test_export_inverts_conversion(small):
  config, sd = small
  params = stmae.convert_state_dict(sd, config)
  back = stmae.export_state_dict(params, config)
  assert set(back) == set(sd)
  for key, value in sd.items():
    np.testing.assert_array_equal(back[key], value, err_msg=key)
  scanned = dataclasses.replace(config, scan_blocks=True)
  again = stmae.export_state_dict(stmae.convert_state_dict(sd, scanned),
                                  scanned)
  jax.tree.map(np.testing.assert_array_equal, again, back)
  with pytest.raises(ConfigError, match='mae_st'):
    stmae.export_state_dict(params, stmae.pyslowfast_config(config))


def test_pyslowfast_small_decoder_renaming(small):
  config, sd = small
  dpos = np.arange(65 * 32, dtype=np.float32).reshape(1, 65, 32)
  psf = _to_pyslowfast(sd, config.decoder_depth, dpos)
  cfg = stmae.config_for_state_dict(psf, config)
  params = stmae.convert_state_dict({'model_state': psf}, cfg)
  np.testing.assert_array_equal(
      params['decoder_blocks_1']['mlp']['fc2']['kernel'],
      sd['decoder_blocks.1.mlp.fc2.weight'].T)
  np.testing.assert_array_equal(params['decoder_norm']['scale'],
                                sd['decoder_norm.weight'])
  np.testing.assert_array_equal(params['decoder_pred']['kernel'],
                                sd['decoder_pred.weight'].T)
  np.testing.assert_array_equal(params['decoder_pos_embed'], dpos)


def test_bad_state_dicts(small):
  config, sd = small
  extra = dict(sd, **{'head.weight': np.zeros((3, 64), np.float32)})
  with pytest.raises(CheckpointError, match='unused keys: head.weight'):
    stmae.convert_state_dict(extra, config)
  missing = {k: v for k, v in sd.items() if k != 'norm.bias'}
  with pytest.raises(CheckpointError, match='missing parameters: norm.bias'):
    stmae.convert_state_dict(missing, config)
  bad = dict(sd, **{'norm.bias': np.zeros(63, np.float32)})
  with pytest.raises(CheckpointError, match='wrong shapes: norm.bias'):
    stmae.convert_state_dict(bad, config)
  with pytest.raises(CheckpointError, match='state_dict'):
    stmae.convert_state_dict([1, 2], config)


def test_load_torch_checkpoint_without_torch(tmp_path, monkeypatch):
  monkeypatch.setitem(sys.modules, 'torch', None)  # import torch now fails
  path = tmp_path / 'x.pth'
  path.write_bytes(b'not a checkpoint')
  with pytest.raises(CheckpointError, match=r"jaxvr\[torch\]"):
    stmae.load_torch_checkpoint(path)


def test_load_torch_checkpoint_roundtrip_and_refusals(tmp_path, small):
  torch = pytest.importorskip('torch')
  config, sd = small
  path = tmp_path / 'mae.pth'
  torch.save({'model_state': {k: torch.from_numpy(v) for k, v in sd.items()},
              'epoch': 3}, path)
  params = stmae.convert_checkpoint_file(path, config)
  np.testing.assert_array_equal(params['norm']['bias'], sd['norm.bias'])

  # Any global outside torch's weights-only allowlist must be refused.
  evil = tmp_path / 'evil.pth'
  torch.save({'model': {'w': fractions.Fraction(1, 3)}}, evil)
  with pytest.raises(CheckpointError, match='weights-only'):
    stmae.load_torch_checkpoint(evil)
  odd = tmp_path / 'odd.pth'
  torch.save({'model': {'w': torch.zeros(2), 'n': 3}}, odd)
  with pytest.raises(CheckpointError, match='tensors'):
    stmae.load_torch_checkpoint(odd)
  with pytest.raises(CheckpointError, match='not found'):
    stmae.load_torch_checkpoint(tmp_path / 'missing.pth')


def test_pyslowfast_decoder_takes_encoder_cls(small):
  """PySlowFast's decoder starts from decoder_embed(encoder cls output)."""
  import jax.numpy as jnp

  from jaxvr.stmae.model import STMAE

  config, sd = small
  dpos = np.random.default_rng(0).standard_normal((1, 65, 32)).astype(
      np.float32)
  psf_cfg = stmae.pyslowfast_config(config, decoder_num_heads=4)
  assert psf_cfg.decoder_cls_from_encoder and not psf_cfg.decoder_sep
  psf = stmae.convert_state_dict(
      {'model_state': _to_pyslowfast(sd, 2, dpos)}, psf_cfg)
  # the same decoder with a learned first token equal to decoder_embed(cls)
  plain_cfg = stmae.STMAEConfig(**{
      **psf_cfg.__dict__, 'decoder_cls_from_encoder': False})
  cls = np.random.default_rng(1).standard_normal((1, 1, 64)).astype(
      np.float32)
  emb = psf['decoder_embed']
  plain = dict(psf, decoder_cls_token=cls @ emb['kernel'] + emb['bias'])
  latent = np.random.default_rng(2).standard_normal((1, 16, 64)).astype(
      np.float32)
  ids = jnp.asarray(np.random.default_rng(3).permutation(64)[None], jnp.int32)

  def decode(cfg, params, c):
    return np.asarray(STMAE(cfg).apply({'params': params}, latent, c, ids,
                                       method=STMAE.decode))

  a = decode(psf_cfg, psf, cls)
  np.testing.assert_allclose(a, decode(plain_cfg, plain, None), atol=1e-5)
  assert np.abs(a - decode(psf_cfg, psf, -cls)).max() > 1e-3


def test_convert_stmae_command(tmp_path, small, capsys):
  torch = pytest.importorskip('torch')
  import dataclasses

  from jaxvr import checkpoint, cli

  config, sd = small
  pth = tmp_path / 'mae.pth'
  torch.save({'model': {k: torch.from_numpy(v) for k, v in sd.items()}}, pth)
  cfg_json = tmp_path / 'config.json'
  fields = {f.name for f in dataclasses.fields(config)}
  cfg_json.write_text(json.dumps({k: v for k, v in dataclasses.asdict(config).items()
                                  if k in fields}))
  assert cli.main(['convert-stmae', str(pth), str(tmp_path / 'out'),
                   '--config', str(cfg_json)]) == 0
  params, saved = checkpoint.load_params(tmp_path / 'out')
  np.testing.assert_array_equal(params['norm']['bias'], sd['norm.bias'])
  assert saved['embed_dim'] == config.embed_dim
  assert 'parameters' in capsys.readouterr().out
  assert cli.main(['convert-stmae', str(tmp_path / 'none.pth'), str(tmp_path / 'o2')]) == 2
