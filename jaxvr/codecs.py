"""Real codecs: encode frame arrays with ffmpeg, decode them back, count bytes.

This module is jaxvr's one ffmpeg wrapper. It drives the ffmpeg binary that
imageio-ffmpeg ships (libx264, libx265, SVT-AV1, FFV1, libvmaf), feeding raw
RGB frames on stdin, so the RGB -> YUV conversion is ffmpeg's own (swscale
defaults: BT.601 matrix, limited range, untagged stream). Sizes are the exact
bytes of the container file ffmpeg writes (headers included).

Compression factor, as in the Sparse MP4 paper: size of the lossless x264
encode of the original frames (``libx264 -qp 0 -pix_fmt yuv444p``) divided
by the size of the payload in question (see ``lossless_reference_size``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import os
import subprocess
import tempfile
from collections.abc import Iterable

import imageio_ffmpeg
import numpy as np

from jaxvr import errors, files

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


def ffmpeg_exe() -> str:
  """Path of the ffmpeg binary bundled with imageio-ffmpeg."""
  return imageio_ffmpeg.get_ffmpeg_exe()


def run_ffmpeg(args: list[str], stdin: bytes | None = None,
               what: str = 'ffmpeg', cwd: str | None = None) -> bytes:
  """Runs ffmpeg with ``args`` (in folder ``cwd``) and returns its stdout.

  Raises:
    CodecError: ffmpeg exited non-zero; the message holds its last error line.
  """
  cmd = [ffmpeg_exe(), '-hide_banner', '-nostdin', '-loglevel', 'error', '-y',
         *args]
  proc = subprocess.run(cmd, input=stdin, capture_output=True, check=False,
                        cwd=cwd)
  if proc.returncode != 0:
    tail = proc.stderr.decode(errors='replace').strip().splitlines()
    msg = tail[-1] if tail else f'exit code {proc.returncode}'
    raise errors.CodecError(f'{what} failed: {msg}')
  return proc.stdout


def _check_frames(frames) -> np.ndarray:
  frames = np.asarray(frames)
  if frames.ndim != 4 or frames.shape[-1] != 3:
    raise errors.ShapeError(
        f'frames: expected uint8 [T,H,W,3] RGB, got shape {frames.shape}')
  if frames.dtype != np.uint8:
    raise errors.ShapeError(
        f'frames: expected dtype uint8 (0..255 RGB), got {frames.dtype}')
  if frames.shape[0] == 0:
    raise errors.ShapeError('frames: expected at least one frame, got T=0')
  return np.ascontiguousarray(frames)


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


def encode(frames, codec: str = 'libx264', *, crf: float | None = None,
           lossless: bool = False, pix_fmt: str = 'yuv444p', fps: float = 24,
           preset: str | None = None, threads: int | None = 1) -> bytes:
  """Encodes RGB frames with a real codec and returns the container bytes.

  Args:
    frames: uint8 ``[T, H, W, 3]`` RGB.
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
    The bytes of the file ffmpeg wrote (mp4, or mkv for FFV1).
  """
  frames = _check_frames(frames)
  suffix = _CONTAINERS.get(codec, ('', ''))[1]
  with tempfile.TemporaryDirectory(prefix='jaxvr_enc_') as tmp:
    path = os.path.join(tmp, 'out' + suffix)
    encode_file([frames], path, codec, crf=crf, lossless=lossless,
                pix_fmt=pix_fmt, fps=fps, preset=preset, threads=threads)
    with open(path, 'rb') as f:
      return f.read()


def _as_block(frames, size: tuple[int, int] | None) -> np.ndarray:
  """One ``[H, W, 3]`` frame or ``[b, H, W, 3]`` block as a checked block."""
  frames = np.asarray(frames)
  if frames.ndim == 3:
    frames = frames[None]
  frames = _check_frames(frames)
  if size is not None and frames.shape[1:3] != size:
    raise errors.ShapeError(
        f'frames: every frame must have the size of the first, {size[1]}x'
        f'{size[0]}; got {frames.shape[2]}x{frames.shape[1]}')
  return frames


def encode_file(frames: Iterable, path: str | os.PathLike,
                codec: str = 'libx264', *, crf: float | None = None,
                lossless: bool = False, pix_fmt: str = 'yuv444p',
                fps: float = 24, preset: str | None = None,
                threads: int | None = 1) -> int:
  """Encodes a stream of RGB frames straight into the file ``path``.

  Frames go to ffmpeg's stdin as they arrive, so only the block in hand is
  in memory (a long video is never held whole, nor copied to bytes). The
  settings are those of :func:`encode`, which gives the same bytes.

  Args:
    frames: iterable of uint8 ``[H, W, 3]`` frames or ``[b, H, W, 3]``
      blocks, all of one size (an array ``[T, H, W, 3]`` in a list works).
    path: the output file (written by ffmpeg in place: wrap it in
      ``jaxvr.files.atomic_path`` to replace a file atomically).
    codec, crf, lossless, pix_fmt, fps, preset, threads: see :func:`encode`.

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
  first = _as_block(first, None)
  h, w = first.shape[1:3]
  if codec not in _CONTAINERS:
    raise errors.ConfigError(f'codec: expected one of {CODECS}, got {codec!r}')
  if codec in ('libx264', 'libx265') and pix_fmt == 'yuv420p' and (h % 2 or w % 2):
    raise errors.SizeError(
        f'frames: {codec} yuv420p needs even width and height, got {w}x{h}')
  fmt = _CONTAINERS[codec][0]
  cmd = [ffmpeg_exe(), '-hide_banner', '-nostdin', '-loglevel', 'error', '-y',
         '-f', 'rawvideo', '-pix_fmt', 'rgb24', '-s', f'{w}x{h}',
         '-framerate', f'{fps:g}', '-i', 'pipe:0',
         *_codec_args(codec, crf, lossless, pix_fmt, preset, threads),
         '-f', fmt, os.fspath(path)]
  count = 0
  # stderr goes to a file: a pipe nobody reads could fill and stall ffmpeg.
  with tempfile.TemporaryFile() as err:
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, stderr=err)
    try:
      for block in itertools.chain([first], blocks):
        block = _as_block(block, (h, w))
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
      err.seek(0)
      tail = err.read().decode(errors='replace').strip().splitlines()
      msg = tail[-1] if tail else f'exit code {proc.returncode}'
      raise errors.CodecError(
          f'{codec} encode of {count} frames {w}x{h} failed: {msg}')
  return count


