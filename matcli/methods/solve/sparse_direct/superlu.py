"""SuperLU (``scipy.sparse.linalg.splu``) as a sparse direct backend: always installed.

``lu`` is LU with partial pivoting and a COLAMD column ordering. ``cholesky`` is SuperLU in symmetric
mode: a symmetric ordering of ``A + A^T`` and diagonal pivots only, an LDL^T-like factorization
without pivoting that exists iff the leading minors are nonzero and has positive pivots iff A is
positive definite; it stores both L and U = D L^H.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from matcli.core.result import Status
from matcli.methods.solve.sparse_direct.common import ADVICE, NOT_SPD_ADVICE, SINGULAR, Factors, failed


def _splu(M, *, kind: str, perm_c: np.ndarray | None = None):
    from matcli.core.superlu import splu

    A_csc = sp.csc_matrix(M)
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
    return splu(A_csc, permc_spec=spec, diag_pivot_thresh=pivot, options=options)


def lu_flops(L, U) -> float:
    """Flops of the right-looking elimination that produced sparse ``L`` (unit lower) and ``U``:
    column j of L times row j of U updates the Schur complement, 2 |L_:j| |U_j:| flops."""
    lcount = np.diff(sp.csc_matrix(L).indptr) - 1
    ucount = np.diff(sp.csr_matrix(U).indptr) - 1
    return float(2.0 * np.dot(np.maximum(lcount, 0), np.maximum(ucount, 0)) + lcount.sum())


def factor(M, kind: str, *, perm_c: np.ndarray | None = None) -> Factors:
    """SuperLU factors of square sparse ``M`` for ``kind`` ``lu`` or ``cholesky``.

    ``perm_c`` reuses the column ordering of an earlier factorization of a matrix with the same
    pattern (``Factors.ordering`` of that one). Fails only on an exactly zero pivot
    (``DIVERGED_SINGULAR``) or, for ``cholesky``, a pivot that is not real and positive or a pivot
    SuperLU had to take off the diagonal (``DIVERGED_NOT_SPD``). ``info["min_pivot_ratio"]`` is
    ``min |u_jj| / max |u_jj|``.
    """
    if kind not in ("lu", "cholesky"):
        raise ValueError(f"SuperLU factors lu or cholesky, not {kind!r}")
    ordering_name = "reused" if perm_c is not None else ("MMD_AT_PLUS_A" if kind == "cholesky" else "COLAMD")
    info: dict[str, Any] = {"backend": "superlu", "ordering": ordering_name}
    try:
        lu = _splu(M, kind=kind, perm_c=perm_c)
    except RuntimeError as exc:
        # SuperLU stops only on an exactly zero pivot ("Factor is exactly singular").
        detail = " ".join(str(exc).split())
        return failed(info, Status.DIVERGED_SINGULAR,
                      f"{SINGULAR}: an exactly zero pivot (SuperLU: {detail}); {ADVICE}")
    # lu.L and lu.U build new CSC copies of SuperLU's supernodal factors at each access: once here
    L, U = lu.L, lu.U
    diag_u, dtype = U.diagonal(), L.dtype
    factor_nnz = int(L.nnz + U.nnz)
    info.update({"factor_nnz": factor_nnz, "fill_ratio": float(factor_nnz / max(M.nnz, 1)),
                 "factor_flops": lu_flops(L, U)})
    del L, U
    if kind == "cholesky":
        if np.iscomplexobj(diag_u) and np.any(np.abs(diag_u.imag) > 1e-8 * np.abs(diag_u)):
            return failed(info, Status.DIVERGED_NOT_SPD,
                          "the matrix is not Hermitian positive definite (complex pivots); use --method lu")
        negative = int(np.sum(np.real(diag_u) <= 0))
        if negative or not np.array_equal(lu.perm_r, lu.perm_c):
            return failed(info, Status.DIVERGED_NOT_SPD,
                          f"the matrix is not positive definite ({negative} non-positive pivots); {NOT_SPD_ADVICE}")
    magnitude = np.abs(diag_u)
    info["min_pivot_ratio"] = float(magnitude.min() / magnitude.max()) if magnitude.max(initial=0.0) > 0 else 0.0
    if not np.all(np.isfinite(diag_u)) or np.any(magnitude == 0):
        return failed(info, Status.DIVERGED_SINGULAR, f"{SINGULAR}: an exactly zero pivot; {ADVICE}")

    def solve(B: np.ndarray) -> np.ndarray:
        if np.iscomplexobj(B) and not np.issubdtype(dtype, np.complexfloating):
            # SuperLU solves only in its factors' dtype: real factors take the real and imaginary
            # parts as one real block of twice the columns.
            k = B.shape[1]
            parts = solve(np.ascontiguousarray(np.hstack([B.real, B.imag])))
            return parts[:, :k] + 1j * parts[:, k:]
        B = np.ascontiguousarray(B, dtype=dtype)
        if perm_c is None:
            return lu.solve(B)
        # The factored matrix was M[:, p] (and M[p][:, p] for cholesky); undo the permutations.
        rhs = B[perm_c] if kind == "cholesky" else B
        Y = lu.solve(np.ascontiguousarray(rhs))
        X = np.empty_like(Y)
        X[perm_c] = Y
        return X

    # SuperLU factors M Pc with column j of M moved to position perm_c[j]; the ordering is its inverse.
    ordering = perm_c if perm_c is not None else np.argsort(lu.perm_c)
    return Factors(solve, info, ordering=ordering)
