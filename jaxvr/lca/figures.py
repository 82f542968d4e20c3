"""Pictures of learned spatiotemporal dictionaries.

The layout follows Figure 4 of Y. Wang et al., "Sparse MP4", SSIAI 2020: every
kernel of a 3-frame dictionary is drawn as its frames side by side (first
kept frame, dropped frame, second kept frame), and the kernels tile a grid.
Each kernel is scaled on its own to the grey range, symmetric around zero
(mid-grey is 0), with the same scale for its three frames so that temporal
changes stay visible.
"""

from __future__ import annotations

import math
import os

import numpy as np

from jaxvr import files
from jaxvr.errors import ShapeError


def kernel_mosaic(kernels, *, columns: int | None = None, upscale: int = 4,
                  gap: int = 2, frame_gap: int = 1) -> np.ndarray:
  """Tiles a dictionary into one uint8 grey image.

  Args:
    kernels: ``[K, T, kh, kw]``.
    columns: kernels per row (default about ``sqrt(K)``).
    upscale: nearest-neighbour magnification of every kernel pixel.
    gap: white pixels between kernels (before upscaling).
    frame_gap: light-grey pixels between the frames of one kernel.

  Returns:
    uint8 ``[rows * (kh + gap), columns * (T*kw + (T-1)*frame_gap + gap)]``
    image, times ``upscale`` on both axes.

  Raises:
    ShapeError: kernels is not 4-D.
  """
  kernels = np.asarray(kernels, np.float64)
  if kernels.ndim != 4:
    raise ShapeError(f'kernels: expected [K, T, kh, kw], got shape {kernels.shape}')
  k, t, kh, kw = kernels.shape
  if columns is None:
    columns = max(1, math.ceil(math.sqrt(k)))
  rows = math.ceil(k / columns)
  cell_w = t * kw + (t - 1) * frame_gap
  image = np.full((rows * (kh + gap) + gap, columns * (cell_w + gap) + gap), 255,
                  np.uint8)
  scale = np.abs(kernels).reshape(k, -1).max(axis=1)
  scale = np.where(scale > 0, scale, 1.0)
  grey = np.clip(np.round(127.5 + 127.5 * kernels / scale[:, None, None, None]),
                 0, 255).astype(np.uint8)
  for i in range(k):
    r, c = divmod(i, columns)
    y0 = gap + r * (kh + gap)
    x0 = gap + c * (cell_w + gap)
    for f in range(t):
      xf = x0 + f * (kw + frame_gap)
      image[y0:y0 + kh, xf:xf + kw] = grey[i, f]
      if f < t - 1 and frame_gap:
        image[y0:y0 + kh, xf + kw:xf + kw + frame_gap] = 200
  return np.kron(image, np.ones((upscale, upscale), np.uint8))


def save_kernel_figure(path: str | os.PathLike, kernels, **kwargs) -> np.ndarray:
  """Writes :func:`kernel_mosaic` as a PNG and returns the image."""
  from PIL import Image
  image = kernel_mosaic(kernels, **kwargs)
  with files.atomic_open(path) as f:
    Image.fromarray(image).save(f, format='PNG')
  return image
