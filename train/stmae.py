r"""Pre-trains an ST-MAE from scratch on a folder of videos.

  python -m train.stmae --config=jaxvr/configs/stmae.py \
      --workdir=runs/stmae --config.data.clips_dir=path/to/videos

  python -m train.stmae --config=jaxvr/configs/stmae.py:smoke \
      --workdir=runs/stmae_smoke

``--export=DIR`` also writes the final parameters and the model config
(``STMAEConfig`` fields) for shipping as default weights. Running the same
command again resumes from the latest checkpoint in ``--workdir`` (with a
changed config only given ``--config.allow_config_change=True``). SIGTERM
saves a checkpoint and exits cleanly without exporting. Multi-host: start the same command
on every process with ``JAXVR_DISTRIBUTED=1`` (plus
``JAX_COORDINATOR_ADDRESS``, ``JAX_NUM_PROCESSES`` and ``JAX_PROCESS_ID``
outside SLURM and Cloud TPU) and one shared ``--workdir``; see the README's
"Many hosts" section.
"""

from absl import app, flags
from ml_collections import config_flags

import train
from jaxvr import sharding

_WORKDIR = flags.DEFINE_string('workdir', None, 'Run folder (checkpoints, '
                               'metrics.jsonl, config.json).', required=True)
_EXPORT = flags.DEFINE_string(
    'export', None, 'If set, also write the final parameters and the model '
    'config here (jaxvr.checkpoint.load_params reads them).')
_CONFIG = config_flags.DEFINE_config_file(
    'config', None, 'Trainer config file, e.g. jaxvr/configs/stmae.py:smoke.',
    lock_config=True)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  sharding.maybe_initialize_distributed()
  # Imported after the distributed runtime is up.
  from jaxvr.training import checkpoint, data, loop, stmae
  loop.quiet_library_logs()
  result = stmae.run(_CONFIG.value, _WORKDIR.value)

  def export():
    checkpoint.save_params(
        _EXPORT.value, *stmae.export_params(result.state.params, _CONFIG.value))
    # Every process takes part in the Orbax save above; a plain
    # file has one writer.
    if sharding.is_main_process():
      data.write_training_record(_EXPORT.value, _CONFIG.value.data,
                                 result.step)

  loop.finish(result, export if _EXPORT.value else None, 'stmae')


if __name__ == '__main__':
  flags.mark_flag_as_required('config')
  train.run(main)
