"""Classical dense factorizations through scipy.linalg: QR (column pivoting), LU, Cholesky, LDL^T, eig.

Every kernel accepts a dense array or a (small) sparse matrix, which it densifies: these
factorizations are dense by nature; the adapter refuses inputs too large for that. Permutations
are returned as index vectors (0-based) so that the stated identity holds with fancy indexing.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp

from matcli.core.result import Callback, Result, Status, no_callback
from matcli.methods.factorize.metrics import eigen_metrics, factorization_residual, orthogonality_loss


def _dense(A) -> np.ndarray:
    return A.toarray() if sp.issparse(A) else np.asarray(A)


def _residual_metrics(diff: np.ndarray, A: np.ndarray) -> tuple[dict[str, float], dict[str, str]]:
    """``factorization_residual`` = ``||A - product||_F / ||A||_F`` (absolute for A = 0) and, under its
    older name, ``reconstruction_error``; info says how it was obtained."""
    err, how = factorization_residual(diff, A)
    return {"factorization_residual": err, "reconstruction_error": err}, {"reconstruction_error_method": how}


def _require_square(A, what: str) -> None:
    if A.shape[0] != A.shape[1]:
        raise ValueError(f"{what} needs a square matrix, got {A.shape[0]}x{A.shape[1]}")


def qr(A, *, pivoting: bool = True, rng: np.random.Generator | None = None,
       callback: Callback = no_callback) -> Result:
    """Economic QR, with column pivoting by default: ``A[:, P] = Q R``.

    Returns
    -------
    Result
        outputs ``Q`` (m x min(m,n), orthonormal columns), ``R`` (min(m,n) x n, upper triangular,
        ``|R_ii|`` non-increasing when pivoting), ``P`` (n column indices; ``arange(n)`` without
        pivoting); metrics ``factorization_residual`` (exact, also as ``reconstruction_error``), ``orthogonality_loss``,
        ``numerical_rank`` (count of ``|R_ii| > max(m,n) eps |R_11|`` when pivoting).
    """
    dense = _dense(A)
    m, n = dense.shape
    if pivoting:
        Q, R, P = sla.qr(dense, mode="economic", pivoting=True, check_finite=False)
    else:
        Q, R = sla.qr(dense, mode="economic", check_finite=False)
        P = np.arange(n)
    metrics, how = _residual_metrics(dense[:, P] - Q @ R, dense)
    metrics["orthogonality_loss"] = orthogonality_loss(Q)
    diag = np.abs(np.diag(R))
    if pivoting and diag.size:
        metrics["numerical_rank"] = float(np.sum(diag > max(m, n) * np.finfo(float).eps * diag[0]))
    return Result(status=Status.CONVERGED_DIRECT, outputs={"Q": Q, "R": R, "P": P.astype(np.int64)},
                  metrics=metrics, info={"pivoting": pivoting, **how},
                  message="QR with column pivoting (geqp3)" if pivoting else "QR (geqrf)")


def lu(A, *, rng: np.random.Generator | None = None, callback: Callback = no_callback) -> Result:
    """LU with partial pivoting: ``A[P] = L U``.

    Returns
    -------
    Result
        outputs ``L`` (m x k unit lower trapezoidal), ``U`` (k x n upper trapezoidal), ``P`` (m row
        indices), k = min(m, n); metrics ``factorization_residual`` (and ``reconstruction_error``), ``growth_factor``
        (max|U| / max|A|), ``min_abs_pivot`` relative to max|A|. A zero pivot gives status
        ``DIVERGED_SINGULAR`` (the factors are still exact).
    """
    dense = _dense(A)
    p, L, U = sla.lu(dense, p_indices=True, check_finite=False)
    P = np.argsort(p)
    scale = float(np.abs(dense).max()) if dense.size else 0.0
    pivots = np.abs(np.diag(U))
    metrics, how = _residual_metrics(dense[P] - L @ U, dense)
    metrics.update(growth_factor=float(np.abs(U).max() / scale) if scale else 0.0,
                   min_abs_pivot=float(pivots.min() / scale) if scale and pivots.size else 0.0)
    singular = pivots.size > 0 and pivots.min() == 0.0
    status = Status.DIVERGED_SINGULAR if singular else Status.CONVERGED_DIRECT
    return Result(status=status, outputs={"L": L, "U": U, "P": P.astype(np.int64)}, metrics=metrics, info=how,
                  message="LU has an exact zero pivot: A is singular" if singular else "LU with partial pivoting (getrf)")


def cholesky(A, *, rng: np.random.Generator | None = None, callback: Callback = no_callback) -> Result:
    """Cholesky ``A = L L^H`` of a Hermitian positive definite matrix (lower triangle is read).

    Returns
    -------
    Result
        outputs ``L`` (n x n lower triangular, positive diagonal); status ``DIVERGED_NOT_SPD`` and
        no outputs when a non-positive pivot appears; metrics ``factorization_residual`` (against
        the full ``A``, so a non-symmetric input shows up as a large error).
    """
    dense = _dense(A)
    _require_square(dense, "Cholesky")
    try:
        L = sla.cholesky(dense, lower=True, check_finite=False)
    except np.linalg.LinAlgError as exc:
        return Result(status=Status.DIVERGED_NOT_SPD, message=f"matrix is not positive definite ({exc}); "
                      "try --kind ldl or --kind lu")
    metrics, how = _residual_metrics(dense - L @ L.conj().T, dense)
    diag = np.real(np.diag(L))
    if diag.size:
        metrics["diag_ratio"] = float(diag.min() / diag.max())
    return Result(status=Status.CONVERGED_DIRECT, outputs={"L": L}, metrics=metrics, info=how,
                  message="Cholesky (potrf)")


def ldl(A, *, rng: np.random.Generator | None = None, callback: Callback = no_callback) -> Result:
    """Bunch-Kaufman ``A = L D L^H`` of a symmetric/Hermitian (possibly indefinite) matrix.

    Returns
    -------
    Result
        outputs ``L`` (n x n; ``L[P]`` is unit lower triangular), ``D`` (n x n block diagonal with
        1x1 and 2x2 blocks), ``P`` (n row indices making ``L`` triangular); metrics
        ``factorization_residual`` (against the full ``A``), ``negative_eigenvalues`` (inertia of D).
    """
    dense = _dense(A)
    _require_square(dense, "LDL^T")
    hermitian = bool(np.iscomplexobj(dense))
    L, D, perm = sla.ldl(dense, lower=True, hermitian=hermitian, check_finite=False)
    inertia = np.linalg.eigvalsh(D) if D.size else np.zeros(0)
    metrics, how = _residual_metrics(dense - L @ D @ L.conj().T, dense)
    metrics.update(negative_eigenvalues=float(np.sum(inertia < 0)), zero_eigenvalues=float(np.sum(inertia == 0)))
    return Result(status=Status.CONVERGED_DIRECT, outputs={"L": L, "D": D, "P": perm.astype(np.int64)},
                  metrics=metrics, info=how,
                  message="LDL^T with Bunch-Kaufman pivoting (sytrf)")


def eig(A, *, hermitian: bool, rng: np.random.Generator | None = None,
        callback: Callback = no_callback) -> Result:
    """Full eigendecomposition ``A V = V diag(w)``.

    ``hermitian=True`` uses ``eigh`` (real ascending ``w``, orthonormal ``V``); otherwise ``eig``
    (complex ``w``, unit-norm columns of ``V``).

    Returns
    -------
    Result
        outputs ``w`` (n), ``V`` (n x n); metrics of
        :func:`~matcli.methods.factorize.metrics.eigen_metrics` (``max_eigen_residual`` relative to
        ``max |w|``, ``residual`` relative to ``||A||_F``, ``orthogonality_loss`` for eigh),
        ``reconstruction_error`` (``V diag(w) V^H`` for eigh; ``V diag(w) V^{-1}`` for eig,
        infinite when V is singular), ``eigenvector_condition`` (eig).
    """
    dense = _dense(A)
    _require_square(dense, "an eigendecomposition")
    if hermitian:
        # divide and conquer (syevd/heevd): scipy's default MRRR (syevr) loses orthogonality, up to
        # ||I - V V^T||_1 = 142 n eps on LAPACK's sep test matrices where syevd stays below 5
        w, V = sla.eigh(dense, driver="evd", check_finite=False)
        recon = (V * w) @ V.conj().T
    else:
        w, V = sla.eig(dense, check_finite=False)
        cond_V = float(np.linalg.cond(V)) if V.size else 1.0
        recon = (V * w) @ np.linalg.pinv(V) if np.isfinite(cond_V) else None
    metrics, how = eigen_metrics(dense, w, V, hermitian=hermitian)
    if not hermitian:
        metrics["eigenvector_condition"] = cond_V
    metrics["reconstruction_error"] = (factorization_residual(dense - recon, dense)[0] if recon is not None
                                       else float("inf"))
    return Result(status=Status.CONVERGED_DIRECT, outputs={"w": w, "V": V}, metrics=metrics,
                  info={"hermitian": hermitian, "reconstruction_error_method": "exact", **how},
                  message="symmetric eigensolver (syevd)" if hermitian else "general eigensolver (geev)")
