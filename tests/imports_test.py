"""Imports have no global side effects and pull in only what they need."""

import os
import re
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


def test_video_io_and_ffmpeg_do_not_import_codecs():
  code = ('import sys; import jaxvr.video.io, jaxvr.video.ffmpeg; '
          "assert 'jaxvr.codecs' not in sys.modules, 'video imports codecs'; "
          'import jaxvr.codecs as c, jaxvr.video.ffmpeg as f; '
          'assert c.encode_file is f.encode_file')
  _assert_runs(code, JAX_PLATFORMS='cpu')


# Ways to start a process: imports and calls of subprocess and
# imageio_ffmpeg (which starts ffmpeg itself), and os.system & co.
_PROCESS_STARTS = re.compile(
    r'^\s*(import|from)\s+(subprocess|imageio_ffmpeg)\b'
    r'|\b(subprocess|imageio_ffmpeg)\.\w'
    r'|\bos\.(system|popen|exec\w*|spawn\w*|posix_spawn\w*)\(')


def test_only_the_ffmpeg_module_starts_processes(library_lines):
  home = 'jaxvr/video/ffmpeg.py'
  # The CSC race runs SCICO in the interpreter that has it (another jax).
  allowed = {home, 'eval/bench_lca.py'}
  offenders = [f'{path}:{n}: {line.strip()}'
               for path, n, line in library_lines
               if path not in allowed and _PROCESS_STARTS.search(line)]
  assert not offenders, 'run ffmpeg through jaxvr.video.ffmpeg:\n' + '\n'.join(
      offenders)
  assert any(_PROCESS_STARTS.search(line)
             for path, _, line in library_lines if path == home)
  # The pattern does catch the forms it is meant to, and not prose.
  for bad in ('import subprocess', 'from subprocess import run',
              'subprocess.run(cmd)', '  import imageio_ffmpeg',
              'imageio_ffmpeg.read_frames(p)', "os.system('ffmpeg')",
              'os.popen(cmd)', 'os.execvp(a, b)'):
    assert _PROCESS_STARTS.search(bad), bad
  for good in ('a library that writes by path (a subprocess, say)',
               '# ffmpeg runs as a subprocess', 'ffmpeg.run(args)'):
    assert not _PROCESS_STARTS.search(good), good
