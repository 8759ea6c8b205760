"""Randomized SVD of a matrix held as row blocks: every tall basis orthonormalised by TSQR, never moved.

For A (m x n) in row blocks ``A_i`` and a thin n x l matrix Z, the tall basis ``Q = orth(A Z)`` is
never formed: by TSQR (Demmel, Grigori, Hoemmen, Langou 2012) ``A Z = Q R`` with ``Q = diag(Q_i) Q_s``,
where ``A_i Z = Q_i R_i`` (Householder, per block) and ``[R_1; R_2; ...] = Q_s R``. A block's rows of Q
are ``Q_i T_i`` with ``T_i`` its slice of ``Q_s``; a worker recomputes ``Q_i`` from ``A_i`` and Z (the
same LAPACK call, so the same bits) whenever it needs them. One pass returns the blocks' ``R_i``,
the next ``A^H Q = sum_i A_i^H (Q_i T_i)``; only n x l and l x l matrices reach the client.

Subspace iteration (Halko, Martinsson, Tropp 2011, Alg. 4.4) with both products re-orthonormalised:
``Z_0 = Omega`` (Gaussian, n x l, drawn from ``rng`` on the client: the same for any blocking);
``Q_t = orth(A Z_t)``, ``W_t = A^H Q_t``, ``Z_{t+1} = orth(W_t)``. Rayleigh-Ritz on range(Q_q):
``W_q = Z_w R_w``, ``R_w^H = U_r diag(s) V_r^H`` gives ``Q_q^H A = U_r diag(s) (Z_w V_r)^H``, so
``U = Q_q U_r``, ``V = Z_w V_r``. A last pass forms U block by block and measures the certificate
against A itself: ``||A v_j - s_j u_j||^2``, ``A^H U`` and ``||A_i - U_i diag(s) V^H||_F^2`` per block.
Passes over A: ``2 q + 3``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import scipy.linalg as sla

from matcli.core.result import Callback, Result, Status, no_callback
from matcli.methods.factorize.signs import canonical_phases


def block_basis(A_block, Z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(Q_i, R_i)``: the Householder QR of ``A_i Z`` (r x l; Q_i r x min(r, l), R_i min(r, l) x l).

    Deterministic: the same block and Z give the same bits, so a later pass can recompute ``Q_i``.
    """
    Y = np.asarray(A_block @ Z)
    return np.linalg.qr(Y, mode="reduced")


def block_r(A_block, Z: np.ndarray) -> np.ndarray:
    """The R factor of ``A_i Z`` (pass 1 of a TSQR)."""
    return block_basis(A_block, Z)[1]


def block_adjoint(A_block, Z: np.ndarray, T: np.ndarray) -> np.ndarray:
    """``A_i^H (Q_i T_i)`` (n x l): this block's share of ``A^H Q`` (pass 2 of a TSQR)."""
    Q, _ = block_basis(A_block, Z)
    return _adjoint(A_block, Q @ T)


def block_finish(A_block, Z: np.ndarray, T: np.ndarray, V: np.ndarray, s: np.ndarray,
                 chunk_rows: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, float, float]:
    """The block's rows of U (``Q_i T_i``, r x k) and its share of the certificate.

    Returns ``(U_i, ||A_i v_j - s_j u_ij||^2 per column j, A_i^H U_i, ||A_i - U_i diag(s) V^H||_F^2,
    ||A_i||_F^2)``; the residual block is formed ``chunk_rows`` rows at a time (dense r x n
    temporaries of a sparse block stay small).
    """
    Q, _ = block_basis(A_block, Z)
    U = Q @ T
    right = np.asarray(A_block @ V) - U * s
    Vh = (V * s).conj().T
    error2 = norm2 = 0.0
    for start in range(0, U.shape[0], max(1, chunk_rows)):
        rows = A_block[start:start + chunk_rows]
        rows = rows.toarray() if hasattr(rows, "toarray") else np.asarray(rows)
        error2 += _squared_norm(rows - U[start:start + chunk_rows] @ Vh)
        norm2 += _squared_norm(rows)
    return U, np.einsum("ij,ij->j", right.conj(), right).real, _adjoint(A_block, U), error2, norm2


def _adjoint(A_block, X: np.ndarray) -> np.ndarray:
    return np.asarray(A_block.conj().T @ X) if np.iscomplexobj(A_block) else np.asarray(A_block.T @ X)


def _squared_norm(X: np.ndarray) -> float:
    return float(np.vdot(X, X).real)


