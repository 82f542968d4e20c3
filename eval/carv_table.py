r"""CARV against its baselines at the same refresh budget, on any clips.

  python -m eval.carv_table CLIP.mp4 [CLIP2.mp4 ...] --out DIR \
      [--frames 16] [--size 112] [--budgets 2,4,8] [--n_samples 500]

For every clip (its first ``--frames`` frames, short side resized to
``--size`` with Pillow LANCZOS and centre-cropped square; ``--size 0`` keeps
the native frames) and every budget ``N``: CARV with the marginal-visible and
the masked-error estimators, Every Nth frame, Nth random chunk and motion
energy. Quality of each reduced video against the clip: MSE and PSNR on RGB,
SSIM on luma, ST-RRED and ST-RRED-SSN (lower is better), VMAF; size: the
bytes of the reduced video encoded with x264 at ``--crf`` (4:2:0), plus the
float16 significance map for the methods whose receiver needs it (see
``jaxvr.reducers.carv``). The clip itself at the same crf is the ``none``
row. Both CARV estimators come from one sampling run per clip.

Then the mask-ratio study (the CARV paper's Figure 3): the distribution of
chunk significance (visible estimator) at several mask ratios, how well
each ratio's map ranks chunks like the largest ratio's (Spearman), and how
repeatable each estimator's map is under a second, independent set of masks
(``repeat_*``: Spearman between the two maps of a clip).

Writes ``DIR/carv_table.md``, ``carv_table.csv`` (per clip and N),
``carv_summary.csv`` (means over clips), ``repeatability.csv``,
``mask_ratio.csv``,
``mask_ratio_study.png``, ``significance/<clip>.npz`` and
``figures/<clip>.png`` (most and least significant chunks).
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time

import jax
import numpy as np
from tqdm.auto import tqdm

from jaxvr import codecs, files
from jaxvr.carv import figures, pipeline
from jaxvr.carv.significance import (
    significance_from_sums,
    significance_sums,
    spearman,
)
from jaxvr.evaluation import measure_quality
from jaxvr.reducers.carv import CRF
from jaxvr.report import tables
from jaxvr.video import io as video_io
from jaxvr.video import transforms

METRICS = ('mse', 'psnr', 'ssim_y', 'strred', 'strred_ssn', 'vmaf')
SENDS_MAP = ('carv-visible', 'carv-masked', 'motion-energy')


def load_clip(path, frames: int, size: int) -> np.ndarray:
  """First ``frames`` frames, short side ``size`` (LANCZOS), square centre crop."""
  video = video_io.read_video(path, max_frames=frames)
  if size:
    video = transforms.resize_short_side_pil(video, size)
    y, x = transforms.center_crop_offsets(video.shape[1], video.shape[2],
                                          (size, size))
    video = np.ascontiguousarray(video[:, y:y + size, x:x + size])
  return video


def x264_bytes(video: np.ndarray, crf: float, fps: float) -> int:
  _, h, w, _ = video.shape
  even = np.pad(video, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode='edge')
  return len(codecs.encode(even, 'libx264', crf=crf, pix_fmt='yuv420p',
                           fps=fps))


def quality(ref: np.ndarray, dist: np.ndarray) -> dict:
  out = {'mse': float(np.mean((ref.astype(np.float64) - dist) ** 2))}
  q = measure_quality(ref, dist, ('psnr', 'ssim_y', 'strred', 'vmaf'))
  out.update({k: q[k] for k in ('psnr', 'ssim_y', 'strred', 'strred_ssn',
                                'vmaf')})
  return out


def clip_rows(name: str, video: np.ndarray, fps: float, params, config, key,
              args, out: pathlib.Path, repeats: list) -> list[dict]:
  """Every method and budget on one clip.

  Also appends to ``repeats`` the Spearman correlation of each estimator's
  map with a second map from independent masks (``fold_in(key, 1)``), and
  of the two estimators' maps with each other.
  """
  clip, geom = pipeline.model_clip(video, config)
  sums = significance_sums(params, config, clip, key,
                           n_samples=args.n_samples,
                           mask_ratio=args.mask_ratio, progress=False)
  maps = {f'carv-{e}': significance_from_sums(sums, e, config.grid,
                                              args.n_samples)
          for e in ('visible', 'masked')}
  again = significance_sums(params, config, clip, jax.random.fold_in(key, 1),
                            n_samples=args.n_samples,
                            mask_ratio=args.mask_ratio, progress=False)
  repeat = {'clip': name}
  for e in ('visible', 'masked'):
    second = significance_from_sums(again, e, config.grid, args.n_samples)
    repeat[f'repeat_{e}'] = spearman(maps[f'carv-{e}'], second)
  repeat['visible_vs_masked'] = spearman(maps['carv-visible'],
                                         maps['carv-masked'])
  repeats.append(repeat)
  files.save_npz(out / 'significance' / f'{name}.npz',
                 **{k: np.asarray(v) for k, v in maps.items()})
  crop = np.asarray(transforms.to_uint8(transforms.denormalize(clip)))
  files.write_bytes(out / 'figures' / f'{name}.png', figures.significance_figure(
      crop, np.asarray(maps['carv-visible']),
      title=f'{name}: CARV visible estimator'))
  base = x264_bytes(video, args.crf, fps)
  rows = [{'clip': name, 'method': 'none', 'N': 1, 'refresh': 1.0,
           'bytes': base, 'bytes_vs_clip': 1.0}]
  for n in args.budgets:
    for method in pipeline.METHODS:
      red = pipeline.reduce(video, method, n, params=params, config=config,
                            key=key, significance=maps.get(method),
                            invert=args.invert)
      map_bytes = (2 * red.full_map.size if method in SENDS_MAP else 0)
      size = x264_bytes(red.video, args.crf, fps) + map_bytes
      row = {'clip': name, 'method': method, 'N': n,
             'refresh': red.refresh_fraction, 'bytes': size,
             'bytes_vs_clip': size / base}
      row.update(quality(video, red.video))
      rows.append(row)
  return rows


def summarize(rows: list[dict]) -> list[dict]:
  keys = sorted({(r['N'], r['method']) for r in rows},
                key=lambda k: (k[0], (['none'] + list(pipeline.METHODS)
                                      ).index(k[1])))
  out = []
  for n, method in keys:
    group = [r for r in rows if r['N'] == n and r['method'] == method]
    row = {'N': n, 'method': method, 'clips': len(group)}
    for col in ('refresh', 'bytes', 'bytes_vs_clip', *METRICS):
      vals = [r[col] for r in group if col in r and np.isfinite(r[col])]
      row[col] = float(np.mean(vals)) if vals else float('nan')
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
  p.add_argument('--budgets', default='2,4,8')
  p.add_argument('--n_samples', type=int, default=pipeline.DEFAULT_N_SAMPLES)
  p.add_argument('--mask_ratio', type=float,
                 default=pipeline.DEFAULT_MASK_RATIO)
  p.add_argument('--crf', type=float, default=CRF)
  p.add_argument('--invert', action='store_true',
                 help='refresh low-significance chunks more (paper text)')
  p.add_argument('--model', default=None,
                 help='folder from save_params (default: bundled model)')
  p.add_argument('--seed', type=int, default=0)
  p.add_argument('--study_ratios', default='0.5,0.75,0.9,0.95,0.98')
  p.add_argument('--study_samples', type=int, default=100,
                 help='masks per clip and ratio in the study (0: skip it)')
  args = p.parse_args(argv)
  args.budgets = [int(b) for b in args.budgets.split(',')]
  args.study_ratios = [float(r) for r in args.study_ratios.split(',')]
  return args


def main(argv=None) -> int:
  args = parse_args(sys.argv[1:] if argv is None else argv)
  out = pathlib.Path(args.out)
  for sub in ('significance', 'figures'):
    (out / sub).mkdir(parents=True, exist_ok=True)
  params, config = pipeline.load_default_model(args.model)
  key = jax.random.key(args.seed)
  rows, clips, repeats = [], {}, []
  start = time.perf_counter()
  for path in tqdm(args.clips, desc='clips'):
    name = pathlib.Path(path).stem
    video = load_clip(path, args.frames, args.size)
    fps = video_io.probe_video(path).fps or 24.0
    clips[name] = pipeline.model_clip(video, config)[0]
    rows += clip_rows(name, video, fps, params, config, key, args, out,
                      repeats)
  summary = summarize(rows)
  cols = ['N', 'method', 'clips', 'refresh', 'bytes', 'bytes_vs_clip',
          *METRICS]
  files.write_text(out / 'carv_table.csv', tables.to_csv(rows))
  files.write_text(out / 'carv_summary.csv', tables.to_csv(summary, cols))
  text = [f'# CARV vs baselines ({len(clips)} clips, first {args.frames} '
          f'frames, {args.size or "native"} px, {args.n_samples} masks at '
          f'{args.mask_ratio:g}, x264 crf {args.crf:g}, '
          f'{"inverted" if args.invert else "code"} direction)', '',
          'Means over clips. MSE, ST-RRED, ST-RRED-SSN: lower is better. '
          '`bytes` includes the float16 map where sent.', '',
          tables.markdown(summary, cols)]
  text += ['', f'## Repeatability of the maps ({args.n_samples} masks at '
           f'{args.mask_ratio:g})', '',
           'Spearman correlation of each map with the map from an '
           'independent set of masks, and between the two estimators.', '',
           tables.markdown(repeats + [{'clip': 'mean', **{
               k: float(np.mean([r[k] for r in repeats]))
               for k in repeats[0] if k != 'clip'}}])]
  files.write_text(out / 'repeatability.csv', tables.to_csv(repeats))
  if args.study_samples:
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
