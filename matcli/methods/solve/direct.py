"""Direct solvers: dense LU / Cholesky / LDL^T (LAPACK via scipy.linalg) and sparse LU / Cholesky
(SuperLU via scipy.sparse.linalg.splu).

A :class:`Factorization` is computed once (the timed ``setup`` phase) and then solves any number
of right-hand sides (``compute``), all columns in one call. For a batch of matrices with one
sparsity pattern, :meth:`Factorization.refactor` reuses the fill-reducing column ordering.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import scipy.sparse as sp

from matcli.core.errors import UsageError
from matcli.core.result import Callback, Result, Status, no_callback
from matcli.methods.solve.spectrum import symmetry_error
from matcli.methods.solve.system import as_block, finish

#: Largest order for which ``ldl`` densifies a sparse matrix (LDL^T with Bunch-Kaufman pivoting
#: exists only as a dense LAPACK routine in scipy).
LDL_DENSE_LIMIT = 5000


@dataclass
class Factorization:
    """A computed factorization of square ``A``: ``solve(B)`` returns ``A^{-1} B`` for (n, k) ``B``.

    ``failure`` is set (with ``solve`` None) when the factorization broke down; the status says why.
    """

    kind: str
    solve: Callable[[np.ndarray], np.ndarray] | None
    info: dict[str, Any] = field(default_factory=dict)
    failure: Status | None = None
    message: str = ""
    perm_c: np.ndarray | None = None


def _splu(A, *, kind: str, perm_c: np.ndarray | None = None):
    """SuperLU of sparse ``A``. ``cholesky`` uses a symmetric ordering of A + A^T and diagonal
    pivots only (an LDL^T-like factorization without pivoting, which exists iff the leading
    minors are nonzero; its pivots are all positive iff A is positive definite)."""
    from matcli.core.superlu import splu

    A_csc = sp.csc_matrix(A)
    if perm_c is not None:
        A_csc = sp.csc_matrix(A_csc[:, perm_c])
        A_csc.sort_indices()
        if kind == "cholesky":
            A_csc = sp.csc_matrix(A_csc[perm_c, :])
        spec = "NATURAL"
    else:
        spec = "MMD_AT_PLUS_A" if kind == "cholesky" else "COLAMD"
    options = {"SymmetricMode": True} if kind == "cholesky" else {}
    pivot = 0.0 if kind == "cholesky" else 1.0
    return splu(A_csc, permc_spec=spec, diag_pivot_thresh=pivot, options=options), A_csc


def factorize(A, kind: str, *, perm_c: np.ndarray | None = None) -> Factorization:
    """Factor square ``A`` (dense or sparse) as ``kind`` in ``lu``, ``cholesky``, ``ldl``.

    ``perm_c`` (sparse only) reuses a column ordering from an earlier factorization of a matrix
    with the same pattern. A singular matrix gives ``failure = DIVERGED_SINGULAR``; a matrix that
    is not positive definite given to ``cholesky`` gives ``DIVERGED_NOT_SPD``.
    """
    n = A.shape[0]
    if A.shape[0] != A.shape[1]:
        raise UsageError(f"{kind} needs a square matrix, got {A.shape[0]}x{A.shape[1]}; use --method lsqr or lsmr")
    singular = ("the matrix is singular to working precision; use --method lsqr or lsmr for a "
                "least-squares / minimum-norm solution")
    if kind == "ldl":
        if sp.issparse(A):
            if n > LDL_DENSE_LIMIT:
                raise UsageError(f"ldl is a dense factorization (order {n} > {LDL_DENSE_LIMIT}); "
                                 "use --method lu, minres or gmres for large sparse matrices")
            A = A.toarray()
        return _ldl(np.asarray(A), singular)
    if kind == "cholesky" and symmetry_error(A) > 1e-12:
        return Factorization(kind, None, {}, Status.DIVERGED_NOT_SPD,
                             "the matrix is not symmetric (Hermitian), so it has no Cholesky factorization; "
                             "use --method lu")
    if not sp.issparse(A):
        return _dense(np.asarray(A), kind, singular)
    try:
        lu, A_used = _splu(A, kind=kind, perm_c=perm_c)
    except RuntimeError as exc:
        return Factorization(kind, None, {"backend": "superlu"}, Status.DIVERGED_SINGULAR,
                             f"{singular} (SuperLU: {exc})")
    diag_u = lu.U.diagonal()
    info = {"backend": "superlu", "factor_nnz": int(lu.L.nnz + lu.U.nnz),
            "fill_ratio": float((lu.L.nnz + lu.U.nnz) / max(A.nnz, 1)),
            "ordering": "reused" if perm_c is not None else ("MMD_AT_PLUS_A" if kind == "cholesky" else "COLAMD")}
    if kind == "cholesky":
        if np.iscomplexobj(diag_u) and np.any(np.abs(diag_u.imag) > 1e-8 * np.abs(diag_u)):
            return Factorization(kind, None, info, Status.DIVERGED_NOT_SPD,
                                 "the matrix is not Hermitian positive definite (complex pivots); use --method lu")
        negative = int(np.sum(np.real(diag_u) <= 0))
        if negative or not np.array_equal(lu.perm_r, lu.perm_c):
            return Factorization(kind, None, info, Status.DIVERGED_NOT_SPD,
                                 f"the matrix is not positive definite ({negative} non-positive pivots); "
                                 "use --method lu or ldl (or minres for large sparse symmetric indefinite)")
    scale = np.abs(diag_u).max(initial=0.0)
    if scale == 0 or np.abs(diag_u).min() <= n * np.finfo(float).eps * scale:
        info["pivot_ratio"] = float(np.abs(diag_u).min() / scale) if scale else 0.0
        return Factorization(kind, None, info, Status.DIVERGED_SINGULAR, singular)
    order = perm_c

    def solve(B: np.ndarray) -> np.ndarray:
        if np.iscomplexobj(B) and not np.iscomplexobj(lu.L):
            # SuperLU solves only in its factors' dtype: real factors take the real and imaginary
            # parts as one real block of twice the columns.
            k = B.shape[1]
            parts = solve(np.ascontiguousarray(np.hstack([B.real, B.imag])))
            return parts[:, :k] + 1j * parts[:, k:]
        B = B.astype(lu.L.dtype, copy=False)
        if order is None:
            return lu.solve(B)
        # The factored matrix was A[:, p] (and A[p][:, p] for cholesky); undo the permutations.
        rhs = B[order] if kind == "cholesky" else B
        Y = lu.solve(np.ascontiguousarray(rhs))
        X = np.empty_like(Y)
        X[order] = Y
        return X

    # SuperLU factors A Pc with column j of A moved to position perm_c[j]; the ordering is its inverse.
    ordering = perm_c if perm_c is not None else np.argsort(lu.perm_c)
    return Factorization(kind, solve, info, perm_c=ordering)


def _dense(A: np.ndarray, kind: str, singular: str) -> Factorization:
    import scipy.linalg as sla

    n = A.shape[0]
    if kind == "cholesky":
        try:
            c = sla.cho_factor(A, lower=True, check_finite=False)
        except np.linalg.LinAlgError:
            return Factorization(kind, None, {"backend": "lapack potrf"}, Status.DIVERGED_NOT_SPD,
                                 "the matrix is not positive definite (Cholesky failed); use --method lu or ldl")
        return Factorization(kind, lambda B: sla.cho_solve(c, B, check_finite=False), {"backend": "lapack potrf"})
    with warnings.catch_warnings():
        # An exactly singular matrix is reported through the status below, not a warning.
        warnings.simplefilter("ignore", sla.LinAlgWarning)
        lu, piv = sla.lu_factor(A, check_finite=False)
    diag = np.abs(np.diag(lu))
    scale = diag.max(initial=0.0)
    info = {"backend": "lapack getrf"}
    if n and (scale == 0 or diag.min() <= n * np.finfo(float).eps * scale):
        return Factorization(kind, None, info, Status.DIVERGED_SINGULAR, singular)
    getrf_norm = np.abs(A).sum(axis=0).max()
    gecon = sla.get_lapack_funcs("gecon", (lu,))
    rcond, _ = gecon(lu, getrf_norm, norm="1")
    info["rcond_1norm"] = float(rcond)
    return Factorization(kind, lambda B: sla.lu_solve((lu, piv), B, check_finite=False), info)


def _ldl(A: np.ndarray, singular: str) -> Factorization:
    """Bunch-Kaufman LDL^T (LDL^H for complex Hermitian): P A P^T = L D L^T with 1x1/2x2 blocks."""
    import scipy.linalg as sla

    hermitian = np.iscomplexobj(A)
    lu, d, perm = sla.ldl(A, lower=True, hermitian=hermitian, check_finite=False)
    L = lu[perm]
    # D is block diagonal with 1x1 and 2x2 blocks: tridiagonal, solved in banded form.
    n = A.shape[0]
    ab = np.zeros((3, n), dtype=d.dtype)
    ab[0, 1:] = np.diagonal(d, 1)
    ab[1] = np.diagonal(d)
    ab[2, :-1] = np.diagonal(d, -1)
    eigs = np.linalg.eigvalsh(d) if n <= 2000 else None
    info: dict[str, Any] = {"backend": "lapack sytrf"}
    if eigs is not None:
        info["inertia"] = {"positive": int(np.sum(eigs > 0)), "negative": int(np.sum(eigs < 0)),
                           "zero": int(np.sum(eigs == 0))}
        scale = np.abs(eigs).max(initial=0.0)
        if n and (scale == 0 or np.abs(eigs).min() <= n * np.finfo(float).eps * scale):
            return Factorization("ldl", None, info, Status.DIVERGED_SINGULAR, singular)
    LH = L.conj().T if hermitian else L.T

    def solve(B: np.ndarray) -> np.ndarray:
        Y = sla.solve_triangular(L, B[perm], lower=True, unit_diagonal=True, check_finite=False)
        Z = sla.solve_banded((1, 1), ab, Y, check_finite=False)
        W = sla.solve_triangular(LH, Z, lower=False, unit_diagonal=True, check_finite=False)
        X = np.empty_like(W)
        X[perm] = W
        return X

    return Factorization("ldl", solve, info)


def solve_factored(A, fact: Factorization, B, *, callback: Callback = no_callback, refine: int = 0) -> Result:
    """Solve ``A X = B`` with a computed factorization; ``refine`` steps of iterative refinement
    (each: one residual and one solve) improve the backward error after pivot growth.

    Returns status ``CONVERGED_DIRECT`` (or the factorization's failure, with no output).
    """
    Bb, _, was_vector = as_block(A, B)
    if fact.failure is not None:
        return Result(status=fact.failure, message=fact.message, info=dict(fact.info))
    X = fact.solve(Bb)
    for step in range(refine):
        R = Bb - A @ X
        X = X + fact.solve(R)
        callback(step + 1, residual=float(np.linalg.norm(R) / max(np.linalg.norm(Bb), np.finfo(float).tiny)))
    return finish(A, X, Bb, was_vector, Status.CONVERGED_DIRECT, 0, "", dict(fact.info))
