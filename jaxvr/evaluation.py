"""Quality of a reconstruction and sweeps over real codec settings.

``measure_quality`` is the one place that turns (original, reconstruction)
into the numbers every jaxvr table reports; ``codec_sweep`` runs real
encodes of the same frames at several settings and measures each.
"""

from __future__ import annotations

import dataclasses
import re

import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from jaxvr import codecs, errors, metrics, video
from jaxvr.video.transforms import check_frames

ALL_METRICS = ('psnr', 'psnr_y', 'ssim_y', 'strred', 'vmaf')


def measure_quality(ref, dist, metric_names=ALL_METRICS) -> dict[str, float]:
  """Quality of ``dist`` against ``ref``, both RGB uint8 ``[T, H, W, 3]``.

  Keys (direction in brackets):
    ``psnr``: RGB PSNR from the MSE over all frames, pixels and channels (dB, higher).
    ``psnr_y``: mean over frames of luma PSNR (dB, higher).
    ``ssim_y``: mean over frames of luma SSIM, Wang et al. settings (higher).
    ``strred``, ``strred_ssn``: ST-RRED and ST-RRED-SSN on luma (LOWER is better).
    ``vmaf``: libvmaf v0.6.1 pooled mean (0..100, higher).
  Luma is BT.601 limited-range Y (``jaxvr.video.luma``).
  """
  ref, dist = np.asarray(ref), np.asarray(dist)
  if ref.shape != dist.shape:
    raise errors.ShapeError(
        f'reconstruction: expected shape {ref.shape} like the original, got {dist.shape}')
  unknown = set(metric_names) - set(ALL_METRICS)
  if unknown:
    raise errors.ConfigError(f'metrics: unknown {sorted(unknown)}; known {ALL_METRICS}')
  out: dict[str, float] = {}
  if 'psnr' in metric_names:
    out['psnr'] = float(metrics.psnr_clip(ref, dist, convention='from_mse',
                                          dtype=jnp.float64))
  y_ref, y_dist = video.luma(ref), video.luma(dist)
  if 'psnr_y' in metric_names:
    out['psnr_y'] = float(np.mean(np.asarray(metrics.psnr(y_ref, y_dist))))
  if 'ssim_y' in metric_names:
    out['ssim_y'] = float(np.mean(np.asarray(metrics.ssim(y_ref, y_dist))))
  if 'strred' in metric_names:
    if min(ref.shape[1:3]) >= 72 and ref.shape[0] >= 2:
      r = metrics.strred(y_ref, y_dist)
      out['strred'], out['strred_ssn'] = float(r.strred), float(r.strred_ssn)
    else:
      out['strred'] = out['strred_ssn'] = float('nan')
  if 'vmaf' in metric_names:
    out['vmaf'] = metrics.vmaf(ref, dist).mean
  return out


@dataclasses.dataclass(frozen=True)
class CodecSetting:
  """One encoder setting, written ``codec[:crf=N|:lossless][:pix_fmt]``."""

  codec: str
  crf: float | None = None
  lossless: bool = False
  pix_fmt: str = 'yuv444p'

  @classmethod
  def parse(cls, text: str) -> CodecSetting:
    parts = text.split(':')
    codec, crf, lossless, pix_fmt = parts[0], None, False, 'yuv444p'
    if codec == 'libsvtav1':
      pix_fmt = 'yuv420p'
    for part in parts[1:]:
      if part == 'lossless':
        lossless = True
      elif m := re.fullmatch(r'crf=([\d.]+)', part):
        crf = float(m[1])
      elif part in codecs.PIX_FMTS:
        pix_fmt = part
      else:
        raise errors.ConfigError(
            f'codec setting {text!r}: cannot read {part!r}; expected '
            "'codec[:crf=N|:lossless][:pix_fmt]', e.g. 'libx264:crf=23:yuv420p'")
    if codec not in codecs.CODECS:
      raise errors.ConfigError(
          f'codec setting {text!r}: unknown codec {codec!r}; known {codecs.CODECS}')
    if crf is None and not lossless and codec != 'ffv1':
      raise errors.ConfigError(f'codec setting {text!r}: give crf=N or lossless')
    return cls(codec, crf, lossless or codec == 'ffv1', pix_fmt)

  def __str__(self) -> str:
    rate = 'lossless' if self.lossless else f'crf={self.crf:g}'
    return f'{self.codec}:{rate}:{self.pix_fmt}'


DEFAULT_SETTINGS = (
    'libx264:lossless:yuv444p',
    'libx264:crf=3:yuv444p', 'libx264:crf=4:yuv444p',
    'libx264:crf=3:yuv420p', 'libx264:crf=4:yuv420p',
    'libx264:crf=23:yuv420p', 'libx265:crf=28:yuv420p',
    'libsvtav1:crf=35:yuv420p', 'ffv1:lossless:rgb24',
)


def codec_sweep(frames, fps: float, settings=DEFAULT_SETTINGS,
                metric_names=ALL_METRICS, progress: bool = True) -> list[dict]:
  """Encodes ``frames`` at each setting and measures bytes and quality.

  Args:
    frames: uint8 ``[T, H, W, 3]`` RGB.
    fps: frame rate written into the streams.
    settings: ``CodecSetting`` objects or strings (see ``CodecSetting``).
    metric_names: which metrics of ``measure_quality`` to compute.
    progress: show a progress bar.

  Returns:
    One dict per setting: ``setting``, ``bytes``, ``factor`` (lossless x264
    yuv444p bytes / bytes), ``bpp`` (bits per pixel), and the metrics.
  """
  frames = check_frames(frames)
  settings = [s if isinstance(s, CodecSetting) else CodecSetting.parse(s)
              for s in settings]
  base = codecs.lossless_reference_size(frames, fps=fps)
  n_pixels = frames.shape[0] * frames.shape[1] * frames.shape[2]
  rows = []
  for s in tqdm(settings, desc='codecs', disable=not progress, unit='setting'):
    enc = codecs.roundtrip(frames, s.codec, crf=s.crf, lossless=s.lossless,
                           pix_fmt=s.pix_fmt, fps=fps)
    row = {'setting': str(s), 'bytes': enc.size, 'factor': base / enc.size,
           'bpp': 8 * enc.size / n_pixels}
    row.update(measure_quality(frames, enc.decoded, metric_names))
    rows.append(row)
  return rows


def ssim_rgb(ref, dist) -> np.ndarray:
  """Per-frame SSIM on RGB: the mean over channels of Wang SSIM, ``[T]``."""
  ref, dist = np.asarray(ref, np.float32), np.asarray(dist, np.float32)
  per_channel = [np.asarray(metrics.ssim(ref[..., c], dist[..., c]))
                 for c in range(ref.shape[-1])]
  return np.mean(per_channel, axis=0)


def patch_residual_norms(ref, dist, frames, patch: int = 16) -> np.ndarray:
  """RMS residual of every ``patch x patch`` block of the given frames (8-bit units)."""
  d = np.asarray(ref, np.float64)[frames] - np.asarray(dist, np.float64)[frames]
  t, h, w, c = d.shape
  hp, wp = h // patch, w // patch
  d = d[:, :hp * patch, :wp * patch].reshape(t, hp, patch, wp, patch, c)
  return np.sqrt(np.mean(d**2, axis=(2, 4, 5))).ravel()
