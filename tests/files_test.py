"""Atomic writes: complete file or the old one, never a partial one."""

import json
import os
import re

import numpy as np
import pytest

from jaxvr import files


def test_write_replaces_and_leaves_no_temp(tmp_path):
  p = tmp_path / 'sub' / 'a.txt'
  files.write_text(p, 'one')
  files.write_text(p, 'two')
  assert p.read_text() == 'two'
  assert sorted(os.listdir(p.parent)) == ['a.txt']


def test_failure_keeps_old_file_and_no_temp(tmp_path):
  p = tmp_path / 'a.bin'
  files.write_bytes(p, b'old')
  with pytest.raises(RuntimeError):
    with files.atomic_open(p) as f:
      f.write(b'partial')
      raise RuntimeError('boom')
  assert p.read_bytes() == b'old'
  assert os.listdir(tmp_path) == ['a.bin']


def test_failure_on_new_path_leaves_nothing(tmp_path):
  p = tmp_path / 'new.npz'
  with pytest.raises(RuntimeError):
    with files.atomic_open(p) as f:
      f.write(b'x')
      raise RuntimeError('boom')
  assert os.listdir(tmp_path) == []


def test_arrays_and_json_round_trip(tmp_path):
  a = np.arange(12, dtype=np.uint8).reshape(3, 4)
  files.save_npy(tmp_path / 'a.npy', a)
  files.save_npz(tmp_path / 'b.npz', compressed=True, a=a, b=a.T)
  np.testing.assert_array_equal(np.load(tmp_path / 'a.npy'), a)
  with np.load(tmp_path / 'b.npz') as z:
    np.testing.assert_array_equal(z['b'], a.T)
  files.write_json(tmp_path / 'c.json', {'x': [1, 2]})
  assert json.loads((tmp_path / 'c.json').read_text()) == {'x': [1, 2]}
  with pytest.raises(ValueError):
    files.write_json(tmp_path / 'd.json', {'x': float('nan')})
  assert not (tmp_path / 'd.json').exists()


def test_append_line(tmp_path):
  p = tmp_path / 'log' / 'r.jsonl'
  files.append_line(p, '{"a": 1}')
  files.append_line(p, '{"a": 2}')
  assert p.read_text().splitlines() == ['{"a": 1}', '{"a": 2}']
  with pytest.raises(ValueError):
    files.append_line(p, 'two\nlines')


def test_result_has_umask_permissions(tmp_path):
  p = tmp_path / 'p.txt'
  files.write_text(p, 'x')
  umask = os.umask(0)
  os.umask(umask)
  assert p.stat().st_mode & 0o777 == 0o666 & ~umask


def test_atomic_path_keeps_suffix_and_replaces(tmp_path):
  p = tmp_path / 'out' / 'v.mp4'
  with files.atomic_path(p) as tmp:
    assert tmp.endswith('.mp4') and os.path.dirname(tmp) == str(p.parent)
    with open(tmp, 'ab') as f:  # a writer that opens the name itself
      f.write(b'new')
    assert not p.exists()
  assert p.read_bytes() == b'new'
  with pytest.raises(RuntimeError):
    with files.atomic_path(p) as tmp:
      raise RuntimeError('encoder failed')
  assert p.read_bytes() == b'new'
  assert os.listdir(p.parent) == ['v.mp4']


def test_atomic_dir_swaps_whole_folder_and_keeps_other_entries(tmp_path):
  d = tmp_path / 'export'
  with files.atomic_dir(d) as tmp:
    files.write_text(tmp / 'config.json', 'old')
    (tmp / 'params').mkdir()
    files.write_text(tmp / 'params' / 'w', 'old weights')
  files.write_text(d / 'training_clips.json', 'record')
  with files.atomic_dir(d) as tmp:
    files.write_text(tmp / 'config.json', 'new')
    (tmp / 'params').mkdir()
    files.write_text(tmp / 'params' / 'v', 'new weights')
    assert (d / 'config.json').read_text() == 'old'  # old intact meanwhile
  assert (d / 'config.json').read_text() == 'new'
  assert sorted(os.listdir(d / 'params')) == ['v']  # no stale old entries
  assert (d / 'training_clips.json').read_text() == 'record'
  assert os.listdir(tmp_path) == ['export']


def test_atomic_dir_failure_leaves_old_folder(tmp_path):
  d = tmp_path / 'export'
  with files.atomic_dir(d) as tmp:
    files.write_text(tmp / 'config.json', 'old')
  with pytest.raises(RuntimeError):
    with files.atomic_dir(d) as tmp:
      files.write_text(tmp / 'config.json', 'half')
      raise RuntimeError('save failed')
  assert (d / 'config.json').read_text() == 'old'
  assert os.listdir(tmp_path) == ['export']
  files.write_text(tmp_path / 'plain', 'x')
  with pytest.raises(NotADirectoryError):
    with files.atomic_dir(tmp_path / 'plain'):
      pass


# Calls that create or change a file without going through jaxvr.files.
# Calls made through the module (``files.write_text``) are the allowed form.
_RAW_WRITES = re.compile(
    r'np\.save|(?<!files)\.write_(text|bytes)\(|\bopen\([^)]*[\'"][wax]b?\+?[\'"]'
    r'|os\.fdopen|mkstemp|os\.replace|os\.rename|\.savefig\((?!buf\b|f\b)'
    r'|Image\.fromarray\([^)]*\)\.save\((?!f\b)')


def test_no_raw_writes_outside_files_module(library_lines):
  offenders = [f'{path}:{n}: {line.strip()}'
               for path, n, line in library_lines
               if path != 'jaxvr/files.py' and _RAW_WRITES.search(line)]
  assert not offenders, 'write through jaxvr.files:\n' + '\n'.join(offenders)
  # The pattern does catch the forms it is meant to.
  for bad in ("np.savez(p, a=a)", "p.write_text('x')", "open(p, 'w')",
              "open(p, 'ab')", "os.replace(a, b)", "fig.savefig(path)"):
    assert _RAW_WRITES.search(bad), bad
  for good in ("files.write_text(p, 'x')", "open(p, 'rb')",
               "fig.savefig(buf, format='png')"):
    assert not _RAW_WRITES.search(good), good
