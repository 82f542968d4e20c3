"""Run reducers on clips, measure them, and keep the results resumable.

``compare`` loads each clip at the working resolution, runs every chosen
reducer (encode -> real bytes -> decode), measures the reconstruction
against the original and appends one JSON line per (clip, reducer) to
``results.jsonl`` as soon as it is known. A rerun skips the pairs already
there, so an interrupted run resumes where it stopped. A clip that cannot
be decoded gets an error row and the other clips go on.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import time

import numpy as np
from tqdm.auto import tqdm

from jaxvr import errors, evaluation, reducers, video
from jaxvr.video.io import atomic_write
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
    'x264-crf23', 'x264-crf28', 'x264-crf33', 'x264-crf38',
    'x265-crf25', 'x265-crf30', 'x265-crf35',
    'av1-crf35', 'av1-crf45', 'av1-crf55',
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


def _done(results_path: pathlib.Path) -> dict[tuple[str, str], dict]:
  rows = {}
  if results_path.exists():
    for line in results_path.read_text().splitlines():
      if line.strip():
        row = json.loads(line)
        rows[(row['clip'], row['reducer'])] = row
  return rows


def _append(results_path: pathlib.Path, row: dict) -> None:
  with open(results_path, 'a') as f:
    f.write(json.dumps(row, default=float) + '\n')
    f.flush()
    os.fsync(f.fileno())


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
  row.update({f'meta_{k}': v for k, v in payload.meta.items()
              if isinstance(v, int | float | str)})
  return row, out, payload


def compare(clips, out_dir, *, reducer_names=DEFAULT_REDUCERS,
            spec: ClipSpec = ClipSpec(), metric_names=evaluation.ALL_METRICS,
            save_outputs: bool = True, progress: bool = True) -> list[dict]:
  """Runs every reducer on every clip; returns all result rows.

  Args:
    clips: video paths.
    out_dir: where ``results.jsonl`` and per-clip outputs go.
    reducer_names: registered reducer names (see ``jaxvr.reducers.available``).
    spec: frames and working resolution.
    metric_names: metrics of ``jaxvr.evaluation.measure_quality``.
    save_outputs: keep each decoded clip as ``outputs/<clip>/<reducer>.npz``
      for figures.
    progress: progress bars.
  """
  out_dir = pathlib.Path(out_dir)
  out_dir.mkdir(parents=True, exist_ok=True)
  results_path = out_dir / 'results.jsonl'
  done = _done(results_path)
  built = {name: reducers.create(name) for name in reducer_names}
  bar = tqdm(total=len(clips) * len(built), desc='compare', unit='run',
             disable=not progress)
  for path in clips:
    name = clip_name(path)
    todo = [r for r in built if (name, r) not in done]
    bar.update(len(built) - len(todo))
    if not todo:
      continue
    try:
      frames, fps = spec.load(path)
    except errors.JaxvrError as err:
      row = {'clip': name, 'reducer': '*', 'error': str(err)}
      if (name, '*') not in done:
        _append(results_path, row)
        done[(name, '*')] = row
      bar.update(len(todo))
      continue
    clip_dir = out_dir / 'outputs' / name
    if save_outputs:
      clip_dir.mkdir(parents=True, exist_ok=True)
      np.savez_compressed(clip_dir / 'original.npz', video=frames)
    for rname in todo:
      bar.set_postfix_str(f'{name}: {rname}')
      reducer = built[rname]
      base = {'clip': name, 'reducer': rname, 'frames': frames.shape[0],
              'height': frames.shape[1], 'width': frames.shape[2], 'fps': fps}
      try:
        row, out, _ = run_one(reducer, frames, fps, metric_names)
        if save_outputs:
          extras = {k: np.asarray(v) for k, v in reducer.extras().items()}
          tmp = clip_dir / f'.{rname}.tmp.npz'
          np.savez_compressed(tmp, video=out, **extras)
          os.replace(tmp, clip_dir / f'{rname}.npz')
      except errors.JaxvrError as err:
        row = {'error': str(err)}
      row = {**base, **row}
      _append(results_path, row)
      done[(name, rname)] = row
      bar.update(1)
  bar.close()
  rows = list(done.values())
  write_tables(rows, out_dir)
  return rows


def write_tables(rows: list[dict], out_dir) -> None:
  """Writes ``results.json`` and ``results.csv`` atomically."""
  from jaxvr.report import tables

  out_dir = pathlib.Path(out_dir)
  atomic_write(out_dir / 'results.json',
                json.dumps(rows, indent=1, default=float).encode())
  atomic_write(out_dir / 'results.csv', tables.to_csv(rows).encode())
