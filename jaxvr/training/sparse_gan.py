"""Training of the sparse-pixel video GAN and its No-Mask-Gen baselines.

Nittala, Tumarada, Churiwala, "Relevance of Sparse pixel representations to
Lossy Video Compression" (after Peter's MG+WGAN and Vasata et al.'s WGAIN).
The full model (learned masks) and the "No Mask Gen" 5 % / 10 % baselines
(exact-count random masks) come from the same entry point; the config lives
in ``jaxvr/configs/sparse_gan.py`` and the jitted step in
:mod:`jaxvr.training.sparse_gan_step`.

Clips come from a folder of videos: every video is decoded once with its
short side shrunk to the frame size, then each sample takes a random start
frame, the centred largest square and a random horizontal flip (the spec's
"centre-crop 240x240, resize to 128" for 320x240 UCF-101 videos).

Data parallel over the devices of a ``jaxvr.sharding`` mesh; the
state is replicated and donated, the batch sharded. Checkpoints, JSONL logs
(achieved density, PSNR and losses per logged window), the NaN guard, SIGTERM
saves and exact resume come from :mod:`jaxvr.training.loop`; in addition
``<workdir>/density.jsonl`` records the achieved density of every single
step (mean, min, max over the batch's frames).
"""

from __future__ import annotations

import functools
import json
import logging
import os
import pathlib
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxvr import sharding as shard_lib
from jaxvr.errors import ConfigError
from jaxvr.sparsegan import models as models_lib
from jaxvr.training import data as data_lib
from jaxvr.training import loop, writers
from jaxvr.training import sparse_gan_step as ts

DENSITY_FILE = 'density.jsonl'

# Fields the shared loop and the data pipeline need that the model config
# does not carry; ``trainer_config`` adds them when they are missing.
_TRAINER_DEFAULTS = {
    'n_devices': None,            # None = every device
    'fast_compile': False,        # XLA backend optimisation level 0 (CPU)
    'data.source': 'videos',      # 'videos' (clips_dir) or 'synthetic'
    'data.preload_short_side': -1,  # -1 = the frame size; 0 = no preload
    'data.num_workers': 0,
    'eval_every': 0,
    'tensorboard': False,
    'init_weights': '',
}


def trainer_config(config: ml_collections.ConfigDict
                   ) -> ml_collections.ConfigDict:
  """An unlocked copy of ``config`` with the fields the shared loop reads.

  Adds ``ckpt_every`` / ``keep_ckpts`` (from ``config.ckpt.every`` /
  ``config.ckpt.keep``) and the defaults of ``n_devices``, ``fast_compile``
  (compile the step with XLA's backend optimisation level 0: faster to
  compile on CPU, slower to run; for short runs), ``data.source``,
  ``data.preload_short_side`` and ``data.num_workers`` when absent.

  Args:
    config: from ``jaxvr/configs/sparse_gan.py`` (possibly locked).

  Returns:
    A new ConfigDict; ``config`` is not modified.
  """
  c = ml_collections.ConfigDict(config.to_dict())
  c.ckpt_every = int(c.ckpt.every)
  c.keep_ckpts = int(c.ckpt.keep)
  for dotted, value in _TRAINER_DEFAULTS.items():
    *parents, name = dotted.split('.')
    node = c
    for p in parents:
      node = node[p]
    if name not in node:
      if value is None:
        node[name] = ml_collections.FieldReference(None, field_type=int)
      else:
        node[name] = value
  return c


def make_data(config: ml_collections.ConfigDict) -> data_lib.IndexedClips:
  """The clip iterator of ``config.data``: uint8 ``[B, T, S, S, 3]`` batches.

  Raises:
    ConfigError: for an unknown source or a missing ``clips_dir``.
  """
  d = config.data
  size = (int(d.frame_size), int(d.frame_size))
  if d.source == 'synthetic':
    return data_lib.SyntheticClips(int(d.num_frames), size,
                                   batch_size=int(d.batch_size),
                                   seed=int(config.seed))
  if d.source != 'videos':
    raise ConfigError(f"config.data.source: expected 'videos' or "
                      f"'synthetic', got {d.source!r}")
  preload = int(d.preload_short_side)
  if preload < 0:
    preload = int(d.frame_size)
  d = ml_collections.ConfigDict({**d.to_dict(), 'preload_short_side': preload})
  lo, hi = d.get('crop_scale', (1.0, 1.0))
  return data_lib.videos_from_config(
      d, int(d.num_frames), size, seed=int(config.seed),
      crop=d.get('crop', 'center'), crop_scale=(lo, hi), flip=bool(d.flip))


