"""Run reducers on clips, measure them, and keep the results resumable.

``compare`` loads each clip at the working resolution, runs every chosen
reducer (encode -> real bytes -> decode), measures the reconstruction
against the original and appends one JSON line per (clip, reducer) to
``results.jsonl`` as soon as it is known.

A row's identity is the clip's content (sha256 of the file), the clip spec
(frames, start, size), the reducer name and the metric set. A rerun into
the same folder reuses exactly the finished rows with the same identity:
rows of another setting are never reused, failed pairs are retried, and a
torn last line (a crash mid-write) is skipped and reported.
``results.json`` / ``results.csv`` then hold exactly the rows of this
invocation, as strict JSON (a non-finite metric becomes null, with the
reason under ``null_reasons``).

Dataset-scale runs split the clips into shards (clip ``k`` goes to shard
``k mod N``): shard ``i`` of ``N`` appends to its own
``results.shard-<i>-of-<N>.jsonl`` (resumable on its own), and
:func:`merge` assembles every shard's rows into the ``results.json`` /
``results.csv`` a single run over the same clips writes. :func:`run` does
both for ``jaxvr compare``: as N processes of JAX's distributed runtime each
process runs its shard and process 0 merges once all are done.
"""

from __future__ import annotations

import dataclasses
import json
import math
import pathlib
import sys
import time

import jax
import numpy as np
from tqdm.auto import tqdm

from jaxvr import errors, evaluation, files, reducers, video

# Every method and baseline at its default budget, and codecs along their
# rate-distortion curves.
METHOD_REDUCERS = (
    'carv-visible-n4', 'carv-masked-n4', 'motion-energy-n4', 'every-nth-n4',
    'random-chunk-n4', 'sparsegan', 'sparsegan-normconv', 'random-mask-d5',
    'normconv-d5', 'random-mask-d10', 'normconv-d10',
    'sparse-mp4', 'sparse-mp4-paper', 'interp-linear', 'interp-copy',
    'bottleneck-ae',
)
CODEC_REDUCERS = (
    'x264-crf23', 'x264-crf28', 'x264-crf33', 'x264-crf38', 'x264-crf43',
    'x264-crf48',
    'x265-crf25', 'x265-crf30', 'x265-crf35',
    'av1-crf35', 'av1-crf45', 'av1-crf55', 'av1-crf63',
    'x264-crf3-444', 'x264-crf4-444',
)
DEFAULT_REDUCERS = METHOD_REDUCERS + CODEC_REDUCERS


@dataclasses.dataclass(frozen=True)
class ClipSpec:
  """How clips are cut before reduction."""

  frames: int = 16
  start: int = 0
  size: int | None = 112   # short side, then centre crop; None = native

  def load(self, path) -> tuple[np.ndarray, float]:
    """``(uint8 [T, H, W, 3], fps)`` of ``path`` (:func:`jaxvr.video.read_clip`)."""
    return video.read_clip(path, self.frames, start=self.start, size=self.size)


def clip_name(path) -> str:
  return pathlib.Path(path).stem


def _clip_sha256(path: str) -> str:
  try:
    return video.file_sha256(path)
  except OSError:
    return 'unreadable:' + str(pathlib.Path(path).resolve())


def _clip_identities(paths: list[str],
                     indices: list[int]) -> list[tuple[str, str, str]]:
  """``(path, sha256, display name)`` of clips ``indices`` of ``paths``.

  The name is the file stem, made unique among all ``paths`` by a content
  prefix; so a shard names its clips as a run over every clip does.
  """
  stems = [clip_name(p) for p in paths]
  out = []
  for i in indices:
    sha = _clip_sha256(paths[i])
    name = stems[i] if stems.count(stems[i]) == 1 else f'{stems[i]}-{sha[:8]}'
    out.append((paths[i], sha, name))
  return out


RESULTS_FILE = 'results.jsonl'


def parse_shard(text: str) -> tuple[int, int]:
  """``'i/N'`` -> ``(i, N)`` with ``0 <= i < N``.

  Raises:
    ConfigError: for anything else.
  """
  try:
    index, count = (int(x) for x in str(text).split('/'))
  except ValueError:
    index = count = -1
  if not 0 <= index < count:
    raise errors.ConfigError(
        f'shard: expected I/N with 0 <= I < N (e.g. 0/4), got {text!r}')
  return index, count


