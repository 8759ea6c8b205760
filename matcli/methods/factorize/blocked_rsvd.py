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
Passes over A: ``2 q + 3``. Block Krylov (:func:`blocked_block_krylov_svd`) keeps every iterate
and orthonormalises them together by one more TSQR: ``2 q + 4`` passes.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import scipy.linalg as sla

from matcli.core.result import Callback, Result, Status, no_callback
from matcli.methods.factorize.signs import canonical_phases


def block_rows(A_block, Z, inner: list[np.ndarray] | None = None) -> np.ndarray:
    """The block's rows of the tall matrix a TSQR orthonormalises.

    ``inner`` None: ``A_i Z`` (Z n x l). Otherwise ``Z`` is a list of n x l matrices ``Z_t`` and
    ``inner`` the block's slices ``T_ti`` of their TSQRs: ``[Q(A_i Z_0) T_0i, Q(A_i Z_1) T_1i, ...]``,
    the block's rows of the orthonormal bases of every power iterate side by side (block Krylov).
    """
    if inner is None:
        return np.asarray(A_block @ Z)
    return np.hstack([block_basis(A_block, Z_t)[0] @ T_t for Z_t, T_t in zip(Z, inner)])


def block_basis(A_block, Z, inner: list[np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(Q_i, R_i)``: the Householder QR of :func:`block_rows` (r x c; Q_i r x min(r, c)).

    Deterministic: the same block and operands give the same bits, so a later pass can recompute ``Q_i``.
    """
    return np.linalg.qr(block_rows(A_block, Z, inner), mode="reduced")


def block_r(A_block, Z, inner: list[np.ndarray] | None = None) -> np.ndarray:
    """The R factor of the block's rows (pass 1 of a TSQR)."""
    return block_basis(A_block, Z, inner)[1]


def block_adjoint(A_block, Z, T: np.ndarray, inner: list[np.ndarray] | None = None) -> np.ndarray:
    """``A_i^H (Q_i T_i)`` (n x l): this block's share of ``A^H Q`` (pass 2 of a TSQR)."""
    Q, _ = block_basis(A_block, Z, inner)
    return _adjoint(A_block, Q @ T)


#: A sparse block with more (rows x columns) than this gets its share of the reconstruction error from
#: the Gram expansion instead of dense residual rows (whose cost would grow with m n, not with nnz).
EXACT_BLOCK_ENTRIES = 4_000_000


def block_finish(A_block, Z, T: np.ndarray, V: np.ndarray, s: np.ndarray, chunk_rows: int,
                 inner: list[np.ndarray] | None = None
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, float, float, bool]:
    """The block's rows of U (``Q_i T_i``, r x k) and its share of the certificate.

    Returns ``(U_i, ||A_i v_j - s_j u_ij||^2 per column j, A_i^H U_i, ||A_i - U_i diag(s) V^H||_F^2,
    ||A_i||_F^2, exact)``. ``exact``: the residual block was formed, ``chunk_rows`` rows at a time
    (dense r x n temporaries of a sparse block stay small); for a sparse block of more than
    :data:`EXACT_BLOCK_ENTRIES` entries (r x n) it is instead ``||A_i||^2 - 2 Re tr(S U_i^H A_i V) +
    tr((S U_i^H U_i S)(V^H V))``, exact in exact arithmetic (rounding ~eps ||A_i||^2: accurate while the
    relative error is above ~1e-7), at the cost of the products already made.
    """
    Q, _ = block_basis(A_block, Z, inner)
    U = Q @ T
    AV = np.asarray(A_block @ V)
    right = AV - U * s
    rows_total, n = U.shape[0], V.shape[0]
    if hasattr(A_block, "toarray") and rows_total * n > EXACT_BLOCK_ENTRIES:
        norm2 = _squared_norm(A_block.data)
        US = U * s
        cross = float(np.vdot(US, AV).real)
        gram = float(np.vdot(US.conj().T @ US, V.conj().T @ V).real)  # tr(P Q) = vdot(P, Q), P Q Hermitian
        return (U, np.einsum("ij,ij->j", right.conj(), right).real, _adjoint(A_block, U), norm2 - 2.0 * cross + gram,
                norm2, False)
    Vh = (V * s).conj().T
    error2 = norm2 = 0.0
    for start in range(0, rows_total, max(1, chunk_rows)):
        rows = A_block[start:start + chunk_rows]
        rows = rows.toarray() if hasattr(rows, "toarray") else np.asarray(rows)
        error2 += _squared_norm(rows - U[start:start + chunk_rows] @ Vh)
        norm2 += _squared_norm(rows)
    return U, np.einsum("ij,ij->j", right.conj(), right).real, _adjoint(A_block, U), error2, norm2, True


def _adjoint(A_block, X: np.ndarray) -> np.ndarray:
    return np.asarray(A_block.conj().T @ X) if np.iscomplexobj(A_block) else np.asarray(A_block.T @ X)


def _squared_norm(X: np.ndarray) -> float:
    return float(np.vdot(X, X).real)


def blocked_randomized_svd(problem, *, rank: int, oversample: int = 10, power_iters: int = 4,
                           rng: np.random.Generator, callback: Callback = no_callback, **_ignored: Any) -> Result:
    """Rank-``rank`` randomized SVD of a row-block matrix (subspace iteration, see the module).

    Parameters
    ----------
    problem : object with ``shape`` (m, n), ``dtype`` (float64 or complex128) and three passes over
        the blocks, each a map-reduce in block order: ``basis_r(Z, inners=None)`` (the blocks' R
        factors of :func:`block_rows`, a list), ``basis_adjoint(Z, Ts, inners=None)``
        (``sum_i A_i^H Q_i T_i``, for ``Ts`` the slices ``T_i`` of ``Q_s`` cut like the stacked R
        factors) and ``finish(Z, Ts, V, s, inners=None)`` (``(U (m x k), ||A v_j - s_j u_j||^2 (k),
        A^H U (n x k), ||A - U S V^H||_F^2, ||A||_F^2, how)``, ``how`` naming how the error was summed);
        ``inners`` is None or one list per block
        (the ``inner`` of :func:`block_rows`). E.g. :class:`matcli.jobs.factorize_remote.RowBlockMatrix`.
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
    l = _block_size(problem, rank, oversample, power_iters)
    info: dict[str, Any] = {"driver": "randomized subspace iteration over row blocks, each tall basis "
                                      "orthonormalised by TSQR", "block_size": l, "power_iterations": power_iters,
                            "passes_over_file": 2 * power_iters + 3}
    Zs, Tss, W = _subspace_iteration(problem, rng, l, rank, power_iters, callback, last_adjoint=True)
    if Zs is None:
        return Result(Status.DIVERGED_NAN, message="A has NaN/Inf values", info=info)
    return _ritz_finish(problem, W, Zs[-1], Tss[-1], None, rank, info,
                        f"randomized SVD over row blocks with {power_iters} power iterations (TSQR bases)")


def blocked_block_krylov_svd(problem, *, rank: int, oversample: int = 10, power_iters: int = 4,
                             rng: np.random.Generator, callback: Callback = no_callback,
                             **_ignored: Any) -> Result:
    """Rank-``rank`` randomized block Krylov SVD of a row-block matrix (Musco & Musco 2015).

    The power iterates ``Q_t = orth((A A^H)^t A Omega)``, t = 0..q, of :func:`blocked_randomized_svd`
    span the block Krylov space ``K = [A Omega, (A A^H) A Omega, ..., (A A^H)^q A Omega]``; each is
    kept implicitly (its Z_t and TSQR slices), and their concatenation is orthonormalised by one more
    TSQR whose blocks recompute ``[Q_0i T_0i, ..., Q_qi T_qi]`` (Householder: the nearly dependent
    iterates are handled stably, the basis may exceed K but never misses it). Rayleigh-Ritz on that
    basis as in :func:`blocked_randomized_svd`. Depth q is capped so that ``(q + 1) l <= m``.
    Passes over A: ``2 q + 4``.

    Parameters
    ----------
    problem, rank, oversample, rng, callback
        As in :func:`blocked_randomized_svd`.
    power_iters : int
        Krylov depth q.

    Returns
    -------
    Result
        As :func:`blocked_randomized_svd`.
    """
    l = _block_size(problem, rank, oversample, power_iters)
    m, _ = problem.shape
    depth = min(power_iters, m // l - 1)
    info: dict[str, Any] = {"driver": "randomized block Krylov over row blocks: the power iterates' TSQR bases "
                                      "side by side, orthonormalised by one more TSQR",
                            "block_size": l, "krylov_depth": depth, "basis_columns": (depth + 1) * l,
                            "passes_over_file": 2 * depth + 4}
    Zs, Tss, _ = _subspace_iteration(problem, rng, l, rank, depth, callback, last_adjoint=False)
    if Zs is None:
        return Result(Status.DIVERGED_NAN, message="A has NaN/Inf values", info=info)
    inners = [[Ts[i] for Ts in Tss] for i in range(len(Tss[0]))]
    Ts, _ = _tsqr(problem.basis_r(Zs, inners))
    W = problem.basis_adjoint(Zs, Ts, inners)
    return _ritz_finish(problem, W, Zs, Ts, inners, rank, info,
                        f"block Krylov SVD over row blocks of depth {depth} ({(depth + 1) * l} basis columns)")


def _block_size(problem, rank: int, oversample: int, power_iters: int) -> int:
    m, n = problem.shape
    if not 1 <= rank <= min(m, n):
        raise ValueError(f"rank must be in 1..min(m, n) = {min(m, n)}, got {rank}")
    if power_iters < 0 or oversample < 0:
        raise ValueError("power_iters and oversample must be >= 0")
    return min(rank + oversample, m, n)


def _subspace_iteration(problem, rng, l: int, rank: int, power_iters: int, callback: Callback, *,
                        last_adjoint: bool):
    """``Z_t`` and the TSQR slices ``T_t`` of ``Q_t = orth(A Z_t)`` for t = 0..q, and ``W = A^H Q_q``
    (None unless ``last_adjoint``); (None, None, None) when A has non-finite values."""
    _, n = problem.shape
    Z = rng.standard_normal((n, l)).astype(problem.dtype, copy=False)
    Zs: list[np.ndarray] = []
    Tss: list[list[np.ndarray]] = []
    previous, W = None, None
    for it in range(power_iters + 1):
        Ts, _ = _tsqr(problem.basis_r(Z))
        if Ts is None:
            return None, None, None
        Zs.append(Z)
        Tss.append(Ts)
        if it == power_iters and not last_adjoint:
            break
        W = problem.basis_adjoint(Z, Ts)
        if it == power_iters:
            break
        Z = sla.qr(W, mode="economic", check_finite=False)[0]
        ritz = sla.svdvals(W, check_finite=False)[:rank]
        change = math.inf if previous is None else float(np.max(np.abs(ritz - previous)) / (ritz[0] or 1.0))
        callback(it + 1, sigma_change=change)
        previous = ritz
    return Zs, Tss, W


def _ritz_finish(problem, W: np.ndarray, Z, Ts: list[np.ndarray], inners, rank: int, info: dict,
                 message: str) -> Result:
    """Rayleigh-Ritz from ``W = A^H Q`` (``W = Z_w R_w``, ``R_w^H = U_r S V_r^H``: ``U = Q U_r``,
    ``V = Z_w V_r``), the last pass (U and the certificate from A) and the metrics."""
    if not np.isfinite(W).all():
        return Result(Status.DIVERGED_NAN, message="A has NaN/Inf values", info=info)
    Zw, Rw = sla.qr(W, mode="economic", check_finite=False)
    Ur, s, Vrt = sla.svd(Rw.conj().T, full_matrices=False, check_finite=False)
    s, V = s[:rank], Zw @ Vrt[:rank].conj().T
    U, right2, AhU, error2, norm2, how = problem.finish(Z, [T @ Ur[:, :rank] for T in Ts], V, s, inners)
    U, Vt, metrics = finish_metrics(U, s, V, AhU, right2, error2, norm2)
    info = {**info, "reconstruction_error_method": how, "rank": rank}
    return Result(status=Status.CONVERGED_ITS, outputs={"U": U, "s": s, "Vt": Vt}, metrics=metrics,
                  iterations=int(info.get("krylov_depth", info.get("power_iterations", 0))), info=info,
                  message=message)


def finish_metrics(U: np.ndarray, s: np.ndarray, V: np.ndarray, AhU: np.ndarray, right2: np.ndarray,
                   error2: float, norm2: float) -> tuple[np.ndarray, np.ndarray, dict[str, float]]:
    """The sign convention and the certificate of triplets finished over the blocks.

    Parameters: ``U`` (m x k), ``s`` (k), ``V`` (n x k), ``AhU = A^H U`` (n x k), ``right2`` the
    squared ``||A v_j - s_j u_j||`` (k), ``error2 = ||A - U S V^H||_F^2`` and ``norm2 = ||A||_F^2``.
    Returns ``(U, Vt, metrics)``: U and ``Vt = V^H`` under
    :func:`~matcli.methods.factorize.signs.canonical_phases`; metrics ``reconstruction_error``,
    ``orthogonality_loss``, ``max_triplet_residual`` (over s_1) and ``frobenius_norm``.
    """
    k = s.size
    U, Vt, AhU = canonical_phases(U, V.conj().T, AhU)
    V = Vt.conj().T
    left = np.linalg.norm(AhU - V * s, axis=0)
    norm_A = math.sqrt(norm2)
    scale = float(s[0]) if s[0] > 0 else (norm_A or 1.0)
    eye = np.eye(k)
    metrics = {
        "reconstruction_error": math.sqrt(max(error2, 0.0)) / norm_A if norm_A > 0 else math.sqrt(error2),
        "orthogonality_loss": max(float(np.linalg.norm(U.conj().T @ U - eye)), float(np.linalg.norm(Vt @ V - eye))),
        "max_triplet_residual": float(np.max(np.maximum(np.sqrt(right2), left))) / scale,
        "frobenius_norm": norm_A,
    }
    return U, Vt, metrics


def _tsqr(parts: list[np.ndarray]) -> tuple[list[np.ndarray] | None, np.ndarray | None]:
    """The second TSQR level: ``[R_1; R_2; ...] = Q_s R``; returns Q_s cut like the stack, and R
    (None, None when a factor is not finite)."""
    stacked = np.vstack(parts)
    if not np.isfinite(stacked).all():
        return None, None
    Q_s, R = np.linalg.qr(stacked, mode="reduced")
    offsets = np.cumsum([0] + [part.shape[0] for part in parts])
    return [Q_s[offsets[i]:offsets[i + 1]] for i in range(len(parts))], R
