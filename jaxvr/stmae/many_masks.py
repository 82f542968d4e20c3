"""ST-MAE losses of one clip under many masks, the mask-independent work done once.

CARV runs one clip through the ST-MAE under hundreds of random masks at a
high ratio (0.98: a few visible tokens). Most of the decoder's first block
is then the same for every mask: every masked position enters it as the mask
token plus its position, whatever the mask. This module computes, once per
clip, everything that does not depend on the mask, and per mask only what
does. The result is the loss of :func:`jaxvr.stmae.forward_from_tokens`
(the same function, up to float rounding), at a fraction of the work:

* **First decoder block.** With ``R`` decoder rows (tokens, plus the cls
  row) and ``C`` rows that change with the mask (the visible tokens, plus
  the cls row when it comes from the encoder), the base rows' LayerNorm and
  q/k/v, their ``R x R`` attention logits, the logits' exponentials and
  their products with the values are computed once. Per mask, a row that did
  not change attends over the base keys that are still there (the stored
  total minus the share of the ``C`` replaced keys; the exact sum over the
  kept keys when that share is most of a row's weight) and over the ``C``
  new keys, in one softmax with a common stabiliser; the ``C`` changed rows
  attend over everything directly. The block's projection and MLP then run
  on every row as usual. Saved per mask: the q/k/v projections of ``R - C``
  rows and the ``R x R`` logits, exponentials and value products.
* **Loss.** The per-token error ``mean((x W + b - t)^2)`` of the decoder's
  normalised output ``x`` expands to ``(x G x' + 2 x c + d) / P`` with
  ``G = W W'``, ``c = W (b - t)`` and ``d = |b - t|^2`` fixed per clip: a
  ``D x D`` product per token instead of the ``D x P`` prediction head
  (``P = u p p C``, 768 against ``D`` = 128 in the CARV bench model).

The encoder, the remaining decoder blocks and the final norm run unchanged
(the flax modules of :mod:`jaxvr.stmae.model`).
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import linen as nn

from jaxvr.stmae import masking
from jaxvr.stmae.forward import Tokens
from jaxvr.stmae.model import STMAE, Block, Mlp, STMAEConfig, unstack_blocks

_HIGHEST = jax.lax.Precision.HIGHEST


class SharedWork(NamedTuple):
  """Mask-independent work for one clip (a pytree).

  ``R`` = decoder rows (``L`` tokens, plus 1 with ``cls_embed``), ``H``
  decoder heads of width ``e``, ``D`` decoder width, ``P`` pixels per token.

  Attributes:
    tokens: ``[1, L, D_enc]`` patch embeddings (the encoder's input).
    rows: ``[R, D]`` decoder input of every row as if masked (compute dtype).
    q, k, v: ``[H, R, e]`` first-block queries, keys, values of ``rows``.
    exp_logits: float32 ``[H, R, R]`` ``exp(logits - row_max)`` of ``rows``.
    row_max: float32 ``[H, R]`` the row maxima of those logits.
    weights_v: float32 ``[H, R, e + 1]`` the values ``v``, and a column of 1.
    weighted: float32 ``[H, R, e + 1]`` ``exp_logits @ weights_v``.
    gram: float32 ``[D, D]`` ``W W'`` of the prediction head.
    cross: float32 ``[L, D]`` ``W (b - t)`` per token.
    offset: float32 ``[L]`` ``|b - t|^2`` per token.
  """
  tokens: jax.Array
  rows: jax.Array
  q: jax.Array
  k: jax.Array
  v: jax.Array
  exp_logits: jax.Array
  row_max: jax.Array
  weights_v: jax.Array
  weighted: jax.Array
  gram: jax.Array
  cross: jax.Array
  offset: jax.Array


class MaskLosses(NamedTuple):
  """Losses of a batch of masks (a pytree).

  Attributes:
    mask: float32 ``[N, L]``, 1 = masked.
    per_token_loss: float32 ``[N, L]`` mean squared error of every token.
    sample_loss: float32 ``[N]`` masked mean error of each mask.
  """
  mask: jax.Array
  per_token_loss: jax.Array
  sample_loss: jax.Array


def _plain(config: STMAEConfig) -> STMAEConfig:
  """The config in the unscanned layout, without remat (inference only)."""
  return dataclasses.replace(config, scan_blocks=False, remat='none')


def _plain_params(params, config: STMAEConfig):
  return unstack_blocks(params, config) if config.scan_blocks else params


def _apply(module: nn.Module, params, *args):
  return module.apply({'params': params}, *args)


def _norm(config: STMAEConfig, params, x):
  return _apply(nn.LayerNorm(epsilon=config.layernorm_eps, dtype=config.dtype),
                params, x)


def _dense(config: STMAEConfig, params, x):
  features = params['kernel'].shape[-1]
  return _apply(nn.Dense(features, use_bias='bias' in params,
                         dtype=config.dtype), params, x)


def _heads(x: jax.Array, num_heads: int) -> jax.Array:
  """``[..., R, D] -> [..., H, R, D / H]``."""
  *lead, r, d = x.shape
  return jnp.moveaxis(x.reshape(*lead, r, num_heads, d // num_heads), -2, -3)


def _decoder_base(params, config: STMAEConfig):
  """``(rows [R, D], has_cls_row)``: decoder inputs of a fully masked clip.

  The cls row (when it does not come from the encoder) is mask-independent
  and included; an encoder-fed cls row is a placeholder replaced per mask.
  """
  def rows_of(m: STMAE):
    c = m.config
    pos, klass = m.decoder_pos_table()
    dt = c.dtype
    masked = m.mask_token.astype(dt) + pos.astype(dt)  # as decode() adds them
    if not c.cls_embed:
      return masked[0]
    if c.decoder_cls_from_encoder:
      first = jnp.zeros((1, 1, masked.shape[-1]), dt)
    else:
      first = m.decoder_cls_token
      if klass is not None:
        first = first + klass
    return jnp.concatenate([first.astype(dt), masked], axis=1)[0]

  return STMAE(config).apply({'params': params}, method=rows_of)


def _block0_attention_base(p, config: STMAEConfig, rows):
  heads = config.decoder_num_heads
  x = _norm(config, p['norm1'], rows)
  q, k, v = (_heads(_dense(config, p['attn'][n], x), heads) for n in 'qkv')
  scale = (rows.shape[-1] // heads) ** -0.5
  logits = jnp.matmul(q, jnp.swapaxes(k, -1, -2),
                      preferred_element_type=jnp.float32) * scale
  row_max = jnp.max(logits, axis=-1)
  return q, k, v, jnp.exp(logits - row_max[..., None]), row_max


def shared_work(params, config: STMAEConfig, tokens: Tokens) -> SharedWork:
  """Everything of :func:`mask_losses` that does not depend on the mask.

  Args:
    params: ST-MAE parameters (either block layout).
    config: its config.
    tokens: :func:`jaxvr.stmae.encode_tokens` of one clip (batch 1).

  Returns:
    :class:`SharedWork` for that clip.
  """
  c, params = _plain(config), _plain_params(params, config)
  rows = _decoder_base(params, c)
  if c.decoder_depth:
    q, k, v, e, row_max = _block0_attention_base(params['decoder_blocks_0'], c,
                                                 rows)
    ones = jnp.ones(v.shape[:-1] + (1,), jnp.float32)
    weights_v = jnp.concatenate([v.astype(jnp.float32), ones], axis=-1)
    weighted = jnp.matmul(e, weights_v, precision=_HIGHEST)
  else:  # no decoder block: nothing to share but the loss
    q = k = v = e = row_max = weights_v = weighted = jnp.zeros((0,), jnp.float32)
  head = params['decoder_pred']
  kernel = jnp.asarray(head['kernel'], jnp.float32)
  resid = jnp.asarray(head['bias'], jnp.float32) - tokens.target[0]
  return SharedWork(
      tokens=tokens.tokens, rows=rows, q=q, k=k, v=v, exp_logits=e,
      row_max=row_max, weights_v=weights_v, weighted=weighted,
      gram=jnp.matmul(kernel, kernel.T, precision=_HIGHEST),
      cross=jnp.matmul(resid, kernel.T, precision=_HIGHEST),
      offset=jnp.sum(resid * resid, axis=-1))


def _scatter_rows(base, new, where):
  """Rows ``where [N, C]`` of ``base`` set to ``new [N, ..., C, X]``.

  ``base`` is ``[..., R, X]`` shared by the batch, or ``[N, ..., R, X]``.
  """
  set_rows = lambda b, nw, w: b.at[..., w, :].set(nw)
  if base.ndim == new.ndim:
    return jax.vmap(set_rows)(base, new, where)
  return jax.vmap(set_rows, in_axes=(None, 0, 0))(base, new, where)


def _kept_base_share(shared: SharedWork, where):
  """``[N, H, R, e + 1]``: sum of ``exp_logits * [v, 1]`` over the base keys kept.

  The base keys of the changed rows ``where [N, C]`` are gone. Their share is
  subtracted from the stored total of all base keys (``C`` columns per row
  instead of ``R``), unless in some row of the batch they carried more than
  half of the total weight: the difference would then lose precision, and
  the batch takes the exact sum over the kept keys (one ``R x R`` matmul).
  """
  f32 = jnp.float32
  gone_w = jax.vmap(lambda w: shared.exp_logits[:, :, w])(where)  # [N,H,R,C]
  gone_v = jax.vmap(lambda w: shared.weights_v[:, w])(where)  # [N,H,C,e+1]
  # Both terms of the difference at full precision (TPU/GPU matmuls default
  # to bf16/tf32 passes).
  gone = jnp.einsum('nhrc,nhcf->nhrf', gone_w, gone_v, precision=_HIGHEST)
  safe = jnp.all(gone[..., -1] <= 0.5 * shared.weighted[..., -1])

  def exact():
    kept = jnp.ones(where.shape[:1] + shared.exp_logits.shape[-1:], f32)
    kept = jax.vmap(lambda row, w: row.at[w].set(0.0))(kept, where)
    return jnp.einsum('hrj,nhjf->nhrf', shared.exp_logits,
                      shared.weights_v[None] * kept[:, None, :, None],
                      precision=_HIGHEST)

  return jax.lax.cond(safe, lambda: shared.weighted - gone, exact)


def _first_block(p, config: STMAEConfig, shared: SharedWork, new, where):
  """First decoder block of every mask.

  Args:
    p: the block's parameters.
    config: unscanned config.
    shared: :class:`SharedWork`.
    new: ``[N, C, D]`` inputs of the rows that change with the mask.
    where: int ``[N, C]`` their row indices (distinct per mask).

  Returns:
    ``[N, R, D]`` the block's output.
  """
  heads, dt = config.decoder_num_heads, config.dtype
  n, _, d = new.shape
  x = _norm(config, p['norm1'], new)
  q, k, v = (_heads(_dense(config, p['attn'][m], x), heads) for m in 'qkv')
  scale = (d // heads) ** -0.5
  f32 = jnp.float32
  # Unchanged rows: the base keys still present, and the new keys, under one
  # stabiliser (the larger of the stored row maximum and the new logits).
  logits_new = jnp.einsum('hre,nhce->nhrc', shared.q, k,
                          preferred_element_type=f32) * scale
  top = jnp.maximum(shared.row_max, jnp.max(logits_new, axis=-1))
  base = _kept_base_share(shared, where)
  shrink = jnp.exp(shared.row_max - top)
  w_new = jnp.exp(logits_new - top[..., None])
  num = (shrink[..., None] * base[..., :-1]
         + jnp.einsum('nhrc,nhce->nhre', w_new, v.astype(f32)))
  den = shrink * base[..., -1] + jnp.sum(w_new, axis=-1)
  out = (num / den[..., None]).astype(dt)
  # Changed rows: plain attention over the current keys and values.
  keys = _scatter_rows(shared.k, k, where)
  values = _scatter_rows(shared.v, v, where)
  logits = jnp.matmul(q, jnp.swapaxes(keys, -1, -2),
                      preferred_element_type=f32) * scale
  changed = jnp.matmul(jax.nn.softmax(logits, axis=-1).astype(dt), values)
  out = _scatter_rows(out, changed, where)  # [N, H, R, e]
  out = jnp.moveaxis(out, 1, 2).reshape(n, -1, d)
  h = _scatter_rows(shared.rows, new, where)
  h = h + _dense(config, p['attn']['proj'], out)
  hidden = int(d * config.mlp_ratio)
  return h + _apply(Mlp(hidden, config), p['mlp'], _norm(config, p['norm2'], h))


def _changed_rows(params, config: STMAEConfig, latent, cls, ids_keep):
  """``(new [N, C, D], where [N, C])``: decoder inputs that depend on the mask."""
  def rows_of(m: STMAE):
    pos, klass = m.decoder_pos_table()
    x = m.decoder_embed(latent)
    x = x + jnp.take(pos[0], ids_keep, axis=0).astype(x.dtype)
    where = ids_keep + int(config.cls_embed)
    if config.cls_embed and config.decoder_cls_from_encoder:
      first = m.decoder_embed(cls)
      if klass is not None:
        first = first + klass
      x = jnp.concatenate([first.astype(x.dtype), x], axis=1)
      where = jnp.concatenate([jnp.zeros_like(where[:, :1]), where], axis=1)
    return x, where

  return STMAE(config).apply({'params': params}, method=rows_of)


def mask_losses(params, config: STMAEConfig, shared: SharedWork,
                noise: jax.Array, keep: int) -> MaskLosses:
  """Per-token and per-mask losses of one clip under a batch of masks.

  Args:
    params: ST-MAE parameters (either block layout).
    config: its config.
    shared: :func:`shared_work` of the clip.
    noise: ``[N, L]`` masking noise (smallest values stay visible).
    keep: number of visible tokens (static).

  Returns:
    :class:`MaskLosses`, equal to the ``mask``, ``per_token_loss`` and
    ``sample_loss`` of :func:`jaxvr.stmae.forward_from_tokens` up to float
    rounding.
  """
  c, params = _plain(config), _plain_params(params, config)
  ids = masking.ids_from_noise(noise, keep)
  latent, cls = STMAE(c).apply({'params': params}, shared.tokens, ids.ids_keep,
                               method=STMAE.encode)
  new, where = _changed_rows(params, c, latent, cls, ids.ids_keep)
  if c.decoder_depth:
    h = _first_block(params['decoder_blocks_0'], c, shared, new, where)
  else:
    h = _scatter_rows(shared.rows, new, where)
  for i in range(1, c.decoder_depth):
    h = _apply(Block(c.decoder_num_heads, c), params[f'decoder_blocks_{i}'], h)
  x = _norm(c, params['decoder_norm'], h)[:, int(c.cls_embed):]
  x = x.astype(jnp.float32)
  quad = jnp.sum(x * jnp.matmul(x, shared.gram, precision=_HIGHEST), axis=-1)
  err = (quad + 2.0 * jnp.sum(x * shared.cross, axis=-1)
         + shared.offset) / c.pred_dim
  masked = jnp.sum(err * ids.mask, axis=1)
  return MaskLosses(ids.mask, err, masked / jnp.sum(ids.mask, axis=1))
