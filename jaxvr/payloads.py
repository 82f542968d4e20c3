"""Validation shared by every payload format: check first, allocate after.

Payload bytes come from elsewhere (a file, the network), so every format
(Sparse MP4, sparse pixels, CARV, autoencoder latents, codec streams) parses
its fixed header into a typed record and checks it here before anything is
allocated or decompressed:

* magic and version, and every enumerated field (layout, parity, codec,
  method) against its list;
* frame count, height, width and channels against :data:`LIMITS`, and the
  frame rate for being finite and in range;
* declared part lengths against the actual byte length;
* compressed parts are inflated with an output bound of the size the header
  promises (:func:`inflate`), and inner video streams are probed and must
  show the promised size and at most the promised frame count before they
  are decoded (:func:`jaxvr.codecs.decode_stream`, which checks them
  against :data:`LIMITS`).

Anything malformed raises :class:`jaxvr.errors.PayloadError` naming the
payload, the field, its value and what was expected; LZMA errors and
ffmpeg failures on an inner stream become the same error.
"""

from __future__ import annotations

import dataclasses
import lzma
import math
import struct

from jaxvr import errors


@dataclasses.dataclass(frozen=True)
class Limits:
  """The largest video a payload may describe.

  A payload beyond them is refused before any allocation. Decoders hold
  the whole video (and float32 working copies), so ``max_pixels`` bounds
  memory: the default 2**30 pixels is about 500 frames of 1080p, 3.2 GB as
  uint8 RGB. To admit more, assign ``jaxvr.payloads.LIMITS =
  Limits(max_pixels=...)`` (read at each check).

  Attributes:
    max_frames: frames ``T``.
    max_side: height and width, each.
    max_pixels: ``T * H * W``.
    max_channels: colour channels.
    max_fps: frame rate (frames per second).
  """

  max_frames: int = 100_000
  max_side: int = 8192
  max_pixels: int = 1 << 30
  max_channels: int = 4
  max_fps: float = 1000.0


LIMITS = Limits()


def unpack_header(what: str, data, layout: struct.Struct,
                  magic: bytes) -> tuple:
  """The fields of ``layout`` at the start of ``data``, magic checked.

  Args:
    what: the payload's name in messages (e.g. 'Sparse MP4 payload').
    data: the payload bytes.
    layout: the fixed header; its first field is the magic.
    magic: the expected leading bytes.

  Returns:
    The unpacked fields after the magic.
  """
  if not isinstance(data, bytes | bytearray | memoryview):
    raise errors.PayloadError(
        f'{what}: expected bytes, got {type(data).__name__}')
  if len(data) < layout.size:
    raise errors.PayloadError(
        f'{what}: {len(data)} bytes, shorter than its {layout.size}-byte '
        'header (truncated or not this format)')
  fields = layout.unpack_from(data)
  if fields[0] != magic:
    raise errors.PayloadError(
        f'{what}: magic {fields[0]!r}, expected {magic!r} (not this format)')
  return fields[1:]


def pack_header(what: str, layout: struct.Struct, *fields) -> bytes:
  """``layout.pack(*fields)``, or SizeError when a value does not fit its
  field (e.g. more frames than a 16-bit count holds)."""
  try:
    return layout.pack(*fields)
  except struct.error as err:
    raise errors.SizeError(
        f'{what}: a header value does not fit the format ({err}); fields '
        f'{fields[1:]}') from None


def check_version(what: str, version: int, supported: int = 1) -> None:
  """Raises PayloadError unless ``version == supported``."""
  if version != supported:
    raise errors.PayloadError(
        f'{what}: version {version}, this jaxvr reads version {supported}')


def choice(what: str, field: str, index: int, options) -> str:
  """``options[index]``, or PayloadError naming the field."""
  if not 0 <= index < len(options):
    raise errors.PayloadError(
        f'{what}: {field} index {index}, expected 0..{len(options) - 1} '
        f'({", ".join(options)})')
  return options[index]