class DensityTrace:
  """Step callback writing each step's achieved density to JSONL.

  The per-step scalars stay on device and are pulled every ``every`` steps
  (and on :meth:`flush`). On construction, records past ``start_step`` (left
  by a run that stopped before saving) are dropped, so a resumed run's file
  equals an uninterrupted one's.

  Args:
    path: the JSONL file.
    start_step: the step the run starts (or resumes) from.
    every: how often to write.
    write: False on non-main processes.
  """

  def __init__(self, path: str | os.PathLike, start_step: int, every: int,
               write: bool = True):
    self.path = pathlib.Path(path)
    self.every = max(1, int(every))
    self._file = writers.JsonlWriter(self.path) if write else None
    self._pending: list[tuple[int, dict]] = []
    if self._file is not None:
      self._file.truncate_after(start_step)

  def __call__(self, step: int, state: Any, metrics: dict) -> None:
    del state
    self._pending.append((step, {k: metrics[k] for k in (
        'density', 'density_min', 'density_max', 'zero_frames')}))
    if step % self.every == 0:
      self.flush()

  def flush(self) -> None:
    """Writes the pending records."""
    if not self._pending:
      return
    steps = [s for s, _ in self._pending]
    values = jax.device_get([m for _, m in self._pending])
    self._pending = []
    if self._file is None:
      return
    for step, m in zip(steps, values, strict=True):
      self._file.record({'step': step, **{k: float(v) for k, v in m.items()}})


def read_density(workdir: str | os.PathLike) -> list[dict]:
  """The per-step records of ``<workdir>/density.jsonl``, in order."""
  return writers.read_jsonl(pathlib.Path(workdir) / DENSITY_FILE)


def _check(config: ml_collections.ConfigDict, mesh) -> None:
  d = config.data
  if d.batch_size % mesh.size:
    raise ConfigError(
        f'config.data.batch_size: expected a multiple of the {mesh.size} '
        f'devices, got {d.batch_size}')
  if config.model.spatial_padding == 'VALID' and d.frame_size < 125:
    raise ConfigError(
        f'config.model.spatial_padding: VALID needs frames of at least 125 '
        f"px, got data.frame_size={d.frame_size}; use 'SAME'")
  if not 0.0 < float(config.model.density) < 1.0:
    raise ConfigError(f'config.model.density: expected a fraction in (0, 1), '
                      f'got {config.model.density}')


def _step_key(config: ml_collections.ConfigDict) -> str:
  """The config fields the models, init and step depend on, as a key."""
  return json.dumps({'fast_compile': bool(config.fast_compile),
                     'model': config.model.to_dict(),
                     'loss': config.loss.to_dict(),
                     'optim': config.optim.to_dict(),
                     'frame_size': int(config.data.frame_size)},
                    sort_keys=True, default=str)


@functools.lru_cache(maxsize=4)
def _compiled(key: str, mesh):
  """Models, jitted init and jitted step; equal settings share them.

  Repeated runs in one process (resume, baselines, tests) then compile once.
  """
  config = ml_collections.ConfigDict(json.loads(key))
  config.data = ml_collections.ConfigDict({'frame_size': config.frame_size})
  models = models_lib.build_models(config)
  opts = ts.fast_compile_options() if config.fast_compile else None
  return (models, ts.make_init(config, mesh, models),
          ts.make_train_step(config, mesh, models, compiler_options=opts))


