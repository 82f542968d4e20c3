"""The eval tables are thin: their numbers are the compare runner's rows."""

import numpy as np
import pytest

from eval import carv_table, sparse_mp4_table
from jaxvr import compare
from jaxvr.video import io as video_io


@pytest.fixture(scope='module')
def clip(tmp_path_factory):
  """A smooth moving pattern, 16 frames (CARV reducers need >= 16)."""
  t, h, w = 16, 32, 40
  yy, xx = np.mgrid[0:h, 0:w]
  frames = [np.stack([128 + 100 * np.sin((xx + 2 * i) / 5.0),
                      128 + 100 * np.cos(yy / 7.0 + i / 4.0),
                      np.full((h, w), 60.0 + 4 * i)], -1)
            for i in range(t)]
  video = np.clip(np.round(frames), 0, 255).astype(np.uint8)
  path = tmp_path_factory.mktemp('clip') / 'moving.mp4'
  video_io.write_video(path, video, lossless=True)
  return str(path)


def _runner_rows(clip, out, names, spec, metrics):
  rows = compare.compare([clip], out, reducer_names=names, spec=spec,
                         metric_names=metrics, progress=False)
  return {r['reducer']: r for r in rows}


def test_sparse_mp4_table_rows_are_compare_rows(clip, tmp_path):
  methods = ('interp-linear', 'interp-copy')
  table = sparse_mp4_table.run([clip], tmp_path / 'table', methods,
                               frames=8, size=32, progress=False)
  ref = _runner_rows(clip, tmp_path / 'ref', methods,
                     compare.ClipSpec(frames=8, size=32), ('psnr', 'ssim_y'))
  assert [r['method'] for r in table] == list(methods)
  for row in table:
    r = ref[row['method']]
    for k in ('bytes', 'psnr', 'psnr_kept', 'psnr_dropped', 'ssim_y'):
      assert row[k] == r[k], (row['method'], k)
    assert row['factor'] > 1.0
  # Frame copy restores the dropped frames worse than linear interpolation.
  by = {r['method']: r for r in table}
  assert by['interp-linear']['dropped_ssim'] > by['interp-copy'][
      'dropped_ssim']
  assert (tmp_path / 'table' / 'residual_histograms.png').stat().st_size


def test_carv_table_rows_are_compare_rows(clip, tmp_path):
  names = [carv_table.CLIP_AT_CRF, 'every-nth-n4', 'random-chunk-n4']
  spec = compare.ClipSpec(frames=16, size=32)
  measured = compare.compare([clip], tmp_path, reducer_names=names,
                             spec=spec, metric_names=('psnr', 'ssim_y'),
                             progress=False)
  rows = carv_table.table_rows(measured)
  ref = {r['reducer']: r for r in measured}
  assert [(r['method'], r['N']) for r in rows] == [
      ('none', 1), ('every-nth', 4), ('random-chunk', 4)]
  for row, name in zip(rows, names, strict=True):
    assert row['psnr'] == ref[name]['psnr']
    assert row['bytes_vs_clip'] == ref[name]['bytes'] / ref[names[0]]['bytes']
  assert rows[1]['refresh'] == pytest.approx(0.25, abs=0.05)
  assert carv_table.reducer_names([4])[1:] == [
      f'{m}-n4' for m in ('carv-visible', 'carv-masked', 'every-nth',
                          'random-chunk', 'motion-energy')]
  with pytest.raises(SystemExit):
    carv_table.parse_args(['x.mp4', '--out', 'o', '--budgets', '3'])
