"""Property-based fuzzing of every payload format and the video reader.

Invariant: malformed bytes (truncated, bit-flipped, a header field set to
any value, random bytes) either decode to a valid video or raise a typed
jaxvr error, within a time bound (Hypothesis ``deadline``) and a memory
bound (tracemalloc peak), never another exception. The default run tries a
few hundred cases in all; ``-m slow`` runs many thousands.
"""

import struct
import tracemalloc

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jaxvr import errors
from jaxvr.lca import sparse_mp4
from jaxvr.sparsegan import payload as sparse_pixels

#: Peak Python/numpy allocation allowed for decoding a tiny payload.
MEMORY_BOUND = 64 << 20

#: Example counts: (default run, ``-m slow``), per test.
QUICK, THOROUGH = 'quick', 'thorough'
RUNS = [pytest.param(QUICK, id=QUICK),
        pytest.param(THOROUGH, id=THOROUGH, marks=pytest.mark.slow)]


def _settings(run: str, quick: int, thorough: int, deadline_ms: int):
  return settings(max_examples=quick if run == QUICK else thorough,
                  deadline=deadline_ms, derandomize=run == QUICK,
                  suppress_health_check=[HealthCheck.too_slow,
                                         HealthCheck.data_too_large],
                  database=None)


def _field_values(code: str) -> st.SearchStrategy:
  """Any value a struct field of format ``code`` can hold."""
  if code.endswith('s'):
    return st.binary(min_size=int(code[:-1]), max_size=int(code[:-1]))
  if code == 'f':
    return st.floats(width=32, allow_nan=True, allow_infinity=True)
  bits = {'B': 8, 'H': 16, 'I': 32}[code]
  edges = st.sampled_from([0, 1, 2, (1 << bits) - 1, (1 << (bits - 1)) - 1])
  return st.one_of(edges, st.integers(0, (1 << bits) - 1))


def _codes(layout: struct.Struct) -> list[str]:
  import re
  return re.findall(r'\d*[a-zA-Z]', layout.format.lstrip('<'))


def mutations(valid: bytes, layout: struct.Struct) -> st.SearchStrategy:
  """Corruptions of ``valid`` (whose header is ``layout``)."""
  codes = _codes(layout)

  @st.composite
  def header_field(draw):
    fields = list(layout.unpack_from(valid))
    i = draw(st.integers(0, len(codes) - 1))
    fields[i] = draw(_field_values(codes[i]))
    return layout.pack(*fields) + valid[layout.size:]

  @st.composite
  def bit_flips(draw):
    data = bytearray(valid)
    # Half of the flips land in the header, where the checks live.
    for _ in range(draw(st.integers(1, 8))):
      end = layout.size if draw(st.booleans()) else len(data)
      pos = draw(st.integers(0, end - 1))
      data[pos] ^= 1 << draw(st.integers(0, 7))
    return bytes(data)

  truncated = st.integers(0, len(valid) - 1).map(lambda n: valid[:n])
  padded = st.binary(min_size=1, max_size=64).map(lambda b: valid + b)
  magic = valid[:4]
  return st.one_of(header_field(), bit_flips(), truncated, padded,
                   st.binary(max_size=256),
                   st.binary(max_size=256).map(lambda b: magic + b))


def check_typed_or_valid(decode, data: bytes, expect=np.ndarray):
  """Runs ``decode(data)``: a typed jaxvr error, or results of type
  ``expect`` (one or a tuple), within the memory bound."""
  tracemalloc.start()
  try:
    out = decode(data)
  except errors.JaxvrError as err:
    assert str(err) and '\n' not in str(err)
    return
  finally:
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < MEMORY_BOUND, f'{peak:,} bytes allocated'
  for item in out if isinstance(out, tuple) else (out,):
    assert isinstance(item, expect), type(item)


# Sparse MP4 -----------------------------------------------------------------


@pytest.fixture(scope='module')
def smp4_video():
  rng = np.random.default_rng(0)
  return rng.integers(0, 256, (5, 10, 12, 3), dtype=np.uint8)


@pytest.fixture(scope='module')
def smp4_valid(smp4_video) -> bytes:
  return sparse_mp4.encode(smp4_video, fps=24.0, codec='libx264rgb').to_bytes()


def _smp4_observe(data: bytes):
  return sparse_mp4.decode_observed(sparse_mp4.SparseMP4Payload.from_bytes(data))


def test_smp4_valid_payload_decodes(smp4_valid, smp4_video):
  observed, mask = _smp4_observe(smp4_valid)
  np.testing.assert_array_equal(observed[mask], smp4_video[mask])


