"""Atomic writes: complete file or the old one, never a partial one."""

import json
import os

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
