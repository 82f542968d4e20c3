"""A denoising bottleneck autoencoder at Sparse MP4's 4:1 reduction.

The baseline the Sparse MP4 paper implies: instead of keeping a fixed quarter
of the samples (every other frame, half of the pixels), learn what to keep.
Each pair of frames ``[2, H, W, 3]`` is encoded into an 8-bit latent
``[H/2, W/2, 6]``, exactly a quarter of the input samples; the latent is sent
losslessly with a real codec and decoded back into the two frames.

Training corrupts the input with Gaussian noise (Vincent et al., "Extracting
and composing robust features with denoising autoencoders", ICML 2008) and
quantizes the latent to 8 bits with a straight-through round, so the decoder
learns on exactly what it will receive.

With ``residual=True`` (the default config; a design choice, not the
paper's) both halves learn corrections to a classical pair: the latent is
the 2x2 box average of each frame plus a learned correction, and the decoder
outputs a bicubic upsampling of the latent's two frames plus a learned
correction. Both correction layers start at zero, so an untrained model is
exactly "downsample 2x, send, upsample bicubic", and training only learns
what that misses.
"""

from __future__ import annotations

import dataclasses
import functools
import struct

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxvr import codecs, errors, payloads
from jaxvr.video.transforms import check_frames, pad_even

LATENT_CHANNELS = 6   # 2 frames x 3 channels / 4 (2x2 spatial) -> 4:1


@dataclasses.dataclass(frozen=True)
class AEConfig:
  """Autoencoder size. ``width`` is the feature count of the hidden convs."""

  width: int = 48
  blocks: int = 2
  dtype: str = 'float32'
  residual: bool = False


class _ResBlock(nn.Module):
  width: int
  dtype: jnp.dtype

  @nn.compact
  def __call__(self, x):
    y = nn.Conv(self.width, (3, 3), dtype=self.dtype)(nn.gelu(x))
    y = nn.Conv(self.width, (3, 3), dtype=self.dtype)(nn.gelu(y))
    return x + y


