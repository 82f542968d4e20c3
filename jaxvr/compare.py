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
"""

from __future__ import annotations

import dataclasses
import json
import math
import pathlib
import sys
import time

import numpy as np
from tqdm.auto import tqdm

from jaxvr import errors, evaluation, files, reducers, video
from jaxvr.video.transforms import resize_short_side_pil

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
    info = video.probe_video(path)
    frames = video.read_video(path, max_frames=self.frames, start=self.start)
    if self.size:
      frames = resize_short_side_pil(frames, self.size)
      frames = np.asarray(video.center_crop(frames, (self.size, self.size)))
    return frames, (info.fps or 24.0)


def clip_name(path) -> str:
  return pathlib.Path(path).stem


def _clip_names(paths: list[str], hashes: list[str]) -> list[str]:
  """Display names: the file stem, made unique by a content prefix."""
  stems = [clip_name(p) for p in paths]
  return [s if stems.count(s) == 1 else f'{s}-{h[:8]}'
          for s, h in zip(stems, hashes, strict=True)]


def row_key(clip_sha256: str, spec: ClipSpec, reducer: str,
            metric_names) -> str:
  """The identity of a result row (see the module docstring)."""
  return json.dumps([clip_sha256, spec.frames, spec.start, spec.size,
                     reducer, sorted(metric_names)])


def _done(results_path: pathlib.Path) -> dict[str, dict]:
  """Finished rows of earlier runs by identity (failed rows are not done)."""
  rows, torn = {}, 0
  if results_path.exists():
    for line in results_path.read_text().splitlines():
      if not line.strip():
        continue
      try:
        row = json.loads(line)
      except json.JSONDecodeError:
        torn += 1
        continue
      if 'key' in row and 'error' not in row:
        rows[row['key']] = row
  if torn:
    print(f'{results_path}: skipped {torn} unreadable line(s) (a run was '
          f'interrupted mid-write); those pairs are run again',
          file=sys.stderr)
  return rows


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
            save_outputs: bool = True, progress: bool = True) -> list[dict]:
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

  Returns:
    One row per (clip, reducer) in clip then reducer order; a failed pair
    has an ``error`` field (a clip that fails to load gives one row with
    reducer ``'*'``). Non-finite metrics are None (see :func:`strict_row`).
  """
  # Unknown names fail before the output folder exists.
  built = {name: reducers.create(name) for name in reducer_names}
  out_dir = pathlib.Path(out_dir)
  out_dir.mkdir(parents=True, exist_ok=True)
  results_path = out_dir / 'results.jsonl'
  done = _done(results_path)
  metric_names = tuple(metric_names)
  clips = [str(c) for c in clips]
  hashes = []
  for path in clips:
    try:
      hashes.append(video.file_sha256(path))
    except OSError:
      hashes.append('unreadable:' + str(pathlib.Path(path).resolve()))
  names = _clip_names(clips, hashes)
  rows: list[dict] = []
  bar = tqdm(total=len(clips) * len(built), desc='compare', unit='run',
             disable=not progress)
  for path, sha, name in zip(clips, hashes, names, strict=True):
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
      rows.append({'clip': name, 'clip_path': path, 'reducer': '*',
                   'error': str(err)})
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


def write_tables(rows: list[dict], out_dir) -> None:
  """Writes ``results.json`` and ``results.csv`` atomically."""
  from jaxvr.report import tables

  out_dir = pathlib.Path(out_dir)
  rows = [strict_row(r) for r in rows]
  files.write_text(out_dir / 'results.json',
                   json.dumps(rows, indent=1, default=float, allow_nan=False))
  files.write_text(out_dir / 'results.csv', tables.to_csv(rows))
