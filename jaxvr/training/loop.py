"""The shared training loop: steps, logs, NaN guard, checkpoints, preemption.

Every jaxvr trainer builds its state, its jitted step and its data iterator,
then hands them to :func:`train_loop`, which

- runs ``train_step(state, batch) -> (state, metrics)`` from the start step
  to ``config.total_steps`` with a progress bar;
- keeps the per-step metrics on device and pulls them to the host only every
  ``config.log_every`` steps, averaging each window into one JSONL record of
  ``<workdir>/metrics.jsonl``;
- raises :class:`~jaxvr.errors.TrainingDivergedError` as soon as a pulled
  metric is NaN or infinite. Metrics are always pulled and checked before a
  save, so a diverged state is never written;
- saves every ``config.ckpt_every`` steps and at the end, together with the
  data position and the config;
- on SIGTERM (preemption), finishes the running step, saves and returns;
- every ``config.eval_every`` steps (and at step 0 and the end), calls the
  trainer's ``evaluate(state) -> (scalars, images)`` on the validation clips
  and writes the result to ``<workdir>/validation.jsonl`` (and, with
  ``config.tensorboard``, to TensorBoard under ``<workdir>/tb``, where the
  training scalars go too).

A resumed run keeps its promise to continue the same training: if the
config differs from the one saved with the checkpoint in a field that
changes what is trained (anything outside :data:`RESUME_FREE_FIELDS`:
``total_steps``, the learning-rate schedule, batch size, model shape, data
settings, ...), or the data iterator was built from other clips (the data
state records the clip list, names and sha256), :func:`restore_or_init`
refuses with a :class:`~jaxvr.errors.ConfigError` naming every differing
field, old -> new. ``--config.allow_config_change=True`` resumes anyway
(and logs the changes).

On SIGTERM every trainer saves the current step and stops without writing
its export; :func:`finish` prints which (rerun the command to resume).

Exact resume rests on two rules the trainers follow: the step's randomness
comes from ``jax.random.fold_in(key, step)`` (never a key split and carried),
and the data iterator's position is saved and restored. A resumed run then
produces the same metrics and parameters as an uninterrupted one.

The data iterator is any iterator of numpy batch pytrees that also has
``get_state() -> dict`` and ``set_state(dict)``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import pathlib
import signal
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import jax
import numpy as np
import tqdm

from jaxvr import checkpoint as ckpt_lib
from jaxvr import files
from jaxvr import sharding as shard_lib
from jaxvr.errors import ConfigError, TrainingDivergedError
from jaxvr.training import writers as writers_lib

METRICS_FILE = 'metrics.jsonl'
VALIDATION_FILE = 'validation.jsonl'
TENSORBOARD_DIR = 'tb'
CONFIG_FILE = 'config.json'
CKPT_DIR = 'ckpt'

#: Config fields that may differ from the checkpoint's when a run resumes.
#: They change how the run is logged, checkpointed, validated, compiled or
#: spread over devices, or where the same clips are found (the clip list
#: itself is checked by content), not what is trained.
RESUME_FREE_FIELDS = (
    'allow_config_change', 'log_every', 'eval_every', 'tensorboard',
    'ckpt_every', 'keep_ckpts', 'ckpt.every', 'ckpt.keep', 'n_devices',
    'fast_compile', 'remat', 'model.remat', 'data.clips_dir', 'data.val_dir',
    'data.val_size', 'data.val_frames', 'data.cache_dir', 'data.num_workers',
)
#: The config field that lets a run resume with a changed config.
OVERRIDE_FIELD = 'allow_config_change'

StepFn = Callable[[Any, Any], tuple[Any, dict]]
StepCallback = Callable[[int, Any, dict], None]
# evaluate(state) -> ({name: float}, {name: uint8 [H, W, 3] grid})
EvalFn = Callable[[Any], tuple[dict, dict]]


class DataIterator(Protocol):
  """What the loop needs from a data source."""

  def __next__(self) -> Any: ...

  def get_state(self) -> dict: ...

  def set_state(self, state: dict, *, allow_changes: bool = False) -> None:
    ...


@dataclasses.dataclass
class LoopResult:
  """What :func:`train_loop` returns.

  Attributes:
    state: the final state (on device).
    step: the number of completed steps.
    preempted: True if the loop stopped early on SIGTERM (after saving).
    last_metrics: the last logged window's averaged metrics.
  """
  state: Any
  step: int
  preempted: bool
  last_metrics: dict


def _config_int(config: Any, name: str, minimum: int) -> int:
  value = getattr(config, name, None)
  if value is None or int(value) != value or int(value) < minimum:
    raise ConfigError(
        f'config.{name}: expected an integer >= {minimum}, got {value!r}')
  return int(value)


def open_checkpointer(workdir: str | os.PathLike,
                      config: Any) -> ckpt_lib.Checkpointer:
  """The checkpointer of a run: ``<workdir>/ckpt``, keeping ``keep_ckpts``."""
  keep = _config_int(config, 'keep_ckpts', 1)
  return ckpt_lib.Checkpointer(pathlib.Path(workdir) / CKPT_DIR,
                               max_to_keep=keep)


def _flatten(tree: Any, prefix: str = '') -> dict[str, Any]:
  if not isinstance(tree, dict):
    return {prefix: tree}
  out = {}
  for key, value in tree.items():
    out.update(_flatten(value, f'{prefix}.{key}' if prefix else str(key)))
  return out


def config_changes(saved: Any, current: Any,
                   free: Sequence[str] = RESUME_FREE_FIELDS) -> list[str]:
  """The fields that differ between two configs, outside ``free``.

  Args:
    saved, current: configs (ConfigDict, dataclass or mapping; compared as
      their JSON form, see ``checkpoint.to_json_dict``).
    free: dotted field names (and sections) that may differ.

  Returns:
    ``['optim.blr: 0.001 -> 0.002', ...]`` in field order; a field present
    on one side only shows as ``(absent)`` on the other.
  """
  old = _flatten(ckpt_lib.to_json_dict(saved))
  new = _flatten(ckpt_lib.to_json_dict(current))
  absent = '(absent)'
  changes = []
  for name in sorted(old.keys() | new.keys()):
    if any(name == f or name.startswith(f + '.') for f in free):
      continue
    a, b = old.get(name, absent), new.get(name, absent)
    if a != b:
      changes.append(f'{name}: {json.dumps(a) if a is not absent else a} -> '
                     f'{json.dumps(b) if b is not absent else b}')
  return changes


def _check_resume_config(checkpointer: ckpt_lib.Checkpointer,
                         config: Any) -> bool:
  """Refuses a resume whose config changed; returns whether changes pass."""
  allow = bool(config.get(OVERRIDE_FIELD, False))
  changes = config_changes(checkpointer.restore_config(), config)
  if changes and not allow:
    raise ConfigError(
        f'config: differs from the checkpoint in {checkpointer.directory} '
        f'({"; ".join(changes)}); resume with the same config, use a new '
        f'workdir, or pass --config.{OVERRIDE_FIELD}=True to resume anyway')
  if changes:
    logging.warning('resuming with a changed config (%s=True): %s',
                    OVERRIDE_FIELD, '; '.join(changes))
  return allow


def restore_or_init(checkpointer: ckpt_lib.Checkpointer,
                    init_fn: Callable[[], Any], state_shardings: Any,
                    data: DataIterator | None = None, *,
                    abstract_state: Any = None,
                    config: Any = None) -> tuple[Any, int]:
  """Restores the latest checkpoint, or builds a fresh state.

  The restore target is the abstract state placed with ``state_shardings``
  (the current mesh), so checkpoints move between device counts. Given the
  run's ``config``, a resume whose config differs from the checkpoint's
  outside :data:`RESUME_FREE_FIELDS`, or whose data iterator was built from
  other clips, is refused unless ``config.allow_config_change`` is set.

  Args:
    checkpointer: the run's checkpointer.
    init_fn: builds the initial state (no arguments; close over the key).
      Called as is (it may jit its own parts); the result is placed with
      ``state_shardings``.
    state_shardings: a sharding for every state leaf, or one for all.
    data: the data iterator; its position is restored with the state.
    abstract_state: the state's ``jax.ShapeDtypeStruct`` tree; default
      ``jax.eval_shape(init_fn)`` (pass it when ``init_fn`` cannot be traced).
    config: the run's config (every trainer passes it); None skips the
      check.

  Returns:
    ``(state, step)``, step being 0 for a fresh state.

  Raises:
    ConfigError: the config or the data changed since the checkpoint.
  """
  if checkpointer.latest_step() is None:
    return shard_lib.put_global(init_fn(), state_shardings), 0
  allow = config is not None and _check_resume_config(checkpointer, config)
  if abstract_state is None:
    abstract_state = jax.eval_shape(init_fn)
  target = shard_lib.abstract_with_sharding(abstract_state, state_shardings)
  restored = checkpointer.restore(target)
  if data is not None:
    data.set_state(restored.data_state, allow_changes=allow)
  logging.info('restored step %d from %s', restored.step,
               checkpointer.directory)
  return restored.state, restored.step


class _DropLibraryInfo(logging.Filter):
  """Drops INFO/DEBUG records logged from inside Orbax."""

  def filter(self, record: logging.LogRecord) -> bool:
    return (record.levelno >= logging.WARNING
            or f'{os.sep}orbax{os.sep}' not in record.pathname)


def quiet_library_logs() -> None:
  """Hides Orbax's per-save INFO lines (warnings and errors still show)."""
  absl_logger = logging.getLogger('absl')
  if not any(isinstance(f, _DropLibraryInfo) for f in absl_logger.filters):
    absl_logger.addFilter(_DropLibraryInfo())


