"""Randomized truncated SVD: subspace (power) iteration, block Krylov, and adaptive rank.

All three touch ``A`` only through products ``A @ X`` and ``A^H @ X`` with thin dense blocks, so
sparse matrices are never densified. The last product of every method is reused for the
Rayleigh-Ritz step: if ``A^H Q = Z R`` (thin QR) then ``Q^H A = R^H Z^H``, whose SVD costs only a
small ``l x l`` SVD (block Krylov uses the Gram matrix of ``A^H Q`` it already maintains), so no
extra pass over ``A`` is needed.

References: Halko, Martinsson & Tropp (2011), SIAM Rev. 53; Musco & Musco (2015), NeurIPS;
Yu, Gu & Li (2018), SIAM J. Matrix Anal. Appl. 39 (randQB_EI).
"""

from __future__ import annotations

import numpy as np
import scipy.linalg as sla

from matcli.core.result import Callback, Result, Status, no_callback
from matcli.methods.factorize.metrics import adjoint_matmul, frobenius_norm, matmul, svd_metrics
from matcli.methods.factorize.signs import canonical_phases


def _orth(Y: np.ndarray) -> np.ndarray:
    """Orthonormal basis of range(Y) (thin Householder QR, same number of columns)."""
    return sla.qr(Y, mode="economic", overwrite_a=True, check_finite=False)[0]


def _project_out(Y: np.ndarray, Q: np.ndarray | None, passes: int = 2) -> np.ndarray:
    """``(I - Q Q^H) Y`` applied ``passes`` times (2: classical Gram-Schmidt with reorthogonalisation)."""
    if Q is None or Q.shape[1] == 0:
        return Y
    for _ in range(passes):
        Y = Y - Q @ (Q.conj().T @ Y)
    return Y


def _cholqr2(Y: np.ndarray, min_ratio: float, scale: float) -> np.ndarray | None:
    """Cholesky QR applied twice (BLAS-3 only), or None when ``Y`` is too ill-conditioned for it.

    ``Y = Q R`` with ``R`` the Cholesky factor of ``Y^H Y``; the second pass restores orthogonality
    to working precision provided cond(Y) stays well below ``eps^(-1/2)``, which holds when every
    ``|R_jj| >= min_ratio * scale``, and is skipped when ``eps cond(Y)^2 < 1e-13`` already. The span
    is that of ``Y`` (only invertible column operations).
    """
    for attempt in range(2):
        try:
            R = sla.cholesky(Y.conj().T @ Y, lower=False, check_finite=False)
        except np.linalg.LinAlgError:
            return None
        if attempt == 0 and np.abs(np.diag(R)).min() < min_ratio * scale:
            return None
        Y = Y @ sla.solve_triangular(R, np.eye(R.shape[0], dtype=R.dtype), check_finite=False)
        # one pass leaves ||Q^H Q - I|| ~ eps cond(Y)^2: good enough when Y was well conditioned
        sv = sla.svdvals(R, check_finite=False)
        if attempt == 0 and sv[-1] > 0 and (sv[0] / sv[-1]) ** 2 * np.finfo(Y.dtype).eps < 1e-13:
            break
    return Y


def orth_against(Y: np.ndarray, Q: np.ndarray | None, *, passes: int = 2,
                 scale: float | None = None) -> np.ndarray:
    """Orthonormal basis of the numerically nonzero part of ``(I - Q Q^H) Y``, orthogonal to ``Q``.

    After two Gram-Schmidt passes against ``Q``, the block is orthonormalised by Cholesky QR
    (twice) when it is well conditioned, else by a thin Householder QR in which columns whose
    remaining part ``|R_jj|`` is below ``max(m, l) * eps`` times the largest column of ``Y`` are
    dropped (deflation: they already lay in range(Q) or in the previous columns, and normalising
    them would produce rounding noise that is not orthogonal to ``Q``), so the result may have
    fewer columns than ``Y``. Nearly dependent kept columns are projected once more.

    ``passes`` < 2 with ``scale`` (the largest column norm before any projection) serves callers
    that have already projected once themselves: the missing passes are then applied only when the
    block turns out ill-conditioned; otherwise a single projection leaves components along ``Q`` of
    ``eps * scale``, i.e. at most ``eps^(3/4)`` after normalising columns of norm ``>= eps^(1/4) scale``.
    """
    if Y.shape[1] == 0:
        return Y
    if scale is None:
        scale = float(np.max(np.linalg.norm(Y, axis=0)))
    if scale == 0.0:
        return Y[:, :0]
    eps = np.finfo(Y.dtype).eps
    Y = _project_out(Y, Q, passes)
    fast = _cholqr2(Y, eps**0.25, scale)
    if fast is None and passes < 2:
        Y = _project_out(Y, Q, 2 - passes)
        fast = _cholqr2(Y, eps**0.25, scale)
    if fast is not None:
        return fast
    P, R = sla.qr(Y, mode="economic", check_finite=False)
    diag = np.abs(np.diag(R))
    keep = diag > max(Y.shape) * eps * scale
    if not np.any(keep):
        return Y[:, :0]
    if np.all(keep) and diag.min() > 1e-4 * scale:
        return P
    return _orth(_project_out(P[:, keep], Q))