def _sniff_suffix(data: bytes) -> str:
  if data[:4] == b'\x1a\x45\xdf\xa3':
    return '.mkv'
  if data[4:8] == b'ftyp':
    return '.mp4'
  if data[:3] == b'GIF':
    return '.gif'
  return '.bin'


def decode(data: bytes, *, expect_size: tuple[int, int] | None = None,
           max_frames: int | None = None) -> np.ndarray:
  """Decodes encoded video bytes back to uint8 ``[T, H, W, 3]`` RGB.

  The YUV -> RGB conversion is ffmpeg's default (BT.601, limited range), the
  inverse of what ``encode`` used.

  Args:
    data: container bytes (mp4, mkv, gif).
    expect_size: ``(H, W)`` the stream must have; checked on the container
      header before any frame is decoded.
    max_frames: the most frames the stream may hold; checked on the
      container's packet count before decoding, and decoding stops after
      ``max_frames + 1`` frames whatever the container claims.

  Raises:
    CodecError: the stream's size or frame count is not what was expected.
    VideoError: ffmpeg cannot decode the bytes.
  """
  from jaxvr.video import io as video_io

  if not data:
    raise errors.EmptyVideoError('data: expected encoded video bytes, got 0 bytes')
  with tempfile.TemporaryDirectory(prefix='jaxvr_dec_') as tmp:
    path = os.path.join(tmp, 'in' + _sniff_suffix(data))
    files.write_bytes(path, data)
    if expect_size is None and max_frames is None:
      return video_io.read_video(path)
    info = video_io.probe_video(path)
    if expect_size is not None and (info.height, info.width) != tuple(expect_size):
      raise errors.CodecError(
          f'stream: frames of {info.width}x{info.height}, expected '
          f'{expect_size[1]}x{expect_size[0]}')
    if max_frames is not None and info.n_frames > max_frames:
      raise errors.CodecError(
          f'stream: {info.n_frames} frames, expected at most {max_frames}')
    video = video_io.read_video(
        path, max_frames=None if max_frames is None else max_frames + 1)
  if max_frames is not None and video.shape[0] > max_frames:
    raise errors.CodecError(
        f'stream: decodes to more than {max_frames} frames')
  return video


@dataclasses.dataclass(frozen=True)
class Encoded:
  """One real encode: its settings, bytes and the decoded frames."""

  codec: str
  crf: float | None
  lossless: bool
  pix_fmt: str
  data: bytes
  decoded: np.ndarray

  @property
  def size(self) -> int:
    return len(self.data)

  @property
  def label(self) -> str:
    rate = 'lossless' if self.lossless or self.codec == 'ffv1' else f'crf {self.crf:g}'
    return f'{self.codec} {rate} {self.pix_fmt}'


def roundtrip(frames, codec: str = 'libx264', **kwargs) -> Encoded:
  """Encodes and decodes ``frames``; returns bytes and reconstruction."""
  data = encode(frames, codec, **kwargs)
  return Encoded(codec, kwargs.get('crf'), kwargs.get('lossless', False),
                 kwargs.get('pix_fmt', 'yuv444p'), data, decode(data))


def lossless_reference_size(frames, fps: float = 24) -> int:
  """Bytes of lossless x264 (``-qp 0``, yuv444p): the compression-factor base."""
  return len(encode(frames, 'libx264', lossless=True, pix_fmt='yuv444p',
                    fps=fps))
