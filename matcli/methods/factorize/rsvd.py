"""Randomized truncated SVD: subspace (power) iteration, block Krylov, and adaptive rank.

All three touch ``A`` only through products ``A @ X`` and ``A^H @ X`` with thin dense blocks, so
sparse matrices are never densified. The last product of every method is reused for the
Rayleigh-Ritz step: if ``A^H Q = Z R`` (thin QR) then ``Q^H A = R^H Z^H``, whose SVD costs only a
small ``l x l`` SVD, so no extra pass over ``A`` is needed.

References: Halko, Martinsson & Tropp (2011), SIAM Rev. 53; Musco & Musco (2015), NeurIPS;
Yu, Gu & Li (2018), SIAM J. Matrix Anal. Appl. 39 (randQB_EI).
"""

from __future__ import annotations

import numpy as np
import scipy.linalg as sla

from matcli.core.result import Callback, Result, Status, no_callback
from matcli.methods.factorize.metrics import adjoint_matmul, frobenius_norm, svd_metrics


def _orth(Y: np.ndarray) -> np.ndarray:
    """Orthonormal basis of range(Y) (thin Householder QR, same number of columns)."""
    return sla.qr(Y, mode="economic", overwrite_a=True, check_finite=False)[0]


def _project_out(Y: np.ndarray, Q: np.ndarray | None) -> np.ndarray:
    """``(I - Q Q^H) Y`` applied twice (classical Gram-Schmidt with reorthogonalisation)."""
    if Q is None or Q.shape[1] == 0:
        return Y
    for _ in range(2):
        Y = Y - Q @ (Q.conj().T @ Y)
    return Y


def orth_against(Y: np.ndarray, Q: np.ndarray | None) -> np.ndarray:
    """Orthonormal basis of the numerically nonzero part of ``(I - Q Q^H) Y``, orthogonal to ``Q``.

    After two Gram-Schmidt passes against ``Q``, a thin Householder QR orthonormalises the block.
    Columns whose remaining part ``|R_jj|`` is below ``max(m, l) * eps`` times the largest column
    of ``Y`` already lay in range(Q) (or in the previous columns); they are dropped (deflation)
    instead of becoming normalised rounding noise that is not orthogonal to ``Q``, so the result
    may have fewer columns than ``Y``. When some kept column was nearly dependent, the block is
    projected and orthonormalised once more to keep orthogonality at working precision.
    """
    if Y.shape[1] == 0:
        return Y
    scale = float(np.max(np.linalg.norm(Y, axis=0)))
    if scale == 0.0:
        return Y[:, :0]
    P, R = sla.qr(_project_out(Y, Q), mode="economic", overwrite_a=True, check_finite=False)
    diag = np.abs(np.diag(R))
    keep = diag > max(Y.shape) * np.finfo(Y.dtype).eps * scale
    if not np.any(keep):
        return Y[:, :0]
    if np.all(keep) and diag.min() > 1e-4 * scale:
        return P
    return _orth(_project_out(P[:, keep], Q))


def _ritz(Q: np.ndarray, W: np.ndarray, rank: int):
    """Rank-``rank`` SVD of ``Q Q^H A`` given ``W = A^H Q`` (Q orthonormal, m x l; W n x l).

    Returns ``U, s, Vt`` and ``A^H U`` (``= W Ur``, free, for the residual metrics).
    """
    Z, R = sla.qr(W, mode="economic", check_finite=False)
    Ur, s, Vrt = sla.svd(R.conj().T, full_matrices=False, check_finite=False)
    U = Q @ Ur[:, :rank]
    V = Z @ Vrt[:rank].conj().T
    return U, s[:rank], V.conj().T, W @ Ur[:, :rank]


def _working_copy(A, precision: str):
    """``A`` itself (float64) or a single-precision copy whose products move half the bytes.

    Single precision limits the singular values to ~1e-6 relative accuracy (plenty for 1e-3 targets);
    the metrics are always computed against the original ``A``.
    """
    if precision == "float64":
        return A
    if precision != "float32":
        raise ValueError(f"precision must be float64 or float32, got {precision!r}")
    return A.astype(np.complex64 if np.iscomplexobj(A) else np.float32)


