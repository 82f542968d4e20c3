"""CARV pipeline: model clip, full-frame grid, reductions, files, figures."""


import jax
import numpy as np
import pytest

import jaxvr.stmae as stmae
from jaxvr import carv
from jaxvr.assets import sample_clip_path
from jaxvr.carv import clip as carv_clip
from jaxvr.carv import figures, pipeline
from jaxvr.checkpoint import save_params
from jaxvr.errors import CheckpointError, ConfigError, ShapeError, SizeError
from jaxvr.video import ffmpeg, transforms
from jaxvr.video import io as video_io
from jaxvr.video.tubes import chunk_bounds

N_SAMPLES = 16
RATIO = 0.75
PNG = b'\x89PNG'


@pytest.fixture(scope='session')
def sample_video():
  """First 10 frames of the bundled clip, 144x176 (not square)."""
  return video_io.read_video(sample_clip_path(), max_frames=10)


@pytest.fixture(scope='session')
def carv_reduction(parity_model, sample_video):
  params, config = parity_model
  return pipeline.reduce(sample_video, 'carv-visible', 3, params=params,
                         config=config, key=jax.random.key(3),
                         n_samples=N_SAMPLES, mask_ratio=RATIO)


def test_geometry_square_frame_is_identity(parity_model):
  _, config = parity_model
  geom = carv_clip.clip_geometry((8, 96, 96, 3), config)
  assert geom.full_grid() == config.grid[1:]
  np.testing.assert_array_equal(geom.axis_index(0), np.arange(4))
  np.testing.assert_array_equal(geom.axis_index(1), np.arange(4))
  assert geom.frame_ids == tuple(range(8))


