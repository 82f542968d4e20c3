"""Chunk significance from an ST-MAE by random mask sampling.

Chhabra & Yang, "Algorithmic Video Reduction by Estimating Chunk Significance
Using Spatial-Temporal Masked Auto Encoders". The ST-MAE (Feichtenhofer et
al., 2022) reconstructs one clip under ``n_samples`` independent random masks;
every token of the model (a ``kt x p x p`` tubelet) is a chunk.

Estimators:

* ``"visible"`` (the paper's marginal mask loss): for every chunk, the mean
  of the sample reconstruction loss (masked-token mean, the training loss)
  over the samples in which that chunk was visible. A chunk whose visibility
  lowers the loss carries information the rest of the clip does not.
* ``"masked"``: for every chunk, its own reconstruction error averaged over
  the samples in which it was masked (how hard it is to predict).

Chunks never seen in the required state (possible for a small ``n_samples``
at a high mask ratio) get the mean sample loss, a neutral value.

The per-video work is done once: the patch embedding, the loss target and
the part of the decoder every mask shares (:mod:`jaxvr.stmae.many_masks`:
at ratio 0.98 most of the first decoder block and the prediction head, about
1.5x less time per mask on CPU). The masks run in batches of ``batch_size``,
several batches per compiled call (a loop inside one jit, so memory does not
grow with ``n_samples``), each batch split over every device on the ``data``
mesh axis; in a multi-process run (see
``jaxvr.sharding.maybe_initialize_distributed``) that is every
device of every process, and every process receives the whole map. Sample
``i`` uses the noise drawn from ``fold_in(key, i)``, so the map depends on
the key only, not on the batch size, the device count or the process count
(up to float32 summation order).
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
from tqdm.auto import tqdm

from jaxvr.errors import ConfigError, ShapeError
from jaxvr.sharding import make_mesh, put_global
from jaxvr.stmae import many_masks, masking
from jaxvr.stmae.forward import encode_tokens
from jaxvr.stmae.model import STMAEConfig

ESTIMATORS = ('visible', 'masked')
# Masks per device and batch when not given. On CPU small batches win: the
# decoder's attention logits of a larger batch fall out of cache.
DEFAULT_BATCH_PER_DEVICE = {'cpu': 8}
DEFAULT_BATCH_ACCELERATOR = 64
# Batches per compiled call: amortises dispatch and keeps the progress bar
# moving (a call is a fraction of a second on CPU).
BATCHES_PER_CALL = 8


def sample_noise(key: jax.Array, sample_ids: jax.Array,
                 num_tokens: int) -> jax.Array:
  """Masking noise ``[B, L]`` of samples ``sample_ids`` (``fold_in(key, i)``)."""
  keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(sample_ids)
  return jax.vmap(lambda k: jax.random.uniform(k, (num_tokens,)))(keys)


def zero_sums(num_tokens: int) -> tuple:
  """Empty per-chunk sums: (loss_vis, n_vis, err_m, n_m ``[L]``, loss ``[]``)."""
  zeros = jnp.zeros((num_tokens,), jnp.float32)
  return (zeros, zeros, zeros, zeros, jnp.zeros((), jnp.float32))


def chunk_sums(out: many_masks.MaskLosses, valid: jax.Array) -> tuple:
  """Per-chunk sums of a batch of masks, counting those with ``valid [N]`` 1.

  Returns:
    ``(loss_vis, n_vis, err_m, n_m, loss)`` as in :func:`zero_sums`.
  """
  valid = valid.astype(jnp.float32)[:, None]
  visible = (1.0 - out.mask) * valid
  masked = out.mask * valid
  loss = out.sample_loss[:, None]
  return (jnp.sum(loss * visible, 0), jnp.sum(visible, 0),
          jnp.sum(out.per_token_loss * masked, 0), jnp.sum(masked, 0),
          jnp.sum(loss[:, 0] * valid[:, 0]))


def _batch_stats(params, config: STMAEConfig, shared, key, sample_ids,
                 n_samples: int, keep: int, sharding):
  """Per-chunk sums of one batch of masks (padded ids beyond ``n_samples`` ignored)."""
  sample_ids = jax.lax.with_sharding_constraint(sample_ids, sharding)
  noise = sample_noise(key, sample_ids, config.num_tokens)
  out = many_masks.mask_losses(params, config, shared, noise, keep)
  return chunk_sums(out, sample_ids < n_samples)


@functools.partial(jax.jit, static_argnames=('config',))
def _shared_work(params, tokens, *, config):
  return many_masks.shared_work(params, config, tokens)


@functools.partial(jax.jit, static_argnames=('config', 'batch', 'keep',
                                             'mesh'))
def _add_batches(carry, params, shared, key, n_samples, first, stop, *,
                 config, batch, keep, mesh):
  """``carry`` plus the per-chunk sums of batches ``first .. stop - 1``.

  One compiled function for every call (the batch range is traced); the
  host loop over calls drives the progress bar, and the sums stay on
  device, replicated so every process can read the whole map. (The sums are
  a few kilobytes: nothing to gain from donating them.)
  """
  def add_batch(b, carry):
    ids = b * batch + jnp.arange(batch, dtype=jnp.int32)
    stats = _batch_stats(params, config, shared, key, ids, n_samples, keep,
                         NamedSharding(mesh, P('data')))
    return jax.tree.map(jnp.add, carry, stats)

  carry = jax.lax.fori_loop(first, stop, add_batch, carry)
  return jax.lax.with_sharding_constraint(carry, NamedSharding(mesh, P()))


def _check_video(config: STMAEConfig, video) -> None:
  shape = tuple(getattr(video, 'shape', ()))
  if shape != config.video_shape:
    raise ShapeError(
        f'video: expected one clip [T, H, W, C] = {list(config.video_shape)} '
        f'at the model input size (already normalised), got shape {shape}')
  if not jnp.issubdtype(video.dtype, jnp.floating):
    raise ShapeError(f'video: expected a normalised float clip, got dtype '
                     f'{video.dtype}')


def resolve_batch_size(batch_size: int | None, n_samples: int,
                       n_devices: int) -> int:
  """Masks per batch: the request rounded up to a multiple of the devices.

  ``None`` picks 8 masks per device on CPU and ``min(64, n_samples)`` on
  GPU/TPU. Rounding up only adds padded masks that are computed and ignored,
  so the map does not change.
  """
  if batch_size is None:
    per_device = DEFAULT_BATCH_PER_DEVICE.get(jax.default_backend())
    b = (per_device * n_devices if per_device else
         min(DEFAULT_BATCH_ACCELERATOR, n_samples))
  else:
    b = int(batch_size)
  if b < 1:
    raise ConfigError(f'batch_size: expected a positive integer, got {batch_size}')
  return math.ceil(b / n_devices) * n_devices


def significance_sums(params, config: STMAEConfig, video: jax.Array,
                      key: jax.Array, *, n_samples: int, mask_ratio: float,
                      batch_size: int | None = None, mesh=None,
                      progress: bool = True) -> dict[str, jax.Array]:
  """Raw per-chunk sums of the sampling (see :func:`estimate_significance`).

  Returns:
    Dict of float32 arrays over tokens ``[L]``: ``loss_visible`` (sum of
    sample losses where the chunk was visible), ``n_visible``,
    ``error_masked`` (sum of the chunk's error where masked), ``n_masked``,
    and the scalar ``loss_total`` (sum of all sample losses).
  """
  _check_video(config, video)
  if int(n_samples) < 1:
    raise ConfigError(f'n_samples: expected at least 1, got {n_samples}')
  n_samples = int(n_samples)
  keep = masking.len_keep(config.num_tokens, mask_ratio)
  mesh = make_mesh() if mesh is None else mesh
  batch = resolve_batch_size(batch_size, n_samples, mesh.size)
  n_batches = math.ceil(n_samples / batch)
  replicated = NamedSharding(mesh, P())
  # Computed where the parameters are, then copied to every device of the
  # mesh (of every process, in a multi-process run).
  tokens = encode_tokens(params, config, jnp.asarray(video)[None])
  shared = _shared_work(params, tokens, config=config)
  params, shared, key = put_global((params, shared, key), replicated)
  sums = put_global(zero_sums(config.num_tokens), replicated)
  n = jnp.int32(n_samples)
  with tqdm(total=n_batches, desc='significance', unit='batch',
            disable=not progress, leave=False) as bar:
    for first in range(0, n_batches, BATCHES_PER_CALL):
      stop = min(first + BATCHES_PER_CALL, n_batches)
      # Waiting for each call keeps the bar honest; a call is many masks.
      sums = jax.block_until_ready(_add_batches(
          sums, params, shared, key, n, jnp.int32(first), jnp.int32(stop),
          config=config, batch=batch, keep=keep, mesh=mesh))
      bar.update(stop - first)
  names = ('loss_visible', 'n_visible', 'error_masked', 'n_masked',
           'loss_total')
  return dict(zip(names, sums, strict=True))


def estimate_significance(params, config: STMAEConfig, video: jax.Array,
                          key: jax.Array, *, n_samples: int, mask_ratio: float,
                          batch_size: int | None = None,
                          estimator: str = 'visible', mesh=None,
                          progress: bool = True) -> jax.Array:
  """Significance of every ST-MAE chunk of one clip.

  Args:
    params: ST-MAE parameters.
    config: its config.
    video: ``[T, H, W, C]`` one clip at the model input size, normalised as
      the model was trained (mean 0.45, std 0.225 for the released models).
    key: random key; sample ``i`` masks with noise from ``fold_in(key, i)``.
    n_samples: number of random masks (paper: 500).
    mask_ratio: masked fraction per sample (paper: 0.98).
    batch_size: masks per batch (memory bound); rounded up to a multiple of
      the device count; default 8 per device on CPU, ``min(64, n_samples)``
      on accelerators.
    estimator: ``"visible"`` (marginal mask loss) or ``"masked"``.
    mesh: device mesh with a ``data`` axis; default all devices.
    progress: show a progress bar over batches.

  Returns:
    float32 ``[t', h', w']`` significance (higher = larger loss).

  Raises:
    ShapeError: the clip is not ``[T, H, W, C]`` of the model.
    ConfigError: bad estimator, ``n_samples``, ``batch_size`` or mask ratio.
  """
  if estimator not in ESTIMATORS:
    raise ConfigError(f'estimator: expected one of {ESTIMATORS}, got '
                      f'{estimator!r}')
  sums = significance_sums(params, config, video, key, n_samples=n_samples,
                           mask_ratio=mask_ratio, batch_size=batch_size,
                           mesh=mesh, progress=progress)
  return significance_from_sums(sums, estimator, config.grid, n_samples)


def significance_from_sums(sums: dict[str, jax.Array], estimator: str,
                           grid: tuple[int, int, int],
                           n_samples: int) -> jax.Array:
  """Turns :func:`significance_sums` into a ``[t', h', w']`` map."""
  fallback = sums['loss_total'] / n_samples
  if estimator == 'visible':
    num, den = sums['loss_visible'], sums['n_visible']
  else:
    num, den = sums['error_masked'], sums['n_masked']
  value = jnp.where(den > 0, num / jnp.maximum(den, 1.0), fallback)
  return value.reshape(grid)


def spearman(a, b) -> float:
  """Spearman rank correlation of two maps (average ranks for ties)."""
  from scipy.stats import spearmanr
  return float(spearmanr(np.ravel(np.asarray(a)),
                         np.ravel(np.asarray(b))).statistic)
