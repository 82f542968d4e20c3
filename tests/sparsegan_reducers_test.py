"""Sparse-GAN inference and reducers: real payloads, exact kept pixels, tiling."""

import jax
import numpy as np
import pytest

from jaxvr import checkpoint, reducers
from jaxvr.configs import sparse_gan as configs
from jaxvr.errors import CheckpointError, ConfigError, ShapeError
from jaxvr.sparsegan import inference, normconv
from jaxvr.sparsegan import payload as payload_lib
from jaxvr.training import sparse_gan as trainer
from jaxvr.training import sparse_gan_step as ts

S, T = 16, 4   # the smoke model's tile and window


def _weights_dir(tmp_path_factory, options='smoke'):
  config = trainer.trainer_config(configs.get_config(options))
  state = ts.make_init(config)(jax.random.key(1))
  path = tmp_path_factory.mktemp('weights')
  params = jax.tree.map(np.asarray, jax.device_get(state.gen.params))
  checkpoint.save_params(path, params, config)
  return path


@pytest.fixture(scope='module')
def weights(tmp_path_factory):
  return inference.load(_weights_dir(tmp_path_factory))


@pytest.fixture(scope='module')
def video():
  """Smooth moving colours, 6 frames of 20x24 (not multiples of S or T)."""
  t, y, x = np.meshgrid(np.arange(6), np.arange(20), np.arange(24),
                        indexing='ij')
  chans = [np.sin(0.3 * y + 0.2 * x + 0.5 * t + p) for p in (0.0, 1.0, 2.0)]
  return np.round(127.5 + 120 * np.stack(chans, -1)).astype(np.uint8)


def test_clip_tiling_round_trips():
  rng = np.random.default_rng(0)
  x = rng.integers(0, 256, (7, 21, 35, 3), np.uint8)
  tile = (S, S + 8)
  clips = inference._to_clips(x, tile, T, 'edge')
  assert clips.shape == (2 * 2 * 2, T, S, S + 8, 3)
  np.testing.assert_array_equal(clips[0], x[:T, :S, :S + 8])
  # Padding repeats the last frame / row / column.
  np.testing.assert_array_equal(clips[-1][-1], clips[-1][-2])
  np.testing.assert_array_equal(
      inference._from_clips(clips, x.shape, tile, T), x)


