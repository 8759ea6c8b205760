"""Cheap structural and numerical properties of a matrix, shared by ``info`` and ``auto`` choices."""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

#: Dense matrices up to this order get an exact 2-norm condition number and an eigenvalue test.
SMALL_ORDER = 2000


def symmetry_error(A, conjugate: bool = True) -> float:
    """max |A - A^H| / max |A| (``A^T`` when not ``conjugate``); 0 when exact, inf for non-square."""
    if A.shape[0] != A.shape[1]:
        return float("inf")
    At = A.conj().T if conjugate else A.T
    if sp.issparse(A):
        diff = abs(A - At)
        scale = abs(A).max() if A.nnz else 0.0
        top = diff.max() if diff.nnz else 0.0
    else:
        diff = np.abs(A - At)
        scale = np.abs(A).max() if A.size else 0.0
        top = diff.max() if diff.size else 0.0
    return float(top / scale) if scale > 0 else 0.0


def definiteness_hint(A, hermitian: bool, rng: np.random.Generator | None = None, spectral: bool = True) -> str:
    """``positive definite``, ``positive semidefinite``, ``indefinite`` or ``not symmetric``.

    Small (order <= :data:`SMALL_ORDER`): eigenvalues. Otherwise a positive diagonal is necessary;
    then diagonal dominance (Gershgorin) decides when it holds; else, with ``spectral``, the extreme
    eigenvalues by ARPACK at a loose tolerance (minutes on large matrices), falling back to the
    diagonal test when they do not converge.
    """
    if not hermitian:
        return "not symmetric"
    n = A.shape[0]
    if n == 0:
        return "empty"
    diag = np.real(A.diagonal())
    if np.any(diag < 0):
        return "indefinite"
    if np.any(diag == 0):
        return "indefinite or semidefinite (zero on the diagonal)"
    if n <= SMALL_ORDER:
        dense = A.toarray() if sp.issparse(A) else np.asarray(A)
        w = np.linalg.eigvalsh(dense)
        tol = n * np.finfo(float).eps * max(abs(w[-1]), 1e-300)
        if w[0] > tol:
            return "positive definite"
        if w[0] >= -tol:
            return "positive semidefinite (numerically singular)"
        return "indefinite"
    off = _abs_row_sums(A) - np.abs(diag)
    if np.all(diag > off):
        return "positive definite (strictly diagonally dominant)"
    if np.all(diag >= off * (1 - 1e-12)):
        return "positive semidefinite or definite (diagonally dominant)"
    if not spectral:
        return "positive diagonal (definiteness not determined; --condition estimates it)"
    from scipy.sparse.linalg import ArpackNoConvergence, eigsh

    rng = rng or np.random.default_rng(0)
    try:
        lam_max = eigsh(A, k=1, which="LA", tol=1e-3, maxiter=200, return_eigenvectors=False,
                        v0=rng.standard_normal(n))[0]
        lam_min = eigsh(A, k=1, which="SA", tol=1e-3, maxiter=300, return_eigenvectors=False,
                        v0=rng.standard_normal(n))[0]
    except ArpackNoConvergence:
        return "positive diagonal (definiteness not determined)"
    if lam_min < -1e-8 * abs(lam_max):
        return "indefinite"
    return "positive definite (estimated)" if lam_min > 0 else "positive semidefinite (estimated)"


def _abs_row_sums(A) -> np.ndarray:
    return np.asarray(abs(A).sum(axis=1)).ravel() if sp.issparse(A) else np.abs(A).sum(axis=1)


def condition_estimate(A) -> tuple[float | None, str]:
    """(estimate, how): exact 2-norm condition for small matrices, 1-norm estimate via LU for
    moderate sparse square ones, None otherwise."""
    m, n = A.shape
    if min(m, n) == 0:
        return None, "empty"
    if max(m, n) <= SMALL_ORDER:
        dense = A.toarray() if sp.issparse(A) else np.asarray(A)
        s = np.linalg.svd(dense, compute_uv=False)
        return (float(s[0] / s[-1]) if s[-1] > 0 else float("inf")), "2-norm, exact (SVD)"
    if m == n and sp.issparse(A) and A.nnz <= 2_000_000:
        from scipy.sparse.linalg import LinearOperator, onenormest

        from matcli.core.superlu import splu

        try:
            lu = splu(sp.csc_matrix(A))
        except RuntimeError:
            return float("inf"), "1-norm (matrix is singular)"
        inv = LinearOperator(A.shape, matvec=lu.solve, rmatvec=lambda x: lu.solve(x, trans="H"),
                             dtype=A.dtype)
        return float(onenormest(A) * onenormest(inv)), "1-norm estimate (Hager/Higham via sparse LU)"
    return None, "skipped (too large for a cheap estimate)"


def describe(A, rng: np.random.Generator | None = None, condition: bool = True) -> dict[str, Any]:
    """Shape, dtype, nnz, density, symmetry, definiteness hint and (with ``condition``) the condition
    estimate of ``A``. Without ``condition`` everything is a pass or two over A (the estimate factors A,
    and the eigenvalue test of a large symmetric matrix runs ARPACK: minutes on large matrices)."""
    m, n = A.shape
    nnz = int(A.nnz) if sp.issparse(A) else int(np.count_nonzero(A))
    info: dict[str, Any] = {
        "shape": [m, n],
        "dtype": str(A.dtype),
        "storage": "sparse" if sp.issparse(A) else "dense",
        "nnz": nnz,
        "density": nnz / (m * n) if m * n else 0.0,
    }
    if m == n:
        err = symmetry_error(A)
        hermitian = err <= 1e-12
        info["symmetry_error"] = err
        if hermitian:
            info["symmetry"] = "hermitian" if np.iscomplexobj(A) else "symmetric"
        elif np.iscomplexobj(A) and symmetry_error(A, conjugate=False) <= 1e-12:
            info["symmetry"] = "symmetric (complex, not hermitian)"
        else:
            info["symmetry"] = "general"
        info["definiteness"] = definiteness_hint(A, hermitian, rng, spectral=condition)
    else:
        info["symmetry"] = "rectangular"
    if condition:
        cond, how = condition_estimate(A)
        info["condition_estimate"] = cond
        info["condition_method"] = how
    return info
