"""Importing figure modules has no global side effects."""

import os
import subprocess
import sys


def test_figure_modules_leave_pyplot_and_the_backend_alone():
  code = ('import matplotlib, sys; before = matplotlib.get_backend(); '
          'import jaxvr.report.plots, jaxvr.carv.figures, '
          'jaxvr.training.curves; '
          "assert 'matplotlib.pyplot' not in sys.modules; "
          'assert matplotlib.get_backend() == before')
  proc = subprocess.run([sys.executable, '-c', code], capture_output=True,
                        text=True, check=False,
                        env={**os.environ, 'MPLBACKEND': 'svg'})
  assert proc.returncode == 0, proc.stderr
