"""The sparse-pixel GAN as reducers: learned masks and random masks.

* ``sparsegan``: the mask generator picks the kept pixels, the inpainting
  generator restores the rest (Nittala et al.'s full model).
* ``random-mask-d5`` / ``random-mask-d10``: "No Mask Gen" baselines, an
  exact-count uniformly random mask keeping 5 % / 10 % of every frame, restored
  by an inpainting generator. By default that is the full model's generator
  (same weights as ``sparsegan``), so the comparison isolates where the
  pixels are; pass ``weights_dir`` to use No-Mask-Gen baseline weights.

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
      uses the bundled default weights.
    density: None for the learned mask; a fraction for exact-count random
      masks.
    seed: seed of the mask noise / random mask and of the hole noise.
  """

  min_size = 8

  def __init__(self, weights_dir=None, density: float | None = None,
               seed: int = 0):
    if density is not None and not 0.0 < float(density) <= 1.0:
      raise errors.ConfigError(f'density: expected a fraction in (0, 1], got '
                               f'{density}')
    self._weights_dir = weights_dir
    self._density = None if density is None else float(density)
    self._seed = int(seed)
    self._loaded = None
    self._last_mask: np.ndarray | None = None

  def _weights(self):
    from jaxvr.sparsegan import inference
    if self._loaded is None:
      self._loaded = inference.load(self._weights_dir)
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
    from jaxvr.sparsegan import inference
    return inference.decode(payload.data, self._weights(), seed=self._seed)

  def extras(self) -> dict:
    """``{'mask': bool [T, H, W]}`` of the last encoded video."""
    return {} if self._last_mask is None else {'mask': self._last_mask}


register('sparsegan', SparseGanReducer)
register('random-mask-d5',
         lambda **kw: SparseGanReducer(density=kw.pop('density', 0.05), **kw))
register('random-mask-d10',
         lambda **kw: SparseGanReducer(density=kw.pop('density', 0.10), **kw))