def results_file(shard: tuple[int, int] | None) -> str:
  """The results log of ``shard`` (``results.jsonl`` for a whole run)."""
  if shard is None:
    return RESULTS_FILE
  return f'results.shard-{shard[0]}-of-{shard[1]}.jsonl'


def row_key(clip_sha256: str, spec: ClipSpec, reducer: str,
            metric_names) -> str:
  """The identity of a result row (see the module docstring)."""
  return json.dumps([clip_sha256, spec.frames, spec.start, spec.size,
                     reducer, sorted(metric_names)])


def _read_rows(results_path: pathlib.Path) -> tuple[dict, dict]:
  """Rows of a results log by identity: ``(finished, failed)``.

  Failed rows (with an ``error``) are not finished: a rerun retries them.
  """
  rows, failed, torn = {}, {}, 0
  if results_path.exists():
    for line in results_path.read_text().splitlines():
      if not line.strip():
        continue
      try:
        row = json.loads(line)
      except json.JSONDecodeError:
        torn += 1
        continue
      if 'key' not in row:
        continue
      if 'error' in row:
        failed[row['key']] = row
      else:
        rows[row['key']] = row
        failed.pop(row['key'], None)
  if torn:
    print(f'{results_path}: skipped {torn} unreadable line(s) (a run was '
          f'interrupted mid-write); those pairs are run again',
          file=sys.stderr)
  return rows, failed


_NULL_REASONS = {
    'inf': 'infinite: the reconstruction equals the original',
    'nan': 'undefined for this clip (e.g. ST-RRED needs frames of >= 72 px)',
}


def strict_row(row: dict) -> dict:
  """``row`` with non-finite numbers as None, reasons under ``null_reasons``."""
  out, reasons = {}, dict(row.get('null_reasons', {}))
  for k, v in row.items():
    if isinstance(v, float) and not math.isfinite(v):
      out[k] = None
      reasons[k] = _NULL_REASONS['nan' if math.isnan(v) else 'inf']
    else:
      out[k] = v
  if reasons:
    out['null_reasons'] = reasons
  return out


def _append(results_path: pathlib.Path, row: dict) -> None:
  files.append_line(results_path, json.dumps(strict_row(row), default=float,
                                            allow_nan=False))


def run_one(reducer: reducers.Reducer, frames: np.ndarray, fps: float,
            metric_names=evaluation.ALL_METRICS) -> tuple[dict, np.ndarray, reducers.Payload]:
  """Encodes, decodes and measures one reducer on one clip."""
  t0 = time.perf_counter()
  payload = reducer.encode(frames, fps)
  t1 = time.perf_counter()
  out = reducer.decode(payload)
  t2 = time.perf_counter()
  if out.shape != frames.shape or out.dtype != np.uint8:
    raise errors.ShapeError(
        f'{reducer.name}: decoded {out.dtype} {out.shape}, expected uint8 {frames.shape}')
  t, h, w, _ = frames.shape
  row = {'bytes': payload.size, 'bpp': 8.0 * payload.size / (t * h * w),
         'encode_s': t1 - t0, 'decode_s': t2 - t1}
  row.update(evaluation.measure_quality(frames, out, metric_names))
  for group, idx in reducer.frame_groups(t).items():
    if len(idx):
      row[f'psnr_{group}'] = evaluation.measure_quality(
          frames[idx], out[idx], ('psnr',))['psnr']
  row.update({f'meta_{k}': v for k, v in payload.meta.items()
              if isinstance(v, int | float | str)})
  return row, out, payload


