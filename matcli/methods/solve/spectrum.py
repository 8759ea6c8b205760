"""Cheap spectral facts used by ``auto``, the Chebyshev preconditioner and SOR's omega estimate."""

from __future__ import annotations

import numpy as np

from matcli.core.lazy_sparse import sp


def lanczos_extremes(matvec, n: int, dtype, steps: int, rng: np.random.Generator) -> tuple[float, float]:
    """(smallest, largest) Ritz value of a Hermitian operator after ``steps`` Lanczos steps.

    Three-term recurrence without reorthogonalisation (loss of orthogonality only duplicates
    converged Ritz values, it does not move the extreme ones). Ritz values always lie inside the
    spectrum, so a negative smallest Ritz value proves the operator indefinite, and the largest is
    a lower bound of lambda_max.
    """
    v = rng.standard_normal(n).astype(dtype)
    v /= np.linalg.norm(v)
    v_prev = np.zeros_like(v)
    alphas, betas = [], []
    beta = 0.0
    for _ in range(min(steps, n)):
        w = matvec(v)
        alpha = float(np.real(np.vdot(v, w)))
        w = w - alpha * v - beta * v_prev
        alphas.append(alpha)
        beta = float(np.linalg.norm(w))
        if beta <= 1e-14 * max(abs(alpha), 1.0):
            break
        betas.append(beta)
        v_prev, v = v, w / beta
    k = len(alphas)
    T = np.diag(alphas) + np.diag(betas[:k - 1], 1) + np.diag(betas[:k - 1], -1)
    ritz = np.linalg.eigvalsh(T)
    return float(ritz[0]), float(ritz[-1])


def diagonal(A) -> np.ndarray:
    """The main diagonal of a square dense or sparse matrix as a 1-D array."""
    return A.diagonal() if sp.issparse(A) else np.diag(A).copy()


def gershgorin_positive(A) -> bool:
    """True when Gershgorin's theorem proves a Hermitian ``A`` with positive diagonal positive definite.

    Weak diagonal dominance (every disc in Re z >= 0) makes A positive semidefinite; it is definite
    when it is also nonsingular, which holds when every irreducible diagonal block (connected
    component of the graph of A) has a strictly dominant row (Taussky's theorem: an irreducibly
    diagonally dominant matrix is nonsingular), as for Dirichlet Laplacians. A pure-Neumann
    Laplacian or any block without a strict row is not claimed (it may be singular).
    """
    d = np.real(diagonal(A))
    if d.size == 0 or np.any(d <= 0):
        return False
    from matcli.methods.solve.system import abs_row_sums

    off = abs_row_sums(A) - np.abs(d)
    if not np.all(off <= d * (1 + 1e-12)):
        return False
    strict = off < d * (1 - 1e-12)
    if np.all(strict):
        return True
    if not np.any(strict) or not sp.issparse(A):
        # dense: only the all-strict case is taken (no graph search); the caller has other tests
        return False
    from scipy.sparse.csgraph import connected_components

    count, labels = connected_components(A, directed=False)
    return bool(np.all(np.bincount(labels[strict], minlength=count) > 0))


def symmetry_error(A) -> float:
    """max |A - A^H| / max |A| for square ``A`` (0 when exactly Hermitian)."""
    AH = A.conj().T if np.iscomplexobj(A) else A.T
    if sp.issparse(A) and A.format == "csr":
        # Fast path: equal patterns compare value arrays directly (no A - A^H matrix).
        C = A if A.has_canonical_format else A.copy()
        C.sum_duplicates()
        T = sp.csr_matrix(AH)  # the transpose comes out with sorted, unique indices
        T.sum_duplicates()
        if np.array_equal(C.indptr, T.indptr) and np.array_equal(C.indices, T.indices):
            scale = np.abs(C.data).max(initial=0.0)
            top = np.abs(C.data - T.data).max(initial=0.0)
            return float(top / scale) if scale > 0 else 0.0
    if sp.issparse(A):
        diff = (A - AH).tocsr()
        top = abs(diff).max() if diff.nnz else 0.0
        scale = abs(A).max() if A.nnz else 0.0
    else:
        top = np.abs(A - AH).max(initial=0.0)
        scale = np.abs(A).max(initial=0.0)
    return float(top / scale) if scale > 0 else 0.0
