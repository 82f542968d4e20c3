r"""Speed of CARV significance: jaxvr's vmapped masks vs a loop and PyTorch.

  python -m eval.bench_carv [--n_samples 500] [--loop_samples 100]
      [--batch_sizes 2,8,32] [--model DIR | --random_init] [--repeats 2]
      [--torch_threads 2] [--json out.json]

The bench config: 16x112x112 clips, 2x16x16 tubelets, encoder 192 wide / 4
deep / 3 heads, decoder 128 / 2 / 4, cls token and separable positional
tables, ``pred_t_dim`` 8, ``norm_pix_loss``, mask ratio 0.98, 500 masks
(the bundled default model has exactly this shape and is used when present;
``--random_init`` uses fresh weights).

Every timed path computes the same losses per clip: the patch embedding and
the loss target once, then for every mask (the same masks everywhere: sample
``i`` uses the noise of ``fold_in(key, i)``) the encoder on the visible
tokens, the decoder, the per-token error and the masked mean, accumulated
into the per-chunk sums the significance maps are made from. Measured in
one run, compile time excluded: every contender is warmed up, then
``--repeats`` rounds time each contender once in turn (so the machine's
slow and fast phases fall on all of them alike), and each keeps its best
round:

* jaxvr vmapped, ``jaxvr.carv.significance_sums`` (the product path):
  batches of masks, several batches per compiled call (at each batch size
  of ``--batch_sizes``), with the decoder work every mask shares done once
  per clip (:mod:`jaxvr.stmae.many_masks`); its best batch is the reference
  of every ratio;
* jaxvr vmapped without the sharing: the plain forward
  (``forward_from_tokens``) for every mask, one compiled call per batch, at
  each batch size; ``plain / shared`` (best batch of each) isolates the
  algorithm;
* jaxvr per-mask loop: a Python loop calling a jitted one-mask function
  (``--loop_samples`` masks) that uses the same shared work, so
  ``loop / vmapped`` isolates batching;
* PyTorch, the official ST-MAE architecture (``eval.torch_stmae``) with the
  same weights (:func:`jaxvr.stmae.export_state_dict`), float32,
  ``torch.inference_mode()``, ``torch.set_num_threads(--torch_threads)``:
  one mask per forward (batch 1) and several (each of ``--batch_sizes``).
  It is timed only after it reproduces the official parity fixture
  (``tests/fixtures/stmae_parity_a.npz``) and jaxvr's per-mask losses on
  the bench clip; without torch installed it is skipped with one line;
* the achieved FLOP/s: FLOPs per mask from XLA's cost analysis of the
  compiled per-mask part (with and without the sharing), divided by the
  time per mask;
* the bfloat16 path (same weights, ``dtype='bfloat16'``): time per mask and
  the Spearman rank correlation of its maps (both estimators) with float32
  for the same masks.

Ratios (printed and ``--json`` fields): ``ratio_loop_vs_vmapped``,
``ratio_plain_vs_shared``, ``ratio_torch_batch1_vs_jaxvr`` and
``ratio_torch_best_vs_jaxvr`` (time per mask over jaxvr's best vmapped time
per mask; above 1 = jaxvr faster).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import importlib.util
import os
import pathlib
import sys
import time
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxvr import carv, files, stmae
from jaxvr.carv import significance
from jaxvr.carv.significance import sample_noise
from jaxvr.errors import CheckpointError
from jaxvr.stmae import many_masks
from jaxvr.stmae.forward import _from_tokens

BENCH_CONFIG = dict(
    img_size=112, patch_size=16, in_chans=3, embed_dim=192, depth=4,
    num_heads=3, decoder_embed_dim=128, decoder_depth=2, decoder_num_heads=4,
    mlp_ratio=4.0, norm_pix_loss=True, num_frames=16, t_patch_size=2,
    pred_t_dim=8, sep_pos_embed=True, cls_embed=True)
RATIO = 0.98
FIXTURES = pathlib.Path(__file__).resolve().parents[1] / 'tests' / 'fixtures'
# float32 agreement required before PyTorch is timed
PARITY_TOL = 1e-4
SUM_NAMES = ('loss_visible', 'n_visible', 'error_masked', 'n_masked',
             'loss_total')


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


class Contender(NamedTuple):
  """One timed path: ``run(n)`` processes ``n`` masks and returns its sums.

  ``warm`` masks are run once untimed first; they must cover two calls of
  the compiled step (the second sees the first one's outputs).
  """
  run: Callable[[int], object]
  n: int
  warm: int


def measure(contenders: dict, repeats: int) -> dict:
  """``{name: (best seconds per mask, last result)}``, timed interleaved.

  Every contender is warmed up, then ``repeats`` rounds each time every
  contender once, in turn, so slow and fast phases of the machine fall on
  all of them alike; each keeps its best round.
  """
  for c in contenders.values():
    c.run(c.warm)
  best = {name: (float('inf'), None) for name in contenders}
  for _ in range(repeats):
    for name, c in contenders.items():
      t0 = time.perf_counter()
      out = c.run(c.n)
      sec = (time.perf_counter() - t0) / c.n
      best[name] = (min(best[name][0], sec), out)
  return best


def vmapped(params, config, video, key, n_samples, batch_size) -> Contender:
  """The product path, ``carv.significance_sums``."""
  run = (lambda n: jax.block_until_ready(carv.significance_sums(
      params, config, video, key, n_samples=n, mask_ratio=RATIO,
      batch_size=batch_size, progress=False)))
  return Contender(run, n_samples, 2 * batch_size)


def _sums_of(sums, out: many_masks.MaskLosses):
  """``sums`` plus the per-chunk sums of a batch of masks (all counted)."""
  return jax.tree.map(jnp.add, sums, significance.chunk_sums(
      out, jnp.ones(out.mask.shape[:1], bool)))


def _shared(params, config, video):
  """The per-clip work of the product path (embedding, target, shared decoder)."""
  tokens = stmae.encode_tokens(params, config, video[None])
  return significance._shared_work(params, tokens, config=config)


@functools.partial(jax.jit, static_argnames=('config', 'keep'))
def _add_one_mask(sums, params, shared, key, i, *, config, keep):
  """``sums`` plus the per-chunk sums of mask ``i`` alone (no vmap)."""
  noise = sample_noise(key, i[None], config.num_tokens)
  return _sums_of(sums, many_masks.mask_losses(params, config, shared, noise,
                                               keep))


def loop(params, config, video, key, n_samples) -> Contender:
  """Python loop of one jitted call per mask, after the shared work."""
  keep = stmae.len_keep(config.num_tokens, RATIO)

  def run(n):
    shared = _shared(params, config, video)
    sums = significance.zero_sums(config.num_tokens)
    for i in range(n):
      sums = jax.block_until_ready(_add_one_mask(
          sums, params, shared, key, jnp.int32(i), config=config, keep=keep))
    return dict(zip(SUM_NAMES, sums, strict=True))

  return Contender(run, n_samples, 2)


@functools.partial(jax.jit, static_argnames=('config', 'batch', 'keep'))
def _add_plain_batch(sums, params, tokens, key, b, *, config, batch, keep):
  """``sums`` plus batch ``b`` of masks through the plain forward pass."""
  noise = sample_noise(key, b * batch + jnp.arange(batch), config.num_tokens)
  out = _from_tokens(params, config, tokens, noise, keep)
  return _sums_of(sums, many_masks.MaskLosses(out.mask, out.per_token_loss,
                                              out.sample_loss))


def plain(params, config, video, key, n_samples, batch) -> Contender:
  """Vmapped batches of the plain forward (no shared decoder work)."""
  keep = stmae.len_keep(config.num_tokens, RATIO)

  def run(n):
    tokens = stmae.encode_tokens(params, config, video[None])
    sums = significance.zero_sums(config.num_tokens)
    for b in range(-(-n // batch)):
      sums = _add_plain_batch(sums, params, tokens, key, jnp.int32(b),
                              config=config, batch=batch, keep=keep)
    return dict(zip(SUM_NAMES, jax.block_until_ready(sums), strict=True))

  return Contender(run, -(-n_samples // batch) * batch, 2 * batch)


def flops_per_mask(params, config, video) -> tuple[float, float]:
  """XLA cost-analysis FLOPs of one mask: ``(shared path, plain forward)``."""
  keep = stmae.len_keep(config.num_tokens, RATIO)
  noise = jnp.zeros((1, config.num_tokens), jnp.float32)
  tokens = stmae.encode_tokens(params, config, video[None])
  shared = _shared(params, config, video)
  fast = jax.jit(lambda p, s, n: many_masks.mask_losses(
      p, config, s, n, keep).sample_loss).lower(params, shared, noise)
  plain = jax.jit(lambda p, t, n: _from_tokens(
      p, config, t, n, keep).loss).lower(params, tokens, noise)
  return tuple(float(f.compile().cost_analysis()['flops'])
               for f in (fast, plain))


def map_agreement(sums_a, sums_b, config, n_samples) -> dict[str, float]:
  """Spearman of the maps of two sum sets, per estimator."""
  return {est: carv.spearman(
      carv.significance_from_sums(sums_a, est, config.grid, n_samples),
      carv.significance_from_sums(sums_b, est, config.grid, n_samples))
          for est in carv.ESTIMATORS}


def torch_contenders(params, config, video, key, n_samples, batch_sizes,
                     threads) -> tuple[dict, dict]:
  """The PyTorch ST-MAE at batch 1 and ``batch_sizes``, after its checks.

  Returns:
    ``(info, {batch: Contender})``; ``info`` holds ``{'refused': reason}``
    and no contender when the model disagrees with the parity fixture or
    with jaxvr on the bench clip (nothing is timed then).
  """
  import torch

  from eval import torch_stmae

  torch.set_num_threads(threads)
  errors = torch_stmae.parity_errors(FIXTURES)
  if max(errors.values()) > PARITY_TOL:
    return {'refused': f'differs from the official parity fixture: {errors}'}, {}
  model = torch_stmae.TorchSTMAE(config).eval().load_arrays(
      stmae.export_state_dict(params, config))
  keep = stmae.len_keep(config.num_tokens, RATIO)
  noise = torch.from_numpy(np.array(sample_noise(
      key, jnp.arange(n_samples), config.num_tokens)))
  clip = torch.as_tensor(np.asarray(video).transpose(3, 0, 1, 2)[None].copy())
  check = stmae.forward_from_tokens(
      params, config, stmae.encode_tokens(params, config, video[None]),
      noise=noise[:4].numpy(), mask_ratio=RATIO).sample_loss

  def run(batch, n):
    with torch.inference_mode():
      tokens, target = model.embed(clip), model.target(clip)
      sums = None
      for start in range(0, n, batch):
        stats = torch_stmae.batch_sums(model.mask_losses(
            tokens, target, noise[start:start + batch], keep))
        sums = stats if sums is None else tuple(
            a + b for a, b in zip(sums, stats, strict=True))
      return {k: v.numpy() for k, v in zip(SUM_NAMES, sums, strict=True)}

  with torch.inference_mode():
    first = model.mask_losses(model.embed(clip), model.target(clip),
                              noise[:4], keep)['sample_loss'].numpy()
  rel = float(np.abs(first - np.asarray(check)).max()
              / np.abs(np.asarray(check)).max())
  if rel > PARITY_TOL:
    return {'refused': f'per-mask losses differ from jaxvr by {rel:.2e}'}, {}
  info = {'version': torch.__version__, 'threads': threads,
          'parity_fixture_max_abs_err': errors,
          'bench_clip_loss_max_rel_diff': rel}
  batches = [1] + [b for b in batch_sizes if b != 1]
  return info, {b: Contender(functools.partial(run, b), n_samples, 2 * b)
                for b in batches}


def print_torch(res, jax_ms, flops) -> dict:
  """Prints the PyTorch rows and returns the ratio fields."""
  if 'refused' in res:
    print(f'PyTorch ST-MAE not timed: {res["refused"]}')
    return {}
  print(f'PyTorch {res["version"]} official ST-MAE, float32, '
        f'{res["threads"]} threads (parity fixture max error '
        f'{max(res["parity_fixture_max_abs_err"].values()):.1e}, bench-clip '
        f'losses within {res["bench_clip_loss_max_rel_diff"]:.1e}):')
  for b, ms in res['ms_per_mask'].items():
    print(f'  torch float32, batch {b:3d}: {ms:7.2f} ms per mask, '
          f'{flops / ms / 1e6:6.1f} GFLOP/s')
  print('  Spearman torch vs jaxvr maps: ' + ', '.join(
      f'{k} {v:.4f}' for k, v in res['spearman_vs_jaxvr'].items()))
  ratios = {
      'ratio_torch_batch1_vs_jaxvr': res['ms_per_mask'][1] / jax_ms,
      'ratio_torch_best_vs_jaxvr': (res['ms_per_mask'][res['best_batch']]
                                    / jax_ms)}
  print(f'ratio torch batch 1 / jaxvr: '
        f'{ratios["ratio_torch_batch1_vs_jaxvr"]:.2f}x; torch best batch '
        f'({res["best_batch"]}) / jaxvr: '
        f'{ratios["ratio_torch_best_vs_jaxvr"]:.2f}x')
  return ratios


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  p.add_argument('--n_samples', type=int, default=500)
  p.add_argument('--loop_samples', type=int, default=100,
                 help='masks timed in the per-mask loop')
  p.add_argument('--batch_sizes', default='2,4,8,32')
  p.add_argument('--repeats', type=int, default=2)
  p.add_argument('--model', default=None)
  p.add_argument('--random_init', action='store_true')
  p.add_argument('--torch_threads', type=int, default=2)
  p.add_argument('--json', default=None,
                 help='also write the results (ratios as fields) here')
  args = p.parse_args(sys.argv[1:] if argv is None else argv)
  batch_sizes = [int(s) for s in args.batch_sizes.split(',')]
  params, config, origin = load_model(args)
  video = bench_video(config)
  key = jax.random.key(0)
  print(f'backend {jax.default_backend()}, {jax.device_count()} device(s), '
        f'weights: {origin}, {args.n_samples} masks at {RATIO}; load '
        f'average {os.getloadavg()[0]:.1f} ({os.cpu_count()} CPUs)')
  flops, flops_plain = flops_per_mask(params, config, video)
  print(f'FLOPs per mask after the per-clip work (XLA cost analysis): '
        f'{flops / 1e6:.0f} M with the shared decoder work, '
        f'{flops_plain / 1e6:.0f} M for the plain forward')

  contenders = {('shared', b): vmapped(params, config, video, key,
                                      args.n_samples, b) for b in batch_sizes}
  contenders.update({('plain', b): plain(params, config, video, key,
                                         args.n_samples, b)
                     for b in batch_sizes})
  contenders[('loop', 1)] = loop(params, config, video, key, args.loop_samples)
  torch_info = None
  if importlib.util.find_spec('torch') is None:
    print("PyTorch ST-MAE skipped: torch is not installed "
          "(pip install 'jaxvr[torch]')")
  else:
    torch_info, torch_runs = torch_contenders(
        params, config, video, key, args.n_samples, batch_sizes,
        args.torch_threads)
    contenders.update({('torch', b): c for b, c in torch_runs.items()})
  print(f'timing {len(contenders)} contenders in {args.repeats} interleaved '
        f'rounds (best round each)')
  timed = measure(contenders, args.repeats)

  def times(kind):
    return {b: sec for (k, b), (sec, _) in timed.items() if k == kind}

  results = times('shared')
  for b, sec in results.items():
    print(f'jaxvr vmapped float32, batch {b:3d}: {sec * 1e3:7.2f} ms per '
          f'mask, {flops / sec / 1e9:6.1f} GFLOP/s')
  best_b = min(results, key=results.get)
  best, sums32 = results[best_b], timed[('shared', best_b)][1]
  plains = times('plain')
  for b, sec in plains.items():
    print(f'jaxvr vmapped float32, plain forward, batch {b:3d}: '
          f'{sec * 1e3:7.2f} ms per mask, {flops_plain / sec / 1e9:6.1f} '
          f'GFLOP/s')
  plain_b = min(plains, key=plains.get)
  plain_best = plains[plain_b]
  print(f'ratio plain (best batch {plain_b}) / shared (best batch {best_b}): '
        f'{plain_best / best:.2f}x')
  loop_sec = timed[('loop', 1)][0]
  print(f'jaxvr per-mask loop float32 : {loop_sec * 1e3:7.2f} ms per mask, '
        f'{flops / loop_sec / 1e9:6.1f} GFLOP/s')
  print(f'ratio loop / vmapped (batch {best_b}): {loop_sec / best:.2f}x')
  torch_res, torch_ratios = None, {}
  if torch_info is not None:
    torch_res = dict(torch_info)
    if 'refused' not in torch_info:
      ms = {b: sec * 1e3 for b, sec in times('torch').items()}
      torch_best = min(ms, key=ms.get)
      torch_res.update(ms_per_mask=ms, best_batch=torch_best,
                       spearman_vs_jaxvr=map_agreement(
                           timed[('torch', torch_best)][1], sums32, config,
                           args.n_samples))
    torch_ratios = print_torch(torch_res, best * 1e3, flops_plain)

  cfg16 = dataclasses.replace(config, dtype='bfloat16')
  sec16, sums16 = measure({'bf16': vmapped(params, cfg16, video, key,
                                           args.n_samples, best_b)},
                         args.repeats)['bf16']
  print(f'jaxvr vmapped bfloat16, batch {best_b:3d}: {sec16 * 1e3:7.2f} ms '
        f'per mask')
  spearman = map_agreement(sums16, sums32, config, args.n_samples)
  for est, rho in spearman.items():
    print(f'Spearman bfloat16 vs float32 ({est}): {rho:.4f}')
  print(f'load average at end: {os.getloadavg()[0]:.1f}')
  if args.json:
    files.write_json(args.json, {
        'backend': jax.default_backend(), 'weights': origin,
        'n_samples': args.n_samples, 'mask_ratio': RATIO,
        'loadavg': os.getloadavg(),
        'flops_per_mask_shared_path': flops,
        'flops_per_mask_plain_forward': flops_plain,
        'plain_f32_ms_per_mask': {str(b): v * 1e3 for b, v in plains.items()},
        'ratio_plain_vs_shared': plain_best / best,
        'vmapped_f32_ms_per_mask': {str(b): v * 1e3
                                    for b, v in results.items()},
        'best_batch': best_b,
        'loop_f32_ms_per_mask': loop_sec * 1e3,
        'ratio_loop_vs_vmapped': loop_sec / best,
        'torch': None if torch_res is None else {
            k: ({str(b): v for b, v in x.items()} if k == 'ms_per_mask'
                else x) for k, x in torch_res.items()},
        **torch_ratios,
        'vmapped_bf16_ms_per_mask': sec16 * 1e3,
        'spearman_bf16_vs_f32': spearman})
  return 0


if __name__ == '__main__':
  sys.exit(main())
