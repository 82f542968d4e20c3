"""Denoising bottleneck autoencoder: the learned 4:1 baseline of Sparse MP4."""

from jaxvr.autoencoder.model import (
  AEConfig,
  BottleneckAE,
  decode_video,
  encode_video,
  init_params,
  quantize,
)

__all__ = ['AEConfig', 'BottleneckAE', 'decode_video', 'encode_video',
           'init_params', 'quantize']
