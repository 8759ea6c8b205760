"""Stationary iterations: SOR and symmetric SOR (SSOR) sweeps (pyamg's compiled relaxation kernels).

SOR converges for every 0 < omega < 2 when A is symmetric positive definite (Ostrowski-Reich);
for consistently ordered matrices the optimal value is omega* = 2 / (1 + sqrt(1 - rho_J^2)) with
rho_J the spectral radius of the Jacobi iteration matrix (Young).
"""

from __future__ import annotations

import numpy as np

from matcli.core.errors import UsageError
from matcli.core.lazy_sparse import sp
from matcli.core.result import Callback, Result, Status, no_callback
from matcli.methods.solve.krylov import combine_status, default_maxiter, status_message
from matcli.methods.solve.spectrum import diagonal, lanczos_extremes
from matcli.methods.solve.system import as_block, finish

#: Residual growth factor over the start at which the sweeps are declared divergent.
DIVERGENCE_FACTOR = 1e8


def check_sor_matrix(A) -> sp.csr_matrix:
    """A as CSR; raises UsageError for a non-square matrix or a zero on the diagonal."""
    if A.shape[0] != A.shape[1]:
        raise UsageError("SOR needs a square matrix; use --method lsqr or lsmr")
    A = sp.csr_matrix(A)
    if np.any(diagonal(A) == 0):
        raise UsageError("SOR needs a zero-free diagonal; use --method gmres or lu")
    return A


def estimate_omega(A, rng: np.random.Generator, steps: int = 40) -> float:
    """Young's optimal omega from a Lanczos estimate of the Jacobi spectral radius.

    Valid for symmetric ``A`` with positive diagonal: rho_J = max |1 - lambda(D^-1 A)|, and the
    eigenvalues of D^-1 A are those of the Hermitian D^-1/2 A D^-1/2. Lanczos under-estimates
    rho_J, so the returned omega errs towards 1 (still convergent). A negative diagonal is treated
    as that of ``-A`` (the same sweeps). Returns 1 (Gauss-Seidel) when the diagonal has mixed signs
    or zeros, and when the estimate of rho_J reaches 1: Young's formula needs a convergent Jacobi
    iteration, and clipping rho_J below 1 gave omega ~ 2, where SOR converges arbitrarily slowly
    (a dense 9x9 SPD matrix stalled for 2e5 sweeps).
    """
    d = np.real(diagonal(A))
    if np.all(d < 0):
        # SOR sweeps on (-A) x = -b are the same sweeps: a negative definite A gets the omega of -A
        A, d = -A, -d
    if np.any(d <= 0):
        return 1.0
    s = 1.0 / np.sqrt(d)
    lo, hi = lanczos_extremes(lambda v: s * (A @ (s * v)), A.shape[0], A.dtype, steps, rng)
    rho = max(abs(1 - lo), abs(hi - 1))
    if not rho < 1:
        return 1.0
    return float(2.0 / (1.0 + np.sqrt(1.0 - rho * rho)))


def sor(A, B, *, omega: float = 1.0, symmetric: bool = False, x0=None, rtol: float = 1e-8,
        maxiter: int | None = None, callback: Callback = no_callback) -> Result:
    """SOR (``symmetric=False``) or SSOR sweeps until ``||b - A x|| <= rtol ||b||`` per column.

    ``A`` square with a zero-free diagonal (dense inputs are converted to CSR); ``B`` (n,) or
    (n, k). One iteration is one sweep (SSOR: a forward and a backward sweep). The residual is
    evaluated after every sweep; the best iterate is kept. Growth of the residual by
    :data:`DIVERGENCE_FACTOR` stops with ``DIVERGED_BREAKDOWN``.
    """
    from pyamg.relaxation.relaxation import sor as sor_sweep

    A = check_sor_matrix(A)
    if not 0 < omega < 2:
        raise UsageError(f"SOR needs 0 < omega < 2, got {omega}")
    Bb, X, was_vector = as_block(A, B, x0)
    if A.dtype != X.dtype:
        A = A.astype(X.dtype)
    n, k = X.shape
    maxiter = default_maxiter(n, maxiter)
    sweep = "symmetric" if symmetric else "forward"
    # pyamg's own sweep="symmetric" silently drops omega (it calls plain Gauss-Seidel), so the
    # symmetric sweep is composed here from a forward and a backward SOR sweep.
    directions = ("forward", "backward") if symmetric else ("forward",)
    statuses, col_its = [], np.zeros(k, dtype=np.int64)
    for j in range(k):
        b = np.ascontiguousarray(Bb[:, j])
        x = np.ascontiguousarray(X[:, j])
        bnorm = float(np.linalg.norm(b))
        if bnorm == 0:  # x = 0 is the exact solution, whatever the initial guess
            X[:, j] = 0
            statuses.append(Status.CONVERGED_ZERO_RHS)
            continue
        r0 = float(np.linalg.norm(b - A @ x))
        if r0 <= rtol * bnorm:
            statuses.append(Status.CONVERGED_RTOL)
            continue
        best_x, best_r = x.copy(), r0
        status = Status.DIVERGED_MAX_IT
        offset = int(col_its[:j].max(initial=0))
        scale = bnorm if bnorm > 0 else 1.0
        for it in range(1, maxiter + 1):
            for direction in directions:
                sor_sweep(A, x, b, omega, iterations=1, sweep=direction)
            rnorm = float(np.linalg.norm(b - A @ x))
            col_its[j] = it
            callback(offset + it, residual=rnorm / scale)
            if not np.isfinite(rnorm):
                status = Status.DIVERGED_NAN
                break
            if rnorm < best_r:
                best_x, best_r = x.copy(), rnorm
            if rnorm <= rtol * bnorm:
                status = Status.CONVERGED_RTOL
                break
            if rnorm > DIVERGENCE_FACTOR * r0:
                status = Status.DIVERGED_BREAKDOWN
                break
        X[:, j] = best_x
        statuses.append(status)
    overall = combine_status(statuses)
    failed = sum(not s.converged for s in statuses)
    message = status_message(overall, k, failed)
    if overall == Status.DIVERGED_BREAKDOWN:
        message = (f"SOR diverges for omega={omega:g} on this matrix (it converges for SPD matrices "
                   "with 0 < omega < 2); use --method gmres or a direct method")
    return finish(A, X, Bb, was_vector, overall, int(col_its.max(initial=0)), message,
                  {"omega": omega, "sweep": sweep}, col_its)
