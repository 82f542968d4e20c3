r"""The Sparse MP4 paper's table, measured by the compare runner, and Figure 5.

  python -m eval.sparse_mp4_table CLIP [CLIP ...] --out runs/sparse_mp4_table

Per clip (first 48 frames, short side 128 with Pillow LANCZOS, centre crop
128x128: the codec-anchor procedure) and reducer (Sparse MP4 with FISTA and
LCA restoration and the paper's decoder, x264 crf 3 and 4 (yuv444p), linear
interpolation, frame copy, the bottleneck autoencoder), the rows are those of
``jaxvr compare`` for the same clips, reducers and clip spec (run through
:func:`jaxvr.compare.compare` into ``DIR/compare``, resumable): bytes,
RGB PSNR over all frames and over the kept (0, 2, ...) and dropped
(1, 3, ...) frames, luma SSIM. The table adds the compression factor
(lossless x264 yuv444p bytes of the clip / transmitted bytes, the paper's
definition) and RGB SSIM per frame group, both from the runner's saved
outputs. Writes table.md, table.csv and residual_histograms.png (Figure 5: RMS
residual of 16x16 patches for the kept frames and the dropped frames restored
by sparse coding, and the dropped frames restored by frame copy).
"""

import argparse
import pathlib

import numpy as np

from jaxvr import codecs, compare, evaluation, files
from jaxvr.report import plots, tables

METHODS = ('sparse-mp4', 'sparse-mp4-lca', 'sparse-mp4-paper',
           'x264-crf3-444', 'x264-crf4-444', 'interp-linear', 'interp-copy',
           'bottleneck-ae')
METRICS = ('psnr', 'ssim_y')
COLUMNS = ['clip', 'method', 'bytes', 'factor', 'psnr', 'psnr_kept',
           'psnr_dropped', 'ssim_y', 'all_ssim', 'kept_ssim', 'dropped_ssim']


def run(clips, out_dir, methods=METHODS, frames=48, size=128,
        progress=True) -> list[dict]:
  """Measures every method on every clip; returns the table rows."""
  out_dir = pathlib.Path(out_dir)
  runs = out_dir / 'compare'
  spec = compare.ClipSpec(frames=frames, size=size)
  rows = compare.compare(clips, runs, reducer_names=tuple(methods),
                         spec=spec, metric_names=METRICS, progress=progress)
  residuals = {'kept frames (sparse coding)': [],
               'dropped frames (sparse coding)': [],
               'dropped frames (frame copy)': []}
  table, base = [], {}
  for row in rows:
    if 'error' in row:
      print(f'{row["clip"]} / {row["reducer"]}: failed: {row["error"]}')
      continue
    clip, name = row['clip'], row['reducer']
    video, _ = compare.saved_output(runs, clip, 'original')
    out, _ = compare.saved_output(runs, clip, name)
    if clip not in base:
      base[clip] = codecs.lossless_reference_size(video, fps=row['fps'])
    t = video.shape[0]
    groups = {'all': np.arange(t), 'kept': np.arange(0, t, 2),
              'dropped': np.arange(1, t, 2)}
    ssim = evaluation.ssim_rgb(video, out)
    table.append({
        'clip': clip, 'method': name, 'bytes': row['bytes'],
        'factor': base[clip] / row['bytes'], 'psnr': row['psnr'],
        'psnr_kept': row.get('psnr_kept'),
        'psnr_dropped': row.get('psnr_dropped'), 'ssim_y': row['ssim_y'],
        **{f'{g}_ssim': float(np.mean(ssim[idx]))
           for g, idx in groups.items()}})
    if name == 'sparse-mp4':
      for g in ('kept', 'dropped'):
        residuals[f'{g} frames (sparse coding)'].append(
            evaluation.patch_residual_norms(video, out, groups[g]))
    if name == 'interp-copy':
      residuals['dropped frames (frame copy)'].append(
          evaluation.patch_residual_norms(video, out, groups['dropped']))
  md = tables.markdown(table, COLUMNS)
  files.write_text(out_dir / 'table.md', md + '\n')
  files.write_text(out_dir / 'table.csv', tables.to_csv(table, COLUMNS))
  hist = {k: np.concatenate(v) for k, v in residuals.items() if v}
  if hist:
    files.write_bytes(out_dir / 'residual_histograms.png', plots.histograms(
        hist, 'RMS residual of 16x16 patches (8-bit units)'))
  print(md)
  return table


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('clips', nargs='+')
  parser.add_argument('--out', default='runs/sparse_mp4_table')
  parser.add_argument('--methods', default=','.join(METHODS))
  parser.add_argument('--frames', type=int, default=48)
  parser.add_argument('--size', type=int, default=128)
  args = parser.parse_args()
  run(args.clips, args.out, args.methods.split(','), args.frames, args.size)


if __name__ == '__main__':
  main()
