"""CARV reducers: registry, payload layout, decode re-applies the schedule."""

import struct

import numpy as np
import pytest

from jaxvr import reducers
from jaxvr.assets import sample_clip_path
from jaxvr.carv import pipeline, schedule
from jaxvr.errors import ConfigError, PayloadError
from jaxvr.reducers import carv as carv_reducers
from jaxvr.video import io as video_io
from jaxvr.video.tubes import chunk_bounds

KW = {'n_samples': 16, 'mask_ratio': 0.75}


@pytest.fixture(scope='session')
def clip():
  """10 frames of the bundled clip, 144x176 (the pipeline tests' shape)."""
  return video_io.read_video(sample_clip_path(), max_frames=10)


@pytest.fixture(scope='session')
def roundtrips(parity_model, clip):
  params, config = parity_model
  out = {}
  for method in pipeline.METHODS:
    red = reducers.create(f'{method}-n4', params=params, config=config, **KW)
    payload = red.encode(clip, 25.0)
    out[method] = (red, payload, red.decode(payload), dict(red.extras()))
  return out


def test_registered_names():
  names = set(reducers.available())
  for n in (2, 4, 8):
    for m in ('carv-visible', 'carv-masked', 'every-nth', 'random-chunk',
              'motion-energy'):
      assert f'{m}-n{n}' in names
  with pytest.raises(ConfigError):
    carv_reducers.CarvReducer('nope', 2)


@pytest.mark.parametrize('method', pipeline.METHODS)
def test_roundtrip(roundtrips, clip, method):
  red, payload, decoded, extras = roundtrips[method]
  assert decoded.shape == clip.shape and decoded.dtype == np.uint8
  flags = extras['flags']
  grid = flags.shape[1:]
  sends_map = method in ('carv-visible', 'carv-masked', 'motion-energy')
  map_bytes = 2 * 4 * grid[0] * grid[1] if sends_map else 0
  assert payload.meta['map_bytes'] == map_bytes
  assert payload.size == (carv_reducers._HEADER.size + map_bytes
                          + payload.meta['video_bytes'])
  # held regions are exact copies of the decoded frame at their last refresh
  hb, wb = chunk_bounds(grid[0], 144), chunk_bounds(grid[1], 176)
  for f in range(1, 10):
    for i in range(grid[0]):
      for j in range(grid[1]):
        if not flags[f, i, j]:
          region = np.s_[hb[i]:hb[i + 1], wb[j]:wb[j + 1]]
          np.testing.assert_array_equal(decoded[f][region],
                                        decoded[f - 1][region])
  # close to the sender's reduced video (x264 at crf 18)
  sent = np.asarray(schedule.apply_refresh(clip, flags), np.float64)
  mse = np.mean((sent - decoded) ** 2)
  assert 10 * np.log10(255 ** 2 / mse) > 30
  if method.startswith('carv-'):
    assert extras['significance'].shape == (4, 4, 4)
  elif method == 'motion-energy':
    assert extras['significance'].shape == (4, *grid)
  else:
    assert 'significance' not in extras


def test_every_nth_holds_whole_frames(roundtrips):
  _, _, decoded, _ = roundtrips['every-nth']
  for f in (1, 2, 3, 5, 6, 7, 9):
    np.testing.assert_array_equal(decoded[f], decoded[f - f % 4])
  assert not np.array_equal(decoded[4], decoded[3])


def test_corrupt_payload(roundtrips):
  red, payload, _, _ = roundtrips['carv-visible']
  with pytest.raises(PayloadError, match='CARV payload'):
    red.decode(reducers.Payload(b'XXXX' + payload.data[4:]))
  header = struct.unpack_from('<4s', payload.data)[0]
  assert header == b'CRV1'
