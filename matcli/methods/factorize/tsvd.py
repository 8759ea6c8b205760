"""Truncated SVD by Lanczos (scipy ``svds``: ARPACK, PROPACK) and dense SVD (LAPACK gesdd)."""

from __future__ import annotations

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp

from matcli.core.result import Callback, Result, Status, no_callback
from matcli.methods.factorize.metrics import adjoint_matmul, column_norms, frobenius_norm, safe_norm, svd_metrics
from matcli.methods.factorize.signs import canonical_phases


def _sorted_triplets(U, s, Vt):
    order = np.argsort(s)[::-1]
    return np.ascontiguousarray(U[:, order]), s[order], np.ascontiguousarray(Vt[order])


#: Relative triplet residual and elementwise loss of orthonormality up to which a triplet returned
#: by svds is accepted as computed; half the digits of double precision (the certificate's floor).
CERTIFY_FLOOR = float(np.sqrt(np.finfo(np.float64).eps))


def max_solver_rank(m: int, n: int, solver: str, complex_values: bool) -> int:
    """Most triplets ``svds`` computes itself: PROPACK ``min(m, n)``; ARPACK ``min(m, n) - 1``
    (``min(m, n) - 2`` for complex input: the non-Hermitian driver returns at most ``N - 2``)."""
    if solver == "propack":
        return min(m, n)
    return min(m, n) - (2 if complex_values else 1)


