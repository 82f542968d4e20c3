"""The bottleneck autoencoder (Sparse MP4's learned 4:1 baseline) as a reducer."""

from __future__ import annotations

import numpy as np

from jaxvr import autoencoder, errors
from jaxvr.reducers.base import Payload, Reducer, register


def default_weights():
  """``(params, AEConfig)`` of the bundled autoencoder (jaxvr/assets/autoencoder)."""
  from jaxvr import checkpoint
  from jaxvr.assets import ASSETS

  path = ASSETS / 'autoencoder'
  if not path.is_dir():
    raise errors.CheckpointError(
        f'{path}: the bundled autoencoder weights are missing; train them with '
        '`python -m train.autoencoder ... --export DIR`')
  params, config = checkpoint.load_params(path)
  return params, autoencoder.AEConfig(**config)


class AutoencoderReducer(Reducer):
  """Frame pairs -> 8-bit latent (a quarter of the samples) -> lossless x264."""

  def __init__(self, weights_dir=None):
    self._weights_dir = weights_dir
    self._loaded = None

  def _weights(self):
    if self._loaded is None:
      if self._weights_dir is None:
        self._loaded = default_weights()
      else:
        from jaxvr import checkpoint
        params, config = checkpoint.load_params(self._weights_dir)
        self._loaded = (params, autoencoder.AEConfig(**config))
    return self._loaded

  def encode(self, video: np.ndarray, fps: float) -> Payload:
    params, config = self._weights()
    return Payload(autoencoder.encode_video(params, config, video, fps=fps))

  def decode(self, payload: Payload) -> np.ndarray:
    params, config = self._weights()
    return autoencoder.decode_video(params, config, payload.data)


register('bottleneck-ae', AutoencoderReducer)
