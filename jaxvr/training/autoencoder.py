"""Training of the denoising bottleneck autoencoder (``jaxvr.autoencoder``).

Frame pairs from video clips, Gaussian input corruption, 8-bit
straight-through latent, mean squared error against the clean pair; Adam
with warm-up and cosine decay. Data parallel like every jaxvr trainer; the
loop, checkpoints, NaN guard and SIGTERM handling come from
:mod:`jaxvr.training.loop`.
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax.training import train_state

from jaxvr import autoencoder
from jaxvr import sharding as shard_lib
from jaxvr.errors import ConfigError
from jaxvr.training import data as data_lib
from jaxvr.training import loop


class TrainState(train_state.TrainState):
  rng: jax.Array


def model_config(config: ml_collections.ConfigDict) -> autoencoder.AEConfig:
  return autoencoder.AEConfig(**config.model.to_dict())


def make_optimizer(config) -> optax.GradientTransformation:
  o = config.optim
  schedule = optax.warmup_cosine_decay_schedule(
      0.0, o.lr, o.warmup_steps, max(config.total_steps, o.warmup_steps + 1), o.min_lr)
  return optax.chain(optax.clip_by_global_norm(o.clip_grad), optax.adam(schedule))


def make_data(config) -> data_lib.IndexedClips:
  d = config.data
  size = (d.size, d.size)
  if d.source == 'synthetic':
    return data_lib.SyntheticClips(2, size, batch_size=d.batch_size, seed=config.seed)
  return data_lib.videos_from_config(
      d, 2, size, seed=config.seed, frame_stride=d.frame_stride,
      crop='random', flip=True)


def make_train_step(model_cfg, config, mesh):
  model = autoencoder.BottleneckAE(model_cfg)
  noise_std = float(config.noise_std)

  def step(state: TrainState, batch: dict):
    key = jax.random.fold_in(state.rng, state.step)
    clean = batch['video'].astype(jnp.float32) / 255.0
    noisy = clean + noise_std * jax.random.normal(key, clean.shape)

    def loss_fn(params):
      latent = model.apply({'params': params}, noisy, method='encode')
      out = model.apply({'params': params}, autoencoder.quantize(latent),
                        method='decode')
      return jnp.mean((out - clean) ** 2)

    loss, grads = jax.value_and_grad(loss_fn)(state.params)
    psnr = -10.0 * jnp.log10(jnp.maximum(loss, 1e-12))
    return state.apply_gradients(grads=grads), {'loss': loss, 'psnr': psnr}

  rep = shard_lib.replicated(mesh)
  return jax.jit(step, donate_argnums=(0,),
                 in_shardings=(rep, shard_lib.batch_sharding(mesh)),
                 out_shardings=(rep, rep))


def make_evaluate(model_cfg, config):
  """Validation as the product decodes: PSNR of the ``bottleneck-ae`` path.

  Clips of ``data.val_frames`` frames at ``data.val_size`` px (one per video
  of ``data.val_dir``) are encoded (8-bit latent, lossless x264) and decoded
  with the current parameters. Logged: ``psnr`` (mean clip PSNR, RGB),
  ``floor_psnr`` (Sparse MP4's linear interpolation at the same 4:1 sample
  rate, the ``interp-linear`` reducer) and their difference ``gain``, plus a
  grid of frames and restorations. None without a validation folder.
  """
  from jaxvr import evaluation, reducers
  from jaxvr.training import writers

  clips = data_lib.validation_clips_from_config(config.data, 112, 16)
  if clips is None:
    return None
  psnr = lambda a, b: evaluation.measure_quality(a, b, ('psnr',))['psnr']
  interp = reducers.create('interp-linear')
  floor = float(np.mean([psnr(c, interp.decode(interp.encode(c, 24.0)))
                         for c in clips]))

  def evaluate(state):
    params = jax.device_get(state.params)
    outs = [autoencoder.decode_video(
        params, model_cfg, autoencoder.encode_video(params, model_cfg, c))
        for c in clips]
    score = float(np.mean([psnr(c, o) for c, o in zip(clips, outs, strict=True)]))
    k = slice(0, 4)
    grid = writers.image_grid([clips[0][k], outs[0][k]])
    return ({'psnr': score, 'floor_psnr': floor, 'gain': score - floor},
            {'clip0_frames_restored': grid})

  return evaluate


def run(config: ml_collections.ConfigDict, workdir: str | os.PathLike,
        callbacks=()) -> loop.LoopResult:
  """Trains (or resumes) the autoencoder in ``workdir``."""
  mesh = shard_lib.make_mesh(config.n_devices)
  if config.data.batch_size % mesh.size:
    raise ConfigError(f'config.data.batch_size: expected a multiple of the '
                      f'{mesh.size} devices, got {config.data.batch_size}')
  model_cfg = model_config(config)
  tx = make_optimizer(config)
  key = jax.random.key(config.seed)

  def init():
    params = autoencoder.init_params(model_cfg, key)
    return TrainState.create(apply_fn=None, params=params, tx=tx, rng=key)

  data = make_data(config)
  with loop.open_checkpointer(workdir, config) as ckpt:
    state, start = loop.restore_or_init(ckpt, init, shard_lib.replicated(mesh),
                                        data, abstract_state=jax.eval_shape(init),
                                        config=config)
    return loop.train_loop(state, make_train_step(model_cfg, config, mesh), data,
                           config, workdir, mesh=mesh, checkpointer=ckpt,
                           start_step=start, callbacks=callbacks,
                           evaluate=make_evaluate(model_cfg, config),
                           desc='autoencoder')
