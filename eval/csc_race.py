"""The convolutional sparse coding race problem and its stopping rule.

NumPy only (no jaxvr import), so that ``eval/scico_csc.py`` can use it from
another interpreter. The problem (``tests/fixtures/csc_race.npz``): one
128x128 frame ``x``, 32 unit-norm 8x8 kernels, stride 1, VALID codes
``[32, 121, 121]`` (code ``(k, i, j)`` adds ``a[k, i, j] * kernels[k]`` to
pixels ``[i:i+8, j:j+8]``), ``F(a) = 1/2 ||x - Phi a||^2 + lam ||a||_1`` with
the known optimum ``F*``.

The stopping rule shared by every competitor is :class:`GapClock`: called
after every iteration with the current codes, it evaluates ``F`` in float64
and records, for each tolerance, the first iteration whose relative gap
``(F - F*) / F*`` is at most that tolerance and the wall time spent up to
it, minus the time of every evaluation so far.
"""

from __future__ import annotations

import pathlib
import time

import numpy as np


def load(folder) -> dict:
  """The race problem: ``x [128, 128]``, ``kernels [32, 8, 8]``, ``lam``,
  ``fstar`` (F*), ``L`` (``||Phi||^2``), all float64."""
  folder = pathlib.Path(folder)
  d = np.load(folder / 'csc_race.npz')
  return {'x': d['image'], 'kernels': d['kernels'], 'lam': float(d['lam']),
          'fstar': float(d['Fstar']), 'L': float(d['lipschitz_L'])}


class FftOp:
  """Zero-padded FFT synthesis and its adjoint on the ``n x n`` pixel grid.

  Codes live on the pixel grid ``[K, n, n]`` and are kept zero outside the
  VALID positions ``[0, n - kh + 1)``, so the circular product never wraps
  and equals the linear model.
  """

  def __init__(self, kernels, n: int, dtype=np.float64):
    k, kh, kw = kernels.shape
    padded = np.zeros((k, n, n), dtype)
    padded[:, :kh, :kw] = kernels
    self.spec = np.fft.rfft2(padded)
    self.n = n
    self.keep = np.zeros((n, n), dtype)
    self.keep[:n - kh + 1, :n - kw + 1] = 1

  def synth(self, a):
    """``[K, n, n]`` codes -> ``[n, n]`` image."""
    return np.fft.irfft2((self.spec * np.fft.rfft2(a)).sum(0), s=(self.n,) * 2)

  def adjoint(self, r):
    """``[n, n]`` image -> ``[K, n, n]`` codes (zero off the VALID grid)."""
    full = np.fft.irfft2(np.conj(self.spec) * np.fft.rfft2(r)[None],
                         s=(self.n,) * 2)
    return full * self.keep


def on_pixel_grid(codes, n: int) -> np.ndarray:
  """VALID codes ``[K, Hc, Wc]`` (or already ``[K, n, n]``) as ``[K, n, n]``."""
  codes = np.asarray(codes, np.float64)
  if codes.shape[-1] == n:
    return codes
  out = np.zeros(codes.shape[:1] + (n, n))
  out[:, :codes.shape[1], :codes.shape[2]] = codes
  return out


def objective(op: FftOp, x, lam: float, codes) -> float:
  """``F(a)`` in float64 for codes on either grid."""
  a = on_pixel_grid(codes, op.n)
  r = x - op.synth(a)
  return 0.5 * float((r * r).sum()) + lam * float(np.abs(a).sum())


class GapClock:
  """Wall clock to the first iterate under each tolerance, minus the checks.

  Construct it right before the solver's first iteration and call it after
  every iteration; it returns True once every tolerance is reached.
  ``hits[tol]`` is ``{'iters', 'seconds', 'gap'}``.
  """

  def __init__(self, problem: dict, tols):
    self.op = FftOp(problem['kernels'], problem['x'].shape[0])
    self.x, self.lam = problem['x'], problem['lam']
    self.fstar = problem['fstar']
    self.tols = sorted(tols, reverse=True)
    self.hits = {}
    self.last_gap = float('inf')
    self.excluded = 0.0
    self.start = time.perf_counter()

  def __call__(self, it: int, codes) -> bool:
    t0 = time.perf_counter()
    gap = (objective(self.op, self.x, self.lam, codes) - self.fstar) / self.fstar
    self.last_gap = gap
    for tol in self.tols:
      if tol not in self.hits and gap <= tol:
        self.hits[tol] = {'iters': it, 'gap': gap,
                          'seconds': t0 - self.start - self.excluded}
    self.excluded += time.perf_counter() - t0
    return len(self.hits) == len(self.tols)
