"""ST-MAE pre-training from scratch on video clips.

Feichtenhofer, Fan, Li, He, "Masked Autoencoders As Spatiotemporal Learners",
NeurIPS 2022: the masked-reconstruction objective and the optimiser recipe
(AdamW, betas (0.9, 0.95), weight decay 0.05, warm-up then cosine decay,
gradient clipping). The config lives in ``jaxvr/configs/stmae.py``.

Data parallel over every device: the state is replicated, the batch is split
over the ``data`` mesh axis, and the jitted step donates the state. Each
step's masking noise is drawn from ``fold_in(rng, step)``, so a resumed run
draws the same masks as an uninterrupted one; checkpoints, logging, the NaN
guard and SIGTERM handling come from :mod:`jaxvr.training.loop`.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax.training import train_state

from jaxvr import sharding as shard_lib
from jaxvr import stmae
from jaxvr.errors import ConfigError
from jaxvr.stmae.forward import forward_unjitted
from jaxvr.training import data as data_lib
from jaxvr.training import loop
from jaxvr.video import transforms


class TrainState(train_state.TrainState):
  """Flax TrainState plus the run's base key (per-step keys are folded in)."""
  rng: jax.Array


def model_config(config: ml_collections.ConfigDict) -> stmae.STMAEConfig:
  """The ``STMAEConfig`` of ``config.model`` with the trainer's ``remat``
  and ``scan_blocks`` (the parameter layout of training states)."""
  if config.remat not in stmae.REMAT_POLICIES:
    raise ConfigError(f'config.remat: expected one of '
                      f'{tuple(stmae.REMAT_POLICIES)}, got {config.remat!r}')
  return stmae.STMAEConfig(**config.model.to_dict(), remat=config.remat,
                           scan_blocks=bool(config.get('scan_blocks', False)))


def export_params(params: Any, config: ml_collections.ConfigDict
                  ) -> tuple[Any, stmae.STMAEConfig]:
  """Trained parameters and model config in the default (unscanned) layout.

  What ``train.stmae --export`` writes: blocks as ``blocks_<i>`` and a config
  without training-only settings, so the weights load anywhere.
  """
  model_cfg = model_config(config)
  if model_cfg.scan_blocks:
    params = stmae.unstack_blocks(params, model_cfg)
  return params, dataclasses.replace(model_cfg, remat='none',
                                     scan_blocks=False)


def _schedule_key(config: ml_collections.ConfigDict) -> tuple:
  o = config.optim
  return (float(o.blr), int(config.data.batch_size), int(o.warmup_steps),
          int(config.total_steps), float(o.min_lr))


def _schedule(key: tuple) -> optax.Schedule:
  blr, batch_size, warmup, total_steps, min_lr = key
  return optax.warmup_cosine_decay_schedule(
      init_value=0.0, peak_value=blr * batch_size / 256, warmup_steps=warmup,
      decay_steps=max(total_steps, warmup + 1), end_value=min_lr)


def learning_rate(config: ml_collections.ConfigDict) -> optax.Schedule:
  """Linear warm-up to ``blr * batch / 256``, then cosine decay to min_lr."""
  return _schedule(_schedule_key(config))


def make_optimizer(config: ml_collections.ConfigDict
                   ) -> optax.GradientTransformation:
  """Gradient clipping then AdamW; no decay on biases and norm parameters.

  Equal settings return the same object (the optimizer is static data of
  the jitted step, so sharing it avoids recompiling).
  """
  o = config.optim
  return _optimizer(_schedule_key(config), float(o.b1), float(o.b2),
                    float(o.weight_decay), float(o.clip_grad or 0.0))


@functools.lru_cache(maxsize=8)
def _optimizer(schedule_key, b1, b2, weight_decay, clip_grad):
  decay_mask = lambda params: jax.tree.map(lambda x: x.ndim >= 2, params)
  adamw = optax.adamw(_schedule(schedule_key), b1=b1, b2=b2,
                      weight_decay=weight_decay, mask=decay_mask)
  if clip_grad > 0:
    return optax.chain(optax.clip_by_global_norm(clip_grad), adamw)
  return adamw


def create_state(model_cfg: stmae.STMAEConfig,
                 tx: optax.GradientTransformation,
                 key: jax.Array) -> TrainState:
  """Fresh parameters and optimizer state; ``rng`` is derived from ``key``."""
  init_key, run_key = jax.random.split(key)
  params = stmae.init_params(model_cfg, init_key)
  return TrainState(step=jnp.zeros((), jnp.int32), apply_fn=None,
                    params=params, tx=tx, opt_state=jax.jit(tx.init)(params),
                    rng=run_key)


def abstract_state(model_cfg: stmae.STMAEConfig,
                   tx: optax.GradientTransformation) -> TrainState:
  """The ``jax.ShapeDtypeStruct`` tree of :func:`create_state`'s result."""
  def build(params, key):
    return TrainState(step=jnp.zeros((), jnp.int32), apply_fn=None,
                      params=params, tx=tx, opt_state=tx.init(params),
                      rng=key)
  return jax.eval_shape(build, stmae.abstract_params(model_cfg),
                        jax.random.key(0))


def make_data(config: ml_collections.ConfigDict,
              model_cfg: stmae.STMAEConfig) -> data_lib.IndexedClips:
  """The clip iterator of ``config.data`` at the model's input size."""
  d = config.data
  size = (model_cfg.img_size, model_cfg.img_size)
  if d.source == 'synthetic':
    return data_lib.SyntheticClips(model_cfg.num_frames, size,
                                   batch_size=d.batch_size, seed=config.seed,
                                   channels=model_cfg.in_chans)
  if d.source != 'videos':
    raise ConfigError(f"config.data.source: expected 'videos' or "
                      f"'synthetic', got {d.source!r}")
  return data_lib.videos_from_config(
      d, model_cfg.num_frames, size, seed=config.seed,
      frame_stride=d.frame_stride, crop=d.crop,
      crop_scale=tuple(d.crop_scale), flip=d.flip)


