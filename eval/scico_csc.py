"""SCICO's AcceleratedPGM on the CSC race, timed like bench_lca's solvers.

Runs in any interpreter with numpy, jax and scico (it imports nothing from
jaxvr, whose jax pin SCICO's may contradict); ``eval.bench_lca
--scico-python PATH`` starts it and parses the JSON it prints:

  PATH eval/scico_csc.py FIXTURE_DIR [--tols 0.01,0.001] [--max-iters 3000]

The operator is SCICO's own: ``Sum(axis=0) @ CircularConvolve(kernels) @
Diagonal(valid)`` on codes ``[32, 128, 128]``, where ``valid`` is 1 on the
VALID code positions ``[0, 121)^2`` and 0 elsewhere. Starting from zero
codes, the gradient is zero off the VALID grid, so those codes stay zero and
the circular convolution never wraps: the problem is exactly the linear
race problem. Before timing, the operator is checked against the NumPy
FFT synthesis of ``csc_race`` on random VALID codes; at the stop, SCICO's
own objective ``f + g`` is reported next to the float64 one and F*.

Solver: ``AcceleratedPGM(SquaredL2Loss(x, A), lam * L1Norm(), L0=L)`` (FISTA
without restart, constant step ``1/L`` with the fixture's ``L``), float32.
Its iterations are driven with ``solver.step()`` (``solve()`` has no early
stop), each followed by ``block_until_ready`` and the shared
:class:`csc_race.GapClock` check, whose time is excluded; the first two
steps of a separate solver compile the step beforehand.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

if __package__:
  from eval import csc_race
else:  # run as a script by another interpreter: this folder is on sys.path
  import csc_race


def build(problem):
  """``(solver factory, operator, codes shape)`` of SCICO's PGM."""
  import jax.numpy as jnp
  from scico import functional, linop, loss
  from scico.optimize.pgm import AcceleratedPGM

  kernels = jnp.asarray(problem['kernels'], jnp.float32)
  n = problem['x'].shape[0]
  k, kh, kw = kernels.shape
  shape = (k, n, n)
  valid = np.zeros(shape, np.float32)
  valid[:, :n - kh + 1, :n - kw + 1] = 1
  op = (linop.Sum(shape, axis=0)
        @ linop.CircularConvolve(kernels, input_shape=shape, ndims=2)
        @ linop.Diagonal(jnp.asarray(valid)))
  f = loss.SquaredL2Loss(y=jnp.asarray(problem['x'], jnp.float32), A=op)
  g = problem['lam'] * functional.L1Norm()
  return (lambda: AcceleratedPGM(f, g, L0=problem['L'],
                                 x0=jnp.zeros(shape, jnp.float32)),
          op, shape)


def operator_error(op, problem, shape) -> float:
  """Relative difference of SCICO's synthesis from csc_race's on random codes."""
  import jax.numpy as jnp

  rng = np.random.default_rng(0)
  kh, kw = problem['kernels'].shape[1:]
  codes = rng.standard_normal((shape[0], shape[1] - kh + 1,
                               shape[2] - kw + 1))
  want = csc_race.FftOp(problem['kernels'], shape[1]).synth(
      csc_race.on_pixel_grid(codes, shape[1]))
  got = np.asarray(op(jnp.asarray(csc_race.on_pixel_grid(codes, shape[1]),
                                  jnp.float32)), np.float64)
  return float(np.abs(got - want).max() / np.abs(want).max())


def run(problem, tols, max_iters: int) -> dict:
  """Iterations and seconds to each tolerance, plus the checks."""
  import jax
  import scico

  make, op, shape = build(problem)
  err = operator_error(op, problem, shape)
  out = {'solver': 'SCICO AcceleratedPGM', 'scico': scico.__version__,
         'jax': jax.__version__, 'dtype': 'float32',
         'operator_rel_err': err}
  if err > 1e-5:
    out['refused'] = f'operator differs from the race problem by {err:.1e}'
    return out
  warm = make()
  for _ in range(2):
    warm.step()
  jax.block_until_ready(warm.x)
  solver = make()
  clock = csc_race.GapClock(problem, tols)
  it = 0
  for it in range(1, max_iters + 1):
    solver.step()
    jax.block_until_ready(solver.x)
    if clock(it, np.asarray(solver.x)):
      break
  out.update(
      iters_run=it, hits={f'{t:g}': h for t, h in clock.hits.items()},
      gap_at_stop=clock.last_gap, fstar=problem['fstar'],
      scico_objective_at_stop=float(solver.objective()))
  return out


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('fixtures')
  parser.add_argument('--tols', default='0.01,0.001')
  parser.add_argument('--max-iters', type=int, default=3000)
  args = parser.parse_args(argv)
  tols = [float(t) for t in args.tols.split(',')]
  result = run(csc_race.load(args.fixtures), tols, args.max_iters)
  print(json.dumps(result))
  return 0


if __name__ == '__main__':
  sys.exit(main())
