r"""Draws a run's training and validation curves to a PNG.

  python -m train.curves RUN_FOLDER --out curve.png --train_metric=loss \
      --val_metrics=psnr,dropped_psnr
"""

from absl import app, flags

import train

_OUT = flags.DEFINE_string('out', None, 'PNG to write.', required=True)
_TRAIN = flags.DEFINE_string('train_metric', 'loss',
                             'Metric of metrics.jsonl to draw.')
_VAL = flags.DEFINE_list('val_metrics', ['psnr'],
                         'Metrics of validation.jsonl to draw.')
_TITLE = flags.DEFINE_string('title', '', 'Figure title.')


def main(argv):
  if len(argv) != 2:
    raise app.UsageError('expected one run folder')
  from jaxvr.training import curves
  print(curves.plot_run(argv[1], _OUT.value, train_metric=_TRAIN.value,
                        val_metrics=_VAL.value, title=_TITLE.value))


if __name__ == '__main__':
  train.run(main)
