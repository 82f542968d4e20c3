"""Networks of the sparse-pixel video GAN.

Nittala, Tumarada and Churiwala, "Relevance of Sparse pixel representations
to Lossy Video Compression" (Saarland University), a video extension of
Peter, "A Wasserstein GAN for Joint Learning of Inpainting and its Spatial
Optimisation" (arXiv:2202.05623). The inpainting hourglass and the spatial
critic follow WGAIN: Vasata, Halama and Friedjungova, "Image inpainting using
Wasserstein generative adversarial imputation network" (ICANN 2021).

* ``DilBlock``: three parallel 5x5 convolutions with dilation 1, 2 and 5.
* ``Hourglass``: a three-level U-net of dilated blocks whose bottleneck holds
  a ConvGRU. The encoder and decoder fold time into the batch and run on all
  frames at once (or on chunks of frames, ``frame_chunk``); only the ConvGRU
  is scanned over time.
* ``MaskGenerator``: frame + uniform noise -> sigmoid confidence.
* ``InpaintingGenerator``: known pixels, mask, hole noise -> frame, through
  the Keras-form hard sigmoid; known pixels are copied into the decoded frame.
* ``SpatialCritic`` (frame + mask, per frame) and ``TemporalCritic`` (clip),
  both spectral-normalised (Miyato et al., arXiv:1802.05957).

All arrays are ``[B, T, H, W, C]`` with values in [0, 1].
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxvr.errors import ConfigError, ShapeError, SizeError
from jaxvr.sparsegan.convgru import ConvGRUCell
from jaxvr.sparsegan.normconv import SIGMA_T, temporal_fills

# Channel counts at width multiplier 1 (WGAIN's generator and critic).
ENCODER_K = (32, 32, 64)        # DilBlock(k) gives 4k channels
BOTTLENECK_K = 128
DECODER_K = (64, 32, 32)
HEAD_CHANNELS = 8
# Slope of the random-mask prior of MaskGenerator(prior_density=...): the
# prior logit runs from 4 d down to 4 (d - 1), so no pixel starts deep in the
# sigmoid's flat tail and every pixel can still change state.
PRIOR_GAIN = 4.0
SPATIAL_CRITIC = (64, 128, 256, 256, 512)
TEMPORAL_CRITIC = (32, 64, 128, 128, 256)
TEMPORAL_STRIDES = ((1, 2, 2), (1, 2, 2), (2, 2, 2), (2, 2, 2), (2, 2, 2))
MIN_VALID_SIZE = 125            # five 5x5 stride-2 VALID convs need >= 125 px


def keras_hard_sigmoid(x: jax.Array) -> jax.Array:
  """Keras (tf.keras <= 2.15) hard sigmoid ``clip(0.2 x + 0.5, 0, 1)``.

  This is not ``jax.nn.hard_sigmoid`` (``relu6(x + 3) / 6``, slope 1/6).
  WGAIN's generator ends with the Keras form, so that one is used here.
  """
  return jnp.clip(0.2 * x + 0.5, 0.0, 1.0)


def scaled(channels: int, width_mult: float) -> int:
  """``channels * width_mult`` rounded, at least 1."""
  return max(1, int(round(channels * width_mult)))


def _fold(x):
  return x.reshape((-1,) + x.shape[2:])


def _unfold(x, b, t):
  return x.reshape((b, t) + x.shape[1:])


def max_pool2(x: jax.Array) -> jax.Array:
  """2x2 max-pooling with stride 2, ``[N, H, W, C] -> [N, H/2, W/2, C]``.

  Written as a reshape and a max rather than ``nn.max_pool``: the gradient
  of a windowed reduction becomes a scatter with int32 index buffers of the
  input's size on some backends (several GiB at the paper's size); this form
  differentiates elementwise.
  """
  n, h, w, c = x.shape
  return jnp.max(x.reshape(n, h // 2, 2, w // 2, 2, c), axis=(2, 4))


def upsample2(x: jax.Array) -> jax.Array:
  """Nearest-neighbour 2x upsampling, ``[N, H, W, C] -> [N, 2H, 2W, C]``.

  A broadcast and reshape (its gradient is a sum), not a gather (whose
  gradient is a scatter with index buffers).
  """
  n, h, w, c = x.shape
  y = jnp.broadcast_to(x[:, :, None, :, None, :], (n, h, 2, w, 2, c))
  return y.reshape(n, 2 * h, 2 * w, c)


class DilBlock(nn.Module):
  """Parallel 5x5 convolutions, dilation 2 (k), 5 (k) and 1 (2k), ELU, concat.

  WGAIN's decoder uses stride-1 SAME transposed convolutions with the same
  dilations; they span the same function class as plain convolutions, so
  plain ``nn.Conv`` is used throughout.

  Attributes:
    k: base channel count; the output has ``4k`` channels.
    dtype: computation dtype.
  """
  k: int
  dtype: Any = None

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """``[N, H, W, C] -> [N, H, W, 4k]``."""
    branches = []
    for rate, ch in ((2, self.k), (5, self.k), (1, 2 * self.k)):
      y = nn.Conv(ch, (5, 5), padding='SAME', kernel_dilation=(rate, rate),
                  dtype=self.dtype, name=f'dil{rate}')(x)
      branches.append(nn.elu(y))
    return jnp.concatenate(branches, axis=-1)


class Hourglass(nn.Module):
  """WGAIN hourglass with skips and a ConvGRU at the bottleneck.

  The encoder and decoder work on single frames and only the ConvGRU carries
  state in time, so a clip can be run in time chunks with the state carried
  from chunk to chunk (``frame_chunk``): the result is the same function,
  and with each chunk rematerialised the backward pass keeps only the chunk
  inputs and ConvGRU states of all frames, plus the activations of one chunk.

  Attributes:
    out_channels: output channels.
    width_mult: multiplies every channel count (1 = the paper's width).
    gru_half: run the ConvGRU on half of the bottleneck channels and pass the
      other half through (a cheaper variant); False = all channels.
    orthogonal_recurrent: orthogonal init of the ConvGRU state kernels.
    remat: recompute block activations in the backward pass (saves memory).
    dtype: computation dtype (None = float32 parameters decide).
    head_channels: width of the 3x3 head before the output layer; None =
      ``HEAD_CHANNELS * width_mult``.
    zero_output: start the output layer at zero (a residual branch).
    frame_chunk: 0 runs all frames at once; ``n > 0`` scans the clip in
      chunks of ``n`` frames (the last one shorter when ``n`` does not
      divide T), each chunk recomputed in the backward pass. Parameters are
      the same either way.
  """
  out_channels: int
  width_mult: float = 1.0
  gru_half: bool = False
  orthogonal_recurrent: bool = False
  remat: bool = False
  dtype: Any = None
  head_channels: int | None = None
  zero_output: bool = False
  frame_chunk: int = 0

  def setup(self):
    block = nn.remat(DilBlock) if self.remat else DilBlock
    wm = self.width_mult
    k1, k2, k3 = (scaled(k, wm) for k in ENCODER_K)
    self.enc1 = block(k1, dtype=self.dtype)
    self.enc2 = block(k2, dtype=self.dtype)
    self.enc3 = block(k3, dtype=self.dtype)
    self.mid = block(scaled(BOTTLENECK_K, wm), dtype=self.dtype)
    k1, k2, k3 = (scaled(k, wm) for k in DECODER_K)
    self.dec1 = block(k1, dtype=self.dtype)
    self.dec2 = block(k2, dtype=self.dtype)
    self.dec3 = block(k3, dtype=self.dtype)
    bottleneck = 4 * scaled(ENCODER_K[-1], wm)
    self.n_rec = bottleneck // 2 if self.gru_half else bottleneck
    cell = nn.remat(ConvGRUCell) if self.remat else ConvGRUCell
    self.gru = cell(features=self.n_rec,
                    orthogonal_recurrent=self.orthogonal_recurrent,
                    dtype=self.dtype)
    self.head1 = nn.Conv(self.head_channels or scaled(HEAD_CHANNELS, wm),
                         (3, 3), padding='SAME', dtype=self.dtype)
    out_init = (nn.initializers.zeros if self.zero_output
                else nn.linear.default_kernel_init)
    self.head2 = nn.Conv(self.out_channels, (3, 3), padding='SAME',
                         dtype=self.dtype, kernel_init=out_init)

  def __call__(self, x: jax.Array) -> jax.Array:
    """Runs the hourglass.

    Args:
      x: ``[B, T, H, W, Cin]``; H and W divisible by 8.

    Returns:
      Pre-activation output, ``[B, T, H, W, out_channels]``.
    """
    if x.ndim != 5:
      raise ShapeError(f'Hourglass: expected input [B, T, H, W, C], got '
                       f'shape {x.shape}')
    b, t, h, w, _ = x.shape
    if h % 8 or w % 8:
      raise SizeError(f'Hourglass: frame size {h}x{w} must be divisible by 8 '
                      f'(three 2x2 poolings)')
    if self.frame_chunk < 0:
      raise ConfigError(f'Hourglass: frame_chunk must be >= 0, got '
                        f'{self.frame_chunk}')
    state = jnp.zeros((b, h // 8, w // 8, self.n_rec),
                      self.dtype or jnp.float32)
    chunk = min(self.frame_chunk or t, t)
    if chunk == t:
      return _clip_pass(self, state, x)[1]
    n = t // chunk
    chunk_pass = nn.remat(_clip_pass)
    # Chunks as a scan (one compiled body), the state as its carry.
    scan = nn.scan(chunk_pass, variable_broadcast='params',
                   split_rngs={'params': False}, in_axes=1, out_axes=1)
    head = x[:, :n * chunk].reshape((b, n, chunk) + x.shape[2:])
    state, y = scan(self, state, head)
    y = y.reshape((b, n * chunk) + y.shape[3:])
    if n * chunk < t:
      _, tail = chunk_pass(self, state, x[:, n * chunk:])
      y = jnp.concatenate([y, tail], axis=1)
    return y


def _clip_pass(hg: Hourglass, state: jax.Array, x: jax.Array):
  """The hourglass on consecutive frames ``[B, t, H, W, Cin]``.

  Encoder and decoder fold time into the batch; the ConvGRU runs over the t
  frames from ``state`` ``[B, H/8, W/8, F]``.

  Returns:
    ``(state after the last frame, output [B, t, H, W, out_channels])``.
  """
  b, t = x.shape[:2]
  x0 = _fold(x)
  y, skips = x0, []
  for block in (hg.enc1, hg.enc2, hg.enc3):
    y = block(y)
    skips.append(y)
    y = max_pool2(y)
  y = _unfold(y, b, t)
  state, rec = _gru_scan(hg, state.astype(y.dtype), y[..., :hg.n_rec])
  y = jnp.concatenate([rec, y[..., hg.n_rec:]], axis=-1)
  y = hg.mid(_fold(y))
  for block, skip in zip((hg.dec1, hg.dec2, hg.dec3), skips[::-1],
                         strict=True):
    y = block(jnp.concatenate([upsample2(y), skip], axis=-1))
  y = jnp.concatenate([y, x0.astype(y.dtype)], axis=-1)
  y = hg.head2(nn.elu(hg.head1(y)))
  return state, _unfold(y.astype(jnp.float32), b, t)


# The ConvGRU over axis 1 of [B, t, h, w, C] (what ``nn.RNN`` does), written
# as a lifted scan so it can run inside a chunk and return its final state.
_gru_scan = nn.scan(lambda hg, state, x: hg.gru(state, x),
                    variable_broadcast='params', split_rngs={'params': False},
                    in_axes=1, out_axes=1)


class MaskGenerator(nn.Module):
  """Mask generator ``G_M``: frame and noise in, confidence in (0, 1) out.

  The head is a logistic sigmoid rather than a hard sigmoid: a hard sigmoid
  has zero gradient once saturated, so such pixels could never change state
  again, one route to a frozen or collapsed density.

  With ``prior_density`` ``d`` (a departure from the paper, off by default)
  the network corrects a random mask of density ``d`` instead of drawing a
  mask from scratch: ``c = sigmoid(y + PRIOR_GAIN * (d - r))`` with the
  output layer of ``y`` starting at zero, so an untrained generator keeps
  exactly the pixels whose noise ``r`` falls below ``d`` (a Bernoulli(d)
  random mask, the No-Mask-Gen baseline) and training moves pixels to
  where they help the restoration.

  Attributes mirror ``Hourglass``, plus ``prior_density``.
  """
  width_mult: float = 1.0
  gru_half: bool = False
  orthogonal_recurrent: bool = False
  remat: bool = False
  dtype: Any = None
  prior_density: float | None = None
  frame_chunk: int = 0

  @nn.compact
  def __call__(self, frames: jax.Array, noise: jax.Array) -> jax.Array:
    """Confidences for every pixel.

    Args:
      frames: ``[B, T, H, W, 3]`` in [0, 1].
      noise: ``[B, T, H, W, 1]``, uniform on [0, 1], fresh per call.

    Returns:
      ``[B, T, H, W, 1]`` confidences in (0, 1), float32.
    """
    _check_clip('frames', frames)
    if noise.shape != frames.shape[:-1] + (1,):
      raise ShapeError(f'MaskGenerator: noise must have shape '
                       f'{frames.shape[:-1] + (1,)}, got {noise.shape}')
    x = jnp.concatenate([frames, noise], axis=-1)
    prior = self.prior_density is not None
    y = Hourglass(1, self.width_mult, self.gru_half,
                  self.orthogonal_recurrent, self.remat, self.dtype,
                  head_channels=HEAD_CHANNELS if prior else None,
                  zero_output=prior, frame_chunk=self.frame_chunk,
                  name='hourglass')(x)
    if prior:
      y = y + PRIOR_GAIN * (self.prior_density - noise)
    return nn.sigmoid(y)


class InpaintingGenerator(nn.Module):
  """Frame generator ``G_I``: restores frames from their kept pixels.

  Inputs, in WGAIN's channel order: the known pixels ``b * f`` (3), the mask
  ``b`` (1) and noise on the holes ``z * (1 - b)`` (3). The decoder never sees
  the unmasked frame.

  With ``residual`` (a departure from the paper, off by default) the
  generator also receives a classical fill of the holes (multi-scale
  normalized convolution, :mod:`jaxvr.sparsegan.normconv`) as three more
  input channels and outputs a correction to it, ``u = clip(base + y, 0,
  1)``, its output layer starting at zero: an untrained model reproduces
  the classical floor exactly, and training only has to learn what the
  floor misses.

  With ``residual`` and ``fill_sigma_ts`` (also a departure) it further
  receives fills at those temporal sigmas (``normconv.temporal_fills``),
  three channels each, appended after the base: the floor's one fixed
  temporal window is its weakest choice, and with fills of several windows
  the generator can pick per pixel how far in time to average. Their input
  weights may start at zero (``training.sparse_gan.with_init_weights``
  grows a model trained without them), so the extra inputs change nothing
  until training uses them.

  Attributes mirror ``Hourglass``, plus ``residual`` and ``fill_sigma_ts``.
  """
  width_mult: float = 1.0
  gru_half: bool = False
  orthogonal_recurrent: bool = False
  remat: bool = False
  dtype: Any = None
  residual: bool = False
  frame_chunk: int = 0
  fill_sigma_ts: tuple[float, ...] = ()

  @nn.compact
  def __call__(self, known: jax.Array, mask: jax.Array, noise: jax.Array,
               base: jax.Array | None = None):
    """Inpaints a clip.

    Args:
      known: kept pixels ``b * f``, ``[B, T, H, W, 3]`` (zero in the holes).
      mask: binary mask ``b``, ``[B, T, H, W, 1]``.
      noise: ``[B, T, H, W, 3]``, ``N(0, 0.1^2)``; only its hole part is used.
      base: with ``residual``, the classical fill ``[B, T, H, W, 3]`` in
        [0, 1], followed by the ``fill_sigma_ts`` fills when there are any
        (``3 * (1 + len(fill_sigma_ts))`` channels, see ``fills``); computed
        from ``known`` and ``mask`` when None. Callers that tile a video
        pass the fills of the whole video.

    Returns:
      ``(raw, decoded)``: the generator output ``u`` in [0, 1] (used by the
      losses) and the decoded clip ``b * f + (1 - b) * u`` with the known
      pixels copied in, both ``[B, T, H, W, 3]`` float32.
    """
    _check_clip('known', known)
    if mask.shape != known.shape[:-1] + (1,):
      raise ShapeError(f'InpaintingGenerator: mask must have shape '
                       f'{known.shape[:-1] + (1,)}, got {mask.shape}')
    if noise.shape != known.shape:
      raise ShapeError(f'InpaintingGenerator: noise must have shape '
                       f'{known.shape}, got {noise.shape}')
    x = jnp.concatenate([known, mask, noise * (1.0 - mask)], axis=-1)
    if self.residual:
      if base is None:
        base = self.fills(known, mask)
      # The fill is a fixed operator, not a learned one. Its derivative
      # with respect to the mask divides by the blurred mask weight, which is
      # tiny far from kept pixels: through the straight-through mask it
      # makes the mask generator's gradient explode (seen: a 1000x jump in
      # gradient norm and a density collapse within 20 steps).
      base = jax.lax.stop_gradient(base)
      want = known.shape[:-1] + (3 * (1 + len(self.fill_sigma_ts)),)
      if base.shape != want:
        raise ShapeError(f'InpaintingGenerator: base must have shape '
                         f'{want}, got {base.shape}')
      x = jnp.concatenate([x, base], axis=-1)
      base = base[..., :3]
    y = Hourglass(3, self.width_mult, self.gru_half,
                  self.orthogonal_recurrent, self.remat, self.dtype,
                  head_channels=HEAD_CHANNELS if self.residual else None,
                  zero_output=self.residual, frame_chunk=self.frame_chunk,
                  name='hourglass')(x)
    if self.residual:
      u = jnp.clip(base + y, 0.0, 1.0)
    else:
      u = keras_hard_sigmoid(y)
    return u, known + (1.0 - mask) * u

  def fills(self, known: jax.Array, mask: jax.Array) -> jax.Array:
    """The classical inputs of the residual generator.

    Args:
      known: ``[..., T, H, W, 3]``; mask: ``[..., T, H, W, 1]``.

    Returns:
      ``[..., T, H, W, 3 * (1 + len(fill_sigma_ts))]``: the floor's fill
      (``normconv`` defaults), then one fill per ``fill_sigma_ts``.
    """
    return temporal_fills(known, mask, (SIGMA_T,) + tuple(self.fill_sigma_ts))


class SpatialCritic(nn.Module):
  """Per-frame critic ``D_S`` on (frame, mask), spectral-normalised.

  Five 5x5 stride-2 convolutions with LeakyReLU(0.3) (the Keras default that
  WGAIN uses), then a dense layer to one linear score. WGAIN pads VALID, which
  needs frames of at least 125 px; ``padding='SAME'`` serves small frames.

  Attributes:
    width_mult: multiplies every channel count.
    padding: 'VALID' (WGAIN) or 'SAME'.
    dtype: computation dtype.
  """
  width_mult: float = 1.0
  padding: str = 'VALID'
  dtype: Any = None

  @nn.compact
  def __call__(self, frames: jax.Array, mask: jax.Array,
               update_stats: bool = False) -> jax.Array:
    """Scores every frame.

    Args:
      frames: ``[B, T, H, W, 3]``.
      mask: ``[B, T, H, W, 1]`` (callers pass it through ``stop_gradient``).
      update_stats: advance the spectral-norm power iteration (critic step).

    Returns:
      ``[B, T]`` scores, high for real.
    """
    _check_clip('frames', frames)
    b, t, h, w, _ = frames.shape
    if self.padding == 'VALID' and min(h, w) < MIN_VALID_SIZE:
      raise SizeError(f'SpatialCritic: VALID padding needs frames of at least '
                      f'{MIN_VALID_SIZE} px, got {h}x{w}; use padding=SAME')
    y = _fold(jnp.concatenate([frames, mask.astype(frames.dtype)], axis=-1))
    for i, ch in enumerate(SPATIAL_CRITIC):
      conv = nn.Conv(scaled(ch, self.width_mult), (5, 5), strides=(2, 2),
                     padding=self.padding, dtype=self.dtype, name=f'conv{i}')
      y = nn.leaky_relu(nn.SpectralNorm(conv, name=f'sn_conv{i}')(
          y, update_stats=update_stats), 0.3)
    y = y.reshape((y.shape[0], -1))
    y = nn.SpectralNorm(nn.Dense(1, dtype=self.dtype, name='dense'),
                        name='sn_dense')(y, update_stats=update_stats)
    return y.astype(jnp.float32).reshape((b, t))


class TemporalCritic(nn.Module):
  """Per-clip critic ``D_T``: spectral-normalised 3-D convolutions.

  The paper names a temporal critic but gives no layers. This one follows
  MoCoGAN's video critic (Tulyakov et al., CVPR 2018) without batch norm:
  five (3, 5, 5) SAME convolutions with strides (1,2,2), (1,2,2), (2,2,2),
  (2,2,2), (2,2,2) and LeakyReLU(0.3), a mean over (T, H, W), and a dense
  layer. SAME padding in time keeps it valid for any T >= 1.

  Attributes:
    width_mult: multiplies every channel count.
    frame_diffs: also feed ``x_t - x_{t-1}`` (zero at t = 0) so the critic
      sees motion rather than only content.
    dtype: computation dtype.
  """
  width_mult: float = 1.0
  frame_diffs: bool = False
  dtype: Any = None

  @nn.compact
  def __call__(self, clip: jax.Array, update_stats: bool = False):
    """Scores every clip.

    Args:
      clip: ``[B, T, H, W, 3]``.
      update_stats: advance the spectral-norm power iteration (critic step).

    Returns:
      ``[B]`` scores, high for real.
    """
    _check_clip('clip', clip)
    y = clip
    if self.frame_diffs:
      diff = jnp.concatenate(
          [jnp.zeros_like(clip[:, :1]), clip[:, 1:] - clip[:, :-1]], axis=1)
      y = jnp.concatenate([clip, diff], axis=-1)
    for i, (ch, st) in enumerate(zip(TEMPORAL_CRITIC, TEMPORAL_STRIDES,
                                     strict=True)):
      conv = nn.Conv(scaled(ch, self.width_mult), (3, 5, 5), strides=st,
                     padding='SAME', dtype=self.dtype, name=f'conv{i}')
      y = nn.leaky_relu(nn.SpectralNorm(conv, name=f'sn_conv{i}')(
          y, update_stats=update_stats), 0.3)
    y = jnp.mean(y, axis=(1, 2, 3))
    y = nn.SpectralNorm(nn.Dense(1, dtype=self.dtype, name='dense'),
                        name='sn_dense')(y, update_stats=update_stats)
    return y.astype(jnp.float32)[:, 0]


class Critics(nn.Module):
  """Both critics under one parameter tree (``spatial``, ``temporal``).

  Attributes:
    width_mult: channel multiplier for both critics.
    spatial_padding: 'VALID' or 'SAME' for the spatial critic.
    frame_diffs: temporal critic also sees frame differences.
    dtype: computation dtype.
  """
  width_mult: float = 1.0
  spatial_padding: str = 'VALID'
  frame_diffs: bool = False
  dtype: Any = None

  def setup(self):
    self.spatial = SpatialCritic(self.width_mult, self.spatial_padding,
                                 self.dtype)
    self.temporal = TemporalCritic(self.width_mult, self.frame_diffs,
                                   self.dtype)

  def __call__(self, clip: jax.Array, mask: jax.Array,
               update_stats: bool = False):
    """Scores clips with both critics.

    Args:
      clip: ``[B, T, H, W, 3]``.
      mask: ``[B, T, H, W, 1]`` shown to the spatial critic.
      update_stats: advance the spectral-norm power iterations.

    Returns:
      ``(spatial [B, T], temporal [B])`` scores.
    """
    return (self.spatial(clip, mask, update_stats),
            self.temporal(clip, update_stats))


def _check_clip(name: str, x: jax.Array) -> None:
  if x.ndim != 5 or x.shape[-1] != 3:
    raise ShapeError(f'{name}: expected a clip [B, T, H, W, 3], got shape '
                     f'{x.shape}')