def _sketch(rng: np.random.Generator, n: int, l: int, dtype) -> np.ndarray:
    omega = rng.standard_normal((n, l))
    return omega.astype(dtype, copy=False) if np.dtype(dtype).kind == "f" else omega


def _work_dtype(A) -> np.dtype:
    return np.result_type(A.dtype, np.float32)


def _check_rank(A, rank: int, oversample: int) -> int:
    m, n = A.shape
    if rank < 1 or rank > min(m, n):
        raise ValueError(f"rank must be in 1..{min(m, n)}, got {rank}")
    return min(rank + oversample, min(m, n))


def _relative_change(new: np.ndarray, old: np.ndarray | None) -> float:
    if old is None:
        return float("inf")
    scale = new[0] if new.size and new[0] > 0 else 1.0
    return float(np.max(np.abs(new - old)) / scale)


def _finish(A, U, s, Vt, rng, *, status: Status, iterations: int, info: dict, message: str,
            norm_A: float | None = None, AhU: np.ndarray | None = None) -> Result:
    if U.dtype != np.result_type(A.dtype, np.float64):
        dtype = np.result_type(A.dtype, np.float64)
        U, s, Vt, AhU = U.astype(dtype), s.astype(np.float64), Vt.astype(dtype), None
    metrics, how = svd_metrics(A, U, s, Vt, rng, norm_A, AhU=AhU)
    info = {**info, **how, "rank": int(s.size)}
    return Result(status=status, outputs={"U": U, "s": s, "Vt": Vt}, metrics=metrics,
                  iterations=iterations, info=info, message=message)


def randomized_svd(A, *, rank: int, oversample: int = 10, power_iters: int = 2, stop_tol: float = 0.0,
                   precision: str = "float64", rng: np.random.Generator, callback: Callback = no_callback) -> Result:
    """Rank-``rank`` SVD by the randomized range finder with subspace (power) iterations.

    Each power iteration re-orthonormalises both ``A^H Q`` and ``A Z`` (QR), which keeps the
    basis accurate when singular values span many orders of magnitude.

    Parameters
    ----------
    A : (m, n) ndarray, sparse matrix or LinearOperator-like with ``@`` and ``.T``
    rank : int
        Number of singular triplets returned, ``1 <= rank <= min(m, n)``.
    oversample : int
        Extra sketch columns ``p``; the basis has ``l = rank + p`` columns.
    power_iters : int
        Maximum number of subspace iterations ``q`` (passes over A: ``2 q + 2``).
    stop_tol : float
        Stop early when the top ``rank`` Ritz values change by less than ``stop_tol`` (relative to
        the largest) between iterations; 0 runs all ``power_iters``.
    precision : {"float64", "float32"}
        Arithmetic of the iteration (float32: products with A move half the bytes; singular values
        to ~1e-6 relative). Outputs are float64 either way.
    rng : numpy.random.Generator
    callback : Callback
        Called after each iteration as ``callback(it, sigma_change=...)``.

    Returns
    -------
    Result
        outputs ``U`` (m x rank, orthonormal columns), ``s`` (rank, descending), ``Vt`` (rank x n);
        status ``CONVERGED_ITS`` (ran ``power_iters``) or ``CONVERGED_STEP`` (``stop_tol`` met).
    """
    U, s, Vt, AhU, it, status = _subspace_iteration(_working_copy(A, precision), rank, oversample, power_iters,
                                                    stop_tol, rng, callback)
    info = {"block_size": min(rank + oversample, min(A.shape)), "power_iterations": it,
            "passes_over_A": 2 * it + 2, "precision": precision}
    return _finish(A, U, s, Vt, rng, status=status, iterations=it, info=info, AhU=AhU,
                   message=f"randomized SVD with {it} power iterations")


