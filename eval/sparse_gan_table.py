r"""The sparse-pixel GAN paper's table, measured by the compare runner.

  python -m eval.sparse_gan_table CLIP [CLIP ...] --out runs/sparse_gan_table \
      [--frames 16] [--size 112]

Per clip (first ``--frames`` frames, short side ``--size`` with Pillow
LANCZOS, centre crop ``size x size``), the rows of ``jaxvr compare`` for the
same clips and spec (run through :func:`jaxvr.compare.compare` into
``DIR/compare``, resumable), each learned row beside its classical floor on
the same kept pixels and bytes:

* ``sparsegan`` / ``sparsegan-normconv``: the full model's learned mask,
  restored by its inpainter / by normalized convolution;
* ``random-mask-d5`` / ``normconv-d5`` and ``random-mask-d10`` /
  ``normconv-d10``: the "No Mask Gen" rows (exact-count random masks,
  bundled No-Mask-Gen inpainters).

One analysis row is not a product: ``random@learned``, an exact-count random
mask with the learned mask's number of kept pixels in every frame, restored
by the full model's inpainter (equal achieved density: does learning where
to put pixels help?). Columns: achieved kept pixels (mean %, per-frame
min/max, fraction of empty frames), payload bytes per frame, RGB PSNR, luma
SSIM, ST-RRED (lower is better), VMAF. Writes ``table.md`` (per clip and the
mean over clips), ``table.csv`` and ``frame_grid.png`` (original, learned
mask, reconstruction, random mask at equal density, its reconstruction).
"""

import argparse
import pathlib

import numpy as np

from jaxvr import compare, evaluation, files
from jaxvr.report import plots, tables
from jaxvr.sparsegan import inference
from jaxvr.sparsegan import payload as payload_lib

REDUCERS = ('sparsegan', 'sparsegan-normconv', 'random-mask-d5',
            'normconv-d5', 'random-mask-d10', 'normconv-d10')
EQUAL_DENSITY = 'random@learned'
METRICS = ('psnr', 'ssim_y', 'strred', 'vmaf')
COLUMNS = ['clip', 'method', 'kept_pct', 'kept_min_pct', 'kept_max_pct',
           'empty_frames', 'bytes_per_frame', 'psnr', 'ssim_y', 'strred',
           'vmaf']


def random_like(mask: np.ndarray, seed: int) -> np.ndarray:
  """Uniform random mask with the same kept count per frame as ``mask``."""
  rng = np.random.default_rng(seed)
  t, h, w = mask.shape
  out = np.zeros((t, h * w), bool)
  for i, k in enumerate(mask.reshape(t, -1).sum(axis=1)):
    out[i, rng.choice(h * w, size=int(k), replace=False)] = True
  return out.reshape(t, h, w)


def _kept(mask: np.ndarray) -> dict:
  rho = mask.reshape(mask.shape[0], -1).mean(axis=1)
  return {'kept_pct': 100 * float(rho.mean()),
          'kept_min_pct': 100 * float(rho.min()),
          'kept_max_pct': 100 * float(rho.max()),
          'empty_frames': float(np.mean(rho == 0))}


def _mean_rows(rows: list[dict]) -> list[dict]:
  out = []
  for method in dict.fromkeys(r['method'] for r in rows):
    group = [r for r in rows if r['method'] == method]
    mean = {'clip': f'mean of {len(group)}', 'method': method}
    for c in COLUMNS[2:]:
      vals = [r[c] for r in group if r.get(c) is not None]
      mean[c] = float(np.mean(vals)) if vals else None
    out.append(mean)
  return out


def run(clips, out_dir, frames=16, size=112, seed=0, metric_names=METRICS,
        grid_frames=(0, 5, 10, 15), progress=True) -> list[dict]:
  """Measures every row on every clip; returns the per-clip rows."""
  out_dir = pathlib.Path(out_dir)
  runs = out_dir / 'compare'
  spec = compare.ClipSpec(frames=frames, size=size)
  measured = compare.compare(clips, runs, reducer_names=REDUCERS, spec=spec,
                             metric_names=metric_names, progress=progress)
  gan = inference.load()
  rows = []
  for row in measured:
    if 'error' in row:
      print(f'{row["clip"]} / {row["reducer"]}: failed: {row["error"]}')
      continue
    out, extras = compare.saved_output(runs, row['clip'], row['reducer'])
    rows.append({'clip': row['clip'], 'method': row['reducer'],
                 **_kept(extras['mask']),
                 'bytes_per_frame': row['bytes'] / row['frames'],
                 **{k: row.get(k) for k in COLUMNS[7:]}})
    if row['reducer'] != 'sparsegan':
      continue
    video, _ = compare.saved_output(runs, row['clip'], 'original')
    mask = random_like(extras['mask'], seed)
    payload = payload_lib.encode(video, mask, fps=row['fps'])
    restored = inference.decode(payload.to_bytes(), gan)
    rows.append({'clip': row['clip'], 'method': EQUAL_DENSITY, **_kept(mask),
                 'bytes_per_frame': payload.size / video.shape[0],
                 **compare.strict_row(evaluation.measure_quality(
                     video, restored, metric_names))})
    if not (out_dir / 'frame_grid.png').exists():
      ids = [i for i in grid_frames if i < video.shape[0]] or [0]
      as_img = lambda m: (255 * m).astype(np.uint8)
      files.write_bytes(out_dir / 'frame_grid.png', plots.frame_grid(
          {'original': video, 'learned mask': as_img(extras['mask']),
           'learned recon.': out, 'random mask (same %)': as_img(mask),
           'random recon.': restored}, ids,
          f'{row["clip"]}: sparse-pixel GAN, learned vs random mask'))
  all_rows = rows + _mean_rows(rows)
  md = tables.markdown(all_rows, COLUMNS)
  files.write_text(out_dir / 'table.md', md + '\n')
  files.write_text(out_dir / 'table.csv', tables.to_csv(all_rows, COLUMNS))
  print(md)
  return rows


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('clips', nargs='+')
  parser.add_argument('--out', default='runs/sparse_gan_table')
  parser.add_argument('--frames', type=int, default=16)
  parser.add_argument('--size', type=int, default=112)
  parser.add_argument('--seed', type=int, default=0)
  parser.add_argument('--metrics', default=','.join(METRICS))
  args = parser.parse_args()
  run(args.clips, args.out, args.frames, args.size, args.seed,
      tuple(args.metrics.split(',')))


if __name__ == '__main__':
  main()
