r"""Trains the denoising bottleneck autoencoder (Sparse MP4's learned baseline).

  python -m train.autoencoder --config=jaxvr/configs/autoencoder.py \
      --workdir=runs/autoencoder --config.data.clips_dir=path/to/videos

Rerunning resumes from the latest checkpoint in ``--workdir`` (with a changed
config only given ``--config.allow_config_change=True``); ``--export`` writes
the final parameters as a weights folder usable by the reducer. SIGTERM
saves a checkpoint and exits cleanly without exporting.
"""

from absl import app, flags
from ml_collections import config_flags

import train
from jaxvr import sharding

_WORKDIR = flags.DEFINE_string('workdir', None, 'Run folder.', required=True)
_EXPORT = flags.DEFINE_string('export', None, 'Also save the final params here.')
_CONFIG = config_flags.DEFINE_config_file(
    'config', None, 'e.g. jaxvr/configs/autoencoder.py:smoke', lock_config=True)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  sharding.maybe_initialize_distributed()
  from jaxvr.training import autoencoder, checkpoint, data, loop
  loop.quiet_library_logs()
  result = autoencoder.run(_CONFIG.value, _WORKDIR.value)

  def export():
    checkpoint.save_params(_EXPORT.value, result.state.params, _CONFIG.value.model)
    # Every process takes part in the Orbax save above; a plain
    # file has one writer.
    if sharding.is_main_process():
      data.write_training_record(_EXPORT.value, _CONFIG.value.data,
                                 result.step)

  loop.finish(result, export if _EXPORT.value else None, 'autoencoder')


if __name__ == '__main__':
  flags.mark_flag_as_required('config')
  train.run(main)
