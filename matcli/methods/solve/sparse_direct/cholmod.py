"""SuiteSparse CHOLMOD through ``scikit-sparse`` (>= 0.5, ``sksparse.cholmod``) as a sparse direct
backend for Cholesky (extra ``matcli[cholmod]``).

scikit-sparse 0.5 builds against SuiteSparse >= 7 (Debian bookworm's libsuitesparse-dev 5.12 is too
old for it: the build fails on CHOLMOD's single-precision fields). CHOLMOD computes
``L L^H = A[p][:, p]`` (supernodal where that pays), with the fill-reducing ordering it chooses itself
(AMD, then METIS if AMD fills much); a non-positive pivot stops it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from matcli.core.errors import UsageError
from matcli.core.result import Status
from matcli.methods.solve.sparse_direct.common import NOT_SPD_ADVICE, Factors, failed


def _module():
    try:
        from sksparse import cholmod
    except ImportError as exc:
        raise UsageError(f"the cholmod backend needs scikit-sparse ({' '.join(str(exc).split())}); install "
                         "SuiteSparse >= 7 headers, then the extra: pip install 'matcli[cholmod]'") from None
    return cholmod


def cholesky_flops(L) -> float:
    """Flops of a Cholesky factorization with factor ``L``: sum over columns of ``c_j^2`` for ``c_j``
    the entries of column j (George and Liu's count, within a factor of the exact one)."""
    counts = np.diff(sp.csc_matrix(L).indptr).astype(np.float64)
    return float(counts @ counts)


def factor_with_permutation(M) -> tuple[Any, sp.csc_matrix | None, np.ndarray | None, str]:
    """CHOLMOD's factor object, ``L`` (CSC, lower) and ``p`` with ``L L^H = M[p][:, p]`` of Hermitian
    ``M``; ``(None, None, None, message)`` when ``M`` is not positive definite."""
    cholmod = _module()
    try:
        handle = cholmod.cho_factor(sp.csc_array(M), order="default", lower=True)
    except cholmod.CholmodNotPositiveDefiniteError as exc:
        return None, None, None, " ".join(str(exc).split())
    except cholmod.CholmodOutOfMemoryError:
        raise MemoryError("CHOLMOD ran out of memory") from None
    return handle, sp.csc_matrix(handle.get_factor()), np.asarray(handle.get_perm(), dtype=np.int64), ""


def factor(M, kind: str) -> Factors:
    """CHOLMOD factors of square sparse Hermitian ``M``; ``kind`` must be ``cholesky``.

    ``DIVERGED_NOT_SPD`` (no solve) when a pivot is not positive. ``info["factor_nnz"]`` counts the
    entries of L, ``fill_ratio`` = ``nnz(L) / nnz(M)``, ``factor_memory_bytes`` the memory of L in
    CSC form (values and row indices).
    """
    if kind != "cholesky":
        raise UsageError(f"the cholmod backend factors cholesky only, not {kind}; use pardiso or superlu")
    info: dict[str, Any] = {"backend": "cholmod", "ordering": "CHOLMOD default (AMD, METIS if better)"}
    handle, L, _, problem = factor_with_permutation(M)
    if handle is None:
        return failed(info, Status.DIVERGED_NOT_SPD,
                      f"the matrix is not positive definite (CHOLMOD: {problem}); {NOT_SPD_ADVICE}")
    info.update({"factor_nnz": int(L.nnz), "fill_ratio": float(L.nnz / max(M.nnz, 1)),
                 "factor_flops": cholesky_flops(L),
                 "factor_memory_bytes": int(L.data.nbytes + L.indices.nbytes + L.indptr.nbytes)})

    def solve(B: np.ndarray) -> np.ndarray:
        return np.asarray(handle.solve(np.asarray(B))).reshape(B.shape)

    return Factors(solve, info)
