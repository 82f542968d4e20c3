"""Table, benchmark and memory scripts over the library (``python -m eval.x``)."""

import sys
from collections.abc import Callable

from jaxvr import errors


def run_or_exit(run: Callable[[], None], prog: str) -> None:
  """Calls ``run()``; bad input (a jaxvr error) ends the script with one line
  on stderr and exit status 2 instead of a traceback."""
  try:
    run()
  except errors.JaxvrError as err:
    print(f'{prog}: error: {err}', file=sys.stderr)
    sys.exit(2)
