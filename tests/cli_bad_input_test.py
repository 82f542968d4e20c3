"""The CLI contract for bad input, command by command.

Every case: exit status 2, exactly one line on stderr naming the problem, no
traceback, and nothing left in the working folder (no output, not even an
empty or temporary file).
"""

import os
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest

from jaxvr import cli
from jaxvr.sparse_mp4 import stream as smp4_stream
from jaxvr.sparsegan import payload as sparse_pixels
from jaxvr.video import io as video_io

#: A folder no process can write in, root included.
UNWRITABLE = '/proc/jaxvr_out'


@pytest.fixture(scope='module')
def inputs(tmp_path_factory) -> pathlib.Path:
  """Real inputs: a clip (also under awkward names), payloads (valid and
  corrupted), JSON configs, a directory and a plain file."""
  folder = tmp_path_factory.mktemp('inputs')
  rng = np.random.default_rng(0)
  video = rng.integers(0, 256, (4, 16, 16, 3), np.uint8)
  video_io.write_video(folder / 'clip.mp4', video, lossless=True)
  for name in ('100%done.mp4', "take:2 'final'.mp4"):
    shutil.copy(folder / 'clip.mp4', folder / name)
  smp4 = smp4_stream.encode(video, codec='libx264rgb').to_bytes()
  spx = sparse_pixels.encode(video, rng.random(video.shape[:3]) < 0.1).to_bytes()
  for suffix, valid, layout, height in (('smp4', smp4, smp4_stream._HEADER, 3),
                                        ('spx', spx, sparse_pixels._HEADER, 3)):
    (folder / f'valid.{suffix}').write_bytes(valid)
    (folder / f'truncated.{suffix}').write_bytes(valid[:len(valid) // 2])
    (folder / f'empty.{suffix}').write_bytes(b'')
    (folder / f'random.{suffix}').write_bytes(rng.bytes(300))
    fields = list(layout.unpack_from(valid))
    fields[height] = 65535
    (folder / f'huge.{suffix}').write_bytes(layout.pack(*fields)
                                            + valid[layout.size:])
  (folder / 'bad.json').write_text('{"depth": 2,')
  (folder / 'unknown.json').write_text('{"depth": 2, "warp": 9}')
  (folder / 'list.json').write_text('[1, 2]')
  (folder / 'ckpt.pth').write_bytes(b'not a checkpoint')
  (folder / 'a_file').write_text('x')
  (folder / 'a_dir').mkdir()
  return folder


# (id, argv, words expected in the error line). Paths are relative to a
# fresh copy of ``inputs``; 'out*' names must not exist afterwards.
CASES = [
    # argument values
    ('codecs-frames-0', ['codecs', 'clip.mp4', '--frames', '0'], '>= 1, got 0'),
    ('codecs-frames-neg', ['codecs', 'clip.mp4', '--frames', '-3'], '>= 1'),
    ('codecs-size-neg', ['codecs', 'clip.mp4', '--size', '-1'], '>= 0'),
    ('codecs-fps-nan', ['codecs', 'clip.mp4', '--fps', 'nan'], 'frame rate'),
    ('codecs-start-word', ['codecs', 'clip.mp4', '--start', 'one'], "'one'"),
    ('compare-frames-0', ['compare', 'clip.mp4', '--out', 'out', '--frames',
                          '0'], '>= 1'),
    ('demo-size-neg', ['demo', '--out', 'out', '--size', '-5'], '>= 0'),
    ('smp4-encode-frames', ['sparse-mp4', 'encode', 'clip.mp4', 'out.smp4',
                            '--frames', '-1'], '>= 1'),
    ('carv-budget-0', ['carv', 'clip.mp4', '--out', 'out', '--budget', '0'],
     '>= 1'),
    ('carv-samples-neg', ['carv', 'clip.mp4', '--out', 'out', '--samples',
                          '-4'], '>= 1'),
    ('carv-mask-ratio', ['carv', 'clip.mp4', '--out', 'out', '--mask-ratio',
                         '1.5'], 'fraction'),
    ('carv-frames-0', ['carv', 'clip.mp4', '--out', 'out', '--frames', '0'],
     '>= 1'),
    ('spx-density-0', ['sparsegan', 'encode', 'clip.mp4', 'out.spx',
                       '--random-density', '0'], 'fraction'),
    ('spx-size-neg', ['sparsegan', 'encode', 'clip.mp4', 'out.spx', '--size',
                      '-2'], '>= 0'),
    ('reducers-extra', ['reducers', 'extra'], 'unrecognized'),
    ('no-command', ['frobnicate'], 'invalid choice'),
    ('missing-argument', ['sparse-mp4', 'decode', 'valid.smp4'], 'required'),
    # videos that are not videos
    ('codecs-dir', ['codecs', 'a_dir'], 'is a directory'),
    ('codecs-missing', ['codecs', 'none.mp4'], 'no such file'),
    ('codecs-pct-missing', ['codecs', '50%off.mp4'], 'no such file'),
    ('codecs-not-video', ['codecs', 'bad.json'], 'cannot read'),
    ('compare-dir', ['compare', 'a_dir', '--out', 'out'], 'is a directory'),
    ('compare-missing', ['compare', 'clip.mp4', 'none.mp4', '--out', 'out'],
     'no such file'),
    ('smp4-encode-dir', ['sparse-mp4', 'encode', 'a_dir', 'out.smp4'],
     'is a directory'),
    ('carv-dir', ['carv', 'a_dir', '--out', 'out'], 'is a directory'),
    ('spx-encode-dir', ['sparsegan', 'encode', 'a_dir', 'out.spx',
                        '--random-density', '0.1'], 'is a directory'),
    # corrupted payloads
    *[(f'{cmd}-decode-{kind}', [cmd, 'decode', f'{kind}.{ext}', 'out.mp4'],
       words)
      for cmd, ext in (('sparse-mp4', 'smp4'), ('sparsegan', 'spx'))
      for kind, words in (('truncated', 'payload'), ('empty', 'shorter than'),
                          ('random', 'magic'), ('huge', 'height = 65535'))],
    ('smp4-decode-dir', ['sparse-mp4', 'decode', 'a_dir', 'out.mp4'],
     'is a directory'),
    ('spx-decode-missing', ['sparsegan', 'decode', 'none.spx', 'out.mp4'],
     'no such payload'),
    # outputs that cannot be written
    ('codecs-json-dir', ['codecs', 'clip.mp4', '--json', 'a_dir'],
     'is a directory'),
    ('codecs-json-unwritable', ['codecs', 'clip.mp4', '--json',
                                f'{UNWRITABLE}/rows.json'], 'cannot write'),
    ('compare-out-file', ['compare', 'clip.mp4', '--out', 'a_file'],
     'is a file'),
    ('demo-unwritable', ['demo', '--out', UNWRITABLE], 'cannot write'),
    ('smp4-encode-under-file', ['sparse-mp4', 'encode', 'clip.mp4',
                                'a_file/out.smp4'], 'is a file'),
    ('smp4-decode-unwritable', ['sparse-mp4', 'decode', 'valid.smp4',
                                f'{UNWRITABLE}/out.mp4'], 'cannot write'),
    ('spx-decode-to-dir', ['sparsegan', 'decode', 'valid.spx', 'a_dir'],
     'is a directory'),
    ('carv-unwritable', ['carv', 'clip.mp4', '--out', UNWRITABLE],
     'cannot write'),
    ('convert-unwritable', ['convert-stmae', 'ckpt.pth', UNWRITABLE],
     'cannot write'),
    # configs, dictionaries, names
    ('smp4-decode-bad-dictionary', ['sparse-mp4', 'decode', 'valid.smp4',
                                    'out.mp4', '--dictionary', 'bad.json'],
     'expected an .npz with a "kernels" array'),
    ('compare-unknown-reducer', ['compare', 'clip.mp4', '--out', 'out',
                                 '--reducers', 'x264-crf23,nope'],
     "unknown 'nope'"),
    ('codecs-bad-setting', ['codecs', 'clip.mp4', '--setting',
                            'libx264:crf=abc'], "cannot read 'crf=abc'"),
    ('convert-bad-json', ['convert-stmae', 'ckpt.pth', 'out', '--config',
                          'bad.json'], 'not valid JSON'),
    ('convert-unknown-key', ['convert-stmae', 'ckpt.pth', 'out', '--config',
                             'unknown.json'], "unknown STMAEConfig fields ['warp']"),
    ('convert-json-list', ['convert-stmae', 'ckpt.pth', 'out', '--config',
                           'list.json'], 'JSON object'),
    ('convert-missing-config', ['convert-stmae', 'ckpt.pth', 'out', '--config',
                                'none.json'], 'cannot read'),
    ('convert-bad-checkpoint', ['convert-stmae', 'ckpt.pth', 'out'], 'ckpt.pth'),
]


def _run(argv: list[str]) -> int:
  try:
    return cli.main(argv)
  except SystemExit as e:   # argparse
    return e.code


def _listing(folder: pathlib.Path) -> set[str]:
  return {str(p.relative_to(folder)) for p in folder.rglob('*')}


@pytest.mark.parametrize('argv, words', [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_bad_input(argv, words, inputs, tmp_path, monkeypatch, capsys):
  work = tmp_path / 'work'
  shutil.copytree(inputs, work)
  monkeypatch.chdir(work)
  before = _listing(work)
  code = _run(argv)
  err = capsys.readouterr().err
  assert code == 2, err
  lines = err.strip().splitlines()
  assert len(lines) == 1, err
  assert 'Traceback' not in err and words in lines[0], lines[0]
  assert _listing(work) == before   # no output, no temporary file


def test_awkward_names_are_files_not_patterns(inputs, tmp_path, monkeypatch,
                                              capsys):
  """'%' (not an image-sequence pattern here) and ':' or quotes in names."""
  monkeypatch.chdir(inputs)
  for name in ('100%done.mp4', "take:2 'final'.mp4"):
    out = tmp_path / f'{name}.smp4'
    assert cli.main(['sparse-mp4', 'encode', name, str(out)]) == 0
    assert smp4_stream.SparseMP4Payload.from_bytes(out.read_bytes()).n_frames == 4
  assert '4 frames 16x16' in capsys.readouterr().out


def test_subprocess_prints_no_traceback(inputs, tmp_path):
  out = tmp_path / 'out.mp4'
  proc = subprocess.run(
      [sys.executable, '-m', 'jaxvr.cli', 'sparse-mp4', 'decode',
       str(inputs / 'truncated.smp4'), str(out)],
      capture_output=True, text=True, check=False,
      env={**os.environ, 'JAX_PLATFORMS': 'cpu'})
  assert proc.returncode == 2
  lines = proc.stderr.strip().splitlines()
  assert len(lines) == 1 and 'Traceback' not in proc.stderr, proc.stderr
  assert lines[0].startswith('jaxvr sparse-mp4: error: Sparse MP4 payload')
  assert not out.exists()


# The training entry points (absl flags): one subprocess each, so few cases.
TRAIN_CASES = [
    ('train.autoencoder', [], 'Flag --config must have a value'),
    ('train.lca_dictionary', ['--config=none.py'], "No such file or directory: 'none.py'"),
    ('train.sparse_gan', ['--config=jaxvr/configs/sparse_gan.py:smoke',
                          '--config.total_steps=abc'], "invalid literal for int()"),
    ('train.stmae', ['--config=jaxvr/configs/stmae.py:smoke', 'extra'],
     "unexpected arguments: ['extra']"),
    ('train.curves', ['--out=x.png'], 'expected one run folder'),
]


@pytest.mark.parametrize('module, args, words', TRAIN_CASES,
                         ids=[c[0] for c in TRAIN_CASES])
def test_training_entry_points(module, args, words, tmp_path):
  workdir = tmp_path / 'run'
  root = pathlib.Path(__file__).parent.parent
  proc = subprocess.run(
      [sys.executable, '-m', module, *args]
      + ([] if module == 'train.curves' else [f'--workdir={workdir}']),
      capture_output=True, text=True, check=False, cwd=root,
      env={**os.environ, 'JAX_PLATFORMS': 'cpu'})
  assert proc.returncode == 2, proc.stderr
  lines = proc.stderr.strip().splitlines()
  assert len(lines) == 1 and words in lines[0], proc.stderr
  assert lines[0].startswith(f'{module}: error: ')
  assert not workdir.exists()