def make_evaluate(config: ml_collections.ConfigDict, models: models_lib.Models):
  """Validation exactly as the product decodes: PSNR on validation clips.

  Clips of ``data.val_frames`` frames at ``data.val_size`` px (one per video
  of ``data.val_dir``) go through :mod:`jaxvr.sparsegan.inference` (the
  learned mask, or exact-count random masks of the model's density with
  seed 0 as the ``random-mask-d*`` reducers draw them), the payload's kept
  pixels and the tiled inpainting. Logged: ``psnr`` (mean over clips of the
  clip PSNR, RGB), ``floor_psnr`` (normalized convolution of the same kept
  pixels), their difference ``gain``, and for learned masks the achieved
  ``density``; plus an image grid (frames, masks, restorations). None when
  no validation folder is set.
  """
  from jaxvr import evaluation
  from jaxvr.sparsegan import inference, normconv
  from jaxvr.training import writers

  clips = data_lib.validation_clips_from_config(config.data, 112, 16)
  if clips is None:
    return None
  learned = models.mask is not None
  fixed_masks = None if learned else [
      inference.random_video_mask(c.shape[:3], float(config.model.density))
      for c in clips]

  def psnr(a, b):
    return evaluation.measure_quality(a, b, ('psnr',))['psnr']

  def evaluate(state) -> tuple[dict, dict]:
    params = jax.device_get(state.gen.params)
    weights = inference.SparseGan(params, config, models)
    scores = {'psnr': [], 'floor_psnr': [], 'density': []}
    shown = None
    for i, clip in enumerate(clips):
      mask = (inference.predict_mask(clip, weights) if learned
              else fixed_masks[i])
      sparse = np.where(mask[..., None], clip, 0).astype(np.uint8)
      out = inference.inpaint(sparse, mask, weights)
      floor = normconv.fill_video(sparse, mask)
      scores['psnr'].append(psnr(clip, out))
      scores['floor_psnr'].append(psnr(clip, floor))
      scores['density'].append(float(mask.mean()))
      if i == 0:
        k = slice(0, None, max(1, len(clip) // 4))
        shown = writers.image_grid(
            [clip[k], np.repeat(mask[k, ..., None], 3, -1).astype(np.uint8)
             * 255, floor[k], out[k]])
    result = {k: float(np.mean(v)) for k, v in scores.items()}
    result['gain'] = result['psnr'] - result['floor_psnr']
    if not learned:
      del result['density']
    return result, {'clip0_frames_mask_floor_restored': shown}

  return evaluate


def with_init_weights(state: ts.GanState,
                      config: ml_collections.ConfigDict) -> ts.GanState:
  """Starts the generators from an exported weights folder (fine-tuning).

  ``config.init_weights`` names a folder written by ``--export`` (or a
  bundled one); its ``frame`` parameters replace the fresh inpainting
  generator's, and its ``mask`` parameters the mask generator's when both
  sides have one (a No-Mask-Gen export starts a full model's inpainter
  only). Optimiser moments start at zero either way. Used for fresh runs
  only; a resumed run restores its own checkpoint.

  A model with more inputs than the saved one (an inpainter given extra
  temporal fills, ``model.fill_sigma_ts``) starts from it too: the new
  inputs are the last input channels, so kernels whose input axis grew get
  zero weights for them, and the grown model computes exactly what the
  saved one did until training uses the new inputs.

  Raises:
    CheckpointError: if the saved parameters do not fit this model.
  """
  from jaxvr import checkpoint
  from jaxvr.errors import CheckpointError

  folder = config.get('init_weights')
  if not folder:
    return state
  saved, _ = checkpoint.load_params(folder, float_dtype=jnp.float32)
  params = dict(state.gen.params)
  for name in ('frame', 'mask'):
    if name not in saved or name not in params:
      continue
    if (jax.tree.structure(saved[name]) != jax.tree.structure(params[name])
        or not all(jax.tree.leaves(jax.tree.map(
            _fits, saved[name], params[name])))):
      raise CheckpointError(
          f'config.init_weights {folder}: the {name!r} parameters do not fit '
          f'this model (other width, residual switch or frame layout)')
    params[name] = jax.tree.map(_grow_inputs, saved[name], params[name])
  logging.info('generators initialised from %s (%s)', folder,
               ', '.join(k for k in ('frame', 'mask') if k in saved
                         and k in params))
  return state.replace(gen=state.gen.replace(params=params))


def _fits(saved: jax.Array, fresh: jax.Array) -> bool:
  """Same dtype and shape, up to a kernel input axis (-2) that grew."""
  if saved.dtype != fresh.dtype or saved.ndim != fresh.ndim:
    return False
  if saved.shape == fresh.shape:
    return True
  return (saved.ndim >= 2 and saved.shape[-1] == fresh.shape[-1]
          and saved.shape[:-2] == fresh.shape[:-2]
          and saved.shape[-2] < fresh.shape[-2])


def _grow_inputs(saved: jax.Array, fresh: jax.Array) -> jax.Array:
  """``saved`` zero-padded at the end of its input axis to ``fresh``'s."""
  saved = jnp.asarray(saved)
  grow = fresh.shape[-2] - saved.shape[-2] if saved.ndim >= 2 else 0
  if not grow:
    return saved
  widths = [(0, 0)] * saved.ndim
  widths[-2] = (0, grow)
  return jnp.pad(saved, widths)


def run(config: ml_collections.ConfigDict, workdir: str | os.PathLike,
        callbacks: Any = ()) -> loop.LoopResult:
  """Trains (or resumes) a sparse-pixel GAN in ``workdir``.

  Resumes from the latest checkpoint in ``<workdir>/ckpt`` when there is one;
  writes ``metrics.jsonl``, ``density.jsonl`` and ``config.json`` there.

  Args:
    config: from ``jaxvr/configs/sparse_gan.py`` (``trainer_config`` is
      applied here).
    workdir: run folder.
    callbacks: extra ``fn(step, state, metrics)`` called after every step.

  Returns:
    The loop result; ``result.state`` is a ``GanState`` whose
    ``gen.params`` are ``{'mask': ..., 'frame': ...}`` (no ``'mask'`` for the
    random-mask baselines).
  """
  config = trainer_config(config)
  mesh = shard_lib.make_mesh(config.n_devices)
  _check(config, mesh)
  if shard_lib.is_main_process():
    logging.info('sparse GAN config:\n%s', config)
  models, init, step_fn = _compiled(_step_key(config), mesh)
  key = jax.random.key(int(config.seed))
  data = make_data(config)
  with loop.open_checkpointer(workdir, config) as ckpt:
    abstract = jax.eval_shape(
        lambda k: ts.init_state(config, k, models), key)
    state, start = loop.restore_or_init(
        ckpt, lambda: with_init_weights(init(key), config),
        shard_lib.replicated(mesh), data, abstract_state=abstract,
        config=config)
    trace = DensityTrace(pathlib.Path(workdir) / DENSITY_FILE, start,
                         config.log_every, shard_lib.is_main_process())
    try:
      result = loop.train_loop(
          state, step_fn, data, config, workdir, mesh=mesh,
          checkpointer=ckpt, start_step=start,
          callbacks=(trace, *callbacks),
          evaluate=make_evaluate(config, models), desc='sparse_gan')
    finally:
      trace.flush()
  return result


def export_params(directory: str | os.PathLike, result: loop.LoopResult,
                  config: ml_collections.ConfigDict, *,
                  dtype: str | None = None) -> pathlib.Path:
  """Writes the generator parameters and the config as a weights folder.

  ``jaxvr.sparsegan.inference.load`` reads it back (as float32). The
  recorded config leaves out ``data.cache_dir``: a decode cache is a
  location on the training machine, not part of the recipe.

  Args:
    directory: destination folder.
    result: what :func:`run` returned.
    config: the run's config.
    dtype: store floating-point parameters in this dtype (``'float16'``
      halves a bundle); None keeps the training dtype.

  Returns:
    The folder (absolute).
  """
  from jaxvr import checkpoint
  params = jax.device_get(result.state.gen.params)
  cast = lambda a: (a.astype(jnp.dtype(dtype)) if dtype is not None
                    and np.issubdtype(a.dtype, np.floating) else a)
  params = jax.tree.map(lambda a: cast(np.asarray(a)), params)
  recorded = trainer_config(config)
  recorded.data.cache_dir = ''
  return checkpoint.save_params(directory, params, recorded)
