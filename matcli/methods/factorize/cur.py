"""CUR decomposition ``A ~ C U R`` with ``C = A[:, J]``, ``R = A[I, :]`` and ``U = C^+ A R^+``.

Columns and rows are chosen from the top singular vectors, either by their rank-k leverage scores
(Mahoney & Drineas 2009) or by QR with column pivoting on ``V_k^H`` and ``U_k^H`` (Sorensen &
Embree 2016, DEIM-like). The core ``C^+ A R^+`` is the Frobenius-optimal one for the chosen C, R.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp

from matcli.core.result import Callback, Result, Status, no_callback
from matcli.methods.factorize.metrics import EXACT_ENTRIES, frobenius_norm, low_rank_error

#: ``min(m, n)`` up to which (with at most ``EXACT_ENTRIES`` entries) the singular vectors come from
#: a dense SVD rather than the randomized one.
_DENSE_SVD_ORDER = 1500


def _singular_vectors(A, rank: int | None, tol: float | None, power_iters: int, oversample: int,
                      rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """Top singular triplets: ``rank`` of them, or the smallest number meeting ``tol`` (Frobenius)."""
    m, n = A.shape
    if m * n <= EXACT_ENTRIES and min(m, n) <= _DENSE_SVD_ORDER:
        dense = A.toarray() if sp.issparse(A) else np.asarray(A)
        U, s, Vt = sla.svd(dense, full_matrices=False, check_finite=False)
        if rank is None:
            tail = np.sqrt(np.maximum(np.sum(s**2) - np.cumsum(s**2), 0.0))
            meets = np.flatnonzero(tail <= tol * np.sqrt(np.sum(s**2)))
            rank = int(meets[0]) + 1 if meets.size else s.size
        return U[:, :rank], s[:rank], Vt[:rank], "dense SVD"
    from matcli.methods.factorize.rsvd import adaptive_svd, top_triplets

    if rank is None:
        res = adaptive_svd(A, tol=tol, power_iters=1, rng=rng)
        return res.outputs["U"], res.outputs["s"], res.outputs["Vt"], "adaptive randomized SVD"
    U, s, Vt = top_triplets(A, rank, rng, power_iters=power_iters, oversample=oversample)
    return U, s, Vt, "randomized SVD"


def _assemble(A, cols: np.ndarray, rows: np.ndarray, U_k, s_k, Vt_k, rng, how: str, info: dict,
              message: str) -> Result:
    if sp.issparse(A):
        C = sp.csc_matrix(A[:, cols])
        R = sp.csr_matrix(A[rows, :])
        Cd, Rd = C.toarray(), R.toarray()
    else:
        C = np.ascontiguousarray(A[:, cols])
        R = np.ascontiguousarray(A[rows, :])
        Cd, Rd = C, R
    core = sla.pinv(Cd, check_finite=False) @ (A @ sla.pinv(Rd, check_finite=False))
    norm_A = frobenius_norm(A)
    err, err_how = low_rank_error(A, Cd @ core, Rd, rng, norm_A)
    svd_err, _ = low_rank_error(A, U_k * s_k, Vt_k, rng, norm_A)
    metrics = {"reconstruction_error": err, "svd_error": svd_err,
               "error_ratio_to_svd": err / svd_err if svd_err > 0 else (1.0 if err == 0 else float("inf"))}
    outputs = {"C": C, "U": core, "R": R, "col_indices": cols.astype(np.int64), "row_indices": rows.astype(np.int64)}
    return Result(status=Status.CONVERGED_DIRECT, outputs=outputs, metrics=metrics,
                  info={**info, "reconstruction_error_method": err_how, "singular_vectors": how,
                        "rank": int(s_k.size), "columns": int(cols.size), "rows": int(rows.size)},
                  message=message)


def cur_leverage(A, *, rank: int | None, tol: float | None = None, extra: int = 0, sampling: str = "top",
                 power_iters: int = 4, oversample: int = 10, rng: np.random.Generator,
                 callback: Callback = no_callback) -> Result:
    """CUR with ``rank + extra`` columns and rows chosen by rank-k leverage scores.

    Parameters
    ----------
    A : (m, n) ndarray or sparse matrix
    rank : int or None
        ``k``; None chooses the smallest k whose truncated SVD meets ``tol`` (relative Frobenius).
    extra : int
        Additional columns/rows beyond k (capped by the matrix size).
    sampling : {"top", "random"}
        Take the largest scores, or sample without replacement with probability proportional to them.
    power_iters, oversample : int
        Settings of the randomized SVD used for large matrices.

    Returns
    -------
    Result
        outputs ``C`` (m x c, sparse if A is), ``U`` (c x r core), ``R`` (r x n), ``col_indices``,
        ``row_indices``; metrics ``reconstruction_error`` of C U R, ``svd_error`` of the rank-k
        truncated SVD and their ratio.
    """
    U_k, s_k, Vt_k, how = _singular_vectors(A, rank, tol, power_iters, oversample, rng)
    k = s_k.size
    m, n = A.shape
    col_scores = np.sum(np.abs(Vt_k) ** 2, axis=0)
    row_scores = np.sum(np.abs(U_k) ** 2, axis=1)
    c, r = min(k + extra, n), min(k + extra, m)
    if sampling == "random":
        cols = _sample(col_scores, c, rng)
        rows = _sample(row_scores, r, rng)
    else:
        cols = np.argsort(-col_scores, kind="stable")[:c]
        rows = np.argsort(-row_scores, kind="stable")[:r]
    return _assemble(A, np.sort(cols), np.sort(rows), U_k, s_k, Vt_k, rng, how,
                     {"selection": f"leverage scores ({sampling})"},
                     f"CUR by rank-{k} leverage scores: {c} columns, {r} rows")


def _sample(scores: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    positive = np.flatnonzero(scores > 0)
    if positive.size <= count:
        rest = np.setdiff1d(np.arange(scores.size), positive)[: count - positive.size]
        return np.concatenate([positive, rest])
    p = scores[positive] / scores[positive].sum()
    return positive[rng.choice(positive.size, size=count, replace=False, p=p)]


def cur_pivoted_qr(A, *, rank: int | None, tol: float | None = None, extra: int = 0, power_iters: int = 4,
                   oversample: int = 10, rng: np.random.Generator, callback: Callback = no_callback) -> Result:
    """CUR with columns/rows chosen by QR with column pivoting on the top singular vectors.

    The first ``c = rank + extra`` pivots of ``qr(V_c^H, pivoting=True)`` give the columns and those
    of ``qr(U_c^H, pivoting=True)`` the rows, where ``U_c, V_c`` are the top ``c`` singular vectors.
    Deterministic given the singular vectors. Parameters and returns as :func:`cur_leverage`.
    """
    m, n = A.shape
    if rank is None:
        U_k, s_k, Vt_k, how = _singular_vectors(A, None, tol, power_iters, oversample, rng)
        rank = s_k.size
    c = min(rank + extra, m, n)
    U_c, s_c, Vt_c, how = _singular_vectors(A, c, None, power_iters, oversample, rng)
    cols = sla.qr(Vt_c, mode="r", pivoting=True, check_finite=False)[1][:c]
    rows = sla.qr(U_c.conj().T, mode="r", pivoting=True, check_finite=False)[1][:c]
    return _assemble(A, np.sort(cols), np.sort(rows), U_c[:, :rank], s_c[:rank], Vt_c[:rank], rng, how,
                     {"selection": "pivoted QR on singular vectors"},
                     f"CUR by pivoted QR on {c} singular vectors: {c} columns, {c} rows")
