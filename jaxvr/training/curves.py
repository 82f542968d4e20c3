"""Training and validation curves of a run folder, as a small PNG.

Reads ``<workdir>/metrics.jsonl`` (training windows) and
``<workdir>/validation.jsonl`` (validation every ``eval_every`` steps) and
draws one panel per chosen metric: the training metric on the left, the
validation metrics on the right, with any ``floor_*`` metric drawn as a
dashed line beside the metric it is the floor of.
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Sequence

from jaxvr import files
from jaxvr.errors import ConfigError
from jaxvr.training import writers


def _series(records: list[dict], name: str) -> tuple[list[int], list[float]]:
  steps, values = [], []
  for r in records:
    value = r.get('metrics', {}).get(name)
    if value is not None:
      steps.append(int(r['step']))
      values.append(float(value))
  return steps, values


def plot_run(workdir: str | os.PathLike, out: str | os.PathLike, *,
             train_metric: str = 'loss',
             val_metrics: Sequence[str] = ('psnr',),
             title: str = '') -> pathlib.Path:
  """Draws a run's curves to ``out`` (PNG, about 700x260 px).

  Args:
    workdir: the run folder.
    out: PNG path.
    train_metric: a metric of ``metrics.jsonl``.
    val_metrics: metrics of ``validation.jsonl``; for each ``m``, a
      ``floor_m`` metric is drawn dashed beside it when present.
    title: figure title.

  Raises:
    ConfigError: if the run has no record of the requested metrics.
  """
  from matplotlib.figure import Figure  # no pyplot, no global backend
  workdir = pathlib.Path(workdir)
  train = writers.read_jsonl(workdir / 'metrics.jsonl')
  val = writers.read_jsonl(workdir / 'validation.jsonl')
  ts, tv = _series(train, train_metric)
  if not ts and not any(_series(val, m)[0] for m in val_metrics):
    raise ConfigError(f'{workdir}: no records of {train_metric!r} or '
                      f'{list(val_metrics)}')
  fig = Figure(figsize=(7.0, 2.6), dpi=100)
  ax_t, ax_v = fig.subplots(1, 2)
  ax_t.plot(ts, tv, lw=1)
  ax_t.set_xlabel('step')
  ax_t.set_ylabel(f'train {train_metric}')
  for m in val_metrics:
    s, v = _series(val, m)
    line, = ax_v.plot(s, v, marker='o', ms=3, lw=1, label=f'val {m}')
    fs, fv = _series(val, f'floor_{m}')
    if fs:
      ax_v.plot(fs, fv, ls='--', lw=1, color=line.get_color(),
                label=f'floor {m}')
  ax_v.set_xlabel('step')
  ax_v.legend(fontsize=7)
  for ax in (ax_t, ax_v):
    ax.grid(alpha=0.3)
    ax.tick_params(labelsize=7)
  if title:
    fig.suptitle(title, fontsize=9)
  fig.tight_layout()
  out = pathlib.Path(out)
  with files.atomic_open(out) as f:
    fig.savefig(f, format='png')
  return out
