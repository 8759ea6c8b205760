"""Top singular triplets by Golub-Kahan-Lanczos bidiagonalization with thick restarts.

After ``j`` steps from a unit vector ``p_1`` the recurrence gives orthonormal ``P`` (n x j) and
``Q`` (m x j) with

    A P = Q B,        A^H Q = P B^H + r e_j^H,

``B`` (j x j) upper triangular. The SVD ``B = X diag(theta) Y^H`` gives Ritz triplets
``(theta_i, Q x_i, P y_i)`` with ``A (P y_i) = theta_i Q x_i`` exactly and

    ||A^H (Q x_i) - theta_i P y_i|| = ||r|| |x_i[j]|,

so every step knows how far each triplet is from convergence without touching A. A triplet
``(theta, u, v)`` with this residual ``rho`` has a singular value of A within ``rho`` of ``theta``.

When the basis reaches ``basis`` vectors without the top ``rank`` triplets converged, the method
restarts thickly (Baglama-Reichel 2005, "augmented implicitly restarted Lanczos bidiagonalization";
Wu-Simon thick restart): the ``keep`` best Ritz vectors and ``r / ||r||`` become the new first
``keep + 1`` basis vectors, and ``B`` starts as ``[diag(theta_1..theta_keep), rho]`` with
``rho_i = ||r|| x_i[j]``, so the recurrence continues without recomputing products.

The right basis ``P`` is reorthogonalised in full (classical Gram-Schmidt, repeated when the vector
lost more than ``1 - 1/sqrt(2)`` of its norm: DGKS), which keeps it orthonormal to working
precision and the Ritz values free of spurious copies (Simon and Zha 2000: one-sided
reorthogonalisation suffices for the singular values). For m >= n the left basis ``Q`` follows from
the recurrence alone, which saves two m-long GEMVs per step (on the 200000 x 100000 benchmark matrix
they cost as much as the two sparse products); a real wide A is bidiagonalised as ``A^T`` (a view),
so that again only the shorter basis is reorthogonalised; a complex wide one reorthogonalises both.
The components the reorthogonalisation of ``P`` drops are the defect of the relation
``A^H Q = P B^H + r e_j^H``; their accumulated norm is added to the triplet residuals taken from that
relation (or, when it matters against ``tol``, ``A^H U`` is formed explicitly), and ``U`` is rebuilt
by Rayleigh-Ritz from ``A V`` when it is not orthonormal to 1e-12.

Each step costs one product with ``A`` and
one with ``A^H``; for scipy.sparse A inside :func:`matcli.threads.thread_limit` with several
threads, those run on row blocks of A in parallel.

One Krylov vector per product makes this the method of fewest products for a few well-resolved
triplets (ARPACK applies the same Krylov space to ``A^H A``, with implicit restarts).
"""

from __future__ import annotations

import math

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp

from matcli.core.result import Callback, Result, Status, no_callback
from matcli.methods.factorize.metrics import adjoint_matmul, orthogonality_loss, svd_metrics
from matcli.methods.factorize.signs import canonical_phases
from matcli.threads import own_threads_only, parallel_map, worker_count, worker_ranges

#: DGKS criterion: orthogonalise again when a vector kept less than this fraction of its norm.
_REORTH_RATIO = 1.0 / math.sqrt(2.0)
#: U is rebuilt by Rayleigh-Ritz from A V when ||U^H U - I||_F exceeds this (one-sided reorthogonalisation).
_REFINE_LOSS = 1e-12
#: A^H U is formed explicitly when the recurrence's defect exceeds this share of tol * s_1.
_DEFECT_SHARE = 0.01
#: Stored entries per row block of a threaded sparse product, at least (smaller matrices are not split).
_MIN_BLOCK_NNZ = 200_000


