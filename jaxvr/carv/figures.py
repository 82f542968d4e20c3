"""CARV figures: significant chunks over the frames, and the mask-ratio study.

Chhabra & Yang, "Algorithmic Video Reduction by Estimating Chunk Significance
Using Spatial-Temporal Masked Auto Encoders" show (their Figures 4-5) the
frames of a clip with the most and the least significant chunks marked, and
(their Figure 3) how the distribution of chunk significance changes with the
mask ratio. :func:`significance_figure` and :func:`mask_ratio_figure` draw
the same kind of figures; both return PNG bytes.
"""

from __future__ import annotations

import io

import matplotlib
import matplotlib.patches
import numpy as np
from matplotlib.figure import Figure

from jaxvr.errors import ShapeError
from jaxvr.video.tubes import chunk_bounds


def _png(fig) -> bytes:
  buf = io.BytesIO()
  fig.savefig(buf, format='png', dpi=100, bbox_inches='tight')
  return buf.getvalue()


def extreme_chunks(significance: np.ndarray, fraction: float = 0.1
                   ) -> tuple[np.ndarray, np.ndarray]:
  """Boolean ``[t', h', w']`` masks of the most and least significant chunks.

  Args:
    significance: ``[t', h', w']`` map.
    fraction: share of all chunks in each group (at least one chunk).

  Returns:
    ``(top, bottom)``: the ``k`` largest and the ``k`` smallest values
    (``k = max(1, round(fraction * size))``; ties broken by position).
  """
  s = np.asarray(significance, np.float64)
  if s.ndim != 3:
    raise ShapeError(f"significance: expected [t', h', w'], got shape {s.shape}")
  k = max(1, int(round(fraction * s.size)))
  order = np.argsort(s.ravel(), kind='stable')
  top, bottom = np.zeros(s.size, bool), np.zeros(s.size, bool)
  top[order[-k:]] = True
  bottom[order[:k]] = True
  return top.reshape(s.shape), bottom.reshape(s.shape)


def _frame_of_chunk(frames: np.ndarray, t_chunks: int) -> np.ndarray:
  """Index of the first frame of every temporal chunk."""
  return chunk_bounds(t_chunks, len(frames))[:-1]


def _outline(ax, chunks: np.ndarray, hb: np.ndarray, wb: np.ndarray,
             colour: str) -> None:
  for y, x in zip(*np.nonzero(chunks), strict=True):
    ax.add_patch(matplotlib.patches.Rectangle(
        (wb[x] - 0.5, hb[y] - 0.5), wb[x + 1] - wb[x], hb[y + 1] - hb[y],
        fill=False, edgecolor=colour, lw=1.2))