@pytest.mark.parametrize('run', RUNS)
def test_smp4_header_parse(run, smp4_valid):
  @_settings(run, 120, 5000, 500)
  @given(mutations(smp4_valid, sparse_mp4._HEADER))
  def check(data):
    check_typed_or_valid(sparse_mp4.SparseMP4Payload.from_bytes, data,
                         sparse_mp4.SparseMP4Payload)
  check()


@pytest.mark.parametrize('run', RUNS)
def test_smp4_stream_decode(run, smp4_valid):
  @_settings(run, 12, 400, 5000)
  @given(mutations(smp4_valid, sparse_mp4._HEADER))
  def check(data):
    check_typed_or_valid(_smp4_observe, data)
  check()


@pytest.mark.parametrize('field, value, words', [
    (2, 0, 'frame count'),              # T
    (2, 65535, 'promises 32768'),       # kept frames
    (3, 0, 'height'),
    (4, 9000, 'width'),
    (5, float('nan'), 'fps'),
    (6, 7, 'layout'),
    (8, 3, 'codec'),
    (1, 2, 'version'),
])
def test_smp4_header_messages(smp4_valid, field, value, words):
  fields = list(sparse_mp4._HEADER.unpack_from(smp4_valid))
  fields[field] = value
  data = sparse_mp4._HEADER.pack(*fields) + smp4_valid[sparse_mp4._HEADER.size:]
  with pytest.raises(errors.PayloadError, match=words):
    _smp4_observe(data)


def test_smp4_stream_of_other_size_is_refused(smp4_valid):
  head = sparse_mp4._HEADER
  fields = list(head.unpack_from(smp4_valid))
  fields[3] += 2   # height: the stream still holds the old frames
  with pytest.raises(errors.PayloadError, match='video stream.*expected'):
    _smp4_observe(head.pack(*fields) + smp4_valid[head.size:])
  fields = list(head.unpack_from(smp4_valid))
  fields[2] = 9    # 5 kept frames promised, the stream holds 3
  with pytest.raises(errors.PayloadError, match='holds 3 frames'):
    _smp4_observe(head.pack(*fields) + smp4_valid[head.size:])


# Sparse pixels --------------------------------------------------------------


@pytest.fixture(scope='module')
def spx_valid() -> bytes:
  rng = np.random.default_rng(1)
  video = rng.integers(0, 256, (3, 12, 16, 3), dtype=np.uint8)
  return sparse_pixels.encode(video, rng.random(video.shape[:3]) < 0.2,
                              fps=25.0).to_bytes()


@pytest.mark.parametrize('run', RUNS)
def test_sparse_pixel_decode(run, spx_valid):
  @_settings(run, 150, 8000, 1000)
  @given(mutations(spx_valid, sparse_pixels._HEADER))
  def check(data):
    check_typed_or_valid(sparse_pixels.decode, data)
  check()


def _with_parts(valid: bytes, mask: bytes, values: bytes, **fields) -> bytes:
  head = sparse_pixels._HEADER
  f = dict(zip(('magic', 'version', 't', 'h', 'w', 'c', 'fps', 'nm', 'nv'),
               head.unpack_from(valid), strict=True))
  f.update(fields, nm=len(mask), nv=len(values))
  return head.pack(*f.values()) + mask + values


def test_sparse_pixel_decompression_is_bounded(spx_valid):
  """A small part that inflates far beyond the header's promise is refused."""
  bomb = sparse_pixels._pack(bytes(50 << 20))     # 50 MB of zeros, ~8 kB
  assert len(bomb) < 20_000
  values = sparse_pixels.SparsePixelPayload.from_bytes(spx_valid).value_bytes
  tracemalloc.start()
  try:
    with pytest.raises(errors.PayloadError, match='mask does not end after'):
      sparse_pixels.decode(_with_parts(spx_valid, bomb, values))
    peak = tracemalloc.get_traced_memory()[1]
  finally:
    tracemalloc.stop()
  assert peak < 1 << 20


def test_sparse_pixel_messages(spx_valid):
  p = sparse_pixels.SparsePixelPayload.from_bytes(spx_valid)
  with pytest.raises(errors.PayloadError, match='decompress'):
    sparse_pixels.decode(_with_parts(spx_valid, b'\xff' * 40, p.value_bytes))
  with pytest.raises(errors.PayloadError, match=r'pixel values .* expected'):
    sparse_pixels.decode(_with_parts(spx_valid, p.mask_bytes,
                                     sparse_pixels._pack(b'\x01' * 7)))
  with pytest.raises(errors.PayloadError, match='more than the limit'):
    sparse_pixels.decode(_with_parts(spx_valid, p.mask_bytes, p.value_bytes,
                                     t=60000, h=8000, w=8000))
  with pytest.raises(errors.PayloadError, match='truncated or padded'):
    sparse_pixels.decode(spx_valid[:-1])
