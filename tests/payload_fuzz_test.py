"""Property-based fuzzing of every payload format and the video reader.

Invariant: malformed bytes (truncated, bit-flipped, a header field set to
any value, random bytes) either decode to a valid video or raise a typed
jaxvr error, within a time bound (Hypothesis ``deadline``) and a memory
bound (tracemalloc peak), never another exception. The default run tries a
few hundred cases in all; ``-m slow`` runs many thousands.
"""

import dataclasses
import re
import struct
import tracemalloc

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jaxvr import errors
from jaxvr.sparse_mp4 import stream as smp4_stream
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


def fuzz(run: str, decode, valid: bytes, header: struct.Struct, *,
         quick: int, thorough: int, deadline_ms: int, expect=np.ndarray):
  """Checks ``decode`` on ``quick`` (default run) or ``thorough`` (-m slow)
  corruptions of ``valid``."""
  @_settings(run, quick, thorough, deadline_ms)
  @given(mutations(valid, header))
  def check(data):
    check_typed_or_valid(decode, data, expect)
  check()


# Sparse MP4 -----------------------------------------------------------------


@pytest.fixture(scope='module')
def smp4_video():
  rng = np.random.default_rng(0)
  return rng.integers(0, 256, (5, 10, 12, 3), dtype=np.uint8)


@pytest.fixture(scope='module')
def smp4_valid(smp4_video) -> bytes:
  return smp4_stream.encode(smp4_video, fps=24.0, codec='libx264rgb').to_bytes()


def _smp4_observe(data: bytes):
  return smp4_stream.decode_observed(smp4_stream.SparseMP4Payload.from_bytes(data))


def test_smp4_valid_payload_decodes(smp4_valid, smp4_video):
  observed, mask = _smp4_observe(smp4_valid)
  np.testing.assert_array_equal(observed[mask], smp4_video[mask])


@pytest.mark.parametrize('run', RUNS)
def test_smp4_header_parse(run, smp4_valid):
  fuzz(run, smp4_stream.SparseMP4Payload.from_bytes, smp4_valid,
       smp4_stream._HEADER, quick=120, thorough=5000, deadline_ms=500,
       expect=smp4_stream.SparseMP4Payload)


@pytest.mark.parametrize('run', RUNS)
def test_smp4_stream_decode(run, smp4_valid):
  fuzz(run, _smp4_observe, smp4_valid, smp4_stream._HEADER,
       quick=12, thorough=400, deadline_ms=5000)


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
  fields = list(smp4_stream._HEADER.unpack_from(smp4_valid))
  fields[field] = value
  data = smp4_stream._HEADER.pack(*fields) + smp4_valid[smp4_stream._HEADER.size:]
  with pytest.raises(errors.PayloadError, match=words):
    _smp4_observe(data)


def test_smp4_stream_of_other_size_is_refused(smp4_valid):
  head = smp4_stream._HEADER
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
  fuzz(run, sparse_pixels.decode, spx_valid, sparse_pixels._HEADER,
       quick=150, thorough=8000, deadline_ms=1000)


def _with_parts(valid: bytes, mask: bytes, values: bytes, **fields) -> bytes:
  head = sparse_pixels._HEADER
  f = dict(zip(('magic', 'version', 't', 'h', 'w', 'c', 'fps', 'nm', 'nv'),
               head.unpack_from(valid), strict=True))
  f.update(fields, nm=len(mask), nv=len(values))
  return head.pack(*f.values()) + mask + values


def test_sparse_pixel_decompression_is_bounded(spx_valid):
  """A small part that inflates far beyond the header's promise is refused."""
  bomb = sparse_pixels._pack(bytes(8 << 20))     # 8 MB of zeros, ~1 kB
  assert len(bomb) < 4096
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
  with pytest.raises(errors.PayloadError, match='cannot decompress to'):
    sparse_pixels.decode(_with_parts(spx_valid, p.mask_bytes, p.value_bytes,
                                     t=4099, h=268, w=528))   # 72 MB of mask
  with pytest.raises(errors.PayloadError, match='truncated or padded'):
    sparse_pixels.decode(spx_valid[:-1])


# CARV reduced video + map -----------------------------------------------------


@pytest.fixture(scope='module')
def carv_payloads():
  """``{method: (reducer, valid bytes)}`` for a method that sends a map and
  one that does not, laid out by hand (a real encode is tested in
  carv_reducers_test; any finite map is a valid one)."""
  from jaxvr import codecs, reducers
  from jaxvr.reducers import carv

  rng = np.random.default_rng(2)
  stream = codecs.encode(rng.integers(0, 256, (16, 18, 22, 3), np.uint8),
                         'libx264', crf=30, pix_fmt='yuv420p')
  significance = rng.random((8, 7, 9)).astype('<f2').tobytes()
  out = {}
  for name, code, budget, full_map in (('motion-energy-n4', 4, 4, significance),
                                       ('every-nth-n2', 2, 2, b'')):
    head = carv._HEADER.pack(carv._MAGIC, code, budget, 0, 16, 18, 22, 8, 7, 9,
                             0, len(full_map))
    out[name] = (reducers.create(name), head + full_map + stream)
  return out


@pytest.mark.parametrize('run', RUNS)
@pytest.mark.parametrize('name', ['motion-energy-n4', 'every-nth-n2'])
def test_carv_header_parse(run, name, carv_payloads):
  from jaxvr.reducers.carv import _HEADER, CarvHeader

  valid = carv_payloads[name][1]

  fuzz(run, CarvHeader.parse, valid, _HEADER,
       quick=60, thorough=4000, deadline_ms=500,
       expect=(CarvHeader, np.ndarray, bytes, type(None)))


