r"""Trains the sparse-pixel video GAN (or a No-Mask-Gen baseline).

  python -m train.sparse_gan --config=jaxvr/configs/sparse_gan.py \
      --workdir=runs/sparse_gan --config.data.clips_dir=path/to/videos

  python -m train.sparse_gan --config=jaxvr/configs/sparse_gan.py:random5 \
      --workdir=runs/no_mask_gen_5 --config.data.clips_dir=path/to/videos

``--export=DIR`` also writes the final generator parameters and the config
(``jaxvr.sparsegan.inference.load`` reads them; ``--export_dtype=float16``
stores them at half the size, as the bundled weights are). Running the same command
again resumes from the latest checkpoint in ``--workdir`` (with a
changed config only given ``--config.allow_config_change=True``). SIGTERM saves a
checkpoint and exits cleanly without exporting. Multi-host: start the same command on every
process with ``JAXVR_DISTRIBUTED=1`` (plus ``JAX_COORDINATOR_ADDRESS``,
``JAX_NUM_PROCESSES`` and ``JAX_PROCESS_ID`` outside SLURM and Cloud TPU)
and one shared ``--workdir``; see the README's "Many hosts" section.
"""

from absl import app, flags
from ml_collections import config_flags

import train
from jaxvr import sharding

_WORKDIR = flags.DEFINE_string('workdir', None, 'Run folder (checkpoints, '
                               'metrics.jsonl, density.jsonl, config.json).',
                               required=True)
_EXPORT = flags.DEFINE_string(
    'export', None, 'If set, also write the final generator parameters and '
    'the config here.')
_EXPORT_DTYPE = flags.DEFINE_enum(
    'export_dtype', None, ['float16', 'bfloat16', 'float32'],
    'Store the exported parameters in this dtype (float16 halves a '
    'bundle; loading restores float32). Default: the training dtype.')
_CONFIG = config_flags.DEFINE_config_file(
    'config', None, 'Trainer config, e.g. jaxvr/configs/sparse_gan.py:smoke.',
    lock_config=True)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  sharding.maybe_initialize_distributed()
  # Imported after the distributed runtime is up.
  from jaxvr.training import data, loop, sparse_gan
  loop.quiet_library_logs()
  result = sparse_gan.run(_CONFIG.value, _WORKDIR.value)

  def export():
    sparse_gan.export_params(_EXPORT.value, result, _CONFIG.value,
                             dtype=_EXPORT_DTYPE.value)
    # Every process takes part in the Orbax save above; a plain
    # file has one writer.
    if sharding.is_main_process():
      data.write_training_record(_EXPORT.value, _CONFIG.value.data,
                                 result.step)

  loop.finish(result, export if _EXPORT.value else None, 'sparse_gan')


if __name__ == '__main__':
  flags.mark_flag_as_required('config')
  train.run(main)
