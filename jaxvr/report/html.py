"""A self-contained HTML report of a comparison run.

Images (PNG) and side-by-side videos (VP9 WebM) are embedded as data URIs,
so ``report.html`` is one file that opens anywhere. Clip and reducer names
are HTML-escaped: a file name is never markup.
"""

from __future__ import annotations

import base64
import html
import pathlib

import numpy as np

from jaxvr import files
from jaxvr.compare import saved_output
from jaxvr.report import plots, rates, tables
from jaxvr.video import ffmpeg
from jaxvr.video.transforms import pad_even

QUALITY = ['psnr', 'psnr_y', 'ssim_y', 'strred', 'strred_ssn', 'vmaf']

_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
table { border-collapse: collapse; font-size: 12px; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 3px 6px; text-align: right; }
th { background: #f3f3f3; } td:first-child, th:first-child { text-align: left; }
img { max-width: 100%; } .note { color: #555; font-size: 13px; }
.row { display: flex; flex-wrap: wrap; gap: 12px; } video { border: 1px solid #ccc; }
.row img { max-width: 32%; }
"""


def _img(png: bytes, alt: str) -> str:
  data = base64.b64encode(png).decode()
  return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _video(frames: np.ndarray, fps: float, label: str) -> str:
  frames = np.ascontiguousarray(frames)
  frames = pad_even(frames)
  t, h, w, _ = frames.shape
  data = ffmpeg.run(
      ['-f', 'rawvideo', '-pix_fmt', 'rgb24', '-s', f'{w}x{h}', '-framerate',
       f'{fps:g}', '-i', 'pipe:0', '-c:v', 'libvpx-vp9', '-crf', '30', '-b:v', '0',
       '-pix_fmt', 'yuv420p', '-f', 'webm', 'pipe:1'],
      stdin=frames.tobytes(), what=f'report video ({t} frames)')
  src = base64.b64encode(data).decode()
  return (f'<figure><video controls loop muted playsinline width="{min(w * 2, 640)}" '
          f'src="data:video/webm;base64,{src}"></video>'
          f'<figcaption>{html.escape(label)}</figcaption></figure>')


def _table(rows: list[dict], columns: list[str] | None = None) -> str:
  cols = columns or tables.columns_of(rows)
  head = ''.join(f'<th>{html.escape(tables._COLUMNS.get(c, (c,))[0])}</th>' for c in cols)
  body = []
  for row in rows:
    cells = ''.join(f'<td>{html.escape(tables._fmt(c, row.get(c, "")))}</td>' for c in cols)
    body.append(f'<tr>{cells}</tr>')
  return f'<table><tr>{head}</tr>{"".join(body)}</table>'


def _showcase(names: list[str]) -> list[str]:
  """One mid-budget reducer per family, for frame grids and videos."""
  by: dict[str, list[str]] = {}
  for n in names:
    by.setdefault(plots.family(n), []).append(n)
  return [group[len(group) // 2] for _, group in sorted(by.items())]


def write_report(out_dir, rows: list[dict], *, title: str = 'jaxvr comparison',
                 max_videos: int = 4) -> pathlib.Path:
  """Writes ``out_dir/report.html`` from result rows and saved outputs."""
  out_dir = pathlib.Path(out_dir)
  ok = [r for r in rows if 'error' not in r]
  failed = [r for r in rows if 'error' in r]
  metrics = [m for m in QUALITY if any(m in r for r in ok)]
  summary = tables.summarize(ok, metrics + tables.group_metrics(ok))
  parts = [f'<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}'
           f'</title><style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1>']
  clips = sorted({r['clip'] for r in rows})
  parts.append(
      f'<p class="note">{len(clips)} clip(s), {len(summary)} reducer(s). Sizes are '
      'real encoded bytes; bpp = 8 x bytes / (frames x height x width). ST-RRED and '
      'ST-RRED-SSN are distortions: lower is better. Intervals are 95% bootstrap '
      'intervals of the mean over clips.</p>')
  parts.append('<h2>Summary (mean over clips)</h2>')
  parts.append(_table(tables.with_intervals(
      summary, metrics + tables.group_metrics(ok))))
  equivalents = rates.rate_equivalents(summary)
  if equivalents and any(len(e) > 2 for e in equivalents):
    parts.append(
        '<h2>What the rate buys</h2><p class="note">For each method, the bits '
        'per pixel x264 and SVT-AV1 need for the same mean quality '
        '(interpolated in log rate along their measured curves), and the '
        'ratio method / codec: above 1, the codec reaches the same quality '
        'with fewer bits. "&lt;range" / "&gt;range": the quality lies below '
        '/ above the codec\'s measured curve.</p>')
    parts.append(_table(equivalents))
  bd = rates.bd_rates(summary)
  if bd:
    parts.append('<p class="note">Bjontegaard delta rate of the codec curves '
                 'against x264, percent (negative: fewer bits for the same '
                 'quality).</p>')
    parts.append(_table(bd))
  parts.append('<h2>Rate-distortion</h2><div class="row">')
  for m in metrics:
    parts.append(_img(plots.rd_curves(summary, m), f'RD curve {m}'))
  parts.append('</div>')
  if failed:
    parts.append('<h2>Failures</h2>')
    parts.append(_table(failed, ['clip', 'reducer', 'error']))
  cols = ['clip', 'reducer', 'bytes', 'bpp', *metrics]
  parts.append('<h2>Per clip</h2>')
  parts.append(_table(sorted(ok, key=lambda r: (r['clip'], r['bpp'])), cols))
  for clip in clips:
    parts.append(_clip_section(out_dir, clip, ok, max_videos))
  parts.append('</body></html>')
  path = out_dir / 'report.html'
  files.write_text(path, '\n'.join(parts))
  return path


def _clip_section(out_dir: pathlib.Path, clip: str, rows: list[dict],
                  max_videos: int) -> str:
  folder = out_dir / 'outputs' / clip
  if not (folder / 'original.npz').exists():
    return ''
  original, _ = saved_output(out_dir, clip, 'original')
  names = [r['reducer'] for r in rows if r['clip'] == clip
           and (folder / f'{r["reducer"]}.npz').exists()]
  shown = _showcase(names)
  fps = next((r.get('fps', 24.0) for r in rows if r['clip'] == clip), 24.0)
  t = original.shape[0]
  frame_ids = sorted({0, t // 3, (2 * t) // 3, t - 1})
  out = [f'<h2>Clip: {html.escape(clip)}</h2>']
  grid_rows = {'original': original}
  extras_html = []
  videos = []
  for name in shown:
    decoded, extras = saved_output(out_dir, clip, name)
    grid_rows[name] = decoded
    grid_rows[f'|{name} - orig| x4'] = plots.difference(decoded, original)
    for key, value in extras.items():
      if key == 'significance':
        extras_html.append(_img(plots.heatmap(value, f'{clip}: {name} chunk significance'),
                                f'{name} significance'))
      elif key == 'mask':
        mask = (np.asarray(value).reshape(value.shape[0], *value.shape[1:3]) * 255)
        extras_html.append(_img(plots.frame_grid(
            {f'{name} mask': mask.astype(np.uint8)}, frame_ids[:4]), f'{name} mask'))
    if len(videos) < max_videos:
      videos.append(_video(np.concatenate([original, decoded], axis=2), fps,
                           f'original | {name}'))
  out.append(_img(plots.frame_grid(grid_rows, frame_ids), f'{clip} frames'))
  out += extras_html
  out.append('<div class="row">' + ''.join(videos) + '</div>')
  return '\n'.join(out)