class BottleneckAE(nn.Module):
  """Frame pairs ``[B, 2, H, W, 3]`` in [0, 1] -> latent -> frame pairs.

  ``encode`` returns the latent in [0, 1] ``[B, H/2, W/2, 6]``; ``decode``
  maps a latent back to ``[B, 2, H, W, 3]`` in [0, 1]. H and W must be even.
  """

  config: AEConfig

  def setup(self):
    c, dt = self.config, jnp.dtype(self.config.dtype)
    self.enc_in = nn.Conv(c.width, (3, 3), dtype=dt)
    self.enc_down = nn.Conv(c.width, (4, 4), strides=(2, 2), dtype=dt)
    self.enc_blocks = [_ResBlock(c.width, dt) for _ in range(c.blocks)]
    # Residual models start their output layers at zero (see module doc).
    out_init = (nn.initializers.zeros if c.residual
                else nn.linear.default_kernel_init)
    self.enc_out = nn.Conv(LATENT_CHANNELS, (1, 1), dtype=dt,
                           kernel_init=out_init)
    self.dec_in = nn.Conv(c.width, (3, 3), dtype=dt)
    self.dec_blocks = [_ResBlock(c.width, dt) for _ in range(c.blocks)]
    self.dec_up = nn.ConvTranspose(c.width, (4, 4), strides=(2, 2), dtype=dt)
    self.dec_out = nn.Conv(6, (3, 3), dtype=dt, kernel_init=out_init)

  def encode(self, pairs):
    b, two, h, w, ch = pairs.shape
    if two != 2 or ch != 3 or h % 2 or w % 2:
      raise errors.ShapeError(
          f'pairs: expected [B, 2, H, W, 3] with even H, W, got {pairs.shape}')
    x = jnp.moveaxis(pairs, 1, -2).reshape(b, h, w, 6)
    y = nn.gelu(self.enc_in(x))
    y = self.enc_down(y)
    for block in self.enc_blocks:
      y = block(y)
    y = self.enc_out(nn.gelu(y)).astype(jnp.float32)
    if not self.config.residual:
      return nn.sigmoid(y)
    box = x.reshape(b, h // 2, 2, w // 2, 2, 6).mean(axis=(2, 4))
    return jnp.clip(box + y, 0.0, 1.0)

  def decode(self, latent):
    b, h2, w2, _ = latent.shape
    x = self.dec_in(latent)
    for block in self.dec_blocks:
      x = block(x)
    x = self.dec_up(nn.gelu(x))
    x = self.dec_out(nn.gelu(x)).astype(jnp.float32)
    if self.config.residual:
      up = jax.image.resize(latent.astype(jnp.float32),
                            (b, 2 * h2, 2 * w2, 6), 'cubic')
      x = jnp.clip(up + x, 0.0, 1.0)
    else:
      x = nn.sigmoid(x)
    return jnp.moveaxis(x.reshape(b, 2 * h2, 2 * w2, 2, 3), -2, 1)

  def __call__(self, pairs):
    return self.decode(quantize(self.encode(pairs)))


def quantize(latent):
  """8-bit straight-through quantization: round(255 z) / 255, identity gradient."""
  q = jnp.round(latent * 255.0) / 255.0
  return latent + jax.lax.stop_gradient(q - latent)


def init_params(config: AEConfig, key, size: int = 32):
  """Parameters for ``BottleneckAE(config)`` (independent of frame size)."""
  init = jax.jit(BottleneckAE(config).init)
  return init(key, jnp.zeros((1, 2, size, size, 3)))['params']


# Payload ---------------------------------------------------------------------

_HEADER = struct.Struct('<4sHHHf')   # magic, T, H, W, fps
_MAGIC = b'JVAE'
_WHAT = 'autoencoder payload'


def _pairs(video: np.ndarray) -> np.ndarray:
  """uint8 ``[T, H, W, 3]`` -> float ``[ceil(T/2), 2, He, We, 3]`` in [0, 1]."""
  v = pad_even(video, time=True)
  return v.reshape(-1, 2, *v.shape[1:]).astype(np.float32) / 255.0


@functools.lru_cache(maxsize=16)
def _jitted(config: AEConfig, method: str):
  return jax.jit(lambda p, v: BottleneckAE(config).apply(
      {'params': p}, v, method=method))


def _apply(config: AEConfig, params, x, method: str, batch: int = 8):
  fn = _jitted(config, method)
  return np.concatenate([np.asarray(fn(params, x[i:i + batch]))
                         for i in range(0, len(x), batch)])


def encode_video(params, config: AEConfig, video, *, fps: float = 24.0) -> bytes:
  """Encodes uint8 ``[T, H, W, 3]`` into payload bytes (header + lossless latent)."""
  video = check_frames(video)
  t, h, w, _ = video.shape
  latent = _apply(config, params, _pairs(video), 'encode')         # [N,H/2,W/2,6]
  q = np.clip(np.round(latent * 255.0), 0, 255).astype(np.uint8)
  frames = np.concatenate([q[..., :3], q[..., 3:]], axis=2)        # [N,H/2,W,3]
  stream = codecs.encode(frames, 'libx264', lossless=True, pix_fmt='rgb24',
                         fps=fps / 2)
  return payloads.pack_header(_WHAT, _HEADER, _MAGIC, t, h, w, fps) + stream


@dataclasses.dataclass(frozen=True)
class LatentHeader:
  """The fixed header of an autoencoder payload."""

  frames: int
  height: int
  width: int
  fps: float

  @classmethod
  def parse(cls, data: bytes) -> LatentHeader:
    """Checks magic, sizes and frame rate (see :mod:`jaxvr.payloads`)."""
    t, h, w, fps = payloads.unpack_header(_WHAT, data, _HEADER, _MAGIC)
    payloads.check_video(_WHAT, t, h, w)
    return cls(t, h, w, payloads.check_fps(_WHAT, fps))

  def stream_shape(self) -> tuple[int, int, int]:
    """``(frames, height, width)`` of the latent stream: one frame per pair,
    the two frames' latents side by side."""
    he, we = self.height + self.height % 2, self.width + self.width % 2
    return (self.frames + 1) // 2, he // 2, we


def decode_video(params, config: AEConfig, data: bytes) -> np.ndarray:
  """Decodes payload bytes back to uint8 ``[T, H, W, 3]``.

  Raises:
    PayloadError: malformed header, or a latent stream that does not decode
      to the frames and size the header implies.
  """
  head = LatentHeader.parse(data)
  n, height, width = head.stream_shape()
  frames = codecs.decode_stream(_WHAT, bytes(data[_HEADER.size:]),
                                  frames=n, height=height, width=width)
  w2 = frames.shape[2] // 2
  latent = np.concatenate([frames[:, :, :w2], frames[:, :, w2:]], axis=-1)
  pairs = _apply(config, params, latent.astype(np.float32) / 255.0, 'decode')
  video = pairs.reshape(-1, *pairs.shape[2:])[:head.frames, :head.height,
                                              :head.width]
  return np.clip(np.round(video * 255.0), 0, 255).astype(np.uint8)