def make_train_step(model_cfg: stmae.STMAEConfig,
                    config: ml_collections.ConfigDict,
                    mesh: jax.sharding.Mesh):
  """The jitted ``(state, batch) -> (state, metrics)`` step.

  ``batch['video']`` is uint8 ``[B, T, H, W, C]``, sharded over ``data``;
  it is normalised on device (mean 0.45, std 0.225). Metrics: ``loss``
  (masked reconstruction error), ``grad_norm`` (before clipping), ``lr``.
  Steps built from equal settings are shared, so repeated runs in one
  process compile once. ``config.fast_compile`` compiles with XLA's backend
  optimisation level 0 (about 3x faster to compile on CPU, slower to run).
  """
  mask_ratio = float(config.mask_ratio)
  stmae.len_keep(model_cfg.num_tokens, mask_ratio)  # Fails early if invalid.
  return _cached_train_step(model_cfg, mask_ratio, _schedule_key(config),
                            bool(config.fast_compile), mesh)


@functools.lru_cache(maxsize=8)
def _cached_train_step(model_cfg, mask_ratio, schedule_key, fast_compile,
                       mesh):
  schedule = _schedule(schedule_key)

  # Rematerialisation is per block, inside the model (model_cfg.remat):
  # remat around the whole loss would recompute everything without lowering
  # the peak.
  def loss_fn(params, video, noise):
    out = forward_unjitted(params, model_cfg, video, noise, mask_ratio)
    return out.loss

  def step(state: TrainState, batch: dict) -> tuple[TrainState, dict]:
    key = jax.random.fold_in(state.rng, state.step)
    video = transforms.normalize(batch['video'], dtype=jnp.float32)
    noise = stmae.sample_noise(key, video.shape[0], model_cfg.num_tokens)
    loss, grads = jax.value_and_grad(loss_fn)(state.params, video, noise)
    metrics = {'loss': loss, 'grad_norm': optax.tree.norm(grads),
               'lr': schedule(state.step)}
    return state.apply_gradients(grads=grads), metrics

  rep = shard_lib.replicated(mesh)
  opts = {'xla_backend_optimization_level': 0} if fast_compile else None
  return jax.jit(step, donate_argnums=(0,),
                 in_shardings=(rep, shard_lib.batch_sharding(mesh)),
                 out_shardings=(rep, rep), compiler_options=opts)


def make_evaluate(model_cfg: stmae.STMAEConfig,
                  config: ml_collections.ConfigDict):
  """Validation: masked-patch loss on fixed validation clips and masks.

  Uses ``config.data.val_dir`` (two clips per video, the training stride)
  with masks from a fixed key, so successive evaluations differ only by the
  parameters. Returns None when no validation folder is set.
  """
  d = config.data
  if not d.get('val_dir'):
    return None
  clips = data_lib.validation_clips(
      d.val_dir, model_cfg.num_frames, (model_cfg.img_size,) * 2,
      frame_stride=int(d.frame_stride), windows=2)
  mask_ratio = float(config.mask_ratio)

  @jax.jit
  def loss(params, video):
    video = transforms.normalize(video, dtype=jnp.float32)
    noise = stmae.sample_noise(jax.random.key(1234), video.shape[0],
                               model_cfg.num_tokens)
    return forward_unjitted(params, model_cfg, video, noise, mask_ratio).loss

  def evaluate(state) -> tuple[dict, dict]:
    losses = [float(loss(state.params, clips[i:i + 1]))
              for i in range(len(clips))]
    return {'masked_loss': float(np.mean(losses))}, {}

  return evaluate


def run(config: ml_collections.ConfigDict, workdir: str | os.PathLike,
        callbacks: Any = ()) -> loop.LoopResult:
  """Trains (or resumes) an ST-MAE in ``workdir``.

  Resumes from the latest checkpoint in ``<workdir>/ckpt`` when there is
  one; writes ``metrics.jsonl`` and ``config.json`` there too.

  Args:
    config: from ``jaxvr/configs/stmae.py``.
    workdir: run folder.
    callbacks: extra ``fn(step, state, metrics)`` called after every step.

  Returns:
    The loop result (final state, step, whether preempted).
  """
  mesh = shard_lib.make_mesh(config.n_devices)
  if config.data.batch_size % mesh.size:
    raise ConfigError(
        f'config.data.batch_size: expected a multiple of the {mesh.size} '
        f'devices, got {config.data.batch_size}')
  model_cfg = model_config(config)
  if shard_lib.is_main_process():
    logging.info('ST-MAE config:\n%s', config)
  train_step = make_train_step(model_cfg, config, mesh)  # Checks config.
  tx = make_optimizer(config)
  key = jax.random.key(config.seed)
  data = make_data(config, model_cfg)
  with loop.open_checkpointer(workdir, config) as ckpt:
    state, start = loop.restore_or_init(
        ckpt, lambda: create_state(model_cfg, tx, key),
        shard_lib.replicated(mesh), data,
        abstract_state=abstract_state(model_cfg, tx), config=config)
    return loop.train_loop(state, train_step, data, config, workdir,
                           mesh=mesh, checkpointer=ckpt, start_step=start,
                           callbacks=callbacks,
                           evaluate=make_evaluate(model_cfg, config),
                           desc='stmae')
