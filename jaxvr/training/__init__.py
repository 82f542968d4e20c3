"""Shared training infrastructure: mesh, checkpoints, data, the loop.

- ``sharding``: the data-parallel mesh, replicated and batch shardings,
  multi-process start-up and placement.
- ``checkpoint``: Orbax checkpoints of state, data position and config.
- ``data``: restorable clip iterators (video folders, synthetic clips).
- ``loop``: the training loop (logging, NaN guard, preemption-safe saves).
"""

from jaxvr.training.checkpoint import (
  Checkpointer,
  Restored,
  load_params,
  save_params,
)
from jaxvr.training.data import IndexedClips, SyntheticClips, VideoClips
from jaxvr.training.loop import (
  LoopResult,
  open_checkpointer,
  read_metrics,
  restore_or_init,
  train_loop,
)
from jaxvr.training.sharding import (
  abstract_with_sharding,
  batch_sharding,
  make_mesh,
  maybe_initialize_distributed,
  put_global,
  replicated,
  shard_batch,
)

__all__ = [
  'Checkpointer', 'IndexedClips', 'LoopResult', 'Restored', 'SyntheticClips',
  'VideoClips', 'abstract_with_sharding', 'batch_sharding', 'load_params', 'make_mesh',
  'maybe_initialize_distributed', 'open_checkpointer', 'put_global',
  'read_metrics', 'replicated', 'restore_or_init', 'save_params', 'shard_batch',
  'train_loop',
]
