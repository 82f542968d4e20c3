"""Shared training infrastructure: data, the loop and the trainers.

The mesh and shardings (:mod:`jaxvr.sharding`) and Orbax checkpoints and
parameter exports (:mod:`jaxvr.checkpoint`) live outside this package, so
methods use them without importing the trainers; ``jaxvr.training.sharding``
and ``jaxvr.training.checkpoint`` are the same modules under their old names.

- ``data``: restorable clip iterators (video folders, synthetic clips).
- ``loop``: the training loop (logging, NaN guard, preemption-safe saves).
"""

from jaxvr.checkpoint import (
  Checkpointer,
  Restored,
  load_params,
  save_params,
)
from jaxvr.sharding import (
  abstract_with_sharding,
  batch_sharding,
  make_mesh,
  maybe_initialize_distributed,
  put_global,
  replicated,
  shard_batch,
)
from jaxvr.training.data import IndexedClips, SyntheticClips, VideoClips
from jaxvr.training.loop import (
  LoopResult,
  open_checkpointer,
  read_metrics,
  restore_or_init,
  train_loop,
)

__all__ = [
  'Checkpointer', 'IndexedClips', 'LoopResult', 'Restored', 'SyntheticClips',
  'VideoClips', 'abstract_with_sharding', 'batch_sharding', 'load_params', 'make_mesh',
  'maybe_initialize_distributed', 'open_checkpointer', 'put_global',
  'read_metrics', 'replicated', 'restore_or_init', 'save_params', 'shard_batch',
  'train_loop',
]
