"""Pure functions around the ST-MAE: init, target, loss and forward passes.

Feichtenhofer, Fan, Li, He, "Masked Autoencoders As Spatiotemporal Learners",
NeurIPS 2022. ``forward`` is the official ``forward(imgs, mask_ratio)`` on a
channels-last video. For many masks of one video (CARV), split it:
``encode_tokens`` computes the patch embedding and the loss target once, and
``forward_from_tokens`` runs encoder, decoder and loss for a batch of masks.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxvr.errors import ConfigError, ShapeError
from jaxvr.stmae import masking
from jaxvr.stmae.model import STMAE, STMAEConfig, stack_blocks
from jaxvr.video.tubes import patchify

Params = Any


class ForwardOutput(NamedTuple):
  """Result of a forward pass (a pytree).

  Attributes:
    loss: float32 scalar, mean per-token error over masked tokens.
    pred: ``[N, L, u*p*p*C]`` predictions in token order (compute dtype).
    mask: float32 ``[N, L]``, 1 = masked.
    ids_restore: int32 ``[N, L]``.
    ids_keep: int32 ``[N, len_keep]`` visible ids, ascending noise.
    latent: ``[N, len_keep, D]`` encoder output (cls removed).
    per_token_loss: float32 ``[N, L]`` mean squared error of every token.
    sample_loss: float32 ``[N]`` masked mean error of each sample.
  """
  loss: jax.Array
  pred: jax.Array
  mask: jax.Array
  ids_restore: jax.Array
  ids_keep: jax.Array
  latent: jax.Array
  per_token_loss: jax.Array
  sample_loss: jax.Array


class Tokens(NamedTuple):
  """Per-video work shared by every mask.

  Attributes:
    tokens: ``[N, L, D]`` patch embeddings (before positions and masking).
    target: float32 ``[N, L, u*p*p*C]`` loss target (normalised per token
      when ``norm_pix_loss``).
  """
  tokens: jax.Array
  target: jax.Array


def check_video(config: STMAEConfig, video, name: str = 'video') -> None:
  """Raises ShapeError unless ``video`` is ``[N, T, H, W, C]`` of the config."""
  shape = tuple(getattr(video, 'shape', ()))
  if len(shape) != 5 or shape[1:] != config.video_shape:
    t, h, w, c = config.video_shape
    raise ShapeError(
        f'{name}: expected [N, {t}, {h}, {w}, {c}] (channels last, the '
        f'model input size), got shape {shape}')
  if not jnp.issubdtype(video.dtype, jnp.floating):
    raise ShapeError(f'{name}: expected a float array (normalised video), got '
                     f'dtype {video.dtype}')


def _init_args(config: STMAEConfig):
  n = config.num_tokens
  ids = jnp.arange(n, dtype=jnp.int32)[None]
  video = jnp.zeros((1,) + config.video_shape, jnp.float32)
  return video, ids[:, :max(1, n // 4)], ids


def init_params(config: STMAEConfig, key: jax.Array) -> Params:
  """Fresh parameters (official initialisation scheme), float32.

  A ``scan_blocks`` config gets the same values as the default layout,
  stacked (:func:`jaxvr.stmae.stack_blocks`).
  """
  if config.scan_blocks:
    plain = dataclasses.replace(config, scan_blocks=False)
    return stack_blocks(init_params(plain, key), config)
  # Runs once; a low backend optimisation level halves its (RNG-bound)
  # compile time on CPU.
  init = STMAE(config).init
  if not isinstance(key, jax.core.Tracer):  # compiler options: top level only
    init = jax.jit(init, compiler_options={'xla_backend_optimization_level': 0})
  return init(key, *_init_args(config))['params']


def abstract_params(config: STMAEConfig) -> Params:
  """``jax.ShapeDtypeStruct`` tree of the parameters (no allocation)."""
  return jax.eval_shape(STMAE(config).init, jax.random.key(0),
                        *_init_args(config))['params']


def compute_target(config: STMAEConfig, video: jax.Array) -> jax.Array:
  """Loss target of a video.

  Args:
    config: model config.
    video: ``[N, T, H, W, C]``.

  Returns:
    float32 ``[N, L, u*p*p*C]``: the target frames (``target_frame_index``)
    patchified, then per token ``(x - mean) / sqrt(var + 1e-6)`` with the
    unbiased variance when ``norm_pix_loss``.
  """
  idx = np.asarray(config.target_frame_index)
  frames = jnp.asarray(video, jnp.float32)[:, idx]
  p = config.patch_size
  target = patchify(frames, (config.t_pred_patch_size, p, p))
  if config.norm_pix_loss:
    mean = target.mean(axis=-1, keepdims=True)
    var = target.var(axis=-1, keepdims=True, ddof=1)
    target = (target - mean) / jnp.sqrt(var + 1e-6)
  return target


def _apply(params, config, *args, method):
  return STMAE(config).apply({'params': params}, *args,
                             method=getattr(STMAE, method))


def _encode_tokens(params: Params, config: STMAEConfig,
                   video: jax.Array) -> Tokens:
  tokens = _apply(params, config, video, method='embed')
  return Tokens(tokens, compute_target(config, video))


def _from_tokens(params: Params, config: STMAEConfig, tokens: Tokens,
                 noise: jax.Array, keep: int) -> ForwardOutput:
  ids = masking.ids_from_noise(noise, keep)
  latent, cls = _apply(params, config, tokens.tokens, ids.ids_keep,
                       method='encode')
  pred = _apply(params, config, latent, cls, ids.ids_restore, method='decode')
  err = jnp.mean((pred.astype(jnp.float32) - tokens.target) ** 2, axis=-1)
  masked = jnp.sum(err * ids.mask, axis=1)
  count = jnp.sum(ids.mask, axis=1)
  loss = jnp.sum(masked) / jnp.sum(count)
  return ForwardOutput(loss, pred, ids.mask, ids.ids_restore, ids.ids_keep,
                       latent, err, masked / count)


@functools.partial(jax.jit, static_argnames=('config',))
def _encode_tokens_jit(params, video, *, config):
  return _encode_tokens(params, config, video)


@functools.partial(jax.jit, static_argnames=('config', 'keep'))
def _from_tokens_jit(params, tokens, noise, *, config, keep):
  return _from_tokens(params, config, tokens, noise, keep)


@functools.partial(jax.jit, static_argnames=('config', 'keep'))
def _forward_jit(params, video, noise, *, config, keep):
  return _from_tokens(params, config, _encode_tokens(params, config, video),
                      noise, keep)


def _noise(config: STMAEConfig, batch: int, noise, key) -> jax.Array:
  if (noise is None) == (key is None):
    raise ConfigError('noise/key: pass exactly one of them (noise [N, L] or a '
                      'jax.random key)')
  n = config.num_tokens
  if noise is None:
    return masking.sample_noise(key, batch, n)
  shape = tuple(getattr(noise, 'shape', ()))
  if shape != (batch, n):
    raise ShapeError(f'noise: expected [{batch}, {n}] (batch, tokens), got '
                     f'shape {shape}')
  return jnp.asarray(noise, jnp.float32)


def encode_tokens(params: Params, config: STMAEConfig,
                  video: jax.Array) -> Tokens:
  """Patch embedding and loss target of a batch of videos (jitted).

  Args:
    params: model parameters.
    config: model config.
    video: ``[N, T, H, W, C]`` normalised video at the model input size.

  Returns:
    :class:`Tokens` to pass to :func:`forward_from_tokens` with many masks.
  """
  check_video(config, video)
  return _encode_tokens_jit(params, video, config=config)


def forward_from_tokens(params: Params, config: STMAEConfig, tokens: Tokens, *,
                        noise: jax.Array | None = None,
                        key: jax.Array | None = None,
                        mask_ratio: float) -> ForwardOutput:
  """Encoder, decoder and loss for masks of already embedded videos (jitted).

  Args:
    params: model parameters.
    config: model config.
    tokens: from :func:`encode_tokens`; a batch of 1 is shared by every mask.
    noise: ``[N, L]`` masking noise, or None to draw it from ``key``.
    key: random key used when ``noise`` is None.
    mask_ratio: fraction of masked tokens.

  Returns:
    :class:`ForwardOutput` for the ``N`` masks.
  """
  keep = masking.len_keep(config.num_tokens, mask_ratio)
  n_video = tokens.tokens.shape[0]
  batch = n_video if noise is None else np.shape(noise)[0]
  noise = _noise(config, batch, noise, key)
  if n_video not in (1, noise.shape[0]):
    raise ShapeError(f'tokens: expected 1 or {noise.shape[0]} videos to match '
                     f'noise, got {n_video}')
  if n_video == 1 and noise.shape[0] > 1:
    tokens = Tokens(tokens.tokens, jnp.broadcast_to(
        tokens.target, (noise.shape[0],) + tokens.target.shape[1:]))
  return _from_tokens_jit(params, tokens, noise, config=config, keep=keep)


def forward(params: Params, config: STMAEConfig, video: jax.Array, *,
            noise: jax.Array | None = None, key: jax.Array | None = None,
            mask_ratio: float) -> ForwardOutput:
  """The official ST-MAE forward pass (jitted), channels-last.

  Args:
    params: model parameters (``init_params`` or ``convert_state_dict``).
    config: model config.
    video: ``[N, T, H, W, C]`` normalised float video at the input size.
    noise: ``[N, L]`` uniform masking noise (the official code draws it with
      ``torch.rand``); smallest values stay visible.
    key: random key to draw the noise instead.
    mask_ratio: fraction of masked tokens; ``len_keep = int(L*(1-ratio))``.

  Returns:
    :class:`ForwardOutput` with ``loss``, ``pred``, ``mask``,
    ``ids_restore``, ``ids_keep``, ``latent``, per-token and per-sample losses.

  Raises:
    ShapeError: bad video or noise shape.
    ConfigError: bad mask ratio (none visible) or not exactly one of
      noise/key.
  """
  check_video(config, video)
  keep = masking.len_keep(config.num_tokens, mask_ratio)
  noise = _noise(config, video.shape[0], noise, key)
  return _forward_jit(params, video, noise, config=config, keep=keep)


def forward_unjitted(params: Params, config: STMAEConfig, video: jax.Array,
                     noise: jax.Array, mask_ratio: float) -> ForwardOutput:
  """:func:`forward` without the jit wrapper (for tracing inside other code)."""
  keep = masking.len_keep(config.num_tokens, mask_ratio)
  return _from_tokens(params, config, _encode_tokens(params, config, video),
                      noise, keep)
