"""Sparse-pixel payloads: lossless round trip and real sizes."""

import numpy as np
import pytest

from jaxvr import errors, video
from jaxvr.assets import sample_clip_path
from jaxvr.sparsegan import payload


@pytest.fixture(scope='module')
def clip():
  return video.read_video(sample_clip_path(), max_frames=6)[:, :64, :96]


@pytest.mark.parametrize('density', [0.02, 0.1])
def test_round_trip_is_lossless(clip, density):
  mask = np.random.default_rng(1).random(clip.shape[:3]) < density
  p = payload.encode(clip, mask, fps=30)
  sparse, back = payload.decode(p.to_bytes())
  np.testing.assert_array_equal(back, mask)
  np.testing.assert_array_equal(sparse[mask], clip[mask])
  assert not sparse[~mask].any()
  assert p.size == len(p.to_bytes())
  # The mask costs no more than its raw bits, and more kept pixels cost more.
  assert len(p.mask_bytes) < mask.size / 8


def test_size_grows_with_density(clip):
  rng = np.random.default_rng(2)
  sizes = [payload.encode(clip, rng.random(clip.shape[:3]) < d).size
           for d in (0.01, 0.05, 0.2)]
  assert sizes[0] < sizes[1] < sizes[2]


def test_structured_mask_compresses(clip):
  mask = np.zeros(clip.shape[:3], bool)
  mask[:, ::4, ::4] = True
  random = np.random.default_rng(3).random(clip.shape[:3]) < mask.mean()
  assert len(payload.encode(clip, mask).mask_bytes) < len(
      payload.encode(clip, random).mask_bytes) / 5


def test_bad_input(clip):
  with pytest.raises(errors.ShapeError, match='mask'):
    payload.encode(clip, np.ones((2, 3, 4), bool))
  with pytest.raises(errors.PayloadError, match='sparse-pixel'):
    payload.decode(b'nonsense')
