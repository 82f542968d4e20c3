"""Imports have no global side effects and pull in only what they need."""

import os
import subprocess
import sys


def _assert_runs(code: str, **env) -> None:
  """Runs ``code`` in a fresh interpreter; fails with its stderr."""
  proc = subprocess.run([sys.executable, '-c', code], capture_output=True,
                        text=True, check=False, env={**os.environ, **env})
  assert proc.returncode == 0, proc.stderr


def test_figure_modules_leave_pyplot_and_the_backend_alone():
  code = ('import matplotlib, sys; before = matplotlib.get_backend(); '
          'import jaxvr.report.plots, jaxvr.carv.figures, '
          'jaxvr.training.curves; '
          "assert 'matplotlib.pyplot' not in sys.modules; "
          'assert matplotlib.get_backend() == before')
  _assert_runs(code, MPLBACKEND='svg')


def test_importing_the_checkpoint_module_leaves_orbax_alone():
  code = ('import jax, orbax.checkpoint as ocp; '
          'get = ocp.type_handlers.get_type_handler; '
          'before = get(jax.Array); '
          'import jaxvr.checkpoint as c; '
          'assert get(jax.Array) is before; '
          'c._register_array_handler(); '
          'assert get(jax.Array) is not before')
  _assert_runs(code, JAX_PLATFORMS='cpu')


def test_methods_import_without_training_or_orbax():
  code = ('import sys; '
          'import jaxvr.carv, jaxvr.carv.pipeline, jaxvr.sparsegan, '
          'jaxvr.sparsegan.inference, jaxvr.reducers, jaxvr.lca, jaxvr.stmae; '
          "loaded = [m for m in ('orbax.checkpoint', 'jaxvr.training') "
          'if m in sys.modules]; '
          'assert not loaded, loaded; '
          'import jaxvr.training.sharding as old, jaxvr.sharding as new; '
          'assert old is new')
  _assert_runs(code, JAX_PLATFORMS='cpu')


def test_sparse_gan_inference_leaves_the_training_step_alone():
  step = 'jaxvr.training.sparse_gan_step'
  code = ('import sys; '
          'import jaxvr.sparsegan, jaxvr.sparsegan.inference; '
          f"loaded = [m for m in ('optax', 'jaxvr.training', {step!r}) "
          'if m in sys.modules]; '
          'assert not loaded, loaded; '
          'import jaxvr.training.sparse_gan; '
          f'assert {step!r} in sys.modules')
  _assert_runs(code, JAX_PLATFORMS='cpu')


def test_the_solvers_import_without_sparse_mp4():
  code = ('import sys; '
          'import jaxvr.lca, jaxvr.lca.figures; '
          "assert 'jaxvr.sparse_mp4' not in sys.modules; "
          'import jaxvr.sparse_mp4; '
          "assert 'jaxvr.lca.infer' in sys.modules")
  _assert_runs(code, JAX_PLATFORMS='cpu')
