r"""Compile time and compiled memory of the ST-MAE training step.

Lowers and compiles (does not run) the full training step (forward, masked
loss, backward, AdamW update) of the ViT-L/16 Kinetics-400 configuration the
released weights use (:func:`jaxvr.stmae.pyslowfast_config`: 16x224x224
clips, 2x16x16 tubelets, 24 encoder blocks, a 512-wide 4-block decoder, mask
ratio 0.9) for each setting, and reports the trace-and-lower time, the
compile time and XLA's compiled memory analysis. Peak bytes are
``arguments + outputs - aliased + temporaries`` (the state is donated).

Settings (``--settings``, comma-separated): ``none``, ``dots``, ``full``
(per-block remat policy, ``config.remat``), each optionally prefixed with
``scan+`` (blocks as one ``nn.scan``, ``config.scan_blocks``).

Run::

  python -m eval.memory_stmae [--batch=8] \
      [--settings=none,dots,full,scan+none,scan+dots,scan+full] \
      [--json=out.json]

On a CPU host the analysis is of the CPU compilation; treat it as an
estimate of the GPU/TPU figure. Compile times depend on the machine's load.
Measured on CPU, per-block remat lowers the peak only with scanned blocks;
with the unscanned blocks the compiled peak does not go down.
"""

import dataclasses
import time

import jax
import jax.numpy as jnp
from absl import app, flags

from eval import run_or_exit
from jaxvr import errors, files, stmae
from jaxvr import sharding as shard_lib
from jaxvr.configs import stmae as stmae_configs
from jaxvr.training import stmae as trainer

FLAGS = flags.FLAGS
flags.DEFINE_integer('batch', 8, 'Clips per step.')
flags.DEFINE_list('settings', ['none', 'dots', 'full', 'scan+none',
                               'scan+dots', 'scan+full'],
                  'Settings: [scan+]none|dots|full.')
flags.DEFINE_string('json', '', 'Optional path for the results as JSON.')

GIB = 2**30


def parse_setting(name: str) -> tuple[str, bool]:
  """``'[scan+]none|dots|full'`` -> (remat policy, scan_blocks)."""
  scan = name.startswith('scan+')
  remat = name.removeprefix('scan+')
  if remat not in stmae.REMAT_POLICIES:
    raise errors.ConfigError(f'--settings: expected [scan+]none, dots or '
                             f'full, got {name!r}')
  return remat, scan


def step_cost(model_cfg: stmae.STMAEConfig, batch: int) -> dict:
  """Lowers and compiles the train step; returns times and memory."""
  config = stmae_configs.get_config()
  config.mask_ratio = 0.9
  config.data.batch_size = batch
  mesh = shard_lib.make_mesh(1)
  tx = trainer.make_optimizer(config)
  step = trainer.make_train_step(model_cfg, config, mesh)
  state = trainer.abstract_state(model_cfg, tx)
  video = jax.ShapeDtypeStruct((batch,) + model_cfg.video_shape, jnp.uint8)
  t0 = time.perf_counter()
  lowered = step.lower(state, {'video': video})
  t1 = time.perf_counter()
  mem = lowered.compile().memory_analysis()
  t2 = time.perf_counter()
  out = {'lower_s': round(t1 - t0, 1), 'compile_s': round(t2 - t1, 1),
         'argument': mem.argument_size_in_bytes,
         'output': mem.output_size_in_bytes,
         'alias': mem.alias_size_in_bytes, 'temp': mem.temp_size_in_bytes}
  out['peak'] = out['argument'] + out['output'] - out['alias'] + out['temp']
  return out


def run() -> None:
  """Measures every setting; prints a table and writes the JSON."""
  if FLAGS.batch < 1:
    raise errors.ConfigError(f'--batch: expected >= 1, got {FLAGS.batch}')
  settings = {name: parse_setting(name) for name in FLAGS.settings}
  base = stmae.pyslowfast_config()
  print(f'ViT-L/16 K400 (PySlowFast), batch {FLAGS.batch}, '
        f'backend={jax.default_backend()}')
  print('| setting | lower s | compile s | peak GiB | temp GiB | args GiB |')
  print('| --- | --- | --- | --- | --- | --- |')
  results = []
  for name, (remat, scan) in settings.items():
    cfg = dataclasses.replace(base, remat=remat, scan_blocks=scan)
    r = {'setting': name, 'remat': remat, 'scan_blocks': scan,
         **step_cost(cfg, FLAGS.batch)}
    results.append(r)
    print(f"| {name} | {r['lower_s']} | {r['compile_s']} | "
          f"{r['peak'] / GIB:.2f} | {r['temp'] / GIB:.2f} | "
          f"{r['argument'] / GIB:.2f} |", flush=True)
    if FLAGS.json:  # after every setting: partial results survive
      files.write_json(FLAGS.json, {
          'model': 'vit_l16_k400_pyslowfast', 'batch': FLAGS.batch,
          'backend': jax.default_backend(), 'settings': results})


def main(argv):
  del argv
  run_or_exit(run, 'memory_stmae')


if __name__ == '__main__':
  app.run(main)
