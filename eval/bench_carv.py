r"""Speed of CARV significance: vmapped mask batches vs one mask at a time.

  python -m eval.bench_carv [--n_samples 500] [--batch_sizes 2,8,32]
      [--model DIR | --random_init] [--repeats 2] [--json out.json]

The bench config: 16x112x112 clips, 2x16x16 tubelets, encoder 192 wide / 4
deep / 3 heads, decoder 128 / 2 / 4, cls token and separable positional
tables, ``pred_t_dim`` 8, ``norm_pix_loss``, mask ratio 0.98, 500 masks
(the bundled default model has exactly this shape and is used when present;
``--random_init`` uses fresh weights).

Measured, compile time excluded, best of ``--repeats``:

* the vmapped path, ``jaxvr.carv.estimate_significance``: the patch
  embedding and loss target once per video, then batches of masks through
  one jitted scan (at each batch size of ``--batch_sizes``);
* a per-sample loop of the same model, as the released code runs it: the
  full official forward (patch embedding and target recomputed) for one
  mask at a time, from Python;
* the ratio, and the achieved FLOP/s: FLOPs per mask from XLA's cost
  analysis of the compiled one-mask forward, divided by the time per mask;
* the bfloat16 path (same weights, ``dtype='bfloat16'``): time per mask and
  the Spearman rank correlation of its maps (both estimators) with float32
  for the same masks.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxvr import carv, files, stmae
from jaxvr.carv.significance import sample_noise
from jaxvr.errors import CheckpointError
from jaxvr.stmae.forward import _from_tokens, forward_unjitted

BENCH_CONFIG = dict(
    img_size=112, patch_size=16, in_chans=3, embed_dim=192, depth=4,
    num_heads=3, decoder_embed_dim=128, decoder_depth=2, decoder_num_heads=4,
    mlp_ratio=4.0, norm_pix_loss=True, num_frames=16, t_patch_size=2,
    pred_t_dim=8, sep_pos_embed=True, cls_embed=True)
RATIO = 0.98


def bench_video(config, seed: int = 0) -> jax.Array:
  """A smooth moving pattern clip, normalised (content does not change speed)."""
  t, h, w, _ = config.video_shape
  yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
  frames = [np.stack([np.sin(6 * xx + 0.3 * f + c) * np.cos(4 * yy - 0.2 * f)
                      for c in range(3)], -1) for f in range(t)]
  rng = np.random.default_rng(seed)
  video = np.stack(frames) + 0.1 * rng.standard_normal((t, h, w, 3))
  return jnp.asarray(video, jnp.float32)


def load_model(args):
  config = stmae.STMAEConfig(**BENCH_CONFIG)
  if not args.random_init:
    from jaxvr.carv.pipeline import load_default_model
    try:
      params, loaded = load_default_model(args.model)
      if dataclasses.replace(loaded, dtype='float32') == config:
        return params, config, 'trained'
      print(f'model config differs from the bench config: {loaded}')
    except CheckpointError as e:
      print(f'no trained model ({e}); using random weights')
  return stmae.init_params(config, jax.random.key(0)), config, 'random init'


def time_vmapped(params, config, video, key, n_samples, batch_size, repeats):
  run = (lambda: carv.significance_sums(
      params, config, video, key, n_samples=n_samples, mask_ratio=RATIO,
      batch_size=batch_size, progress=False))
  jax.block_until_ready(run())
  best = float('inf')
  for _ in range(repeats):
    t0 = time.perf_counter()
    sums = jax.block_until_ready(run())
    best = min(best, time.perf_counter() - t0)
  return best / n_samples, sums


def time_loop(params, config, video, key, n_samples, repeats):
  """One official forward per mask (embedding and target recomputed)."""
  noise = np.asarray(sample_noise(
      key, jnp.arange(n_samples), config.num_tokens))
  batch = video[None]
  jax.block_until_ready(stmae.forward(params, config, batch,
                                      noise=noise[:1], mask_ratio=RATIO))
  best = float('inf')
  for _ in range(repeats):
    t0 = time.perf_counter()
    for i in range(n_samples):
      out = stmae.forward(params, config, batch, noise=noise[i:i + 1],
                          mask_ratio=RATIO)
      jax.block_until_ready(out.loss)
    best = min(best, time.perf_counter() - t0)
  return best / n_samples


def flops_per_mask(params, config, video) -> tuple[float, float]:
  """XLA cost-analysis FLOPs: full one-mask forward, and the per-mask part."""
  keep = stmae.len_keep(config.num_tokens, RATIO)
  noise = jnp.zeros((1, config.num_tokens), jnp.float32)
  full = jax.jit(lambda p, v, n: forward_unjitted(
      p, config, v, n, RATIO).loss).lower(params, video[None], noise)
  tokens = stmae.encode_tokens(params, config, video[None])
  part = jax.jit(lambda p, t, n: _from_tokens(
      p, config, t, n, keep).loss).lower(params, tokens, noise)
  return tuple(float(c.compile().cost_analysis()['flops'])
               for c in (full, part))


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  p.add_argument('--n_samples', type=int, default=500)
  p.add_argument('--loop_samples', type=int, default=100,
                 help='masks timed in the per-sample loop')
  p.add_argument('--batch_sizes', default='2,8,32')
  p.add_argument('--repeats', type=int, default=2)
  p.add_argument('--model', default=None)
  p.add_argument('--random_init', action='store_true')
  p.add_argument('--json', default=None,
                 help='also write the results (ratios as fields) here')
  args = p.parse_args(sys.argv[1:] if argv is None else argv)
  params, config, origin = load_model(args)
  video = bench_video(config)
  key = jax.random.key(0)
  print(f'backend {jax.default_backend()}, {jax.device_count()} device(s), '
        f'weights: {origin}, {args.n_samples} masks at {RATIO}')
  flops_full, flops_part = flops_per_mask(params, config, video)
  print(f'FLOPs per mask (XLA cost analysis): full official forward '
        f'{flops_full / 1e6:.0f} M, per-mask part after the shared '
        f'embedding/target {flops_part / 1e6:.0f} M')

  results = {}
  for b in [int(s) for s in args.batch_sizes.split(',')]:
    sec, sums = time_vmapped(params, config, video, key, args.n_samples, b,
                             args.repeats)
    results[b] = (sec, sums)
    print(f'vmapped float32, batch {b:3d}: {sec * 1e3:7.2f} ms per mask, '
          f'{flops_part / sec / 1e9:6.1f} GFLOP/s')
  best_b = min(results, key=lambda b: results[b][0])
  best, sums32 = results[best_b]
  loop = time_loop(params, config, video, key, args.loop_samples,
                   args.repeats)
  print(f'per-sample loop float32 : {loop * 1e3:7.2f} ms per mask, '
        f'{flops_full / loop / 1e9:6.1f} GFLOP/s')
  print(f'ratio loop / vmapped (batch {best_b}): {loop / best:.2f}x')

  cfg16 = dataclasses.replace(config, dtype='bfloat16')
  sec16, sums16 = time_vmapped(params, cfg16, video, key, args.n_samples,
                               best_b, args.repeats)
  print(f'vmapped bfloat16, batch {best_b:3d}: {sec16 * 1e3:7.2f} ms per mask')
  spearman = {}
  for est in carv.ESTIMATORS:
    a = carv.significance_from_sums(sums32, est, config.grid, args.n_samples)
    b = carv.significance_from_sums(sums16, est, config.grid, args.n_samples)
    spearman[est] = float(carv.spearman(a, b))
    print(f'Spearman bfloat16 vs float32 ({est}): {spearman[est]:.4f}')
  if args.json:
    files.write_json(args.json, {
        'backend': jax.default_backend(), 'weights': origin,
        'n_samples': args.n_samples, 'mask_ratio': RATIO,
        'flops_per_mask': {'full_forward': flops_full,
                           'after_shared_embedding': flops_part},
        'vmapped_f32_ms_per_mask': {str(b): results[b][0] * 1e3
                                    for b in results},
        'best_batch': best_b,
        'loop_f32_ms_per_mask': loop * 1e3,
        'ratio_loop_vs_vmapped': loop / best,
        'vmapped_bf16_ms_per_mask': sec16 * 1e3,
        'spearman_bf16_vs_f32': spearman})
  return 0


if __name__ == '__main__':
  sys.exit(main())
