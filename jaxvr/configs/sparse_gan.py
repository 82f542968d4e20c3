r"""Config of the sparse-pixel video GAN trainer.

Run (full model, the paper's settings, 128x128 clips of 20 frames)::

  python -m train.sparse_gan --config=jaxvr/configs/sparse_gan.py \
      --workdir=runs/sparse_gan --config.data.clips_dir=path/to/videos

``get_config(arg)`` takes a comma-separated list of options:

* ``paper`` (default) or ``robust``: the loss/optimiser preset;
* ``random5`` / ``random10``: the "No Mask Gen" baselines (exact-count
  random masks at 5 % / 10 %, no mask generator, no density term);
* ``residual``: the inpainting generator corrects a normalized-convolution
  fill of the kept pixels and the mask generator corrects a random mask of
  the target density (departures from the paper; see
  ``jaxvr.sparsegan.networks.InpaintingGenerator`` and ``MaskGenerator``);
* ``smoke``: tiny widths, 16x16 frames, T = 4, for tests and CI.

For example ``--config=jaxvr/configs/sparse_gan.py:smoke,random5``; single
fields are overridden with ``--config.optim.gen_lr=1e-4`` and so on.
"""

import ml_collections

from jaxvr.errors import ConfigError
from jaxvr.sparsegan.losses import preset

_OPTIONS = ('paper', 'robust', 'random5', 'random10', 'residual', 'smoke')


def _apply_preset(config: ml_collections.ConfigDict, name: str) -> None:
  p = preset(name)
  config.preset = name
  for k in ('critic_loss', 'drift', 'gp_weight', 'lambda_t', 'lambda_adv',
            'alpha', 'beta', 'density_form', 'recon'):
    config.loss[k] = p[k]
  for k in ('warmup_steps', 'mask_lr_scale', 'mask_lr_scale_steps',
            'grad_clip'):
    config.optim[k] = p[k]
  config.model.orthogonal_recurrent = p['orthogonal_recurrent']


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """Builds the trainer config.

  Args:
    arg: comma-separated options (see the module docstring), or None.

  Returns:
    The ConfigDict, with sections ``model``, ``loss``, ``optim``, ``data`` and
    ``ckpt``.
  """
  opts = [o.strip() for o in (arg or '').split(',') if o.strip()]
  unknown = [o for o in opts if o not in _OPTIONS]
  if unknown:
    raise ConfigError(f'sparse_gan config: unknown option(s) {unknown}, '
                      f'expected some of {list(_OPTIONS)}')
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.total_steps = 100_000
  c.log_every = 50
  c.eval_every = 5_000                # validation PSNR on data.val_dir
  c.tensorboard = False              # also log to <workdir>/tb
  # Resume even if the config differs from the checkpoint's in fields that
  # change what is trained (jaxvr.training.loop.RESUME_FREE_FIELDS).
  c.allow_config_change = False
  c.preset = 'paper'
  c.n_devices = ml_collections.FieldReference(None, field_type=int)  # None: all
  c.fast_compile = False   # XLA backend optimisation level 0 (short CPU runs)
  c.init_weights = ''      # start the generators from an exported folder

  c.model = ml_collections.ConfigDict()
  c.model.mask_mode = 'learned'      # 'learned' | 'random' (No Mask Gen)
  c.model.density = 0.05             # target kept fraction per frame
  c.model.width_mult = 1.0           # generator channel multiplier
  c.model.critic_width_mult = 1.0
  # G_M's channel multiplier; None: width_mult. A narrower G_M keeps the
  # full model within the bundled-weights budget (G_M only places pixels).
  c.model.mask_width_mult = ml_collections.FieldReference(None,
                                                          field_type=float)
  c.model.gru_half = False           # ConvGRU on half the bottleneck channels
  c.model.orthogonal_recurrent = False
  c.model.spatial_padding = 'VALID'  # WGAIN; needs >= 125 px frames
  c.model.frame_diffs = False        # temporal critic also sees x_t - x_{t-1}
  c.model.residual = False           # G_I corrects a normalized-convolution
                                     # fill (departure; see networks.py)
  c.model.mask_prior = False         # G_M corrects a random mask of the
                                     # target density (departure)
  # With residual: G_I also sees fills at these temporal sigmas (frames),
  # e.g. (0.0, 0.5, 2.0), and picks per pixel how far to average in time
  # (departure; see networks.InpaintingGenerator).
  c.model.fill_sigma_ts = ()
  c.model.remat = False              # recompute each block in the backward
  # Generators run the clip in time chunks of this many frames, each chunk
  # recomputed in the backward pass (0 = all frames at once). 1 is the
  # low-memory setting (see eval/memory_sparse_gan.py); same results.
  c.model.frame_chunk = 0
  c.model.dtype = 'float32'          # 'bfloat16' for convolutions on GPU/TPU

  c.loss = ml_collections.ConfigDict()
  c.optim = ml_collections.ConfigDict()
  c.optim.gen_lr = 5e-5
  c.optim.critic_lr = 1e-5
  c.optim.b1 = 0.5
  c.optim.b2 = 0.999
  c.optim.decay_steps = 10_000       # lr x decay_rate every decay_steps
  c.optim.decay_rate = 0.9
  c.optim.adv_start = 0              # steps of reconstruction-only warm-up
  _apply_preset(c, 'robust' if 'robust' in opts else 'paper')

  c.data = ml_collections.ConfigDict()
  c.data.source = 'videos'           # 'videos' (clips_dir) or 'synthetic'
  c.data.clips_dir = ''              # folder of videos (UCF-101 class)
  c.data.preload_short_side = -1     # -1: the frame size; 0: decode per clip
  c.data.num_workers = 0
  c.data.batch_size = 2
  c.data.num_frames = 20
  c.data.frame_size = 128
  # The largest crop with the frame's aspect ratio, scaled by crop_scale
  # (random scale in the range for 'random' crops, the upper end for
  # 'center'), resized to frame_size.
  c.data.crop = 'center'             # 'center' | 'random'
  c.data.crop_scale = (1.0, 1.0)
  c.data.flip = True
  c.data.val_dir = ''                # validation videos; '' = no validation
  c.data.val_frames = 16             # validation clip length
  c.data.val_size = 112              # validation frame size (px)
  c.data.max_frames_per_video = 384  # evenly spread runs of long videos
  c.data.cache_dir = ''              # keep decoded videos here (.npy)

  c.ckpt = ml_collections.ConfigDict()
  c.ckpt.every = 5_000
  c.ckpt.keep = 3

  for name, density in (('random5', 0.05), ('random10', 0.10)):
    if name in opts:
      c.model.mask_mode = 'random'
      c.model.density = density
  if 'residual' in opts:
    c.model.residual = True
    c.model.mask_prior = True
  if 'smoke' in opts:
    c.total_steps = 40
    c.log_every = 5
    c.eval_every = 20
    c.model.width_mult = 1 / 8
    c.model.critic_width_mult = 1 / 8
    c.model.spatial_padding = 'SAME'
    c.data.batch_size = 8
    c.data.num_frames = 4
    c.data.frame_size = 16
    c.ckpt.every = 20
    if c.preset == 'robust':  # shrink the warm-up phases to the smoke length
      c.optim.warmup_steps = 10
      c.optim.mask_lr_scale_steps = 20
  return c
