"""Sparse MP4: decimation, real lossless streams, restoration."""

import json

import numpy as np
import pytest

from jaxvr import errors, sparse_mp4, video
from jaxvr.assets import sample_clip_path
from jaxvr.sparse_mp4 import interpolate
from jaxvr.video.transforms import resize_short_side_pil


@pytest.fixture(scope='module')
def anchor_frames():
  frames = resize_short_side_pil(video.read_video(sample_clip_path(), max_frames=48), 128)
  return np.asarray(video.center_crop(frames, (128, 128)))


@pytest.mark.parametrize('parity', sparse_mp4.PARITIES)
def test_pack_unpack_and_masks(parity):
  rng = np.random.default_rng(0)
  v = rng.integers(1, 256, (5, 6, 8, 3), dtype=np.uint8)
  packed = sparse_mp4.pack(v, parity)
  assert packed.shape == (3, 6, 4, 3)
  full = sparse_mp4.unpack(packed, parity)
  mask = sparse_mp4.observation_mask(5, 6, 8, parity)
  np.testing.assert_array_equal(full, sparse_mp4.zero_dropped(v, parity))
  np.testing.assert_array_equal(full > 0, np.repeat(mask[0::2, ..., None], 3, -1))
  assert mask[1::2].sum() == 0 and mask[0::2].mean() == 0.5
  if parity == 'alternate':  # the two kept frames of a window see every site once
    assert (mask[0] ^ mask[2]).all()


@pytest.mark.parametrize('layout, key', [('packed', 'b_packed'), ('zeros', 'b_checkerboard')])
def test_stream_matches_decimated_anchor(anchor_frames, fixtures_dir, layout, key):
  anchors = json.loads((fixtures_dir / 'codec_anchor_carphone.json').read_text())
  ref = anchors['decimated'][key]['libx264 -crf 0 yuv444p']['mp4_bytes']
  p = sparse_mp4.encode(anchor_frames, fps=anchors['fps'], layout=layout, parity='fixed')
  assert len(p.stream) == ref
  assert p.size == len(p.to_bytes()) < ref + 32


def test_payload_round_trip_is_exact_with_rgb_codec(anchor_frames):
  clip = anchor_frames[:7, :30, :41]   # odd T, H and W
  p = sparse_mp4.encode(clip, fps=30, codec='libx264rgb')
  back = sparse_mp4.SparseMP4Payload.from_bytes(p.to_bytes())
  observed, mask = sparse_mp4.decode_observed(back)
  assert observed.shape == (7, 30, 42, 3) and mask.shape == (7, 30, 42)
  padded = np.pad(clip, ((0, 0), (0, 0), (0, 1), (0, 0)), mode='edge')
  np.testing.assert_array_equal(observed[mask], padded[mask])
  assert abs(mask.mean() - 0.25 * 8 / 7) < 0.01


def test_interpolation_exact_on_linear_video():
  t, y, x = np.mgrid[0:7, 0:12, 0:12].astype(np.float32)
  v = (40 + 3 * t + 2 * y + x)[..., None]
  mask = sparse_mp4.observation_mask(7, 12, 12)
  out = np.asarray(interpolate.interpolate(np.where(mask[..., None], v, 0), mask))
  np.testing.assert_allclose(out[:, 1:-1, 1:-1], v[:, 1:-1, 1:-1], atol=1e-4)
  copy = np.asarray(interpolate.interpolate(v * mask[..., None], mask, 'copy'))
  np.testing.assert_allclose(copy[1, 1:-1, 1:-1], v[0, 1:-1, 1:-1], atol=1e-4)


def _smooth_dictionary(k=6):
  """3-frame low-frequency cosine atoms, unit norm: a prior for smooth video."""
  atoms = []
  grid = np.arange(k) + 0.5
  for ft in range(2):
    for fy in range(3):
      for fx in range(3):
        a = (np.cos(np.pi * ft * (np.arange(3) + 0.5) / 3)[:, None, None]
             * np.cos(np.pi * fy * grid / k)[None, :, None]
             * np.cos(np.pi * fx * grid / k)[None, None, :])
        atoms.append(a / np.linalg.norm(a))
  return np.stack(atoms).astype(np.float32)


def test_restore_smooth_video_beats_zero_fill():
  t, y, x = np.mgrid[0:6, 0:24, 0:24].astype(np.float32)
  v = (128 + 50 * np.sin(0.25 * x + 0.15 * y + 0.3 * t))[..., None]
  mask = sparse_mp4.observation_mask(6, 24, 24)
  observed = np.where(mask[..., None], v, 0)
  cfg = sparse_mp4.RestoreConfig(lam=0.01, n_steps=150)
  out = sparse_mp4.restore(observed, mask, _smooth_dictionary(), config=cfg,
                           progress=False)
  np.testing.assert_array_equal(out[mask], v[mask])
  err = (out - v)[~mask]
  psnr = 10 * np.log10(255**2 / np.mean(err**2))
  assert psnr > 30, psnr
  lca = sparse_mp4.restore(observed, mask, _smooth_dictionary(), progress=False,
                           config=sparse_mp4.RestoreConfig(solver='lca', lam=0.01,
                                                           n_steps=150, dt_over_tau=0.1))
  assert 10 * np.log10(255**2 / np.mean((lca - v)[~mask] ** 2)) > 25


def test_bad_input():
  with pytest.raises(errors.ConfigError, match='layout'):
    sparse_mp4.encode(np.zeros((2, 8, 8, 3), np.uint8), layout='diagonal')
  with pytest.raises(errors.PayloadError, match='Sparse MP4'):
    sparse_mp4.SparseMP4Payload.from_bytes(b'JV')
  with pytest.raises(errors.ShapeError, match='kernels'):
    sparse_mp4.restore(np.zeros((3, 8, 8, 1)), np.ones((3, 8, 8), bool),
                       np.zeros((4, 2, 4, 4)), progress=False)
