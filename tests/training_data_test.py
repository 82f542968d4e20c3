"""Clip iterators and batch sharding for training."""

import hashlib
import json

import jax
import ml_collections
import numpy as np
import pytest

from jaxvr import sharding
from jaxvr.errors import ConfigError, ShapeError, SizeError, VideoError
from jaxvr.training import data as data_lib
from jaxvr.video import io as video_io

T, SIZE = 4, (8, 8)


@pytest.fixture(scope='session')
def video_folder(tmp_path_factory):
  """Two small lossless videos with distinct content, plus a non-video."""
  folder = tmp_path_factory.mktemp('videos')
  rng = np.random.default_rng(0)
  for name, n in (('a.mp4', 12), ('b.mp4', 10)):
    base = rng.integers(0, 256, size=(1, 24, 32, 3))
    ramp = np.arange(n)[:, None, None, None] * 9
    video_io.write_video(folder / name, ((base + ramp) % 256).astype(np.uint8),
                         lossless=True)
  (folder / 'notes.txt').write_text('not a video')
  return folder


def test_resize_frames_matches_jax_image_resize():
  x = np.random.default_rng(1).uniform(0, 255, (2, 23, 17, 3))
  for size in ((8, 6), (31, 40), (23, 9)):
    expected = jax.image.resize(x, (2, *size, 3), 'linear', antialias=True)
    np.testing.assert_allclose(data_lib.resize_frames(x, size), expected,
                               atol=1e-3)


def test_synthetic_clips_are_deterministic_and_resume():
  make = lambda seed=0: data_lib.SyntheticClips(T, SIZE, batch_size=4,
                                                seed=seed)
  it = make()
  batches = [next(it)['video'] for _ in range(5)]
  assert batches[0].shape == (4, T, *SIZE, 3) and batches[0].dtype == np.uint8
  assert not np.array_equal(batches[0], batches[1])
  assert np.abs(np.diff(batches[0].astype(int), axis=1)).mean() > 0  # Motion.
  assert not np.array_equal(batches[0], next(make(seed=1))['video'])
  resumed = make()
  resumed.set_state(it.get_state() | {'position': 3})
  np.testing.assert_array_equal(next(resumed)['video'], batches[3])
  assert it.get_state() == {'seed': 0, 'batch_size': 4, 'position': 5}
  with pytest.raises(ConfigError, match='seed'):
    make(seed=2).set_state(it.get_state())


def test_each_process_loads_its_rows_of_one_global_batch(monkeypatch):
  whole = data_lib.SyntheticClips(T, SIZE, batch_size=4, seed=0)
  monkeypatch.setattr(jax, 'process_count', lambda: 2)
  rows = []
  for index in (0, 1):
    monkeypatch.setattr(jax, 'process_index', lambda index=index: index)
    it = data_lib.SyntheticClips(T, SIZE, batch_size=4, seed=0)
    it.set_state(whole.get_state() | {'position': 2})
    rows.append(next(it)['video'])
    # The global batch is the same on every process.
    np.testing.assert_array_equal(it.global_batch_at(2)['video'],
                                  whole.batch_at(2)['video'])
  assert rows[0].shape == (2, T, *SIZE, 3)
  np.testing.assert_array_equal(np.concatenate(rows),
                                whole.batch_at(2)['video'])
  with pytest.raises(ConfigError, match='multiple of the process count 2'):
    data_lib.SyntheticClips(T, SIZE, batch_size=3, seed=0)


def test_video_clips_center_crop_matches_frames(video_folder):
  it = data_lib.VideoClips(video_folder, T, SIZE, batch_size=2, seed=0,
                           frame_stride=2, crop='center', flip=False)
  assert len(it) == 2
  batch = next(it)['video']
  assert batch.shape == (2, T, *SIZE, 3) and batch.dtype == np.uint8
  # Recompute sample 0 from the file: same video choice and start rule.
  order = np.random.default_rng([0, 1 << 20, 0]).permutation(2)
  path = it.paths[order[0]]
  n = video_io.probe_video(path).n_frames
  start = int(np.random.default_rng([0, 0]).integers(0, n - 7 + 1))
  frames = video_io.read_video(path, start=start, stride=2, max_frames=T)
  crop = frames[:, :, 4:28]  # Centre 24x24 of 24x32.
  expected = jax.image.resize(crop.astype(np.float32), (T, *SIZE, 3),
                              'linear', antialias=True)
  np.testing.assert_allclose(batch[0], np.clip(np.rint(expected), 0, 255),
                             atol=1)


def test_video_clips_random_augment_resume_and_preload(video_folder):
  kw = dict(batch_size=4, seed=5, crop='random', crop_scale=(0.5, 1.0),
            flip=True)
  it = data_lib.VideoClips(video_folder, T, SIZE, **kw)
  batches = [next(it)['video'] for _ in range(3)]
  resumed = data_lib.VideoClips(video_folder, T, SIZE, **kw)
  resumed.set_state(it.get_state() | {'position': 2})
  np.testing.assert_array_equal(next(resumed)['video'], batches[2])
  # Preloading at native size cuts the very same clips from memory.
  pre = data_lib.VideoClips(video_folder, T, SIZE, preload_short_side=64,
                            num_workers=2, **kw)
  for b in batches:
    np.testing.assert_array_equal(next(pre)['video'], b)
  small = data_lib.VideoClips(video_folder, T, SIZE, preload_short_side=12,
                              **kw)
  assert small._frames[0].shape[1:] == (12, 16, 3)
  assert next(small)['video'].shape == (4, T, *SIZE, 3)