class _SigtermFlag:
  """Sets a flag on SIGTERM while active.

  Single-process runs only, from the main thread. With several processes
  JAX's own preemption notifier owns SIGTERM and the loop asks
  ``Checkpointer.reached_preemption`` instead, so that every process stops
  at the same step.
  """

  def __init__(self):
    self.raised = False
    self._previous = None

  def _handle(self, signum, frame):
    del signum, frame
    self.raised = True

  def __enter__(self):
    if (jax.process_count() == 1
        and threading.current_thread() is threading.main_thread()):
      self._previous = signal.signal(signal.SIGTERM, self._handle)
    return self

  def __exit__(self, *exc):
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)


class _MetricsLog:
  """Pending on-device metrics, averaged and written to JSONL on flush."""

  def __init__(self, path: pathlib.Path, start_step: int, write: bool):
    self._file = writers_lib.JsonlWriter(path) if write else None
    self._pending: list[tuple[int, dict]] = []
    self._t0 = time.time()
    self._window_start = time.time()
    self.last: dict = {}
    if self._file is not None:
      # Drops records past the restored step (left by a run that died
      # before saving), so a resumed log equals an uninterrupted one.
      self._file.truncate_after(start_step)

  def add(self, step: int, metrics: dict) -> None:
    self._pending.append((step, metrics))

  def flush(self) -> dict | None:
    """Pulls pending metrics, checks them, writes one averaged record."""
    if not self._pending:
      return None
    steps = [s for s, _ in self._pending]
    values = jax.device_get([m for _, m in self._pending])
    self._pending = []
    for step, metrics in zip(steps, values, strict=True):
      for name, value in metrics.items():
        if not np.all(np.isfinite(value)):
          raise TrainingDivergedError(
              f'metric {name!r} is {value} at step {step}: training '
              f'diverged (the state of this step was not saved)')
    averaged = {
        name: float(np.mean([np.mean(m[name]) for m in values]))
        for name in values[-1]
    }
    now = time.time()
    record = {
        'step': steps[-1],
        'wall_time': now,
        'elapsed_sec': now - self._t0,
        'steps_per_sec': len(steps) / max(now - self._window_start, 1e-9),
        'metrics': averaged,
    }
    self._window_start = now
    if self._file is not None:
      self._file.record(record)
    self.last = averaged
    return record


