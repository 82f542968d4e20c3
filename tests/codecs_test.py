"""Real codec round trips and the codec-anchor reproduction."""

import json

import numpy as np
import pytest

from jaxvr import codecs, errors, evaluation, video
from jaxvr.assets import sample_clip_path
from jaxvr.video.transforms import resize_short_side_pil


@pytest.fixture(scope='module')
def anchor_frames():
  """The anchor procedure on the bundled clip (= carphone frames 0-47)."""
  frames = video.read_video(sample_clip_path(), max_frames=48)
  frames = resize_short_side_pil(frames, 128)
  return np.asarray(video.center_crop(frames, (128, 128)))


@pytest.fixture(scope='module')
def anchors(fixtures_dir):
  return json.loads((fixtures_dir / 'codec_anchor_carphone.json').read_text())


def _psnr(a, b):
  return 10 * np.log10(255.0**2 / np.mean((a.astype(np.float64) - b) ** 2))


@pytest.mark.parametrize('name, kwargs', [
    ('libx264 -crf 0 yuv444p', dict(lossless=True, pix_fmt='yuv444p')),
    ('libx264 -crf 3 yuv444p', dict(crf=3, pix_fmt='yuv444p')),
    ('libx264 -crf 4 yuv420p', dict(crf=4, pix_fmt='yuv420p')),
])
def test_reproduces_codec_anchor(anchor_frames, anchors, name, kwargs):
  ref = anchors['rows'][name]
  enc = codecs.roundtrip(anchor_frames, 'libx264', fps=anchors['fps'], **kwargs)
  assert abs(enc.size - ref['mp4_bytes']) <= 0.01 * ref['mp4_bytes']
  assert abs(_psnr(anchor_frames, enc.decoded) - ref['psnr_rgb_global']) <= 0.05


def test_decimated_packed_anchor(anchor_frames, anchors):
  kept = anchor_frames[0::2]
  packed = np.stack([np.stack([k[y, (y % 2)::2] for y in range(128)]) for k in kept])
  size = len(codecs.encode(packed, 'libx264', lossless=True,
                           fps=anchors['fps'] / 2))
  ref = anchors['decimated']['b_packed']['libx264 -crf 0 yuv444p']['mp4_bytes']
  assert abs(size - ref) <= 0.01 * ref


@pytest.mark.parametrize('codec, pix_fmt', [('libx264', 'rgb24'), ('ffv1', 'rgb24')])
def test_rgb_lossless_is_bit_exact(anchor_frames, codec, pix_fmt):
  clip = anchor_frames[:6, :64, :80]
  enc = codecs.roundtrip(clip, codec, lossless=True, pix_fmt=pix_fmt)
  np.testing.assert_array_equal(enc.decoded, clip)


@pytest.mark.parametrize('codec, kwargs', [
    ('libx265', dict(crf=28, pix_fmt='yuv420p')),
    ('libsvtav1', dict(crf=40, pix_fmt='yuv420p')),
])
def test_other_codecs_round_trip(anchor_frames, codec, kwargs):
  clip = anchor_frames[:8]
  enc = codecs.roundtrip(clip, codec, **kwargs)
  assert enc.decoded.shape == clip.shape
  assert 0 < enc.size < clip.nbytes / 10
  assert _psnr(clip, enc.decoded) > 25


def test_size_falls_with_crf(anchor_frames):
  sizes = [len(codecs.encode(anchor_frames[:8], crf=c)) for c in (10, 25, 40)]
  assert sizes[0] > sizes[1] > sizes[2]


def test_codec_sweep_rows(anchor_frames):
  rows = evaluation.codec_sweep(
      anchor_frames[:8], 29.97, ['libx264:lossless:yuv444p', 'libx264:crf=30:yuv420p'],
      metric_names=('psnr', 'ssim_y'), progress=False)
  assert rows[0]['factor'] == pytest.approx(1.0)
  assert rows[1]['factor'] > 5
  assert rows[0]['psnr'] > rows[1]['psnr'] and rows[0]['ssim_y'] > rows[1]['ssim_y']


@pytest.mark.parametrize('bad, err', [
    (np.zeros((2, 16, 16), np.uint8), errors.ShapeError),
    (np.zeros((2, 16, 16, 3), np.float32), errors.ShapeError),
    (np.zeros((0, 16, 16, 3), np.uint8), errors.ShapeError),
])
def test_encode_rejects_bad_frames(bad, err):
  with pytest.raises(err, match='frames'):
    codecs.encode(bad, crf=20)


def test_bad_settings():
  frames = np.zeros((2, 16, 16, 3), np.uint8)
  with pytest.raises(errors.ConfigError, match='codec'):
    codecs.encode(frames, 'mpeg2', crf=3)
  with pytest.raises(errors.ConfigError, match='crf'):
    codecs.encode(frames, 'libx264')
  with pytest.raises(errors.ConfigError, match='yuv420p'):
    codecs.encode(frames, 'libsvtav1', crf=30, pix_fmt='yuv444p')
  with pytest.raises(errors.SizeError, match='even'):
    codecs.encode(np.zeros((2, 15, 16, 3), np.uint8), crf=3, pix_fmt='yuv420p')
  with pytest.raises(errors.ConfigError, match='cannot read'):
    evaluation.CodecSetting.parse('libx264:fast')
  with pytest.raises(errors.EmptyVideoError):
    codecs.decode(b'')


def test_encode_file_streams_blocks_and_matches_encode(tmp_path):
  rng = np.random.default_rng(0)
  frames = rng.integers(0, 256, (5, 16, 24, 3), dtype=np.uint8)
  blocks = (b for b in (frames[:2], frames[2], frames[3:]))  # blocks, a frame
  path = tmp_path / 'v.mp4'
  exact = dict(lossless=True, pix_fmt='rgb24')
  assert codecs.encode_file(blocks, path, 'libx264', **exact) == 5
  assert path.read_bytes() == codecs.encode(frames, 'libx264', **exact)
  np.testing.assert_array_equal(codecs.decode(path.read_bytes()), frames)
  with pytest.raises(errors.ShapeError, match='size of the first'):
    codecs.encode_file([frames[:2], frames[:1, :8]], tmp_path / 'w.mkv', 'ffv1')
  with pytest.raises(errors.ShapeError, match='at least one frame'):
    codecs.encode_file(iter([]), tmp_path / 'x.mkv', 'ffv1')
