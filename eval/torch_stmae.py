"""The official ST-MAE in PyTorch: the competitor of ``eval.bench_carv``.

Feichtenhofer, Fan, Li, He, "Masked Autoencoders As Spatiotemporal
Learners", NeurIPS 2022; code ``facebookresearch/mae_st``,
``models_mae.MaskedAutoencoderViT``. This is that model written out again
(Conv3d tubelet embedding, cls token, separable or joint learned positional
tables, pre-norm blocks with separate ``q``/``k``/``v`` layers and exact
GELU, random masking by a stable argsort of the noise, a decoder that
predicts ``t_pred_patch_size`` frames per token, ``norm_pix_loss`` with the
unbiased variance); its parameter names are the official state-dict keys, so
``load_state_dict`` takes an official checkpoint or
:func:`jaxvr.stmae.export_state_dict` of jaxvr parameters as they are.

Videos are the official layout ``[N, C, T, H, W]``. For many masks of one
clip, :meth:`TorchSTMAE.embed` and :meth:`TorchSTMAE.target` run once and
:meth:`TorchSTMAE.mask_losses` runs encoder, decoder and loss for a batch of
masks (the same split as ``jaxvr.stmae.forward_from_tokens``).
:func:`parity_errors` checks the model against the fixture made with the
official code.
"""

from __future__ import annotations

import json
import pathlib

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from jaxvr.errors import ConfigError
from jaxvr.stmae.masking import len_keep
from jaxvr.stmae.model import STMAEConfig


