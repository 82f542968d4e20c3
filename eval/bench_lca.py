"""Convolutional sparse coding race on ``tests/fixtures/csc_race.npz``.

One 128x128 frame, 32 unit-norm 8x8 kernels, stride 1, VALID codes
``[32, 121, 121]``, lambda 0.1, ``F(a) = 1/2 ||x - Phi a||^2 + lam ||a||_1`` with
the known optimum F*. Every solver starts from a = 0; the clock stops at the
first iterate whose relative gap ``(F - F*) / F*`` is at most the tolerance.

Solvers, all in this one process:

* jaxvr LCA (``jaxvr.lca.infer``, explicit Euler, dt/tau = 1/100 as
  lca-pytorch's default tau = 100), float32;
* jaxvr FISTA with adaptive restart (``jaxvr.lca.fista``), float32, including
  its power iteration for the step size;
* SPORCO ``ConvBPDN`` (ADMM, class defaults, ``FastSolve``), if installed,
  with an ``L1Weight`` that forces the circularly wrapping codes to zero so it
  solves the same linear problem;
* a numpy FISTA with adaptive restart on numpy FFTs (float64, step 1/L).

jaxvr times exclude compilation (ahead-of-time ``lower().compile()``, reported
separately): the number of steps to the tolerance is read from one run with
the energy trace, then a run of exactly that many steps without the trace is
timed. Competitor times exclude the objective evaluations used to detect the
tolerance (they are subtracted), as well as solver construction.

lca-pytorch is not on PyPI; its seconds per step (0.049 s, measured on this
machine class with torch 2.13 CPU) is read from the fixture's sidecar JSON.

Usage:
  python -m eval.bench_lca [--tol 1e-3] [--lca-max-steps 25000] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np

import jaxvr.lca as lca
from jaxvr import files

FIXTURE = pathlib.Path(__file__).resolve().parents[1] / 'tests' / 'fixtures'


def load(path: pathlib.Path) -> dict:
  d = np.load(path / 'csc_race.npz')
  meta = json.loads((path / 'csc_race.json').read_text())
  return {
      'x': d['image'], 'kernels': d['kernels'], 'lam': float(d['lam']),
      'fstar': float(d['Fstar']), 'L': float(d['lipschitz_L']),
      'lcapt_s_per_step': meta['timings']['lca_pytorch']['s_per_iter_quiet'],
  }


class FftOp:
  """Numpy zero-padded FFT operators; codes live on the 128x128 pixel grid."""

  def __init__(self, kernels, n):
    k, kh, kw = kernels.shape
    padded = np.zeros((k, n, n))
    padded[:, :kh, :kw] = kernels
    self.spec = np.fft.rfft2(padded)
    self.n = n
    self.keep = np.zeros((n, n), bool)
    self.keep[:n - kh + 1, :n - kw + 1] = True

  def synth(self, a):
    return np.fft.irfft2((self.spec * np.fft.rfft2(a)).sum(0), s=(self.n,) * 2)

  def adjoint(self, r):
    full = np.fft.irfft2(np.conj(self.spec) * np.fft.rfft2(r)[None],
                         s=(self.n,) * 2)
    return full * self.keep


class GapClock:
  """Wall clock to the first iterate under each tolerance, minus bookkeeping."""

  def __init__(self, op, x, lam, fstar, tols):
    self.op, self.x, self.lam, self.fstar = op, x, lam, fstar
    self.tols = sorted(tols, reverse=True)
    self.hits = {}
    self.excluded = 0.0
    self.start = time.perf_counter()

  def __call__(self, it, a) -> bool:
    t0 = time.perf_counter()
    r = self.x - self.op.synth(a)
    f = 0.5 * float((r * r).sum()) + self.lam * float(np.abs(a).sum())
    gap = (f - self.fstar) / self.fstar
    for tol in self.tols:
      if tol not in self.hits and gap <= tol:
        self.hits[tol] = {'iters': it, 'seconds': t0 - self.start - self.excluded}
    self.excluded += time.perf_counter() - t0
    return len(self.hits) == len(self.tols)


def numpy_fista(p, tols, max_iters):
  op = FftOp(p['kernels'], p['x'].shape[0])
  x, lam, step = p['x'], p['lam'], 1.0 / p['L']
  clock = GapClock(op, x, lam, p['fstar'], tols)
  a = np.zeros((p['kernels'].shape[0],) + x.shape)
  z, t = a, 1.0
  for it in range(1, max_iters + 1):
    v = z - step * op.adjoint(op.synth(z) - x)
    a_new = np.sign(v) * np.maximum(np.abs(v) - step * lam, 0.0)
    if np.vdot(z - a_new, a_new - a) > 0:
      t = 1.0
    t_next = 0.5 * (1.0 + np.sqrt(1.0 + 4.0 * t * t))
    z = a_new + (t - 1.0) / t_next * (a_new - a)
    a, t = a_new, t_next
    if clock(it, a):
      break
  return clock.hits


def sporco_admm(p, tols, max_iters):
  from sporco.admm import cbpdn
  n = p['x'].shape[0]
  k, kh, _ = p['kernels'].shape
  op = FftOp(p['kernels'], n)
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
                          options(max_iters, callback))
  state['clock'] = GapClock(op, p['x'], p['lam'], p['fstar'], tols)
  solver.solve()
  return state['clock'].hits


def _compiled(fn, *args):
  t0 = time.perf_counter()
  exe = jax.jit(fn).lower(*args).compile()
  return exe, time.perf_counter() - t0


def _timed(exe, *args, repeats=1):
  best = np.inf
  for _ in range(repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(exe(*args))
    best = min(best, time.perf_counter() - t0)
  return best


def jaxvr_solver(name, p, tols, max_steps, repeats):
  """Steps and seconds (compile excluded) to each tolerance for a jaxvr solver."""
  x = jnp.asarray(p['x'][None], jnp.float32)
  w = jnp.asarray(p['kernels'][:, None], jnp.float32)
  lam = p['lam']

  def solve(n, trace):
    if name == 'lca':
      return lambda x, w: lca.infer(x, w, stride=1, lam=lam, n_steps=n,
                                    dt_over_tau=0.01, return_trace=trace)
    return lambda x, w: lca.fista(x, w, stride=1, lam=lam, n_steps=n,
                                  return_trace=trace)

  exe, _ = _compiled(solve(max_steps, True), x, w)
  _, energy = exe(x, w)
  gap = (np.asarray(energy, np.float64) - p['fstar']) / p['fstar']
  # LCA's energy[n] belongs to the codes after n steps, FISTA's to n + 1.
  offset = 0 if name == 'lca' else 1
  out = {}
  for tol in sorted(tols, reverse=True):
    hit = np.flatnonzero(gap <= tol)
    if not hit.size:
      out[tol] = None
      continue
    n = int(hit[0]) + offset
    exe, compile_s = _compiled(solve(n, False), x, w)
    seconds = _timed(exe, x, w, repeats=repeats)
    codes = np.asarray(exe(x, w), np.float64)
    check = float(lca.objective(x, w, codes.astype(np.float32),
                                stride=1, lam=lam))
    out[tol] = {'iters': n, 'seconds': seconds, 'compile_s': compile_s,
                'gap_check': (check - p['fstar']) / p['fstar']}
  return out


def lca_seconds_per_step(p, n=100, repeats=5):
  x = jnp.asarray(p['x'][None], jnp.float32)
  w = jnp.asarray(p['kernels'][:, None], jnp.float32)
  fn = lambda x, w: lca.infer(x, w, stride=1, lam=p['lam'], n_steps=n,
                              dt_over_tau=0.01)
  exe, compile_s = _compiled(fn, x, w)
  return _timed(exe, x, w, repeats=repeats) / n, compile_s


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--fixtures', type=pathlib.Path, default=FIXTURE)
  parser.add_argument('--tol', type=float, default=1e-3)
  parser.add_argument('--lca-max-steps', type=int, default=25000)
  parser.add_argument('--fista-max-steps', type=int, default=1500)
  parser.add_argument('--skip', nargs='*', default=[],
                      choices=['lca', 'fista', 'sporco', 'numpy'])
  parser.add_argument('--json', type=pathlib.Path, default=None)
  args = parser.parse_args(argv)
  p = load(args.fixtures)
  tols = (1e-2, args.tol)
  results = {'tol': args.tol, 'jax': jax.__version__,
             'devices': str(jax.devices()), 'loadavg_start': os.getloadavg()}
  print(f'load average at start: {os.getloadavg()[0]:.1f} '
        f'({os.cpu_count()} CPUs)', flush=True)

  sps, compile_s = lca_seconds_per_step(p)
  results['lca_s_per_step'] = sps
  results['lca_s_per_step_compile_s'] = compile_s
  results['lcapt_s_per_step_reference'] = p['lcapt_s_per_step']
  print(f'jaxvr LCA: {sps * 1e3:.2f} ms/step (compile {compile_s:.1f} s); '
        f'lca-pytorch reference {p["lcapt_s_per_step"] * 1e3:.0f} ms/step -> '
        f'{p["lcapt_s_per_step"] / sps:.1f}x faster (target >= 5x)', flush=True)

  runs = {}
  # The long LCA run goes last so that the other solvers run close in time.
  if 'fista' not in args.skip:
    runs['jaxvr FISTA'] = jaxvr_solver('fista', p, tols, args.fista_max_steps, 1)
    print('jaxvr FISTA', runs['jaxvr FISTA'], flush=True)
  if 'sporco' not in args.skip:
    try:
      runs['SPORCO ConvBPDN'] = sporco_admm(p, tols, 600)
      print('SPORCO', runs['SPORCO ConvBPDN'], flush=True)
    except ImportError as err:
      print(f'SPORCO skipped: not installed ({err}); pip install sporco')
  if 'numpy' not in args.skip:
    runs['numpy FISTA'] = numpy_fista(p, tols, args.fista_max_steps)
    print('numpy FISTA', runs['numpy FISTA'], flush=True)
  if 'lca' not in args.skip:
    runs['jaxvr LCA'] = jaxvr_solver('lca', p, tols, args.lca_max_steps, 1)
    print('jaxvr LCA', runs['jaxvr LCA'], flush=True)
    hit = runs['jaxvr LCA'].get(args.tol)
    if hit:
      long_sps = hit['seconds'] / hit['iters']
      results['lca_s_per_step_long_run'] = long_sps
      print(f'jaxvr LCA over the long run: {long_sps * 1e3:.2f} ms/step -> '
            f'{p["lcapt_s_per_step"] / long_sps:.1f}x faster than lca-pytorch',
            flush=True)
  results['runs'] = {k: {f'{t:g}': v for t, v in r.items()}
                     for k, r in runs.items()}

  tol = args.tol
  print(f'\nseconds to relative gap {tol:g} (compile excluded), from a = 0:')
  print(f'{"solver":18s} {"iters":>7s} {"seconds":>9s} {"compile s":>10s}')
  for name, r in runs.items():
    hit = r.get(tol)
    if hit is None:
      print(f'{name:18s} {"-":>7s} {"not reached":>9s}')
      continue
    comp = hit.get('compile_s')
    comp = f'{comp:10.1f}' if comp is not None else f'{"-":>10s}'
    print(f'{name:18s} {hit["iters"]:7d} {hit["seconds"]:9.2f} {comp}')
  jax_best = min((r[tol]['seconds'], n) for n, r in runs.items()
                 if n.startswith('jaxvr') and r.get(tol))
  print(f'\nfastest jaxvr solver: {jax_best[1]} ({jax_best[0]:.2f} s)')
  ratios = {}
  for name, r in runs.items():
    if not name.startswith('jaxvr') and r.get(tol):
      ratios[name] = r[tol]['seconds'] / jax_best[0]
      target = ' (target >= 2)' if name.startswith('SPORCO') else ''
      print(f'  {name} / jaxvr best = {ratios[name]:.2f}x{target}')
  if 'jaxvr LCA' in runs and runs['jaxvr LCA'].get(tol):
    lcapt = runs['jaxvr LCA'][tol]['iters'] * p['lcapt_s_per_step']
    ratios['lca-pytorch (extrapolated)'] = lcapt / jax_best[0]
    print(f'  lca-pytorch (extrapolated {lcapt:.0f} s) / jaxvr best = '
          f'{lcapt / jax_best[0]:.0f}x')
  results['ratios_vs_fastest_jaxvr'] = ratios
  results['loadavg_end'] = os.getloadavg()
  print(f'load average at end: {os.getloadavg()[0]:.1f}')
  if args.json:
    files.write_text(args.json, json.dumps(results, indent=1, default=float))


if __name__ == '__main__':
  main()
