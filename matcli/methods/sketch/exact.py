"""Exact (LAPACK) least squares: the reference answer, and sketch-regress's choice for small problems.

``min ||A x - b||^2 + lam ||x||^2`` through the thin SVD ``A = U diag(s) V^H`` (LAPACK gesdd):

    x = V diag(s / (s^2 + lam)) U^H b,

with singular values below ``max(m, n) eps s_1`` treated as zero when ``lam = 0`` (the minimum-norm
least-squares solution, as LAPACK's gelsd with its default rcond). The SVD serves every right-hand side,
the ridge path and GCV alike. It accepts what ``scipy.linalg.lstsq`` accepts: any shape (wide: the
minimum-norm solution), complex values, several right-hand sides, empty matrices.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import scipy.sparse as sp

from matcli.core.result import Callback, Result, Status, no_callback
from matcli.methods.sketch.ridge import choose_lambda


def lapack_lstsq(A, b, *, ridge: float | str = 0.0, rng: np.random.Generator | None = None,
                 callback: Callback = no_callback, **_ignored: Any) -> Result:
    """Solve the (ridge) least-squares problem exactly by the SVD of ``A``.

    Parameters
    ----------
    A : (m, n) ndarray or scipy.sparse matrix (densified), real or complex; any m, n >= 0.
    b : (m,) or (m, k) right-hand side(s).
    ridge : lam >= 0, or ``"auto"`` (generalised cross-validation on the exact SVD, per the first column).
    rng, callback : unused (the method is deterministic and has no iterations); accepted so every
        sketch-regress mode has one signature. Other sketch options are ignored for the same reason.

    Returns
    -------
    Result
        ``outputs["x"]`` of shape (n,) or (n, k) in float64 / complex128; status ``converged_direct``
        (``diverged_nan`` for non-finite input). Metrics: ``residual_norm``, ``relative_residual``
        (max over columns), ``normal_residual`` = max_j ||A^H r_j - lam x_j|| / (||A||_F (||A||_F ||x_j|| +
        ||b_j||)) (a backward-error-scaled optimality test; a few eps for this backward-stable solver),
        ``optimality`` (``||A^H r - lam x|| / (||A||_2 ||[r; sqrt(lam) x]||)``, as the sketched modes
        report), ``rank`` (numerical rank used), ``condition_number`` (s_1 / s_rank), ``ridge``.
    """
    dense = A.toarray() if sp.issparse(A) else np.asarray(A)
    B = np.asarray(b)
    vector = B.ndim == 1
    B2 = B.reshape(-1, 1) if vector else B
    dtype = np.result_type(dense.dtype, B2.dtype, np.float64)
    dense, B2 = dense.astype(dtype, copy=False), B2.astype(dtype, copy=False)
    m, n = dense.shape
    k = B2.shape[1]
    info: dict[str, Any] = {"mode": "lapack", "driver": "gesdd (thin SVD)"}
    if not (np.isfinite(dense).all() and np.isfinite(B2).all()):
        return Result(Status.DIVERGED_NAN, message="A or b has NaN/Inf values", info=info)
    if min(m, n) == 0:
        X = np.zeros((n, k), dtype=dtype)
        return _finish(dense, B2, X, 0.0, vector, 0, math.inf, info, "empty A: x = 0")
    U, s, Vh = np.linalg.svd(dense, full_matrices=False)
    rank = numerical_rank(s, m, n)
    Z = U.conj().T @ B2
    if ridge == "auto":
        outside = float(np.linalg.norm(B2[:, 0]) ** 2 - np.linalg.norm(Z[:, 0]) ** 2)
        lam, gcv = choose_lambda(s, np.abs(Z[:, 0]), max(outside, 0.0), m)
        info["ridge_auto"] = gcv
    else:
        lam = float(ridge)
        if not lam >= 0.0:
            raise ValueError("ridge must be non-negative")
    info["ridge"] = lam
    X = Vh.conj().T @ (spectral_filter(s, rank, lam)[:, None] * Z)
    cond = float(s[0] / s[rank - 1]) if rank else math.inf
    message = f"exact least squares by the SVD (numerical rank {rank} of {min(m, n)})"
    return _finish(dense, B2, X, lam, vector, rank, cond, info, message, sigma_max=float(s[0]))


def numerical_rank(s: np.ndarray, m: int, n: int) -> int:
    """Singular values ``s`` (descending) above ``max(m, n) eps s_1``: LAPACK gelsd's default rcond."""
    return int(np.sum(s > max(m, n) * np.finfo(np.float64).eps * s[0])) if s.size and s[0] > 0 else 0


def spectral_filter(s: np.ndarray, rank: int, lam: float) -> np.ndarray:
    """The factors f_i of ``x = V diag(f) U^H b``: ``s / (s^2 + lam)`` for a ridge, else ``1 / s`` on
    the numerical rank and 0 beyond it (the minimum-norm solution)."""
    if lam > 0.0:
        return s / (s**2 + lam)
    filt = np.zeros_like(s)
    filt[:rank] = 1.0 / s[:rank]
    return filt


def _finish(A: np.ndarray, B: np.ndarray, X: np.ndarray, lam: float, vector: bool, rank: int, cond: float,
            info: dict[str, Any], message: str, sigma_max: float = 0.0) -> Result:
    """Metrics of ``X`` for every column (maxima), and the Result."""
    R = B - A @ X
    grad = A.conj().T @ R - lam * X
    rnorm = np.linalg.norm(R, axis=0)
    bnorm = np.linalg.norm(B, axis=0)
    xnorm = np.linalg.norm(X, axis=0)
    gnorm = np.linalg.norm(grad, axis=0)
    norm_F = float(np.linalg.norm(A))
    objective = np.sqrt(rnorm**2 + lam * xnorm**2)
    scale = norm_F * (norm_F * xnorm + bnorm)
    anorm = math.sqrt(sigma_max**2 + lam)

    def worst(num: np.ndarray, den: np.ndarray) -> float:
        return float(np.max(np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.0), initial=0.0))

    metrics = {
        "residual_norm": float(rnorm.max(initial=0.0)),
        "relative_residual": worst(rnorm, bnorm),
        "normal_residual": worst(gnorm, scale),
        "optimality": worst(gnorm, anorm * objective),
        "rank": float(rank),
        "condition_number": cond,
        "ridge": lam,
        "iterations": 0.0,
    }
    x = X[:, 0] if vector else X
    return Result(status=Status.CONVERGED_DIRECT, outputs={"x": x}, metrics=metrics, iterations=0,
                  info=info, message=message)
