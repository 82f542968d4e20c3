"""The compare runner: row identity, resume, retries, strict JSON, exit status."""

import json
import math

import pytest

from jaxvr import cli, compare

REDUCERS = ('interp-copy', 'interp-linear')
METRICS = ('psnr',)
SPEC = compare.ClipSpec(frames=4, size=16)


def _strict_load(path):
  def refuse(name):
    raise ValueError(f'non-finite {name} in strict JSON')
  return json.loads(path.read_text(), parse_constant=refuse)


@pytest.fixture(scope='module')
def clips(small_clips):
  return small_clips


def _lines(out):
  return (out / 'results.jsonl').read_text().splitlines()


def test_rows_are_keyed_on_content_spec_reducer_and_metrics(clips, tmp_path):
  rows = compare.compare(clips, tmp_path, reducer_names=REDUCERS, spec=SPEC,
                         metric_names=METRICS, progress=False)
  assert len(rows) == 6 and not any('error' in r for r in rows)
  for r in rows:   # kept and dropped frames measured separately too
    lo, hi = sorted((r['psnr_kept'], r['psnr_dropped']))
    assert lo <= r['psnr'] <= hi
  names = {r['clip'] for r in rows}
  assert len(names) == 3 and 'other' in names   # same stem, made distinct
  assert len(list((tmp_path / 'outputs').iterdir())) == 3
  n = len(_lines(tmp_path))
  # Same setting: everything reused, nothing appended, same outputs.
  again = compare.compare(clips, tmp_path, reducer_names=REDUCERS, spec=SPEC,
                          metric_names=METRICS, progress=False)
  assert len(_lines(tmp_path)) == n and again == rows
  # Another size: new rows, and the outputs hold only this invocation's.
  other = compare.compare(clips[:1], tmp_path, reducer_names=REDUCERS[:1],
                          spec=compare.ClipSpec(frames=4, size=8),
                          metric_names=METRICS, progress=False)
  assert len(_lines(tmp_path)) == n + 1
  assert other[0]['height'] == 8
  saved = _strict_load(tmp_path / 'results.json')
  assert [r['key'] for r in saved] == [r['key'] for r in other]


def test_torn_lines_and_failed_pairs_are_run_again(clips, tmp_path, capsys):
  rows = compare.compare(clips[:1], tmp_path, reducer_names=REDUCERS,
                         spec=SPEC, metric_names=METRICS, progress=False)
  lines = _lines(tmp_path)
  failed = json.loads(lines[0])
  failed.pop('psnr')
  failed['error'] = 'an earlier failure'
  (tmp_path / 'results.jsonl').write_text(
      json.dumps(failed) + '\n' + lines[1][:25] + '\n')  # torn second line
  again = compare.compare(clips[:1], tmp_path, reducer_names=REDUCERS,
                          spec=SPEC, metric_names=METRICS, progress=False)
  assert 'skipped 1 unreadable line' in capsys.readouterr().err
  assert [r['psnr'] for r in again] == [r['psnr'] for r in rows]
  assert len(_lines(tmp_path)) == 4   # both pairs were run again


def test_strict_json_nulls_non_finite_values_with_a_reason():
  row = compare.strict_row({'psnr': math.inf, 'strred': math.nan,
                            'bpp': 1.5})
  assert row['psnr'] is None and row['strred'] is None and row['bpp'] == 1.5
  assert 'equals the original' in row['null_reasons']['psnr']
  assert '72 px' in row['null_reasons']['strred']
  json.dumps(row, allow_nan=False)


def test_compare_command_exits_nonzero_when_a_clip_fails(clips, tmp_path,
                                                         capsys):
  bad = tmp_path / 'broken.mp4'
  bad.write_bytes(b'not a video')
  out = tmp_path / 'out'
  code = cli.main(['compare', str(bad), clips[2], '--out', str(out),
                   '--reducers', 'interp-copy', '--frames', '4', '--size',
                   '16', '--no-vmaf'])
  assert code == 1
  err = capsys.readouterr().err
  assert '1 of 2 (clip, reducer) runs failed' in err
  saved = _strict_load(out / 'results.json')
  assert [('error' in r) for r in saved] == [True, False]


def _compare_args(clips, out, *extra):
  return ['compare', *clips, '--out', str(out), '--reducers',
          ','.join(REDUCERS), '--frames', '4', '--size', '16', '--no-vmaf',
          *extra]


def test_shards_merge_into_the_single_run_tables(clips, tmp_path, capsys,
                                                  without_timings):
  broken = tmp_path / 'broken.mp4'
  broken.write_bytes(b'not a video')
  videos = [*clips, str(broken)]
  assert cli.main(_compare_args(videos, tmp_path / 'single')) == 1
  sharded = tmp_path / 'sharded'
  assert cli.main(_compare_args(videos, sharded, '--shard', '1/2')) == 0
  # Shard 0 is missing: nothing to merge yet.
  assert cli.main(_compare_args(videos, sharded, '--merge')) == 2
  assert 'no result yet' in capsys.readouterr().err
  assert cli.main(_compare_args(videos, sharded, '--shard', '0/2')) == 0
  assert sorted(p.name for p in sharded.glob('results*.jsonl')) == [
      'results.shard-0-of-2.jsonl', 'results.shard-1-of-2.jsonl']
  assert not (sharded / 'results.json').exists()
  assert cli.main(_compare_args(videos, sharded, '--merge')) == 1
  merged = _strict_load(sharded / 'results.json')
  single = _strict_load(tmp_path / 'single' / 'results.json')
  assert len(merged) == 7 and merged[-1]['reducer'] == '*'  # Broken clip.
  assert without_timings(merged) == without_timings(single)
  assert (sharded / 'report.html').is_file()
  assert sorted(p.name for p in (sharded / 'outputs').iterdir()) == sorted(
      p.name for p in (tmp_path / 'single' / 'outputs').iterdir())
  for bad in ('2/2', '1', 'a/b'):
    assert cli.main(_compare_args(clips, sharded, '--shard', bad)) == 2
    assert 'shard: expected I/N' in capsys.readouterr().err