def top_triplets(A, rank: int, rng: np.random.Generator, *, power_iters: int = 4,
                 oversample: int = 10) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Approximate top ``rank`` singular triplets ``(U, s, Vt)`` without metrics (for other kernels)."""
    return _subspace_iteration(A, rank, oversample, power_iters, 0.0, rng, no_callback)[:3]


def _subspace_iteration(A, rank, oversample, power_iters, stop_tol, rng, callback):
    m, n = A.shape
    l = _check_rank(A, rank, oversample)
    dtype = _work_dtype(A)
    Q = _orth(A @ _sketch(rng, n, l, dtype))
    W = adjoint_matmul(A, Q)
    previous = None
    status, it = Status.CONVERGED_ITS, 0
    for it in range(1, power_iters + 1):
        Z, R = sla.qr(W, mode="economic", check_finite=False)
        ritz = sla.svdvals(R, check_finite=False)[:rank]
        change = _relative_change(ritz, previous)
        callback(it, sigma_change=change)
        if stop_tol > 0 and change <= stop_tol:
            status = Status.CONVERGED_STEP
            it -= 1
            break
        previous = ritz
        Q = _orth(A @ Z)
        W = adjoint_matmul(A, Q)
    U, s, Vt, AhU = _ritz(Q, W, rank)
    return U, s, Vt, AhU, it, status


def block_krylov_svd(A, *, rank: int, oversample: int = 10, power_iters: int = 2, stop_tol: float = 0.0,
                     precision: str = "float64", rng: np.random.Generator,
                     callback: Callback = no_callback) -> Result:
    """Rank-``rank`` SVD by randomized block Krylov iteration (Musco & Musco 2015).

    Builds an orthonormal basis of ``K = [A W, (A A^H) A W, ..., (A A^H)^q A W]`` with block size
    ``l = rank + oversample``; every new block is orthogonalised against all previous ones (CGS2),
    so the basis stays orthonormal to machine precision. The products ``A^H Q_i`` of each block
    are kept, so the final Rayleigh-Ritz step needs only one more product than the iteration.
    Same number of passes over ``A`` as :func:`randomized_svd` with the same ``power_iters``,
    but a ``(q+1) l``-dimensional search space, which converges much faster on slowly decaying spectra.

    Parameters
    ----------
    A, rank, oversample, power_iters, stop_tol, precision, rng, callback
        As in :func:`randomized_svd`; ``power_iters`` is the Krylov depth ``q``.

    Returns
    -------
    Result
        outputs ``U`` (m x rank), ``s`` (rank), ``Vt`` (rank x n).
    """
    m, n = A.shape
    l = _check_rank(A, rank, oversample)
    original, A = A, _working_copy(A, precision)
    dtype = _work_dtype(A)
    max_cols = min(m, n)
    blocks = [_orth(A @ _sketch(rng, n, l, dtype))]
    images = [adjoint_matmul(A, blocks[0])]
    gram = images[0].conj().T @ images[0]
    previous = None
    status, it = Status.CONVERGED_ITS, 0
    for it in range(1, power_iters + 1):
        ritz = np.sqrt(np.clip(sla.eigvalsh(gram, check_finite=False)[::-1][:rank], 0.0, None))
        change = _relative_change(ritz, previous)
        callback(it, sigma_change=change)
        if stop_tol > 0 and change <= stop_tol:
            status = Status.CONVERGED_STEP
            it -= 1
            break
        previous = ritz
        basis = np.hstack(blocks)
        width = min(l, max_cols - basis.shape[1])
        if width <= 0:
            status = Status.CONVERGED_HAPPY_BREAKDOWN
            it -= 1
            break
        block = orth_against(A @ images[-1][:, :width], basis)
        if block.shape[1] == 0:
            status = Status.CONVERGED_HAPPY_BREAKDOWN
            it -= 1
            break
        blocks.append(block)
        image = adjoint_matmul(A, block)
        cross = np.hstack(images).conj().T @ image
        gram = np.block([[gram, cross], [cross.conj().T, image.conj().T @ image]])
        images.append(image)
    Q = np.hstack(blocks)
    W = np.hstack(images)
    U, s, Vt, AhU = _ritz(Q, W, rank)
    info = {"block_size": l, "krylov_depth": it, "basis_columns": int(Q.shape[1]),
            "passes_over_A": 2 * it + 2, "precision": precision}
    return _finish(original, U, s, Vt, rng, status=status, iterations=it, info=info, AhU=AhU,
                   message=f"block Krylov SVD of depth {it} ({Q.shape[1]} basis vectors)")


def adaptive_svd(A, *, tol: float, block_size: int = 10, power_iters: int = 1, max_rank: int | None = None,
                 rng: np.random.Generator, callback: Callback = no_callback) -> Result:
    """Truncated SVD of the smallest rank meeting ``||A - U S V^H||_F <= tol ||A||_F``.

    Blocked randomized QB with the error indicator of Yu, Gu & Li (randQB_EI): since ``Q`` is
    orthonormal and ``B = Q^H A``, ``||A - Q B||_F^2 = ||A||_F^2 - ||B||_F^2`` is updated for free
    after each block of ``block_size`` columns; blocks are added until it falls below
    ``tol^2 ||A||_F^2``. The SVD of ``B`` is then truncated to the smallest rank ``r`` with
    ``||A||_F^2 - sum_{i<=r} s_i^2 <= tol^2 ||A||_F^2`` (the same identity). The indicator loses
    accuracy to cancellation below ``tol ~ 1e-7``.

    Parameters
    ----------
    A : (m, n) ndarray or sparse matrix
    tol : float
        Target relative Frobenius error, ``0 < tol < 1``.
    block_size : int
        Columns added per step.
    power_iters : int
        Power iterations per block (with re-orthonormalisation against the basis built so far).
    max_rank : int, optional
        Cap on the basis size (default ``min(m, n)``).

    Returns
    -------
    Result
        outputs ``U``, ``s``, ``Vt`` of the chosen rank; status ``CONVERGED_RTOL`` when the target
        was met, ``DIVERGED_MAX_IT`` when ``max_rank`` was reached first (the factors are still
        returned); metric ``error_indicator`` is the estimated relative error of the output.
    """
    m, n = A.shape
    limit = min(m, n) if max_rank is None else min(max_rank, m, n)
    dtype = _work_dtype(A)
    norm_A = frobenius_norm(A)
    target = (tol * norm_A) ** 2
    energy = norm_A**2
    Q = np.zeros((m, 0), dtype=dtype)
    W = np.zeros((n, 0), dtype=dtype)
    it = 0
    while energy > target and Q.shape[1] < limit:
        it += 1
        b = min(block_size, limit - Q.shape[1])
        Qi = orth_against(A @ _sketch(rng, n, b, dtype), Q)
        for _ in range(power_iters):
            if Qi.shape[1] == 0:
                break
            # power step on the residual A - Q B: (A - QB)^H Qi = A^H Qi because Qi is orthogonal to Q
            Zi = _orth(adjoint_matmul(A, Qi))
            Qi = orth_against(A @ Zi, Q)
        if Qi.shape[1] == 0:
            break
        Wi = adjoint_matmul(A, Qi)
        Q = np.hstack([Q, Qi])
        W = np.hstack([W, Wi])
        energy -= float(np.linalg.norm(Wi) ** 2)
        callback(it, error_indicator=float(np.sqrt(max(energy, 0.0)) / norm_A) if norm_A else 0.0)
    if Q.shape[1] == 0:
        U, s, Vt = np.zeros((m, 0), dtype), np.zeros(0), np.zeros((0, n), dtype)
        return Result(status=Status.CONVERGED_RTOL, outputs={"U": U, "s": s, "Vt": Vt},
                      metrics={"reconstruction_error": 0.0, "error_indicator": 0.0, "orthogonality_loss": 0.0},
                      info={"rank": 0, "reconstruction_error_method": "exact (A = 0)"},
                      message="A is zero; rank 0")
    U, s, Vt, AhU = _ritz(Q, W, Q.shape[1])
    tail = norm_A**2 - np.cumsum(s**2)
    meets = np.flatnonzero(tail <= target)
    converged = meets.size > 0
    r = int(meets[0]) + 1 if converged else s.size
    U, s, Vt, AhU = U[:, :r], s[:r], Vt[:r], AhU[:, :r]
    indicator = float(np.sqrt(max(tail[r - 1], 0.0)) / norm_A)
    status = Status.CONVERGED_RTOL if converged else Status.DIVERGED_MAX_IT
    message = (f"rank {r} meets relative error {tol:g} (indicator {indicator:.3e})" if converged else
               f"basis reached the rank cap {limit} with relative error indicator {indicator:.3e} > {tol:g}")
    result = _finish(A, U, s, Vt, rng, status=status, iterations=it,
                     info={"block_size": block_size, "power_iterations": power_iters,
                           "basis_columns": int(Q.shape[1]), "rank_cap": limit},
                     message=message, norm_A=norm_A, AhU=AhU)
    result.metrics["error_indicator"] = indicator
    return result

