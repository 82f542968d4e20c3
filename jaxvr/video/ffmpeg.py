"""The one home of the ffmpeg subprocess: run it, pipe frames, probe files.

jaxvr drives the ffmpeg binary that imageio-ffmpeg ships (libx264, libx265,
SVT-AV1, FFV1, VP9, libvmaf). Every run here goes through this module:

* :func:`run`: one command, its stdout returned;
* :func:`decoding`: raw frames streamed out of ffmpeg's stdout;
* :func:`encode_file`: RGB frames streamed into ffmpeg's stdin and encoded
  with a real codec (the RGB -> YUV conversion is ffmpeg's own: swscale
  defaults, BT.601 matrix, limited range, untagged stream);
* :func:`probe`: a file's size, frame rate and frame count, no decoding.

ffmpeg's stderr always goes to a temporary file (a pipe nobody reads could
fill and stall it) of which at most the last :data:`STDERR_LIMIT` bytes are
read back; its complaints become typed :mod:`jaxvr.errors` (:func:`classify`
for files that do not decode, ``CodecError`` for failed runs).
:mod:`jaxvr.video.io` (video files) and :mod:`jaxvr.codecs` (encoded bytes)
both sit on this module.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import os
import re
import subprocess
import tempfile
from collections.abc import Iterable, Iterator

import imageio_ffmpeg

from jaxvr import errors
from jaxvr.video.transforms import frame_block

# codec -> (container format, file suffix)
_CONTAINERS = {
  'libx264': ('mp4', '.mp4'),
  'libx264rgb': ('mp4', '.mp4'),
  'libx265': ('mp4', '.mp4'),
  'libsvtav1': ('mp4', '.mp4'),
  'ffv1': ('matroska', '.mkv'),
}
CODECS = tuple(_CONTAINERS)
PIX_FMTS = ('yuv420p', 'yuv444p', 'rgb24')
#: The most bytes of ffmpeg's stderr read back after a run (its end).
STDERR_LIMIT = 1 << 20
_QUIET = ('-hide_banner', '-nostdin', '-loglevel', 'error')


def executable() -> str:
  """Path of the ffmpeg binary bundled with imageio-ffmpeg."""
  return imageio_ffmpeg.get_ffmpeg_exe()


def _tail(err) -> str:
  """The last :data:`STDERR_LIMIT` bytes of the stderr file ``err``."""
  size = err.seek(0, os.SEEK_END)
  err.seek(max(0, size - STDERR_LIMIT))
  return err.read().decode(errors='replace')


def _last_line(stderr: str, returncode: int) -> str:
  lines = stderr.strip().splitlines()
  return lines[-1] if lines else f'exit code {returncode}'


def run(args: list[str], stdin: bytes | None = None, what: str = 'ffmpeg',
        cwd: str | None = None) -> bytes:
  """Runs ffmpeg with ``args`` (in folder ``cwd``) and returns its stdout.

  Raises:
    CodecError: ffmpeg exited non-zero; the message holds its last error line.
  """
  with tempfile.TemporaryFile() as err:
    proc = subprocess.run([executable(), *_QUIET, '-y', *args], input=stdin,
                          stdout=subprocess.PIPE, stderr=err, check=False,
                          cwd=cwd)
    if proc.returncode != 0:
      raise errors.CodecError(
          f'{what} failed: {_last_line(_tail(err), proc.returncode)}')
  return proc.stdout


def is_pattern(path: str) -> bool:
  """An image-sequence pattern: '%' in the name and no file of that name."""
  return '%' in os.path.basename(path) and not os.path.lexists(path)


def input_arg(path: str) -> str:
  """What to pass to ``ffmpeg -i``: existing files go through the ``file:``
  protocol, so that '%' in a name (``100%done.mp4``) is not read as a
  sequence pattern and a name such as ``pipe:1`` or ``a:b.mp4`` is not read
  as a protocol."""
  return path if is_pattern(path) else 'file:' + os.path.abspath(path)


def _has_mp4_signature(path: str) -> bool:
  with open(path, 'rb') as f:
    return f.read(12)[4:8] == b'ftyp'


def classify(path: str, stderr: str) -> errors.VideoError:
  """Turns ffmpeg's complaint about ``path`` into a typed error."""
  lines = [ln for ln in stderr.strip().splitlines() if ln.strip()]
  last = lines[-1] if lines else 'no message'
  if 'moov atom not found' in stderr and _has_mp4_signature(path):
    return errors.TruncatedVideoError(
        f'{path}: incomplete mp4 (index missing: the file was cut short or '
        'never finished writing)')
  if 'Input #0' in stderr:
    return errors.EmptyVideoError(
        f'{path}: the container opens but holds no video stream (0 frames)')
  return errors.UnreadableVideoError(
      f'{path}: ffmpeg cannot read it as video ({last.strip()})')


