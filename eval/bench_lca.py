"""Convolutional sparse coding race on ``tests/fixtures/csc_race.npz``.

One 128x128 frame, 32 unit-norm 8x8 kernels, stride 1, VALID codes
``[32, 121, 121]``, lambda 0.1, ``F(a) = 1/2 ||x - Phi a||^2 + lam ||a||_1`` with
the known optimum F* (see :mod:`eval.csc_race`). Every solver starts from
a = 0; its clock stops at the first iterate whose relative gap
``(F - F*) / F*`` is at most the tolerance.

Solvers (:data:`SOLVERS`, name -> runner; ``--skip`` takes the keys):

* ``admm``: jaxvr ADMM (``jaxvr.lca.admm``: per-frequency Woodbury solve,
  relaxation 1.8, residual-balanced rho), float32;
* ``fista``: jaxvr FISTA with adaptive restart (``jaxvr.lca.fista``),
  float32, including its power iteration for the step size;
* ``sporco``: SPORCO ``ConvBPDN`` (ADMM, class defaults, ``FastSolve``), if
  installed, with an ``L1Weight`` that forces the circularly wrapping codes
  to zero so it solves the same linear problem; float64 (SPORCO computes in
  float64 only);
* ``scico``: SCICO ``AcceleratedPGM`` (plain FISTA, step 1/L) with SCICO's
  convolution operator, float32, run by ``eval/scico_csc.py`` in the
  interpreter given by ``--scico-python`` (SCICO pins its own jax);
* ``numpy``: numpy FISTA with adaptive restart on numpy FFTs (step 1/L),
  float32;
* ``lca``: jaxvr LCA (``jaxvr.lca.infer``, explicit Euler, dt/tau = 1/100,
  lca-pytorch's default tau = 100), float32;
* ``lcapt``: lca-pytorch's ``LCAConv2D`` step (``eval.torch_lca``: same
  tensors, Gram-form inhibition, tau = 100), float32, torch with
  ``--torch-threads`` threads; timed only after its codes match jaxvr LCA's
  over the first ``PORT_CHECK_STEPS`` steps. It follows the same dynamics
  as jaxvr LCA, so a run stopped by ``--lcapt-max-steps`` before the
  tolerance is extrapolated at its own seconds per step to jaxvr LCA's step
  count (and marked so).

Stopping rule, the same for all: the gap is checked after every iteration.
Competitors call :class:`eval.csc_race.GapClock` live (a float64 objective
of the current codes; the time of each check is subtracted from the
clock). jaxvr solvers run as one compiled ``lax.scan``, which cannot stop
early: the first step under each tolerance is read from a run that records
the objective after every step (``return_trace``; float32, so the codes at
that step are re-checked with the float64 objective and reported as
``gap_check``), then a run of exactly that many steps without the trace is
timed. Both ways exclude the checks from the time; jaxvr's compile time is
excluded too and reported separately, as is competitor set-up (solver
construction, FFT plans, SCICO's first two steps).

Usage:
  python -m eval.bench_lca [--tol 1e-3] [--scico-python PATH]
      [--lca-max-steps 25000] [--lcapt-max-steps 25000] [--json out.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import importlib.util
import json
import os
import pathlib
import subprocess
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

import jaxvr.lca as lca
from eval.csc_race import FftOp, GapClock, load, objective
from jaxvr import files

FIXTURE = pathlib.Path(__file__).resolve().parents[1] / 'tests' / 'fixtures'
SCICO_SCRIPT = pathlib.Path(__file__).resolve().parent / 'scico_csc.py'
DT_OVER_TAU = 0.01  # lca-pytorch's default tau = 100
PORT_CHECK_STEPS = 30
LCAPT = 'lca-pytorch LCAConv2D (torch port)'


class Skipped(Exception):
  """A solver cannot run here (missing package or interpreter)."""


def numpy_fista(p, tols, args):
  op = FftOp(p['kernels'], p['x'].shape[0], np.float32)
  x, lam = p['x'].astype(np.float32), np.float32(p['lam'])
  step = np.float32(1.0 / p['L'])
  a = np.zeros((p['kernels'].shape[0],) + x.shape, np.float32)
  z, t = a, 1.0
  clock = GapClock(p, tols)
  for it in range(1, args.fista_max_steps + 1):
    v = z - step * op.adjoint(op.synth(z) - x)
    a_new = np.sign(v) * np.maximum(np.abs(v) - step * lam, 0)
    if np.vdot(z - a_new, a_new - a) > 0:
      t = 1.0
    t_next = 0.5 * (1.0 + np.sqrt(1.0 + 4.0 * t * t))
    z = a_new + np.float32((t - 1.0) / t_next) * (a_new - a)
    a, t = a_new, t_next
    if clock(it, a):
      break
  return clock.hits, {}


def sporco_admm(p, tols, args):
  try:
    import sporco
    from sporco.admm import cbpdn
  except ImportError as err:
    raise Skipped(f'not installed ({err}); pip install sporco') from err
  n = p['x'].shape[0]
  k, kh, _ = p['kernels'].shape
  weight = np.ones((n, n, 1, 1, 1))
  big = 10.0 * np.linalg.norm(p['x']) / p['lam']
  weight[n - kh + 1:] = big
  weight[:, n - kh + 1:] = big
  dictionary = np.ascontiguousarray(p['kernels'].transpose(1, 2, 0))

  def options(iters, callback=None):
    return cbpdn.ConvBPDN.Options({
        'Verbose': False, 'MaxMainIter': iters, 'RelStopTol': 0.0,
        'FastSolve': True, 'L1Weight': weight, 'Callback': callback})

  cbpdn.ConvBPDN(dictionary, p['x'], p['lam'], options(2)).solve()  # warm-up
  state = {}

  def callback(solver):
    codes = np.moveaxis(solver.Y[:, :, 0, 0, :], -1, 0)
    return state['clock'](solver.k + 1, codes)

  solver = cbpdn.ConvBPDN(dictionary, p['x'], p['lam'],
                          options(args.sporco_max_steps, callback))
  state['clock'] = GapClock(p, tols)
  solver.solve()
  return state['clock'].hits, {'sporco': sporco.__version__}


def scico_pgm(p, tols, args):
  """SCICO in its own interpreter (``eval/scico_csc.py``); JSON back."""
  if not args.scico_python:
    raise Skipped('no --scico-python interpreter given')
  cmd = [args.scico_python, str(SCICO_SCRIPT), str(args.fixtures),
         '--tols', ','.join(f'{t:g}' for t in tols),
         '--max-iters', str(args.fista_max_steps)]
  env = dict(os.environ, JAX_PLATFORMS='cpu')
  try:
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env,
                          check=False)
  except OSError as err:
    raise Skipped(f'{args.scico_python} cannot run: {err}') from err
  try:
    out = json.loads(proc.stdout.strip().splitlines()[-1])
  except (IndexError, json.JSONDecodeError):
    tail = (proc.stderr.strip().splitlines() or ['no output'])[-1]
    raise Skipped(f'{args.scico_python} failed: {tail}') from None
  if 'refused' in out:
    raise Skipped(out['refused'])
  hits = {float(t): h for t, h in out.pop('hits').items()}
  return hits, out


def torch_lca_port(p, tols, args):
  """lca-pytorch's step in torch, checked against jaxvr LCA, then raced."""
  if importlib.util.find_spec('torch') is None:
    raise Skipped("torch is not installed (pip install 'jaxvr[torch]')")
  import torch

  from eval.torch_lca import TorchLca

  torch.set_num_threads(args.torch_threads)
  make = lambda: TorchLca(p['x'], p['kernels'], lam=p['lam'],
                          tau=1.0 / DT_OVER_TAU)
  port = make()
  for _ in range(PORT_CHECK_STEPS):
    port.step()
  want = np.asarray(lca.infer(
      jnp.asarray(p['x'][None], jnp.float32),
      jnp.asarray(p['kernels'][:, None], jnp.float32), stride=1,
      lam=p['lam'], n_steps=PORT_CHECK_STEPS, dt_over_tau=DT_OVER_TAU))
  err = float(np.abs(port.codes() - want).max() / np.abs(want).max())
  if err > 1e-4:
    raise Skipped(f'port disagrees with jaxvr LCA after {PORT_CHECK_STEPS} '
                  f'steps (relative code error {err:.1e}); not timed')
  port = make()
  bar = tqdm(total=args.lcapt_max_steps, desc=LCAPT, unit='step',
             mininterval=10, leave=False)
  clock = GapClock(p, tols)
  it = 0
  for it in range(1, args.lcapt_max_steps + 1):
    port.step()
    if clock(it, port.codes()):
      break
    bar.update()
    if it % 500 == 0:
      bar.set_postfix(gap=f'{clock.last_gap:.2e}', refresh=False)
  bar.close()
  s_per_step = (time.perf_counter() - clock.start - clock.excluded) / it
  return clock.hits, {
      'torch': torch.__version__, 'threads': args.torch_threads,
      'port_check_rel_err': err, 'steps_run': it, 's_per_step': s_per_step,
      'gap_at_stop': clock.last_gap}