def random_complement(Q: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` orthonormal columns orthogonal to the orthonormal columns of ``Q`` (m x c).

    Gaussian directions orthogonalised against ``Q`` (two Gram-Schmidt passes and a QR): with
    probability 1 none of them lies in range(Q). Needs ``c + count <= m``.
    """
    m, c = Q.shape
    if c + count > m:
        raise ValueError(f"cannot add {count} orthonormal columns to {c} in dimension {m}")
    block = Q[:, :0]
    for _ in range(3):
        if block.shape[1] == count:
            break
        Y = rng.standard_normal((m, count - block.shape[1])).astype(Q.dtype, copy=False)
        new = orth_against(Y, np.hstack([Q, block]))
        block = np.hstack([block, new])
    if block.shape[1] != count:
        raise ArithmeticError("random directions stayed in the span of the basis three times")
    return block


def ritz_completed(A, Q: np.ndarray, W: np.ndarray | None, rank: int, rng: np.random.Generator):
    """Rayleigh-Ritz on range(Q) completed by random orthonormal directions to ``rank`` columns.

    ``Q`` (m x c, orthonormal, ``c <= rank <= min(m, n)``), ``W = A^H Q`` (computed when None).
    When range(Q) holds the whole range of ``A`` (a rank-deficient ``A``, or ``A = 0`` with
    ``c = 0``), the added directions satisfy ``A^H q = 0`` and the Ritz step turns them into exact
    zero singular triplets whose ``U`` and ``V`` complete the others orthonormally, as a full SVD
    would. Returns ``U, s, Vt, A^H U`` of :func:`_ritz` (``rank`` triplets).
    """
    W = adjoint_matmul(A, Q) if W is None else W
    if Q.shape[1] < rank:
        extra = random_complement(Q, rank - Q.shape[1], rng)
        Q = np.hstack([Q, extra])
        W = np.hstack([W, adjoint_matmul(A, extra)])
    return _ritz(Q, W, rank)


def _ritz(Q: np.ndarray, W: np.ndarray, rank: int):
    """Rank-``rank`` SVD of ``Q Q^H A`` given ``W = A^H Q`` (Q orthonormal, m x l; W n x l).

    Returns ``U, s, Vt`` and ``A^H U`` (``= W Ur``, free, for the residual metrics).
    """
    Z, R = sla.qr(W, mode="economic", check_finite=False)
    Ur, s, Vrt = sla.svd(R.conj().T, full_matrices=False, check_finite=False)
    U = Q @ Ur[:, :rank]
    V = Z @ Vrt[:rank].conj().T
    return U, s[:rank], V.conj().T, W @ Ur[:, :rank]


def _ritz_gram(Q: np.ndarray, W: np.ndarray, gram: np.ndarray, rank: int):
    """As :func:`_ritz`, from the Gram matrix ``W^H W = (Q^H A)(Q^H A)^H`` already at hand.

    With ``gram = Ur diag(s^2) Ur^H``: ``U = Q Ur``, ``V = W Ur / s``. Relative accuracy of
    ``s_i`` is ``eps (s_1 / s_i)^2``, so this is used only while ``s_rank > 1e-3 s_1`` (else the QR
    route of :func:`_ritz`).
    """
    w, Ur = sla.eigh(gram.astype(np.result_type(gram.dtype, np.float64)), check_finite=False)
    w, Ur = w[::-1][:rank], Ur[:, ::-1][:, :rank]
    if w.size < rank or w[-1] <= (1e-3) ** 2 * w[0] or w[0] <= 0:
        return _ritz(Q, W, rank)
    s = np.sqrt(w)
    Ur = Ur.astype(Q.dtype, copy=False)
    AhU = W @ Ur
    U = Q @ Ur
    Vt = (AhU / s.astype(Q.dtype)).conj().T
    return U, s, Vt, AhU


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
    U, Vt, AhU = canonical_phases(U, Vt, AhU)
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
    Q = _orth(matmul(A, _sketch(rng, n, l, dtype)))
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
        Q = _orth(matmul(A, Z))
        W = adjoint_matmul(A, Q)
    U, s, Vt, AhU = _ritz(Q, W, rank)
    return U, s, Vt, AhU, it, status


def block_krylov_svd(A, *, rank: int, oversample: int = 10, power_iters: int = 2, stop_tol: float = 0.0,
                     precision: str = "float64", rng: np.random.Generator,
                     callback: Callback = no_callback) -> Result:
    """Rank-``rank`` SVD by randomized block Krylov iteration (Musco & Musco 2015).

    Builds an orthonormal basis of ``K = [A W, (A A^H) A W, ..., (A A^H)^q A W]`` with block size
    ``l = rank + oversample``; every new block is orthogonalised against all previous ones by two
    Gram-Schmidt passes (the first one's coefficients ``Q^H A A^H Q_i = W^H W_i`` come from the Gram
    matrix of the images ``W = A^H Q``, which is kept) and then orthonormalised (Cholesky QR, or a
    deflating Householder QR for ill-conditioned blocks), so the basis stays orthonormal to machine
    precision. Keeping the images ``A^H Q_i`` makes the final Rayleigh-Ritz step cost one product.
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
    cap = min((power_iters + 1) * l, min(m, n))
    Q = np.empty((m, cap), dtype=dtype, order="F")
    W = np.empty((n, cap), dtype=dtype, order="F")
    block = orth_against(matmul(A, _sketch(rng, n, l, dtype)), None)
    c, last = block.shape[1], 0
    Q[:, :c] = block
    W[:, :c] = adjoint_matmul(A, block)
    gram = W[:, :c].conj().T @ W[:, :c]
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
        width = min(c - last, cap - c)
        if width > 0:
            # Q^H (A A^H Q_last) = W^H W_last is a block of the Gram matrix: the first Gram-Schmidt
            # pass costs one product instead of two.
            Y = matmul(A, W[:, last:last + width])
            scale = float(np.max(np.linalg.norm(Y, axis=0)))
            Y -= Q[:, :c] @ gram[:, last:last + width]
            block = orth_against(Y, Q[:, :c], passes=0, scale=scale)
        else:
            block = Q[:, :0]
        if block.shape[1] == 0:
            status = Status.CONVERGED_HAPPY_BREAKDOWN
            it -= 1
            break
        image = adjoint_matmul(A, block)
        cross = W[:, :c].conj().T @ image
        gram = np.block([[gram, cross], [cross.conj().T, image.conj().T @ image]])
        last, c = c, c + block.shape[1]
        Q[:, last:c] = block
        W[:, last:c] = image
    info = {"block_size": l, "krylov_depth": it, "basis_columns": int(c),
            "passes_over_A": 2 * it + 2, "precision": precision}
    if c < rank:
        # the blocks deflated: range(Q) is invariant under A A^H and holds A's whole range (the
        # first block is A times a random l >= rank columns), so A has rank c < rank and the
        # missing triplets are zero singular values with any orthonormal completion
        U, s, Vt, AhU = ritz_completed(A, Q[:, :c], W[:, :c], rank, rng)
        info["zero_triplets_completed"] = int(rank - c)
    else:
        U, s, Vt, AhU = _ritz_gram(Q[:, :c], W[:, :c], gram, rank)
    return _finish(original, U, s, Vt, rng, status=status, iterations=it, info=info, AhU=AhU,
                   message=f"block Krylov SVD of depth {it} ({c} basis vectors)")


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
    Q_buf = np.empty((m, min(limit, 4 * block_size)), dtype=dtype, order="F")
    W_buf = np.empty((n, Q_buf.shape[1]), dtype=dtype, order="F")
    c, it = 0, 0
    while energy > target and c < limit:
        it += 1
        Q = Q_buf[:, :c]
        b = min(block_size, limit - c)
        Qi = orth_against(matmul(A, _sketch(rng, n, b, dtype)), Q)
        for _ in range(power_iters):
            if Qi.shape[1] == 0:
                break
            # power step on the residual A - Q B: (A - QB)^H Qi = A^H Qi because Qi is orthogonal to Q
            Zi = _orth(adjoint_matmul(A, Qi))
            Qi = orth_against(matmul(A, Zi), Q)
        if Qi.shape[1] == 0:
            break
        Wi = adjoint_matmul(A, Qi)
        if c + Qi.shape[1] > Q_buf.shape[1]:
            grow = min(limit, 2 * Q_buf.shape[1] + Qi.shape[1])
            Q_buf = np.asfortranarray(np.hstack([Q_buf[:, :c], np.empty((m, grow - c), dtype)]))
            W_buf = np.asfortranarray(np.hstack([W_buf[:, :c], np.empty((n, grow - c), dtype)]))
        Q_buf[:, c:c + Qi.shape[1]] = Qi
        W_buf[:, c:c + Qi.shape[1]] = Wi
        c += Qi.shape[1]
        energy -= float(np.linalg.norm(Wi) ** 2)
        callback(it, error_indicator=float(np.sqrt(max(energy, 0.0)) / norm_A) if norm_A else 0.0)
    Q, W = Q_buf[:, :c], W_buf[:, :c]
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

