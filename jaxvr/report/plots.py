"""Figures: rate-distortion curves, frame grids and significance heatmaps.

Every function draws into its own matplotlib `Figure` (no pyplot state, no
global backend, no screen) and returns PNG bytes to write or embed.
"""

from __future__ import annotations

import io
import re

import matplotlib
import matplotlib.ticker
import numpy as np
from matplotlib.figure import Figure

METRIC_LABELS = {
  'psnr': 'PSNR RGB (dB, higher is better)',
  'psnr_y': 'PSNR Y (dB, higher is better)',
  'ssim_y': 'SSIM Y (higher is better)',
  'strred': 'ST-RRED (lower is better)',
  'strred_ssn': 'ST-RRED-SSN (lower is better)',
  'vmaf': 'VMAF (higher is better)',
}


def family(reducer: str) -> str:
  """Curve a reducer belongs to: its name without the budget part.

  ``x264-crf23`` -> ``x264``, ``x264-crf3-444`` -> ``x264-444``,
  ``carv-visible-n4`` -> ``carv-visible``.
  """
  return re.sub(r'-(crf|n|d)\d+(\.\d+)?', '', reducer)


def _png(fig) -> bytes:
  buf = io.BytesIO()
  fig.savefig(buf, format='png', dpi=110, bbox_inches='tight')
  return buf.getvalue()


def rd_curves(rows: list[dict], metric: str, title: str = '') -> bytes:
  """Quality ``metric`` against bits per pixel, one curve per reducer family.

  Args:
    rows: result rows with 'reducer', 'bpp' and ``metric`` (typically means
      over clips).
  """
  fig = Figure(figsize=(4.8, 3.4))
  ax = fig.subplots()
  groups: dict[str, list[tuple[float, float]]] = {}
  for row in rows:
    value = row.get(metric)
    if value is None or not np.isfinite(value) or 'bpp' not in row:
      continue
    groups.setdefault(family(row['reducer']), []).append((row['bpp'], value))
  colors = matplotlib.colormaps['tab20'].colors
  markers = 'osD^vPX*'
  for i, (name, points) in enumerate(sorted(groups.items())):
    points.sort()
    xs, ys = zip(*points, strict=True)
    ax.plot(xs, ys, marker=markers[i % len(markers)], ms=4, label=name,
            color=colors[(2 * i) % 20 + (i // 10) % 2], lw=1.4 if len(xs) > 1 else 0)
  ax.set_xscale('log')
  if metric.startswith('strred') and any(
      v > 0 for pts in groups.values() for _, v in pts):
    ax.set_yscale('log', nonpositive='clip')  # spans orders of magnitude
  ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
  ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter('%g'))
  ax.set_xlabel('bits per pixel (log scale)')
  ax.set_ylabel(METRIC_LABELS.get(metric, metric))
  if title:
    ax.set_title(title)
  ax.grid(True, which='both', alpha=0.3)
  if groups:  # a metric no row has (e.g. VMAF off) leaves an empty panel
    ax.legend(fontsize=6, ncol=2, loc='best', framealpha=0.7)
  return _png(fig)


def frame_grid(rows_of_frames: dict[str, np.ndarray], frame_ids, title: str = '') -> bytes:
  """Grid of frames: one row per named video ``[T, H, W, 3]`` (or ``[T, H, W]``).

  Args:
    rows_of_frames: label -> video; shown in insertion order.
    frame_ids: which frames to show (columns).
  """
  n_rows, n_cols = len(rows_of_frames), len(frame_ids)
  fig = Figure(figsize=(1.9 * n_cols, 1.9 * n_rows))
  axes = fig.subplots(n_rows, n_cols, squeeze=False)
  for r, (label, vid) in enumerate(rows_of_frames.items()):
    for c, t in enumerate(frame_ids):
      ax = axes[r][c]
      img = np.asarray(vid[t])
      ax.imshow(img, cmap='gray' if img.ndim == 2 else None,
                vmin=0, vmax=255 if img.dtype == np.uint8 or img.max() > 1 else 1,
                interpolation='nearest')
      ax.set_xticks([])
      ax.set_yticks([])
      if c == 0:
        ax.set_ylabel(label, fontsize=8)
      if r == 0:
        ax.set_title(f'frame {t}', fontsize=8)
  if title:
    fig.suptitle(title, fontsize=9)
  return _png(fig)


def difference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  """Absolute difference of two uint8 videos, amplified x4, as uint8."""
  d = np.abs(a.astype(np.int16) - b.astype(np.int16)) * 4
  return np.clip(d, 0, 255).astype(np.uint8)


def heatmap(grid: np.ndarray, title: str = '', label: str = 'significance') -> bytes:
  """A ``[t', h', w']`` chunk map as one heatmap panel per temporal chunk."""
  grid = np.asarray(grid, np.float64)
  n = grid.shape[0]
  fig = Figure(figsize=(1.8 * n + 0.8, 2.0))
  axes = fig.subplots(1, n, squeeze=False)
  vmin, vmax = float(np.nanmin(grid)), float(np.nanmax(grid))
  for i in range(n):
    im = axes[0][i].imshow(grid[i], cmap='inferno', vmin=vmin, vmax=vmax)
    axes[0][i].set_xticks([])
    axes[0][i].set_yticks([])
    axes[0][i].set_title(f'chunk t={i}', fontsize=7)
  fig.colorbar(im, ax=axes[0].tolist(), shrink=0.8, label=label)
  if title:
    fig.suptitle(title, fontsize=9)
  return _png(fig)


def histograms(samples: dict[str, np.ndarray], xlabel: str, bins: int = 40) -> bytes:
  """Overlaid normalised histograms, one per named sample set."""
  fig = Figure(figsize=(5.6, 3.6))
  ax = fig.subplots()
  hi = max(float(np.percentile(v, 99.5)) for v in samples.values())
  edges = np.linspace(0, hi, bins + 1)
  for name, values in samples.items():
    ax.hist(values, bins=edges, density=True, histtype='step', lw=1.6,
            label=f'{name} (median {np.median(values):.2f})')
  ax.set_xlabel(xlabel)
  ax.set_ylabel('density')
  ax.legend(fontsize=7)
  ax.grid(True, alpha=0.3)
  return _png(fig)