def lanczos_svd(A, *, rank: int, solver: str = "arpack", tol: float = 0.0, maxiter: int | None = None,
                rng: np.random.Generator, callback: Callback = no_callback) -> Result:
    """Top ``rank`` singular triplets by ``scipy.sparse.linalg.svds`` (ARPACK or PROPACK), certified.

    Every returned set has exactly ``rank`` triplets with orthonormal ``U`` and ``V``:

    * ``A = 0``: zero singular values and identity vectors (ARPACK stops with error -9 on it).
    * The triplets svds returns are checked: the leading ones whose relative residual
      ``max(||A v - s u||, ||A^H u - s v||) / s_1`` and orthonormality are within
      ``max(tol, CERTIFY_FLOOR)`` are kept; when fewer than ``rank`` pass (PROPACK returns
      non-orthonormal vectors, and spurious values such as 1.04 for the 6x5 ones matrix, once ``A``'s
      rank is below ``rank``), the kept left vectors are completed by random orthonormal directions
      and the Rayleigh-Ritz step on that space gives the ``rank`` triplets: exact when range(U_kept)
      is A's whole range (zero singular values beyond A's rank). ``info["certified_by_solver"]``
      and ``info["completed"]`` count both parts.

    Parameters
    ----------
    A : (m, n) ndarray or sparse matrix
    rank : int
        ``1 <= rank <=`` :func:`max_solver_rank` (as svds: ARPACK ``min(m, n) - 1``, ``min(m, n) - 2``
        for complex ``A``; PROPACK ``min(m, n)``, the full SVD); ValueError otherwise.
    solver : {"arpack", "propack"}
    tol : float
        svds tolerance on the singular values (0 = machine precision). PROPACK cannot reach 0, so
        ``tol=0`` means ``1e-10`` for it.
    maxiter : int, optional
        ARPACK restarts cap (ignored by PROPACK inside svds; on PROPACK failure the subspace is
        enlarged, up to three times, before giving up).

    Returns
    -------
    Result
        outputs ``U`` (m x rank), ``s`` (rank, descending), ``Vt`` (rank x n); status
        ``CONVERGED_RTOL``; ``CONVERGED_HAPPY_BREAKDOWN`` for a
        zero matrix; ``DIVERGED_BREAKDOWN`` with the best ``rank`` triplets when the completed ones
        still miss the residual bound (A's range was not found), ``DIVERGED_MAX_IT`` /
        ``DIVERGED_BREAKDOWN`` (no outputs) when the solver did not converge or ARPACK reported an
        error. ``callback(products, products=...)`` reports the running number of vector products.
    """
    from scipy.sparse.linalg import ArpackError, ArpackNoConvergence, svds

    from matcli.methods.factorize.counting import CountingOperator

    m, n = A.shape
    if not 1 <= rank <= min(m, n):
        raise ValueError(f"rank must be in 1..min(m, n) = {min(m, n)}, got {rank}")
    limit = max_solver_rank(m, n, solver, np.iscomplexobj(A))
    if rank > limit:
        raise ValueError(f"svds ({solver}) computes at most {limit} triplets of this "
                         f"{'complex ' if np.iscomplexobj(A) else ''}{m}x{n} matrix (--rank <= {limit}), "
                         f"got {rank}; use --method propack or dense")
    if frobenius_norm(A) == 0.0:
        return _zero_svd(A, rank, solver, rng)
    op = CountingOperator(A, callback)
    v0 = rng.standard_normal(min(m, n))
    info = {"solver": solver}
    try:
        if solver == "arpack":
            U, s, Vt = svds(op, k=rank, tol=tol, v0=v0, maxiter=maxiter, solver="arpack")
        else:
            U, s, Vt = _propack(op, rank, tol if tol > 0 else 1e-10, rng, min(m, n), info)
    except (ArpackNoConvergence, np.linalg.LinAlgError) as exc:
        return Result(status=Status.DIVERGED_MAX_IT, iterations=op.products,
                      info={**info, "vector_products": op.products},
                      message=f"{solver} did not converge: {exc}")
    except ArpackError as exc:
        return Result(status=Status.DIVERGED_BREAKDOWN, iterations=op.products,
                      info={**info, "vector_products": op.products}, message=f"{solver} failed: {exc}")
    U, s, Vt = _sorted_triplets(U, s, Vt)
    bound = max(tol, CERTIFY_FLOOR)
    kept = certified_prefix(A, U, s, Vt, bound)
    status = Status.CONVERGED_RTOL
    message = f"{solver} converged with {op.products} vector products"
    if kept < rank:
        from matcli.methods.factorize.rsvd import ritz_completed

        # the kept vectors are orthonormal only to `bound`: re-orthonormalise their span first
        basis = sla.qr(U[:, :kept], mode="economic", check_finite=False)[0]
        U, s, Vt, _ = ritz_completed(A, basis, None, rank, rng)
        info.update(certified_by_solver=kept, completed=rank - kept)
        message = (f"{solver} returned {kept} certified triplets of {rank} (the others had residuals or "
                   f"orthogonality beyond {bound:.1e}); completed by Rayleigh-Ritz on their span plus "
                   f"{rank - kept} random orthonormal directions")
    U, Vt = canonical_phases(U, Vt)
    metrics, how = svd_metrics(A, U, s, Vt, rng)
    if kept < rank and not metrics["max_triplet_residual"] <= bound:
        status = Status.DIVERGED_BREAKDOWN
        message += (f", which misses the bound (max relative triplet residual "
                    f"{metrics['max_triplet_residual']:.2e}): A's range was not found; use --method lanczos")
    info.update(how, vector_products=op.products, rank=rank, tol=tol, certify_bound=bound)
    return Result(status=status, outputs={"U": U, "s": s, "Vt": Vt}, metrics=metrics,
                  iterations=op.products, info=info, message=message)


def certified_prefix(A, U: np.ndarray, s: np.ndarray, Vt: np.ndarray, bound: float) -> int:
    """Length of the leading run of triplets (descending ``s``) that are singular triplets to ``bound``.

    Triplet ``i`` passes when ``max(||A v_i - s_i u_i||, ||A^H u_i - s_i v_i||) <= bound * s_1`` and
    every entry of ``U_i^H U_i - I`` and ``V_i^H V_i - I`` (``U_i`` the first ``i + 1`` columns) is
    within ``bound``; the run stops at the first failure (later triplets are not trusted either).
    """
    k = s.size
    if k == 0 or not s[0] > 0:
        return 0
    V = Vt.conj().T
    right = column_norms(A @ V - U * s)
    left = column_norms(adjoint_matmul(A, U) - V * s)
    gram_u = np.abs(U.conj().T @ U - np.eye(k))
    gram_v = np.abs(Vt @ V - np.eye(k))
    for i in range(k):
        worst = max(gram_u[i, :i + 1].max(), gram_v[i, :i + 1].max())
        if not (max(right[i], left[i]) <= bound * s[0] and worst <= bound):
            return i
    return k