def significance_figure(frames: np.ndarray, significance: np.ndarray, *,
                        fraction: float = 0.1, title: str = '',
                        geom=None, frame_ids=None) -> bytes:
  """Frames with the significance overlaid and the extreme chunks marked.

  One column per temporal chunk (its first frame). Rows: the map over the
  frame; the ``fraction`` most significant chunks of the clip (others
  dimmed, outlined in red); the ``fraction`` least significant (outlined
  in cyan).

  Args:
    frames: uint8 ``[T, H, W, 3]`` clip frames the map was computed on (any
      size: the chunk grid is spread over them).
    significance: ``[t', h', w']`` map.
    fraction: share of chunks marked in each of the two lower rows.
    title: figure title.
    geom: optional ``ClipGeometry``: frames at full resolution are then
      cut to the model's crop region first, so the grid sits on the content
      the model saw.
    frame_ids: video frame number of each of ``frames`` (for the labels;
      default ``0..T-1``).

  Returns:
    PNG bytes.
  """
  frames = np.asarray(frames)
  s = np.asarray(significance, np.float64)
  if frames.ndim != 4 or s.ndim != 3:
    raise ShapeError(f"frames/significance: expected [T, H, W, 3] and [t', h', "
                     f"w'], got {frames.shape} and {s.shape}")
  if geom is not None and frames.shape[1:3] == tuple(geom.video_hw):
    frames = _crop_region(frames, geom)
  t_chunks, hc, wc = s.shape
  hb = chunk_bounds(hc, frames.shape[1])
  wb = chunk_bounds(wc, frames.shape[2])
  top, bottom = extreme_chunks(s, fraction)
  upsampled = s[:, np.searchsorted(hb, np.arange(frames.shape[1]), 'right') - 1]
  upsampled = upsampled[:, :, np.searchsorted(wb, np.arange(frames.shape[2]),
                                              'right') - 1]
  starts = _frame_of_chunk(frames, t_chunks)
  fig = Figure(figsize=(1.6 * t_chunks + 0.8, 5.2))
  axes = fig.subplots(3, t_chunks, squeeze=False)
  vmin, vmax = float(s.min()), float(s.max())
  for i, f in enumerate(starts):
    img = frames[f]
    axes[0][i].imshow(img)
    im = axes[0][i].imshow(upsampled[i], cmap='inferno', alpha=0.55,
                           vmin=vmin, vmax=vmax)
    for row, (chunks, colour) in enumerate(((top, 'red'), (bottom, 'cyan')),
                                           start=1):
      keep = np.repeat(np.repeat(chunks[i], np.diff(hb), 0), np.diff(wb), 1)
      shown = np.where(keep[..., None], img, (img * 0.3).astype(img.dtype))
      axes[row][i].imshow(shown)
      _outline(axes[row][i], chunks[i], hb, wb, colour)
    label = f if frame_ids is None else frame_ids[f]
    axes[0][i].set_title(f'frame {label}', fontsize=7)
  for row, label in enumerate(('significance', f'most {fraction:.0%}',
                               f'least {fraction:.0%}')):
    axes[row][0].set_ylabel(label, fontsize=8)
  for ax in axes.ravel():
    ax.set_xticks([])
    ax.set_yticks([])
  fig.colorbar(im, ax=axes[0].tolist(), shrink=0.8, label='significance')
  if title:
    fig.suptitle(title, fontsize=9)
  return _png(fig)


def _crop_region(frames: np.ndarray, geom) -> np.ndarray:
  """The part of full-resolution frames that the model's crop covers."""
  out = frames
  for axis in (0, 1):
    scale = geom.resized_hw[axis] / geom.video_hw[axis]
    lo = int(round(geom.crop_offset[axis] / scale))
    hi = int(round((geom.crop_offset[axis] + geom.size) / scale))
    hi = min(max(hi, lo + 1), geom.video_hw[axis])
    out = out[:, lo:hi] if axis == 0 else out[:, :, lo:hi]
  return out


def mask_ratio_figure(maps: dict[float, np.ndarray], title: str = '') -> bytes:
  """Distribution of chunk significance per mask ratio (one violin each).

  Args:
    maps: mask ratio -> significance values (any shape; e.g. the maps of
      several clips concatenated).
    title: figure title.

  Returns:
    PNG bytes. The left panel shows the raw values, the right one the
    values of each ratio min-max normalised, so that the shapes can be
    compared across ratios whose loss levels differ.
  """
  if not maps:
    raise ShapeError('maps: expected at least one mask ratio')
  ratios = sorted(maps)
  values = [np.ravel(np.asarray(maps[r], np.float64)) for r in ratios]
  normed = []
  for v in values:
    span = v.max() - v.min()
    normed.append((v - v.min()) / span if span > 0 else np.zeros_like(v))
  fig = Figure(figsize=(8.0, 3.4))
  axes = fig.subplots(1, 2)
  labels = [f'{r:g}' for r in ratios]
  for ax, data, ylabel in ((axes[0], values, 'chunk significance (loss)'),
                           (axes[1], normed, 'min-max normalised')):
    ax.violinplot(data, showmedians=True)
    ax.set_xticks(np.arange(1, len(ratios) + 1), labels)
    ax.set_xlabel('mask ratio')
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
  if title:
    fig.suptitle(title, fontsize=9)
  return _png(fig)
