"""The jaxvr command: output, JSON, and one-line errors."""

import json
import subprocess
import sys

import pytest

from jaxvr import cli
from jaxvr.assets import sample_clip_path


def test_codecs_command(tmp_path, capsys):
  out = tmp_path / 'rows.json'
  code = cli.main(['codecs', str(sample_clip_path()), '--frames', '4',
                   '--size', '96', '--no-vmaf', '--no-strred',
                   '--setting', 'libx264:lossless:yuv444p',
                   '--setting', 'libx264:crf=30:yuv420p', '--json', str(out)])
  assert code == 0
  text = capsys.readouterr().out
  assert 'libx264:crf=30:yuv420p' in text and '| factor |' in text
  rows = json.loads(out.read_text())['rows']
  assert rows[0]['factor'] == pytest.approx(1.0) and rows[1]['factor'] > 1


@pytest.mark.parametrize('content, words', [
    (b'not a video at all', 'cannot read'),
    (b'', 'empty'),
])
def test_bad_clip_is_one_line_and_nonzero(tmp_path, content, words):
  bad = tmp_path / 'bad.mp4'
  bad.write_bytes(content)
  proc = subprocess.run([sys.executable, '-m', 'jaxvr.cli', 'codecs', str(bad)],
                        capture_output=True, text=True, check=False)
  assert proc.returncode == 2
  lines = proc.stderr.strip().splitlines()
  assert len(lines) == 1 and 'bad.mp4' in lines[0] and words in lines[0]


def test_bad_setting_message(capsys, tmp_path):
  code = cli.main(['codecs', str(sample_clip_path()), '--frames', '2',
                   '--setting', 'libx264:turbo'])
  assert code == 2
  assert 'turbo' in capsys.readouterr().err


def test_help_lists_commands(capsys):
  with pytest.raises(SystemExit):
    cli.main(['--help'])
  assert 'codecs' in capsys.readouterr().out


def test_sparse_mp4_commands(tmp_path, capsys):
  payload = tmp_path / 'clip.smp4'
  assert cli.main(['sparse-mp4', 'encode', str(sample_clip_path()), str(payload),
                   '--frames', '5', '--size', '32']) == 0
  out = tmp_path / 'restored.mp4'
  assert cli.main(['sparse-mp4', 'decode', str(payload), str(out),
                   '--restore', 'linear']) == 0
  from jaxvr import video
  assert video.read_video(out).shape == (5, 32, 32, 3)
  assert cli.main(['sparse-mp4', 'decode', str(tmp_path / 'none.smp4'), str(out)]) == 2
  assert 'none.smp4' in capsys.readouterr().err


def test_sparsegan_random_mask_encode(tmp_path, capsys):
  payload = tmp_path / 'clip.spx'
  assert cli.main(['sparsegan', 'encode', str(sample_clip_path()), str(payload),
                   '--frames', '4', '--size', '32', '--random-density', '0.1']) == 0
  kept = float(capsys.readouterr().out.split('; ')[-1].split('%')[0])
  assert abs(kept - 10.0) < 0.1  # exact count per frame: round(0.1 * 32 * 32)


def test_carv_command_with_bundled_model(tmp_path, capsys):
  import numpy as np

  from jaxvr import video
  assert cli.main(['carv', str(sample_clip_path()), '--out', str(tmp_path),
                   '--frames', '16', '--samples', '8', '--budget', '4']) == 0
  reduced = video.read_video(tmp_path / 'reduced.mp4')
  assert reduced.shape == (16, 144, 176, 3)
  sig = np.load(tmp_path / 'significance.npy')
  assert sig.ndim == 3 and np.isfinite(sig).all()
  assert (tmp_path / 'heatmap.png').stat().st_size > 1000
