"""LCA sparse coding on strided spatiotemporal convolutional dictionaries.

Public entry points:

* :func:`infer` / :func:`lca`: the Locally Competitive Algorithm as one jitted
  ``lax.scan`` (Euler or exponential integrator; soft, non-negative or hard
  thresholds; optional in-painting mask; warm start; energy trace).
* :func:`fista` / :func:`fista_solve`: restarted FISTA for the same objective.
* :func:`admm` / :func:`admm_solve`: ADMM with a frequency-domain solve for
  stride-1 dictionaries without a mask (fewest iterations to a given gap).
* :func:`objective`: ``1/2 sum(M (x - Phi a)^2) + lam sum(|a|)``.
* :mod:`jaxvr.lca.dictionary`: Hebbian dictionary learning (PetaVision rule).
* :mod:`jaxvr.lca.operators`: synthesis ``Phi a``, analysis ``Phi^T r`` and
  the operator norm.
* :mod:`jaxvr.lca.figures`: pictures of learned dictionaries.

Sparse MP4, the method built on these solvers, is :mod:`jaxvr.sparse_mp4`.
"""

from jaxvr.lca import dictionary
from jaxvr.lca.admm import AdmmResult, admm, admm_solve
from jaxvr.lca.fista import FistaResult, fista, fista_solve
from jaxvr.lca.infer import LcaResult, infer, lca, objective, transfer
from jaxvr.lca.operators import analysis, code_shape, lipschitz, synthesis

__all__ = [
    'AdmmResult', 'FistaResult', 'LcaResult', 'admm', 'admm_solve',
    'analysis', 'code_shape', 'dictionary', 'fista', 'fista_solve', 'infer',
    'lca', 'lipschitz', 'objective', 'synthesis', 'transfer',
]
