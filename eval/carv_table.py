r"""CARV against its baselines at the same refresh budget, on any clips.

  python -m eval.carv_table CLIP.mp4 [CLIP2.mp4 ...] --out DIR \
      [--frames 16] [--size 112] [--budgets 2,4,8]

The table's rows are those of ``jaxvr compare`` for the same clips and clip
spec (run through :func:`jaxvr.compare.compare` into ``DIR/compare``,
resumable): for every budget ``N`` the reducers ``carv-visible-nN``,
``carv-masked-nN``, ``every-nth-nN``, ``random-chunk-nN`` and
``motion-energy-nN``, measured on what the receiver decodes (the reduced
video through x264 at crf :data:`jaxvr.reducers.carv.CRF`, plus the float16
significance map for the methods that send one), and ``x264-crf18``, the
clip itself at the same crf (the ``none`` row, ``bytes_vs_clip`` = 1).
Metrics: PSNR on RGB, SSIM on luma, ST-RRED and ST-RRED-SSN (lower
is better), VMAF.

Then analyses of the significance maps themselves (bundled ST-MAE, the
product's mask count and ratio): how repeatable each estimator's map is
under a second, independent set of masks (``repeat_*``: Spearman between the
two maps of a clip), and the mask-ratio study (the CARV paper's Figure 3):
the distribution of chunk significance (visible estimator) at several mask
ratios and how well each ratio's map ranks chunks like the largest ratio's.

Writes ``DIR/carv_table.md``, ``carv_table.csv`` (per clip and N),
``carv_summary.csv`` (means over clips), ``repeatability.csv``,
``mask_ratio.csv``, ``mask_ratio_study.png``, ``significance/<clip>.npz`` and
``figures/<clip>.png`` (most and least significant chunks).
"""

from __future__ import annotations

import argparse
import math
import pathlib
import sys
import time

import jax
import numpy as np
from tqdm.auto import tqdm

from jaxvr import compare, files
from jaxvr.carv import clip as carv_clip
from jaxvr.carv import figures, pipeline
from jaxvr.carv.significance import (
    significance_from_sums,
    significance_sums,
    spearman,
)
from jaxvr.reducers.carv import CRF
from jaxvr.report import tables
from jaxvr.video import transforms

METRICS = ('psnr', 'ssim_y', 'strred', 'strred_ssn', 'vmaf')
BUDGETS = (2, 4, 8)          # the registered carv-*-nN reducers
CLIP_AT_CRF = f'x264-crf{CRF:g}'


def reducer_names(budgets) -> list[str]:
  """The compare reducers of the table: the clip at the crf, then per N."""
  return [CLIP_AT_CRF] + [f'{m}-n{n}' for n in budgets
                          for m in pipeline.METHODS]


def table_rows(measured: list[dict]) -> list[dict]:
  """Compare rows as table rows: method, N and bytes vs the clip."""
  base = {r['clip']: r['bytes'] for r in measured
          if r['reducer'] == CLIP_AT_CRF and 'error' not in r}
  rows = []
  for r in measured:
    if 'error' in r:
      print(f'{r["clip"]} / {r["reducer"]}: failed: {r["error"]}')
      continue
    if r['reducer'] == CLIP_AT_CRF:
      method, n, refresh = 'none', 1, 1.0
    else:
      method, n = r['reducer'].rsplit('-n', 1)
      n, refresh = int(n), r.get('meta_refresh_fraction')
    row = {'clip': r['clip'], 'method': method, 'N': n, 'refresh': refresh,
           'bytes': r['bytes'],
           'bytes_vs_clip': r['bytes'] / base[r['clip']]}
    row.update({k: r.get(k) for k in METRICS})
    rows.append(row)
  return rows


