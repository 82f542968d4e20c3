"""Markdown and CSV tables from lists of row dicts."""

from __future__ import annotations

import csv
import io
import math

# Printed name and format of well-known columns; others print with '{:.4g}'.
_COLUMNS = {
  'bytes': ('bytes', '{:,d}'),
  'factor': ('factor', '{:.2f}'),
  'bpp': ('bpp', '{:.3f}'),
  'psnr': ('PSNR RGB dB', '{:.2f}'),
  'psnr_y': ('PSNR Y dB', '{:.2f}'),
  'psnr_kept': ('PSNR kept frames', '{:.2f}'),
  'psnr_dropped': ('PSNR dropped frames', '{:.2f}'),
  'ssim_y': ('SSIM Y', '{:.4f}'),
  'strred': ('ST-RRED (lower better)', '{:.2f}'),
  'strred_ssn': ('ST-RRED-SSN (lower better)', '{:.3f}'),
  'vmaf': ('VMAF', '{:.2f}'),
}


def _fmt(key: str, value) -> str:
  if value is None or (isinstance(value, float) and math.isnan(value)):
    return '-'
  if isinstance(value, bool) or not isinstance(value, int | float):
    return str(value)
  fmt = _COLUMNS.get(key, (key, '{:.4g}'))[1]
  if fmt == '{:,d}' and not isinstance(value, int):
    fmt = '{:,.0f}'
  return fmt.format(value)


def columns_of(rows: list[dict]) -> list[str]:
  """All keys of ``rows`` in first-seen order."""
  cols: list[str] = []
  for row in rows:
    cols += [k for k in row if k not in cols]
  return cols


def markdown(rows: list[dict], columns: list[str] | None = None) -> str:
  """A GitHub-flavoured markdown table of ``rows``."""
  cols = columns or columns_of(rows)
  head = [_COLUMNS.get(c, (c,))[0] for c in cols]
  lines = ['| ' + ' | '.join(head) + ' |',
           '|' + '|'.join('---' for _ in cols) + '|']
  for row in rows:
    lines.append('| ' + ' | '.join(_fmt(c, row.get(c, '')) for c in cols) + ' |')
  return '\n'.join(lines)


def to_csv(rows: list[dict], columns: list[str] | None = None) -> str:
  """CSV text of ``rows`` (raw values, full precision)."""
  cols = columns or columns_of(rows)
  buf = io.StringIO()
  writer = csv.DictWriter(buf, fieldnames=cols, extrasaction='ignore')
  writer.writeheader()
  writer.writerows(rows)
  return buf.getvalue()


def group_metrics(rows: list[dict]) -> list[str]:
  """Per-frame-group metrics present in ``rows`` (``psnr_kept``, ...)."""
  known = {'psnr_y'}
  return sorted({k for r in rows for k in r
                 if k.startswith('psnr_') and k not in known
                 and not k.endswith(('_lo', '_hi', '_n'))})


def bootstrap_ci(values, n_boot: int = 2000, level: float = 0.95,
                 seed: int = 0) -> tuple[float, float]:
  """Percentile bootstrap interval of the mean of ``values``."""
  import numpy as np

  v = np.asarray([x for x in values if x is not None and np.isfinite(x)],
                 np.float64)
  if v.size == 0:
    return float('nan'), float('nan')
  if v.size == 1:
    return float(v[0]), float(v[0])
  rng = np.random.default_rng(seed)
  means = v[rng.integers(0, v.size, (n_boot, v.size))].mean(axis=1)
  lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
  return float(lo), float(hi)


def summarize(rows: list[dict], metrics: list[str]) -> list[dict]:
  """Per reducer: mean over clips of bpp and each metric, with 95% intervals.

  Rows with an 'error' are left out. Each output row has ``reducer``,
  ``clips``, ``<m>`` (mean over the clips where ``m`` is finite),
  ``<m>_n`` (how many clips that is) and ``<m>_lo``/``<m>_hi`` (bootstrap
  interval).
  """
  import numpy as np

  by: dict[str, list[dict]] = {}
  for row in rows:
    if 'error' not in row:
      by.setdefault(row['reducer'], []).append(row)
  out = []
  for name, group in by.items():
    summary = {'reducer': name, 'clips': len(group)}
    for m in ['bpp', *metrics]:
      if not any(m in r for r in group):
        continue
      finite = [r[m] for r in group
                if r.get(m) is not None and np.isfinite(r[m])]
      summary[m] = float(np.mean(finite)) if finite else float('nan')
      summary[f'{m}_n'] = len(finite)
      summary[f'{m}_lo'], summary[f'{m}_hi'] = bootstrap_ci(finite)
    out.append(summary)
  return sorted(out, key=lambda r: r.get('bpp', 0.0))


def with_intervals(summary: list[dict], metrics: list[str]) -> list[dict]:
  """Rows for printing: 'mean [lo, hi]' strings per metric."""
  rows = []
  for s in summary:
    row = {'reducer': s['reducer'], 'clips': s['clips']}
    for m in ['bpp', *metrics]:
      if m in s:
        name, fmt = _COLUMNS.get(m, (m, '{:.4g}'))
        cell = fmt.format(s[m])
        if s.get(f'{m}_n', s['clips']) > 1:
          cell += f' [{fmt.format(s[m + "_lo"])}, {fmt.format(s[m + "_hi"])}]'
        if s.get(f'{m}_n', s['clips']) < s['clips']:
          cell += f' (n={s[m + "_n"]})'
        row[m] = cell
    rows.append(row)
  return rows
