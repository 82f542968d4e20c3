r"""The sparse-pixel GAN paper's table, with real bytes, and its frame grid.

  python -m eval.sparse_gan_table CLIP [CLIP ...] --out runs/sparse_gan_table \
      [--weights DIR] [--frames 16] [--size 128]

Per clip (first ``--frames`` frames, short side ``--size`` with Pillow
LANCZOS, centre crop ``size x size``; the model runs on tiles of its own
frame size):

* ``learned``: the mask generator's mask (the full model);
* ``random@learned``: an exact-count random mask with the same number of
  kept pixels per frame as the learned mask, i.e. equal achieved density
  (the comparison that says whether learning where to put pixels helps);
* ``random-5%`` / ``random-10%``: the "No Mask Gen" rows (exact-count random
  masks).

All rows are restored by the same inpainting generator (``--weights``,
default the bundled weights), with kept pixels copied in. Columns: achieved
kept pixels (mean %, per-frame min/max, fraction of empty frames), payload
bytes per frame (the real ``SparsePixelPayload``: LZMA bit mask + kept
colours), RGB PSNR, RGB SSIM (Wang, mean over channels), luma SSIM, ST-RRED
(lower is better) and VMAF. Writes ``table.md`` (per clip and the mean over
clips), ``table.csv`` and ``frame_grid.png`` (original, learned mask,
reconstruction, random mask at equal density, its reconstruction).
"""

import argparse
import pathlib

import numpy as np

from jaxvr import compare, evaluation, files
from jaxvr.report import plots, tables
from jaxvr.sparsegan import inference
from jaxvr.sparsegan import payload as payload_lib

METRICS = ('psnr', 'ssim_y', 'strred', 'vmaf')
COLUMNS = ['clip', 'method', 'kept_pct', 'kept_min_pct', 'kept_max_pct',
           'empty_frames', 'bytes_per_frame', 'psnr', 'ssim_rgb', 'ssim_y',
           'strred', 'vmaf']


def _random_like(mask: np.ndarray, seed: int) -> np.ndarray:
  """Uniform random mask with the same kept count per frame as ``mask``."""
  rng = np.random.default_rng(seed)
  t, h, w = mask.shape
  out = np.zeros((t, h * w), bool)
  for i, k in enumerate(mask.reshape(t, -1).sum(axis=1)):
    out[i, rng.choice(h * w, size=int(k), replace=False)] = True
  return out.reshape(t, h, w)


def _row(clip, method, video, mask, fps, gan, metric_names):
  payload = payload_lib.encode(video, mask, fps=fps)
  out = inference.decode(payload.to_bytes(), gan)
  rho = mask.reshape(mask.shape[0], -1).mean(axis=1)
  row = {'clip': clip, 'method': method,
         'kept_pct': 100 * float(rho.mean()),
         'kept_min_pct': 100 * float(rho.min()),
         'kept_max_pct': 100 * float(rho.max()),
         'empty_frames': float(np.mean(rho == 0)),
         'bytes_per_frame': payload.size / video.shape[0]}
  row.update(evaluation.measure_quality(video, out, metric_names))
  row['ssim_rgb'] = float(np.mean(evaluation.ssim_rgb(video, out)))
  return row, out


def _mean_rows(rows: list[dict]) -> list[dict]:
  out = []
  for method in dict.fromkeys(r['method'] for r in rows):
    group = [r for r in rows if r['method'] == method]
    mean = {'clip': f'mean of {len(group)}', 'method': method}
    for c in COLUMNS[2:]:
      vals = [r[c] for r in group if c in r]
      mean[c] = float(np.nanmean(vals)) if vals else float('nan')
    out.append(mean)
  return out


def run(clips, out_dir, weights=None, frames=16, size=128, seed=0,
        metric_names=METRICS, grid_frames=(0, 5, 10, 15)):
  """Measures every method on every clip; returns the per-clip rows."""
  out_dir = pathlib.Path(out_dir)
  out_dir.mkdir(parents=True, exist_ok=True)
  gan = inference.load(weights)
  spec = compare.ClipSpec(frames=frames, size=size)
  rows, grid = [], {}
  for n, path in enumerate(clips):
    name = compare.clip_name(path)
    video, fps = spec.load(path)
    learned = inference.predict_mask(video, gan, seed=seed)
    masks = {
        'learned': learned,
        'random@learned': _random_like(learned, seed + 1),
        'random-5%': inference.random_video_mask(video.shape[:3], 0.05,
                                                 seed=seed + 2),
        'random-10%': inference.random_video_mask(video.shape[:3], 0.10,
                                                  seed=seed + 3),
    }
    outs = {}
    for method, mask in masks.items():
      row, outs[method] = _row(name, method, video, mask, fps, gan,
                               metric_names)
      rows.append(row)
      print(tables.markdown([row], COLUMNS).splitlines()[-1], flush=True)
    if n == 0:
      ids = [i for i in grid_frames if i < video.shape[0]] or [0]
      as_img = lambda m: (255 * m).astype(np.uint8)
      grid = {'original': video,
              'learned mask': as_img(masks['learned']),
              'learned recon.': outs['learned'],
              'random mask (same %)': as_img(masks['random@learned']),
              'random recon.': outs['random@learned']}
      files.write_bytes(out_dir / 'frame_grid.png', plots.frame_grid(
          grid, ids, f'{name}: sparse-pixel GAN, learned vs random mask'))
  all_rows = rows + _mean_rows(rows)
  md = tables.markdown(all_rows, COLUMNS)
  files.write_bytes(out_dir / 'table.md', (md + '\n').encode())
  files.write_bytes(out_dir / 'table.csv', tables.to_csv(all_rows,
                                                    COLUMNS).encode())
  print(md)
  return rows


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('clips', nargs='+')
  parser.add_argument('--out', default='runs/sparse_gan_table')
  parser.add_argument('--weights', default=None,
                      help='weights folder (default: the bundled weights)')
  parser.add_argument('--frames', type=int, default=16)
  parser.add_argument('--size', type=int, default=128)
  parser.add_argument('--seed', type=int, default=0)
  parser.add_argument('--metrics', default=','.join(METRICS))
  args = parser.parse_args()
  run(args.clips, args.out, args.weights, args.frames, args.size, args.seed,
      tuple(args.metrics.split(',')))


if __name__ == '__main__':
  main()
