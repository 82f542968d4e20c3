"""Checkpoints: the one module that talks to Orbax.

A training checkpoint is one step directory under ``<workdir>/ckpt`` holding
three items:

- ``state``: the training state pytree (params, optimizer state, step counter,
  typed RNG key, batch statistics, ...), saved with ``StandardSave``;
- ``data``: the data iterator's position, a small JSON dict (for example
  ``{'seed': 0, 'position': 120}``);
- ``config``: the run's configuration as JSON.

Restores always go into an abstract target (``jax.ShapeDtypeStruct`` leaves
carrying the shardings of the *current* mesh), so a checkpoint written on 8
devices restores on 1 and the reverse.

:func:`save_params` / :func:`load_params` store just a parameter pytree and
its model configuration, for shipped default weights and converted models.

Keeping every Orbax call here means a later move to another checkpoint API
changes one file.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import os
import pathlib
import shutil
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp

from jaxvr import files
from jaxvr.errors import CheckpointError

_STATE = 'state'
_DATA = 'data'
_CONFIG = 'config'
_PARAMS_DIR = 'params'
_CONFIG_FILE = 'config.json'

# Replicated arrays are written by one replica unless a replica's slice is at
# least this big. (Splitting every small array over the replicas costs one
# compiled slice per shape and device on the first save: about 15 s for a
# small model on 8 CPU devices, for no gain at these sizes.)
MIN_REPLICA_SLICE_BYTES = 1 << 22


@functools.cache
def _register_array_handler() -> None:
  """Re-registers Orbax's jax.Array handler with the slice threshold.

  Called on first use (a ``Checkpointer`` or a params save), not at import:
  importing jaxvr changes no global Orbax state.

  The metadata store must be passed again: it is what records typed PRNG
  keys. Orbax exposes it only under ``_src``; if that moves, keep Orbax's
  default handler (correct, just slower on the first save).
  """
  try:
    from orbax.checkpoint._src.metadata import array_metadata_store
  except ImportError:
    return
  handler = ocp.type_handlers.ArrayHandler(
      array_metadata_store=array_metadata_store.Store(),
      min_slice_bytes_for_replica_parallel=MIN_REPLICA_SLICE_BYTES)
  absl_logger = logging.getLogger('absl')
  level = absl_logger.level
  absl_logger.setLevel(logging.ERROR)  # Orbax warns about the override.
  try:
    ocp.type_handlers.register_type_handler(jax.Array, handler, override=True)
  finally:
    absl_logger.setLevel(level)


def to_json_dict(config: Any) -> dict:
  """Converts a config (ConfigDict, dataclass, mapping) to a JSON-able dict.

  Tuples become lists; values JSON cannot hold (dtypes, callables) become
  their ``str``.

  Raises:
    CheckpointError: if ``config`` is none of the accepted kinds.
  """
  if config is None:
    return {}
  if hasattr(config, 'to_dict'):
    config = config.to_dict()
  elif dataclasses.is_dataclass(config) and not isinstance(config, type):
    config = dataclasses.asdict(config)
  if not isinstance(config, Mapping):
    raise CheckpointError(
        f'config: expected a ConfigDict, dataclass or mapping, got '
        f'{type(config).__name__}')
  return json.loads(json.dumps(dict(config), default=str))


@dataclasses.dataclass(frozen=True)
class Restored:
  """What :meth:`Checkpointer.restore` returns.

  Attributes:
    step: the restored step.
    state: the state pytree, laid out as the abstract target asked.
    data_state: the data iterator position saved with it.
    config: the saved configuration (a plain dict).
  """
  step: int
  state: Any
  data_state: dict
  config: dict


class Checkpointer:
  """Saves and restores training checkpoints in one directory.

  Use it as a context manager (or call :meth:`close`), so that pending
  asynchronous saves finish before the process exits. Every process of a
  multi-host run must make the same calls.

  Args:
    directory: where step directories go (created on the first save).
    max_to_keep: how many of the newest checkpoints to keep (None = all).
    async_save: write in a background thread after the arrays have been
      copied off the devices.
  """

  def __init__(self, directory: str | os.PathLike, *,
               max_to_keep: int | None = 3, async_save: bool = True):
    if max_to_keep is not None and max_to_keep < 1:
      raise CheckpointError(
          f'max_to_keep: expected a positive integer or None, got '
          f'{max_to_keep}')
    self._directory = pathlib.Path(directory).absolute()
    _register_array_handler()
    options = ocp.CheckpointManagerOptions(
        max_to_keep=max_to_keep, create=True,
        enable_async_checkpointing=async_save)
    self._manager = ocp.CheckpointManager(self._directory, options=options)

  @property
  def directory(self) -> pathlib.Path:
    return self._directory

  def latest_step(self) -> int | None:
    """The newest complete step in the directory, or None if there is none."""
    return self._manager.latest_step()

  def all_steps(self) -> list[int]:
    """Every complete step in the directory, in increasing order."""
    return sorted(self._manager.all_steps())

  def save(self, step: int, state: Any, *, data_state: Mapping | None = None,
           config: Any = None) -> bool:
    """Saves ``state``, the data position and the config as ``step``.

    Returns once the arrays are copied off the devices (so the caller may
    donate them to the next step); the files are written asynchronously
    unless the checkpointer was built with ``async_save=False``.

    Args:
      step: the number of completed training steps.
      state: the state pytree (arrays, typed keys, flax structs).
      data_state: the data iterator position (JSON-able dict).
      config: the run configuration (see :func:`to_json_dict`).

    Returns:
      True if a checkpoint was started.
    """
    args = ocp.args.Composite(**{
        _STATE: ocp.args.StandardSave(state),
        _DATA: ocp.args.JsonSave(dict(data_state or {})),
        _CONFIG: ocp.args.JsonSave(to_json_dict(config)),
    })
    return bool(self._manager.save(int(step), args=args, force=True))

  def _check_step(self, step: int | None) -> int:
    steps = self.all_steps()
    if not steps:
      raise CheckpointError(
          f'checkpoint directory {self._directory}: no checkpoint found')
    if step is None:
      return steps[-1]
    if int(step) not in steps:
      raise CheckpointError(
          f'checkpoint directory {self._directory}: no step {step} '
          f'(available: {steps})')
    return int(step)

  def restore(self, abstract_state: Any, step: int | None = None) -> Restored:
    """Restores a step into ``abstract_state``.

    Args:
      abstract_state: pytree of ``jax.ShapeDtypeStruct`` with shardings for
        the current mesh (see ``sharding.abstract_with_sharding``), or of
        concrete arrays whose shapes, dtypes and shardings are used.
      step: the step to restore; None restores the latest.

    Returns:
      The restored state, data position and config.

    Raises:
      CheckpointError: if there is no such checkpoint, or it does not fit
        the target.
    """
    step = self._check_step(step)
    self.wait_until_finished()
    args = ocp.args.Composite(**{
        _STATE: ocp.args.StandardRestore(abstract_state),
        _DATA: ocp.args.JsonRestore(),
        _CONFIG: ocp.args.JsonRestore(),
    })
    try:
      out = self._manager.restore(step, args=args)
    except (ValueError, KeyError, TypeError, FileNotFoundError) as e:
      raise CheckpointError(
          f'checkpoint {self._directory / str(step)}: cannot restore into '
          f'the given target: {e}') from e
    return Restored(step=step, state=out[_STATE],
                    data_state=dict(out[_DATA] or {}),
                    config=dict(out[_CONFIG] or {}))

  def restore_config(self, step: int | None = None) -> dict:
    """The config saved with ``step`` (latest if None), as a plain dict."""
    step = self._check_step(step)
    self.wait_until_finished()
    out = self._manager.restore(
        step, args=ocp.args.Composite(**{_CONFIG: ocp.args.JsonRestore()}))
    return dict(out[_CONFIG] or {})

  def reached_preemption(self, step: int) -> bool:
    """Multi-process runs: True once every process agreed to stop at ``step``.

    Uses JAX's preemption sync service (started by
    ``jax.distributed.initialize``, which also catches SIGTERM); always
    False in a single-process run.
    """
    return bool(self._manager.reached_preemption(int(step)))

  def wait_until_finished(self) -> None:
    """Blocks until every pending asynchronous save is on disk."""
    self._manager.wait_until_finished()

  def close(self) -> None:
    """Finishes pending saves and releases the manager."""
    self._manager.close()

  def __enter__(self) -> Checkpointer:
    return self

  def __exit__(self, *exc) -> None:
    self.close()


def save_params(directory: str | os.PathLike, params: Any,
                config: Any = None) -> pathlib.Path:
  """Saves a parameter pytree and its model config (default weights, ports).

  Writes ``<directory>/params`` (Orbax) and ``<directory>/config.json``.
  Both are first written into a sibling temporary folder, which then takes
  the place of ``directory`` (:func:`jaxvr.files.atomic_dir`; other files
  already in ``directory``, such as ``training_clips.json``, are kept): a
  previous export stays complete and loadable until the new one is, and a
  failed save leaves it as it was.

  Args:
    directory: destination folder (created if missing).
    params: pytree of arrays.
    config: the model configuration (see :func:`to_json_dict`).

  Returns:
    The directory as an absolute path.
  """
  directory = pathlib.Path(directory).absolute()
  config_json = to_json_dict(config)
  if jax.process_count() > 1:
    _save_params_every_process(directory, params, config_json)
    return directory
  with files.atomic_dir(directory) as tmp:
    _save_orbax_params(tmp / _PARAMS_DIR, params)
    files.write_json(tmp / _CONFIG_FILE, config_json, sort_keys=True)
  return directory


def _save_orbax_params(path: pathlib.Path, params: Any) -> None:
  _register_array_handler()
  checkpointer = ocp.StandardCheckpointer()
  try:
    checkpointer.save(path, params)
    checkpointer.wait_until_finished()
  finally:
    checkpointer.close()


def _save_params_every_process(directory: pathlib.Path, params: Any,
                               config_json: dict) -> None:
  """``save_params`` in a multi-process run (every process calls it).

  Orbax needs every process to save into one and the same folder, so the
  temporary folder has a fixed name here; process 0 alone writes the
  config and swaps the folder into place once every process is done.
  """
  from jaxvr import sharding

  main = jax.process_index() == 0
  shared = directory.with_name(f'.{directory.name}.export.tmp')
  if main:
    shutil.rmtree(shared, ignore_errors=True)  # left by a crashed save
    with files.atomic_dir(directory) as tmp:
      sharding.sync_processes('save_params: start')
      _save_orbax_params(shared / _PARAMS_DIR, params)
      sharding.sync_processes('save_params: params written')
      tmp.rmdir()
      shared.rename(tmp)
      files.write_json(tmp / _CONFIG_FILE, config_json, sort_keys=True)
  else:
    sharding.sync_processes('save_params: start')
    _save_orbax_params(shared / _PARAMS_DIR, params)
    sharding.sync_processes('save_params: params written')
  sharding.sync_processes('save_params: done')


def load_params(directory: str | os.PathLike, abstract: Any = None, *,
                float_dtype: Any = None) -> tuple[Any, dict]:
  """Loads what :func:`save_params` wrote.

  Args:
    directory: the folder given to :func:`save_params`.
    abstract: pytree of ``jax.ShapeDtypeStruct`` (with shardings) to restore
      into; None restores the saved shapes and dtypes onto the first local
      device.
    float_dtype: with ``abstract`` None, restore every floating-point array
      as this dtype (e.g. float32 compute weights from a float16 bundle).

  Returns:
    ``(params, config)``, config being a plain dict.

  Raises:
    CheckpointError: if the folder holds no saved parameters, or they do not
      fit ``abstract``.
  """
  directory = pathlib.Path(directory).absolute()
  params_dir = directory / _PARAMS_DIR
  if not params_dir.is_dir():
    raise CheckpointError(
        f'parameter directory {directory}: expected a {_PARAMS_DIR}/ '
        f'subfolder written by save_params, found none')
  checkpointer = ocp.StandardCheckpointer()
  try:
    if abstract is None:
      meta = checkpointer.metadata(params_dir).item_metadata.tree
      device = jax.local_devices()[0]
      sharding = jax.sharding.SingleDeviceSharding(device)

      def leaf(m):
        dtype = m.dtype
        if float_dtype is not None and jnp.issubdtype(dtype, jnp.floating):
          dtype = float_dtype
        return jax.ShapeDtypeStruct(m.shape, dtype, sharding=sharding)

      abstract = jax.tree.map(leaf, meta)
    params = checkpointer.restore(params_dir, abstract)
  except (ValueError, KeyError, TypeError, FileNotFoundError) as e:
    raise CheckpointError(
        f'parameter directory {directory}: cannot restore: {e}') from e
  finally:
    checkpointer.close()
  config_path = directory / _CONFIG_FILE
  config = (json.loads(config_path.read_text())
            if config_path.is_file() else {})
  return params, config
