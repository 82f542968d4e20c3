"""What a method's rate buys, in the field's terms: codec-equivalent rates.

For every method row of a summary (mean bits per pixel and mean quality over
the clips), the rate a real codec needs for the same quality: the codec's
measured rate-distortion points (its ``<family>-crf<N>`` reducers, mean over
the same clips) interpolated linearly in log rate against the metric. A
ratio above 1 means the method spends more bits than the codec for the same
quality. Qualities outside the codec's measured range are reported as such,
not extrapolated.

Codec curves are compared with the Bjontegaard delta rate against x264
(``bjontegaard`` package, piecewise cubic interpolation), the usual summary
of how much rate one codec saves over another at equal quality.
"""

from __future__ import annotations

import math
import re
import warnings

import numpy as np

CODEC_FAMILIES = ('x264', 'x265', 'av1')
_CRF = re.compile(r'^(?P<family>[a-z0-9]+)-crf(?P<crf>\d+)$')
# Metrics where lower is better are not interpolated (ST-RRED is a
# distortion with a long tail; PSNR and VMAF are the usual axes).
RATE_METRICS = ('psnr', 'vmaf')


def codec_curve(summary: list[dict], family: str,
                metric: str) -> list[tuple[float, float]]:
  """``[(bpp, quality)]`` of a codec family's crf reducers, by rate."""
  points = []
  for row in summary:
    m = _CRF.match(row['reducer'])
    value = row.get(metric)
    if (m and m['family'] == family and value is not None
        and math.isfinite(value) and row.get('bpp')):
      points.append((float(row['bpp']), float(value)))
  return sorted(points)


def equivalent_bpp(curve: list[tuple[float, float]],
                   value: float) -> tuple[float | None, str]:
  """The rate at which a codec curve reaches ``value``.

  Returns:
    ``(bpp, '')`` inside the measured range; ``(None, 'below')`` or
    ``(None, 'above')`` when ``value`` lies outside it (or the curve has
    fewer than two points).
  """
  if len(curve) < 2 or value is None or not math.isfinite(value):
    return None, 'below' if curve else 'above'
  q = np.array([p[1] for p in curve])
  log_r = np.log(np.array([p[0] for p in curve]))
  order = np.argsort(q)
  q, log_r = q[order], log_r[order]
  if value < q[0]:
    return None, 'below'
  if value > q[-1]:
    return None, 'above'
  return float(np.exp(np.interp(value, q, log_r))), ''


def rate_equivalents(summary: list[dict],
                     families: tuple[str, ...] = ('x264', 'av1'),
                     metrics: tuple[str, ...] = RATE_METRICS) -> list[dict]:
  """Per method row: the codec rates for the same quality, and the ratios.

  Args:
    summary: rows of :func:`jaxvr.report.tables.summarize`.
    families: codec families to compare with.
    metrics: quality metrics (higher is better).

  Returns:
    One row per non-codec reducer with ``reducer``, ``bpp`` and, for each
    family f and metric m, ``f_m_bpp`` (the codec's rate, or ``'<range'`` /
    ``'>range'`` when the method's quality lies outside the measured
    curve) and ``f_m_ratio`` (method bpp / codec bpp).
  """
  out = []
  for row in summary:
    if _CRF.match(row['reducer']) or row['reducer'].endswith('-444'):
      continue
    entry = {'reducer': row['reducer'], 'bpp': row.get('bpp')}
    for family in families:
      for metric in metrics:
        curve = codec_curve(summary, family, metric)
        if not curve:
          continue
        bpp, side = equivalent_bpp(curve, row.get(metric))
        key = f'{family}_{metric}'
        if bpp is None:
          entry[f'{key}_bpp'] = '<range' if side == 'below' else '>range'
          entry[f'{key}_ratio'] = ''
        else:
          entry[f'{key}_bpp'] = bpp
          entry[f'{key}_ratio'] = row['bpp'] / bpp if row.get('bpp') else ''
    out.append(entry)
  return out


def bd_rates(summary: list[dict], anchor: str = 'x264',
             metrics: tuple[str, ...] = RATE_METRICS) -> list[dict]:
  """Bjontegaard delta rate (percent) of each codec family against ``anchor``.

  Negative: fewer bits than the anchor for the same quality. Families with
  fewer than 3 points on a metric, or whose curve overlaps the anchor's on
  less than 75 % of the quality range, get None.
  """
  import bjontegaard

  out = []
  for family in CODEC_FAMILIES:
    if family == anchor:
      continue
    entry = {'codec': family, 'anchor': anchor}
    for metric in metrics:
      ref, test = (codec_curve(summary, anchor, metric),
                   codec_curve(summary, family, metric))
      value = None
      if len(ref) >= 3 and len(test) >= 3:
        # The package warns (and still answers) when the curves overlap on
        # less than 75 % of their quality range; such a delta is an
        # extrapolation, so it is left out.
        with warnings.catch_warnings(record=True) as caught:
          warnings.simplefilter('always')
          try:
            value = float(bjontegaard.bd_rate(
                [p[0] for p in ref], [p[1] for p in ref],
                [p[0] for p in test], [p[1] for p in test],
                method='pchip', require_matching_points=False))
          except (ValueError, AssertionError):
            value = None
        if any('overlap' in str(w.message) for w in caught):
          value = None
      entry[f'bd_rate_{metric}'] = value
    if any(entry[f'bd_rate_{m}'] is not None for m in metrics):
      out.append(entry)
  return out
