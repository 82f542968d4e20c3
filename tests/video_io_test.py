"""Reading and writing real video files, and bad files."""

import os
import subprocess

import numpy as np
import pytest

from jaxvr import codecs, errors, video
from jaxvr.assets import sample_clip_path
from jaxvr.video import ffmpeg


@pytest.fixture(scope='module')
def sample():
  return video.read_video(sample_clip_path())


def test_sample_clip(sample):
  assert sample.dtype == np.uint8 and sample.shape == (65, 144, 176, 3)
  info = video.probe_video(sample_clip_path())
  assert (info.width, info.height, info.n_frames) == (176, 144, 65)
  assert info.fps == pytest.approx(29.97)


def test_range_stride_max_frames(sample):
  part = video.read_video(sample_clip_path(), start=5, stride=3, max_frames=4)
  np.testing.assert_array_equal(part, sample[5:17:3])
  streamed = list(video.iter_frames(sample_clip_path(), start=60))
  np.testing.assert_array_equal(np.stack(streamed), sample[60:])


def test_luma_matches_ffmpeg_rgb_to_yuv(tmp_path, sample):
  """video.luma(rgb) is the Y plane ffmpeg codes for that RGB, before rounding."""
  path = tmp_path / 'y.mp4'
  path.write_bytes(codecs.encode(sample[:4], lossless=True, pix_fmt='yuv444p'))
  y = video.read_luma(path)
  assert y.shape == (4, 144, 176) and y.dtype == np.uint8
  diff = np.asarray(video.luma(sample[:4])) - y
  assert np.abs(diff).max() <= 0.52 and abs(diff.mean()) < 0.05


@pytest.mark.parametrize('suffix', ['.mp4', '.avi', '.webm', '.y4m', '.mkv'])
def test_reads_other_containers(tmp_path, sample, suffix):
  path = tmp_path / f'clip{suffix}'
  extra = {'.webm': ['-c:v', 'libvpx-vp9', '-lossless', '1'],
           '.avi': ['-c:v', 'ffv1'], '.mkv': ['-c:v', 'ffv1'],
           '.mp4': ['-c:v', 'libx264', '-qp', '0'], '.y4m': []}[suffix]
  subprocess.run([ffmpeg.executable(), '-v', 'error', '-i', str(sample_clip_path()),
                  '-frames:v', '5', *extra, str(path)], check=True)
  out = video.read_video(path)
  assert out.shape == (5, 144, 176, 3)
  assert np.abs(out.astype(int) - sample[:5]).mean() < 2.0


def test_write_mp4_lossless_and_gif(tmp_path, sample):
  clip = sample[:6, :64, :64]
  mp4 = tmp_path / 'out' / 'x.mp4'
  n = video.write_video(mp4, clip, fps=10, lossless=True)
  assert n == os.path.getsize(mp4)
  back = video.read_video(mp4)
  assert np.abs(back.astype(int) - clip).max() <= 3
  gif = tmp_path / 'x.gif'
  video.write_video(gif, clip, fps=10)
  assert video.read_video(gif).shape == clip.shape
  assert os.listdir(tmp_path / 'out') == ['x.mp4']  # no temporary file left


def test_write_odd_size_yuv420(tmp_path, sample):
  path = tmp_path / 'odd.mp4'
  video.write_video(path, sample[:3, :33, :47], crf=20)
  assert video.read_video(path).shape == (3, 34, 48, 3)
  # Streamed blocks (padded one by one) give the same file as the array.
  streamed = tmp_path / 'streamed.mp4'
  video.write_video(streamed, iter([sample[0, :33, :47], sample[1:3, :33, :47]]),
                    crf=20)
  assert streamed.read_bytes() == path.read_bytes()


def test_failed_streamed_write_keeps_old_file(tmp_path, sample):
  path = tmp_path / 'v.mp4'
  video.write_video(path, sample[:2, :32, :32], crf=20)
  old = path.read_bytes()

  def blocks():
    yield sample[:2, :32, :32]
    raise errors.TruncatedVideoError('input ended early')

  with pytest.raises(errors.TruncatedVideoError):
    video.write_video(path, blocks(), crf=20)
  assert path.read_bytes() == old and os.listdir(tmp_path) == ['v.mp4']


