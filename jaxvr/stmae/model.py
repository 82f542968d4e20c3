"""Spatiotemporal masked autoencoder (ST-MAE) in Flax Linen.

Feichtenhofer, Fan, Li, He, "Masked Autoencoders As Spatiotemporal Learners",
NeurIPS 2022 (arXiv:2205.09113). Numerically the official ``mae_st`` model:
tubelet patch embedding, learned (separable or joint) positional tables,
optional cls token, pre-norm ViT blocks with separate q/k/v projections and
exact GELU, random masking by argsort of uniform noise, a light decoder that
predicts ``t_pred_patch_size`` frames per token, and the masked MSE loss with
optional per-token pixel normalisation (unbiased variance).

Arrays are channels-last: videos ``[N, T, H, W, C]``. Token order and the
per-token pixel order are the official ones (see :mod:`jaxvr.video.tubes`).
The options ``decoder_sep_pos_embed``, ``decoder_cls_from_encoder`` and
``target_frames`` reproduce the PySlowFast variant the released pre-trained
weights come from (see :func:`pyslowfast_config`).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from jaxvr.errors import CheckpointError, ConfigError

_TARGET_FRAMES = ('linspace', 'stride')

# Per-block rematerialisation: what the backward pass keeps of a block.
REMAT_POLICIES = {
    'none': None,                # no remat: every activation is kept
    'dots': jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
    'full': jax.checkpoint_policies.nothing_saveable,
}


@dataclasses.dataclass(frozen=True)
class STMAEConfig:
  """ST-MAE hyper-parameters, named as the official constructor's keywords.

  Defaults are the official class defaults, except ``layernorm_eps`` which is
  1e-6 as in every official model factory (the bare class would use 1e-5).
  ``trunc_init`` only changes initialisation. Extra fields:

  Attributes:
    layernorm_eps: LayerNorm epsilon.
    dtype: compute dtype (``'float32'`` or ``'bfloat16'``); parameters and
      the loss stay float32.
    decoder_sep_pos_embed: separable decoder positional tables; None follows
      ``sep_pos_embed`` (official). PySlowFast uses a joint table.
    decoder_cls_from_encoder: when ``cls_embed``, the decoder's first token is
      the encoder's normalised cls output through ``decoder_embed``
      (PySlowFast) instead of a learned ``decoder_cls_token`` (official).
    target_frames: ``'linspace'`` (official: frames
      ``int(linspace(0, T-1, pred_t_dim))`` in float32) or ``'stride'``
      (PySlowFast: every ``T // pred_t_dim``-th frame from 0).
    remat: per-block rematerialisation in the backward pass: ``'none'``,
      ``'dots'`` (keep the matmul outputs, recompute the rest) or ``'full'``
      (keep only each block's input). Same results.
    scan_blocks: run the encoder and decoder blocks as one ``nn.scan`` each
      (compile time independent of depth). The block parameters are then
      stacked under ``blocks`` / ``decoder_blocks`` with a leading depth
      axis instead of ``blocks_0`` ...; :func:`jaxvr.stmae.stack_blocks` and
      :func:`jaxvr.stmae.unstack_blocks` convert between the two layouts.
  """
  img_size: int = 224
  patch_size: int = 16
  in_chans: int = 3
  embed_dim: int = 1024
  depth: int = 24
  num_heads: int = 16
  decoder_embed_dim: int = 512
  decoder_depth: int = 8
  decoder_num_heads: int = 16
  mlp_ratio: float = 4.0
  norm_pix_loss: bool = False
  num_frames: int = 16
  t_patch_size: int = 4
  no_qkv_bias: bool = False
  sep_pos_embed: bool = False
  trunc_init: bool = False
  cls_embed: bool = False
  pred_t_dim: int = 8
  layernorm_eps: float = 1e-6
  dtype: Any = 'float32'
  decoder_sep_pos_embed: bool | None = None
  decoder_cls_from_encoder: bool = False
  target_frames: str = 'linspace'
  remat: str = 'none'
  scan_blocks: bool = False

  def __post_init__(self):
    try:
      name = jnp.dtype(self.dtype).name
    except TypeError as e:
      raise ConfigError(f'dtype: expected a float dtype, got {self.dtype!r}') from e
    if name not in ('float32', 'bfloat16', 'float16'):
      raise ConfigError(
          f'dtype: expected float32, bfloat16 or float16, got {name}')
    object.__setattr__(self, 'dtype', name)
    for field in ('img_size', 'patch_size', 'in_chans', 'embed_dim', 'depth',
                  'num_heads', 'decoder_embed_dim', 'decoder_num_heads',
                  'num_frames', 't_patch_size', 'pred_t_dim'):
      if int(getattr(self, field)) < 1:
        raise ConfigError(f'{field}: expected a positive integer, got '
                          f'{getattr(self, field)}')
    if self.decoder_depth < 0:
      raise ConfigError(f'decoder_depth: expected a non-negative integer, got '
                        f'{self.decoder_depth}')
    if self.img_size % self.patch_size:
      raise ConfigError(f'img_size: {self.img_size} is not a multiple of '
                        f'patch_size {self.patch_size}')
    if self.num_frames % self.t_patch_size:
      raise ConfigError(f'num_frames: {self.num_frames} is not a multiple of '
                        f't_patch_size {self.t_patch_size}')
    if self.embed_dim % self.num_heads:
      raise ConfigError(f'embed_dim: {self.embed_dim} is not divisible by '
                        f'num_heads {self.num_heads}')
    if self.decoder_embed_dim % self.decoder_num_heads:
      raise ConfigError(
          f'decoder_embed_dim: {self.decoder_embed_dim} is not divisible by '
          f'decoder_num_heads {self.decoder_num_heads}')
    u = self.t_pred_patch_size
    if u < 1 or self.pred_t_dim % u or self.pred_t_dim // u != self.grid[0]:
      raise ConfigError(
          f'pred_t_dim: {self.pred_t_dim} frames cannot be split into '
          f'{self.grid[0]} tokens of t_pred_patch_size={u} frames '
          f'(num_frames {self.num_frames}, t_patch_size {self.t_patch_size})')
    if self.pred_t_dim > self.num_frames:
      raise ConfigError(f'pred_t_dim: expected at most num_frames='
                        f'{self.num_frames}, got {self.pred_t_dim}')
    if self.remat not in REMAT_POLICIES:
      raise ConfigError(f'remat: expected one of {tuple(REMAT_POLICIES)}, '
                        f'got {self.remat!r}')
    if self.target_frames not in _TARGET_FRAMES:
      raise ConfigError(f'target_frames: expected one of {_TARGET_FRAMES}, '
                        f'got {self.target_frames!r}')

  @property
  def decoder_sep(self) -> bool:
    """Whether the decoder's positional tables are separable."""
    if self.decoder_sep_pos_embed is None:
      return bool(self.sep_pos_embed)
    return bool(self.decoder_sep_pos_embed)

  @property
  def grid(self) -> tuple[int, int, int]:
    """Token grid ``(T', H', W')``."""
    s = self.img_size // self.patch_size
    return (self.num_frames // self.t_patch_size, s, s)

  @property
  def num_tokens(self) -> int:
    """``L = T' H' W'``."""
    t, h, w = self.grid
    return t * h * w

  @property
  def t_pred_patch_size(self) -> int:
    """Frames predicted per token: ``t_patch_size * pred_t_dim // num_frames``."""
    return self.t_patch_size * self.pred_t_dim // self.num_frames

  @property
  def pred_dim(self) -> int:
    """Width of a prediction row, ``u * p * p * C``."""
    return self.t_pred_patch_size * self.patch_size ** 2 * self.in_chans

  @property
  def video_shape(self) -> tuple[int, int, int, int]:
    """Expected clip shape ``(T, H, W, C)``."""
    return (self.num_frames, self.img_size, self.img_size, self.in_chans)

  @property
  def target_frame_index(self) -> tuple[int, ...]:
    """Frames of the clip the loss target is built from."""
    if self.target_frames == 'stride':
      step = self.num_frames // self.pred_t_dim
      return tuple(range(0, step * self.pred_t_dim, step))
    return tuple(int(v) for v in _torch_linspace_f32(
        0.0, self.num_frames - 1.0, self.pred_t_dim))


def _torch_linspace_f32(start: float, end: float, steps: int) -> np.ndarray:
  """float32 linspace evaluated as torch's CPU kernel does (from both ends)."""
  if steps == 1:
    return np.array([start], np.float32)
  start32, end32 = np.float32(start), np.float32(end)
  step = (end32 - start32) / np.float32(steps - 1)
  idx = np.arange(steps)
  half = steps // 2
  lo = start32 + step * idx.astype(np.float32)
  hi = end32 - step * (steps - 1 - idx).astype(np.float32)
  return np.where(idx < half, lo, hi).astype(np.float32)


def pyslowfast_config(config: STMAEConfig | None = None,
                      **overrides) -> STMAEConfig:
  """Config of the PySlowFast MAE the released K400/K600/K700 weights use.

  Starts from ``config`` (default: the ViT-L/16 pre-training recipe, 16x224
  input, 2x16x16 tubelets, decoder 512 wide / 4 deep) and applies PySlowFast's
  behaviour: decoder heads ``decoder_embed_dim // 64``, a joint decoder
  positional table, the encoder cls output as the decoder's first token, and
  the target built from every ``kt``-th frame with per-token normalisation.
  (PySlowFast applies the output layer to masked tokens only; here every
  token is predicted, which gives the same values for the masked ones.)
  """
  if config is None:
    config = vit_large_config()
  base = dataclasses.asdict(config)
  base.update(decoder_num_heads=max(1, config.decoder_embed_dim // 64),
              decoder_sep_pos_embed=False, decoder_cls_from_encoder=True,
              target_frames='stride', norm_pix_loss=True, cls_embed=True)
  base.update(overrides)
  return STMAEConfig(**base)


def vit_large_config(**overrides) -> STMAEConfig:
  """The official ViT-L/16 Kinetics pre-training recipe (PRETRAIN.md)."""
  kwargs = dict(img_size=224, patch_size=16, embed_dim=1024, depth=24,
                num_heads=16, decoder_embed_dim=512, decoder_depth=4,
                decoder_num_heads=16, num_frames=16, t_patch_size=2,
                pred_t_dim=8, sep_pos_embed=True, cls_embed=True,
                norm_pix_loss=True)
  kwargs.update(overrides)
  return STMAEConfig(**kwargs)


# ---------------------------------------------------------------------------
# Linen modules.


# The official code calls torch's trunc_normal_(std=0.02), whose default
# cut-off is +-2 in absolute value (100 standard deviations): a plain normal.


def _dense_init(config: STMAEConfig):
  if config.trunc_init:
    return nn.initializers.normal(0.02)
  return nn.initializers.xavier_uniform()


def _table_init():
  return nn.initializers.normal(0.02)


class Mlp(nn.Module):
  """``fc1`` -> exact GELU -> ``fc2``."""
  hidden: int
  config: STMAEConfig

  @nn.compact
  def __call__(self, x):
    init, dt = _dense_init(self.config), self.config.dtype
    out = x.shape[-1]
    x = nn.Dense(self.hidden, kernel_init=init, dtype=dt, name='fc1')(x)
    x = nn.gelu(x, approximate=False)
    return nn.Dense(out, kernel_init=init, dtype=dt, name='fc2')(x)


class Attention(nn.Module):
  """Multi-head self-attention with separate ``q``, ``k``, ``v`` layers."""
  num_heads: int
  config: STMAEConfig

  @nn.compact
  def __call__(self, x):
    c = self.config
    b, n, d = x.shape
    hd = d // self.num_heads
    init, dt, bias = _dense_init(c), c.dtype, not c.no_qkv_bias
    # heads-major [b, h, n, hd] layout: contiguous per-head matrices (about
    # 30% faster on CPU than contracting in token-major layout)
    split = lambda y: y.reshape(b, n, self.num_heads, hd).transpose(0, 2, 1, 3)
    q = split(nn.Dense(d, use_bias=bias, kernel_init=init, dtype=dt, name='q')(x))
    k = split(nn.Dense(d, use_bias=bias, kernel_init=init, dtype=dt, name='k')(x))
    v = split(nn.Dense(d, use_bias=bias, kernel_init=init, dtype=dt, name='v')(x))
    logits = jnp.matmul(q, k.swapaxes(-1, -2),
                        preferred_element_type=jnp.float32) * hd ** -0.5
    attn = jax.nn.softmax(logits, axis=-1).astype(dt)
    o = jnp.matmul(attn, v).transpose(0, 2, 1, 3).reshape(b, n, d)
    return nn.Dense(d, kernel_init=init, dtype=dt, name='proj')(o)


class Block(nn.Module):
  """Pre-norm Transformer block: ``x + attn(norm1(x))``, ``x + mlp(norm2(x))``."""
  num_heads: int
  config: STMAEConfig

  @nn.compact
  def __call__(self, x, unused=None):
    """``[N, L, D] -> [N, L, D]``; ``(x, None)`` under ``scan_blocks``."""
    c = self.config
    norm = functools.partial(nn.LayerNorm, epsilon=c.layernorm_eps, dtype=c.dtype)
    x = x + Attention(self.num_heads, c, name='attn')(norm(name='norm1')(x))
    hidden = int(x.shape[-1] * c.mlp_ratio)
    x = x + Mlp(hidden, c, name='mlp')(norm(name='norm2')(x))
    # nn.scan wants (carry, per-layer output).
    return (x, None) if c.scan_blocks else x


def _block_stack(config: STMAEConfig, num_heads: int, depth: int):
  """``depth`` blocks: a list, or one scanned module under ``scan_blocks``."""
  block = Block
  if config.remat != 'none':
    # Inside a scan the loop already prevents common-subexpression
    # elimination of the recomputation; outside, remat must.
    block = nn.remat(Block, policy=REMAT_POLICIES[config.remat],
                     prevent_cse=not config.scan_blocks)
  if config.scan_blocks and depth:
    return nn.scan(block, variable_axes={'params': 0},
                   split_rngs={'params': True}, length=depth)(num_heads,
                                                              config)
  return [block(num_heads, config) for _ in range(depth)]


# (parameter name, config field with its number of blocks)
_BLOCK_STACKS = (('blocks', 'depth'), ('decoder_blocks', 'decoder_depth'))


def stack_blocks(params: Mapping[str, Any], config: STMAEConfig) -> dict:
  """Default layout -> ``scan_blocks`` layout.

  The default layout holds ``blocks_<i>`` (and ``decoder_blocks_<i>``); a
  ``scan_blocks`` model holds one ``blocks`` tree whose leaves carry a
  leading depth axis (likewise ``decoder_blocks``).

  Args:
    params: parameters with ``blocks_0 .. blocks_<depth-1>`` and
      ``decoder_blocks_<i>``.
    config: the model config (``depth``, ``decoder_depth``).

  Returns:
    The same parameters with each group stacked into one tree
    (``blocks``, ``decoder_blocks``) of leaves ``[depth, ...]``; NumPy
    leaves stay NumPy.

  Raises:
    CheckpointError: a block is missing.
  """
  out = dict(params)
  for name, field in _BLOCK_STACKS:
    keys = [f'{name}_{i}' for i in range(getattr(config, field))]
    missing = [k for k in keys if k not in out]
    if missing:
      raise CheckpointError(f'params: expected unscanned blocks {keys[0]}..'
                            f'{keys[-1]}, missing {missing[:3]}')
    if keys:
      out[name] = jax.tree.map(_stack, *[out.pop(k) for k in keys])
  return out


def unstack_blocks(params: Mapping[str, Any], config: STMAEConfig) -> dict:
  """``scan_blocks`` layout -> default layout (inverse of :func:`stack_blocks`).

  Raises:
    CheckpointError: a stacked group is missing or has the wrong depth.
  """
  out = dict(params)
  for name, field in _BLOCK_STACKS:
    depth = getattr(config, field)
    if not depth:
      continue
    stacked = out.pop(name, None)
    leaves = jax.tree.leaves(stacked)
    if not leaves or any(np.shape(x)[0] != depth for x in leaves):
      raise CheckpointError(f'params: expected {name} stacked over {depth} '
                            f'blocks (scan_blocks layout)')
    for i in range(depth):
      out[f'{name}_{i}'] = jax.tree.map(lambda x, i=i: x[i], stacked)
  return out


def _stack(*xs):
  return (np.stack(xs) if all(isinstance(x, np.ndarray) for x in xs)
          else jnp.stack(xs))


def _run_blocks(blocks, x):
  if isinstance(blocks, (list, tuple)):
    for block in blocks:
      x = block(x)
    return x
  return blocks(x, None)[0]


def _pos_params(module: nn.Module, prefix: str, sep: bool, cls: bool,
                grid: tuple[int, int, int], width: int):
  """Creates positional tables; returns a function giving (tokens, cls) rows."""
  t, h, w = grid
  init = _table_init()
  if sep:
    spatial = module.param(f'{prefix}_spatial', init, (1, h * w, width))
    temporal = module.param(f'{prefix}_temporal', init, (1, t, width))
    klass = module.param(f'{prefix}_class', init, (1, 1, width)) if cls else None

    def table():
      rows = jnp.tile(spatial, (1, t, 1)) + jnp.repeat(temporal, h * w, axis=1)
      return rows, klass
  else:
    full = module.param(prefix, init, (1, t * h * w + int(cls), width))

    def table():
      return (full[:, 1:], full[:, :1]) if cls else (full, None)
  return table


def _gather(x: jax.Array, ids: jax.Array) -> jax.Array:
  """``x[n, ids[n]]`` for ``x`` ``[N or 1, L, D]`` and ``ids`` ``[N, K]``."""
  x = jnp.broadcast_to(x, (ids.shape[0],) + x.shape[1:])
  return jnp.take_along_axis(x, ids[..., None], axis=1)


class STMAE(nn.Module):
  """The ST-MAE; call :meth:`embed`, :meth:`encode`, :meth:`decode` in turn."""
  config: STMAEConfig

  def setup(self):
    c = self.config
    kt, p = c.t_patch_size, c.patch_size
    d, dd = c.embed_dim, c.decoder_embed_dim
    if c.trunc_init:
      conv_init = mask_init = _table_init()
    else:
      conv_init = nn.initializers.variance_scaling(
          1.0, 'fan_avg', 'uniform', in_axis=(0, 1, 2, 3), out_axis=4)
      mask_init = nn.initializers.normal(0.02)
    self.patch_embed = nn.Conv(d, (kt, p, p), strides=(kt, p, p),
                               padding='VALID', kernel_init=conv_init,
                               dtype=c.dtype)
    if c.cls_embed:
      self.cls_token = self.param('cls_token', _table_init(), (1, 1, d))
    self.pos_table = _pos_params(self, 'pos_embed', c.sep_pos_embed,
                                 c.cls_embed, c.grid, d)
    norm = functools.partial(nn.LayerNorm, epsilon=c.layernorm_eps,
                             dtype=c.dtype)
    self.blocks = _block_stack(c, c.num_heads, c.depth)
    self.norm = norm()
    self.decoder_embed = nn.Dense(dd, kernel_init=_dense_init(c), dtype=c.dtype)
    self.mask_token = self.param('mask_token', mask_init, (1, 1, dd))
    if c.cls_embed and not c.decoder_cls_from_encoder:
      self.decoder_cls_token = self.param('decoder_cls_token', _table_init(),
                                          (1, 1, dd))
    self.decoder_pos_table = _pos_params(
        self, 'decoder_pos_embed', c.decoder_sep, c.cls_embed,
        c.grid, dd)
    self.decoder_blocks = _block_stack(c, c.decoder_num_heads,
                                       c.decoder_depth)
    self.decoder_norm = norm()
    self.decoder_pred = nn.Dense(c.pred_dim, kernel_init=_dense_init(c),
                                 dtype=c.dtype)

  def __call__(self, video, ids_keep, ids_restore):
    """Full pass (used by ``init``): video ``[N,T,H,W,C]`` -> pred ``[N,L,P]``."""
    latent, cls = self.encode(self.embed(video), ids_keep)
    return self.decode(latent, cls, ids_restore)

  def embed(self, video):
    """Patch embedding of all tubelets: ``[N,T,H,W,C]`` -> ``[N, L, D]``."""
    x = self.patch_embed(video.astype(self.config.dtype))
    return x.reshape(x.shape[0], -1, x.shape[-1])

  def encode(self, tokens, ids_keep):
    """Encoder on the visible tokens.

    Args:
      tokens: ``[N or 1, L, D]`` patch embeddings (a single row is shared by
        every sample).
      ids_keep: int ``[N, K]`` visible token ids.

    Returns:
      ``(latent [N, K, D], cls [N, 1, D] or None)`` after the final norm.
    """
    c = self.config
    rows, klass = self.pos_table()
    x = _gather(tokens, ids_keep) + _gather(rows, ids_keep).astype(c.dtype)
    n = x.shape[0]
    if c.cls_embed:
      cls = self.cls_token if klass is None else self.cls_token + klass
      x = jnp.concatenate(
          [jnp.broadcast_to(cls, (n, 1, x.shape[-1])).astype(x.dtype), x], 1)
    x = self.norm(_run_blocks(self.blocks, x))
    if c.cls_embed:
      return x[:, 1:], x[:, :1]
    return x, None

  def decode(self, latent, cls, ids_restore):
    """Decoder: latent ``[N, K, D]`` -> predictions ``[N, L, P]`` (token order)."""
    c = self.config
    x = self.decoder_embed(latent)
    n, k, dd = x.shape
    fill = jnp.broadcast_to(self.mask_token, (n, c.num_tokens - k, dd))
    x = jnp.concatenate([x, fill.astype(x.dtype)], axis=1)
    x = jnp.take_along_axis(x, ids_restore[..., None], axis=1)
    rows, klass = self.decoder_pos_table()
    x = x + rows.astype(x.dtype)
    if c.cls_embed:
      if c.decoder_cls_from_encoder:
        first = self.decoder_embed(cls)
      else:
        first = jnp.broadcast_to(self.decoder_cls_token, (n, 1, dd))
      if klass is not None:
        first = first + klass
      x = jnp.concatenate([first.astype(x.dtype), x], axis=1)
    x = _run_blocks(self.decoder_blocks, x)
    x = self.decoder_pred(self.decoder_norm(x))
    return x[:, 1:] if c.cls_embed else x
