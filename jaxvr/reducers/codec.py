"""Classical codecs as reducers: x264, x265 and SVT-AV1 at several crf."""

from __future__ import annotations

import functools
import struct

import numpy as np

from jaxvr import codecs, errors, payloads
from jaxvr.reducers.base import Payload, Reducer, register
from jaxvr.video.transforms import pad_even

_SIZE = struct.Struct('<HH')
_WHAT = 'codec payload'


class CodecReducer(Reducer):
  """A real encode at one setting.

  The payload is the container file behind a 4-byte header with the frame
  height and width: 4:2:0 needs even sizes, so odd sizes are padded by edge
  replication for the encoder and cropped after decoding.
  """

  def __init__(self, codec: str, crf: float, pix_fmt: str = 'yuv420p'):
    self.codec, self.crf, self.pix_fmt = codec, crf, pix_fmt

  def encode(self, video: np.ndarray, fps: float) -> Payload:
    _, h, w, _ = video.shape
    data = codecs.encode(pad_even(video), self.codec, crf=self.crf,
                         pix_fmt=self.pix_fmt,
                         fps=fps)
    return Payload(payloads.pack_header(_WHAT, _SIZE, h, w) + data,
                   {'codec': self.codec, 'crf': self.crf, 'pix_fmt': self.pix_fmt})

  def decode(self, payload: Payload) -> np.ndarray:
    """Decodes the container; PayloadError if it is not the size the
    header states or exceeds :data:`jaxvr.payloads.LIMITS`."""
    data = payload.data
    if len(data) <= _SIZE.size:
      raise errors.PayloadError(
          f'{_WHAT}: {len(data)} bytes, expected a {_SIZE.size}-byte size '
          'header and a video stream (truncated)')
    h, w = _SIZE.unpack_from(data)
    payloads.check_video(_WHAT, None, h, w)
    return codecs.decode_stream(_WHAT, data[_SIZE.size:], height=h + h % 2,
                                  width=w + w % 2)[:, :h, :w]


# x264 at the Sparse MP4 paper's near-lossless points (yuv444p, as the codec
# anchors showed) and along a rate-distortion curve for each codec.
for _crf in (3, 4):
  register(f'x264-crf{_crf}-444',
           functools.partial(CodecReducer, 'libx264', _crf, 'yuv444p'))
for _crf in (18, 23, 28, 33, 38, 43, 48):
  register(f'x264-crf{_crf}', functools.partial(CodecReducer, 'libx264', _crf))
for _crf in (20, 25, 30, 35, 40):
  register(f'x265-crf{_crf}', functools.partial(CodecReducer, 'libx265', _crf))
for _crf in (25, 35, 45, 55, 63):
  register(f'av1-crf{_crf}', functools.partial(CodecReducer, 'libsvtav1', _crf))