@pytest.mark.parametrize('h, w, want', [
    (112, 112, (112, 112)),      # one tile, no padding
    (20, 24, (24, 24)),          # rounded up to multiples of 8
    (1080, 1920, (216, 240)),    # fewest tiles of <= 256 px, even split
    (257, 100, (136, 104)),
])
def test_tile_shape(h, w, want):
  th, tw = inference.tile_shape(h, w)
  assert (th, tw) == want
  assert th <= inference.MAX_TILE and tw <= inference.MAX_TILE
  assert th % 8 == 0 and tw % 8 == 0
  assert -(-h // th) == -(-h // inference.MAX_TILE)   # no extra tile row


def test_learned_mask_reducer_payload_is_exact(weights, video):
  r = reducers.create('sparsegan')
  r._loaded = weights
  payload = r.encode(video, fps=25.0)
  parsed = payload_lib.SparsePixelPayload.from_bytes(payload.data)
  assert payload.size == parsed.size == len(payload.data)
  assert parsed.shape == video.shape and parsed.fps == 25.0
  sparse, mask = payload_lib.decode(payload.data)
  np.testing.assert_array_equal(mask, r.extras()['mask'])
  assert payload.meta['kept_fraction'] == pytest.approx(mask.mean())
  # The mask is the rounded mask-generator confidence on each tile.
  np.testing.assert_array_equal(
      mask, inference.predict_mask(video, weights, seed=0))
  out = r.decode(payload)
  assert out.shape == video.shape and out.dtype == np.uint8
  np.testing.assert_array_equal(out[mask], video[mask])
  np.testing.assert_array_equal(out, r.decode(payload))  # deterministic


def test_random_mask_reducers_keep_an_exact_count(weights, video):
  for name, density in (('random-mask-d5', 0.05), ('random-mask-d10', 0.10)):
    r = reducers.create(name)
    r._loaded = weights
    payload = r.encode(video, fps=24.0)
    _, mask = payload_lib.decode(payload.data)
    k = round(density * 20 * 24)
    np.testing.assert_array_equal(mask.sum(axis=(1, 2)), k)
    out = r.decode(payload)
    np.testing.assert_array_equal(out[mask], video[mask])
  assert 'sparsegan' in reducers.available()


def test_inpainting_matches_the_generator_on_one_tile(weights):
  rng = np.random.default_rng(3)
  clip = rng.integers(0, 256, (T, S, S, 3), np.uint8)
  mask = inference.random_video_mask((T, S, S), 0.25, seed=2)
  out = inference.inpaint(clip, mask, weights, seed=5)
  known = (np.where(mask[..., None], clip, 0) / 255.0).astype(np.float32)
  m = mask[None, ..., None].astype(np.float32)
  key = jax.random.fold_in(jax.random.key(5), 0)
  reps = lambda a: np.repeat(a, inference._CHUNK, axis=0)
  # The jitted generator call on the clip batch (tile 0 of chunk 0).
  ref = weights._frame_fn()(weights.params['frame'], reps(known[None]),
                          reps(m), reps(known[None]), key)
  ref = np.clip(np.round(np.asarray(ref[0]) * 255), 0, 255).astype(np.uint8)
  np.testing.assert_array_equal(out, ref)


def test_encode_decode_functions_and_errors(weights, video, tmp_path):
  p = inference.encode(video, weights, fps=30.0)
  out = inference.decode(p.to_bytes(), weights)
  _, mask = payload_lib.decode(p)
  np.testing.assert_array_equal(out[mask], video[mask])
  p2 = inference.encode_random(video, 0.1, seed=4)
  assert payload_lib.decode(p2)[1].sum() == 6 * round(0.1 * 480)
  with pytest.raises(ShapeError, match='video'):
    inference.encode(video.astype(np.float32), weights)
  with pytest.raises(ShapeError, match='mask'):
    inference.inpaint(video, np.ones((6, 20, 23), bool), weights)
  with pytest.raises(CheckpointError, match='no such folder'):
    inference.load(tmp_path / 'missing')
  (tmp_path / 'empty').mkdir()
  with pytest.raises(CheckpointError):
    inference.load(tmp_path / 'empty')
  with pytest.raises(ConfigError, match='density'):
    reducers.create('random-mask-d5', density=1.5)


def test_no_mask_gen_weights_refuse_learned_masks(weights, video, tmp_path):
  config = weights.config.to_dict()
  config['model'].update(mask_mode='random', density=0.05)
  checkpoint.save_params(tmp_path, {'frame': weights.params['frame']}, config)
  gan = inference.load(tmp_path)
  assert not gan.has_mask_generator and gan.density == 0.05
  with pytest.raises(ConfigError, match='No-Mask-Gen'):
    inference.predict_mask(video, gan)


def test_bundled_default_weights():
  folder = inference.default_weights_dir()
  size = sum(f.stat().st_size for f in folder.rglob('*') if f.is_file())
  assert 0 < size < 8 * 2**20
  gan = inference.load()
  assert gan.has_mask_generator and gan.density == 0.05
  assert gan.frame_size == 64 and gan.num_frames == 6
  kernels = [x for x in jax.tree.leaves(gan.params) if x.ndim == 4]
  assert kernels and all(np.isfinite(k).all() for k in kernels)


def test_untrained_residual_generator_is_the_normconv_floor(tmp_path_factory,
                                                            video):
  """Residual G_I starts at zero: its decode equals the classical floor,
  also averaged over mirror images (each one mirrored back)."""
  gan = inference.load(_weights_dir(tmp_path_factory, 'smoke,residual'))
  assert gan.models.frame.residual
  mask = inference.random_video_mask(video.shape[:3], 0.1, seed=3)
  sparse = np.where(mask[..., None], video, 0).astype(np.uint8)
  floor = normconv.fill_video(sparse, mask)
  np.testing.assert_array_equal(inference.inpaint(sparse, mask, gan), floor)
  np.testing.assert_array_equal(
      inference.inpaint(sparse, mask, gan, flip_ensemble=True), floor)


def test_flip_ensemble_averages_mirrored_runs(weights, video):
  mask = inference.random_video_mask(video.shape[:3], 0.2, seed=1)
  sparse = np.where(mask[..., None], video, 0).astype(np.uint8)
  out = inference.inpaint(sparse, mask, weights, flip_ensemble=True)
  np.testing.assert_array_equal(out[mask], video[mask])
  plain = inference.inpaint(sparse, mask, weights).astype(float)
  lr = inference.inpaint(sparse[:, :, ::-1], mask[:, :, ::-1], weights,
                         seed=0)[:, :, ::-1]
  assert not np.array_equal(out, plain)   # mirrored runs change the result
  # Within the quantisation (and hole noise) of the three separate runs.
  assert np.abs(out - (plain + lr) / 2).mean() < np.abs(out - plain).mean()


def test_grown_inpainter_starts_as_the_saved_one(tmp_path_factory, video):
  """Extra temporal-fill inputs start with zero weights: same decode."""
  folder = _weights_dir(tmp_path_factory, 'smoke,residual')
  saved = inference.load(folder)
  # Give the saved model a non-zero correction, so equality means something.
  params = jax.tree.map(lambda x: x + 0.01, saved.params)
  checkpoint.save_params(folder, params, saved.config.to_dict())
  saved = inference.load(folder)
  config = trainer.trainer_config(configs.get_config('smoke,residual'))
  config.model.fill_sigma_ts = (0.0, 2.0)
  config.init_weights = str(folder)
  state = trainer.with_init_weights(
      ts.make_init(config)(jax.random.key(7)), config)
  grown_dir = tmp_path_factory.mktemp('grown')
  checkpoint.save_params(grown_dir, jax.device_get(state.gen.params), config)
  grown = inference.load(grown_dir)
  assert grown.models.frame.fill_sigma_ts == (0.0, 2.0)
  mask = inference.random_video_mask(video.shape[:3], 0.1, seed=3)
  sparse = np.where(mask[..., None], video, 0).astype(np.uint8)
  out = inference.inpaint(sparse, mask, grown)
  np.testing.assert_array_equal(out, inference.inpaint(sparse, mask, saved))
  assert not np.array_equal(out, normconv.fill_video(sparse, mask))
  config.model.width_mult = 0.25   # other widths still refuse to load
  with pytest.raises(CheckpointError, match='do not fit'):
    trainer.with_init_weights(ts.make_init(config)(jax.random.key(7)), config)


def test_floor_reducers_send_the_same_bytes(weights, video):
  """normconv-d5 and random-mask-d5 share mask and payload; only the decoder
  differs. sparsegan-normconv uses the learned mask of sparsegan."""
  gan, floor = reducers.create('random-mask-d5'), reducers.create('normconv-d5')
  gan._loaded = weights
  p_gan, p_floor = gan.encode(video, 24.0), floor.encode(video, 24.0)
  assert p_gan.data == p_floor.data
  sparse, mask = payload_lib.decode(p_floor.data)
  np.testing.assert_array_equal(floor.decode(p_floor),
                                normconv.fill_video(sparse, mask))
  learned, learned_floor = (reducers.create('sparsegan'),
                            reducers.create('sparsegan-normconv'))
  learned._loaded = learned_floor._loaded = weights
  assert learned.encode(video, 24.0).data == learned_floor.encode(
      video, 24.0).data
  np.testing.assert_array_equal(learned.extras()['mask'],
                                learned_floor.extras()['mask'])
