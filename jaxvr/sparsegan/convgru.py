"""Convolutional GRU cell, run over time with ``nn.RNN``.

The gated recurrent unit of Cho et al. (EMNLP 2014, arXiv:1406.1078) with its
matrix products replaced by convolutions, as in Ballas et al., "Delving Deeper
into Convolutional Networks for Learning Video Representations" (ICLR 2016,
arXiv:1511.06432). The sparse-pixel GAN of Nittala et al. ("Relevance of
Sparse pixel representations to Lossy Video Compression") puts one at the
bottleneck of each generator to carry state from frame to frame.

Per step, with ``x_t`` and ``h_{t-1}`` of shape ``[B, h, w, C]``::

  [z, r] = sigmoid(conv([x_t, h_{t-1}]))          # 2F channels
  n      = tanh(conv([x_t, r * h_{t-1}]))           # F channels
  h_t    = (1 - z) * h_{t-1} + z * n

Each convolution over a concatenation is written as the sum of a convolution
of ``x_t`` (with bias) and one of the state (no bias), which is the same
function and lets the state half get its own initialiser (orthogonal, as an
option against exploding recurrent gradients).
"""

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxvr.errors import ShapeError


class ConvGRUCell(nn.RNNCellBase):
  """ConvGRU cell: ``(carry, x) -> (carry, y)`` with ``y`` the new state.

  Attributes:
    features: number of state channels F.
    kernel_size: spatial kernel size of all four convolutions.
    orthogonal_recurrent: orthogonal init for the state convolutions
      (otherwise lecun-normal, the Flax default).
    dtype: computation dtype (None = inferred from inputs and params).
    param_dtype: parameter dtype.
  """
  features: int
  kernel_size: Sequence[int] = (3, 3)
  orthogonal_recurrent: bool = False
  dtype: Any = None
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, carry: jax.Array, x: jax.Array):
    """One time step.

    Args:
      carry: state ``h_{t-1}``, ``[B, h, w, F]``.
      x: input ``x_t``, ``[B, h, w, C]``.

    Returns:
      ``(h_t, h_t)``, both ``[B, h, w, F]``.
    """
    if carry.shape[:-1] != x.shape[:-1] or carry.shape[-1] != self.features:
      raise ShapeError(
          f'ConvGRUCell: carry {carry.shape} must match x {x.shape} except '
          f'in the channel axis, which must be features={self.features}')
    in_init = nn.initializers.lecun_normal()
    rec_init = (nn.initializers.orthogonal() if self.orthogonal_recurrent
                else in_init)

    def conv(features, name, recurrent):
      # Input convolutions carry the bias, state convolutions none.
      return nn.Conv(features, tuple(self.kernel_size), padding='SAME',
                     use_bias=not recurrent,
                     kernel_init=rec_init if recurrent else in_init,
                     dtype=self.dtype, param_dtype=self.param_dtype, name=name)

    f = self.features
    gates = conv(2 * f, 'gates_x', False)(x) + conv(
        2 * f, 'gates_h', True)(carry)
    z, r = jnp.split(nn.sigmoid(gates), 2, axis=-1)
    n = jnp.tanh(conv(f, 'cand_x', False)(x) + conv(
        f, 'cand_h', True)(r * carry))
    h = (1.0 - z) * carry + z * n
    return h, h

  @nn.nowrap
  def initialize_carry(self, rng: jax.Array, input_shape: tuple[int, ...]):
    """Zero state for inputs of shape ``input_shape = (*batch, h, w, C)``.

    Args:
      rng: unused (the initial state is zero); kept for the Flax interface.
      input_shape: shape of one time step's input.

    Returns:
      Zeros of shape ``(*batch, h, w, features)``.
    """
    del rng
    return jnp.zeros(tuple(input_shape[:-1]) + (self.features,),
                     self.dtype or self.param_dtype)

  @property
  def num_feature_axes(self) -> int:
    return len(self.kernel_size) + 1


def conv_gru(features: int, kernel_size: Sequence[int] = (3, 3),
             orthogonal_recurrent: bool = False, remat: bool = False,
             dtype: Any = None, name: str | None = None) -> nn.RNN:
  """A ConvGRU scanned over axis 1 of ``[B, T, h, w, C]``.

  The state starts at zero for every clip and runs forward in time only
  (causal), so a decoder can produce frames in order.

  Args:
    features: state channels F.
    kernel_size: spatial kernel size.
    orthogonal_recurrent: orthogonal init of the state convolutions.
    remat: recompute each step's activations in the backward pass instead of
      storing them.
    dtype: computation dtype.
    name: name of the cell (its parameters live under it).

  Returns:
    An ``nn.RNN`` mapping ``[B, T, h, w, C] -> [B, T, h, w, F]``.
  """
  cell_cls = nn.remat(ConvGRUCell) if remat else ConvGRUCell
  cell = cell_cls(features=features, kernel_size=tuple(kernel_size),
                  orthogonal_recurrent=orthogonal_recurrent, dtype=dtype,
                  name=name)
  # The cell, created in the caller's scope, owns the parameters under
  # ``name``; the RNN wrapper itself holds none.
  return nn.RNN(cell)
