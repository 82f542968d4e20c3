"""ST-MAE trainer: smoke config runs, resumes exactly, entry point works."""

import os
import signal
import subprocess
import sys

import jax
import numpy as np
import pytest

from jaxvr.configs import stmae as stmae_configs
from jaxvr.errors import ConfigError
from jaxvr.stmae import STMAEConfig
from jaxvr.training import checkpoint, loop
from jaxvr.training import stmae as trainer
from jaxvr.video import io as video_io


def test_recipe_optimizer_and_schedule():
  config = stmae_configs.get_config()
  assert (config.optim.b1, config.optim.b2) == (0.9, 0.95)
  assert config.optim.weight_decay == 0.05
  lr = trainer.learning_rate(config)
  peak = config.optim.blr * config.data.batch_size / 256
  warm = config.optim.warmup_steps
  assert float(lr(0)) == 0.0
  np.testing.assert_allclose(float(lr(warm // 2)), peak / 2, rtol=1e-5)
  np.testing.assert_allclose(float(lr(warm)), peak, rtol=1e-5)
  mid = (warm + config.total_steps) // 2  # Cosine: half way down.
  np.testing.assert_allclose(float(lr(mid)), peak / 2, rtol=1e-3)
  assert float(lr(config.total_steps)) == pytest.approx(0.0, abs=1e-9)
  assert trainer.make_optimizer(config) is trainer.make_optimizer(config)
  with pytest.raises(ConfigError, match='unknown option'):
    stmae_configs.get_config('huge')


def test_smoke_run_resumes_with_the_same_loss_curve(tmp_path):
  config = stmae_configs.get_config('smoke')
  full = trainer.run(config, tmp_path / 'full')
  assert full.step == config.total_steps and not full.preempted

  def preempt(step, state, metrics):
    del state, metrics
    if step == 2:
      os.kill(os.getpid(), signal.SIGTERM)

  part = tmp_path / 'part'
  first = trainer.run(config, part, callbacks=[preempt])
  assert first.preempted and first.step == 2
  second = trainer.run(config, part)
  assert second.step == config.total_steps and not second.preempted

  curve = lambda wd: [(r['step'], r['metrics']) for r in loop.read_metrics(wd)]
  assert curve(part) == curve(tmp_path / 'full')
  losses = [m['loss'] for _, m in curve(part)]
  assert len(losses) == 6 and losses[-1] < losses[0]
  jax.tree.map(np.testing.assert_array_equal,
               jax.device_get(full.state.params),
               jax.device_get(second.state.params))
  with checkpoint.Checkpointer(part / 'ckpt') as ckpt:
    assert ckpt.all_steps() == [2, 3, 6]
    saved = ckpt.restore_config()
  assert saved['model']['embed_dim'] == 32 and saved['mask_ratio'] == 0.5


def test_video_source_and_bad_data_config(tmp_path):
  config = stmae_configs.get_config('smoke')
  model_cfg = trainer.model_config(config)
  with pytest.raises(ConfigError, match='clips_dir'):
    config.data.source = 'videos'
    trainer.make_data(config, model_cfg)
  frames = np.random.default_rng(0).integers(0, 256, (9, 20, 24, 3), np.uint8)
  video_io.write_video(tmp_path / 'clip.mp4', frames, lossless=True)
  config.data.clips_dir = str(tmp_path)
  config.data.frame_stride = 2
  batch = next(trainer.make_data(config, model_cfg))['video']
  assert batch.shape == (8, 4, 16, 16, 3) and batch.dtype == np.uint8
  config.data.preload_short_side = 0  # Decode each clip from the file.
  data = trainer.make_data(config, model_cfg)
  assert data._frames is None
  np.testing.assert_array_equal(next(data)['video'], batch)
  config.data.source = 'webcam'
  with pytest.raises(ConfigError, match='source'):
    trainer.make_data(config, model_cfg)


@pytest.mark.slow
def test_entry_point_smoke(tmp_path):
  env = dict(os.environ, JAX_PLATFORMS='cpu')
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  cmd = [sys.executable, '-m', 'train.stmae',
         '--config=jaxvr/configs/stmae.py:smoke', f'--workdir={tmp_path}',
         '--config.total_steps=3', f'--export={tmp_path / "weights"}']
  proc = subprocess.run(cmd, cwd=root, env=env, capture_output=True,
                        text=True, timeout=600, check=False)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert 'finished at step 3' in proc.stdout
  assert [r['step'] for r in loop.read_metrics(tmp_path)] == [1, 2, 3]
  params, model = checkpoint.load_params(tmp_path / 'weights')
  assert model['embed_dim'] == 32 and model['img_size'] == 16
  assert STMAEConfig(**model) == trainer.model_config(
      stmae_configs.get_config('smoke'))
  assert params['patch_embed']['kernel'].shape == (2, 8, 8, 3, 32)
  # Resuming the finished run as a longer one is refused in one line.
  longer = subprocess.run(cmd + ['--config.total_steps=4'], cwd=root, env=env,
                          capture_output=True, text=True, timeout=600,
                          check=False)
  assert longer.returncode == 2
  assert longer.stderr.strip().splitlines()[-1].startswith(
      'train.stmae: error: config: differs from the checkpoint')
  assert 'total_steps: 3 -> 4' in longer.stderr
  assert 'Traceback' not in longer.stderr
  bad = subprocess.run(cmd + ['--config.no_such_field=1'], cwd=root, env=env,
                       capture_output=True, text=True, timeout=600,
                       check=False)
  assert bad.returncode != 0


@pytest.mark.slow
def test_remat_gives_the_same_step(tmp_path):
  metrics = {}
  for remat, scan in (('none', False), ('dots', False), ('full', False),
                      ('dots', True)):
    name = f'{remat}_scan' if scan else remat
    config = stmae_configs.get_config('smoke')
    config.total_steps = 2
    config.remat = remat
    config.scan_blocks = scan
    result = trainer.run(config, tmp_path / name)
    metrics[name] = [r['metrics'] for r in loop.read_metrics(tmp_path / name)]
    assert result.step == 2
  for name in ('dots', 'full', 'dots_scan'):
    for a, b in zip(metrics['none'], metrics[name], strict=True):
      assert a['loss'] == pytest.approx(b['loss'], rel=1e-5)
      assert a['grad_norm'] == pytest.approx(b['grad_norm'], rel=1e-4)
  config = stmae_configs.get_config('smoke')
  config.remat = 'sometimes'
  with pytest.raises(ConfigError, match='config.remat'):
    trainer.run(config, tmp_path / 'bad')