# Real bad files -------------------------------------------------------------


def _truncated_faststart(tmp_path):
  whole = tmp_path / 'whole.mp4'
  subprocess.run([ffmpeg.executable(), '-v', 'error', '-i', str(sample_clip_path()),
                  '-c', 'copy', '-movflags', '+faststart', str(whole)], check=True)
  data = whole.read_bytes()
  cut = tmp_path / 'cut.mp4'
  cut.write_bytes(data[: len(data) // 2])
  return cut


def test_truncated_mp4(tmp_path):
  cut = _truncated_faststart(tmp_path)
  with pytest.raises(errors.TruncatedVideoError, match='cut.mp4'):
    video.read_video(cut)
  partial = video.read_video(cut, allow_truncated=True)
  assert 10 < len(partial) < 65


def test_truncated_mp4_without_index(tmp_path):
  path = tmp_path / 'noindex.mp4'
  path.write_bytes(sample_clip_path().read_bytes()[:20000])
  with pytest.raises(errors.TruncatedVideoError, match='noindex.mp4'):
    video.read_video(path)


def test_text_file_named_mp4(tmp_path):
  path = tmp_path / 'notes.mp4'
  path.write_text('this is not a video\n')
  with pytest.raises(errors.UnreadableVideoError, match='notes.mp4'):
    video.read_video(path)


def test_zero_frame_and_empty_files(tmp_path):
  zero = tmp_path / 'zero.mp4'
  subprocess.run([ffmpeg.executable(), '-v', 'error', '-f', 'lavfi', '-i',
                  'color=c=red:s=64x64:d=0.1', '-frames:v', '0', '-c:v',
                  'libx264', str(zero)], check=True)
  with pytest.raises(errors.EmptyVideoError, match='zero.mp4'):
    video.read_video(zero)
  empty = tmp_path / 'empty.mp4'
  empty.write_bytes(b'')
  with pytest.raises(errors.EmptyVideoError, match='empty.mp4'):
    video.read_video(empty)


def test_missing_file_and_empty_range(tmp_path):
  with pytest.raises(errors.VideoNotFoundError, match='nope.mp4'):
    video.read_video(tmp_path / 'nope.mp4')
  with pytest.raises(errors.EmptyVideoError, match='requested range'):
    video.read_video(sample_clip_path(), start=1000)
  with pytest.raises(errors.ConfigError, match='stride'):
    video.read_video(sample_clip_path(), stride=0)


@pytest.mark.parametrize('name', ['100%done.mp4', 'a%d.mp4', 'pipe:1',
                                  "take:2 'final'.mp4", '50%off.mp4'])
def test_names_with_percent_colon_and_quotes_are_files(tmp_path, sample,
                                                       monkeypatch, name):
  """Existing files are read as files, not as sequence patterns or
  protocols, whatever their names hold."""
  monkeypatch.chdir(tmp_path)
  video.write_video(name, sample[:3], lossless=True)
  assert video.probe_video(name).n_frames == 3
  np.testing.assert_array_equal(video.read_video(name),
                                video.read_video(tmp_path / name))


def test_missing_names_with_percent(tmp_path):
  with pytest.raises(errors.VideoNotFoundError, match='no such file'):
    video.read_video(tmp_path / '50%off.mp4')
  with pytest.raises(errors.VideoNotFoundError, match='looked for .*frame_000'):
    video.read_video(tmp_path / 'frame_%03d.png')


def test_read_clip_cuts_resizes_and_crops(sample):
  from jaxvr.video.transforms import resize_short_side_pil

  clip, fps = video.read_clip(sample_clip_path(), 6, start=2, stride=2,
                              size=40)
  manual = resize_short_side_pil(sample[2:14:2], 40)[:, :, 4:44]
  np.testing.assert_array_equal(clip, manual)
  assert fps == pytest.approx(29.97)
  wide, _ = video.read_clip(sample_clip_path(), 3, size=(30, 50))
  np.testing.assert_array_equal(
      wide, resize_short_side_pil(sample[:3], 50)[:, 10:40, 5:55])
  native, _ = video.read_clip(sample_clip_path(), 4, start=61)
  np.testing.assert_array_equal(native, sample[61:65])
