"""Bottleneck autoencoder: 4:1 latent, payload round trip, training."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvr import autoencoder as ae
from jaxvr import errors
from jaxvr.configs import autoencoder as ae_config
from jaxvr.training import autoencoder as ae_train
from jaxvr.training import loop, writers

CFG = ae.AEConfig(width=8, blocks=1)


@pytest.fixture(scope='module')
def params():
  return ae.init_params(CFG, jax.random.key(0), size=16)


def test_latent_is_a_quarter_of_the_samples(params):
  pairs = jnp.zeros((3, 2, 16, 24, 3))
  z = ae.BottleneckAE(CFG).apply({'params': params}, pairs, method='encode')
  assert z.shape == (3, 8, 12, 6) and z.size * 4 == pairs.size
  with pytest.raises(errors.ShapeError, match='even'):
    ae.BottleneckAE(CFG).apply({'params': params}, jnp.zeros((1, 2, 15, 16, 3)),
                               method='encode')


def test_quantize_is_8bit_with_identity_gradient():
  z = jnp.linspace(0, 1, 101)
  q = ae.quantize(z)
  np.testing.assert_allclose(q * 255, jnp.round(q * 255), atol=1e-4)
  np.testing.assert_allclose(jax.grad(lambda v: ae.quantize(v).sum())(z), 1.0)


def test_payload_round_trip(params):
  rng = np.random.default_rng(0)
  video = rng.integers(0, 256, (5, 15, 18, 3), dtype=np.uint8)  # odd T and H
  data = ae.encode_video(params, CFG, video, fps=30)
  out = ae.decode_video(params, CFG, data)
  assert out.shape == video.shape and out.dtype == np.uint8
  # Decoding is deterministic given the bytes.
  np.testing.assert_array_equal(out, ae.decode_video(params, CFG, data))
  with pytest.raises(errors.PayloadError, match='autoencoder'):
    ae.decode_video(params, CFG, b'nope')


def test_smoke_training_runs_and_resumes(tmp_path):
  config = ae_config.get_config('smoke')
  result = ae_train.run(config, tmp_path)
  assert result.step == 4
  records = loop.read_metrics(tmp_path)
  assert [r['step'] for r in records] == [2, 4]
  assert all(np.isfinite(r['metrics']['loss']) for r in records)
  # A resume that would train another run is refused, naming the fields.
  with config.unlocked():
    config.total_steps = 6
    config.optim.lr = 2 * config.optim.lr
    config.log_every = 1   # logging may change freely
  with pytest.raises(errors.ConfigError,
                     match=r'optim\.lr: .* -> .*; total_steps: 4 -> 6\)') as e:
    ae_train.run(config, tmp_path)
  assert 'log_every' not in str(e.value)
  assert 'allow_config_change' in str(e.value)
  with config.unlocked():
    config.allow_config_change = True
  resumed = ae_train.run(config, tmp_path)
  assert resumed.step == 6
  # The override resumed the checkpoint (steps 5-6 only), not a fresh run.
  assert [r['step'] for r in loop.read_metrics(tmp_path)] == [2, 4, 5, 6]


def test_untrained_residual_model_is_box_down_bicubic_up():
  config = ae.AEConfig(width=8, blocks=1, residual=True)
  params = ae.init_params(config, jax.random.key(3), size=16)
  pairs = jax.random.uniform(jax.random.key(4), (2, 2, 16, 20, 3))
  model = ae.BottleneckAE(config)
  latent = model.apply({'params': params}, pairs, method='encode')
  box = pairs.reshape(2, 2, 8, 2, 10, 2, 3).mean(axis=(3, 5))
  np.testing.assert_allclose(latent, jnp.moveaxis(box, 1, -2).reshape(
      2, 8, 10, 6), atol=1e-6)
  out = model.apply({'params': params}, latent, method='decode')
  up = jnp.clip(jax.image.resize(latent, (2, 16, 20, 6), 'cubic'), 0, 1)
  np.testing.assert_allclose(out, jnp.moveaxis(up.reshape(2, 16, 20, 2, 3),
                                               -2, 1), atol=1e-6)


def test_validation_logs_psnr_beside_linear_interpolation(tmp_path,
                                                          with_validation):
  ae_train.run(with_validation(ae_config.get_config('smoke')), tmp_path)
  records = writers.read_jsonl(tmp_path / loop.VALIDATION_FILE)
  assert [r['step'] for r in records] == [0, 2]
  for r in records:
    m = r['metrics']
    assert m['gain'] == pytest.approx(m['psnr'] - m['floor_psnr'])
    assert 15 < m['floor_psnr'] < 60 and 10 < m['psnr'] < 60
