"""Truncated SVD of a tall matrix held as row blocks, by TSQR: exact to rounding in three passes.

For A (m x n, m >= n) read as row blocks ``A_i``: each block's R factor ``R_i`` (pass 1), stacked and
factored again, ``[R_1; R_2; ...] = Q_s R``, gives ``A = Q R`` with ``Q = diag(Q_i) Q_s`` orthonormal
(Demmel, Grigori, Hoemmen, Langou 2012). The SVD of the small R, ``R = U_R diag(s) V^T``, is A's:
``A = (Q U_R) diag(s) V^T``. Pass 2 forms the k left vectors block by block, ``U_i = Q_i (Q_s U_R)_i``,
each worker recomputing its block's Householder Q (the same LAPACK call as pass 1, so the same R_i);
the columns are orthonormal to rounding whatever the singular values. Pass 3 certifies the triplets
from A itself: ``||A v_j - s_j u_j||`` and ``||A^T u_j - s_j v_j||`` (one sum over the blocks).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from matcli.core.result import Callback, Result, Status, no_callback
from matcli.methods.factorize.signs import canonical_phases


#: Most columns: the client holds one n x n R factor per block and the n x n SVD.
MAX_COLUMNS = 2000


def _dense(A_block) -> np.ndarray:
    return A_block.toarray() if hasattr(A_block, "toarray") else np.asarray(A_block)


def block_r(A_block) -> np.ndarray:
    """The R factor (min(r, n) x n) of one block (r rows, dense or sparse, real or complex) by
    Householder QR."""
    return np.linalg.qr(_dense(A_block), mode="r")


def block_q_times(A_block, W_block: np.ndarray) -> np.ndarray:
    """``Q_i W_i`` with ``Q_i`` the block's Householder Q (the R of :func:`block_r` belongs to it)."""
    Q, _ = np.linalg.qr(_dense(A_block), mode="reduced")
    return Q @ W_block


def rank_for_tolerance(s: np.ndarray, tol: float) -> int:
    """Smallest k with ``||A - A_k||_F <= tol ||A||_F`` (``A_k`` the best rank-k approximation)."""
    total = float(np.sum(s**2))
    if total == 0.0:
        return 1
    tail = np.concatenate([np.cumsum((s**2)[::-1])[::-1], [0.0]])  # tail[k] = sum_{i >= k} s_i^2
    return max(1, int(np.argmax(np.sqrt(tail / total) <= tol)))


def tsqr_svd(problem, *, rank: int | None = None, tol: float | None = None, rng: np.random.Generator | None = None,
             callback: Callback = no_callback, **_ignored: Any) -> Result:
    """The top ``rank`` singular triplets of a tall row-block matrix (``rank`` None: chosen by ``tol``).

    Parameters
    ----------
    problem : object with ``shape`` (m, n), m >= n; ``r_factors()`` (the blocks' R factors in block
        order; one pass), ``q_times(parts)`` (the blocks' ``Q_i W_i`` for W cut like the stacked R factors,
        concatenated: (m, k); one pass) and ``certify(U, V, s)`` (``(||A v_j - s_j u_j||^2`` per column,
        ``A^H U``); one pass), e.g. :class:`matcli.jobs.factorize_remote.RowBlockMatrix`.
    rank : k in 1..n, or None with ``tol``: the smallest k whose relative Frobenius error is <= tol.
    tol : see ``rank``; unused with an integer rank.
    rng, callback : unused (deterministic, no iterations).

    Returns
    -------
    Result
        outputs ``U`` (m x k), ``s`` (k, descending), ``Vt`` (k x n; ``V^H`` for complex A), with the sign
        convention of every
        matcli SVD (:func:`~matcli.methods.factorize.signs.canonical_phases`); status ``converged_direct``
        (``diverged_nan`` for non-finite values). Metrics ``reconstruction_error`` (exact, from all n
        singular values), ``orthogonality_loss``, ``max_triplet_residual`` (from A, over s_1),
        ``frobenius_norm``.
    """
    m, n = problem.shape
    if m < n:
        raise ValueError(f"TSQR needs a tall matrix (m >= n), got {m}x{n}; factorize the transpose")
    parts = problem.r_factors()
    stacked = np.vstack(parts)
    info: dict[str, Any] = {"driver": "TSQR over row blocks (geqrf per block, then of the stacked R factors), "
                                      "SVD of R", "passes_over_file": 3}
    if not np.isfinite(stacked).all():
        return Result(Status.DIVERGED_NAN, message="A has NaN/Inf values", info=info)
    Q_s, R = np.linalg.qr(stacked, mode="reduced")
    U_R, s, Vt = np.linalg.svd(R)
    k = rank if rank is not None else rank_for_tolerance(s, float(tol if tol is not None else 1e-2))
    if not 1 <= k <= n:
        raise ValueError(f"rank must be in 1..n = {n}, got {k}")
    W = Q_s @ U_R[:, :k]
    offsets = np.cumsum([0] + [part.shape[0] for part in parts])
    U = problem.q_times([W[offsets[i]:offsets[i + 1]] for i in range(len(parts))])
    s_k, Vt_k = s[:k], Vt[:k]
    U, Vt_k = canonical_phases(U, Vt_k)
    V = Vt_k.conj().T
    right2, AhU = problem.certify(U, V, s_k)
    left = np.linalg.norm(AhU - V * s_k, axis=0)
    norm_A = float(np.linalg.norm(s))
    scale = float(s[0]) if s[0] > 0 else (norm_A or 1.0)
    eye = np.eye(k)
    metrics = {
        "reconstruction_error": float(math.sqrt(float(np.sum(s[k:] ** 2)))) / norm_A if norm_A > 0 else 0.0,
        "orthogonality_loss": max(float(np.linalg.norm(U.conj().T @ U - eye)),
                                  float(np.linalg.norm(Vt_k @ V - eye))),
        "max_triplet_residual": float(np.max(np.maximum(np.sqrt(right2), left))) / scale,
        "frobenius_norm": norm_A,
    }
    info["rank_rule"] = "--rank" if rank is not None else f"smallest rank with relative Frobenius error <= {tol:g}"
    return Result(status=Status.CONVERGED_DIRECT, outputs={"U": U, "s": s_k, "Vt": Vt_k}, metrics=metrics,
                  iterations=0, info=info, message=f"{k} singular triplets by TSQR over row blocks (exact SVD of R)")
