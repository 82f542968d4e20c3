"""VMAF through ffmpeg's libvmaf (default model ``vmaf_v0.6.1``).

VMAF is a trained perceptual quality model: 0..100, higher is better. A
video against itself scores about 99.5, not 100. Only luma enters the
model's features, so inputs are passed to libvmaf as their Y plane:

* RGB uint8 ``[T, H, W, 3]`` is converted by ffmpeg's default conversion
  (BT.601, limited range), the same Y that ``jaxvr.video.luma`` gives;
* luma ``[T, H, W]`` in 0..255 (limited-range Y) is rounded and sent as the
  Y plane unchanged.

libvmaf's input order is distorted first, reference second; this wrapper
takes ``(ref, dist)`` like every jaxvr metric and swaps them for ffmpeg.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import tempfile

import numpy as np

from jaxvr import errors
from jaxvr.video import ffmpeg

# A built-in model version: pasted into the filter graph, so no ':' '=' ','.
_MODEL_NAME = re.compile(r'[A-Za-z0-9_.\-]+')


@dataclasses.dataclass(frozen=True)
class VmafResult:
  """Pooled (mean) VMAF and the per-frame scores ``[T]``."""

  mean: float
  per_frame: np.ndarray
  harmonic_mean: float


def _as_yuv444(x: np.ndarray, name: str) -> tuple[np.ndarray, str]:
  """Raw bytes layout for ffmpeg: (array, pix_fmt)."""
  x = np.asarray(x)
  if x.ndim == 4 and x.shape[-1] == 3:
    if x.dtype != np.uint8:
      raise errors.ShapeError(f'{name}: RGB input must be uint8, got {x.dtype}')
    return np.ascontiguousarray(x), 'rgb24'
  if x.ndim == 3:
    y = np.clip(np.round(np.asarray(x, np.float64)), 0, 255).astype(np.uint8)
    planes = np.stack([y, np.full_like(y, 128), np.full_like(y, 128)], axis=1)
    return np.ascontiguousarray(planes), 'yuv444p'  # [T, 3, H, W] planar
  raise errors.ShapeError(
      f'{name}: expected RGB uint8 [T,H,W,3] or luma [T,H,W], got shape {x.shape}')


def vmaf(ref, dist, *, model: str = 'vmaf_v0.6.1', n_threads: int = 2) -> VmafResult:
  """VMAF of ``dist`` against ``ref`` (higher is better, 0..100).

  Args:
    ref: reference video, RGB uint8 ``[T, H, W, 3]`` or luma ``[T, H, W]``.
    dist: distorted video of the same shape.
    model: libvmaf built-in model version.
    n_threads: libvmaf worker threads.

  Returns:
    VmafResult with the pooled mean and per-frame scores.
  """
  if not _MODEL_NAME.fullmatch(model):
    raise errors.ConfigError(
        f'model: expected a libvmaf built-in model version such as '
        f"'vmaf_v0.6.1' (letters, digits, '_', '.', '-'), got {model!r}")
  if isinstance(n_threads, bool) or not isinstance(n_threads, int | np.integer) \
      or n_threads < 1:
    raise errors.ConfigError(f'n_threads: expected a whole number >= 1, got '
                             f'{n_threads!r}')
  ref_a, fmt = _as_yuv444(ref, 'ref')
  dist_a, fmt_d = _as_yuv444(dist, 'dist')
  if ref_a.shape != dist_a.shape or fmt != fmt_d:
    raise errors.ShapeError(
        f'ref, dist: expected equal shapes, got {np.shape(ref)} and {np.shape(dist)}')
  t = ref_a.shape[0]
  h, w = (ref_a.shape[1:3] if fmt == 'rgb24' else ref_a.shape[2:4])
  if min(h, w) < 32:
    raise errors.SizeError(f'ref: VMAF needs frames of at least 32x32, got {w}x{h}')
  raw = ['-f', 'rawvideo', '-pix_fmt', fmt, '-s', f'{w}x{h}', '-framerate', '24']
  with tempfile.TemporaryDirectory(prefix='jaxvr_vmaf_') as tmp:
    ref_a.tofile(os.path.join(tmp, 'ref.raw'))
    dist_a.tofile(os.path.join(tmp, 'dist.raw'))
    # ffmpeg runs inside the temporary folder, so the filter graph names
    # only fixed relative file names: a folder path with ':', quotes or
    # brackets (TMPDIR) never reaches filter-graph parsing.
    graph = ('[0:v]format=yuv444p[d];[1:v]format=yuv444p[r];'
             f'[d][r]libvmaf=model=version={model}:log_fmt=json:'
             f'log_path=vmaf.json:n_threads={n_threads}')
    ffmpeg.run([*raw, '-i', 'file:dist.raw', *raw, '-i', 'file:ref.raw',
                '-lavfi', graph, '-f', 'null', '-'],
               what=f'libvmaf on {t} frames {w}x{h}', cwd=tmp)
    with open(os.path.join(tmp, 'vmaf.json')) as f:
      log = json.load(f)
  per_frame = np.array([fr['metrics']['vmaf'] for fr in log['frames']])
  pooled = log['pooled_metrics']['vmaf']
  return VmafResult(float(pooled['mean']), per_frame,
                    float(pooled['harmonic_mean']))