def _zero_svd(A, rank: int, solver: str, rng: np.random.Generator) -> Result:
    """The exact rank-``rank`` SVD of a zero ``A``: zero singular values, identity singular vectors."""
    m, n = A.shape
    dtype = np.result_type(A.dtype, np.float64)
    U, s, Vt = np.eye(m, rank, dtype=dtype), np.zeros(rank), np.eye(rank, n, dtype=dtype)
    metrics, how = svd_metrics(A, U, s, Vt, rng, 0.0)
    return Result(status=Status.CONVERGED_HAPPY_BREAKDOWN, outputs={"U": U, "s": s, "Vt": Vt}, metrics=metrics,
                  info={**how, "solver": solver, "vector_products": 0, "rank": rank, "zero_matrix": True},
                  message="the matrix is zero: its singular values are 0 and any orthonormal vectors are "
                          "singular vectors")


def _propack(op, rank: int, tol: float, rng: np.random.Generator, limit: int, info: dict):
    """svds(solver='propack') for up to ``rank`` triplets, retrying when it does not converge.

    First with a larger subspace (``2 rank``, for clustered values), then with ever fewer triplets
    (``rank // 2``, ``rank // 4``, ..., 1): PROPACK does not converge on the zero singular values of
    a matrix whose rank is below ``rank``, while the nonzero ones converge alone; the caller certifies
    what comes back and completes the rest. ``info["propack_k"]`` is the k that converged.
    """
    from scipy.sparse.linalg import svds

    tries = [rank] + ([min(2 * rank, limit)] if min(2 * rank, limit) > rank else [])
    k = rank // 2
    while k >= 1:
        tries.append(k)
        k //= 2
    for attempt, k in enumerate(tries):
        try:
            U, s, Vt = svds(op, k=k, tol=tol, solver="propack", rng=rng)
        except np.linalg.LinAlgError:
            if attempt == len(tries) - 1:
                raise
            continue
        info["propack_k"] = k
        U, s, Vt = _sorted_triplets(U, s, Vt)
        return U[:, :rank], s[:rank], Vt[:rank]
    raise AssertionError("unreachable")


def dense_svd(A, *, rank: int | None = None, tol: float | None = None,
              rng: np.random.Generator, callback: Callback = no_callback) -> Result:
    """SVD by LAPACK (gesdd), truncated to ``rank`` or to the smallest rank meeting ``tol``.

    Parameters
    ----------
    A : (m, n) ndarray or sparse matrix (densified: the caller checks the size)
    rank : int, optional
        Keep the top ``rank`` triplets.
    tol : float, optional
        With ``rank=None``: keep the smallest ``r`` with ``||A - A_r||_F <= tol ||A||_F`` (optimal,
        Eckart-Young). Neither given: the full thin SVD.

    Returns
    -------
    Result
        outputs ``U`` (m x r), ``s`` (r), ``Vt`` (r x n); status ``CONVERGED_DIRECT``.
    """
    dense = A.toarray() if sp.issparse(A) else np.asarray(A)
    U, s, Vt = sla.svd(dense, full_matrices=False, lapack_driver="gesdd", check_finite=False)
    norm_A = safe_norm(s)
    if rank is not None:
        r = min(rank, s.size)
    elif tol is not None:
        # relative tails ||A - A_r||_F / ||A||_F, in units of ||A||_F (no over/underflow)
        unit = s / norm_A if norm_A else s
        tail = np.sqrt(np.maximum(1.0 - np.cumsum(unit**2), 0.0)) if norm_A else np.zeros_like(s)
        meets = np.flatnonzero(tail <= tol)
        r = int(meets[0]) + 1 if meets.size else s.size
    else:
        r = s.size
    U, Vt = canonical_phases(U[:, :r], Vt[:r])
    s_r = s[:r]
    metrics, how = svd_metrics(dense, U, s_r, Vt, rng, frobenius_norm(dense))
    metrics["optimal_error"] = safe_norm(s[r:]) / norm_A if norm_A else 0.0
    return Result(status=Status.CONVERGED_DIRECT, outputs={"U": U, "s": s_r, "Vt": Vt}, metrics=metrics,
                  info={**how, "rank": int(r), "full_rank_singular_values": int(s.size)},
                  message=f"dense SVD (gesdd), kept {r} of {s.size} singular triplets")