def _compiled(fn, *args):
  t0 = time.perf_counter()
  exe = jax.jit(fn).lower(*args).compile()
  return exe, time.perf_counter() - t0


def _timed(exe, *args):
  t0 = time.perf_counter()
  jax.block_until_ready(exe(*args))
  return time.perf_counter() - t0


# jaxvr solvers: name -> (solve(lam, n_steps, trace) -> f(x, w), offset)
# where energy[n] belongs to the codes after n + offset steps. Another jaxvr
# solver joins the race with an entry here and one in SOLVERS.
JAXVR_METHODS = {
    'lca': (lambda lam, n, trace: lambda x, w: lca.infer(
        x, w, stride=1, lam=lam, n_steps=n, dt_over_tau=DT_OVER_TAU,
        return_trace=trace), 0),
    'fista': (lambda lam, n, trace: lambda x, w: lca.fista(
        x, w, stride=1, lam=lam, n_steps=n, return_trace=trace), 1),
    'admm': (lambda lam, n, trace: lambda x, w: lca.admm(
        x, w, lam=lam, n_steps=n, return_trace=trace), 1),
}


def jaxvr_race(method, max_steps_arg, p, tols, args):
  """Steps and seconds (compile excluded) to each tolerance for a jaxvr solver."""
  solve, offset = JAXVR_METHODS[method]
  x = jnp.asarray(p['x'][None], jnp.float32)
  w = jnp.asarray(p['kernels'][:, None], jnp.float32)
  exe, _ = _compiled(solve(p['lam'], getattr(args, max_steps_arg), True),
                     x, w)
  _, energy = exe(x, w)
  gap = (np.asarray(energy, np.float64) - p['fstar']) / p['fstar']
  op = FftOp(p['kernels'], p['x'].shape[0])
  out = {}
  for tol in sorted(tols, reverse=True):
    hit = np.flatnonzero(gap <= tol)
    if not hit.size:
      continue
    n = int(hit[0]) + offset
    exe, compile_s = _compiled(solve(p['lam'], n, False), x, w)
    seconds = _timed(exe, x, w)
    check = objective(op, p['x'], p['lam'], np.asarray(exe(x, w)))
    out[tol] = {'iters': n, 'seconds': seconds, 'compile_s': compile_s,
                'gap_check': (check - p['fstar']) / p['fstar']}
  return out, {}


