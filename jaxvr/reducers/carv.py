"""CARV and its baselines as reducers, at refresh budgets N = 2, 4, 8.

Registered names: ``carv-visible-n{N}``, ``carv-masked-n{N}`` (Chhabra &
Yang's ST-MAE chunk significance, marginal-visible and masked-error
estimators), ``every-nth-n{N}``, ``random-chunk-n{N}`` and
``motion-energy-n{N}`` (see :mod:`jaxvr.carv.baselines`).

What a receiver needs. The reduced video (held regions repeated) is what is
watched, and it is sent as one x264 stream at a fixed crf (:data:`CRF`,
4:2:0, odd sizes edge-padded); a plain player needs nothing else. x264 at a
crf does not reproduce a held region exactly in every frame that repeats it
(its residual coding drifts), so :meth:`CarvReducer.decode` rebuilds the
refresh schedule and re-applies the hold to the decoded frames: every held
region is then exactly its decoded content at its last refresh, as the
sender intended. That needs the schedule, which each method sends as
cheaply as it can, and every byte of it is counted in the payload size:

* ``carv-*`` and ``motion-energy``: the full-frame significance map
  ``[t', h'', w'']`` in float16 (``2 t' h'' w''`` bytes, e.g. 784 bytes for
  8x7x7). The sender schedules from the float16-rounded map, so both sides
  derive the same flags. The ST-MAE itself is never needed by the receiver.
* ``every-nth``: nothing beyond ``N`` in the header.
* ``random-chunk``: the 32-bit seed of the phases.

Payload: a fixed header (magic ``CRV1``, method, N, invert flag, frame count
and size, grid, seed, map length), the float16 map, then the x264 stream.
:meth:`CarvHeader.parse` checks every field before anything is decoded.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import struct
import tempfile

import jax
import numpy as np

from jaxvr import codecs, errors, payloads
from jaxvr.carv import pipeline, schedule
from jaxvr.reducers.base import Payload, Reducer, register

#: x264 crf of the reduced video (near-transparent, so the reduction, not
#: the codec, dominates the distortion).
CRF = 18
BUDGETS = (2, 4, 8)
_HEADER = struct.Struct('<4sBBBIHHBBBII')
_MAGIC = b'CRV1'
_WHAT = 'CARV payload'
_METHOD_CODES = {m: i for i, m in enumerate(pipeline.METHODS)}


@dataclasses.dataclass(frozen=True)
class CarvHeader:
  """The fixed header of a CARV payload (see the module docstring)."""

  method: str
  budget: int
  invert: bool
  frames: int
  height: int
  width: int
  grid: tuple[int, int, int]   # t', h'', w'' of the schedule
  seed: int
  map_bytes: int

  @classmethod
  def parse(cls, data: bytes) -> tuple[CarvHeader, np.ndarray | None, bytes]:
    """Checks a payload and splits it into header, map and x264 stream.

    Returns:
      The header, the float16 significance map ``[t', h'', w'']`` (None
      for methods that send none) and the stream bytes.

    Raises:
      PayloadError: bad magic, a method, flag, size or grid out of range,
        a map length that is not the grid's, or a non-finite map value.
    """
    (code, budget, invert, t, h, w, gt, gh, gw, seed,
     n_map) = payloads.unpack_header(_WHAT, data, _HEADER, _MAGIC)
    method = payloads.choice(_WHAT, 'method', code, pipeline.METHODS)
    payloads.check_range(_WHAT, 'budget N', budget, 1, 255)
    payloads.check_range(_WHAT, 'invert flag', invert, 0, 1)
    payloads.check_video(_WHAT, t, h, w)
    for name, g, most in (("grid t'", gt, t), ("grid h''", gh, h),
                          ("grid w''", gw, w)):
      payloads.check_range(_WHAT, name, g, 1, most)
    expected_map = 2 * gt * gh * gw if method in pipeline.MAP_METHODS else 0
    if n_map != expected_map:
      raise errors.PayloadError(
          f'{_WHAT}: map length {n_map} bytes, expected {expected_map} for '
          f'{method} on a {gt}x{gh}x{gw} grid')
    if len(data) <= _HEADER.size + n_map:
      raise errors.PayloadError(
          f'{_WHAT}: {len(data)} bytes, expected a video stream after the '
          f'{_HEADER.size}-byte header and {n_map}-byte map (truncated)')
    full_map = None
    if n_map:
      full_map = np.frombuffer(data, '<f2', count=n_map // 2,
                               offset=_HEADER.size).reshape(gt, gh, gw)
      if not np.all(np.isfinite(full_map)):
        raise errors.PayloadError(
            f'{_WHAT}: the significance map holds NaN or infinite values')
    head = cls(method, budget, bool(invert), t, h, w, (gt, gh, gw), seed, n_map)
    return head, full_map, bytes(data[_HEADER.size + n_map:])


class CarvReducer(Reducer):
  """CARV or a baseline at refresh budget ``N``, sent as x264.

  Args:
    method: one of :data:`jaxvr.carv.pipeline.METHODS`.
    budget: ``N``, mean refresh period in frames.
    params, config: the ST-MAE (CARV methods); default the bundled model,
      loaded on first use.
    n_samples, mask_ratio: of the significance estimate.
    invert: refresh low-significance chunks more (the paper's text).
    seed: masks (CARV) and phases (random chunk).
    crf: x264 crf of the reduced video.
  """

  min_frames = 16

  def __init__(self, method: str, budget: int, *, params=None, config=None,
               n_samples: int = pipeline.DEFAULT_N_SAMPLES,
               mask_ratio: float = pipeline.DEFAULT_MASK_RATIO,
               invert: bool = False, seed: int = 0, crf: float = CRF):
    if method not in pipeline.METHODS:
      raise errors.ConfigError(f'method: expected one of {pipeline.METHODS}, '
                               f'got {method!r}')
    self.method, self.budget = method, int(budget)
    self.params, self.config = params, config
    self.n_samples, self.mask_ratio = int(n_samples), float(mask_ratio)
    self.invert, self.seed, self.crf = bool(invert), int(seed), crf
    self._extras: dict = {}

  def encode(self, video: np.ndarray, fps: float) -> Payload:
    """Reduces ``video`` (uint8 ``[T, H, W, 3]``) and encodes the result."""
    span = pipeline.Span.of_array(video, fps)
    with tempfile.TemporaryDirectory(prefix='jaxvr_carv_') as tmp:
      path = os.path.join(tmp, 'reduced.mp4')
      red = pipeline.reduce(
          span, self.method, self.budget, params=self.params,
          config=self.config, key=jax.random.key(self.seed),
          n_samples=self.n_samples, mask_ratio=self.mask_ratio,
          invert=self.invert, map_dtype=np.float16, out=path, crf=self.crf)
      with open(path, 'rb') as f:
        stream = f.read()
    self._extras = ({} if red.significance is None else
                    {'significance': red.significance})
    self._extras['flags'] = red.flags
    map_bytes = b'' if red.full_map is None else red.full_map.astype(
        '<f2').tobytes()
    t, h, w = span.shape
    header = payloads.pack_header(
        _WHAT, _HEADER, _MAGIC, _METHOD_CODES[self.method], self.budget,
        int(self.invert), t, h, w, *red.grid, self.seed, len(map_bytes))
    return Payload(header + map_bytes + stream, {
        'method': self.method, 'budget': self.budget, 'crf': self.crf,
        'map_bytes': len(map_bytes), 'video_bytes': len(stream),
        'refresh_fraction': red.refresh_fraction})

  def decode(self, payload: Payload) -> np.ndarray:
    """Decodes the x264 stream and re-applies the hold of the schedule.

    Raises:
      PayloadError: malformed bytes (see :meth:`CarvHeader.parse`), or a
        stream that does not decode to the header's frames.
    """
    head, full_map, stream = CarvHeader.parse(payload.data)
    even = (head.height + head.height % 2, head.width + head.width % 2)
    decoded = codecs.decode_stream(
        _WHAT, stream, frames=head.frames, height=even[0],
        width=even[1])[:, :head.height, :head.width]
    flags = pipeline.schedule_for(
        head.method, head.frames, head.budget, grid=head.grid,
        full_map=full_map, key=jax.random.key(head.seed), invert=head.invert)
    return np.asarray(schedule.apply_refresh(decoded, flags))

  def extras(self) -> dict:
    """``significance`` (the estimated map; crop grid for CARV) and ``flags``
    of the last encode."""
    return dict(self._extras)


def _register() -> None:
  for n in BUDGETS:
    for method in pipeline.METHODS:
      register(f'{method}-n{n}', functools.partial(CarvReducer, method, n))


_register()