class Attention(nn.Module):
  """Self-attention with separate ``q``, ``k``, ``v`` and ``proj`` layers."""

  def __init__(self, dim: int, heads: int, bias: bool):
    super().__init__()
    self.heads = heads
    self.q = nn.Linear(dim, dim, bias=bias)
    self.k = nn.Linear(dim, dim, bias=bias)
    self.v = nn.Linear(dim, dim, bias=bias)
    self.proj = nn.Linear(dim, dim)

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    """``[B, N, D] -> [B, N, D]``."""
    b, n, d = x.shape
    split = lambda y: y.reshape(b, n, self.heads, d // self.heads).transpose(1, 2)
    q, k, v = split(self.q(x)), split(self.k(x)), split(self.v(x))
    attn = (q @ k.transpose(-2, -1)) * (d // self.heads) ** -0.5
    out = attn.softmax(dim=-1) @ v
    return self.proj(out.transpose(1, 2).reshape(b, n, d))


class Mlp(nn.Module):
  """``fc1`` -> exact GELU -> ``fc2``."""

  def __init__(self, dim: int, hidden: int):
    super().__init__()
    self.fc1 = nn.Linear(dim, hidden)
    self.fc2 = nn.Linear(hidden, dim)

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Module):
  """Pre-norm block: ``x + attn(norm1(x))``, then ``x + mlp(norm2(x))``."""

  def __init__(self, dim: int, heads: int, config: STMAEConfig):
    super().__init__()
    self.norm1 = nn.LayerNorm(dim, eps=config.layernorm_eps)
    self.attn = Attention(dim, heads, not config.no_qkv_bias)
    self.norm2 = nn.LayerNorm(dim, eps=config.layernorm_eps)
    self.mlp = Mlp(dim, int(dim * config.mlp_ratio))

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    x = x + self.attn(self.norm1(x))
    return x + self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
  """Tubelet embedding ``proj``: ``[N, C, T, H, W] -> [N, L, D]``."""

  def __init__(self, config: STMAEConfig):
    super().__init__()
    kt, p = config.t_patch_size, config.patch_size
    self.proj = nn.Conv3d(config.in_chans, config.embed_dim, (kt, p, p),
                          stride=(kt, p, p))

  def forward(self, video: torch.Tensor) -> torch.Tensor:
    return self.proj(video).flatten(2).transpose(1, 2)


def _pos_shapes(prefix: str, config: STMAEConfig,
                width: int) -> dict[str, tuple[int, ...]]:
  """Official names and shapes of one side's positional tables."""
  t, h, w = config.grid
  if not config.sep_pos_embed:
    return {prefix: (1, t * h * w + int(config.cls_embed), width)}
  shapes = {f'{prefix}_spatial': (1, h * w, width),
            f'{prefix}_temporal': (1, t, width)}
  if config.cls_embed:
    shapes[f'{prefix}_class'] = (1, 1, width)
  return shapes


def _gather(x: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
  """``x[n, ids[n]]`` for ``x [N or 1, L, D]`` and ``ids [N, K]``."""
  x = x.expand(ids.shape[0], -1, -1)
  return torch.gather(x, 1, ids[..., None].expand(-1, -1, x.shape[-1]))


class TorchSTMAE(nn.Module):
  """``models_mae.MaskedAutoencoderViT`` of a :class:`STMAEConfig`.

  Raises:
    ConfigError: the config is a PySlowFast variant (not the mae_st model).
  """

  def __init__(self, config: STMAEConfig):
    super().__init__()
    if (config.decoder_cls_from_encoder or config.target_frames != 'linspace'
        or config.decoder_sep != config.sep_pos_embed):
      raise ConfigError('config: TorchSTMAE is the mae_st model; PySlowFast '
                        'options (decoder_cls_from_encoder, stride target '
                        'frames, joint decoder table) are not supported')
    c = self.config = config
    d, dd = c.embed_dim, c.decoder_embed_dim
    self.patch_embed = PatchEmbed(c)
    if c.cls_embed:
      self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
      self.decoder_cls_token = nn.Parameter(torch.zeros(1, 1, dd))
    self.mask_token = nn.Parameter(torch.zeros(1, 1, dd))
    for prefix, width in (('pos_embed', d), ('decoder_pos_embed', dd)):
      for name, shape in _pos_shapes(prefix, c, width).items():
        self.register_parameter(name, nn.Parameter(torch.zeros(shape)))
    self.blocks = nn.ModuleList(Block(d, c.num_heads, c)
                                for _ in range(c.depth))
    self.norm = nn.LayerNorm(d, eps=c.layernorm_eps)
    self.decoder_embed = nn.Linear(d, dd)
    self.decoder_blocks = nn.ModuleList(Block(dd, c.decoder_num_heads, c)
                                        for _ in range(c.decoder_depth))
    self.decoder_norm = nn.LayerNorm(dd, eps=c.layernorm_eps)
    self.decoder_pred = nn.Linear(dd, c.pred_dim)

  def load_arrays(self, state_dict) -> TorchSTMAE:
    """Loads ``{official key: array}`` (strict: every key, every shape)."""
    self.load_state_dict({k: torch.from_numpy(np.array(v, np.float32))
                          for k, v in state_dict.items()})
    return self

  def pos_rows(self, prefix: str):
    """``(token rows [1, L, width], cls row [1, 1, width] or None)``."""
    c = self.config
    if c.sep_pos_embed:
      t, h, w = c.grid
      rows = (getattr(self, f'{prefix}_spatial').repeat(1, t, 1)
              + torch.repeat_interleave(getattr(self, f'{prefix}_temporal'),
                                        h * w, dim=1))
      return rows, (getattr(self, f'{prefix}_class') if c.cls_embed else None)
    full = getattr(self, prefix)
    return (full[:, 1:], full[:, :1]) if c.cls_embed else (full, None)

  def embed(self, video: torch.Tensor) -> torch.Tensor:
    """Patch embedding of every tubelet: ``[N, C, T, H, W] -> [N, L, D]``."""
    return self.patch_embed(video)

  def target(self, video: torch.Tensor) -> torch.Tensor:
    """Loss target ``[N, L, u*p*p*C]`` (official ``patchify`` order)."""
    c = self.config
    frames = video[:, :, list(c.target_frame_index)]
    n, ch, t, h, w = frames.shape
    u, p = c.t_pred_patch_size, c.patch_size
    x = frames.reshape(n, ch, t // u, u, h // p, p, w // p, p)
    x = torch.einsum('nctuhpwq->nthwupqc', x)
    x = x.reshape(n, -1, u * p * p * ch)
    if c.norm_pix_loss:
      mean = x.mean(dim=-1, keepdim=True)
      var = x.var(dim=-1, keepdim=True)
      x = (x - mean) / (var + 1e-6) ** 0.5
    return x

  def encode(self, tokens: torch.Tensor, ids_keep: torch.Tensor):
    """Encoder on visible tokens -> ``latent [B, K, D]``, cls removed."""
    rows, klass = self.pos_rows('pos_embed')
    x = _gather(tokens, ids_keep) + _gather(rows, ids_keep)
    if self.config.cls_embed:
      cls = (self.cls_token if klass is None else self.cls_token + klass)
      x = torch.cat([cls.expand(x.shape[0], -1, -1), x], dim=1)
    for block in self.blocks:
      x = block(x)
    x = self.norm(x)
    return x[:, 1:] if self.config.cls_embed else x

  def decode(self, latent: torch.Tensor, ids_restore: torch.Tensor):
    """Decoder: ``latent [B, K, D] -> pred [B, L, P]`` in token order."""
    x = self.decoder_embed(latent)
    b, k, dd = x.shape
    fill = self.mask_token.expand(b, self.config.num_tokens - k, dd)
    x = _gather(torch.cat([x, fill], dim=1), ids_restore)
    rows, klass = self.pos_rows('decoder_pos_embed')
    x = x + rows
    if self.config.cls_embed:
      first = self.decoder_cls_token
      if klass is not None:
        first = first + klass
      x = torch.cat([first.expand(b, -1, -1), x], dim=1)
    for block in self.decoder_blocks:
      x = block(x)
    x = self.decoder_pred(self.decoder_norm(x))
    return x[:, 1:] if self.config.cls_embed else x

  def mask_losses(self, tokens: torch.Tensor, target: torch.Tensor,
                  noise: torch.Tensor, keep: int) -> dict[str, torch.Tensor]:
    """Encoder, decoder and loss of ``B`` masks of embedded clips.

    Args:
      tokens: ``[1 or B, L, D]`` from :meth:`embed` (one row is shared).
      target: ``[1 or B, L, P]`` from :meth:`target`.
      noise: ``[B, L]`` masking noise; the ``keep`` smallest stay visible.
      keep: number of visible tokens.

    Returns:
      ``pred [B, L, P]``, ``latent [B, K, D]``, ``mask [B, L]`` (1 =
      masked), ``ids_keep``, ``ids_restore``, ``per_token_loss [B, L]`` and
      ``sample_loss [B]`` (masked mean per mask).
    """
    ids_shuffle = torch.argsort(noise, dim=1, stable=True)
    ids_restore = torch.argsort(ids_shuffle, dim=1)
    ids_keep = ids_shuffle[:, :keep]
    mask = (ids_restore >= keep).to(noise.dtype)
    latent = self.encode(tokens, ids_keep)
    pred = self.decode(latent, ids_restore)
    err = ((pred - target) ** 2).mean(dim=-1)
    return dict(pred=pred, latent=latent, mask=mask, ids_keep=ids_keep,
                ids_restore=ids_restore, per_token_loss=err,
                sample_loss=(err * mask).sum(1) / mask.sum(1))

  def forward(self, video: torch.Tensor, noise: torch.Tensor,
              mask_ratio: float) -> dict[str, torch.Tensor]:
    """The official ``forward``: :meth:`mask_losses` plus the batch ``loss``.

    Args:
      video: ``[N, C, T, H, W]`` normalised clips.
      noise: ``[N, L]`` masking noise (what ``torch.rand`` would draw).
      mask_ratio: masked fraction; ``int(L * (1 - ratio))`` stay visible.
    """
    out = self.mask_losses(self.embed(video), self.target(video), noise,
                           len_keep(self.config.num_tokens, mask_ratio))
    out['loss'] = ((out['per_token_loss'] * out['mask']).sum()
                   / out['mask'].sum())
    return out


def batch_sums(out: dict[str, torch.Tensor]) -> tuple[torch.Tensor, ...]:
  """Per-chunk significance sums of one batch of :meth:`mask_losses`.

  Returns:
    ``(loss_visible [L], n_visible [L], error_masked [L], n_masked [L],
    loss_total [])``, the sums ``jaxvr.carv.significance_sums`` keeps.
  """
  mask, loss = out['mask'], out['sample_loss'][:, None]
  visible = 1.0 - mask
  return ((loss * visible).sum(0), visible.sum(0),
          (out['per_token_loss'] * mask).sum(0), mask.sum(0), loss.sum())


def parity_errors(fixtures_dir: str | pathlib.Path) -> dict[str, float]:
  """Largest absolute differences from ``stmae_parity_a`` (official run).

  Builds the fixture's model, loads its state dict and runs the official
  forward on its input and noise.

  Returns:
    ``{'ids': ..., 'mask': ..., 'latent': ..., 'pred': ...,
    'per_patch_loss': ..., 'loss': ...}``; ids and mask must be 0, the rest
    within the float32 tolerance ``1e-4``.
  """
  folder = pathlib.Path(fixtures_dir)
  meta = json.loads((folder / 'stmae_parity_a.json').read_text())
  config = STMAEConfig(**meta['model_kwargs'],
                       layernorm_eps=meta['layernorm_eps'])
  with np.load(folder / 'stmae_parity_a.npz') as z:
    a = {k: z[k] for k in z.files}
  model = TorchSTMAE(config).load_arrays(
      {k[len('param/'):]: v for k, v in a.items() if k.startswith('param/')})
  with torch.inference_mode():
    out = model(torch.as_tensor(a['input']), torch.as_tensor(a['noise']),
                meta['mask_ratio'])
  diff = lambda x, ref: float(np.abs(np.asarray(x, np.float64) - ref).max())
  return {
      'ids': max(diff(out['ids_keep'], a['ids_keep']),
                 diff(out['ids_restore'], a['ids_restore'])),
      'mask': diff(out['mask'], a['mask']),
      'latent': diff(out['latent'], a['latent']),
      'pred': diff(out['pred'], a['pred']),
      'per_patch_loss': diff(out['per_token_loss'], a['per_patch_loss']),
      'loss': diff(out['loss'], a['loss_f64']),
  }
