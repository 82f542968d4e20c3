"""Speed of jaxvr ST-RRED and SSIM against scikit-video and scikit-image.

Run: ``python -m eval.bench_metrics [--clip PATH] [--runs 3]``

Both sides get the same 16-frame 288x352 luma pair in one process: the Y plane
of the first frames of a real clip (default: the bundled sample clip), resized
to cover 288x352 and centre-cropped, against a blurred (Gaussian sigma 1.2)
and noisy (N(0, 6^2)) copy, rounded to uint8. Each contender first gets
``--warmup`` untimed calls (so jaxvr's compile time and first-call
allocations are excluded); then ``--runs`` rounds alternate the two, jaxvr
called about as many times per round as one competitor call takes, and the
medians of the per-call times are compared (interleaving keeps the machine's
drift out of the ratio). The inputs of jaxvr are already on the device.
Competitors:

* ``skvideo.measure.strred`` (scikit-video 1.1.11, float32 NumPy port of the
  LIVE release; needs the ``numpy.int``/``numpy.float`` aliases, restored here);
* ``skimage.metrics.structural_similarity`` with the Wang settings
  (``gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
  data_range=255``) on float32 frames (it computes in its input's float
  precision, so both sides run float32), one call per frame.

Precision per row (printed): jaxvr float32 for both metrics; scikit-video
float32 frames, computed as released (no precision option); scikit-image
float32.

A competitor that is not installed is skipped with a message.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import numpy as np

from jaxvr import files

HEIGHT, WIDTH = 288, 352
TARGETS = {'strred': 100.0, 'ssim': 8.0}


def read_luma(path: str, frames: int) -> np.ndarray:
  """Decodes the Y plane (as coded, no range change) of the first frames."""
  from jaxvr.video import io as video_io

  out = video_io.read_luma(path, max_frames=frames)
  if len(out) < frames:
    raise SystemExit(f'{path}: expected at least {frames} frames, got {len(out)}')
  return out


def _resize_axis(x: np.ndarray, size: int, axis: int) -> np.ndarray:
  """Linear interpolation along one axis (pixel centres aligned)."""
  n = x.shape[axis]
  if n == size:
    return x
  pos = (np.arange(size) + 0.5) * (n / size) - 0.5
  pos = np.clip(pos, 0, n - 1)
  lo = np.floor(pos).astype(int)
  hi = np.minimum(lo + 1, n - 1)
  frac = (pos - lo).reshape([-1 if a == axis else 1 for a in range(x.ndim)])
  return (np.take(x, lo, axis) * (1 - frac) + np.take(x, hi, axis) * frac)


def fit(frames: np.ndarray, height: int, width: int) -> np.ndarray:
  """Resizes ``[T, H, W]`` to cover ``height x width``, then centre-crops."""
  _, h, w = frames.shape
  scale = max(height / h, width / w)
  nh, nw = max(height, round(h * scale)), max(width, round(w * scale))
  x = _resize_axis(_resize_axis(frames.astype(np.float64), nh, 1), nw, 2)
  top, left = (nh - height) // 2, (nw - width) // 2
  x = x[:, top:top + height, left:left + width]
  return np.clip(np.round(x), 0, 255).astype(np.uint8)


def distort(frames: np.ndarray, seed: int = 0) -> np.ndarray:
  """Gaussian blur (sigma 1.2, mirror edges) plus N(0, 6^2) noise, as uint8."""
  r = np.arange(-4, 5)
  g = np.exp(-r * r / (2 * 1.2 ** 2))
  g /= g.sum()
  x = frames.astype(np.float64)
  for axis in (1, 2):
    pad = [(0, 0)] * 3
    pad[axis] = (4, 4)
    xp = np.pad(x, pad, mode='symmetric')
    n = x.shape[axis]
    x = sum(w * np.take(xp, np.arange(k, k + n), axis) for k, w in enumerate(g))
  x = x + np.random.default_rng(seed).normal(0.0, 6.0, x.shape)
  return np.clip(np.round(x), 0, 255).astype(np.uint8)


def _call(fn):
  """``(wall s, process-CPU s, result)`` of one call."""
  c0, t0 = time.process_time(), time.perf_counter()
  out = fn()
  return time.perf_counter() - t0, time.process_time() - c0, out


def timed_pair(mine, other, runs: int, warmup: int):
  """Median seconds per call of two contenders, measured interleaved.

  The machine's speed drifts over seconds (frequency, neighbours), so the
  two are timed in alternating rounds: each round calls ``mine`` as many
  times as takes about one call of ``other`` (jaxvr is ~100x faster), then
  ``other`` once, and each contender's per-call time of the round is kept.
  ``other=None`` times ``mine`` alone.

  Returns:
    ``{'mine': (wall, cpu, result), 'other': (wall, cpu, result) or None}``
    with the median wall and process-CPU seconds per call over ``runs``
    rounds, after ``warmup`` untimed calls of each.
  """
  for _ in range(warmup):
    mine()
    if other is not None:
      other()
  inner = 1
  if other is not None:
    inner = max(1, round(_call(other)[0] / max(_call(mine)[0], 1e-9)))
  stats = {'mine': ([], []), 'other': ([], [])}
  results = {}
  for _ in range(runs):
    for name, fn, n in (('mine', mine, inner), ('other', other, 1)):
      if fn is None:
        continue
      calls = [_call(fn) for _ in range(n)]
      stats[name][0].append(sum(c[0] for c in calls) / n)
      stats[name][1].append(sum(c[1] for c in calls) / n)
      results[name] = calls[-1][2]
  return {name: (statistics.median(w), statistics.median(c), results[name])
          if w else None for name, (w, c) in stats.items()}


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--clip', default=None,
                      help='video file (default: the bundled sample clip)')
  parser.add_argument('--frames', type=int, default=16)
  parser.add_argument('--runs', type=int, default=3)
  parser.add_argument('--warmup', type=int, default=2,
                      help='untimed calls before timing, for every contender')
  parser.add_argument('--json', default=None, help='also write results here')
  args = parser.parse_args(argv)

  import jax

  import jaxvr.metrics as jm

  clip = args.clip
  if clip is None:
    from jaxvr.assets import sample_clip_path
    clip = str(sample_clip_path())
  ref = fit(read_luma(clip, args.frames), HEIGHT, WIDTH)
  dis = distort(ref)
  print(f'clip {clip}: {ref.shape[0]} frames of {HEIGHT}x{WIDTH} luma, '
        f'medians of {args.runs} interleaved rounds after {args.warmup} '
        f'warm-up calls; '
        f'{jax.default_backend()} '
        f'backend, {jax.device_count()} device(s)')

  ref_d, dis_d = jax.device_put(ref), jax.device_put(dis)
  rows = {}

  try:
    np.int = int  # noqa: NPY001  (scikit-video 1.1.11 uses the removed aliases)
    np.float = float  # noqa: NPY001
    import skvideo.measure as skm
  except ImportError:
    print('scikit-video not installed: skipping the ST-RRED comparison '
          '(pip install scikit-video==1.1.11)')
    sk_strred = None
  else:
    def sk_strred():
      return float(skm.strred(ref[..., None], dis[..., None])[1])

  try:
    from skimage.metrics import structural_similarity
  except ImportError:
    print('scikit-image not installed: skipping the SSIM comparison')
    sk_ssim = None
  else:
    r32, d32 = ref.astype(np.float32), dis.astype(np.float32)

    def sk_ssim():
      return float(np.mean([structural_similarity(
          a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
          data_range=255) for a, b in zip(r32, d32, strict=True)]))

  contenders = {
      'strred': (lambda: _block(jm.strred(ref_d, dis_d)).strred,
                 'scikit-video', sk_strred, 'float32 / float32 frames'),
      'ssim': (lambda: float(np.mean(np.asarray(_block(jm.ssim(ref_d, dis_d))))),
               'scikit-image', sk_ssim, 'float32 / float32'),
  }
  rows = {}
  for name, (mine, other_name, other, precision) in contenders.items():
    got = timed_pair(mine, other, args.runs, args.warmup)
    wall, cpu, value = got['mine']
    rows[name] = {'jaxvr_s': wall, 'jaxvr_cpu_s': cpu, 'jaxvr_value': value}
    if got['other'] is not None:
      wall, cpu, value = got['other']
      rows[name].update(other=other_name, other_s=wall, other_cpu_s=cpu,
                        other_value=value, precision=precision)

  print(f'{"metric":8} {"jaxvr s":>9} {"other":>13} {"other s":>9} '
        f'{"ratio":>7} {"target":>7}  values (jaxvr / other)')
  for name, row in rows.items():
    if 'other_s' not in row:
      print(f'{name:8} {row["jaxvr_s"]:9.4f} {"-":>13} {"-":>9} {"-":>7} '
            f'{TARGETS[name]:6.0f}x  {row["jaxvr_value"]:.6f}')
      continue
    row['ratio'] = row['other_s'] / row['jaxvr_s']
    row['cpu_ratio'] = row['other_cpu_s'] / max(row['jaxvr_cpu_s'], 1e-9)
    ok = 'ok' if row['ratio'] >= TARGETS[name] else 'BELOW TARGET'
    print(f'{name:8} {row["jaxvr_s"]:9.4f} {row["other"]:>13} {row["other_s"]:9.4f} '
          f'{row["ratio"]:6.1f}x {TARGETS[name]:6.0f}x  {row["jaxvr_value"]:.6f} / '
          f'{row["other_value"]:.6f}  {ok} (CPU-time ratio {row["cpu_ratio"]:.1f}x; '
          f'precision jaxvr / other: {row["precision"]})')
  if args.json:
    files.write_text(args.json, json.dumps(
        {'clip': clip, 'shape': list(ref.shape), 'runs': args.runs,
         'warmup': args.warmup,
         'rows': rows}, indent=1))
  return 0


def _block(x):
  import jax
  return jax.block_until_ready(x)


if __name__ == '__main__':
  sys.exit(main())