def compare(clips, out_dir, *, reducer_names=DEFAULT_REDUCERS,
            spec: ClipSpec = ClipSpec(), metric_names=evaluation.ALL_METRICS,
            save_outputs: bool = True, progress: bool = True,
            shard: tuple[int, int] | None = None) -> list[dict]:
  """Runs every reducer on every clip; returns this invocation's rows.

  Args:
    clips: video paths.
    out_dir: where ``results.jsonl`` and per-clip outputs go.
    reducer_names: registered reducer names (see ``jaxvr.reducers.available``).
    spec: frames and working resolution.
    metric_names: metrics of ``jaxvr.evaluation.measure_quality``.
    save_outputs: keep each decoded clip as ``outputs/<clip>/<reducer>.npz``
      for figures.
    progress: progress bars.
    shard: ``(i, N)`` to run only clips ``i, i + N, ...`` into
      ``results.shard-<i>-of-<N>.jsonl`` (no tables: :func:`merge` writes
      them once every shard is done); None runs every clip.

  Returns:
    One row per (clip, reducer) in clip then reducer order; a failed pair
    has an ``error`` field (a clip that fails to load gives one row with
    reducer ``'*'``). Non-finite metrics are None (see :func:`strict_row`).
  """
  # Unknown names fail before the output folder exists.
  built = {name: reducers.create(name) for name in reducer_names}
  out_dir = pathlib.Path(out_dir)
  out_dir.mkdir(parents=True, exist_ok=True)
  results_path = out_dir / results_file(shard)
  done, _ = _read_rows(results_path)
  metric_names = tuple(metric_names)
  clips = [str(c) for c in clips]
  mine = list(range(len(clips)))
  if shard is not None:
    mine = mine[shard[0]::shard[1]]
  rows: list[dict] = []
  bar = tqdm(total=len(mine) * len(built), desc='compare', unit='run',
             disable=not progress)
  for path, sha, name in _clip_identities(clips, mine):
    keys = {r: row_key(sha, spec, r, metric_names) for r in built}
    todo = [r for r in built if keys[r] not in done]
    finished = [done[keys[r]] for r in built if keys[r] in done]
    bar.update(len(built) - len(todo))
    if not todo:
      rows += finished
      continue
    try:
      frames, fps = spec.load(path)
    except errors.JaxvrError as err:
      rows += finished
      # Logged (and retried by a rerun) so that a merge sees it too.
      row = {'key': row_key(sha, spec, '*', metric_names), 'clip': name,
             'clip_path': path, 'reducer': '*', 'error': str(err)}
      _append(results_path, row)
      rows.append(row)
      bar.update(len(todo))
      continue
    clip_dir = out_dir / 'outputs' / name
    if save_outputs:
      files.save_npz(clip_dir / 'original.npz', compressed=True, video=frames)
    for rname in built:
      if keys[rname] in done:
        rows.append(done[keys[rname]])
        continue
      bar.set_postfix_str(f'{name}: {rname}')
      reducer = built[rname]
      base = {'key': keys[rname], 'clip': name, 'clip_path': path,
              'clip_sha256': sha, 'reducer': rname,
              'frames': frames.shape[0], 'height': frames.shape[1],
              'width': frames.shape[2], 'fps': fps}
      try:
        row, out, _ = run_one(reducer, frames, fps, metric_names)
        if save_outputs:
          extras = {k: np.asarray(v) for k, v in reducer.extras().items()}
          files.save_npz(clip_dir / f'{rname}.npz', compressed=True,
                         video=out, **extras)
      except errors.JaxvrError as err:
        row = {'error': str(err)}
      row = strict_row({**base, **row})
      _append(results_path, row)
      rows.append(row)
      bar.update(1)
  bar.close()
  if shard is None:
    write_tables(rows, out_dir)
  return rows


