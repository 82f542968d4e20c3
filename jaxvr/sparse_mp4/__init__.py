"""Sparse MP4 (Wang et al., LANL, SSIAI 2020) on top of :mod:`jaxvr.lca`.

Decimate 4:1, send the kept samples as a lossless video stream, restore
every missing pixel and frame by masked convolutional sparse coding.

* :mod:`jaxvr.sparse_mp4.stream`: decimation masks, packing, the payload,
  :func:`encode` and :func:`decode_observed`.
* :mod:`jaxvr.sparse_mp4.restoration`: windowed restoration
  (:func:`restore`, :class:`RestoreConfig`), :func:`decode` and the bundled
  :func:`default_dictionary`.
* :mod:`jaxvr.sparse_mp4.interpolate`: the classical floor (checkerboard
  fill, then linear or copy for the dropped frames) on the same stream.
"""

from jaxvr.sparse_mp4 import interpolate
from jaxvr.sparse_mp4.restoration import (
    RestoreConfig,
    decode,
    default_dictionary,
    restore,
)
from jaxvr.sparse_mp4.stream import (
    LAYOUTS,
    PARITIES,
    SparseMP4Payload,
    decode_observed,
    encode,
    observation_mask,
    pack,
    site_mask,
    unpack,
    zero_dropped,
)

__all__ = [
    'LAYOUTS', 'PARITIES', 'RestoreConfig', 'SparseMP4Payload', 'decode',
    'decode_observed', 'default_dictionary', 'encode', 'interpolate',
    'observation_mask', 'pack', 'restore', 'site_mask', 'unpack',
    'zero_dropped',
]
