"""Block preconditioned conjugate gradients: the right-hand sides share one Krylov space.

O'Leary's block CG (Linear Algebra Appl. 29 (1980)) searches, at step i, the sum of the Krylov
spaces of every column of the block: each column's error is minimised in the A-norm over
``span{P_0, ..., P_i}``, which holds the search directions of all columns, so a column profits
from the directions the others found. The plain recurrences break down when the search block
loses rank (repeated or dependent right-hand sides, columns that converge at different speeds);
this kernel follows the breakdown-free variant of Ji and Li (Comput. Math. Appl. 74 (2017)):
before it is used, the search block ``W`` is A-orthonormalised with a rank-revealing step that
drops the directions already in the span of the others, so the block keeps full rank and the
step ``alpha = P^H R`` never solves a singular system.

A-orthonormalisation (an eigendecomposition of the scaled Gram matrix, as in Stathopoulos and
Wu's SVQB): with ``D = diag(W^H A W)^{1/2}`` and ``D^{-1} W^H A W D^{-1} = V diag(lam) V^H``,
``P = W D^{-1} V_k diag(lam_k)^{-1/2}`` over the eigenvalues ``lam_k > DROP_TOL * max(lam)``
satisfies ``P^H A P = I`` to rounding. The column scaling makes the test measure angles, not
lengths: a column whose residual is 1e-8 times smaller than another's is kept, an exact repeat is
dropped. The per-iteration work besides one product with A (MKL's sparse BLAS when installed,
:mod:`matcli.methods.solve.sparse_blas`) and one application of the preconditioner, both on the
whole block, is six dense (n, s) x (s, s) products (BLAS 3).

Guarantees, per column: the status is ``converged_rtol`` only when the true float64 residual
``||b_j - A x_j|| <= rtol ||b_j||`` was recomputed and met; the recursive residual that met the
test first is replaced by the true one (at most 3 times) when it drifted. Columns leave the block
as they converge (their solution is frozen and their residual removed), so columns of very
different difficulty cost only their own iterations. A failed column returns the last iterate
(block CG minimises its A-norm error over the growing space, so it is the best in that norm)
unless its true residual exceeds that of the initial guess, which is then returned.
"""

from __future__ import annotations

import numpy as np

from matcli.core.result import Callback, Result, Status, no_callback
from matcli.methods.solve.krylov import (BLOCK_MEMORY_BYTES, TRUE_RESIDUAL, _first_initial, combine_status,
                                         default_maxiter, status_message)
from matcli.methods.solve.precond import Preconditioner, identity
from matcli.methods.solve.sparse_blas import BlockProduct, gram
from matcli.methods.solve.system import as_block, col_norms, inf_norm, solution_metrics

#: Columns per block. Every step costs six (n, s) x (s, s) products, s^2 n flops each, against
#: fewer iterations as s grows: on 100 right-hand sides of a 90000-unknown Poisson problem with the
#: AMG block cycle, s = 16 took the fewest CPU seconds (s = 8: 3.72 s, 16: 3.14 s, 32: 3.98 s, best of
#: 3 interleaved, loaded machine, 2026-12-06; 10 steps each).
BLOCK_SIZE = 16
#: Eigenvalues of the scaled Gram matrix below this fraction of the largest are dependent
#: directions: their A-norm is rounding error of the others'. 1e-12 keeps directions whose
#: amplification by lam^{-1/2} (at most 1e6) leaves their conjugacy error below 1e-10.
DROP_TOL = 1e-12
#: Times a column's recursive residual may be replaced by its true residual before the column is
#: declared unable to reach the tolerance.
MAX_REPLACEMENTS = 3
#: A scaled Gram matrix (unit diagonal) with an eigenvalue below -NEGATIVE_TOL has a direction of
#: negative curvature far beyond rounding (which is ~ s eps): A is not positive definite.
NEGATIVE_TOL = 1e-9


def _adj(X: np.ndarray) -> np.ndarray:
    return X.conj().T if np.iscomplexobj(X) else X.T


