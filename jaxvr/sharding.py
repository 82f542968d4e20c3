"""Device mesh and shardings for data-parallel training.

This module is the one place that builds meshes and shardings. Training in
jaxvr is data parallel: parameters, optimizer state and random keys are
replicated on every device, and each batch is split along its leading axis
over the ``data`` mesh axis. Jitted steps declare these shardings with
``in_shardings``/``out_shardings``; restores build their abstract targets from
them, so a checkpoint written on 8 devices loads on 1 (and the reverse).

Multi-host runs call :func:`maybe_initialize_distributed` first thing. The
mesh then spans the devices of every process: each process builds only the
shards of the replicated state it can reach (:func:`put_global`) and feeds
its own slice of the global batch (:func:`shard_batch`), and the jitted step
reduces the metrics over the whole batch on device.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from typing import Any

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxvr.errors import ConfigError, ShapeError

DATA_AXIS = 'data'
DISTRIBUTED_ENV = 'JAXVR_DISTRIBUTED'

# The variables a generic cluster sets on every process. JAX reads only the
# coordinator address itself; the count and id it takes from SLURM, Open MPI
# or Cloud TPU metadata, or from arguments.
COORDINATOR_ENV = 'JAX_COORDINATOR_ADDRESS'
NUM_PROCESSES_ENV = 'JAX_NUM_PROCESSES'
PROCESS_ID_ENV = 'JAX_PROCESS_ID'

_distributed_initialized = False
_local_only = False  # see process_local


def _env_flag(name: str) -> bool:
  return os.environ.get(name, '0').strip().lower() in ('1', 'true', 'yes')


def _env_int(name: str, minimum: int) -> int | None:
  value = os.environ.get(name, '').strip()
  if not value:
    return None
  try:
    number = int(value)
  except ValueError:
    number = None
  if number is None or number < minimum:
    raise ConfigError(
        f'{name}: expected an integer >= {minimum}, got {value!r}')
  return number


def distributed_params(coordinator_address: str | None = None,
                       num_processes: int | None = None,
                       process_id: int | None = None) -> dict:
  """The explicit ``jax.distributed.initialize`` arguments of this process.

  Each argument wins over its variable (``JAX_COORDINATOR_ADDRESS``,
  ``JAX_NUM_PROCESSES``, ``JAX_PROCESS_ID``); what neither gives is left out,
  for JAX to detect (SLURM, Open MPI, Cloud TPU).

  Raises:
    ConfigError: if a variable or argument is not a valid value.
  """
  params = {
      'coordinator_address': (coordinator_address
                              or os.environ.get(COORDINATOR_ENV, '').strip()
                              or None),
      'num_processes': (num_processes if num_processes is not None
                        else _env_int(NUM_PROCESSES_ENV, 1)),
      'process_id': (process_id if process_id is not None
                     else _env_int(PROCESS_ID_ENV, 0)),
  }
  address = params['coordinator_address']
  if address is not None and not re.fullmatch(r'.+:\d+', address):
    raise ConfigError(
        f'{COORDINATOR_ENV}: expected HOST:PORT, got {address!r}')
  n, i = params['num_processes'], params['process_id']
  if n is not None and i is not None and not 0 <= i < n:
    raise ConfigError(
        f'{PROCESS_ID_ENV}: expected an integer in [0, {n - 1}] '
        f'({NUM_PROCESSES_ENV}={n}), got {i}')
  return {k: v for k, v in params.items() if v is not None}


def maybe_initialize_distributed(force: bool | None = None, *,
                                 coordinator_address: str | None = None,
                                 num_processes: int | None = None,
                                 process_id: int | None = None) -> bool:
  """Starts JAX's multi-controller runtime when asked to, at most once.

  Must run before any other JAX call. Where the coordinator, the process
  count and this process's id come from:

  - the arguments, else the variables ``JAX_COORDINATOR_ADDRESS``
    (``HOST:PORT`` of process 0), ``JAX_NUM_PROCESSES`` and
    ``JAX_PROCESS_ID`` (a generic cluster, or N processes on one machine);
  - whatever is missing, JAX detects (SLURM's ``srun``, Open MPI, Cloud
    TPU pod metadata).

  On the CPU, cross-process collectives go through gloo over TCP (unless
  ``JAX_CPU_COLLECTIVES_IMPLEMENTATION`` says otherwise), so the same
  program runs as N local processes; each process's device count then comes
  from ``XLA_FLAGS=--xla_force_host_platform_device_count=K``.

  Args:
    force: True to initialize, False never to; None (default) initializes
      only when the environment variable ``JAXVR_DISTRIBUTED`` is ``1``.
    coordinator_address: ``HOST:PORT`` of process 0 (overrides the variable).
    num_processes: the process count (overrides the variable).
    process_id: this process's id in ``[0, num_processes)``.

  Returns:
    Whether the distributed runtime is initialized after the call.

  Raises:
    ConfigError: if a setting is invalid, or the runtime cannot be set up
      from what was given and detected.
  """
  global _distributed_initialized
  if _distributed_initialized:
    return True
  if force is None:
    force = _env_flag(DISTRIBUTED_ENV)
  if not force:
    return False
  params = distributed_params(coordinator_address, num_processes, process_id)
  if not os.environ.get('JAX_CPU_COLLECTIVES_IMPLEMENTATION'):
    # Only the CPU client reads this. gloo is jax 0.10's default; it is set
    # anyway because without cross-process CPU collectives every
    # multi-process CPU step fails at run time.
    jax.config.update('jax_cpu_collectives_implementation', 'gloo')
  try:
    jax.distributed.initialize(**params)
  except ValueError as e:
    raise ConfigError(
        f'distributed runtime: {e} Expected {COORDINATOR_ENV}, '
        f'{NUM_PROCESSES_ENV} and {PROCESS_ID_ENV}, or a SLURM / Open MPI / '
        f'Cloud TPU environment JAX detects (got {params})') from e
  _distributed_initialized = True
  return True


@contextlib.contextmanager
def process_local() -> Iterator[None]:
  """Within the block, :func:`make_mesh` spans this process's devices only.

  For work each process of a multi-process run does on its own (its share
  of the clips of an evaluation): a mesh over every process's devices would
  make each computation wait for the other processes to run it too.
  Single-process runs are unaffected.
  """
  global _local_only
  previous, _local_only = _local_only, True
  try:
    yield
  finally:
    _local_only = previous


def make_mesh(n_devices: int | None = None) -> Mesh:
  """Builds a 1-D ``data`` mesh over the first ``n_devices`` devices.

  Args:
    n_devices: number of devices to use; None uses every device (of every
      process in multi-process runs, of this one inside
      :func:`process_local`).

  Returns:
    A mesh with the single axis ``'data'`` of Auto axis type.

  Raises:
    ConfigError: if ``n_devices`` is not in ``[1, number of devices]``.
  """
  pool = jax.local_devices() if _local_only else jax.devices()
  available = len(pool)
  n = available if n_devices is None else int(n_devices)
  if not 1 <= n <= available:
    raise ConfigError(
        f'n_devices: expected an integer in [1, {available}] (the devices '
        f'JAX sees), got {n_devices}')
  devices = None if pool == jax.devices() and n == available else pool[:n]
  return jax.make_mesh((n,), (DATA_AXIS,), axis_types=(AxisType.Auto,),
                       devices=devices)


def sync_processes(name: str) -> None:
  """Waits until every process reaches the barrier ``name`` (no-op alone)."""
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils
    multihost_utils.sync_global_devices(name)


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


def _put_leaf(x: Any, sharding: jax.sharding.Sharding) -> jax.Array:
  if sharding.is_fully_addressable:
    return jax.device_put(x, sharding)
  if isinstance(x, jax.Array) and x.sharding.is_equivalent_to(sharding,
                                                               x.ndim):
    return x  # Already global (built by a jit with these out_shardings).
  if jax.dtypes.issubdtype(getattr(x, 'dtype', None), jax.dtypes.prng_key):
    # Typed keys cannot come from a host buffer: place their raw data, then
    # wrap it back into keys of the same implementation.
    data = _put_leaf(jax.random.key_data(x), sharding)
    return jax.random.wrap_key_data(data, impl=jax.random.key_impl(x))
  host = np.asarray(x)
  return jax.make_array_from_callback(host.shape, sharding,
                                      lambda index: host[index])


def put_global(tree: Any, shardings: Any) -> Any:
  """Places host or single-device values with shardings of a global mesh.

  Single-process (every device addressable): ``jax.device_put``. With
  several processes a sharding also covers devices this process cannot
  reach, so each process builds only its own shards from its copy of the
  values; every process must pass the same values (e.g. parameters
  initialized from the same key).

  Args:
    tree: a pytree of numpy or JAX arrays (typed PRNG keys included).
    shardings: one sharding for every leaf, or a pytree of shardings with
      the structure of ``tree``.

  Returns:
    The pytree of global ``jax.Array``s.
  """
  if isinstance(shardings, jax.sharding.Sharding):
    shardings = jax.tree.map(lambda _: shardings, tree)
  return jax.tree.map(_put_leaf, tree, shardings)


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
