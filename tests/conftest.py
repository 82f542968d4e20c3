"""Test setup: 8 virtual CPU devices, shared paths and small real data."""

import json
import os
import pathlib

os.environ.setdefault('JAX_PLATFORMS', 'cpu')

import jax  # noqa: E402

jax.config.update('jax_num_cpu_devices', 8)

import numpy as np  # noqa: E402
import pytest  # noqa: E402

FIXTURES = pathlib.Path(__file__).parent / 'fixtures'


@pytest.fixture(scope='session')
def fixtures_dir() -> pathlib.Path:
  return FIXTURES


@pytest.fixture(scope='session')
def library_lines() -> list[tuple[str, int, str]]:
  """Every line of the Python sources in jaxvr/, eval/ and train/, as
  ``(path relative to the repository, line number, text)``."""
  root = pathlib.Path(__file__).resolve().parent.parent
  return [(path.relative_to(root).as_posix(), n, line)
          for folder in ('jaxvr', 'eval', 'train')
          for path in sorted((root / folder).rglob('*.py'))
          for n, line in enumerate(path.read_text().splitlines(), 1)]


@pytest.fixture(scope='session')
def parity_arrays(fixtures_dir) -> dict:
  """Every array of the official ST-MAE parity fixture."""
  with np.load(fixtures_dir / 'stmae_parity_a.npz') as z:
    return {k: z[k] for k in z.files}


@pytest.fixture(scope='session')
def parity_model(fixtures_dir, parity_arrays):
  """The parity fixture's official model converted to Flax: (params, config)."""
  from jaxvr import stmae

  meta = json.loads((fixtures_dir / 'stmae_parity_a.json').read_text())
  config = stmae.STMAEConfig(**meta['model_kwargs'],
                             layernorm_eps=meta['layernorm_eps'])
  sd = {k[len('param/'):]: v for k, v in parity_arrays.items()
        if k.startswith('param/')}
  return stmae.convert_state_dict(sd, config), config


@pytest.fixture(scope='session')
def metrics_ref(fixtures_dir) -> dict:
  """Every array of the metric reference fixture (skvideo, MATLAB, skimage)."""
  with np.load(fixtures_dir / 'metrics_ref_a.npz') as z:
    return {k: z[k] for k in z.files}


@pytest.fixture(scope='session')
def val_folder(tmp_path_factory) -> pathlib.Path:
  """Two small real videos standing in for a validation folder."""
  from jaxvr.video import io as video_io

  folder = tmp_path_factory.mktemp('val')
  t, y, x = np.meshgrid(np.arange(8), np.arange(24), np.arange(32),
                        indexing='ij')
  for i, name in enumerate(('a.mp4', 'b.mp4')):
    chans = [np.sin(0.25 * y + 0.15 * x + (0.4 + 0.2 * i) * t + p)
             for p in (0.0, 1.5, 3.0)]
    video = np.round(127.5 + 110 * np.stack(chans, -1)).astype(np.uint8)
    video_io.write_video(folder / name, video, lossless=True)
  return folder


@pytest.fixture(scope='session')
def with_validation(val_folder):
  """Sets a trainer config to validate on ``val_folder`` every 2 steps."""
  def configure(config):
    with config.unlocked():
      config.total_steps = 2
      config.eval_every = 2
      config.data.val_dir = str(val_folder)
      config.data.val_size = 16
      config.data.val_frames = 4
    return config
  return configure


@pytest.fixture(scope='session')
def small_clips(tmp_path_factory) -> list[str]:
  """Three small clips for ``compare``; two share the file name 'clip.mp4'."""
  from jaxvr.video import io as video_io

  root = tmp_path_factory.mktemp('clips')
  rng = np.random.default_rng(0)
  paths = []
  for folder in ('a', 'b', 'c'):
    (root / folder).mkdir()
    name = 'other.mp4' if folder == 'c' else 'clip.mp4'
    video = rng.integers(0, 256, (6, 20, 24, 3), np.uint8)
    video_io.write_video(root / folder / name, video, lossless=True)
    paths.append(str(root / folder / name))
  return paths


@pytest.fixture(scope='session')
def without_timings():
  """Drops run times from ``compare`` rows (two runs differ only in them)."""
  def strip(rows):
    return [{k: v for k, v in r.items() if k not in ('encode_s', 'decode_s')}
            for r in rows]
  return strip
