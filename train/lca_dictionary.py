r"""Learns the Sparse MP4 dictionary (3-frame kernels) from video clips.

  python -m train.lca_dictionary --config=jaxvr/configs/lca_dictionary.py \
      --workdir=runs/lca_dictionary --config.data.clips_dir=path/to/videos \
      --export=lca_dictionary.npz

Rerunning resumes from the latest checkpoint in ``--workdir`` (with a changed
config only given ``--config.allow_config_change=True``); ``--export`` writes
the final kernels ``[K, 3, kh, kw]`` (npz key ``kernels``), the format the
``sparse-mp4`` reducer loads; ``--figure`` also draws them. SIGTERM saves a
checkpoint and exits cleanly without exporting or drawing.
"""

from absl import app, flags
from ml_collections import config_flags

import train
from jaxvr import sharding

_WORKDIR = flags.DEFINE_string('workdir', None, 'Run folder.', required=True)
_EXPORT = flags.DEFINE_string('export', None, 'Also write the kernels to this .npz.')
_FIGURE = flags.DEFINE_string('figure', None, 'Also draw the kernels to this .png.')
_CONFIG = config_flags.DEFINE_config_file(
    'config', None, 'e.g. jaxvr/configs/lca_dictionary.py:smoke', lock_config=True)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  sharding.maybe_initialize_distributed()
  from jaxvr.training import data, lca_dictionary, loop
  loop.quiet_library_logs()
  result = lca_dictionary.run(_CONFIG.value, _WORKDIR.value)
  kernels = result.state.kernels

  def write_outputs():
    main = sharding.is_main_process()  # Plain files: one writer.
    if _EXPORT.value and main:
      lca_dictionary.export_kernels(_EXPORT.value, kernels, _CONFIG.value)
      data.write_training_record(_EXPORT.value, _CONFIG.value.data, result.step)
    if _FIGURE.value and main:
      from jaxvr.lca import figures
      figures.save_kernel_figure(_FIGURE.value, kernels)

  loop.finish(result, write_outputs if _EXPORT.value or _FIGURE.value else None,
              'lca_dictionary')


if __name__ == '__main__':
  flags.mark_flag_as_required('config')
  train.run(main)