def significance_maps(name: str, video: np.ndarray, params, config, key,
                      out: pathlib.Path, repeats: list) -> np.ndarray:
  """Both estimators' maps of one clip, twice, for the repeatability table.

  Appends to ``repeats`` the Spearman correlation of each estimator's map
  with a second map from independent masks (``fold_in(key, 1)``), and of
  the two estimators' maps with each other; saves the maps and a figure.
  Returns the model-resolution clip (for the mask-ratio study).
  """
  n = pipeline.DEFAULT_N_SAMPLES
  clip, _ = carv_clip.model_clip(video, config)
  sums = [significance_sums(params, config, clip, k, n_samples=n,
                            mask_ratio=pipeline.DEFAULT_MASK_RATIO,
                            progress=False)
          for k in (key, jax.random.fold_in(key, 1))]
  maps = [{e: significance_from_sums(s, e, config.grid, n)
           for e in ('visible', 'masked')} for s in sums]
  repeat = {'clip': name}
  for e in ('visible', 'masked'):
    repeat[f'repeat_{e}'] = spearman(maps[0][e], maps[1][e])
  repeat['visible_vs_masked'] = spearman(maps[0]['visible'],
                                         maps[0]['masked'])
  repeats.append(repeat)
  files.save_npz(out / 'significance' / f'{name}.npz',
                 **{f'carv-{k}': np.asarray(v) for k, v in maps[0].items()})
  crop = np.asarray(transforms.to_uint8(transforms.denormalize(clip)))
  files.write_bytes(out / 'figures' / f'{name}.png',
                    figures.significance_figure(
                        crop, np.asarray(maps[0]['visible']),
                        title=f'{name}: CARV visible estimator'))
  return clip


def summarize(rows: list[dict]) -> list[dict]:
  keys = sorted({(r['N'], r['method']) for r in rows},
                key=lambda k: (k[0], (['none'] + list(pipeline.METHODS)
                                      ).index(k[1])))
  out = []
  for n, method in keys:
    group = [r for r in rows if r['N'] == n and r['method'] == method]
    row = {'N': n, 'method': method, 'clips': len(group)}
    for col in ('refresh', 'bytes', 'bytes_vs_clip', *METRICS):
      vals = [r[col] for r in group
              if r.get(col) is not None and math.isfinite(r[col])]
      row[col] = float(np.mean(vals)) if vals else None
    out.append(row)
  return out


def mask_ratio_study(clips: dict, params, config, key, args,
                     out: pathlib.Path) -> list[dict]:
  """Significance distribution per mask ratio, and how repeatable it is.

  Per ratio: statistics of the visible-estimator values over all clips'
  chunks; the mean over clips of the Spearman correlation with the largest
  ratio's map; and, for both estimators, the mean Spearman correlation
  between two maps of the same clip from independent mask sets (``key`` and
  ``fold_in(key, 1)``), i.e. how much of the ranking is signal rather than
  sampling noise.
  """
  maps = {r: [] for r in args.study_ratios}
  repeat = {r: {e: [] for e in ('visible', 'masked')}
            for r in args.study_ratios}
  n = args.study_samples
  for r in tqdm(args.study_ratios, desc='mask ratios'):
    for clip in clips.values():
      sums = [significance_sums(params, config, clip, k, n_samples=n,
                                mask_ratio=r, progress=False)
              for k in (key, jax.random.fold_in(key, 1))]
      for e in ('visible', 'masked'):
        a, b = (np.asarray(significance_from_sums(s, e, config.grid, n))
                for s in sums)
        repeat[r][e].append(spearman(a, b))
        if e == 'visible':
          maps[r].append(a)
  ref_ratio = max(args.study_ratios)
  rows = []
  for r in args.study_ratios:
    values = np.concatenate([m.ravel() for m in maps[r]])
    rho = [spearman(a, b) for a, b in zip(maps[r], maps[ref_ratio],
                                          strict=True)]
    rows.append({'mask_ratio': r, 'mean': float(values.mean()),
                 'std': float(values.std()),
                 'cv': float(values.std() / values.mean()),
                 'p5': float(np.percentile(values, 5)),
                 'median': float(np.median(values)),
                 'p95': float(np.percentile(values, 95)),
                 f'spearman_vs_{ref_ratio:g}': float(np.mean(rho)),
                 'repeat_visible': float(np.mean(repeat[r]['visible'])),
                 'repeat_masked': float(np.mean(repeat[r]['masked']))})
  png = figures.mask_ratio_figure(
      {r: np.concatenate([m.ravel() for m in maps[r]]) for r in maps},
      title=f'chunk significance per mask ratio ({len(clips)} clips, '
            f'{n} masks)')
  files.write_bytes(out / 'mask_ratio_study.png', png)
  return rows