def test_geometry_wide_frame(parity_model):
  _, config = parity_model
  geom = carv_clip.clip_geometry((20, 144, 176, 3), config)
  # short side 144 -> 32, so 176 -> round(39.1) = 39, crop offset 3
  assert geom.resized_hw == (32, 39) and geom.crop_offset == (0, 3)
  # crop chunks are 8 px of 32 -> 36 px of the 144 px frame; 176 / 36 = 4.9
  assert geom.full_grid() == (4, 5)
  cols = geom.axis_index(1)
  # independent check: the crop chunk under each full-frame chunk centre
  bounds = np.round(np.arange(6) * 176 / 5).astype(int)
  centre = (bounds[:-1] + bounds[1:]) / 2 * 39 / 176 - 3
  np.testing.assert_array_equal(cols, np.clip(centre // 8, 0, 3))
  assert cols[0] == 0 and cols[-1] == 3 and set(cols) == {0, 1, 2, 3}
  # 8 clip frames evenly spaced over 20: floor(i * 20 / 8)
  assert geom.frame_ids == (0, 2, 5, 7, 10, 12, 15, 17)


def test_model_clip_matches_manual_preprocessing(parity_model, sample_video):
  _, config = parity_model
  clip, geom = carv_clip.model_clip(sample_video, config)
  assert clip.shape == config.video_shape and clip.dtype == np.float32
  frames = sample_video[list(geom.frame_ids)].astype(np.float32)
  manual = transforms.resize(frames, (32, 39))[:, :, 3:35]
  manual = (np.clip(np.asarray(manual), 0, 255) / 255 - 0.45) / 0.225
  np.testing.assert_allclose(np.asarray(clip), manual, atol=1e-4)


def test_carv_reduction_follows_its_schedule(parity_model, sample_video,
                                             carv_reduction):
  params, config = parity_model
  red = carv_reduction
  clip, _ = carv_clip.model_clip(sample_video, config)
  sig = carv.estimate_significance(params, config, clip, jax.random.key(3),
                                   n_samples=N_SAMPLES, mask_ratio=RATIO,
                                   progress=False)
  np.testing.assert_allclose(red.significance, np.asarray(sig), rtol=1e-6)
  assert red.full_map.shape == (4, 4, 5)
  np.testing.assert_array_equal(red.full_map[:, :, 0], red.significance[:, :, 0])
  flags = carv.schedule_from_significance(red.full_map, 10, 3)
  np.testing.assert_array_equal(red.flags, np.asarray(flags))
  assert red.flags[0].all()
  # every pixel equals the source frame of its region's latest refresh
  hb, wb = chunk_bounds(4, 144), chunk_bounds(5, 176)
  for i in range(4):
    for j in range(5):
      last = 0
      for f in range(10):
        if red.flags[f, i, j]:
          last = f
        np.testing.assert_array_equal(
            red.video[f, hb[i]:hb[i + 1], wb[j]:wb[j + 1]],
            sample_video[last, hb[i]:hb[i + 1], wb[j]:wb[j + 1]])


def test_baselines_at_same_budget(parity_model, sample_video, carv_reduction):
  params, config = parity_model
  nth = pipeline.reduce(sample_video, 'every-nth', 3, params=params,
                        config=config)
  for f in range(10):
    np.testing.assert_array_equal(nth.video[f], sample_video[f - f % 3])
  assert nth.flags.shape == carv_reduction.flags.shape
  rnd = pipeline.reduce(sample_video, 'random-chunk', 3, params=params,
                        config=config, key=jax.random.key(1))
  # every region refreshed at frame 0 and then exactly every 3 frames
  for i in range(4):
    for j in range(5):
      fired = np.nonzero(rnd.flags[1:, i, j])[0] + 1
      assert len(fired) >= 3 and np.all(np.diff(fired) == 3)
  me = pipeline.reduce(sample_video, 'motion-energy', 3, config=config,
                       params=params)
  energy = carv.motion_energy(sample_video, (4, 4, 5))
  np.testing.assert_allclose(me.significance, np.asarray(energy), rtol=1e-6)
  # mean refresh rate near 1/N for every method (frame 0 adds a little)
  for r in (carv_reduction, nth, rnd, me):
    assert 1 / 3 - 0.05 <= r.refresh_fraction <= 1 / 3 + 0.15


def test_precomputed_significance_and_invert(parity_model, sample_video,
                                             carv_reduction):
  params, config = parity_model
  inv = pipeline.reduce(sample_video, 'carv-masked', 3, params=params,
                        config=config,
                        significance=carv_reduction.significance, invert=True)
  full = carv_reduction.full_map
  expect = carv.schedule_from_significance(full, 10, 3, invert=True)
  np.testing.assert_array_equal(inv.flags, np.asarray(expect))
  # the most significant chunk is refreshed least when inverted
  idx = np.unravel_index(np.argmax(full[0]), full.shape[1:])
  assert inv.flags[1:, idx[0], idx[1]].sum() <= carv_reduction.flags[
      1:, idx[0], idx[1]].sum()


def test_bad_inputs(parity_model, sample_video):
  params, config = parity_model
  with pytest.raises(ShapeError, match='uint8'):
    pipeline.reduce(sample_video.astype(np.float32), 'every-nth', 2,
                    params=params, config=config)
  with pytest.raises(ConfigError, match='method'):
    pipeline.reduce(sample_video, 'carv-nope', 2, params=params, config=config)
  with pytest.raises(ConfigError, match='budget'):
    pipeline.reduce(sample_video, 'every-nth', 0, params=params, config=config)
  with pytest.raises(SizeError, match='at least 8 frames'):
    pipeline.reduce(sample_video[:5], 'every-nth', 2, params=params,
                    config=config)


def test_load_model_float16_and_missing(tmp_path, parity_model):
  params, config = parity_model
  with pytest.raises(CheckpointError, match='save_params'):
    pipeline.load_default_model(tmp_path / 'nothing')
  half = jax.tree.map(lambda p: np.asarray(p, np.float16), params)
  save_params(tmp_path / 'm', half, config)
  got, cfg = pipeline.load_default_model(tmp_path / 'm')
  assert cfg == config
  for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(half), strict=True):
    assert a.dtype == np.float32
    np.testing.assert_array_equal(np.asarray(a), b.astype(np.float32))


def test_run_carv_writes_outputs(tmp_path, parity_model, sample_video,
                                monkeypatch):
  params, config = parity_model
  # Blocks of 3 frames; the encoder must get them one by one, never the
  # whole reduced video (memory would grow with its length).
  monkeypatch.setattr(pipeline, '_REFRESH_BLOCK_BYTES', 3 * 144 * 176 * 3)
  seen = []
  encode_file = ffmpeg.encode_file

  def recording_encode_file(frames, *args, **kwargs):
    assert not hasattr(frames, 'shape')
    def record(blocks):
      for b in blocks:
        seen.append(len(b))
        yield b
    return encode_file(record(frames), *args, **kwargs)

  monkeypatch.setattr(ffmpeg, 'encode_file', recording_encode_file)
  paths = pipeline.run_carv(sample_clip_path(), tmp_path, params=params,
                            config=config, n_samples=N_SAMPLES,
                            mask_ratio=RATIO, budget=4, max_frames=10,
                            progress=False)
  assert seen == [3, 3, 3, 1]
  out = video_io.read_video(paths['video'])
  assert out.shape == (10, 144, 176, 3)
  sig = np.load(paths['significance'])
  assert sig.shape == config.grid
  assert np.load(paths['full_map']).shape == (4, 4, 5)
  flags = np.load(paths['flags'])
  assert flags.shape == (10, 4, 5) and flags[0].all()
  assert paths['heatmap'].read_bytes()[:4] == PNG
  # the same span reduced in memory gives the same schedule
  red = pipeline.reduce(sample_video, 'carv-visible', 4, params=params, config=config,
                        n_samples=N_SAMPLES, mask_ratio=RATIO)
  np.testing.assert_array_equal(red.flags, flags)
  np.testing.assert_allclose(red.significance, sig, rtol=1e-6)


def test_file_span_streams_the_stream_of_the_array(tmp_path, parity_model,
                                                   sample_video):
  _, config = parity_model
  span = pipeline.Span.of_file(sample_clip_path(), start=2, max_frames=8)
  assert span.shape == (8, 144, 176) and span.fps == pytest.approx(29.97)
  np.testing.assert_array_equal(span.pick([0, 7]), sample_video[[2, 9]])
  np.testing.assert_array_equal(span.whole(), sample_video[2:10])
  kw = dict(config=config, key=jax.random.key(1), crf=20)
  from_file = pipeline.reduce(span, 'random-chunk', 3, out=tmp_path / 'f.mp4',
                              **kw)
  array = pipeline.Span.of_array(sample_video[2:10], span.fps)
  from_array = pipeline.reduce(array, 'random-chunk', 3,
                               out=tmp_path / 'a.mp4', **kw)
  assert from_file.video is None and from_file.grid == (4, 4, 5)
  np.testing.assert_array_equal(from_file.flags, from_array.flags)
  assert (tmp_path / 'f.mp4').read_bytes() == (tmp_path / 'a.mp4').read_bytes()
  in_memory = pipeline.reduce(sample_video[2:10], 'random-chunk', 3, **kw)
  np.testing.assert_array_equal(in_memory.video, carv.apply_refresh(
      sample_video[2:10], in_memory.flags))
  plan = pipeline.reduce(span, 'random-chunk', 3, refresh=False, **kw)
  assert plan.video is None
  np.testing.assert_array_equal(plan.flags, from_file.flags)


def test_figures(carv_reduction, sample_video):
  s = carv_reduction.significance
  top, bottom = figures.extreme_chunks(s, 0.1)
  k = round(0.1 * s.size)
  assert top.sum() == bottom.sum() == k
  assert s[top].min() >= np.sort(s.ravel())[-k]
  assert s[bottom].max() <= np.sort(s.ravel())[k - 1]
  png = figures.significance_figure(sample_video[:8], s,
                                    geom=carv_reduction.geometry)
  assert png[:4] == PNG
  png = figures.mask_ratio_figure({0.5: s, 0.9: s * 2})
  assert png[:4] == PNG
  with pytest.raises(ShapeError):
    figures.extreme_chunks(s[0])


def test_bundled_model_ships():
  params, config = pipeline.load_default_model()
  assert config == pipeline.SMALL_CONFIG
  leaves = jax.tree.leaves(params)
  assert all(p.dtype == np.float32 for p in leaves)
  assert sum(p.size for p in leaves) == stmae.param_count(params) > 2_000_000
  size = sum(f.stat().st_size for f in pipeline.DEFAULT_MODEL_DIR.rglob('*')
             if f.is_file())
  assert size < 8 * 2**20


@pytest.mark.slow
def test_bundled_model_bfloat16_agrees():
  import dataclasses
  params, config = pipeline.load_default_model()
  clip, _ = carv_clip.model_clip(video_io.read_video(
      sample_clip_path(), max_frames=16), config)
  maps = [carv.estimate_significance(
      params, dataclasses.replace(config, dtype=d), clip, jax.random.key(0),
      n_samples=200, mask_ratio=0.98, progress=False)
      for d in ('float32', 'bfloat16')]
  assert carv.spearman(*maps) >= 0.99