@dataclasses.dataclass(frozen=True)
class Solver:
  """One row of the race: display name, precision, runner, jaxvr or not.

  ``run(problem, tols, args)`` returns ``({tol: hit}, info)``: a hit per
  reached tolerance with ``iters`` and ``seconds``, and a dict of details
  (versions, checks); or it raises :class:`Skipped`.
  """
  name: str
  precision: str
  run: Callable
  jaxvr: bool = False


# Race order: the long LCA runs go last so the others run close in time.
SOLVERS = {
    'admm': Solver('jaxvr ADMM', 'float32', functools.partial(
        jaxvr_race, 'admm', 'admm_max_steps'), jaxvr=True),
    'fista': Solver('jaxvr FISTA', 'float32', functools.partial(
        jaxvr_race, 'fista', 'fista_max_steps'), jaxvr=True),
    'sporco': Solver('SPORCO ConvBPDN', 'float64 (SPORCO: float64 only)',
                     sporco_admm),
    'scico': Solver('SCICO AcceleratedPGM', 'float32', scico_pgm),
    'numpy': Solver('numpy FISTA', 'float32', numpy_fista),
    'lca': Solver('jaxvr LCA', 'float32', functools.partial(
        jaxvr_race, 'lca', 'lca_max_steps'), jaxvr=True),
    'lcapt': Solver(LCAPT, 'float32', torch_lca_port),
}


def lcapt_extrapolation(runs, info, tol):
  """``(seconds, steps run)`` of the lca-pytorch port to ``tol`` at its own
  s/step and jaxvr LCA's step count, if its run stopped before ``tol``."""
  lca_hit = runs.get('jaxvr LCA', {}).get(tol)
  if LCAPT not in runs or tol in runs[LCAPT] or not lca_hit:
    return None
  return info[LCAPT]['s_per_step'] * lca_hit['iters'], info[LCAPT][
      'steps_run']


def print_table(runs, precision, tol):
  print(f'\nseconds to relative gap {tol:g} (checks and compile excluded), '
        'from a = 0:')
  print(f'{"solver":36s} {"precision":31s} {"iters":>7s} {"seconds":>9s} '
        f'{"compile s":>10s}')
  for name, r in runs.items():
    hit = r.get(tol)
    if not hit:
      print(f'{name:36s} {precision[name]:31s} {"-":>7s} {"not reached":>9s}')
      continue
    comp = hit.get('compile_s')
    comp = f'{comp:10.1f}' if comp is not None else f'{"-":>10s}'
    print(f'{name:36s} {precision[name]:31s} {hit["iters"]:7d} '
          f'{hit["seconds"]:9.2f} {comp}')