def blocked_randomized_svd(problem, *, rank: int, oversample: int = 10, power_iters: int = 4,
                           rng: np.random.Generator, callback: Callback = no_callback, **_ignored: Any) -> Result:
    """Rank-``rank`` randomized SVD of a row-block matrix (see the module for the algorithm).

    Parameters
    ----------
    problem : object with ``shape`` (m, n), ``dtype`` (float64 or complex128) and three passes over
        the blocks, each a map-reduce in block order: ``basis_r(Z)`` (the blocks' ``R_i`` of
        ``A_i Z``, a list), ``basis_adjoint(Z, Ts)`` (``sum_i A_i^H Q_i T_i``, n x l, for ``Ts`` the
        slices ``T_i`` of ``Q_s`` cut like the stacked ``R_i``) and ``finish(Z, Ts, V, s)``
        (``(U (m x k), ||A v_j - s_j u_j||^2 (k), A^H U (n x k), ||A - U S V^H||_F^2, ||A||_F^2)``),
        e.g. :class:`matcli.jobs.factorize_remote.RowBlockMatrix`.
    rank : int
        Number of triplets k, ``1 <= k <= min(m, n)``.
    oversample : int
        Extra columns p of the sketch; ``l = min(k + p, m, n)``.
    power_iters : int
        Subspace iterations q (passes over A: ``2 q + 3``).
    rng : numpy.random.Generator
        Draws the n x l Gaussian start on the client, so the answer depends on the seed, not on the
        blocks or the workers.
    callback : Callback
        ``callback(it, sigma_change=...)`` after each power iteration.

    Returns
    -------
    Result
        outputs ``U`` (m x k, orthonormal), ``s`` (k, descending), ``Vt`` (k x n), with the sign
        convention of every matcli SVD; status ``converged_its`` (``diverged_nan`` for non-finite
        values). Metrics ``reconstruction_error`` (exact, summed over the blocks),
        ``orthogonality_loss``, ``max_triplet_residual`` (from A, over s_1) and ``frobenius_norm``.
    """
    m, n = problem.shape
    if not 1 <= rank <= min(m, n):
        raise ValueError(f"rank must be in 1..min(m, n) = {min(m, n)}, got {rank}")
    if power_iters < 0 or oversample < 0:
        raise ValueError("power_iters and oversample must be >= 0")
    l = min(rank + oversample, m, n)
    dtype = np.dtype(problem.dtype)
    info: dict[str, Any] = {"driver": "randomized subspace iteration over row blocks, each tall basis "
                                      "orthonormalised by TSQR", "block_size": l, "power_iterations": power_iters,
                            "passes_over_file": 2 * power_iters + 3}
    Z = rng.standard_normal((n, l)).astype(dtype, copy=False)
    previous = None
    for it in range(power_iters + 1):
        Ts, _ = _tsqr(problem.basis_r(Z))
        if Ts is None:
            return Result(Status.DIVERGED_NAN, message="A has NaN/Inf values", info=info)
        W = problem.basis_adjoint(Z, Ts)
        if it == power_iters:
            break
        Z = sla.qr(W, mode="economic", check_finite=False)[0]
        ritz = sla.svdvals(W, check_finite=False)[:rank]
        change = math.inf if previous is None else float(np.max(np.abs(ritz - previous)) / (ritz[0] or 1.0))
        callback(it + 1, sigma_change=change)
        previous = ritz
    if not np.isfinite(W).all():
        return Result(Status.DIVERGED_NAN, message="A has NaN/Inf values", info=info)
    Zw, Rw = sla.qr(W, mode="economic", check_finite=False)
    Ur, s, Vrt = sla.svd(Rw.conj().T, full_matrices=False, check_finite=False)
    s, V = s[:rank], Zw @ Vrt[:rank].conj().T
    U, right2, AhU, error2, norm2 = problem.finish(Z, [T @ Ur[:, :rank] for T in Ts], V, s)
    U, Vt, AhU = canonical_phases(U, V.conj().T, AhU)
    V = Vt.conj().T
    left = np.linalg.norm(AhU - V * s, axis=0)
    norm_A = math.sqrt(norm2)
    scale = float(s[0]) if s[0] > 0 else (norm_A or 1.0)
    eye = np.eye(rank)
    metrics = {
        "reconstruction_error": math.sqrt(max(error2, 0.0)) / norm_A if norm_A > 0 else math.sqrt(error2),
        "orthogonality_loss": max(float(np.linalg.norm(U.conj().T @ U - eye)), float(np.linalg.norm(Vt @ V - eye))),
        "max_triplet_residual": float(np.max(np.maximum(np.sqrt(right2), left))) / scale,
        "frobenius_norm": norm_A,
    }
    info["reconstruction_error_method"] = "exact (||A_i - U_i S V^H||_F summed over the blocks)"
    return Result(status=Status.CONVERGED_ITS, outputs={"U": U, "s": s, "Vt": Vt}, metrics=metrics,
                  iterations=power_iters, info=info,
                  message=f"randomized SVD over row blocks with {power_iters} power iterations (TSQR bases)")


def _tsqr(parts: list[np.ndarray]) -> tuple[list[np.ndarray] | None, np.ndarray | None]:
    """The second TSQR level: ``[R_1; R_2; ...] = Q_s R``; returns Q_s cut like the stack, and R
    (None, None when a factor is not finite)."""
    stacked = np.vstack(parts)
    if not np.isfinite(stacked).all():
        return None, None
    Q_s, R = np.linalg.qr(stacked, mode="reduced")
    offsets = np.cumsum([0] + [part.shape[0] for part in parts])
    return [Q_s[offsets[i]:offsets[i + 1]] for i in range(len(parts))], R