def _write_config(workdir: pathlib.Path, config: Any) -> None:
  files.write_json(workdir / CONFIG_FILE, ckpt_lib.to_json_dict(config),
                   sort_keys=True)


def train_loop(state: Any, train_step: StepFn, data: DataIterator,
               config: Any, workdir: str | os.PathLike, *,
               mesh: jax.sharding.Mesh,
               checkpointer: ckpt_lib.Checkpointer,
               start_step: int = 0,
               callbacks: Sequence[StepCallback] = (),
               put_batch: Callable[[Any], Any] | None = None,
               evaluate: EvalFn | None = None,
               desc: str = 'train') -> LoopResult:
  """Runs training steps until ``config.total_steps`` (or SIGTERM).

  Args:
    state: the initial or restored state, laid out for ``mesh``.
    train_step: jitted ``(state, batch) -> (state, metrics)``; metrics is a
      flat dict of device scalars. It may donate ``state``.
    data: iterator of numpy batch pytrees with ``get_state``/``set_state``,
      already positioned at ``start_step``.
    config: has ``total_steps``, ``log_every``, ``ckpt_every`` (and
      ``keep_ckpts`` for :func:`open_checkpointer`); saved with every
      checkpoint.
    workdir: run folder; receives ``metrics.jsonl`` and ``config.json``.
    mesh: the training mesh (batches are sharded over its ``data`` axis).
    checkpointer: where checkpoints go.
    start_step: the number of steps ``state`` has already done.
    callbacks: called as ``fn(step, state, metrics)`` after every step, with
      metrics still on device.
    put_batch: turns a host batch into device arrays; default
      ``shard_batch(batch, mesh)``.
    evaluate: the validation function, run every ``config.eval_every``
      steps (absent or 0: never) on every process; process 0 logs it.
    desc: progress bar label.

  Returns:
    The final state and step, and whether the run was preempted.

  Raises:
    TrainingDivergedError: when a metric becomes NaN or infinite; nothing
      from the diverged steps is saved.
  """
  total = _config_int(config, 'total_steps', 0)
  log_every = _config_int(config, 'log_every', 1)
  ckpt_every = _config_int(config, 'ckpt_every', 1)
  if put_batch is None:
    put_batch = lambda b: shard_lib.shard_batch(b, mesh)
  main = shard_lib.is_main_process()
  workdir = pathlib.Path(workdir)
  if main:
    workdir.mkdir(parents=True, exist_ok=True)
    _write_config(workdir, config)
  log = _MetricsLog(workdir / METRICS_FILE, start_step, write=main)
  eval_every = int(config.get('eval_every', 0) or 0) if evaluate else 0
  train_writers, val_writers = [], []
  if main and eval_every:
    val_jsonl = writers_lib.JsonlWriter(workdir / VALIDATION_FILE)
    val_jsonl.truncate_after(start_step)
    val_writers.append(val_jsonl)
  if main and config.get('tensorboard', False):
    tb = workdir / TENSORBOARD_DIR
    train_writers.append(writers_lib.TensorBoardWriter(tb, 'train'))
    val_writers.append(writers_lib.TensorBoardWriter(tb, 'val'))
  train_log = writers_lib.Writers(train_writers)
  val_log = writers_lib.Writers(val_writers)
  step = int(start_step)
  last_saved = checkpointer.latest_step()

  def validate() -> dict:
    scalars, images = evaluate(state)
    scalars = {k: float(v) for k, v in scalars.items()}
    val_log.scalars(step, scalars)
    val_log.images(step, images)
    val_log.flush()
    return scalars

  def save() -> None:
    nonlocal last_saved
    log.flush()  # Raises before saving if anything diverged.
    if last_saved == step:
      return
    checkpointer.save(step, state, data_state=data.get_state(), config=config)
    last_saved = step

  preempted = False
  bar = tqdm.tqdm(total=total, initial=step, desc=desc, disable=not main,
                  dynamic_ncols=True, leave=False)
  try:
    if eval_every and step == 0:
      validate()
    with _SigtermFlag() as sigterm:
      while step < total:
        batch = put_batch(next(data))
        state, metrics = train_step(state, batch)
        step += 1
        log.add(step, metrics)
        for fn in callbacks:
          fn(step, state, metrics)
        bar.update(1)
        if step % log_every == 0:
          record = log.flush()
          train_log.scalars(step, record['metrics'])
          bar.set_postfix({k: f'{v:.4g}' for k, v in record['metrics'].items()
                           if math.isfinite(v)})
        if eval_every and (step % eval_every == 0 or step == total):
          scores = validate()
          bar.write(f'step {step} validation: ' + ', '.join(
              f'{k} {v:.4g}' for k, v in scores.items()))
        if step % ckpt_every == 0 or step == total:
          save()
        if (sigterm.raised if jax.process_count() == 1
            else checkpointer.reached_preemption(step)):
          logging.warning('SIGTERM: saving step %d and stopping (no '
                          'export; rerun to resume)', step)
          save()
          preempted = True
          break
      log.flush()
      train_log.flush()
      checkpointer.wait_until_finished()
  finally:
    bar.close()
  return LoopResult(state=state, step=step, preempted=preempted,
                    last_metrics=dict(log.last))


def finish(result: LoopResult, write_outputs: Callable[[], Any] | None,
           name: str = 'training') -> None:
  """Ends a trainer's command the same way for every trainer.

  A finished run writes its outputs (export, figures); a run stopped by
  SIGTERM has saved its checkpoint and writes nothing else, so an export
  never holds a half-trained model. Either way one line says which.

  Args:
    result: what :func:`train_loop` returned.
    write_outputs: writes the run's outputs; None when none were asked for.
    name: what the line calls the run.
  """
  if result.preempted:
    skipped = ' no export written;' if write_outputs is not None else ''
    print(f'{name} preempted at step {result.step}: checkpoint saved;'
          f'{skipped} run the same command again to resume')
    return
  if write_outputs is not None:
    write_outputs()
  print(f'{name} finished at step {result.step}: {result.last_metrics}')


def read_metrics(workdir: str | os.PathLike) -> list[dict]:
  """The records of ``<workdir>/metrics.jsonl``, in order."""
  path = pathlib.Path(workdir) / METRICS_FILE
  if not path.exists():
    return []
  return [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()]

