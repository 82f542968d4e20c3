"""Sparse-GAN trainer: smoke runs, exact resume, baselines, video data, export."""

import os
import signal

import jax
import ml_collections
import numpy as np
import pytest

from jaxvr import checkpoint as weights
from jaxvr.configs import sparse_gan as configs
from jaxvr.errors import ConfigError
from jaxvr.sparsegan import inference
from jaxvr.training import checkpoint, loop, writers
from jaxvr.training import sparse_gan as trainer
from jaxvr.video import io as video_io

STEPS = 4


def _smoke(*options):
  config = configs.get_config(','.join(('smoke',) + options))
  config.total_steps = STEPS
  config.log_every = 1
  config.ckpt.every = 3
  config = trainer.trainer_config(config)
  config.data.source = 'synthetic'
  config.data.batch_size = 8
  config.fast_compile = True
  return config


@pytest.fixture(scope='module')
def full_run(tmp_path_factory):
  config = _smoke()
  workdir = tmp_path_factory.mktemp('full')
  return config, workdir, trainer.run(config, workdir)


def test_trainer_config_adds_loop_fields_without_touching_the_input():
  config = configs.get_config('smoke')
  config.lock()
  out = trainer.trainer_config(config)
  assert out.ckpt_every == config.ckpt.every
  assert out.keep_ckpts == config.ckpt.keep
  assert out.data.source == 'videos' and out.n_devices is None
  assert 'ckpt_every' not in config  # the input is not modified


def test_smoke_run_logs_density_every_step(full_run):
  config, workdir, result = full_run
  assert result.step == STEPS and not result.preempted
  dens = trainer.read_density(workdir)
  assert [r['step'] for r in dens] == list(range(1, STEPS + 1))
  records = loop.read_metrics(workdir)
  assert [r['step'] for r in records] == list(range(1, STEPS + 1))
  for rec, d in zip(records, dens, strict=True):
    # The per-step density equals the loop's (log_every=1) record.
    assert rec['metrics']['density'] == pytest.approx(d['density'])
    assert 0.0 <= d['density_min'] <= d['density'] <= d['density_max'] <= 1.0
    assert np.isfinite(rec['metrics']['gen_loss'])
  params = result.state.gen.params
  assert set(params) == {'mask', 'frame'}


def test_preempted_run_resumes_with_the_same_metrics(full_run, tmp_path):
  config, full_dir, full = full_run

  def preempt(step, state, metrics):
    del state, metrics
    if step == 2:
      os.kill(os.getpid(), signal.SIGTERM)

  part = tmp_path / 'part'
  first = trainer.run(config, part, callbacks=[preempt])
  assert first.preempted and first.step == 2
  second = trainer.run(config, part)
  assert second.step == STEPS and not second.preempted
  curve = lambda wd: [(r['step'], r['metrics']) for r in loop.read_metrics(wd)]
  assert curve(part) == curve(full_dir)
  assert trainer.read_density(part) == trainer.read_density(full_dir)
  jax.tree.map(np.testing.assert_array_equal,
               jax.device_get(full.state.gen.params),
               jax.device_get(second.state.gen.params))
  with checkpoint.Checkpointer(part / 'ckpt') as ckpt:
    assert ckpt.all_steps() == [2, 3, 4]
    assert ckpt.restore_config()['model']['mask_mode'] == 'learned'


def test_export_loads_for_inference(full_run, tmp_path):
  config, _, result = full_run
  out = trainer.export_params(tmp_path / 'weights', result, config)
  gan = inference.load(out)
  assert gan.has_mask_generator and gan.frame_size == 16
  assert gan.num_frames == config.data.num_frames
  jax.tree.map(np.testing.assert_array_equal,
               jax.device_get(result.state.gen.params), gan.params)


def test_float16_export_halves_storage_and_loads_as_float32(full_run,
                                                           tmp_path):
  config, _, result = full_run
  config = ml_collections.ConfigDict(config.to_dict())
  config.data.cache_dir = str(tmp_path / 'decoded')
  out = trainer.export_params(tmp_path / 'w16', result, config,
                              dtype='float16')
  stored, recorded = weights.load_params(out)
  assert {a.dtype for a in jax.tree.leaves(stored)} == {np.dtype('float16')}
  assert recorded['data']['cache_dir'] == ''
  gan = inference.load(out)
  trained = jax.device_get(result.state.gen.params)
  for got, want in zip(jax.tree.leaves(gan.params), jax.tree.leaves(trained),
                       strict=True):
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-4)


@pytest.mark.slow
def test_random_mask_baseline_keeps_exact_density(tmp_path):
  config = _smoke('random10')
  config.total_steps = 1
  result = trainer.run(config, tmp_path / 'rand')
  assert set(result.state.gen.params) == {'frame'}
  (rec,) = trainer.read_density(tmp_path / 'rand')
  k = round(0.10 * 16 * 16)
  assert rec['density_min'] == rec['density_max'] == pytest.approx(k / 256)


def test_video_folder_source_and_config_errors(tmp_path):
  config = _smoke()
  config.data.source = 'videos'
  with pytest.raises(ConfigError, match='clips_dir'):
    trainer.make_data(config)
  config.data.source = 'webcam'
  with pytest.raises(ConfigError, match='source'):
    trainer.make_data(config)
  rng = np.random.default_rng(0)
  frames = rng.integers(0, 256, (9, 24, 32, 3), np.uint8)
  frames[:, :, :4] = 0   # dark left border, cut by the centre crop
  video_io.write_video(tmp_path / 'clip.mp4', frames, lossless=True)
  config.data.source = 'videos'
  config.data.clips_dir = str(tmp_path)
  config.data.flip = False
  batch = next(trainer.make_data(config))['video']
  assert batch.shape == (8, 4, 16, 16, 3) and batch.dtype == np.uint8
  # Centre crop: the 4-px black border is outside the central 24x24 square.
  assert batch[:, :, :, 0].mean() > 40
  bad = _smoke()
  bad.model.spatial_padding = 'VALID'
  with pytest.raises(ConfigError, match='VALID'):
    trainer.run(bad, tmp_path / 'bad')


def test_validation_measures_the_decoder_against_its_floor(tmp_path,
                                                           with_validation):
  trainer.run(with_validation(_smoke('random5', 'residual')), tmp_path)
  records = writers.read_jsonl(tmp_path / loop.VALIDATION_FILE)
  assert [r['step'] for r in records] == [0, 2]
  first = records[0]['metrics']
  # An untrained residual inpainter decodes exactly to the floor.
  assert first['psnr'] == pytest.approx(first['floor_psnr'])
  assert first['gain'] == pytest.approx(0.0, abs=1e-9)
  last = records[1]['metrics']
  assert last['floor_psnr'] == first['floor_psnr'] and last['psnr'] > 10
