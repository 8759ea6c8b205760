"""Truncated SVD by Lanczos (scipy ``svds``: ARPACK, PROPACK) and dense SVD (LAPACK gesdd)."""

from __future__ import annotations

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp
from scipy.sparse.linalg import ArpackError, ArpackNoConvergence, LinearOperator, svds

from matcli.core.result import Callback, Result, Status, no_callback
from matcli.methods.factorize.metrics import adjoint_matmul, frobenius_norm, svd_metrics


class _CountingOperator(LinearOperator):
    """``A`` as a LinearOperator that counts products (svds offers no iteration callback)."""

    def __init__(self, A, callback: Callback):
        super().__init__(dtype=A.dtype, shape=A.shape)
        self.A = A
        self.products = 0
        self.callback = callback

    def _tick(self, columns: int) -> None:
        self.products += columns
        self.callback(self.products, products=float(self.products))

    def _matvec(self, x):
        self._tick(1)
        return self.A @ x

    def _matmat(self, X):
        self._tick(X.shape[1])
        return self.A @ X

    def _rmatvec(self, x):
        self._tick(1)
        return adjoint_matmul(self.A, x)

    def _rmatmat(self, X):
        self._tick(X.shape[1])
        return adjoint_matmul(self.A, X)

    def _adjoint(self):
        return LinearOperator(dtype=self.dtype, shape=(self.shape[1], self.shape[0]),
                              matvec=self._rmatvec, rmatvec=self._matvec,
                              matmat=self._rmatmat, rmatmat=self._matmat)


def _sorted_triplets(U, s, Vt):
    order = np.argsort(s)[::-1]
    return np.ascontiguousarray(U[:, order]), s[order], np.ascontiguousarray(Vt[order])


def lanczos_svd(A, *, rank: int, solver: str = "arpack", tol: float = 0.0, maxiter: int | None = None,
                rng: np.random.Generator, callback: Callback = no_callback) -> Result:
    """Top ``rank`` singular triplets by ``scipy.sparse.linalg.svds`` (ARPACK or PROPACK).

    Parameters
    ----------
    A : (m, n) ndarray or sparse matrix
    rank : int
        ``1 <= rank < min(m, n)`` (an svds restriction); for complex ``A`` with ARPACK
        ``rank < min(m, n) - 1`` (svds then runs the non-Hermitian ARPACK driver, which cannot
        return more than ``N - 2`` eigenpairs). ValueError otherwise.
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
        ``CONVERGED_RTOL``, ``CONVERGED_HAPPY_BREAKDOWN`` for a zero matrix (``s = 0``, ``U`` and
        ``Vt`` the first columns/rows of the identity: for A = 0 any orthonormal vectors are
        singular vectors, and ARPACK stops with error -9 as its first product is zero), or
        ``DIVERGED_MAX_IT`` / ``DIVERGED_BREAKDOWN`` (no outputs) when the solver did not converge
        or ARPACK reported an error.
        ``callback(products, products=...)`` reports the running number of vector products.
    """
    m, n = A.shape
    if not 1 <= rank < min(m, n):
        raise ValueError(f"svds needs 1 <= rank < min(m, n) = {min(m, n)}, got {rank}")
    if solver == "arpack" and np.iscomplexobj(A) and rank >= min(m, n) - 1:
        raise ValueError(f"ARPACK on a complex matrix needs rank <= min(m, n) - 2 = {min(m, n) - 2}, got {rank}; "
                         "use --method propack or dense")
    if frobenius_norm(A) == 0.0:
        return _zero_svd(A, rank, solver, rng)
    op = _CountingOperator(A, callback)
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
    metrics, how = svd_metrics(A, U, s, Vt, rng)
    info.update(how, vector_products=op.products, rank=rank, tol=tol)
    return Result(status=Status.CONVERGED_RTOL, outputs={"U": U, "s": s, "Vt": Vt}, metrics=metrics,
                  iterations=op.products, info=info,
                  message=f"{solver} converged with {op.products} vector products")


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
    """svds(solver='propack'), retrying with a larger subspace when it runs out of Lanczos steps."""
    k = rank
    for attempt in range(4):
        try:
            U, s, Vt = svds(op, k=k, tol=tol, solver="propack", rng=rng)
            info["propack_k"] = k
            U, s, Vt = _sorted_triplets(U, s, Vt)
            return U[:, :rank], s[:rank], Vt[:rank]
        except np.linalg.LinAlgError:
            if k >= limit - 1 or attempt == 3:
                raise
            k = min(2 * k, limit - 1)
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
    norm_A = float(np.sqrt(np.sum(s**2)))
    if rank is not None:
        r = min(rank, s.size)
    elif tol is not None:
        tail = np.sqrt(np.maximum(norm_A**2 - np.cumsum(s**2), 0.0))
        meets = np.flatnonzero(tail <= tol * norm_A)
        r = int(meets[0]) + 1 if meets.size else s.size
    else:
        r = s.size
    U, s_r, Vt = U[:, :r], s[:r], Vt[:r]
    metrics, how = svd_metrics(dense, U, s_r, Vt, rng, frobenius_norm(dense))
    metrics["optimal_error"] = float(np.sqrt(np.sum(s[r:] ** 2)) / norm_A) if norm_A else 0.0
    return Result(status=Status.CONVERGED_DIRECT, outputs={"U": U, "s": s_r, "Vt": Vt}, metrics=metrics,
                  info={**how, "rank": int(r), "full_rank_singular_values": int(s.size)},
                  message=f"dense SVD (gesdd), kept {r} of {s.size} singular triplets")