def test_video_clips_bad_input(video_folder, tmp_path):
  with pytest.raises(SizeError, match='b.mp4: has 10 frames, a clip needs 11'):
    data_lib.VideoClips(video_folder, 11, SIZE, batch_size=1)
  # Too short for the stride only: sampled at the largest stride that fits.
  clips = data_lib.VideoClips(video_folder, 6, SIZE, batch_size=1,
                              frame_stride=2, preload_short_side=SIZE[0])
  short = [i for i, p in enumerate(clips.paths) if p.name == 'b.mp4'][0]
  assert clips._strides[short] == 1
  assert all(len(clips.sample(i)) == 6 for i in range(4))
  with pytest.raises(VideoError, match='no video files'):
    data_lib.VideoClips(tmp_path, T, SIZE, batch_size=1)
  with pytest.raises(ConfigError, match='crop'):
    data_lib.VideoClips(video_folder, T, SIZE, batch_size=1, crop='left')
  with pytest.raises(ConfigError, match='crop_scale'):
    data_lib.VideoClips(video_folder, T, SIZE, batch_size=1,
                        crop_scale=(0.8, 0.5))


def test_shard_batch_and_mesh():
  mesh = sharding.make_mesh()
  batch = {'video': np.arange(8 * 6, dtype=np.float32).reshape(8, 2, 3),
           'label': np.arange(8)}
  out = sharding.shard_batch(batch, mesh)
  assert out['video'].shape == (8, 2, 3)
  assert len(out['video'].addressable_shards) == 8
  assert out['video'].sharding == sharding.batch_sharding(mesh)
  np.testing.assert_array_equal(out['video'], batch['video'])
  np.testing.assert_array_equal(out['label'].addressable_shards[3].data, [3])
  with pytest.raises(ShapeError, match='leading batch axis'):
    sharding.shard_batch({'a': np.zeros((8, 1)), 'b': np.zeros((4, 1))}, mesh)
  with pytest.raises(ShapeError, match='multiple of the 8 devices'):
    sharding.shard_batch(np.zeros((4, 2)), mesh)
  assert sharding.make_mesh(2).size == 2
  with pytest.raises(ConfigError, match='n_devices'):
    sharding.make_mesh(9)
  assert sharding.maybe_initialize_distributed(force=False) is False


def test_preload_cache_frame_cap_and_training_record(video_folder, tmp_path):
  path = video_folder / 'a.mp4'
  full = data_lib.preload_video(path, 16)
  assert full.shape == (12, 16, 21, 3)
  capped = data_lib.preload_video(path, 16, max_frames=4, chunk=2)
  # Two runs of 2 consecutive frames, from the start and the end.
  np.testing.assert_array_equal(capped, full[[0, 1, 10, 11]])
  cache = tmp_path / 'cache'
  first = data_lib._cached_preload(path, 16, None, cache)
  (entry,) = cache.glob('a-*.npy')
  np.save(entry, first + 1)   # a cache hit returns the stored array
  np.testing.assert_array_equal(data_lib._cached_preload(path, 16, None, cache),
                                first + 1)
  assert len(list(cache.glob('a-*.npy'))) == 1
  data_lib._cached_preload(path, 12, None, cache)   # other settings: new entry
  assert len(list(cache.glob('a-*.npy'))) == 2

  config = ml_collections.ConfigDict({'source': 'videos',
                                      'clips_dir': str(video_folder)})
  record = data_lib.write_training_record(tmp_path / 'model', config, 7)
  assert record == tmp_path / 'model' / 'training_clips.json'
  saved = json.loads(record.read_text())
  assert saved['steps'] == 7
  assert [c['name'] for c in saved['clips']] == ['a.mp4', 'b.mp4']
  assert saved['clips'][0]['sha256'] == hashlib.sha256(
      path.read_bytes()).hexdigest()
  assert data_lib.training_record_path(tmp_path / 'd.npz') == (
      tmp_path / 'd.training_clips.json')


def test_validation_clips_are_cut_like_compare(video_folder):
  from jaxvr.compare import ClipSpec

  clips = data_lib.validation_clips(video_folder, 6, (16, 16), windows=2)
  assert clips.shape == (4, 6, 16, 16, 3) and clips.dtype == np.uint8
  want, _ = ClipSpec(frames=6, size=16).load(video_folder / 'a.mp4')
  np.testing.assert_array_equal(clips[0], want)


def test_data_state_records_the_clip_list(video_folder, tmp_path):
  kw = dict(batch_size=2, seed=0)
  it = data_lib.VideoClips(video_folder, T, SIZE, **kw)
  next(it)
  state = json.loads(json.dumps(it.get_state()))  # as a checkpoint holds it
  a, b = (video_folder / n for n in ('a.mp4', 'b.mp4'))
  assert state['clips'] == [
      {'name': p.name, 'sha256': hashlib.sha256(p.read_bytes()).hexdigest()}
      for p in (a, b)]
  # Same clips elsewhere: resumes. Other clips: refused, naming them.
  (tmp_path / 'a.mp4').write_bytes(a.read_bytes())
  (tmp_path / 'b.mp4').write_bytes(b.read_bytes())
  same = data_lib.VideoClips(tmp_path, T, SIZE, **kw)
  same.set_state(state)
  assert same.position == 1
  (tmp_path / 'b.mp4').unlink()
  (tmp_path / 'c.mp4').write_bytes(b.read_bytes())
  other = data_lib.VideoClips(tmp_path, T, SIZE, **kw)
  with pytest.raises(ConfigError, match=r'clips: 2 -> 2 videos, removed '
                     r'b\.mp4, added c\.mp4.*allow_config_change'):
    other.set_state(state)
  other.set_state(state, allow_changes=True)
  assert other.position == 1
  assert data_lib.data_state_changes(state, {**state, 'batch_size': 4}) == [
      'batch_size: 2 -> 4']