def block_cg(A, B, *, M: Preconditioner | None = None, x0=None, rtol: float = 1e-8, maxiter: int | None = None,
             callback: Callback = no_callback, block_size: int = BLOCK_SIZE) -> Result:
    """Breakdown-free block preconditioned CG on the columns of ``B``, ``block_size`` columns at a time.

    Parameters
    ----------
    A : (n, n) Hermitian positive definite matrix (dense, sparse or LinearOperator).
    B : (n,) or (n, k) right-hand side.
    M : Preconditioner, Hermitian positive definite; identity when None. Its ``block`` variant (an
        AMG cycle taking every column per product) is used when ``B`` has several columns.
    x0 : optional (n,) or (n, k) initial guess.
    rtol : per-column stopping test ``||b_j - A x_j|| <= rtol ||b_j||`` on the true residual.
    maxiter : block iterations per block of columns; default ``max(10 n, 100)``.
    block_size : columns sharing one Krylov space (>= 1); 1 is plain PCG.

    Returns
    -------
    Result with ``x`` shaped like ``B``; ``info["column_iterations"]`` (the step at which each column
    converged), ``info["rank_drops"]`` (directions dropped as dependent, summed over the steps).
    A Gram matrix ``W^H A W`` with a clearly negative eigenvalue (A or M not positive definite)
    stops the block with ``diverged_not_spd``.
    """
    if block_size < 1:
        raise ValueError(f"block_size must be >= 1, got {block_size}")
    M = M or identity()
    Bb, X0, was_vector = as_block(A, B, x0)
    n, k = X0.shape
    if k > 1 and M.block is not None:
        M = M.block()
    maxiter = default_maxiter(n, maxiter)
    # Each block holds about ten (n, s) arrays.
    width = max(1, min(block_size, int(BLOCK_MEMORY_BYTES // (10 * X0.itemsize * max(n, 1)))))
    X = X0
    product = BlockProduct(A)
    statuses: list[Status] = [Status.CONVERGED_RTOL] * k
    col_its = np.zeros(k, dtype=np.int64)
    totals = {"residual_replacements": 0, "rank_drops": 0}
    iterations, offset = 0, 0
    # The metrics of every column, a block at a time while it is in cache (the whole (n, k) residual
    # at once leaves the caches); their maxima over the blocks are the numbers of the whole block.
    norm_A = inf_norm(A)
    parts = []
    for start in range(0, k, width):
        cols = slice(start, min(start + width, k))
        # contiguous copies: every pass over a strided (n, s) view of the (n, k) block costs more
        Bc, Xc = np.ascontiguousarray(Bb[:, cols]), np.ascontiguousarray(X[:, cols])
        its = _solve_block(A, product, Bc, Xc, M, rtol, maxiter, _first_initial(callback, offset, first=start == 0),
                           statuses, col_its, start, totals)
        X[:, cols] = Xc
        parts.append(solution_metrics(A, Xc, Bc, norm_A))
        iterations = max(iterations, its)
        offset += its
    overall = combine_status(statuses)
    failed = sum(not s.converged for s in statuses)
    metrics = {key: max(part[key] for part in parts) for key in parts[0]} if parts else solution_metrics(A, X, Bb)
    metrics["iterations"] = float(iterations)
    info = {**totals, "block_size": width, "blocks": -(-k // width)}
    if k > 1:
        info["column_iterations"] = [int(v) for v in col_its]
    return Result(status=overall, outputs={"x": X[:, 0] if was_vector else X}, metrics=metrics,
                  iterations=int(iterations), info=info, message=status_message(overall, k, failed))


@np.errstate(over="ignore", invalid="ignore")  # a diverging block is detected (NaN/Inf) and reported
def _solve_block(A, product: BlockProduct, B: np.ndarray, X: np.ndarray, M: Preconditioner, rtol: float, maxiter: int,
                 callback: Callback, statuses: list[Status], col_its: np.ndarray, first: int,
                 totals: dict[str, int]) -> int:
    """Solve one block in place (``product(W)`` is ``A @ W``): ``X`` (a view of the solution) is updated, ``statuses[first + j]``
    and ``col_its[first + j]`` set for its columns. Returns the iterations taken."""
    n, s = B.shape
    bnorm = col_norms(B)
    X[:, bnorm == 0] = 0  # b = 0: x = 0 is exact, whatever the initial guess
    start_X = X.copy() if np.any(X) else None  # None: the initial guess is zero
    R = B - A @ X if start_X is not None else B.copy()
    rnorm = col_norms(R)
    start_r = rnorm.copy()
    target = rtol * bnorm
    safe_bnorm = np.where(bnorm > 0, bnorm, 1.0)
    for j in np.flatnonzero(bnorm == 0):
        statuses[first + j] = Status.CONVERGED_ZERO_RHS
    callback(0, initial_residual=float((rnorm / safe_bnorm).max(initial=0.0)), residual_kind=TRUE_RESIDUAL)
    active = np.flatnonzero(rnorm > target)
    replacements = np.zeros(s, dtype=np.int64)
    Ra = np.ascontiguousarray(R[:, active])
    Xa = np.ascontiguousarray(X[:, active])
    it = 0
    gemm = _gemm_update(Ra)
    W = ZR = None
    if active.size:
        W, ZR = _precondition(M, Ra)
        if ZR is None:
            _fail(statuses, first, active, Status.DIVERGED_NOT_SPD)
            active = active[:0]
    while active.size and it < maxiter:
        QW = product(W)
        G = gram(W, QW)
        G = (G + _adj(G)) / 2
        d = np.sqrt(np.abs(np.real(np.diag(G))))
        scale = np.where(d > 0, 1.0 / np.where(d > 0, d, 1.0), 0.0)
        lam, V = np.linalg.eigh(G * scale[:, None] * scale[None, :])
        if not np.all(np.isfinite(lam)):
            _fail(statuses, first, active, Status.DIVERGED_NAN)
            break
        top = float(lam.max(initial=0.0))
        if lam.min(initial=0.0) < -NEGATIVE_TOL * max(top, 1.0) or top <= 0:
            # a direction of negative (or no) curvature: A is not positive definite
            _fail(statuses, first, active, Status.DIVERGED_NOT_SPD)
            break
        keep = lam > DROP_TOL * top
        totals["rank_drops"] += int(W.shape[1] - keep.sum())
        # P = W T is A-orthonormal (P^H A P = I); P and Q = A P are never formed, only W T c
        T = (V[:, keep] / np.sqrt(lam[keep])) * scale[:, None]
        # alpha = P^H R, and P^H R = T^H W^H R = T^H Z^H R (the previous block is A-conjugate to W
        # and orthogonal to R)
        step = T @ (_adj(T) @ ZR)
        gemm(W, step, Xa, 1.0)
        gemm(QW, step, Ra, -1.0)
        it += 1
        rnorm_a = col_norms(Ra)
        callback(it, residual=float((rnorm_a / safe_bnorm[active]).max()), residual_kind=TRUE_RESIDUAL)
        col_its[first + active] = it
        done = (rnorm_a <= target[active]) | ~np.isfinite(rnorm_a)
        if done.any():
            check = np.flatnonzero(done & np.isfinite(rnorm_a))
            if check.size:
                true_R = B[:, active[check]] - A @ Xa[:, check]  # one product for all of them
                true_norms = col_norms(true_R)
                for i, local in enumerate(check):
                    j = active[local]
                    if true_norms[i] > target[j]:
                        if replacements[j] < MAX_REPLACEMENTS:
                            replacements[j] += 1
                            Ra[:, local] = true_R[:, i]
                            done[local] = False
                        else:
                            statuses[first + j] = Status.DIVERGED_TOLERANCE_UNREACHABLE
            for local in np.flatnonzero(~np.isfinite(rnorm_a)):
                statuses[first + active[local]] = Status.DIVERGED_NAN
            if done.any():
                X[:, active[done]] = Xa[:, done]
                keep_cols = ~done
                active = active[keep_cols]
                Xa = np.ascontiguousarray(Xa[:, keep_cols])
                Ra = np.ascontiguousarray(Ra[:, keep_cols])
                if not active.size:
                    break
        Z, ZR = _precondition(M, Ra)
        if ZR is None:
            _fail(statuses, first, active, Status.DIVERGED_NOT_SPD)
            break
        # W <- Z - P (Q^H Z) = Z - W T T^H (QW^H Z): the new directions, A-conjugate to the previous block
        gemm(W, T @ (_adj(T) @ gram(QW, Z)), Z, -1.0)
        W = Z
    if active.size:
        X[:, active] = Xa
        for j in active:
            if statuses[first + j] == Status.CONVERGED_RTOL:
                statuses[first + j] = Status.DIVERGED_MAX_IT
    totals["residual_replacements"] += int(replacements.sum())
    failed = np.array([j for j in range(s) if not statuses[first + j].converged], dtype=np.int64)
    if failed.size:
        true_r = col_norms(B[:, failed] - A @ X[:, failed])
        worse = failed[~(true_r <= start_r[failed])]
        X[:, worse] = 0 if start_X is None else start_X[:, worse]
    return it


def _precondition(M: Preconditioner, R: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """``(Z, Z^H R)`` for ``Z = M^{-1} R`` (C-ordered), or ``(Z, None)`` when some column has
    ``r^H M^{-1} r <= 0`` (or NaN) for a nonzero residual: the preconditioner is not positive definite."""
    Z = np.ascontiguousarray(M.apply(R), dtype=R.dtype)
    ZR = gram(Z, R)
    return Z, (ZR if np.all(np.real(np.diag(ZR)) > 0) else None)


def _gemm_update(like: np.ndarray):
    """``update(F, c, Y, sign)``: ``Y += sign * F @ c`` in place for C-ordered (n, s) ``F`` and (n, a)
    ``Y``, as one BLAS gemm reading ``F`` and ``Y`` once (numpy's ``Y += F @ c`` also writes and
    reads a temporary block)."""
    from scipy.linalg.blas import get_blas_funcs

    gemm = get_blas_funcs("gemm", (like,))

    def update(F: np.ndarray, c: np.ndarray, Y: np.ndarray, sign: float) -> None:
        if Y.shape[1] == 0:
            return
        # row-major Y (n, a) is column-major Y^T (a, n): Y^T += sign c^T F^T
        out = gemm(sign, np.asarray(c, dtype=Y.dtype).T, F.T, beta=1.0, c=Y.T, overwrite_c=True)
        if not np.shares_memory(out, Y):
            Y[...] = out.T

    return update


def _fail(statuses: list[Status], first: int, active: np.ndarray, status: Status) -> None:
    for j in active:
        statuses[first + j] = status
