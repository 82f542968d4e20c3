"""VMAF through libvmaf, on the metric fixture's real luma."""

import numpy as np
import pytest

from jaxvr import errors, metrics


@pytest.fixture(scope='module')
def pair(fixtures_dir):
  z = np.load(fixtures_dir / 'metrics_ref_a.npz')
  return z['codec__ref'], z['codec__dis']


def test_vmaf_orders_quality(pair):
  ref, dis = pair
  same = metrics.vmaf(ref, ref)
  low = metrics.vmaf(ref, dis)
  # libvmaf v0.6.1 gives 99.510406 for pristine carphone against itself over
  # 120 frames; on these 8 frames it is likewise just under 100.
  assert 99.0 < same.mean < 100.0
  assert 20.0 < low.mean < 60.0 and low.per_frame.shape == (8,)
  assert low.mean == pytest.approx(np.mean(low.per_frame), abs=1e-3)


def test_vmaf_rejects_mismatch(pair):
  ref, _ = pair
  with pytest.raises(errors.ShapeError, match='equal shapes'):
    metrics.vmaf(ref, ref[:4])


def test_vmaf_in_a_temporary_folder_with_awkward_characters(pair, tmp_path,
                                                             monkeypatch):
  """':' and quotes in the temporary folder's path never reach the filter
  graph (ffmpeg runs inside it, with relative names)."""
  import tempfile

  awkward = tmp_path / "tmp:dir 'quoted' [x],y;z"
  awkward.mkdir()
  monkeypatch.setattr(tempfile, 'tempdir', str(awkward))
  ref, dis = pair
  assert 20.0 < metrics.vmaf(ref[:2], dis[:2]).mean < 60.0
  assert list(awkward.iterdir()) == []


@pytest.mark.parametrize('model', ['vmaf_v0.6.1:log_path=injected.log',
                                   "vmaf_v0.6.1'", 'a,b', ''])
def test_vmaf_model_name_cannot_inject_filter_options(pair, model):
  ref, _ = pair
  with pytest.raises(errors.ConfigError, match='built-in model version'):
    metrics.vmaf(ref, ref, model=model)
