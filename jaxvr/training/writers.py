"""Where training logs go: one writer interface, JSONL and TensorBoard.

A trainer logs two streams through the same calls: training scalars (every
``log_every`` steps) and validation results (every ``eval_every`` steps:
scalars plus a few image grids). :class:`JsonlWriter` appends one JSON
record per call to a file in the run folder (the format :func:`read_jsonl`
reads back); :class:`TensorBoardWriter` writes event files with
``tensorboardX`` (the ``tensorboard`` extra), scalars under
``<stream>/<name>`` and images as ``[H, W, 3]`` uint8 grids.

Resumed runs call :meth:`JsonlWriter.truncate_after` with the restored step,
so records of steps that were computed but never saved (the run died between
checkpoints) are dropped and the file equals an uninterrupted run's.
"""

from __future__ import annotations

import json
import math
import os
import pathlib
from collections.abc import Mapping, Sequence
from typing import Protocol

import numpy as np

from jaxvr import files
from jaxvr.errors import ConfigError


class Writer(Protocol):
  """What the training loop writes through."""

  def scalars(self, step: int, values: Mapping[str, float]) -> None: ...

  def images(self, step: int, grids: Mapping[str, np.ndarray]) -> None: ...

  def flush(self) -> None: ...


def _finite_or_none(value: float) -> float | None:
  value = float(value)
  return value if math.isfinite(value) else None


def _step_of(line: str) -> int | None:
  try:
    return int(json.loads(line)['step'])
  except (ValueError, KeyError, TypeError):
    return None


class JsonlWriter:
  """Scalars as JSON lines ``{"step": s, "metrics": {...}}``; no images.

  Args:
    path: the ``.jsonl`` file (its folder is created).
  """

  def __init__(self, path: str | os.PathLike):
    self.path = pathlib.Path(path)
    self.path.parent.mkdir(parents=True, exist_ok=True)

  def truncate_after(self, step: int) -> None:
    """Drops records past ``step`` and cut-off lines (atomic rewrite)."""
    if not self.path.exists():
      return
    lines = self.path.read_text().splitlines()
    kept = [ln for ln in lines
            if (s := _step_of(ln)) is not None and s <= step]
    if len(kept) != len(lines):
      files.write_text(self.path, ''.join(ln + '\n' for ln in kept))

  def record(self, record: Mapping) -> None:
    """Appends one record (a JSON object with a ``step`` field)."""
    files.append_line(self.path, json.dumps(record, allow_nan=False))

  def scalars(self, step: int, values: Mapping[str, float]) -> None:
    self.record({'step': int(step), 'metrics': {
        k: _finite_or_none(v) for k, v in values.items()}})

  def images(self, step: int, grids: Mapping[str, np.ndarray]) -> None:
    del step, grids   # JSONL holds scalars only.

  def flush(self) -> None:
    pass


class TensorBoardWriter:
  """TensorBoard event files via ``tensorboardX``.

  Args:
    logdir: the event folder (e.g. ``<workdir>/tb``).
    prefix: tag prefix, e.g. ``'train'`` or ``'val'``.

  Raises:
    ConfigError: if ``tensorboardX`` is not installed.
  """

  def __init__(self, logdir: str | os.PathLike, prefix: str):
    try:
      import tensorboardX
    except ImportError as e:
      raise ConfigError(
          'config.tensorboard: needs the tensorboardX package (pip install '
          '"jaxvr[tensorboard]"), or set config.tensorboard=False') from e
    self._w = tensorboardX.SummaryWriter(str(logdir))
    self.prefix = prefix

  def scalars(self, step: int, values: Mapping[str, float]) -> None:
    for name, value in values.items():
      if math.isfinite(float(value)):
        self._w.add_scalar(f'{self.prefix}/{name}', float(value), int(step))

  def images(self, step: int, grids: Mapping[str, np.ndarray]) -> None:
    for name, grid in grids.items():
      self._w.add_image(f'{self.prefix}/{name}', np.asarray(grid), int(step),
                        dataformats='HWC')

  def flush(self) -> None:
    self._w.flush()


class Writers:
  """Fans each call out to several writers."""

  def __init__(self, writers: Sequence[Writer]):
    self.writers = list(writers)

  def scalars(self, step: int, values: Mapping[str, float]) -> None:
    for w in self.writers:
      w.scalars(step, values)

  def images(self, step: int, grids: Mapping[str, np.ndarray]) -> None:
    for w in self.writers:
      w.images(step, grids)

  def flush(self) -> None:
    for w in self.writers:
      w.flush()


def read_jsonl(path: str | os.PathLike) -> list[dict]:
  """The complete records of a JSONL log, in order (cut-off lines skipped)."""
  path = pathlib.Path(path)
  if not path.exists():
    return []
  out = []
  for line in path.read_text().splitlines():
    if _step_of(line) is not None:
      out.append(json.loads(line))
  return out


def image_grid(rows: Sequence[np.ndarray], gap: int = 2) -> np.ndarray:
  """Tiles rows of frames into one uint8 ``[H, W, 3]`` picture.

  Args:
    rows: each ``[N, h, w, C]`` (C = 1 or 3), floats in [0, 1] or uint8;
      rows may have different N (short rows are padded with white).
    gap: white pixels between tiles.
  """
  rows = [np.asarray(r) for r in rows]
  as_u8 = []
  for r in rows:
    if r.dtype != np.uint8:
      r = np.clip(np.round(np.asarray(r, np.float32) * 255), 0, 255)
      r = r.astype(np.uint8)
    if r.shape[-1] == 1:
      r = np.repeat(r, 3, axis=-1)
    as_u8.append(r)
  n = max(r.shape[0] for r in as_u8)
  h, w = as_u8[0].shape[1:3]
  out = np.full((len(as_u8) * (h + gap) - gap, n * (w + gap) - gap, 3), 255,
                np.uint8)
  for i, r in enumerate(as_u8):
    for j, tile in enumerate(r):
      out[i * (h + gap):i * (h + gap) + h, j * (w + gap):j * (w + gap) + w] = (
          tile[:h, :w])
  return out
