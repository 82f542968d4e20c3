"""lca-pytorch's convolutional LCA step in PyTorch: a competitor of bench_lca.

lca-pytorch (``lcapt``, LANL, github.com/lanl/lca-pytorch) is not on PyPI.
This module redoes what its ``LCAConv2D.encode`` computes per step, with the
same tensors and operations: images and codes as 5-D ``[N, C, 1, H, W]``
tensors, the input drive ``b = conv3d(x, W)`` once, the lateral
connectivity ``G = conv3d(W, W)`` (padding ``kernel - stride`` for even
kernels, ``(kernel - 1) // stride * stride`` for odd ones) with each
kernel's centre self-connection removed, and per step

    a = T_lam(u);   u <- u + (1 / tau) (b - u - conv3d(a, G))

i.e. the Gram form of ``u += (dt/tau) (Phi^T (x - Phi a) + a - u)``. The
settings are those of the race: ``pad='valid'``, ``nonneg=False``, soft
threshold, no input normalisation (``input_zero_mean`` / ``input_unit_var``
off), ``u_0 = 0``, unit-norm kernels.

Reference: C. J. Rozell, D. H. Johnson, R. G. Baraniuk, B. A. Olshausen,
"Sparse coding via thresholding and local competition in neural circuits",
Neural Computation 20(10), 2008.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F


def soft_threshold(u: torch.Tensor, lam: float) -> torch.Tensor:
  """Signed soft threshold ``sign(u) max(|u| - lam, 0)`` as lcapt writes it."""
  return F.relu(u - lam) - F.relu(-u - lam)


def _gram_pad(size: int, stride: int) -> int:
  """lcapt's padding of the Gram convolution along one axis."""
  if size % 2:
    return (size - 1) // stride * stride
  return size - stride if size % stride == 0 else size // stride * stride


class TorchLca:
  """Convolutional LCA on one frame, lca-pytorch's dynamics and operators.

  Args:
    image: ``[H, W]`` input frame (used as it is).
    kernels: ``[K, kh, kw]`` dictionary (used as it is: unit norm expected,
      since the Gram form drops exactly one self-connection per kernel).
    lam: soft threshold.
    tau: time constant; each step moves ``1 / tau`` of the way.
    stride: spatial stride.
    dtype: torch dtype of every tensor.
  """

  def __init__(self, image, kernels, *, lam: float, tau: float,
               stride: int = 1, dtype=torch.float32):
    x = torch.as_tensor(np.asarray(image), dtype=dtype)[None, None, None]
    w = torch.as_tensor(np.asarray(kernels), dtype=dtype)[:, None, None]
    self.lam, self.rate, self.stride = lam, 1.0 / tau, (1, stride, stride)
    kh, kw = w.shape[-2:]
    with torch.inference_mode():
      self.drive = F.conv3d(x, w, stride=self.stride)
      conns = F.conv3d(w, w, stride=self.stride, padding=(
          0, _gram_pad(kh, stride), _gram_pad(kw, stride)))
      k = conns.shape[0]
      centre = [s // 2 for s in conns.shape[2:]]
      conns[range(k), range(k), centre[0], centre[1], centre[2]] = 0.0
      self.conns = conns
      self.surround = tuple(math.ceil((s - 1) / 2) for s in conns.shape[2:])
      self.state = torch.zeros_like(self.drive)

  def step(self) -> None:
    """One Euler step of the membrane potentials."""
    with torch.inference_mode():
      acts = soft_threshold(self.state, self.lam)
      inhib = F.conv3d(acts, self.conns, padding=self.surround)
      self.state = self.state + self.rate * (self.drive - self.state - inhib)

  def codes(self) -> np.ndarray:
    """Activities ``T_lam(u)`` of the current state, ``[K, Hc, Wc]``."""
    with torch.inference_mode():
      return soft_threshold(self.state, self.lam)[0, :, 0].numpy()
