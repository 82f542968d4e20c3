"""Dictionary trainer: smoke run, exact resume, decimated windows, figure."""

import json
import os
import signal

import jax.numpy as jnp
import numpy as np
import pytest

from jaxvr import sparse_mp4
from jaxvr.configs import lca_dictionary as cfg_lib
from jaxvr.errors import ConfigError, ShapeError
from jaxvr.lca import figures
from jaxvr.training import lca_dictionary as trainer
from jaxvr.training import loop, writers


def _config(total_steps=4, **inference):
  c = cfg_lib.get_config('smoke')
  c.total_steps = total_steps
  c.inference.update(inference)
  return c


@pytest.fixture(scope='session')
def full_run(tmp_path_factory):
  workdir = tmp_path_factory.mktemp('lca_full')
  return trainer.run(_config(), workdir), workdir


def test_smoke_run_learns_unit_norm_kernels(full_run):
  result, workdir = full_run
  c = _config()
  assert result.step == 4 and not result.preempted
  kernels = np.asarray(result.state.kernels)
  k = c.dictionary.n_kernels
  assert kernels.shape == (k, 3, c.dictionary.kernel_size, c.dictionary.kernel_size)
  np.testing.assert_allclose(np.linalg.norm(kernels.reshape(k, -1), axis=1), 1.0,
                             rtol=1e-5)
  init = trainer.initial_kernels(c, trainer.make_data(c))
  assert np.abs(kernels - init).max() > 1e-4          # the update moved them
  records = loop.read_metrics(workdir)
  assert [r['step'] for r in records] == [2, 4]
  for r in records:
    assert 0 < r['metrics']['rel_residual'] < 1
    assert 0 < r['metrics']['density'] <= 1
  saved = json.loads((workdir / loop.CONFIG_FILE).read_text())
  assert saved['dictionary']['stride'] == 2


def test_resume_matches_uninterrupted_run(full_run, tmp_path):
  result, _ = full_run

  def preempt(step, state, metrics):
    del state, metrics
    if step == 2:
      os.kill(os.getpid(), signal.SIGTERM)

  first = trainer.run(_config(), tmp_path, callbacks=[preempt])
  assert first.step == 2 and first.preempted
  resumed = trainer.run(_config(), tmp_path)
  assert resumed.step == 4 and not resumed.preempted
  np.testing.assert_allclose(np.asarray(resumed.state.kernels),
                             np.asarray(result.state.kernels), atol=1e-6)
  np.testing.assert_allclose(np.asarray(resumed.state.velocity),
                             np.asarray(result.state.velocity), atol=1e-6)


def test_decimated_windows_never_update_the_middle_frame(tmp_path):
  # Also runs LCA (instead of FISTA) as the inner solver.
  c = _config(total_steps=2, windows='decimated', solver='lca', dt_over_tau=0.1)
  result = trainer.run(c, tmp_path)
  init = trainer.initial_kernels(c, trainer.make_data(c))
  final = np.asarray(result.state.kernels)
  for k in range(c.dictionary.n_kernels):
    a, b = init[k, 1].ravel(), final[k, 1].ravel()
    cos = a @ b / (np.linalg.norm(a) * np.linalg.norm(b))
    assert cos == pytest.approx(1.0, abs=1e-5)   # only rescaled
  assert np.abs(final[:, 0] - init[:, 0]).max() > 1e-4


def test_windows_normalisation_and_masks():
  rng = np.random.default_rng(0)
  video = rng.integers(0, 256, (2, 3, 6, 8, 3), dtype=np.uint8)
  x, mask = trainer.windows(jnp.asarray(video), 'full')
  assert mask is None and x.shape == (6, 3, 6, 8)
  ref = np.moveaxis(video.astype(np.float64), -1, 1).reshape(6, 3, 6, 8)
  ref = (ref - ref.mean(axis=(1, 2, 3), keepdims=True)) / ref.std(
      axis=(1, 2, 3), keepdims=True)
  np.testing.assert_allclose(np.asarray(x), ref, atol=1e-5)
  x, mask = trainer.windows(jnp.asarray(video), 'decimated')
  mask = np.asarray(mask)
  # Same checkerboards as the codec's observation mask (window 0 and 1).
  obs = sparse_mp4.observation_mask(5, 6, 8)
  np.testing.assert_array_equal(mask[0], obs[0:3])
  np.testing.assert_array_equal(mask[1], obs[2:5])
  x = np.asarray(x)
  for i in range(6):
    vals = x[i][mask[i] > 0]
    assert abs(vals.mean()) < 1e-5 and vals.std() == pytest.approx(1, abs=1e-4)
    assert np.all(x[i][mask[i] == 0] == 0)


def test_bad_config_is_rejected(tmp_path):
  with pytest.raises(ConfigError, match='windows'):
    trainer.run(_config(windows='masked'), tmp_path)
  with pytest.raises(ConfigError, match='unknown option'):
    cfg_lib.get_config('huge')


def test_export_and_figure(full_run, tmp_path):
  result, _ = full_run
  path = tmp_path / 'k.npz'
  trainer.export_kernels(path, result.state.kernels, _config())
  with np.load(path) as z:
    np.testing.assert_array_equal(z['kernels'], np.asarray(result.state.kernels))
    assert int(z['stride']) == 2
  kernels = np.zeros((3, 3, 2, 2))
  kernels[1, 2, 0, 1] = -1.0      # kernel 1, last frame, top-right pixel
  kernels[1, 0, 1, 0] = 0.5
  image = figures.kernel_mosaic(kernels, columns=2, upscale=1, gap=1, frame_gap=1)
  assert image.shape == (2 * 3 + 1, 2 * (3 * 2 + 2 + 1) + 1)
  x0 = 1 + (3 * 2 + 2 + 1)        # second cell of the first row
  assert image[1, x0 + 2 * 3 + 1] == 0           # -max -> black
  assert image[2, x0] == round(127.5 + 63.75)    # half of max
  assert image[1, 1] == 128                      # zero kernel -> mid-grey
  png = figures.save_kernel_figure(tmp_path / 'k.png', kernels, columns=2, upscale=2,
                                   gap=1, frame_gap=1)
  assert png.shape == (2 * image.shape[0], 2 * image.shape[1])
  with pytest.raises(ShapeError, match='kernels'):
    figures.kernel_mosaic(np.zeros((3, 2, 2)))


def test_validation_restores_with_the_current_kernels(tmp_path,
                                                      with_validation):
  trainer.run(with_validation(_config()), tmp_path)
  records = writers.read_jsonl(tmp_path / loop.VALIDATION_FILE)
  assert [r['step'] for r in records] == [0, 2]
  m = records[-1]['metrics']
  assert set(m) == {'psnr', 'dropped_psnr', 'floor_psnr',
                    'floor_dropped_psnr', 'gain'}
  assert m['gain'] == pytest.approx(m['psnr'] - m['floor_psnr'])
  assert all(10 < v < 80 for k, v in m.items() if k != 'gain')
