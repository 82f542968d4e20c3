"""Device mesh and shardings for data-parallel training.

This module is the one place that builds meshes and shardings. Training in
jaxvr is data parallel: parameters, optimizer state and random keys are
replicated on every device, and each batch is split along its leading axis
over the ``data`` mesh axis. Jitted steps declare these shardings with
``in_shardings``/``out_shardings``; restores build their abstract targets from
them, so a checkpoint written on 8 devices loads on 1 (and the reverse).

Multi-host runs call :func:`maybe_initialize_distributed` first thing; every
process then feeds its own slice of the global batch through
:func:`shard_batch`.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxvr.errors import ConfigError, ShapeError

DATA_AXIS = 'data'
DISTRIBUTED_ENV = 'JAXVR_DISTRIBUTED'

_distributed_initialized = False


def maybe_initialize_distributed(force: bool | None = None) -> bool:
  """Calls ``jax.distributed.initialize()`` when asked to, at most once.

  Must run before any other JAX call. The coordinator address, process count
  and process id come from the environment (SLURM, TPU pods and the
  ``JAX_COORDINATOR_ADDRESS``/``JAX_NUM_PROCESSES``/``JAX_PROCESS_ID``
  variables), as ``jax.distributed.initialize`` reads them.

  Args:
    force: True to initialize, False never to; None (default) initializes
      only when the environment variable ``JAXVR_DISTRIBUTED`` is ``1``.

  Returns:
    Whether the distributed runtime is initialized after the call.
  """
  global _distributed_initialized
  if _distributed_initialized:
    return True
  if force is None:
    force = os.environ.get(DISTRIBUTED_ENV, '0').strip().lower() in (
        '1', 'true', 'yes')
  if not force:
    return False
  jax.distributed.initialize()
  _distributed_initialized = True
  return True


def make_mesh(n_devices: int | None = None) -> Mesh:
  """Builds a 1-D ``data`` mesh over the first ``n_devices`` devices.

  Args:
    n_devices: number of devices to use; None uses every device (of every
      process, in multi-host runs).

  Returns:
    A mesh with the single axis ``'data'`` of Auto axis type.

  Raises:
    ConfigError: if ``n_devices`` is not in ``[1, jax.device_count()]``.
  """
  available = jax.device_count()
  n = available if n_devices is None else int(n_devices)
  if not 1 <= n <= available:
    raise ConfigError(
        f'n_devices: expected an integer in [1, {available}] (the devices '
        f'JAX sees), got {n_devices}')
  devices = None if n == available else jax.devices()[:n]
  return jax.make_mesh((n,), (DATA_AXIS,), axis_types=(AxisType.Auto,),
                       devices=devices)


def replicated(mesh: Mesh) -> NamedSharding:
  """Sharding that keeps a full copy of an array on every device of ``mesh``."""
  return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Sharding that splits an array's leading (batch) axis over ``data``."""
  return NamedSharding(mesh, P(DATA_AXIS))


def replicate_tree(tree: Any, mesh: Mesh) -> Any:
  """A pytree of replicated shardings with the structure of ``tree``."""
  sharding = replicated(mesh)
  return jax.tree.map(lambda _: sharding, tree)


def abstract_with_sharding(tree: Any, shardings: Any) -> Any:
  """Turns arrays or shape structs into sharded ``jax.ShapeDtypeStruct``s.

  Args:
    tree: a pytree of arrays or ``jax.ShapeDtypeStruct`` (for example the
      output of ``jax.eval_shape(init_fn, key)``).
    shardings: one sharding for every leaf, or a pytree of shardings with the
      structure of ``tree``.

  Returns:
    The abstract pytree, suitable as a restore target.
  """
  if isinstance(shardings, jax.sharding.Sharding):
    shardings = jax.tree.map(lambda _: shardings, tree)
  return jax.tree.map(
      lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
      tree, shardings)


def local_batch_size(global_batch_size: int) -> int:
  """Rows of the global batch that this process loads.

  Raises:
    ConfigError: if the batch does not split evenly over processes.
  """
  n = jax.process_count()
  if global_batch_size % n:
    raise ConfigError(
        f'batch_size: expected a multiple of the process count {n}, got '
        f'{global_batch_size}')
  return global_batch_size // n


def shard_batch(batch: Any, mesh: Mesh) -> Any:
  """Builds globally sharded arrays from this process's numpy batch.

  Every leaf is this process's slice of the global batch (leading axis =
  local batch rows). The global array has ``process_count`` times as many
  rows and is split over the ``data`` axis.

  Args:
    batch: a pytree of numpy arrays ``[b, ...]``, all with the same ``b``.
    mesh: the training mesh.

  Returns:
    The same pytree of ``jax.Array`` ``[b * process_count, ...]``, sharded
    ``P('data')``.

  Raises:
    ShapeError: if a leaf is a scalar, the leaves disagree on the batch size,
      or the global batch does not divide over the mesh.
  """
  sharding = batch_sharding(mesh)
  n_shards = mesh.shape[DATA_AXIS]
  leaves = jax.tree.leaves(batch)
  rows = {np.shape(x)[0] if np.ndim(x) else None for x in leaves}
  if None in rows or len(rows) > 1:
    shapes = [np.shape(x) for x in leaves]
    raise ShapeError(
        f'batch: expected arrays sharing a leading batch axis, got shapes '
        f'{shapes}')
  if rows and (rows.pop() * jax.process_count()) % n_shards:
    raise ShapeError(
        f'batch: global batch size must be a multiple of the {n_shards} '
        f'devices of the mesh, got local shapes '
        f'{[np.shape(x) for x in leaves]}')
  return jax.tree.map(
      lambda x: jax.make_array_from_process_local_data(sharding,
                                                       np.asarray(x)),
      batch)


def is_main_process() -> bool:
  """True on the process that logs and writes non-checkpoint files."""
  return jax.process_index() == 0
