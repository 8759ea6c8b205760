"""Least squares / minimum norm with LAPACK for problems small enough to hold densely.

``min ||b - A x||_2`` (minimum ``||x||_2`` among the minimisers when A is rank deficient) by xGELSY:
QR with column pivoting, the numerical rank r = the number of diagonal entries of R above
``rcond * |R_11|`` (incremental condition estimation), then a complete orthogonal factorization of
the leading r columns. Backward stable, so the answer is accurate to O(eps cond(A)) (plus
O(eps cond(A)^2 ||r|| / ||A|| ||x||) for an inconsistent system), where LSQR/LSMR stop at their
tolerance. gelsy is the fastest of scipy's drivers (gelsd/gelss compute an SVD).

``auto`` uses it for problems small enough to hold densely (:func:`matcli.methods.solve.auto.dense_lstsq_fits`),
and as the least-squares fallback of a small singular system.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from matcli.core.errors import UsageError
from matcli.core.result import Result, Status
from matcli.methods.solve.solvers import Solver
from matcli.methods.solve.system import as_block, as_matrix, finish, solution_metrics

#: Largest problem ``lstsq`` accepts when asked for by name (m n entries; 200 MB of float64).
HARD_LIMIT = 25_000_000

EPS = np.finfo(float).eps


def default_rcond(shape: tuple[int, int]) -> float:
    """Relative cutoff for the numerical rank, ``max(m, n) eps`` (numpy.linalg.lstsq's default):
    singular directions below the rounding level of the matrix itself are treated as null."""
    return max(shape) * EPS


def lstsq(A, B, *, rcond: float | None = None) -> Result:
    """Minimum-norm least-squares solution of ``A X = B`` for (m, n) ``A`` and (m,) or (m, k) ``B``.

    Returns ``x`` ((n,) or (n, k)), status ``CONVERGED_DIRECT`` (LAPACK finished; for a square
    system whose residual is not at rounding level the caller decides whether a least-squares answer
    is what was asked), metrics from :func:`~matcli.methods.solve.system.solution_metrics` with
    ``normal_residual`` (also for square A) and ``rank``; ``info`` has the driver, rank and cutoff.
    """
    import scipy.linalg as sla

    Bb, _, was_vector = as_block(A, B)
    m, n = A.shape
    if m * n > HARD_LIMIT:
        raise UsageError(f"lstsq holds the {m}x{n} matrix densely ({m * n} entries > {HARD_LIMIT}); "
                         "use --method lsqr or lsmr for large sparse problems")
    dense = A.toarray() if sp.issparse(A) else np.asarray(A)
    dense = np.asarray(dense, dtype=Bb.dtype)
    cutoff = default_rcond(A.shape) if rcond is None else float(rcond)
    if min(m, n) == 0 or not np.any(dense):
        X = np.zeros((n, Bb.shape[1]), dtype=Bb.dtype)
        rank = 0
    else:
        X, _, rank, _ = sla.lstsq(dense, Bb, cond=cutoff, lapack_driver="gelsy", check_finite=False)
    info: dict[str, Any] = {"backend": "lapack gelsy (QR with column pivoting, complete orthogonal factorization)",
                            "rank": int(rank), "rcond": cutoff}
    result = finish(A, X, Bb, was_vector, Status.CONVERGED_DIRECT, 0, "", info)
    result.metrics.update(solution_metrics(A, X, Bb, least_squares=True))
    result.metrics["rank"] = float(rank)
    return result


@dataclass
class LstsqSolver(Solver):
    """Nothing to set up: the dense QR happens per solve (it depends on nothing but A)."""

    rcond: float | None = None

    def _solve(self, A, B, *, x0, rtol, maxiter, callback) -> Result:
        return lstsq(A, B, rcond=self.rcond)

    def _update(self, A, *, rebuild: bool) -> str:
        return "nothing to set up"


def prepare_lstsq(A, *, params: dict[str, Any], precond_name: str = "none", symmetric: bool = False,
                  rng: np.random.Generator | None = None) -> LstsqSolver:
    """Setup factory of ``lstsq`` (registry signature): checks the size, nothing else to prepare."""
    A = as_matrix(A)
    m, n = A.shape
    if m * n > HARD_LIMIT:
        raise UsageError(f"lstsq holds the {m}x{n} matrix densely ({m * n} entries > {HARD_LIMIT}); "
                         "use --method lsqr or lsmr for large sparse problems")
    rcond = params.get("rcond")
    return LstsqSolver("lstsq", {"backend": "lapack gelsy"}, rcond=float(rcond) if rcond else None)
