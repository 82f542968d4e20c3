"""Real codecs: encode frame arrays to bytes, decode them back, count bytes.

Encodes run the ffmpeg that imageio-ffmpeg ships through
:mod:`jaxvr.video.ffmpeg` (libx264, libx265, SVT-AV1, FFV1), feeding raw
RGB frames on stdin, so the RGB -> YUV conversion is ffmpeg's own (swscale
defaults: BT.601 matrix, limited range, untagged stream). Sizes are the exact
bytes of the container file ffmpeg writes (headers included). Decodes read
the bytes back through :mod:`jaxvr.video.io`.

Compression factor, as in the Sparse MP4 paper: size of the lossless x264
encode of the original frames (``libx264 -qp 0 -pix_fmt yuv444p``) divided
by the size of the payload in question (see ``lossless_reference_size``).
"""

from __future__ import annotations

import dataclasses
import os
import tempfile

import numpy as np

from jaxvr import errors, files, payloads
from jaxvr.video import ffmpeg
from jaxvr.video import io as video_io
from jaxvr.video.transforms import check_frames

# The codec settings and the streaming encoder are ffmpeg's; this module
# offers them beside the in-memory encode and decode.
CODECS = ffmpeg.CODECS
PIX_FMTS = ffmpeg.PIX_FMTS
encode_file = ffmpeg.encode_file


def encode(frames, codec: str = 'libx264', *, crf: float | None = None,
           lossless: bool = False, pix_fmt: str = 'yuv444p', fps: float = 24,
           preset: str | None = None, threads: int | None = 1) -> bytes:
  """Encodes RGB frames with a real codec and returns the container bytes.

  Args:
    frames: uint8 ``[T, H, W, 3]`` RGB.
    codec, crf, lossless, pix_fmt, fps, preset, threads: the settings of
      :func:`jaxvr.video.ffmpeg.encode_file` (codec one of ``CODECS``; a
      lossy codec needs ``crf``), which gives the same bytes.

  Returns:
    The bytes of the file ffmpeg wrote (mp4, or mkv for FFV1).
  """
  frames = check_frames(frames)
  with tempfile.TemporaryDirectory(prefix='jaxvr_enc_') as tmp:
    path = os.path.join(tmp, 'out' + ffmpeg.container_suffix(codec))
    ffmpeg.encode_file([frames], path, codec, crf=crf, lossless=lossless,
                       pix_fmt=pix_fmt, fps=fps, preset=preset,
                       threads=threads)
    with open(path, 'rb') as f:
      return f.read()


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


def decode_stream(what: str, data: bytes, *, height: int, width: int,
                  frames: int | None = None) -> np.ndarray:
  """Decodes an inner video stream that must match its payload's header.

  The container is probed first: its frame size must be ``height x width``
  and its packet count at most ``frames`` (or what
  :data:`jaxvr.payloads.LIMITS` allow), so a doctored stream cannot make
  ffmpeg produce more than the header promised.

  Returns:
    uint8 ``[T, height, width, 3]``, with ``T == frames`` when given.
  """
  if not data:
    raise errors.PayloadError(f'{what}: the video stream is empty')
  max_frames = frames if frames is not None else max(
      1, min(payloads.LIMITS.max_frames, payloads.LIMITS.max_pixels // (height * width)))
  try:
    video = decode(data, expect_size=(height, width),
                          max_frames=max_frames)
  except errors.JaxvrError as err:
    raise errors.PayloadError(f'{what}: video stream: {err}') from None
  if frames is not None and video.shape[0] != frames:
    raise errors.PayloadError(
        f'{what}: video stream holds {video.shape[0]} frames, header '
        f'promises {frames}')
  return video