def merge(clips, out_dir, *, reducer_names=DEFAULT_REDUCERS,
          spec: ClipSpec = ClipSpec(),
          metric_names=evaluation.ALL_METRICS) -> list[dict]:
  """The rows a single run over ``clips`` returns, from every shard's log.

  Reads ``results.jsonl`` and every ``results.shard-*.jsonl`` of
  ``out_dir``, takes for each (clip, reducer) of the arguments its finished
  row (else its failed one), and writes ``results.json`` / ``results.csv``.
  Nothing is run.

  Returns:
    The rows, in the order and with the content :func:`compare` gives.

  Raises:
    IncompleteResultsError: if some (clip, reducer) has no row yet.
  """
  out_dir = pathlib.Path(out_dir)
  done, failed = {}, {}
  for path in sorted(out_dir.glob('results*.jsonl')):
    finished, errs = _read_rows(path)
    failed.update(errs)
    done.update(finished)
  metric_names = tuple(metric_names)
  clips = [str(c) for c in clips]
  rows, missing = [], []
  for _, sha, name in _clip_identities(clips, list(range(len(clips)))):
    keys = [row_key(sha, spec, r, metric_names) for r in reducer_names]
    clip_error = failed.get(row_key(sha, spec, '*', metric_names))
    for rname, key in zip(reducer_names, keys, strict=True):
      if key in done:
        rows.append(done[key])
      elif key in failed and clip_error is None:
        rows.append(failed[key])
      elif clip_error is None:
        missing.append(f'{name} / {rname}')
    if clip_error is not None and any(k not in done for k in keys):
      rows.append(clip_error)
  if missing:
    raise errors.IncompleteResultsError(
        f'{out_dir}: {len(missing)} (clip, reducer) pairs have no result yet '
        f'(first: {missing[0]}); finish every shard with the same clips and '
        f'settings, then merge')
  write_tables(rows, out_dir)
  return rows


def saved_output(out_dir, clip: str, reducer: str
                 ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
  """A decoded clip kept by :func:`compare` (``save_outputs=True``).

  Args:
    out_dir: the folder given to :func:`compare`.
    clip: the row's ``clip`` name.
    reducer: the row's reducer name, or ``'original'`` for the cut clip.

  Returns:
    ``(video, extras)``: uint8 ``[T, H, W, 3]`` and the reducer's extras
    (e.g. ``mask``, ``significance``).

  Raises:
    FileNotFoundError: no saved output for that clip and reducer.
  """
  path = pathlib.Path(out_dir) / 'outputs' / clip / f'{reducer}.npz'
  with np.load(path) as z:
    return z['video'], {k: z[k] for k in z.files if k != 'video'}


def run(clips, out_dir, *, shard: tuple[int, int] | None = None,
        merge_only: bool = False, **kwargs) -> list[dict] | None:
  """``jaxvr compare``: one whole run, one shard, a merge, or N processes.

  - ``merge_only``: :func:`merge` the logs already in ``out_dir``;
  - ``shard=(i, N)``: run shard ``i`` only (independent jobs; merge later);
  - in a multi-process run of JAX's distributed runtime (and no ``shard``),
    process ``p`` of ``P`` runs shard ``(p, P)`` on its own devices, all
    wait for each other, and process 0 merges;
  - otherwise every clip, as :func:`compare`.

  Args:
    clips, out_dir: as :func:`compare`.
    shard: ``(i, N)``, see :func:`parse_shard`.
    merge_only: only merge.
    **kwargs: ``reducer_names``, ``spec``, ``metric_names`` (identify the
      rows, so the merge must get the same), ``save_outputs``, ``progress``.

  Returns:
    The rows of every clip, or None on a process that ran only a shard.
  """
  from jaxvr import sharding

  merge_kw = {k: kwargs[k] for k in ('reducer_names', 'spec', 'metric_names')
              if k in kwargs}
  if merge_only:
    return merge(clips, out_dir, **merge_kw)
  if shard is not None:
    compare(clips, out_dir, shard=shard, **kwargs)
    return None
  if jax.process_count() == 1:
    return compare(clips, out_dir, **kwargs)
  with sharding.process_local():
    compare(clips, out_dir, shard=(jax.process_index(), jax.process_count()),
            **kwargs)
  sharding.sync_processes('jaxvr compare: every shard done')
  if not sharding.is_main_process():
    return None
  return merge(clips, out_dir, **merge_kw)


def write_tables(rows: list[dict], out_dir) -> None:
  """Writes ``results.json`` and ``results.csv`` atomically."""
  from jaxvr.report import tables

  out_dir = pathlib.Path(out_dir)
  rows = [strict_row(r) for r in rows]
  files.write_text(out_dir / 'results.json',
                   json.dumps(rows, indent=1, default=float, allow_nan=False))
  files.write_text(out_dir / 'results.csv', tables.to_csv(rows))