class _Products:
    """``A @ p`` and ``A^H @ q`` for a dense or scipy.sparse A; sparse CSR ones on row blocks in parallel.

    The row blocks share A's arrays (no copy); ``A^H q`` sums the blocks' partial products.
    """

    def __init__(self, A):
        self.A = A
        self.complex = np.iscomplexobj(A)
        self.blocks = None
        workers = worker_count()
        if sp.issparse(A) and workers > 1 and A.nnz >= 2 * _MIN_BLOCK_NNZ:
            csr = A.tocsr()
            parts = min(workers, csr.nnz // _MIN_BLOCK_NNZ)
            # row boundaries that split the stored entries evenly
            bounds = np.searchsorted(csr.indptr, np.linspace(0, csr.nnz, parts + 1), side="left")
            bounds[0], bounds[-1] = 0, csr.shape[0]
            self.blocks = []
            for r0, r1 in zip(bounds[:-1], bounds[1:]):
                a, b = csr.indptr[r0], csr.indptr[r1]
                block = sp.csr_matrix((csr.data[a:b], csr.indices[a:b], csr.indptr[r0:r1 + 1] - a),
                                      shape=(int(r1 - r0), csr.shape[1]))
                self.blocks.append((int(r0), int(r1), block))

    def forward(self, p: np.ndarray) -> np.ndarray:
        if self.blocks is None:
            return np.asarray(self.A @ p).ravel()
        out = np.empty(self.A.shape[0], dtype=np.result_type(self.A.dtype, p.dtype))

        def part(item) -> None:
            r0, r1, block = item
            out[r0:r1] = block @ p

        parallel_map(part, self.blocks)
        return out

    def adjoint(self, q: np.ndarray) -> np.ndarray:
        if self.blocks is None:
            return np.asarray(adjoint_matmul(self.A, q)).ravel()
        qc = q.conj() if self.complex else q
        parts = parallel_map(lambda item: item[2].T @ qc[item[0]:item[1]], self.blocks)
        total = parts[0]
        for extra in parts[1:]:
            total += extra
        return total.conj() if self.complex else total


def _row_ranges(length: int) -> list[tuple[int, int]]:
    """Contiguous row ranges, one per worker thread, for the vector operations of the recurrence."""
    return worker_ranges(length, 50_000)


def _orthogonalize(w: np.ndarray, basis: np.ndarray, ranges: list[tuple[int, int]],
                   removed: list[float] | None = None) -> tuple[np.ndarray, float]:
    """``w`` minus its components along the orthonormal columns of ``basis``, and its norm.

    Classical Gram-Schmidt, repeated when ``w`` kept less than ``1/sqrt(2)`` of its norm (DGKS).
    Both products run on the row ``ranges`` in parallel; ``w`` is overwritten. ``removed``: a list
    that receives the squared norm of all the components taken out.
    """
    norm0 = float(np.linalg.norm(w))
    if basis.shape[1] == 0:
        return w, norm0
    norm = norm0
    total = None
    for _ in range(3):
        parts = parallel_map(lambda r: basis[r[0]:r[1]].conj().T @ w[r[0]:r[1]], ranges)
        coef = parts[0] if len(parts) == 1 else np.sum(parts, axis=0)
        total = coef if total is None else total + coef

        def subtract(r: tuple[int, int]) -> None:
            w[r[0]:r[1]] -= basis[r[0]:r[1]] @ coef

        parallel_map(subtract, ranges)
        norm = float(np.linalg.norm(w))
        if norm > _REORTH_RATIO * norm0:
            break
        norm0 = norm
    if removed is not None:
        removed.append(float(np.vdot(total, total).real))
    return w, norm


def _random_unit(rng: np.random.Generator, size: int, dtype, basis: np.ndarray,
                 ranges: list[tuple[int, int]]) -> np.ndarray | None:
    """A random unit vector orthogonal to ``basis`` (None when ``basis`` spans the whole space)."""
    for _ in range(3):
        w = rng.standard_normal(size).astype(dtype)
        w, norm = _orthogonalize(w, basis, ranges)
        if norm > 1e-8 * math.sqrt(size):
            return w / norm
    return None


def lanczos_svd(A, *, rank: int, tol: float = 1e-8, basis: int | None = None, maxiter: int | None = None,
                rng: np.random.Generator, callback: Callback = no_callback) -> Result:
    """Top ``rank`` singular triplets of ``A`` by thick-restart Lanczos bidiagonalization.

    Parameters
    ----------
    A : (m, n) ndarray or scipy.sparse matrix (never densified)
    rank : int
        Triplets returned, ``1 <= rank <= min(m, n)``; ``rank = min(m, n)`` is the full SVD, computed
        by the dense SVD (``info["dense_fallback"]``; the caller checks that A fits densely).
    tol : float
        Stop when every one of the top ``rank`` Ritz triplets has
        ``||A^H u_i - theta_i v_i|| <= tol * theta_i`` (``A v_i = theta_i u_i`` holds exactly), so
        each ``theta_i`` lies within relative distance ``tol`` of a singular value of A (and, for a
        simple one, within about ``tol^2 theta_i^2 / gap`` of it). ``tol >= 8 eps``.
    basis : int, optional
        Basis vectors before a restart (default ``max(3 rank, rank + 30)``, capped by ``min(m, n)``).
    maxiter : int, optional
        Cap on Lanczos steps, i.e. on products with ``A`` (default ``50 * basis``).
    rng : numpy.random.Generator
        Draws the starting vector (and a fresh direction after an exact invariant subspace).
    callback : Callback
        ``callback(step, residual=...)`` after every step from the ``rank``-th on, with the largest
        relative residual ``rho_i / theta_i`` of the top ``rank`` Ritz triplets.

    Returns
    -------
    Result
        outputs ``U`` (m x rank, orthonormal), ``s`` (rank, descending), ``Vt`` (rank x n); status
        ``CONVERGED_RTOL``, ``CONVERGED_HAPPY_BREAKDOWN`` (the basis spans an invariant subspace: its
        triplets are exact) or ``DIVERGED_MAX_IT`` (the best triplets so far are returned); metrics of
        :func:`~matcli.methods.factorize.metrics.svd_metrics` plus ``max_ritz_residual``.
    """
    m, n = A.shape
    with own_threads_only():
        if m >= n or np.iscomplexobj(A) or rank >= min(m, n):
            return _lanczos_svd(A, rank, tol, basis, maxiter, rng, callback)
        # a real wide A: the bidiagonalisation of A^T (a view) reorthogonalises only its shorter basis
        result = _lanczos_svd(A.T, rank, tol, basis, maxiter, rng, callback)
    out = result.outputs
    if "U" in out:
        # A^T = U_t S V_t^T, so A = V_t S U_t^T; signs fixed again by A's own left vectors
        out["U"], out["Vt"] = canonical_phases(out["Vt"].T, out["U"].T)
    result.info["transposed"] = "m < n: the bidiagonalisation ran on A^T"
    return result


def _lanczos_svd(A, rank: int, tol: float, basis: int | None, maxiter: int | None,
                 rng: np.random.Generator, callback: Callback) -> Result:
    m, n = A.shape
    if not 1 <= rank <= min(m, n):
        raise ValueError(f"rank must be in 1..{min(m, n)}, got {rank}")
    if rank == min(m, n):
        from matcli.methods.factorize.tsvd import dense_svd

        result = dense_svd(A, rank=rank, rng=rng)
        result.info["dense_fallback"] = (f"--rank {rank} = min(m, n) is the full SVD, which the bidiagonalization "
                                         "cannot restart from: computed by gesdd")
        return result
    eps = np.finfo(np.float64).eps
    if not tol >= 8 * eps:
        raise ValueError(f"tol must be at least {8 * eps:.1e}, got {tol}")
    ell = min(basis or max(3 * rank, rank + 30), min(m, n))
    if ell < rank + 1:
        raise ValueError(f"basis must hold at least rank + 1 = {rank + 1} vectors")
    maxiter = maxiter or 50 * ell
    keep = min(rank + max(2, (ell - rank) // 2), ell - 1)
    dtype = np.result_type(A.dtype, np.float64)
    ops = _Products(A)
    rows_m, rows_n = _row_ranges(m), _row_ranges(n)
    # reorthogonalise Q only when it is the shorter basis (see the module)
    two_sided = m < n
    dropped: list[float] = []   # squared norms of what P's reorthogonalisation removed (the defect)
    # only filled columns are ever read (np.empty: no page faults for the unused tail)
    P = np.empty((n, ell + 1), dtype=dtype, order="F")
    Q = np.empty((m, ell), dtype=dtype, order="F")
    B = np.zeros((ell, ell), dtype=dtype)
    P[:, 0] = _random_unit(rng, n, dtype, P[:, :0], rows_n)

    j = steps = restarts = 0
    anorm = 0.0        # largest alpha / beta so far: the scale of "numerically zero"
    r_norm = 0.0       # ||r|| of A^H Q_j = P_j B_j^H + r e_j^H; r / ||r|| is P[:, j]
    status = Status.DIVERGED_MAX_IT
    X = theta = Yh = None
    worst = float("inf")
    while steps < maxiter:
        # one step: Q[:, j], B[j, j] from A p_j; P[:, j + 1], B[j, j + 1] from A^H q_j
        w = ops.forward(P[:, j])
        # the recurrence's own terms first (beta q_{j-1}, or the rho's after a restart), so that
        # the DGKS test below sees only rounding-level components and rarely repeats a pass
        coupled = np.flatnonzero(B[:j, j])
        if coupled.size == 1:
            w -= B[coupled[0], j] * Q[:, coupled[0]]
        elif coupled.size:
            w -= Q[:, coupled] @ B[coupled, j]
        if two_sided:
            w, alpha = _orthogonalize(w, Q[:, :j], rows_m)
        else:
            alpha = float(np.linalg.norm(w))
        steps += 1
        anorm = max(anorm, alpha)
        if alpha <= eps * math.sqrt(m) * anorm:
            # A p_j lies in span(Q): continue the basis with a fresh direction (B[j, j] = 0)
            fresh = _random_unit(rng, m, dtype, Q[:, :j], rows_m)
            if fresh is None:
                status = Status.CONVERGED_HAPPY_BREAKDOWN
                break
            Q[:, j], B[j, j] = fresh, 0.0
        else:
            Q[:, j], B[j, j] = w / alpha, alpha
        r, r_norm = _orthogonalize(ops.adjoint(Q[:, j]) - np.conj(B[j, j]) * P[:, j], P[:, :j + 1], rows_n,
                                   dropped)
        anorm = max(anorm, r_norm)
        if r_norm <= eps * math.sqrt(n) * anorm:
            r_norm = 0.0
            fresh = _random_unit(rng, n, dtype, P[:, :j + 1], rows_n) if j + 1 < min(m, n) else None
            P[:, j + 1] = 0.0 if fresh is None else fresh
        else:
            P[:, j + 1] = r / r_norm
        if j + 1 < ell:
            B[j, j + 1] = r_norm
        j += 1
        if j < rank:
            continue
        X, theta, Yh = sla.svd(B[:j, :j], full_matrices=False, check_finite=False)
        rho = r_norm * np.abs(X[j - 1, :rank])
        scale = np.maximum(theta[:rank], eps * max(theta[0], np.finfo(np.float64).tiny))
        worst = float(np.max(rho / scale))
        callback(steps, residual=worst)
        if worst <= tol:
            status = Status.CONVERGED_RTOL if r_norm > 0 else Status.CONVERGED_HAPPY_BREAKDOWN
            break
        if j == ell and steps < maxiter:
            # thick restart: the best `keep` Ritz vectors, then r / ||r||, keep A P = Q B exact
            restarts += 1
            P[:, :keep] = P[:, :ell] @ Yh[:keep].conj().T
            P[:, keep] = P[:, ell]
            Q[:, :keep] = Q[:, :ell] @ X[:, :keep]
            B[:] = 0.0
            B[np.arange(keep), np.arange(keep)] = theta[:keep]
            B[:keep, keep] = r_norm * X[ell - 1, :keep].conj()
            j = keep
            # B is no longer bidiagonal; its SVD is recomputed after the next step
    if X is None:
        # maxiter stopped the run before `rank` steps
        X, theta, Yh = sla.svd(B[:j, :j], full_matrices=False, check_finite=False)
    k = min(rank, theta.size)
    U = Q[:, :j] @ X[:, :k]
    V = P[:, :j] @ Yh[:k].conj().T
    s = theta[:k].astype(np.float64)
    # A^H U = V diag(s) + r x[j-1]^T by the recurrence, up to the defect (see the module); A V is
    # recomputed for the metrics, for sparse A one column at a time like the iteration's products (a
    # single vector stays in cache where a block of columns does not; measured 2x on the benchmark
    # matrix), for dense A by one BLAS-3 product
    defect = math.sqrt(sum(dropped))
    AV = None
    if k:
        AV = (np.column_stack([ops.forward(np.ascontiguousarray(V[:, i])) for i in range(k)]) if sp.issparse(A)
              else np.asarray(A @ V))
    refined = k > 0 and orthogonality_loss(U) > _REFINE_LOSS
    if refined:
        # Rayleigh-Ritz on span(V): A V = Q_a R, R = X_a diag(s) Y_a^H gives U = Q_a X_a, V Y_a
        Q_a, R_a = np.linalg.qr(AV)
        X_a, s, Yh_a = sla.svd(R_a, check_finite=False)
        U, V, AV = Q_a @ X_a, V @ Yh_a.conj().T, AV @ Yh_a.conj().T
    if refined or (k and defect > _DEFECT_SHARE * tol * float(s[0])):
        AhU = np.column_stack([ops.adjoint(np.ascontiguousarray(U[:, i])) for i in range(k)])
        defect = 0.0
    else:
        AhU = V * s + np.outer(r_norm * P[:, j], X[j - 1, :k])
    U, Vt, AhU, AV = canonical_phases(U, V.conj().T, AhU, AV)
    metrics, how = svd_metrics(A, U, s, Vt, rng, AhU=AhU, AV=AV)
    if defect and "max_triplet_residual" in metrics:
        # ||A^H u_i - s_i v_i|| <= (its value from the recurrence) + defect
        metrics["max_triplet_residual"] += defect / (float(s[0]) if s[0] > 0 else 1.0)
    metrics["max_ritz_residual"] = worst
    info = {**how, "rank": k, "basis": ell, "kept_at_restart": keep, "restarts": restarts,
            "reorthogonalized": "both bases" if two_sided else "the shorter basis only (one-sided)",
            "left_residuals": "A^H U formed" if defect == 0.0 else f"recurrence + its defect {defect:.1e}",
            "u_rebuilt_from_AV": bool(refined),
            "lanczos_steps": steps, "vector_products": 2 * steps, "tol": tol,
            "product_threads": len(ops.blocks) if ops.blocks else 1}
    message = (f"Lanczos bidiagonalization: {steps} steps, {restarts} restarts, "
               f"max relative Ritz residual {worst:.2e} ({status.reason})")
    return Result(status=status, outputs={"U": U, "s": s, "Vt": Vt}, metrics=metrics,
                  iterations=steps, info=info, message=message)
