"""The sparse-pixel GAN as reducers: learned masks, random masks, and floors.

* ``sparsegan``: the mask generator picks the kept pixels, the inpainting
  generator restores the rest (Nittala et al.'s full model).
* ``random-mask-d5`` / ``random-mask-d10``: "No Mask Gen" baselines, an
  exact-count uniformly random mask keeping 5 % / 10 % of every frame,
  restored by the No-Mask-Gen inpainting generator trained for that density
  (bundled); ``weights_dir`` picks other weights.
* Classical floors on the same kept pixels and the same payload bytes,
  restored by multi-scale normalized convolution
  (:mod:`jaxvr.sparsegan.normconv`): ``normconv-d5`` / ``normconv-d10`` (the
  random masks of ``random-mask-d5`` / ``-d10``, same seed) and
  ``sparsegan-normconv`` (the full model's learned mask).

The payload bytes are the real :class:`~jaxvr.sparsegan.payload.SparsePixelPayload`
(LZMA-coded bit mask plus the exact kept colours); nothing else is needed
to decode.
"""

from __future__ import annotations

import numpy as np

from jaxvr import errors
from jaxvr.reducers.base import Payload, Reducer, register


class SparseGanReducer(Reducer):
  """Sparse pixels (learned or random mask) + GAN inpainting.

  Args:
    weights_dir: a weights folder from ``train.sparse_gan --export``; None
      uses the bundled weights: the full model for learned masks, the
      No-Mask-Gen model of the density for random masks.
    density: None for the learned mask; a fraction for exact-count random
      masks.
    seed: seed of the mask noise / random mask and of the hole noise.
    restore: ``'gan'`` (the inpainting generator) or ``'normconv'`` (the
      classical floor; weights are then only used for learned masks).
    flip_ensemble: average the generator over the clip and its mirror
      images (``inference.inpaint``): three times the decoding work for
      +0.07-0.09 dB on the validation clips; on by default.
  """

  min_size = 8

  def __init__(self, weights_dir=None, density: float | None = None,
               seed: int = 0, restore: str = 'gan',
               flip_ensemble: bool = True):
    if density is not None and not 0.0 < float(density) <= 1.0:
      raise errors.ConfigError(f'density: expected a fraction in (0, 1], got '
                               f'{density}')
    if restore not in ('gan', 'normconv'):
      raise errors.ConfigError(f"restore: expected 'gan' or 'normconv', got "
                               f'{restore!r}')
    self._weights_dir = weights_dir
    self._density = None if density is None else float(density)
    self._seed = int(seed)
    self._restore = restore
    self._flip_ensemble = bool(flip_ensemble)
    self._loaded = None
    self._last_mask: np.ndarray | None = None

  def _weights(self):
    from jaxvr.sparsegan import inference
    if self._loaded is None:
      directory = self._weights_dir
      if directory is None:
        directory = inference.default_weights_dir(self._density)
      self._loaded = inference.load(directory)
    return self._loaded

  def encode(self, video: np.ndarray, fps: float) -> Payload:
    from jaxvr.sparsegan import inference
    video = np.asarray(video)
    if self._density is None:
      mask = inference.predict_mask(video, self._weights(), seed=self._seed)
    else:
      if video.ndim != 4:
        raise errors.ShapeError(f'video: expected uint8 [T, H, W, 3], got '
                                f'shape {video.shape}')
      mask = inference.random_video_mask(video.shape[:3], self._density,
                                         seed=self._seed)
    payload = inference.encode(video, mask=mask, fps=fps)
    self._last_mask = mask
    kept = float(mask.mean())
    return Payload(payload.to_bytes(), {
        'kept_fraction': kept,
        'mask_bytes': len(payload.mask_bytes),
        'value_bytes': len(payload.value_bytes),
    })

  def decode(self, payload: Payload) -> np.ndarray:
    from jaxvr.sparsegan import inference, normconv
    from jaxvr.sparsegan import payload as payload_lib
    if self._restore == 'normconv':
      sparse, mask = payload_lib.decode(payload.data)
      return normconv.fill_video(sparse, mask)
    return inference.decode(payload.data, self._weights(), seed=self._seed,
                            flip_ensemble=self._flip_ensemble)

  def extras(self) -> dict:
    """``{'mask': bool [T, H, W]}`` of the last encoded video."""
    return {} if self._last_mask is None else {'mask': self._last_mask}


register('sparsegan', SparseGanReducer)
register('random-mask-d5',
         lambda **kw: SparseGanReducer(density=kw.pop('density', 0.05), **kw))
register('random-mask-d10',
         lambda **kw: SparseGanReducer(density=kw.pop('density', 0.10), **kw))
register('sparsegan-normconv',
         lambda **kw: SparseGanReducer(restore='normconv', **kw))
register('normconv-d5',
         lambda **kw: SparseGanReducer(density=kw.pop('density', 0.05),
                                       restore='normconv', **kw))
register('normconv-d10',
         lambda **kw: SparseGanReducer(density=kw.pop('density', 0.10),
                                       restore='normconv', **kw))