def check_range(what: str, field: str, value, low, high) -> None:
  """Raises PayloadError unless ``low <= value <= high``."""
  if not low <= value <= high:
    raise errors.PayloadError(
        f'{what}: {field} = {value}, expected {low}..{high}')


def check_video(what: str, frames: int | None, height: int, width: int,
                channels: int = 3) -> None:
  """Checks a declared video size against :data:`LIMITS`.

  Args:
    what: the payload's name in messages.
    frames: ``T`` (None when the format does not store it).
    height, width: frame size.
    channels: colour channels.
  """
  limits = LIMITS
  if frames is not None:
    check_range(what, 'frame count', frames, 1, limits.max_frames)
  check_range(what, 'height', height, 1, limits.max_side)
  check_range(what, 'width', width, 1, limits.max_side)
  check_range(what, 'channels', channels, 1, limits.max_channels)
  pixels = (frames or 1) * height * width
  if pixels > limits.max_pixels:
    raise errors.PayloadError(
        f'{what}: {frames} frames of {width}x{height} = {pixels:,} pixels, '
        f'more than the limit of {limits.max_pixels:,}')


def check_fps(what: str, fps: float) -> float:
  """The frame rate as a float, or PayloadError unless finite in (0, max]."""
  fps, most = float(fps), LIMITS.max_fps
  if not (math.isfinite(fps) and 0 < fps <= most):
    raise errors.PayloadError(
        f'{what}: fps = {fps}, expected a number in (0, {most:g}]')
  return fps


def check_length(what: str, actual: int, expected: int,
                 parts: str = 'header + parts') -> None:
  """Raises PayloadError unless the byte length matches the header."""
  if actual != expected:
    raise errors.PayloadError(
        f'{what}: {actual} bytes, its header declares {expected} '
        f'({parts}); truncated or padded')


#: LZMA cannot expand by more than about 7000:1 (a saturated match costs
#: about 1/3 bit per 273 bytes); a part claiming more is refused unread.
MAX_LZMA_RATIO = 1 << 14
#: Dictionary of the payload encoder (xz preset 9): no match reaches further.
LZMA_DICT_SIZE = 64 << 20


def inflate(what: str, part: str, data: bytes, size: int) -> bytes:
  """Decompresses raw LZMA2 ``data`` to exactly ``size`` bytes, never more.

  Memory is bounded by the input, not by the header's claim: a ``size``
  beyond :data:`MAX_LZMA_RATIO` times the input is refused before decoding;
  output stops at ``size + 1`` bytes (a decompression bomb costs no more);
  and the decoder's dictionary is at most ``size`` (no match reaches before
  the output's start) and the encoder's :data:`LZMA_DICT_SIZE`.

  Args:
    what, part: names for messages ('sparse-pixel payload', 'mask').
    data: raw LZMA2 bytes (``lzma.FORMAT_RAW``, one ``FILTER_LZMA2``).
    size: the exact decompressed length the header implies.
  """
  if size > MAX_LZMA_RATIO * len(data) + 4096:
    raise errors.PayloadError(
        f'{what}: {part} of {len(data)} bytes cannot decompress to the '
        f'{size} bytes the header implies')
  decomp = lzma.LZMADecompressor(
      format=lzma.FORMAT_RAW,
      filters=[{'id': lzma.FILTER_LZMA2,
                'dict_size': min(max(size, 4096), LZMA_DICT_SIZE)}])
  try:
    out = decomp.decompress(data, max_length=size + 1)
  except lzma.LZMAError as err:
    raise errors.PayloadError(
        f'{what}: {part} does not decompress ({err})') from None
  if len(out) > size or (len(out) == size and not decomp.eof):
    raise errors.PayloadError(
        f'{what}: {part} does not end after the {size} bytes its header '
        'implies')
  if len(out) < size or not decomp.eof:
    raise errors.PayloadError(
        f'{what}: {part} decompresses to {len(out)} bytes, expected {size} '
        '(truncated)')
  if decomp.unused_data:
    raise errors.PayloadError(
        f'{what}: {part} has {len(decomp.unused_data)} stray bytes after its '
        'end')
  return out
