"""Sparse MP4's encoder: decimate 4:1 and send losslessly with a real codec.

Wang et al. (LANL), "Sparse MP4", SSIAI 2020. The encoder drops every other
frame and, in each kept frame, half of the pixels in a checkerboard
(quincunx) pattern; the kept samples go out as a lossless video stream. The
decoder (:mod:`jaxvr.sparse_mp4.restoration`) restores what was dropped.

Conventions (also written into every payload header):

* Kept frames are 0, 2, 4, ... . Kept frame number k (original frame 2k)
  keeps pixel (y, x) when ``(y + x + k) % 2 == 0`` ("alternate" parity, the
  default: the two kept frames of a window observe complementary sites) or
  when ``(y + x) % 2 == 0`` ("fixed" parity, the codec anchors' rule).
* Layouts: ``packed`` stores row y's kept pixels contiguously in a
  half-width frame; ``zeros`` stores the full frame with dropped pixels 0.
  Odd widths and heights are padded by edge replication before decimation
  and cropped after restoration.
"""

from __future__ import annotations

import dataclasses
import struct

import numpy as np

from jaxvr import codecs, errors, payloads
from jaxvr.video.transforms import check_frames, pad_even

LAYOUTS = ('packed', 'zeros')
PARITIES = ('alternate', 'fixed')
_MAGIC = b'JVSM'
_WHAT = 'Sparse MP4 payload'
_HEADER = struct.Struct('<4sBHHHfBBB')  # magic, version, T, H, W, fps, layout, parity, codec


# Decimation ---------------------------------------------------------------


def site_mask(k: int, height: int, width: int, parity: str) -> np.ndarray:
  """Bool ``[H, W]``: sites kept in kept frame number ``k``."""
  yy, xx = np.mgrid[0:height, 0:width]
  shift = k % 2 if parity == 'alternate' else 0
  return (yy + xx + shift) % 2 == 0


