r"""Config of the Sparse MP4 dictionary trainer (``jaxvr.training.lca_dictionary``).

Run::

  python -m train.lca_dictionary --config=jaxvr/configs/lca_dictionary.py \
      --workdir=runs/lca_dictionary --config.data.clips_dir=path/to/videos \
      --export=lca_dictionary.npz

``get_config(arg)``: ``default`` or ``smoke`` (tiny kernels on synthetic
clips, 4 steps; tests and CI).

The default follows the Sparse MP4 paper: 18x18 kernels spanning 3 frames,
spatial stride 2, every window normalised to zero mean and unit standard
deviation. K = 32 kernels: each code position covers 2 x 2 pixels of 3 frames
(12 values), so 32 features are about 2.7x overcomplete, enough for a
dictionary that must also predict the dropped middle frame, while the cost of
restoration, which is linear in K (one synthesis and one analysis per solver
step, about ``2 * 3 * 18 * 18 * K`` multiply-adds per code position with
convolutions, K FFT products per frame with FFTs), stays affordable on a CPU:
a 48-frame 128x128 clip has 24 windows x 3 colour channels, each solved for
a few hundred steps; K = 128 would make that four times slower.

Training uses 48x48 crops at the evaluation's scale (short side 128), FISTA
with lambda 2 (about 15 % nonzero codes on normalised windows) as the inner
solver, and PetaVision's Hebbian step with viscosity momentum.
"""

import ml_collections

from jaxvr.errors import ConfigError


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """Builds the trainer config (``arg``: 'default' or 'smoke')."""
  arg = (arg or 'default').strip()
  if arg not in ('default', 'smoke'):
    raise ConfigError(f"lca_dictionary config: unknown option {arg!r}, "
                      f"expected 'default' or 'smoke'")
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.total_steps = 400
  c.log_every = 10
  c.ckpt_every = 50
  c.keep_ckpts = 2
  c.eval_every = 50      # validation restoration PSNR on data.val_dir
  c.tensorboard = False  # also log to <workdir>/tb
  # Resume even if the config differs from the checkpoint's in fields that
  # change what is trained (jaxvr.training.loop.RESUME_FREE_FIELDS).
  c.allow_config_change = False
  c.n_devices = ml_collections.FieldReference(None, field_type=int)
  c.dtype = 'float32'
  # Dictionary: K kernels [K, 3, kh, kw] on a stride-s code grid.
  c.dictionary = ml_collections.ConfigDict({
      'n_kernels': 32, 'frames': 3, 'kernel_size': 18, 'stride': 2,
      # Initial kernels: 'patches' (normalised windows of the first batch
      # plus a little noise) or 'random' (Gaussian).
      'init': 'patches', 'init_noise': 0.1})
  # Inner solver (codes are constants for the update).
  c.inference = ml_collections.ConfigDict({
      'solver': 'fista', 'lam': 2.0, 'n_steps': 40, 'dt_over_tau': 0.05,
      'nonneg': False, 'power_iters': 20, 'method': 'auto',
      # Windows seen during training: 'full' (all three frames observed, the
      # middle one being the frame Sparse MP4 drops) or 'decimated' (the
      # transmitted checkerboards only; see the trainer's module doc).
      'windows': 'full'})
  # Outer step: PetaVision's Hebbian rule with momentum and unit L2 kernels.
  c.hebbian = ml_collections.ConfigDict({
      'lr': 0.2, 'momentum': 'viscosity', 'momentum_tau': 10.0,
      'decay': 0.0})
  c.data = ml_collections.ConfigDict({
      'source': 'videos', 'clips_dir': '', 'size': 48, 'batch_size': 8,
      # Crops at the scale of the evaluation (short side 128, no resampling
      # of the crop): crop side = size / preload_short_side of the short side.
      'preload_short_side': 128, 'max_frames_per_video': 384,
      'cache_dir': '', 'num_workers': 0,
      # Validation (restoration of 8-frame 64 px clips: cheap enough to run
      # every few steps); '' = none.
      'val_dir': '', 'val_size': 64, 'val_frames': 8})
  if arg == 'smoke':
    c.total_steps = 4
    c.log_every = 2
    c.ckpt_every = 2
    c.dictionary.n_kernels = 4
    c.dictionary.kernel_size = 4
    c.inference.n_steps = 5
    c.inference.lam = 0.1
    c.inference.power_iters = 5
    c.data.source = 'synthetic'
    c.data.size = 12
    c.data.batch_size = 8
  return c
