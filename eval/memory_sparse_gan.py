r"""Memory of one sparse-pixel GAN training step, from XLA's memory analysis.

Compiles (does not run) the full training step (critic and generator
updates) at the paper's size, T = 20 frames of 128x128, full width, for two
batch sizes and each memory setting, and reads XLA's compiled memory
analysis. Peak bytes are ``arguments + outputs - aliased + temporaries``
(the state is donated, so its outputs alias its inputs). Memory grows
linearly in B, so two batch sizes give the fixed part and the cost per clip,
and from those the number of clips that fit in a memory budget.

Settings (``--settings``, comma-separated):

* ``none``: all frames at once, nothing recomputed (the default config);
* ``remat``: every hourglass block recomputed in the backward pass
  (``model.remat``);
* ``chunkN``: the generators run the clip in time chunks of N frames with
  the ConvGRU state carried, each chunk recomputed in the backward pass
  (``model.frame_chunk = N``); ``chunkN+remat`` adds per-block remat.

Run::

  python -m eval.memory_sparse_gan [--batches=2,4] [--budget_gib=16] \
      [--settings=none,remat,chunk4,chunk1] [--frames=20] [--size=128] \
      [--width=1.0] [--json=out.json]

On a CPU host the analysis is of the CPU compilation; buffer assignment on
GPU is similar but not identical, so treat the result as an estimate. Per-
block remat alone saves little: the blocks still run on all B*T frames at
once, so one block's recomputed activations cover every frame. Chunking in
time keeps only the chunk inputs and ConvGRU states of all frames.
"""

import re
import time

import jax
from absl import app, flags

from eval import run_or_exit
from jaxvr import errors, files
from jaxvr.configs.sparse_gan import get_config
from jaxvr.sparsegan.models import build_models
from jaxvr.training import sparse_gan_step as ts

FLAGS = flags.FLAGS
flags.DEFINE_list('batches', ['2', '4'], 'Two batch sizes (clips) to compile.')
flags.DEFINE_list('settings', ['none', 'remat', 'chunk4', 'chunk1'],
                  'Memory settings: none, remat, chunkN, chunkN+remat.')
flags.DEFINE_float('budget_gib', 16.0, 'Device memory budget in GiB.')
flags.DEFINE_integer('frames', 20, 'Frames per clip (T).')
flags.DEFINE_integer('size', 128, 'Frame height and width.')
flags.DEFINE_float('width', 1.0, 'Width multiplier of all networks.')
flags.DEFINE_string('preset', 'paper', "Loss preset: 'paper' or 'robust'.")
flags.DEFINE_string('json', '', 'Optional path for the results as JSON.')

GIB = 2**30
_SETTING = re.compile(r'^(none|remat|chunk(\d+)(\+remat)?)$')


def parse_setting(name: str) -> tuple[int, bool]:
  """``'none' | 'remat' | 'chunkN' | 'chunkN+remat'`` -> (frame_chunk, remat)."""
  m = _SETTING.match(name)
  if not m or (m.group(2) is not None and int(m.group(2)) < 1):
    raise errors.ConfigError(f'--settings: expected none, remat, chunkN or '
                             f'chunkN+remat with N >= 1, got {name!r}')
  if m.group(2) is None:
    return 0, name == 'remat'
  return int(m.group(2)), m.group(3) is not None


def step_memory(batch: int, frame_chunk: int, remat: bool) -> dict:
  """Compiles the train step for ``batch`` clips; returns its memory stats."""
  cfg = get_config(FLAGS.preset)
  cfg.model.remat = remat
  cfg.model.frame_chunk = frame_chunk
  cfg.model.width_mult = FLAGS.width
  cfg.model.critic_width_mult = FLAGS.width
  cfg.data.frame_size = FLAGS.size
  cfg.data.num_frames = FLAGS.frames
  if FLAGS.size < 125:
    cfg.model.spatial_padding = 'SAME'
  models = build_models(cfg)
  state = jax.eval_shape(
      lambda k: ts.init_state(cfg, k, models), jax.random.key(0))
  batch_spec = jax.ShapeDtypeStruct(
      (batch, FLAGS.frames, FLAGS.size, FLAGS.size, 3), 'float32')
  step = ts.make_train_step(cfg, None, models)
  t0 = time.time()
  compiled = step.lower(state, batch_spec).compile()
  mem = compiled.memory_analysis()
  out = {
      'batch': batch,
      'argument': mem.argument_size_in_bytes,
      'output': mem.output_size_in_bytes,
      'alias': mem.alias_size_in_bytes,
      'temp': mem.temp_size_in_bytes,
      'compile_s': round(time.time() - t0, 1),
  }
  out['peak'] = out['argument'] + out['output'] - out['alias'] + out['temp']
  return out


def clips_that_fit(rows: list[dict], budget: float) -> tuple[float, float, int]:
  """Fixed bytes, bytes per clip and clips within ``budget`` (linear fit)."""
  (b0, m0), (b1, m1) = [(r['batch'], r['peak']) for r in rows[:2]]
  per_clip = (m1 - m0) / (b1 - b0)
  fixed = m0 - per_clip * b0
  return fixed, per_clip, int((budget - fixed) // per_clip)


def run() -> None:
  """Compiles every setting at both batch sizes; prints and saves the table."""
  batches = sorted({int(b) for b in FLAGS.batches})
  if len(batches) != 2 or batches[0] < 1:
    raise errors.ConfigError(f'--batches: expected two distinct positive '
                             f'batch sizes, got {FLAGS.batches}')
  settings = {name: parse_setting(name) for name in FLAGS.settings}
  budget = FLAGS.budget_gib * GIB
  results = []
  print(f'T={FLAGS.frames} {FLAGS.size}x{FLAGS.size} width={FLAGS.width} '
        f'preset={FLAGS.preset} backend={jax.default_backend()}')
  print('| setting | B | peak GiB | temp GiB | args GiB | '
        'GiB/clip | fixed GiB | clips in budget |')
  print('| --- | --- | --- | --- | --- | --- | --- | --- |')
  for name, (frame_chunk, remat) in settings.items():
    rows = [step_memory(b, frame_chunk, remat) for b in batches]
    fixed, per_clip, fit = clips_that_fit(rows, budget)
    for r in rows:
      print(f"| {name} | {r['batch']} | {r['peak'] / GIB:.2f} | "
            f"{r['temp'] / GIB:.2f} | {r['argument'] / GIB:.3f} | "
            f'{per_clip / GIB:.2f} | {fixed / GIB:.2f} | {fit} |', flush=True)
    results.append({'setting': name, 'frame_chunk': frame_chunk,
                    'remat': remat, 'rows': rows, 'fixed': fixed,
                    'per_clip': per_clip, 'clips_fit': fit})
  print(f'budget {FLAGS.budget_gib:g} GiB: ' + ', '.join(
      f"{r['setting']}: {r['clips_fit']} clips" for r in results))
  if FLAGS.json:
    files.write_json(FLAGS.json, {
        'frames': FLAGS.frames, 'size': FLAGS.size, 'width': FLAGS.width,
        'preset': FLAGS.preset, 'backend': jax.default_backend(),
        'budget_gib': FLAGS.budget_gib,
        'clips_per_budget': {r['setting']: r['clips_fit'] for r in results},
        'settings': results})


def main(argv):
  del argv
  run_or_exit(run, 'memory_sparse_gan')


if __name__ == '__main__':
  app.run(main)
