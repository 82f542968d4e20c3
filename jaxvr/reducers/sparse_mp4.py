"""Sparse MP4 and its classical restorations as reducers.

All send the same lossless decimated stream (so they cost the same bytes);
they differ only in how the decoder fills the missing samples:

* ``sparse-mp4``: masked sparse coding (FISTA) restores the kept frames, the
  dropped frames are the mean of their restored neighbours (the default
  ``RestoreConfig``; see ``RestoreConfig.dropped``);
* ``sparse-mp4-paper``: the paper's decoder, dropped frames from the code too;
* ``sparse-mp4-lca``: as ``sparse-mp4`` with the LCA solver;
* ``interp-linear`` / ``interp-copy``: no learning (the floor).
"""

from __future__ import annotations

import functools

import numpy as np

from jaxvr import sparse_mp4
from jaxvr.reducers.base import Payload, Reducer, register
from jaxvr.sparse_mp4 import interpolate


class SparseMP4Reducer(Reducer):
  """Decimate 4:1, lossless x264, restore by ``restore`` ('lca', 'fista',
  'linear' or 'copy')."""

  min_size = 8

  def __init__(self, restore: str = 'fista', kernels=None,
               config: sparse_mp4.RestoreConfig | None = None,
               dropped: str = 'interpolate'):
    self.restore = restore
    self._kernels = kernels
    self.config = config
    self.dropped = dropped

  def frame_groups(self, n_frames: int) -> dict[str, np.ndarray]:
    """Kept (0, 2, ...) and dropped (1, 3, ...) frames."""
    return {'kept': np.arange(0, n_frames, 2),
            'dropped': np.arange(1, n_frames, 2)}

  def encode(self, video: np.ndarray, fps: float) -> Payload:
    p = sparse_mp4.encode(video, fps=fps)
    return Payload(p.to_bytes(), {'layout': p.layout, 'parity': p.parity})

  def decode(self, payload: Payload) -> np.ndarray:
    p = sparse_mp4.SparseMP4Payload.from_bytes(payload.data)
    if self.restore in interpolate.MODES:
      observed, mask = sparse_mp4.decode_observed(p)
      out = np.asarray(interpolate.interpolate(observed, mask, self.restore))
      out = np.clip(np.round(out), 0, 255).astype(np.uint8)
      return out[:, :p.height, :p.width]
    kernels = sparse_mp4.default_dictionary() if self._kernels is None else self._kernels
    config = self.config or sparse_mp4.RestoreConfig(solver=self.restore,
                                                     dropped=self.dropped)
    return sparse_mp4.decode(p, kernels, config=config)


register('sparse-mp4', functools.partial(SparseMP4Reducer, 'fista'))
register('sparse-mp4-paper',
         functools.partial(SparseMP4Reducer, 'fista', dropped='code'))
register('sparse-mp4-lca', functools.partial(SparseMP4Reducer, 'lca'))
register('interp-linear', functools.partial(SparseMP4Reducer, 'linear'))
register('interp-copy', functools.partial(SparseMP4Reducer, 'copy'))