@dataclasses.dataclass(frozen=True)
class VideoInfo:
  """What ``probe`` learns about a file without decoding it."""

  path: str
  width: int
  height: int
  fps: float
  n_frames: int
  duration: float
  codec: str


_STREAM_RE = re.compile(
    r'Stream #\d+:\d+.*?: Video: (?P<codec>\w+).*?, (?P<w>\d+)x(?P<h>\d+)')
_FPS_RE = re.compile(r'(?P<fps>[\d.]+) (?:fps|tbr)')
_DURATION_RE = re.compile(r'Duration: (\d+):(\d+):([\d.]+)')


def probe(path: str) -> VideoInfo:
  """Reads the size, frame rate, duration and coded frame count of ``path``.

  The frame count comes from the container's packets (no decoding), so it
  is exact for coded frames and fast. ``path`` is an existing file or an
  image-sequence pattern (see ``jaxvr.video.io.check_path``).

  Raises:
    UnreadableVideoError, EmptyVideoError, TruncatedVideoError.
  """
  with tempfile.TemporaryFile() as err:
    subprocess.run([executable(), '-hide_banner', '-nostdin', '-i',
                    input_arg(path)], stdout=subprocess.DEVNULL, stderr=err,
                   check=False)
    header = _tail(err)
  stream = _STREAM_RE.search(header)
  if stream is None:
    raise classify(path, header)
  line = header[stream.start():].splitlines()[0]
  fps_match = _FPS_RE.search(line)
  fps = float(fps_match.group('fps')) if fps_match else 0.0
  dur = _DURATION_RE.search(header)
  duration = (int(dur[1]) * 3600 + int(dur[2]) * 60 + float(dur[3])) if dur else 0.0
  try:
    n_frames, _ = imageio_ffmpeg.count_frames_and_secs(input_arg(path))
  except RuntimeError as e:
    raise classify(path, str(e)) from None
  if n_frames == 0:
    raise errors.EmptyVideoError(f'{path}: holds a video stream with 0 frames')
  return VideoInfo(path, int(stream['w']), int(stream['h']), fps,
                   int(n_frames), duration, stream['codec'])


class Output:
  """A running ffmpeg's stdout; ``stderr`` holds its tail once it is done."""

  def __init__(self, stdout):
    self._stdout = stdout
    self.stderr = ''

  def read(self, n: int) -> bytes:
    """Up to ``n`` bytes (fewer only at the end of the stream)."""
    return self._stdout.read(n)


@contextlib.contextmanager
def decoding(path: str, pix_fmt: str) -> Iterator[Output]:
  """ffmpeg decoding the first video stream of ``path`` to raw frames.

  Coded frames only (``-fps_mode passthrough``: no duplicated frames for
  variable-rate files), as ``pix_fmt`` ('rgb24', 'yuv420p', ...) on stdout.
  Leaving the block stops ffmpeg if it is still running and fills in the
  output's ``stderr``.
  """
  cmd = [executable(), *_QUIET, '-i', input_arg(path), '-map', '0:v:0',
         '-fps_mode', 'passthrough', '-f', 'rawvideo', '-pix_fmt', pix_fmt,
         'pipe:1']
  with tempfile.TemporaryFile() as err:
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err,
                            stdin=subprocess.DEVNULL)
    out = Output(proc.stdout)
    try:
      yield out
    finally:
      proc.stdout.close()
      if proc.poll() is None:
        proc.kill()
      proc.wait()
      out.stderr = _tail(err)


def container_suffix(codec: str) -> str:
  """File suffix of the container ``codec`` is written in ('' if unknown)."""
  return _CONTAINERS.get(codec, ('', ''))[1]