@pytest.mark.parametrize('run', RUNS)
def test_carv_decode(run, carv_payloads):
  from jaxvr.reducers import Payload
  from jaxvr.reducers.carv import _HEADER

  red, valid = carv_payloads['motion-energy-n4']
  assert red.decode(Payload(valid)).shape == (16, 18, 22, 3)

  fuzz(run, lambda d: red.decode(Payload(d)), valid, _HEADER,
       quick=10, thorough=300, deadline_ms=10_000)


def test_carv_header_messages(carv_payloads):
  from jaxvr.reducers.carv import _HEADER, CarvHeader

  valid = carv_payloads['motion-energy-n4'][1]
  for field, value, words in [(1, 9, 'method index 9'), (2, 0, 'budget'),
                              (3, 2, 'invert'), (7, 17, "grid t' = 17"),
                              (11, 4, 'map length 4')]:
    fields = list(_HEADER.unpack_from(valid))
    fields[field] = value
    with pytest.raises(errors.PayloadError, match=words):
      CarvHeader.parse(_HEADER.pack(*fields) + valid[_HEADER.size:])
  nan_map = bytearray(valid)
  nan_map[_HEADER.size:_HEADER.size + 2] = np.float16(np.nan).tobytes()
  with pytest.raises(errors.PayloadError, match='NaN'):
    CarvHeader.parse(bytes(nan_map))


# Autoencoder latents and codec streams ------------------------------------------


@pytest.fixture(scope='module')
def ae_model():
  """Tiny model and a valid payload laid out by hand (any 8-bit latent is a
  valid one; the real encoder is tested in autoencoder_test)."""
  import jax

  from jaxvr import autoencoder, codecs
  from jaxvr.autoencoder import model

  config = autoencoder.AEConfig(width=8, blocks=1)
  # Zero weights (shapes only: no compile) decode like any others.
  shapes = jax.eval_shape(
      lambda key: autoencoder.init_params(config, key, 16), jax.random.key(0))
  params = jax.tree.map(lambda x: np.zeros(x.shape, x.dtype), shapes)
  latent = np.random.default_rng(3).integers(0, 256, (2, 5, 14, 3), np.uint8)
  stream = codecs.encode(latent, 'libx264', lossless=True, pix_fmt='rgb24')
  return params, config, model._HEADER.pack(model._MAGIC, 3, 10, 14, 24.0) + stream


@pytest.mark.parametrize('run', RUNS)
def test_autoencoder_decode(run, ae_model):
  from jaxvr import autoencoder
  from jaxvr.autoencoder.model import _HEADER

  params, config, valid = ae_model
  assert autoencoder.decode_video(params, config, valid).shape == (3, 10, 14, 3)

  fuzz(run, lambda d: autoencoder.decode_video(params, config, d), valid,
       _HEADER,
       quick=12, thorough=400, deadline_ms=10_000)


@pytest.fixture(scope='module')
def codec_payload():
  from jaxvr import reducers

  red = reducers.create('x264-crf23')
  video = np.random.default_rng(4).integers(0, 256, (3, 9, 14, 3), np.uint8)
  return red, red.encode(video, 25.0).data


@pytest.mark.parametrize('run', RUNS)
def test_codec_decode(run, codec_payload):
  from jaxvr.reducers import Payload
  from jaxvr.reducers.codec import _SIZE

  red, valid = codec_payload
  assert red.decode(Payload(valid)).shape == (3, 9, 14, 3)

  fuzz(run, lambda d: red.decode(Payload(d)), valid, _SIZE,
       quick=12, thorough=400, deadline_ms=10_000)


# The video reader ---------------------------------------------------------------


@pytest.fixture(scope='module')
def real_mp4(tmp_path_factory) -> bytes:
  from jaxvr.video import io as video_io

  path = tmp_path_factory.mktemp('reader') / 'clip.mp4'
  video = np.random.default_rng(5).integers(0, 256, (4, 16, 16, 3), np.uint8)
  video_io.write_video(path, video, crf=30)
  return path.read_bytes()


@pytest.mark.parametrize('run', RUNS)
def test_video_reader(run, real_mp4, tmp_path_factory):
  from jaxvr.video import io as video_io

  folder = tmp_path_factory.mktemp('mutated')

  @_settings(run, 15, 500, 10_000)
  @given(mutations(real_mp4, struct.Struct('<8s')))
  def check(data):
    path = folder / 'mutated.mp4'
    path.write_bytes(data)
    check_typed_or_valid(video_io.read_video, path)
  check()


def test_encoding_a_video_beyond_the_header_fields_is_a_size_error(smp4_valid):
  p = smp4_stream.SparseMP4Payload.from_bytes(smp4_valid)
  with pytest.raises(errors.SizeError, match='Sparse MP4 payload.*70000'):
    dataclasses.replace(p, n_frames=70000).to_bytes()


def test_limits_are_read_at_each_check(smp4_valid, monkeypatch):
  from jaxvr import payloads

  smp4_stream.SparseMP4Payload.from_bytes(smp4_valid)   # 5 x 10 x 12 fits
  monkeypatch.setattr(payloads, 'LIMITS', payloads.Limits(max_pixels=500))
  with pytest.raises(errors.PayloadError, match='600 pixels, more than the '
                     'limit of 500'):
    smp4_stream.SparseMP4Payload.from_bytes(smp4_valid)
