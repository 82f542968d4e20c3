r"""The Sparse MP4 paper's table, measured honestly, and its Figure 5.

  python -m eval.sparse_mp4_table CLIP [CLIP ...] --out runs/sparse_mp4_table

Per clip (first 48 frames, short side 128 with Pillow LANCZOS, centre crop
128x128: the codec-anchor procedure): compression factor (lossless x264
yuv444p bytes of the original frames / transmitted bytes, the paper's
definition) and PSNR/SSIM on 8-bit RGB and on luma, for all frames, the kept
frames (the paper's frames 1 and 3 of each window) and the dropped frames
(frame 2), for Sparse MP4 (FISTA and LCA restoration with the bundled
dictionary), x264 crf 3 and 4 (yuv444p), linear interpolation, frame copy
and the bottleneck autoencoder. Writes table.md, table.csv and
residual_histograms.png (Figure 5: RMS residual of 16x16 patches for the
kept frames and the dropped frames restored by sparse coding, and the
dropped frames restored by frame copy).
"""

import argparse
import pathlib

import numpy as np

from jaxvr import codecs, compare, errors, evaluation, files, reducers
from jaxvr.report import plots, tables

METHODS = ('sparse-mp4', 'sparse-mp4-lca', 'x264-crf3-444', 'x264-crf4-444',
           'interp-linear', 'interp-copy', 'bottleneck-ae')


def run(clips, out_dir, methods=METHODS, frames=48, size=128):
  out_dir = pathlib.Path(out_dir)
  out_dir.mkdir(parents=True, exist_ok=True)
  spec = compare.ClipSpec(frames=frames, size=size)
  rows, residuals = [], {'kept frames (sparse coding)': [],
                         'dropped frames (sparse coding)': [],
                         'dropped frames (frame copy)': []}
  for path in clips:
    video, fps = spec.load(path)
    base = codecs.lossless_reference_size(video, fps=fps)
    t = video.shape[0]
    groups = {'all': np.arange(t), 'kept': np.arange(0, t, 2),
              'dropped': np.arange(1, t, 2)}
    for name in methods:
      try:
        reducer = reducers.create(name)
        payload = reducer.encode(video, fps)
        out = reducer.decode(payload)
      except errors.JaxvrError as err:
        print(f'{compare.clip_name(path)} / {name}: skipped: {err}')
        continue
      row = {'clip': compare.clip_name(path), 'method': name,
             'bytes': payload.size, 'factor': base / payload.size}
      row.update(evaluation.split_quality(video, out, groups))
      rows.append(row)
      if name == 'sparse-mp4':
        residuals['kept frames (sparse coding)'].append(
            evaluation.patch_residual_norms(video, out, groups['kept']))
        residuals['dropped frames (sparse coding)'].append(
            evaluation.patch_residual_norms(video, out, groups['dropped']))
      if name == 'interp-copy':
        residuals['dropped frames (frame copy)'].append(
            evaluation.patch_residual_norms(video, out, groups['dropped']))
  cols = ['clip', 'method', 'bytes', 'factor', 'all_psnr', 'all_ssim',
          'all_psnr_y', 'all_ssim_y', 'kept_psnr', 'kept_ssim', 'dropped_psnr',
          'dropped_ssim', 'dropped_psnr_y', 'dropped_ssim_y']
  md = tables.markdown(rows, cols)
  files.write_bytes(out_dir / 'table.md', (md + '\n').encode())
  files.write_bytes(out_dir / 'table.csv', tables.to_csv(rows, cols).encode())
  hist = {k: np.concatenate(v) for k, v in residuals.items() if v}
  if hist:
    files.write_bytes(out_dir / 'residual_histograms.png', plots.histograms(
        hist, 'RMS residual of 16x16 patches (8-bit units)'))
  print(md)
  return rows


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