def observation_mask(n_frames: int, height: int, width: int,
                     parity: str = 'alternate') -> np.ndarray:
  """Bool ``[T, H, W]``: which pixels the decoder observes (dropped frames all False)."""
  mask = np.zeros((n_frames, height, width), bool)
  for t in range(0, n_frames, 2):
    mask[t] = site_mask(t // 2, height, width, parity)
  return mask


def pack(video: np.ndarray, parity: str = 'alternate') -> np.ndarray:
  """Kept samples of uint8 ``[T, H, W, C]`` (even H, W) as ``[ceil(T/2), H, W/2, C]``."""
  kept = video[0::2]
  out = np.empty((kept.shape[0], kept.shape[1], kept.shape[2] // 2, kept.shape[3]),
                 video.dtype)
  for k, frame in enumerate(kept):
    shift = k % 2 if parity == 'alternate' else 0
    out[k, 0::2] = frame[0::2, shift::2]
    out[k, 1::2] = frame[1::2, 1 - shift::2]
  return out


def unpack(packed: np.ndarray, parity: str = 'alternate') -> np.ndarray:
  """Inverse of ``pack``: full-width kept frames with dropped sites 0."""
  n, h, w2, c = packed.shape
  out = np.zeros((n, h, 2 * w2, c), packed.dtype)
  for k in range(n):
    shift = k % 2 if parity == 'alternate' else 0
    out[k, 0::2, shift::2] = packed[k, 0::2]
    out[k, 1::2, 1 - shift::2] = packed[k, 1::2]
  return out


def zero_dropped(video: np.ndarray, parity: str = 'alternate') -> np.ndarray:
  """Kept frames ``[ceil(T/2), H, W, C]`` with the dropped sites set to 0."""
  kept = video[0::2].copy()
  for k in range(kept.shape[0]):
    kept[k][~site_mask(k, kept.shape[1], kept.shape[2], parity)] = 0
  return kept


# Payload ------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class SparseMP4Payload:
  """What Sparse MP4 transmits: a header and one lossless video stream."""

  n_frames: int
  height: int
  width: int
  fps: float
  layout: str
  parity: str
  codec: str
  stream: bytes

  def to_bytes(self) -> bytes:
    head = payloads.pack_header(
        _WHAT, _HEADER, _MAGIC, 1, self.n_frames, self.height, self.width,
        self.fps, LAYOUTS.index(self.layout), PARITIES.index(self.parity),
        _LOSSLESS.index(self.codec))
    return head + self.stream

  @classmethod
  def from_bytes(cls, data: bytes) -> SparseMP4Payload:
    """Parses and checks the header (see :mod:`jaxvr.payloads`).

    Raises:
      PayloadError: bad magic or version, a layout/parity/codec index out
        of range, a size or frame rate beyond the limits, or no stream.
    """
    version, t, h, w, fps, layout, parity, codec = payloads.unpack_header(
        _WHAT, data, _HEADER, _MAGIC)
    payloads.check_version(_WHAT, version)
    payloads.check_video(_WHAT, t, h, w)
    stream = bytes(data[_HEADER.size:])
    if not stream:
      raise errors.PayloadError(f'{_WHAT}: no video stream after the header')
    return cls(t, h, w, payloads.check_fps(_WHAT, fps),
               payloads.choice(_WHAT, 'layout', layout, LAYOUTS),
               payloads.choice(_WHAT, 'parity', parity, PARITIES),
               payloads.choice(_WHAT, 'codec', codec, _LOSSLESS), stream)

  def stream_shape(self) -> tuple[int, int, int]:
    """``(frames, height, width)`` the inner stream must decode to."""
    he, we = self.height + self.height % 2, self.width + self.width % 2
    return ((self.n_frames + 1) // 2, he,
            we // 2 if self.layout == 'packed' else we)

  @property
  def size(self) -> int:
    """Bytes on the wire: header plus stream."""
    return _HEADER.size + len(self.stream)


# Lossless stream settings: x264 -qp 0 in YCbCr 4:4:4 (the paper's MP4 and the
# codec anchors), bit-exact RGB x264, or FFV1.
_LOSSLESS = ('libx264', 'libx264rgb', 'ffv1')


def _encode_stream(frames: np.ndarray, codec: str, fps: float) -> bytes:
  if codec == 'libx264':
    return codecs.encode(frames, 'libx264', lossless=True, pix_fmt='yuv444p', fps=fps)
  if codec == 'libx264rgb':
    return codecs.encode(frames, 'libx264', lossless=True, pix_fmt='rgb24', fps=fps)
  return codecs.encode(frames, 'ffv1', lossless=True, pix_fmt='rgb24', fps=fps)


def encode(video, *, fps: float = 24.0, layout: str = 'packed',
           parity: str = 'alternate', codec: str = 'libx264') -> SparseMP4Payload:
  """Decimates uint8 ``[T, H, W, 3]`` 4:1 and encodes the kept samples losslessly.

  Args:
    video: uint8 RGB frames.
    fps: frame rate of the original video (the stream runs at fps / 2).
    layout: 'packed' (half-width frames) or 'zeros' (dropped sites zeroed).
    parity: 'alternate' (complementary checkerboards) or 'fixed'.
    codec: 'libx264' (``-qp 0`` yuv444p: lossless in YCbCr, the paper's
      setting), 'libx264rgb' or 'ffv1' (both bit-exact RGB).
  """
  video = check_frames(video)
  if layout not in LAYOUTS or parity not in PARITIES or codec not in _LOSSLESS:
    raise errors.ConfigError(
        f'sparse mp4: layout in {LAYOUTS}, parity in {PARITIES}, codec in '
        f'{_LOSSLESS}; got {layout!r}, {parity!r}, {codec!r}')
  t, h, w, _ = video.shape
  even = pad_even(video)
  frames = pack(even, parity) if layout == 'packed' else zero_dropped(even, parity)
  stream = _encode_stream(frames, codec, fps / 2)
  return SparseMP4Payload(t, h, w, float(fps), layout, parity, codec, stream)


def decode_observed(payload: SparseMP4Payload) -> tuple[np.ndarray, np.ndarray]:
  """Decodes the stream to what the decoder knows.

  Raises:
    PayloadError: the stream does not decode to the frames the header
      promises (see :meth:`SparseMP4Payload.stream_shape`).

  Returns:
    ``observed``: uint8 ``[T, He, We, 3]`` (He, We = H, W rounded up to even)
    with zeros at unobserved sites and dropped frames; ``mask``: bool
    ``[T, He, We]``.
  """
  n_kept, height, width = payload.stream_shape()
  kept = codecs.decode_stream(_WHAT, payload.stream,
                                frames=n_kept, height=height, width=width)
  if payload.layout == 'packed':
    kept = unpack(kept, payload.parity)
  t = payload.n_frames
  _, he, we, c = kept.shape
  mask = observation_mask(t, he, we, payload.parity)
  observed = np.zeros((t, he, we, c), np.uint8)
  observed[0::2] = kept
  observed[~mask] = 0
  return observed, mask
