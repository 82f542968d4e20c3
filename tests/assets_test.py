"""Bundled models: within the size budget, and never fitted on validation clips."""

import json
import pathlib

import pytest

from jaxvr import assets
from jaxvr.training import data

FIXTURE = pathlib.Path(__file__).parent / 'fixtures' / 'validation_clips.json'
# The validation split beside the repository, when it is there (CI has it).
VALIDATION_DIR = pathlib.Path(__file__).parents[2] / 'shared' / 'data' / 'clips'


def _validation_clips() -> list[dict]:
  clips = json.loads(FIXTURE.read_text())['clips']
  if VALIDATION_DIR.is_dir():
    clips += data.clip_list(data.list_videos(VALIDATION_DIR))
  return clips


def _overlap(trained: list[dict], validation: list[dict]) -> set[str]:
  """Validation clips found among training clips, by name or by content."""
  names = {c['name'] for c in trained}
  hashes = {c['sha256'] for c in trained}
  return {v['name'] for v in validation
          if v['name'] in names or v['sha256'] in hashes}


@pytest.mark.parametrize('path', assets.bundled_model_paths(),
                         ids=lambda p: p.name)
def test_bundled_model_never_saw_a_validation_clip(path):
  record_path = data.training_record_path(path)
  assert record_path.is_file(), f'{path.name}: no training record'
  record = json.loads(record_path.read_text())
  trained = record['clips']
  assert len(trained) >= 10 and record['steps'] > 0
  assert len({c['sha256'] for c in trained}) == len(trained)
  assert not _overlap(trained, _validation_clips())


@pytest.mark.parametrize('path', assets.bundled_model_paths(),
                         ids=lambda p: p.name)
def test_bundled_model_size(path):
  files = [path] if path.is_file() else [f for f in path.rglob('*')
                                         if f.is_file()]
  size = sum(f.stat().st_size for f in files)
  assert 0 < size <= 8 * 2**20


def test_overlap_is_caught_by_name_and_by_content():
  validation = _validation_clips()
  renamed = {'name': 'innocent.mp4', 'sha256': validation[1]['sha256']}
  trained = [{'name': 'x.mp4', 'sha256': '0' * 64}, validation[0], renamed]
  assert _overlap(trained, validation) == {validation[0]['name'],
                                           validation[1]['name']}
  assert not _overlap(trained[:1], validation)


def test_bundled_configs_name_no_absolute_paths():
  """Recorded trainer configs carry no paths of the machine they ran on."""
  for config in assets.ASSETS.rglob('config.json'):
    def walk(x):
      if isinstance(x, dict):
        for v in x.values():
          yield from walk(v)
      elif isinstance(x, list):
        for v in x:
          yield from walk(v)
      elif isinstance(x, str):
        yield x
    bad = [s for s in walk(json.loads(config.read_text()))
           if s.startswith('/')]
    assert not bad, f'{config}: absolute paths {bad}'
