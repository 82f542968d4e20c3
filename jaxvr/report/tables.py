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
  'ssim_y': ('SSIM Y', '{:.4f}'),
  'strred': ('ST-RRED (lower better)', '{:.2f}'),
  'strred_ssn': ('ST-RRED-SSN (lower better)', '{:.3f}'),
  'vmaf': ('VMAF', '{:.2f}'),
}


def _fmt(key: str, value) -> str:
  if isinstance(value, float) and math.isnan(value):
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
