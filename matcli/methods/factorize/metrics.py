"""Quality metrics shared by the factorize kernels: reconstruction error and orthogonality loss."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

#: Matrices with at most this many entries get an exact, directly formed reconstruction error.
EXACT_ENTRIES = 4_000_000

#: Gaussian probes of the randomized estimate.
PROBES = 16


def frobenius_norm(A) -> float:
    """||A||_F of a dense array or a scipy.sparse matrix (sparse never densified), without overflow
    or underflow for entries near the ends of the floating-point range."""
    return safe_norm(A.data if sp.issparse(A) else A)


def safe_norm(X: np.ndarray) -> float:
    """``||X||_F`` computed as ``c ||X / c||_F`` with ``c = max|X|`` (squares of entries near 1e±300
    over- or underflow; LAPACK's lange scales the same way)."""
    X = np.asarray(X)
    scale = float(np.max(np.abs(X))) if X.size else 0.0
    if scale == 0.0 or not np.isfinite(scale):
        return scale
    return scale * float(np.linalg.norm(X / scale))


def column_norms(X: np.ndarray) -> np.ndarray:
    """``||X[:, j]||_2`` for every column, scaled like :func:`safe_norm` (no over/underflow)."""
    if X.size == 0:
        return np.zeros(X.shape[1])
    scale = np.max(np.abs(X), axis=0)
    safe = np.where((scale > 0) & np.isfinite(scale), scale, 1.0)
    return np.where(scale > 0, safe * np.linalg.norm(X / safe, axis=0), scale)


def orthogonality_loss(Q: np.ndarray) -> float:
    """||Q^H Q - I||_F for a matrix ``Q`` (m x k) meant to have orthonormal columns."""
    k = Q.shape[1]
    if k == 0:
        return 0.0
    G = Q.conj().T @ Q
    G[np.diag_indices(k)] -= 1.0
    return float(np.linalg.norm(G))


def low_rank_error(A, X: np.ndarray, Y: np.ndarray, rng: np.random.Generator,
                   norm_A: float | None = None, AYh: np.ndarray | None = None) -> tuple[float, str]:
    """Relative Frobenius error ``||A - X Y||_F / ||A||_F`` of a low-rank factorization.

    Parameters
    ----------
    A : (m, n) ndarray or sparse matrix
    X : (m, k) ndarray
    Y : (k, n) ndarray
    rng : numpy.random.Generator
        Used only by the randomized estimate.
    AYh : (m, k) ndarray, optional
        ``A @ Y^H`` when the caller already has it (saves the one product with A).

    Returns
    -------
    error, how : float, str
        ``how`` is ``"exact"`` when ``A - X Y`` was formed (at most :data:`EXACT_ENTRIES` entries),
        ``"exact (Gram expansion)"`` when the error came from
        ``||A||^2 - 2 Re tr(X^H A Y^H) + tr((X^H X)(Y Y^H))`` (exact in exact arithmetic, one product
        with ``A``; accurate while the relative error is above ~1e-7), else
        ``"randomized estimate (16 Gaussian probes)"`` (unbiased for the squared error, relative
        spread about sqrt(2/16)). For ``A = 0`` the absolute ``||X Y||_F`` (how says so).
    """
    m, n = A.shape
    norm_A = frobenius_norm(A) if norm_A is None else norm_A
    if norm_A == 0.0:
        # relative to ||A|| = 0 the error is undefined: report ||X Y||_F itself, from
        # ||X Y||_F^2 = tr((X^H X)(Y Y^H)) (||X|| ||Y|| overstates it, e.g. for disjoint supports)
        product = float(np.real(np.trace((X.conj().T @ X) @ (Y @ Y.conj().T))))
        return float(np.sqrt(max(product, 0.0))), "absolute ||X Y||_F (A = 0)"
    if m * n <= EXACT_ENTRIES:
        dense = A.toarray() if sp.issparse(A) else np.asarray(A)
        return safe_norm(dense - X @ Y) / norm_A, "exact"
    cross = np.vdot(X, matmul(A, Y.conj().T) if AYh is None else AYh).real
    gram = np.vdot(X.conj().T @ X, Y @ Y.conj().T).real  # tr(P Q) = vdot(P, Q) for Hermitian P
    squared = norm_A**2 - 2.0 * cross + gram
    if squared > 1e-13 * norm_A**2:
        return float(np.sqrt(squared) / norm_A), "exact (Gram expansion)"
    omega = rng.standard_normal((n, PROBES))
    residual = A @ omega - X @ (Y @ omega)
    return safe_norm(residual) / np.sqrt(PROBES) / norm_A, f"randomized estimate ({PROBES} Gaussian probes)"


def svd_metrics(A, U: np.ndarray, s: np.ndarray, Vt: np.ndarray, rng: np.random.Generator,
                norm_A: float | None = None, AhU: np.ndarray | None = None,
                AV: np.ndarray | None = None) -> tuple[dict[str, float], dict[str, str]]:
    """Metrics of a truncated SVD ``A ~ U diag(s) Vt``.

    ``reconstruction_error`` (relative Frobenius, see :func:`low_rank_error`),
    ``orthogonality_loss`` (max over U and V of ``||Q^H Q - I||_F``), ``max_triplet_residual``
    (``max_i max(||A v_i - s_i u_i||, ||A^H u_i - s_i v_i||) / s_1``; over ``||A||_F`` when every
    ``s_i`` is 0, absolute for ``A = 0``; present whenever there is a triplet) and ``frobenius_norm``;
    returns (metrics, info) where info names how the reconstruction error was obtained and the
    residuals' denominator (``triplet_residual_scale``).
    One product ``A V`` serves both the error and the residuals (``AV`` when the caller computed it);
    ``AhU`` (``A^H U``) saves the other.
    """
    norm_A = frobenius_norm(A) if norm_A is None else norm_A
    V = Vt.conj().T
    AV = matmul(A, V) if AV is None else AV
    err, how = low_rank_error(A, U * s, Vt, rng, norm_A, AYh=AV)
    metrics = {
        "reconstruction_error": err,
        "orthogonality_loss": max(orthogonality_loss(U), orthogonality_loss(V)),
    }
    info = {"reconstruction_error_method": how}
    if s.size:
        right = column_norms(AV - U * s)
        left = column_norms((adjoint_matmul(A, U) if AhU is None else AhU) - V * s)
        scale, info["triplet_residual_scale"] = _residual_scale(float(np.max(s)), norm_A)
        metrics["max_triplet_residual"] = float(np.max(np.maximum(right, left)) / scale)
    metrics["frobenius_norm"] = norm_A
    return metrics, info


def _residual_scale(largest: float, norm_A: float) -> tuple[float, str]:
    """Denominator of the relative residuals: the largest computed value, else ``||A||_F``, else 1.

    A zero largest value with ``A != 0`` is a failed computation, measured against ``||A||_F`` so that
    the residual stays scale-free; for ``A = 0`` the residuals are absolute (and exactly 0).
    """
    if largest > 0:
        return largest, "largest computed value"
    if norm_A > 0:
        return norm_A, "||A||_F (every computed value is 0)"
    return 1.0, "absolute (A = 0)"


def eigen_metrics(A, w: np.ndarray, V: np.ndarray, *, hermitian: bool,
                  norm_A: float | None = None) -> tuple[dict[str, float], dict[str, str]]:
    """Metrics of eigenpairs ``A V ~ V diag(w)`` (``V`` n x k, ``w`` k).

    ``max_eigen_residual`` = ``max_i ||A v_i - w_i v_i|| / max_i |w_i|`` (``||A||_F`` when every
    ``w_i`` is 0, absolute for ``A = 0``; ``v_i`` of unit norm, which both LAPACK and ARPACK return),
    ``residual`` = the same maximum over ``||A||_F`` (scale of the whole matrix), ``orthogonality_loss``
    (``||V^H V - I||_F``, Hermitian only: eigenvectors of a non-normal matrix are not orthogonal) and
    ``eigenvector_norm_loss`` = ``max_i | ||v_i|| - 1 |``. Returns (metrics, info).
    """
    norm_A = frobenius_norm(A) if norm_A is None else norm_A
    metrics: dict[str, float] = {}
    info: dict[str, str] = {}
    if w.size:
        residual = float(np.max(column_norms(matmul(A, V) - V * w)))
        scale, info["eigen_residual_scale"] = _residual_scale(float(np.max(np.abs(w))), norm_A)
        metrics["max_eigen_residual"] = residual / scale
        metrics["residual"] = residual / norm_A if norm_A else residual
        metrics["eigenvector_norm_loss"] = float(np.max(np.abs(np.linalg.norm(V, axis=0) - 1.0)))
    else:
        metrics.update(max_eigen_residual=0.0, residual=0.0, eigenvector_norm_loss=0.0)
    if hermitian:
        metrics["orthogonality_loss"] = orthogonality_loss(V)
    return metrics, info


def factorization_residual(difference, A) -> tuple[float, str]:
    """``||A - product||_F / ||A||_F`` from the formed difference (dense or sparse), and how.

    For ``A = 0`` the absolute ``||difference||_F`` (how says so).
    """
    norm_A = frobenius_norm(A)
    err = frobenius_norm(difference)
    if norm_A == 0.0:
        return err, "exact, absolute (A = 0)"
    return err / norm_A, "exact"


def matmul(A, X: np.ndarray) -> np.ndarray:
    """``A @ X`` for a dense array or sparse matrix ``A``: BLAS, or scipy's single multi-vector product.

    Column chunks of ``X`` (on several threads inside :func:`matcli.threads.thread_limit`) were
    measured here (scipy 1.17, 2 cores, quiet) 1.1-2.3x slower than one product at every size from
    MovieLens 100k to 200000 x 100000 with 5e6 nonzeros, 10-50 columns, on 1 or 2 threads; so there
    are none. The result is the same bits either way (each column's sums run in the same order).
    """
    return A @ X


def adjoint_matmul(A, X: np.ndarray) -> np.ndarray:
    """``A^H @ X`` for a dense array or sparse matrix ``A`` without copying ``A`` (``A.T`` is a view)."""
    if np.iscomplexobj(A):
        return matmul(A.T, X.conj()).conj()
    return matmul(A.T, X)