def ratios_vs_fastest_jaxvr(runs, info, tol) -> dict[str, float]:
  """Every competitor's seconds over the fastest jaxvr solver's."""
  jaxvr_names = {s.name for s in SOLVERS.values() if s.jaxvr}
  reached = {n: r[tol]['seconds'] for n, r in runs.items() if tol in r}
  jax_times = {n: t for n, t in reached.items() if n in jaxvr_names}
  if not jax_times:
    return {}
  best = min(jax_times, key=jax_times.get)
  print(f'\nfastest jaxvr solver: {best} ({jax_times[best]:.2f} s)')
  ratios = {}
  for name in runs:
    if name in jaxvr_names:
      continue
    if name in reached:
      ratios[name] = reached[name] / jax_times[best]
      print(f'  {name} / jaxvr best = {ratios[name]:.2f}x')
    elif (extra := lcapt_extrapolation(runs, info, tol)) is not None:
      label = f'{name} (extrapolated from {extra[1]} steps)'
      ratios[label] = extra[0] / jax_times[best]
      print(f'  {label}: {extra[0]:.0f} s / jaxvr best = '
            f'{ratios[label]:.1f}x')
  return ratios


def lca_per_step(runs, info, tol) -> dict[str, float]:
  """Seconds per LCA step of jaxvr (run to ``tol``) and of the port."""
  out = {}
  hit = runs.get('jaxvr LCA', {}).get(tol)
  if hit:
    out['jaxvr LCA'] = hit['seconds'] / hit['iters']
  if LCAPT in info:
    out[LCAPT] = info[LCAPT]['s_per_step']
  if len(out) == 2:
    a, b = out.values()
    print(f'LCA seconds per step: jaxvr {a * 1e3:.2f} ms, lca-pytorch port '
          f'{b * 1e3:.1f} ms -> {b / a:.1f}x')
  return out


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--fixtures', type=pathlib.Path, default=FIXTURE)
  parser.add_argument('--tol', type=float, default=1e-3)
  parser.add_argument('--lca-max-steps', type=int, default=25000)
  parser.add_argument('--lcapt-max-steps', type=int, default=25000)
  parser.add_argument('--fista-max-steps', type=int, default=3000)
  parser.add_argument('--admm-max-steps', type=int, default=1000)
  parser.add_argument('--sporco-max-steps', type=int, default=600)
  parser.add_argument('--scico-python', default=None,
                      help='python interpreter with scico (runs SCICO)')
  parser.add_argument('--torch-threads', type=int, default=2)
  parser.add_argument('--skip', nargs='*', default=[], choices=list(SOLVERS))
  parser.add_argument('--json', type=pathlib.Path, default=None)
  args = parser.parse_args(argv)
  p = load(args.fixtures)
  tols = (1e-2, args.tol)
  results = {'tol': args.tol, 'jax': jax.__version__,
             'devices': str(jax.devices()), 'loadavg_start': os.getloadavg()}
  print(f'load average at start: {os.getloadavg()[0]:.1f} '
        f'({os.cpu_count()} CPUs)', flush=True)
  runs, info, precision = {}, {}, {}

  def save():  # after every solver, so a long run that dies leaves its rows
    results['runs'] = {k: {f'{t:g}': v for t, v in r.items()}
                       for k, r in runs.items()}
    results.update(precision=precision, info=info,
                   loadavg_end=os.getloadavg())
    if args.json:
      files.write_text(args.json, json.dumps(results, indent=1, default=float))

  for key, solver in SOLVERS.items():
    if key in args.skip:
      continue
    try:
      runs[solver.name], info[solver.name] = solver.run(p, tols, args)
    except Skipped as why:
      print(f'{solver.name} skipped: {why}', flush=True)
      continue
    precision[solver.name] = solver.precision
    print(solver.name, {f'{t:g}': h for t, h in runs[solver.name].items()},
          flush=True)
    save()
  print_table(runs, precision, args.tol)
  if 'SCICO AcceleratedPGM' in info:
    sc = info['SCICO AcceleratedPGM']
    print(f'SCICO solves the same problem: operator vs FFT synthesis '
          f'{sc["operator_rel_err"]:.1e}; at its stop its own objective '
          f'{sc["scico_objective_at_stop"]:.4f}, float64 F '
          f'{sc["fstar"] * (1 + sc["gap_at_stop"]):.4f} (F* {sc["fstar"]:.4f})')
  results['ratios_vs_fastest_jaxvr'] = ratios_vs_fastest_jaxvr(
      runs, info, args.tol)
  results['lca_s_per_step'] = lca_per_step(runs, info, args.tol)
  save()
  print(f'load average at end: {os.getloadavg()[0]:.1f}')


if __name__ == '__main__':
  main()
