"""The normalisers every solve starts from, and the residual metrics every solve reports.

Like scipy's ``make_system``: the setup factories and solvers call :func:`as_matrix` (every solve
method computes in double precision: float64, or complex128 for complex input, whatever the input
dtype: float32, float64, complex64, complex128, integer or bool), kernels call :func:`as_block` so
they can assume a 2-D right-hand side block of that dtype, and :func:`solution_metrics` so every
method reports the same evidence of correctness.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from matcli.core.lazy_sparse import sp
from matcli.core.result import Result, Status


def compute_dtype(*arrays) -> np.dtype:
    """The precision every solve method computes in for these inputs: complex128 when any of them is
    complex, else float64. Raises ValueError for dtypes double precision cannot hold (extended
    precision, objects, strings)."""
    kinds = [np.dtype(a.dtype) for a in arrays if a is not None]
    for dtype in kinds:
        if dtype.kind not in "biufc" or (dtype.kind in "fc" and dtype.itemsize > (16 if dtype.kind == "c" else 8)):
            raise ValueError(f"values of dtype {dtype} cannot be solved in double precision; "
                             "convert them to float64 or complex128")
    return np.dtype(np.complex128 if any(d.kind == "c" for d in kinds) else np.float64)


def as_matrix(A):
    """``A`` (dense array or ``scipy.sparse`` matrix, any shape) with values of :func:`compute_dtype`.

    The same object when it already has that dtype (no copy), else a converted copy of the same
    storage. SuperLU (sparse LU, ILU) and LAPACK work in their input's precision and SuperLU
    refuses a right-hand side of another dtype, so a float32 or complex64 matrix reaching them
    unconverted either raised on a cast (sparse) or silently solved in single precision (dense).
    """
    if not sp.issparse(A):
        A = np.asarray(A)
    dtype = compute_dtype(A)
    if A.dtype == dtype:
        return A
    return A.astype(dtype) if sp.issparse(A) else np.asarray(A, dtype=dtype)


def as_block(A, B, x0=None) -> tuple[np.ndarray, np.ndarray, bool]:
    """Return ``(B2, X0, was_vector)``: ``B`` as an (m, k) array of the working dtype, ``X0`` (n, k).

    The working dtype is complex128 when ``A``, ``B`` or ``x0`` is complex, else float64. ``X0`` is zeros
    when ``x0`` is None. Raises ValueError on incompatible shapes.
    """
    m, n = A.shape
    B = np.asarray(B)
    was_vector = B.ndim == 1
    B2 = B.reshape(-1, 1) if was_vector else B
    if B2.ndim != 2 or B2.shape[0] != m:
        raise ValueError(f"right-hand side has shape {B.shape}, expected ({m},) or ({m}, k)")
    dtype = compute_dtype(A, B2, None if x0 is None else np.asarray(x0))
    B2 = np.ascontiguousarray(B2, dtype=dtype)
    if x0 is None:
        X0 = np.zeros((n, B2.shape[1]), dtype=dtype)
    else:
        X0 = np.array(x0, dtype=dtype).reshape(n, -1)
        if X0.shape[1] != B2.shape[1]:
            raise ValueError(f"initial guess has {X0.shape[1]} columns, right-hand side {B2.shape[1]}")
    return B2, X0, was_vector


def col_dots(X: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """Column-wise inner products ``x_j^H y_j`` of two (n, k) blocks, shape (k,)."""
    if np.iscomplexobj(X):
        return np.einsum("ij,ij->j", X.conj(), Y)
    return np.einsum("ij,ij->j", X, Y)


def col_norms(X: np.ndarray) -> np.ndarray:
    """Column 2-norms of an (n, k) block, shape (k,)."""
    return np.sqrt(np.abs(col_dots(X, X)))


def abs_row_sums(A) -> np.ndarray:
    """Row sums of |A| (dense or sparse), without forming |A| for CSR input."""
    if sp.issparse(A):
        if A.format != "csr":
            return np.asarray(abs(A).sum(axis=1)).ravel()
        sums = np.zeros(A.shape[0])
        filled = A.indptr[1:] > A.indptr[:-1]
        if A.nnz:
            # one pass over the values; reduceat over the non-empty rows only (strictly increasing starts)
            sums[filled] = np.add.reduceat(np.abs(A.data[:A.indptr[-1]]), A.indptr[:-1][filled])
        return sums
    return np.abs(A).sum(axis=1)


def inf_norm(A) -> float:
    """``||A||_inf`` (max absolute row sum) of a dense array or sparse matrix."""
    return float(abs_row_sums(A).max()) if A.shape[0] else 0.0


def solution_metrics(A, X: np.ndarray, B: np.ndarray, norm_A: float | None = None,
                     least_squares: bool = False) -> dict[str, float]:
    """Evidence of correctness of ``X`` for ``A X = B`` (2-D blocks), maxima over the columns.

    ``relative_residual``: max_j ||b_j - A x_j||_2 / ||b_j||_2 (the absolute residual for b_j = 0).
    ``backward_error``: max_j ||r_j||_inf / (||A||_inf ||x_j||_inf + ||b_j||_inf), the normwise
    (Rigal-Gaches) backward error: the smallest relative perturbation of A and b for which x_j is
    exact. For rectangular A (or ``least_squares``) also ``normal_residual``: max_j ||A^H r_j|| / (||A||_F (||A||_F ||x_j|| +
    ||b_j||)), the least-squares optimality test (0 at the least-squares solution). It is scaled like a
    backward error, so a backward-stable least-squares solver reaches a small multiple of eps whatever
    the size of the optimal residual, and LSQR/LSMR's stop ``||A^H r|| <= atol ||A|| ||r||`` (with their
    estimate ||A|| <= ||A||_F and ||r|| <= ||b||) implies ``normal_residual <= atol``.
    """
    R = B - A @ X
    rnorm = col_norms(R)
    bnorm = col_norms(B)
    rel = np.where(bnorm > 0, rnorm / np.where(bnorm > 0, bnorm, 1.0), rnorm)
    norm_A = inf_norm(A) if norm_A is None else norm_A
    denom = norm_A * np.abs(X).max(axis=0, initial=0.0) + np.abs(B).max(axis=0, initial=0.0)
    r_inf = np.abs(R).max(axis=0, initial=0.0)
    back = np.where(denom > 0, r_inf / np.where(denom > 0, denom, 1.0), r_inf)
    metrics = {
        "relative_residual": float(rel.max(initial=0.0)),
        "backward_error": float(back.max(initial=0.0)),
    }
    if least_squares or A.shape[0] != A.shape[1]:
        metrics["normal_residual"] = normal_residual(A, X, B, R, bnorm)
    return metrics


def normal_residual(A, X: np.ndarray, B: np.ndarray, R: np.ndarray, bnorm: np.ndarray) -> float:
    """max_j ||A^H r_j|| / (||A||_F (||A||_F ||x_j|| + ||b_j||)) for residuals ``R = B - A X`` (see
    :func:`solution_metrics`); 0 where the denominator is 0 (A = 0, or x = b = 0)."""
    AhR = A.conj().T @ R if np.iscomplexobj(A) else A.T @ R
    norm_F = float(np.sqrt(np.vdot(A.data, A.data).real)) if sp.issparse(A) else float(np.linalg.norm(A))
    scale = norm_F * (norm_F * col_norms(X) + bnorm)
    normal = np.where(scale > 0, col_norms(AhR) / np.where(scale > 0, scale, 1.0), 0.0)
    return float(normal.max(initial=0.0))


def finish(A, X: np.ndarray, B: np.ndarray, was_vector: bool, status: Status, iterations: int,
           message: str = "", info: dict[str, Any] | None = None,
           column_iterations: np.ndarray | None = None) -> Result:
    """Build the :class:`Result` of a solve: output ``x`` ((n,) for a vector right-hand side, else
    (n, k)), metrics from :func:`solution_metrics` plus ``iterations``; ``normal_residual`` also for a
    square system when the method stopped on its least-squares test (``converged_atol``)."""
    metrics = solution_metrics(A, X, B, least_squares=status == Status.CONVERGED_ATOL)
    metrics["iterations"] = float(iterations)
    info = dict(info or {})
    if column_iterations is not None and column_iterations.size > 1:
        info["column_iterations"] = [int(v) for v in column_iterations]
    x = X[:, 0] if was_vector else X
    return Result(status=status, outputs={"x": x}, metrics=metrics, iterations=int(iterations),
                  info=info, message=message)
