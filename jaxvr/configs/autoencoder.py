r"""Config of the bottleneck-autoencoder trainer (Sparse MP4's learned baseline).

Run::

  python -m train.autoencoder --config=jaxvr/configs/autoencoder.py \
      --workdir=runs/autoencoder --config.data.clips_dir=path/to/videos

``get_config(arg)``: ``default`` (64x64 random crops of frame pairs, width
48, residual over box-down / bicubic-up) or ``smoke`` (16x16 synthetic
pairs, width 8, 4 steps; tests and CI).
"""

import ml_collections

from jaxvr.errors import ConfigError


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """Builds the trainer config (``arg``: 'default' or 'smoke')."""
  arg = (arg or 'default').strip()
  if arg not in ('default', 'smoke'):
    raise ConfigError(f"autoencoder config: unknown option {arg!r}, expected 'default' or 'smoke'")
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.total_steps = 3000
  c.log_every = 50
  c.ckpt_every = 500
  c.keep_ckpts = 2
  c.eval_every = 250          # validation PSNR on data.val_dir; 0 = never
  c.tensorboard = False       # also log to <workdir>/tb
  # Resume even if the config differs from the checkpoint's in fields that
  # change what is trained (jaxvr.training.loop.RESUME_FREE_FIELDS).
  c.allow_config_change = False
  c.n_devices = ml_collections.FieldReference(None, field_type=int)
  c.noise_std = 0.01          # input corruption, in [0, 1] pixel units
  c.model = ml_collections.ConfigDict({'width': 48, 'blocks': 3,
                                       'dtype': 'float32', 'residual': True})
  c.optim = ml_collections.ConfigDict({'lr': 1e-3, 'warmup_steps': 100,
                                       'min_lr': 1e-5, 'clip_grad': 1.0})
  c.data = ml_collections.ConfigDict({
      'source': 'videos', 'clips_dir': '', 'val_dir': '', 'val_size': 112,
      'val_frames': 16, 'size': 64, 'batch_size': 16, 'frame_stride': 1,
      'preload_short_side': 128, 'max_frames_per_video': 384,
      'cache_dir': '', 'num_workers': 0})
  if arg == 'smoke':
    c.total_steps = 4
    c.log_every = 2
    c.ckpt_every = 2
    c.model.width = 8
    c.model.blocks = 1
    c.data.source = 'synthetic'
    c.data.size = 16
    c.data.batch_size = 8
  return c