def _codec_args(codec: str, crf: float | None, lossless: bool, pix_fmt: str,
                preset: str | None, threads: int | None) -> list[str]:
  """The ffmpeg output options for one codec setting."""
  if codec not in _CONTAINERS:
    raise errors.ConfigError(f'codec: expected one of {CODECS}, got {codec!r}')
  if pix_fmt not in PIX_FMTS:
    raise errors.ConfigError(
        f'pix_fmt: expected one of {PIX_FMTS}, got {pix_fmt!r}')
  if not lossless and crf is None and codec != 'ffv1':
    raise errors.ConfigError(
        f'{codec}: give crf=<number> or lossless=True')
  if codec == 'libsvtav1' and pix_fmt != 'yuv420p':
    raise errors.ConfigError(
        f"libsvtav1: supports only pix_fmt='yuv420p' (4:2:0), got {pix_fmt!r}")
  if codec == 'libx264' and pix_fmt == 'rgb24':
    codec = 'libx264rgb'
  out = ['-c:v', codec]
  if codec in ('libx264', 'libx264rgb', 'libx265'):
    out += ['-preset', preset or 'medium']
  elif codec == 'libsvtav1':
    out += ['-preset', preset or '8']
  if codec in ('libx264', 'libx264rgb'):
    out += ['-qp', '0'] if lossless else ['-crf', f'{crf:g}']
  elif codec == 'libx265':
    params = 'log-level=error' + (':lossless=1' if lossless else '')
    out += ['-x265-params', params]
    if not lossless:
      out += ['-crf', f'{crf:g}']
  elif codec == 'libsvtav1':
    if lossless:
      out += ['-svtav1-params', 'lossless=1']
    else:
      out += ['-crf', f'{int(round(crf))}']
  elif codec == 'ffv1':
    out += ['-level', '3', '-g', '1']
  ffmpeg_pix = {'rgb24': 'gbrp' if codec in ('ffv1', 'libx265')
                else 'rgb24'}.get(pix_fmt, pix_fmt)
  out += ['-pix_fmt', ffmpeg_pix]
  if threads is not None:
    out += ['-threads', str(threads)]
  return out


def encode_file(frames: Iterable, path: str | os.PathLike,
                codec: str = 'libx264', *, crf: float | None = None,
                lossless: bool = False, pix_fmt: str = 'yuv444p',
                fps: float = 24, preset: str | None = None,
                threads: int | None = 1) -> int:
  """Encodes a stream of RGB frames straight into the file ``path``.

  Frames go to ffmpeg's stdin as they arrive, so only the block in hand is
  in memory (a long video is never held whole, nor copied to bytes).

  Args:
    frames: iterable of uint8 ``[H, W, 3]`` frames or ``[b, H, W, 3]``
      blocks, all of one size (an array ``[T, H, W, 3]`` in a list works).
    path: the output file (written by ffmpeg in place: wrap it in
      ``jaxvr.files.atomic_path`` to replace a file atomically).
    codec: one of ``CODECS`` ('libx264', 'libx265', 'libsvtav1', 'ffv1', or
      'libx264rgb').
    crf: constant rate factor (lossy). Ignored when ``lossless``.
    lossless: lossless mode (x264 ``-qp 0``, x265/SVT-AV1 ``lossless=1``;
      FFV1 is always lossless). With a YUV ``pix_fmt`` this is lossless in
      YCbCr, not in RGB; use ``pix_fmt='rgb24'`` for bit-exact RGB.
    pix_fmt: 'yuv444p', 'yuv420p' or 'rgb24'.
    fps: frame rate written into the stream.
    preset: encoder preset (x264/x265 default 'medium', SVT-AV1 default 8).
    threads: encoder threads; 1 (default) makes sizes reproducible.

  Returns:
    The number of frames written.

  Raises:
    ShapeError: no frames, or frames that are not uint8 RGB of one size.
    ConfigError, SizeError: settings that cannot work.
    CodecError: ffmpeg failed.
  """
  blocks = iter(frames)
  first = next(blocks, None)
  if first is None:
    raise errors.ShapeError('frames: expected at least one frame, got T=0')
  first = frame_block(first, None)
  h, w = first.shape[1:3]
  if codec not in _CONTAINERS:
    raise errors.ConfigError(f'codec: expected one of {CODECS}, got {codec!r}')
  if codec in ('libx264', 'libx265') and pix_fmt == 'yuv420p' and (h % 2 or w % 2):
    raise errors.SizeError(
        f'frames: {codec} yuv420p needs even width and height, got {w}x{h}')
  cmd = [executable(), *_QUIET, '-y',
         '-f', 'rawvideo', '-pix_fmt', 'rgb24', '-s', f'{w}x{h}',
         '-framerate', f'{fps:g}', '-i', 'pipe:0',
         *_codec_args(codec, crf, lossless, pix_fmt, preset, threads),
         '-f', _CONTAINERS[codec][0], os.fspath(path)]
  count = 0
  with tempfile.TemporaryFile() as err:
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, stderr=err)
    try:
      for block in itertools.chain([first], blocks):
        block = frame_block(block, (h, w))
        proc.stdin.write(block.data)
        count += len(block)
      proc.stdin.close()
    except BrokenPipeError:
      pass  # ffmpeg stopped reading: its exit status and message say why.
    except BaseException:
      proc.kill()
      proc.wait()
      raise
    finally:
      if not proc.stdin.closed:
        with contextlib.suppress(BrokenPipeError):
          proc.stdin.close()
    if proc.wait() != 0:
      raise errors.CodecError(
          f'{codec} encode of {count} frames {w}x{h} failed: '
          f'{_last_line(_tail(err), proc.returncode)}')
  return count
