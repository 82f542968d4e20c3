"""Training entry points, each run as ``python -m train.<name>``.

:func:`run` starts one under the same bad-input contract as the ``jaxvr``
command: a flag error, a config file that does not load or a jaxvr error is
reported on one line on stderr with exit status 2, never a traceback.
"""

import os
import sys

from absl import app, flags

from jaxvr import errors


def _fail(err: BaseException) -> None:
  name = os.path.splitext(os.path.basename(sys.argv[0]))[0]
  print(f'train.{name}: error: {errors.one_line(err)}', file=sys.stderr)
  sys.exit(2)


def _parse_flags(argv: list[str]) -> list[str]:
  try:
    return flags.FLAGS(argv)
  except flags.Error as err:
    _fail(err)


def run(main) -> None:
  """``absl.app.run(main)`` with one-line errors and exit status 2."""
  def guarded(argv):
    try:
      return main(argv)
    # OSError: ml_collections reports a config file that fails to load
    # when the config is first used.
    except (errors.JaxvrError, OSError, app.UsageError) as err:
      _fail(err)
  app.run(guarded, flags_parser=_parse_flags)
