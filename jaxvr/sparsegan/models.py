"""The modules of one sparse-pixel GAN configuration.

Nittala et al., "Relevance of Sparse pixel representations to Lossy Video
Compression" (after Peter's MG+WGAN and Vasata et al.'s WGAIN). Training
(:mod:`jaxvr.training.sparse_gan_step`) and inference
(:mod:`jaxvr.sparsegan.inference`) build the same modules from the trainer
config's ``model`` section and draw the inpainter's hole noise alike.
"""

import flax
import jax.numpy as jnp
import ml_collections

from jaxvr.errors import ConfigError
from jaxvr.sparsegan.networks import (
  Critics,
  InpaintingGenerator,
  MaskGenerator,
)

HOLE_NOISE_STD = 0.1   # WGAIN: z ~ N(0, 0.1^2) on the holes


@flax.struct.dataclass
class Models:
  """The Flax modules of one configuration (static, hashable)."""
  mask: MaskGenerator | None = flax.struct.field(pytree_node=False)
  frame: InpaintingGenerator = flax.struct.field(pytree_node=False)
  critics: Critics = flax.struct.field(pytree_node=False)


def _dtype(name):
  return None if name in (None, '', 'float32') else jnp.dtype(name)


def build_models(config: ml_collections.ConfigDict) -> Models:
  """Builds the modules from ``config.model``."""
  m = config.model
  if m.mask_mode not in ('learned', 'random'):
    raise ConfigError(f"model.mask_mode must be 'learned' or 'random', got "
                      f'{m.mask_mode!r}')
  # Weights exported before frame chunking existed have no such field.
  frame_chunk = m.get('frame_chunk', 0)
  if not isinstance(frame_chunk, int) or frame_chunk < 0:
    raise ConfigError(f'model.frame_chunk must be an int >= 0 (0 = all '
                      f'frames at once), got {frame_chunk!r}')
  mask_width = m.get('mask_width_mult', None)
  mask_width = m.width_mult if mask_width is None else float(mask_width)
  if not mask_width > 0:
    raise ConfigError(f'model.mask_width_mult must be > 0 (or None: '
                      f'model.width_mult), got {mask_width!r}')
  kw = dict(gru_half=m.gru_half,
            orthogonal_recurrent=m.orthogonal_recurrent, remat=m.remat,
            dtype=_dtype(m.dtype), frame_chunk=frame_chunk)
  return Models(
      mask=(MaskGenerator(**kw, width_mult=mask_width, prior_density=(
          float(m.density) if m.get('mask_prior', False) else None))
            if m.mask_mode == 'learned' else None),
      frame=InpaintingGenerator(
          **kw, width_mult=m.width_mult, residual=bool(m.get('residual', False)),
          fill_sigma_ts=tuple(float(s) for s in m.get('fill_sigma_ts', ()))),
      critics=Critics(m.critic_width_mult, m.spatial_padding, m.frame_diffs,
                      _dtype(m.dtype)))
