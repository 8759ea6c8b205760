"""Tools for sequences of related systems A_t x_t = b_t (same pattern, values changing).

* :func:`order_systems`: visit similar matrices consecutively (greedy nearest neighbour on the
  stored values), as in sorting-based Krylov subspace recycling (SKR), so reused preconditioners
  and recycled subspaces stay relevant.
* :class:`RecycledSubspace`: an augmented subspace spanned by earlier solutions; each new solve
  starts from the minimum-residual point of that subspace for the *new* matrix.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp


def same_pattern(A, B) -> bool:
    """True when two CSR matrices have identical shape and sparsity pattern."""
    if not (sp.issparse(A) and sp.issparse(B)) or A.shape != B.shape or A.nnz != B.nnz:
        return False
    A, B = sp.csr_matrix(A), sp.csr_matrix(B)
    A.sort_indices()
    B.sort_indices()
    return bool(np.array_equal(A.indptr, B.indptr) and np.array_equal(A.indices, B.indices))


def order_systems(matrices: list) -> list[int]:
    """A visiting order of ``matrices`` in which neighbours are close.

    Greedy nearest neighbour from the first matrix, distance ``||A_i - A_j||_F`` computed on the
    value arrays (same-pattern sparse or equal-shape dense matrices); any other mix keeps the
    given order. Cost O(t^2 nnz) for t systems.
    """
    t = len(matrices)
    if t <= 2:
        return list(range(t))
    first = matrices[0]
    if all(sp.issparse(M) for M in matrices) and all(same_pattern(first, M) for M in matrices[1:]):
        vectors = []
        for M in matrices:
            C = sp.csr_matrix(M)
            C.sort_indices()
            vectors.append(C.data)
    elif not any(sp.issparse(M) for M in matrices) and all(M.shape == first.shape for M in matrices):
        vectors = [np.asarray(M).ravel() for M in matrices]
    else:
        return list(range(t))
    V = np.vstack(vectors)
    sq = np.einsum("ij,ij->i", V.conj(), V).real
    dist = np.sqrt(np.maximum(sq[:, None] + sq[None, :] - 2 * np.real(V.conj() @ V.T), 0.0))
    order, left = [0], set(range(1, t))
    while left:
        last = order[-1]
        nxt = min(left, key=lambda j: (dist[last, j], j))
        order.append(nxt)
        left.remove(nxt)
    return order


class RecycledSubspace:
    """Orthonormal basis ``W`` (n, p <= ``max_dim``) of the most recent solutions.

    :meth:`initial_guess` returns ``x0 = W y`` with ``y = argmin ||b - A W y||`` for the current
    ``A``: never worse than a zero start (``||b - A x0|| <= ||b||``), and exact when the new solution
    lies in the span (e.g. a right-hand side that is a combination of earlier ones).
    """

    def __init__(self, max_dim: int):
        self.max_dim = max_dim
        self.W: np.ndarray | None = None

    @property
    def dim(self) -> int:
        return 0 if self.W is None else self.W.shape[1]

    def initial_guess(self, A, B: np.ndarray) -> np.ndarray | None:
        """(n, k) starting block for right-hand sides ``B`` (n, k), or None when empty."""
        if self.W is None or self.max_dim == 0:
            return None
        AW = A @ self.W
        Y, *_ = np.linalg.lstsq(AW, B, rcond=None)
        return self.W @ Y

    def add(self, X: np.ndarray) -> None:
        """Append the solution columns ``X`` (n, k), orthonormalised against the basis; the oldest
        directions are dropped beyond ``max_dim``."""
        if self.max_dim == 0:
            return
        X = np.asarray(X).reshape(X.shape[0], -1)
        if self.W is not None:
            X = X.astype(np.result_type(X, self.W))
            for _ in range(2):
                X = X - self.W @ (self.W.conj().T @ X)
        norms = np.linalg.norm(X, axis=0)
        scale = max(norms.max(initial=0.0), np.finfo(float).tiny)
        X = X[:, norms > 1e-10 * scale]
        if X.shape[1] == 0:
            return
        Q, _ = np.linalg.qr(X)
        self.W = Q if self.W is None else np.hstack([self.W, Q])
        if self.W.shape[1] > self.max_dim:
            self.W = self.W[:, -self.max_dim:]


#: Median relative Ritz residual of the recycled vectors below which RecyclingCG restarts once (a
#: heuristic: on slowly varying Poisson sequences restarts with poorer vectors cost more than they save).
RITZ_ACCURATE = 0.3


class RecyclingCG:
    """PCG across a sequence of SPD systems that recycles approximate eigenvectors of ``M^{-1} A``
    (init-CG with Lanczos harvesting, after Stathopoulos & Orginos's incremental eigCG, 2010).

    Each solve starts from the Galerkin projection onto the recycled space ``W`` (n x p),
    ``x += W (W^H A W)^{-1} W^H (b - A x)``, which removes the residual's components along ``W``:
    when ``W`` spans eigenvectors of the smallest eigenvalues, CG proceeds at the rate of the rest of
    the spectrum. Rounding and the inexactness of ``W`` (its Ritz residuals for the current A) bring
    those components back as the residual falls, so when ``W`` is accurate (:meth:`_accurate`) the
    solve restarts once, from a second projection, when the residual has dropped to ``sqrt(rtol)``.
    This costs 2p products with A and p preconditioner applications per system and nothing per
    iteration (deflating every search direction would cost 4pn flops per iteration). During the last CG run the Lanczos vectors hidden in PCG
    are kept (within ``memory_bytes``); afterwards ``W`` becomes the ``dim`` smallest Ritz vectors of
    the pencil ``(A, M)`` over span(W, new Ritz vectors), so the space keeps improving along the
    sequence. Sorting the systems keeps neighbours similar.
    """

    #: Lanczos vectors kept per solve, per recycled dimension (the Ritz extraction costs O(kept * n * dim)).
    max_vectors_factor = 20

    def __init__(self, dim: int, per_system: int | None = None, memory_bytes: float = 2e8):
        self.dim = dim
        self.per_system = per_system or max(1, -(-dim // 2))
        self.memory_bytes = memory_bytes
        self.W: np.ndarray | None = None
        self.MW: np.ndarray | None = None
        self._log = None

    def solve(self, A, B, *, M=None, x0=None, rtol: float = 1e-8, maxiter: int | None = None,
              callback=None):
        """Solve ``A X = B`` from projected starts, then refresh the recycled space."""
        from matcli.core.result import no_callback
        from matcli.methods.solve.krylov import LanczosLog, _cg, default_maxiter
        from matcli.methods.solve.precond import identity

        callback = callback or no_callback
        n = A.shape[0]
        W = self.W if self.W is not None and self.W.shape[0] == n else None
        # One log for the whole sequence: its buffers are paged in by the first solve only (fresh
        # buffers cost a page fault per 4 KiB on every system, more than the copies themselves).
        vectors = max(8, min(int(self.memory_bytes // (16 * n)), self.max_vectors_factor * self.dim))
        # With M cheap to apply (none, Jacobi), M U is formed at harvest instead of logging M v_j.
        forward = (M or identity()).forward
        keep_images = forward is None
        if self._log is None or self._log.max_vectors != vectors or self._log.keep_images != keep_images:
            self._log = LanczosLog(vectors, keep_images)
        log = self._log
        log.reset()
        first_iterations = 0
        if W is not None:
            AW = A @ W
            E = W.conj().T @ AW
            E = (E + E.conj().T) / 2
            x0 = _projected_start(A, B, W, E, x0)
            restart_tol = math.sqrt(rtol)
            if restart_tol > rtol and self._accurate(W, AW, np.real(np.diag(E)), M):
                first = _cg(A, B, M, x0, restart_tol, maxiter, callback)
                first_iterations = first.iterations
                x0 = _projected_start(A, B, W, E, first.outputs["x"])
                maxiter = max(1, default_maxiter(n, maxiter) - first_iterations)
        result = _cg(A, B, M, x0, rtol, maxiter, lambda it, **v: callback(first_iterations + it, **v), log)
        result.iterations += first_iterations
        result.info["restarts"] = int(first_iterations > 0)
        # A solve much shorter than the space it would feed (a strong preconditioner) has nothing
        # to recycle: its few Ritz vectors are poor, and projections would cost more than they save.
        ritz = log.ritz(self.per_system, forward) if result.iterations >= 4 * self.dim else None
        if ritz is not None:
            self.W, self.MW = self._refresh(A, W, ritz[1], ritz[2])
        result.info["recycled_dim"] = 0 if W is None else int(W.shape[1])
        return result

    def _accurate(self, W: np.ndarray, AW: np.ndarray, theta: np.ndarray, M) -> bool:
        """True when most columns of W (M-orthonormal; ``theta`` their Rayleigh quotients, the
        diagonal of ``W^H A W``) are eigenvectors of the current ``M^{-1} A`` to a relative Ritz
        residual ``||A w - theta M w||_{M^-1} / theta <= RITZ_ACCURATE``. Only then does the restart
        pay: projecting onto poor vectors keeps CG free of them only briefly, while the restart
        throws away the Krylov space built so far."""
        return bool(np.median(self._ritz_residuals(W, AW, theta, M)) <= RITZ_ACCURATE)

    def _ritz_residuals(self, W: np.ndarray, AW: np.ndarray, theta: np.ndarray, M) -> np.ndarray:
        """Per column of ``W``: ``||A w - theta M w||_{M^-1} / theta`` for the current matrix (inf
        where ``theta <= 0``)."""
        D = AW - self.MW * theta
        MinvD = D if M is None else M.apply(D)
        res = np.sqrt(np.abs(np.real(np.einsum("ij,ij->j", D.conj(), MinvD))))
        return np.where(theta > 0, res / np.where(theta > 0, theta, 1.0), np.inf)

    def _refresh(self, A, W, U: np.ndarray, MU: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The ``dim`` smallest Ritz pairs of ``A z = theta M z`` over span([W, U]): (W, M W)."""
        if W is None:
            Z, MZ = U, MU
        else:
            Z, MZ = np.hstack([W, U.astype(W.dtype, copy=False)]), np.hstack([self.MW, MU.astype(W.dtype, copy=False)])
        G = Z.conj().T @ MZ
        T = Z.conj().T @ (A @ Z)
        # M-orthonormal basis Z C of the span, dropping directions G cannot tell apart.
        s, Q = np.linalg.eigh((G + G.conj().T) / 2)
        good = s > 1e-12 * s.max(initial=0.0)
        if not good.any():
            return self.W, self.MW
        C = Q[:, good] / np.sqrt(s[good])
        theta, Y = np.linalg.eigh(C.conj().T @ ((T + T.conj().T) / 2) @ C)
        Y = Y[:, theta > 0][:, : self.dim]
        if not Y.shape[1]:
            return self.W, self.MW
        CY = C @ Y
        return Z @ CY, MZ @ CY


def _projected_start(A, B, W: np.ndarray, E: np.ndarray, x0):
    """``x0 + W E^{-1} W^H (B - A x0)`` with ``E = W^H A W``: the A-norm-optimal correction from span(W)."""
    B2 = B.reshape(B.shape[0], -1)
    dtype = np.result_type(B2.dtype, W.dtype)
    X0 = np.zeros(B2.shape, dtype=dtype) if x0 is None else np.array(x0, dtype=dtype).reshape(B2.shape)
    R0 = B2 - A @ X0 if x0 is not None else B2
    try:
        Y = np.linalg.solve(E, W.conj().T @ R0)
    except np.linalg.LinAlgError:
        return x0
    return (X0 + W @ Y).reshape(B.shape)
