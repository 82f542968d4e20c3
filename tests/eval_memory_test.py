"""Memory scripts: setting names, the linear fit, and the bad-input exit."""

import subprocess
import sys

import pytest

from eval import memory_sparse_gan as gan_memory
from jaxvr.errors import ConfigError


def test_gan_settings_parse():
  assert gan_memory.parse_setting('none') == (0, False)
  assert gan_memory.parse_setting('remat') == (0, True)
  assert gan_memory.parse_setting('chunk4') == (4, False)
  assert gan_memory.parse_setting('chunk1+remat') == (1, True)
  for bad in ('chunk0', 'chunk', 'remat+chunk2', 'all'):
    with pytest.raises(ConfigError, match='--settings'):
      gan_memory.parse_setting(bad)


def test_clips_that_fit_is_a_linear_fit():
  gib = gan_memory.GIB
  rows = [{'batch': 2, 'peak': 3 * gib}, {'batch': 4, 'peak': 5 * gib}]
  fixed, per_clip, fit = gan_memory.clips_that_fit(rows, 16 * gib)
  assert (fixed, per_clip, fit) == (1 * gib, 1 * gib, 15)


def test_stmae_script_rejects_a_bad_setting_in_one_line():
  out = subprocess.run(
      [sys.executable, '-m', 'eval.memory_stmae', '--settings=scan+most'],
      capture_output=True, text=True, timeout=300, check=False)
  assert out.returncode == 2
  assert out.stderr.strip().splitlines()[-1] == (
      "memory_stmae: error: --settings: expected [scan+]none, dots or full, "
      "got 'scan+most'")
  assert 'Traceback' not in out.stderr