def parse_args(argv):
  p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  p.add_argument('clips', nargs='+', help='video files')
  p.add_argument('--out', required=True, help='output folder')
  p.add_argument('--frames', type=int, default=16)
  p.add_argument('--size', type=int, default=112,
                 help='short side and square crop (0: native frames)')
  p.add_argument('--budgets', default='2,4,8',
                 help=f'refresh budgets N, some of {BUDGETS}')
  p.add_argument('--seed', type=int, default=0,
                 help='masks of the map analyses')
  p.add_argument('--study_ratios', default='0.5,0.75,0.9,0.95,0.98')
  p.add_argument('--study_samples', type=int, default=100,
                 help='masks per clip and ratio in the study (0: skip it)')
  args = p.parse_args(argv)
  args.budgets = [int(b) for b in args.budgets.split(',')]
  if not set(args.budgets) <= set(BUDGETS):
    p.error(f'--budgets: expected some of {BUDGETS}, got {args.budgets}')
  args.study_ratios = [float(r) for r in args.study_ratios.split(',')]
  return args


def main(argv=None, progress: bool = True) -> int:
  args = parse_args(sys.argv[1:] if argv is None else argv)
  out = pathlib.Path(args.out)
  start = time.perf_counter()
  spec = compare.ClipSpec(frames=args.frames, size=args.size or None)
  measured = compare.compare(args.clips, out / 'compare',
                             reducer_names=reducer_names(args.budgets),
                             spec=spec, metric_names=('psnr', 'ssim_y', 'strred', 'vmaf'),
                             progress=progress)
  rows = table_rows(measured)
  params, config = pipeline.load_default_model()
  key = jax.random.key(args.seed)
  clips, repeats = {}, []
  for name in tqdm(dict.fromkeys(r['clip'] for r in rows), desc='maps',
                   disable=not progress):
    video, _ = compare.saved_output(out / 'compare', name, 'original')
    clips[name] = significance_maps(name, video, params, config, key, out,
                                    repeats)
  summary = summarize(rows)
  cols = ['N', 'method', 'clips', 'refresh', 'bytes', 'bytes_vs_clip',
          *METRICS]
  files.write_text(out / 'carv_table.csv', tables.to_csv(rows))
  files.write_text(out / 'carv_summary.csv', tables.to_csv(summary, cols))
  text = [f'# CARV vs baselines ({len(clips)} clips, first {args.frames} '
          f'frames, {args.size or "native"} px, {pipeline.DEFAULT_N_SAMPLES} '
          f'masks at {pipeline.DEFAULT_MASK_RATIO:g}, x264 crf {CRF:g})', '',
          'Means over clips, measured on the decoded video. ST-RRED, '
          'ST-RRED-SSN: lower is better. `bytes` includes the float16 map '
          'where sent.', '', tables.markdown(summary, cols)]
  if repeats:
    text += ['', '## Repeatability of the maps', '',
             'Spearman correlation of each map with the map from an '
             'independent set of masks, and between the two estimators.', '',
             tables.markdown(repeats + [{'clip': 'mean', **{
                 k: float(np.mean([r[k] for r in repeats]))
                 for k in repeats[0] if k != 'clip'}}])]
    files.write_text(out / 'repeatability.csv', tables.to_csv(repeats))
  if args.study_samples and clips:
    study = mask_ratio_study(clips, params, config, key, args, out)
    files.write_text(out / 'mask_ratio.csv', tables.to_csv(study))
    text += ['', '## Mask-ratio study (visible estimator)', '',
             tables.markdown(study)]
  text += ['', f'({time.perf_counter() - start:.0f} s)']
  files.write_text(out / 'carv_table.md', '\n'.join(text) + '\n')
  print('\n'.join(text))
  return 0


if __name__ == '__main__':
  sys.exit(main())
