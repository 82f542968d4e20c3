"""Learning the Sparse MP4 dictionary from video clips.

Y. Wang et al., "Sparse MP4", SSIAI 2020, learned 3-frame convolutional
dictionaries (18x18 kernels, stride 2) with PetaVision's LCA and Hebbian
rule; B. A. Olshausen, D. J. Field, Nature 381, 1996 for the alternation of
sparse inference and Hebbian learning.

Each step takes a batch of 3-frame windows of real clips (frames t, t+1,
t+2 of the original video: the two frames Sparse MP4 keeps and the one it
drops between them), splits the colour channels into separate windows (the
codec restores each channel separately with the same dictionary),
normalises every window to zero mean and unit standard deviation, settles
the codes with FISTA or LCA at fixed kernels, and moves the kernels along the
Hebbian term with PetaVision's momentum and per-kernel L2 normalisation
(:func:`jaxvr.lca.dictionary.hebbian_update`). The codes are constants of
the update (no gradient flows through the solver).

Which windows: ``inference.windows='full'`` (default) observes all three
frames, the usual dictionary learning. Under the decimated mask the middle
frame is never observed, so its kernel slices receive no Hebbian update at
all (the residual there is masked out); only the renormalisation touches
them, and they would keep their initial values. Restoring dropped frames
needs exactly those middle slices to encode how the middle frame goes with
its neighbours, which only full windows can teach. ``'decimated'`` (the
transmitted checkerboards, complementary parities) is kept for comparison.

The loop, orbax checkpoints, exact resume, SIGTERM handling, NaN guard and
progress bar come from :mod:`jaxvr.training.loop`; the batch is sharded over
the ``data`` mesh axis and the dictionary is replicated.
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import struct

from jaxvr import files
from jaxvr import sharding as shard_lib
from jaxvr.errors import ConfigError
from jaxvr.lca import dictionary as dict_lib
from jaxvr.lca import operators as ops
from jaxvr.lca.fista import fista
from jaxvr.lca.infer import infer
from jaxvr.training import data as data_lib
from jaxvr.training import loop

STD_FLOOR = 1.0  # in 0..255 pixel units, as in the codec's restoration


class TrainState(struct.PyTreeNode):
  """Dictionary learner state.

  Attributes:
    kernels: unit-norm dictionary ``[K, 3, kh, kw]``.
    velocity: previous update (momentum memory), same shape.
    step: number of updates applied.
  """
  kernels: jax.Array
  velocity: jax.Array
  step: jax.Array


def _dtype(config):
  return jnp.dtype(config.dtype)


def _check(config: ml_collections.ConfigDict) -> None:
  d, inf = config.dictionary, config.inference
  if d.frames != 3:
    raise ConfigError(f'config.dictionary.frames: expected 3 (kept, dropped, '
                      f'kept windows), got {d.frames}')
  if d.init not in ('patches', 'random'):
    raise ConfigError(f"config.dictionary.init: expected 'patches' or "
                      f"'random', got {d.init!r}")
  if inf.solver not in ('fista', 'lca'):
    raise ConfigError(f"config.inference.solver: expected 'fista' or 'lca', "
                      f"got {inf.solver!r}")
  if inf.windows not in ('full', 'decimated'):
    raise ConfigError(f"config.inference.windows: expected 'full' or "
                      f"'decimated', got {inf.windows!r}")
  if config.data.size < d.kernel_size:
    raise ConfigError(f'config.data.size: expected at least the kernel size '
                      f'{d.kernel_size}, got {config.data.size}')


def make_data(config: ml_collections.ConfigDict) -> data_lib.IndexedClips:
  """3-frame clips (consecutive frames) of ``config.data``."""
  d = config.data
  size = (d.size, d.size)
  if d.source == 'synthetic':
    return data_lib.SyntheticClips(3, size, batch_size=d.batch_size,
                                   seed=config.seed)
  scale = min(1.0, d.size / d.preload_short_side) if d.preload_short_side else 1.0
  return data_lib.videos_from_config(
      d, 3, size, seed=config.seed, frame_stride=1, crop='random',
      crop_scale=(scale, scale), flip=True)


def decimation_mask(n: int, height: int, width: int, dtype=jnp.float32):
  """Sparse MP4 window masks ``[n, 3, H, W]``: complementary checkerboards.

  Window i keeps sites with ``(y + x + i) % 2 == 0`` in its first frame, the
  other half in its last frame, and nothing in the middle frame.
  """
  yy, xx = jnp.mgrid[0:height, 0:width]
  parity = jnp.arange(n)[:, None, None]
  first = ((yy + xx + parity) % 2 == 0).astype(dtype)
  return jnp.stack([first, jnp.zeros_like(first), 1 - first], axis=1)


def windows(video: jax.Array, mode: str = 'full', dtype=jnp.float32):
  """Normalised single-channel windows of a batch of clips.

  Args:
    video: uint8 ``[B, 3, H, W, C]``.
    mode: 'full' (mask None) or 'decimated'.
    dtype: output dtype.

  Returns:
    ``(x, mask)``: x ``[B*C, 3, H, W]`` with zero mean and unit std over the
    observed pixels of each window (zero at unobserved ones), and the mask
    ``[B*C, 3, H, W]`` or None.
  """
  b, t, h, w, c = video.shape
  x = jnp.moveaxis(video.astype(dtype), -1, 1).reshape(b * c, t, h, w)
  if mode == 'full':
    mask = None
    mean = jnp.mean(x, axis=(1, 2, 3), keepdims=True)
    std = jnp.std(x, axis=(1, 2, 3), keepdims=True)
  else:
    mask = decimation_mask(b * c, h, w, dtype)
    count = jnp.maximum(jnp.sum(mask, axis=(1, 2, 3), keepdims=True), 1)
    mean = jnp.sum(x * mask, axis=(1, 2, 3), keepdims=True) / count
    std = jnp.sqrt(jnp.sum(((x - mean) * mask) ** 2, axis=(1, 2, 3),
                           keepdims=True) / count)
  x = (x - mean) / jnp.maximum(std, STD_FLOOR)
  return (x, None) if mask is None else (x * mask, mask)


def initial_kernels(config: ml_collections.ConfigDict,
                    data: data_lib.IndexedClips) -> np.ndarray:
  """Unit-norm initial dictionary ``[K, 3, kh, kw]`` (deterministic)."""
  d = config.dictionary
  k, p = d.n_kernels, d.kernel_size
  rng = np.random.default_rng([config.seed, 7])
  noise = rng.standard_normal((k, 3, p, p))
  if d.init == 'random':
    kernels = noise
  else:
    # The whole first global batch: every process (and every process
    # layout) must start from the same kernels.
    x, _ = windows(jnp.asarray(data.global_batch_at(0)['video']), 'full')
    x = np.asarray(x, np.float64)
    n, _, h, w = x.shape
    idx = rng.integers(0, n, k)
    ys = rng.integers(0, h - p + 1, k)
    xs = rng.integers(0, w - p + 1, k)
    patches = np.stack([x[i, :, y:y + p, c:c + p]
                        for i, y, c in zip(idx, ys, xs, strict=True)])
    patches = patches - patches.mean(axis=(1, 2, 3), keepdims=True)
    patches /= np.linalg.norm(patches.reshape(k, -1), axis=1)[:, None, None, None] + 1e-12
    noise /= np.linalg.norm(noise.reshape(k, -1), axis=1)[:, None, None, None]
    kernels = patches + d.init_noise * noise
  return np.asarray(dict_lib.normalize(jnp.asarray(kernels, jnp.float32)))


def make_train_step(config: ml_collections.ConfigDict, mesh):
  """Jitted ``(state, batch) -> (state, metrics)``."""
  d, inf, heb = config.dictionary, config.inference, config.hebbian
  stride, dtype = int(d.stride), _dtype(config)
  size = int(config.data.size)
  code = ops.code_shape((3, size, size), (d.n_kernels, 3, d.kernel_size,
                                          d.kernel_size), stride)
  method = ops.resolve_method(inf.method, (d.n_kernels, 3, d.kernel_size,
                                           d.kernel_size))

  def step(state: TrainState, batch: dict):
    x, mask = windows(batch['video'], inf.windows, dtype)
    kernels = state.kernels
    # ||Phi||^2 of the unmasked operator bounds every masked one.
    lip = 1.05 * ops.power_iteration(
        kernels, None, stride=stride, shape=code, hw=(size, size),
        n_iter=int(inf.power_iters), seed=0, method=method)
    if inf.solver == 'fista':
      codes = fista(x, kernels, stride=stride, lam=inf.lam, mask=mask,
                    n_steps=int(inf.n_steps), nonneg=inf.nonneg,
                    lipschitz=lip, method=method)
    else:
      codes = infer(x, kernels, stride=stride, lam=inf.lam, mask=mask,
                    n_steps=int(inf.n_steps), dt_over_tau=inf.dt_over_tau,
                    nonneg=inf.nonneg, method=method)
    codes = jax.lax.stop_gradient(codes)
    resid = x - ops.synthesis(codes, kernels, stride, (size, size))
    energy = jnp.sum(x * x, axis=(1, 2, 3))
    if mask is not None:
      resid = resid * mask
    data_term = 0.5 * jnp.sum(resid * resid, axis=(1, 2, 3))
    l1 = inf.lam * jnp.sum(jnp.abs(codes), axis=(1, 2, 3))
    new = dict_lib.hebbian_update(
        dict_lib.DictionaryState(kernels, state.velocity, state.step), x,
        codes, stride=stride, lr=heb.lr, mask=mask, momentum=heb.momentum,
        momentum_tau=heb.momentum_tau, decay=heb.decay)
    metrics = {
        'objective': jnp.mean(data_term + l1),
        'rel_residual': jnp.sum(2 * data_term) / jnp.maximum(jnp.sum(energy), 1e-12),
        'density': jnp.mean(codes != 0),
        'kernel_change': jnp.sqrt(jnp.sum((new.kernels - kernels) ** 2)),
    }
    return TrainState(new.kernels, new.velocity, new.step), metrics

  rep = shard_lib.replicated(mesh)
  return jax.jit(step, donate_argnums=(0,),
                 in_shardings=(rep, shard_lib.batch_sharding(mesh)),
                 out_shardings=(rep, rep))


def make_evaluate(config: ml_collections.ConfigDict):
  """Validation as the product decodes: Sparse MP4 restoration PSNR.

  Clips of ``data.val_frames`` frames at ``data.val_size`` px (one per video
  of ``data.val_dir``) are decimated, sent losslessly and restored with the
  current kernels by the ``sparse-mp4`` decoder (default
  ``RestoreConfig``). Logged: ``psnr`` and ``dropped_psnr`` (mean clip PSNR,
  RGB; all frames and dropped frames), the same for linear interpolation of
  the same stream (``floor_psnr``, ``floor_dropped_psnr``), and ``gain``.
  None without a validation folder.
  """
  from jaxvr import evaluation, sparse_mp4
  from jaxvr.sparse_mp4 import interpolate

  clips = data_lib.validation_clips_from_config(config.data, 64, 8)
  if clips is None:
    return None
  psnr = lambda a, b: evaluation.measure_quality(a, b, ('psnr',))['psnr']
  streams = [sparse_mp4.decode_observed(sparse_mp4.encode(c)) for c in clips]

  def scores(outs):
    return (float(np.mean([psnr(c, o) for c, o in zip(clips, outs,
                                                       strict=True)])),
            float(np.mean([psnr(c[1::2], o[1::2]) for c, o in zip(
                clips, outs, strict=True)])))

  def to_uint8(x):
    return np.clip(np.round(np.asarray(x)), 0, 255).astype(np.uint8)

  floor, floor_dropped = scores([to_uint8(interpolate.interpolate(o, m))
                                 for o, m in streams])

  def evaluate(state):
    kernels = np.asarray(jax.device_get(state.kernels), np.float32)
    outs = [to_uint8(sparse_mp4.restore(o, m, kernels,
                                        stride=config.dictionary.stride,
                                        progress=False))
            for o, m in streams]
    score, dropped = scores(outs)
    return ({'psnr': score, 'dropped_psnr': dropped, 'floor_psnr': floor,
             'floor_dropped_psnr': floor_dropped, 'gain': score - floor}, {})

  return evaluate


def run(config: ml_collections.ConfigDict, workdir: str | os.PathLike,
        callbacks=()) -> loop.LoopResult:
  """Trains (or resumes) the dictionary in ``workdir``.

  Args:
    config: see ``jaxvr/configs/lca_dictionary.py``.
    workdir: run folder (checkpoints, ``metrics.jsonl``, ``config.json``).
    callbacks: ``fn(step, state, metrics)`` after every step.

  Returns:
    The loop's result; ``result.state.kernels`` is ``[K, 3, kh, kw]``.
  """
  _check(config)
  mesh = shard_lib.make_mesh(config.n_devices)
  if config.data.batch_size % mesh.size:
    raise ConfigError(f'config.data.batch_size: expected a multiple of the '
                      f'{mesh.size} devices, got {config.data.batch_size}')
  d = config.dictionary
  shape = (d.n_kernels, 3, d.kernel_size, d.kernel_size)
  dtype = _dtype(config)
  data = make_data(config)

  def init():
    kernels = jnp.asarray(initial_kernels(config, data), dtype)
    return TrainState(kernels, jnp.zeros_like(kernels), jnp.zeros((), jnp.int32))

  abstract = TrainState(jax.ShapeDtypeStruct(shape, dtype),
                        jax.ShapeDtypeStruct(shape, dtype),
                        jax.ShapeDtypeStruct((), jnp.int32))
  with loop.open_checkpointer(workdir, config) as ckpt:
    state, start = loop.restore_or_init(ckpt, init, shard_lib.replicated(mesh),
                                        data, abstract_state=abstract,
                                        config=config)
    return loop.train_loop(state, make_train_step(config, mesh), data, config,
                           workdir, mesh=mesh, checkpointer=ckpt,
                           start_step=start, callbacks=callbacks,
                           evaluate=make_evaluate(config),
                           desc='lca dictionary')


def export_kernels(path: str | os.PathLike, kernels,
                   config: ml_collections.ConfigDict) -> None:
  """Writes ``kernels`` (float32 ``[K, 3, kh, kw]``) and its settings to npz."""
  kernels = np.asarray(kernels, np.float32)
  files.save_npz(path, kernels=kernels,
                 stride=np.int32(config.dictionary.stride),
                 lam=np.float32(config.inference.lam))
