r"""Config of the ST-MAE trainer (pre-training from scratch on video clips).

Run::

  python -m train.stmae --config=jaxvr/configs/stmae.py \
      --workdir=runs/stmae --config.data.clips_dir=path/to/videos

``get_config(arg)`` takes one option:

* ``small`` (default): 16x112x112 clips, patch 2x16x16, a ViT-tiny sized
  encoder (192 wide, 4 deep, 3 heads) and a 128/2/4 decoder, cls token and
  separable positional tables, ``pred_t_dim`` 8, ``norm_pix_loss``;
* ``smoke``: a 4x16x16 model on synthetic clips for 6 steps (tests, CI).

The optimiser follows the official recipe: AdamW with betas (0.9, 0.95) and
weight decay 0.05 on weight matrices (biases and norm parameters excluded),
learning rate ``blr * batch_size / 256`` reached by a linear warm-up and then
a cosine decay to ``min_lr``, gradients clipped to a global norm of
``clip_grad`` (0.02 in the official recipe). Override single fields with
``--config.optim.blr=1e-3`` and so on.
"""

import ml_collections

from jaxvr.errors import ConfigError

_OPTIONS = ('small', 'smoke')


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """Builds the trainer config.

  Args:
    arg: ``'small'`` (default) or ``'smoke'``.

  Returns:
    The ConfigDict, with sections ``model`` (``STMAEConfig`` keywords),
    ``optim`` and ``data``.

  Raises:
    ConfigError: for an unknown option.
  """
  arg = (arg or 'small').strip()
  if arg not in _OPTIONS:
    raise ConfigError(f'stmae config: unknown option {arg!r}, expected one of '
                      f'{list(_OPTIONS)}')
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.total_steps = 20_000
  c.log_every = 50
  c.ckpt_every = 1_000
  c.keep_ckpts = 3
  c.eval_every = 1_000    # validation on data.val_dir; 0 = never
  c.tensorboard = False   # also log to <workdir>/tb (needs tensorboardX)
  # Resume even if the config differs from the checkpoint's in fields that
  # change what is trained (jaxvr.training.loop.RESUME_FREE_FIELDS).
  c.allow_config_change = False
  c.n_devices = ml_collections.FieldReference(None, field_type=int)
  c.mask_ratio = 0.9
  # Rematerialisation of each Transformer block in the backward pass:
  # 'none', 'dots' (keep matmul outputs, recompute the rest) or 'full'.
  c.remat = 'none'
  # Run the blocks as one nn.scan (compile time independent of depth); the
  # training state then holds stacked block parameters, and --export writes
  # the default layout. See eval/memory_stmae.py for memory and compile time.
  c.scan_blocks = False
  # XLA backend optimisation level 0: compiles about 3x faster on CPU but
  # runs slower; for smoke runs and tests.
  c.fast_compile = False

  c.model = ml_collections.ConfigDict()
  c.model.img_size = 112
  c.model.patch_size = 16
  c.model.in_chans = 3
  c.model.embed_dim = 192
  c.model.depth = 4
  c.model.num_heads = 3
  c.model.decoder_embed_dim = 128
  c.model.decoder_depth = 2
  c.model.decoder_num_heads = 4
  c.model.mlp_ratio = 4.0
  c.model.norm_pix_loss = True
  c.model.num_frames = 16
  c.model.t_patch_size = 2
  c.model.pred_t_dim = 8
  c.model.sep_pos_embed = True
  c.model.cls_embed = True
  c.model.trunc_init = False
  c.model.no_qkv_bias = False
  c.model.dtype = 'float32'         # 'bfloat16' on GPU/TPU

  c.optim = ml_collections.ConfigDict()
  c.optim.blr = 1.6e-3              # lr = blr * batch_size / 256
  c.optim.min_lr = 0.0
  c.optim.warmup_steps = 1_000
  c.optim.b1 = 0.9
  c.optim.b2 = 0.95
  c.optim.weight_decay = 0.05
  c.optim.clip_grad = 0.02          # global-norm clip; <= 0 disables it

  c.data = ml_collections.ConfigDict()
  c.data.source = 'videos'          # 'videos' (clips_dir) or 'synthetic'
  c.data.clips_dir = ''             # training videos (the train split)
  c.data.val_dir = ''               # validation videos; '' = no validation
  c.data.batch_size = 8
  c.data.frame_stride = 4           # the recipe's sampling rate
  c.data.crop = 'random'
  c.data.crop_scale = (0.7, 1.0)    # crop side (area about 0.5 to 1)
  c.data.flip = True
  # Decode each video once, short side shrunk to this many pixels, and cut
  # clips from memory; 0 decodes every clip from its file instead.
  c.data.preload_short_side = 128
  c.data.max_frames_per_video = 384  # evenly spread runs of long videos
  c.data.cache_dir = ''             # keep decoded videos here (.npy)
  c.data.num_workers = 2

  if arg == 'smoke':
    c.total_steps = 6
    c.fast_compile = True
    c.log_every = 1
    c.ckpt_every = 3
    c.mask_ratio = 0.5
    c.model.update(img_size=16, patch_size=8, embed_dim=32, depth=1,
                   num_heads=2, decoder_embed_dim=16, decoder_depth=1,
                   decoder_num_heads=2, num_frames=4, t_patch_size=2,
                   pred_t_dim=4)
    c.optim.blr = 0.1
    c.optim.warmup_steps = 2
    c.optim.clip_grad = 1.0
    c.data.source = 'synthetic'
    c.data.frame_stride = 1
    c.data.num_workers = 0
  return c
