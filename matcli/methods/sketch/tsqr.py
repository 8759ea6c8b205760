"""Exact least squares over row blocks by TSQR: one pass for the R factor of ``[A b]``, one to certify.

For a tall A (m x n, m >= n) held as row blocks ``A_i`` (with ``b_i``), the R factors of the blocks'
``[A_i b_i]``, stacked and factored again, give the R factor of the whole ``[A b]`` (Demmel, Grigori,
Hoemmen, Langou, "Communication-optimal parallel and sequential QR and LU factorizations", 2012):

    [A b] = Q [[R, z], [0, rho]]   so   min ||A x - b||^2 + lam ||x||^2 = min ||R x - z||^2 + lam ||x||^2 + rho^2,

an (n x n) problem solved exactly by the SVD of R (:func:`matcli.methods.sketch.exact.lapack_lstsq`'s
rules: numerical rank, ridge, GCV with m rows and rho^2 outside the range). Householder QR is
backward stable block by block and across the stack, so x is as accurate as LAPACK's on the whole A.
A second pass computes ``r = b - A x`` and ``A^T r`` from A itself for the certificate.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from matcli.core.result import Callback, Result, Status, no_callback
from matcli.methods.sketch.exact import numerical_rank, spectral_filter
from matcli.methods.sketch.ridge import choose_lambda


def block_r_factor(A_block, b_block: np.ndarray) -> np.ndarray:
    """The R factor (min(r, n + 1) x (n + 1)) of ``[A_block b_block]`` (r rows, dense or sparse)."""
    dense = A_block.toarray() if hasattr(A_block, "toarray") else np.asarray(A_block, dtype=np.float64)
    return np.linalg.qr(np.column_stack([dense, b_block]), mode="r")


def tsqr_lstsq(problem, *, ridge: float | str = 0.0, rng: np.random.Generator | None = None,
               callback: Callback = no_callback, **_ignored: Any) -> Result:
    """Solve ``min ||A x - b||^2 + ridge ||x||^2`` exactly for a row-block problem.

    Parameters
    ----------
    problem : object with ``shape`` (m, n), ``b`` (m,), ``r_factors()`` (the blocks' R factors of
        ``[A_i b_i]``, in block order; one pass) and ``residual_norm_and_gradient(x)`` ((||b - A x||,
        A^T (b - A x)); one pass, r never gathered), e.g. :class:`matcli.jobs.sketch_remote.DistributedRowProblem`.
    ridge : lam >= 0 or ``"auto"`` (GCV over the exact singular values, m rows).
    rng, callback : unused (deterministic, no iterations); accepted for one signature per mode.

    Returns
    -------
    Result
        ``outputs["x"]`` (n,); status ``converged_direct`` (``diverged_nan`` for non-finite input).
        Metrics as :func:`~matcli.methods.sketch.exact.lapack_lstsq`'s, from the certifying pass over A:
        ``residual_norm``, ``relative_residual``, ``normal_residual``, ``optimality``, ``rank``,
        ``condition_number``, ``ridge``.
    """
    m, n = problem.shape
    info: dict[str, Any] = {"mode": "lapack", "driver": "TSQR over row blocks (geqrf per block, then of the "
                                                        "stacked R factors), SVD of R"}
    stacked = np.vstack(problem.r_factors())
    if not np.isfinite(stacked).all():
        return Result(Status.DIVERGED_NAN, message="A or b has NaN/Inf values", info=info)
    R_aug = np.linalg.qr(stacked, mode="r")
    R_aug = np.vstack([R_aug, np.zeros((n + 1 - R_aug.shape[0], n + 1))]) if R_aug.shape[0] < n + 1 else R_aug
    R, z, rho = R_aug[:n, :n], R_aug[:n, n], abs(float(R_aug[n, n]))
    U, s, Vh = np.linalg.svd(R)
    rank = numerical_rank(s, m, n)
    w = U.T @ z
    if ridge == "auto":
        lam, gcv = choose_lambda(s, np.abs(w), rho**2, m)
        info["ridge_auto"] = gcv
    else:
        lam = float(ridge)
    info["ridge"] = lam
    x = Vh.T @ (spectral_filter(s, rank, lam) * w)
    rnorm, grad = problem.residual_norm_and_gradient(x)
    grad = grad - lam * x
    bnorm, xnorm, gnorm = (float(np.linalg.norm(v)) for v in (problem.b, x, grad))
    norm_F = float(np.linalg.norm(R_aug[:n, :n]))  # ||A||_F = ||R||_F (Q orthonormal)
    objective = math.sqrt(rnorm**2 + lam * xnorm**2)
    scale = norm_F * (norm_F * xnorm + bnorm)
    anorm = math.sqrt(float(s[0]) ** 2 + lam)
    metrics = {
        "residual_norm": rnorm,
        "relative_residual": rnorm / bnorm if bnorm > 0 else 0.0,
        "normal_residual": gnorm / scale if scale > 0 else 0.0,
        "optimality": gnorm / (anorm * objective) if objective > 0 else 0.0,
        "rank": float(rank),
        "condition_number": float(s[0] / s[rank - 1]) if rank else math.inf,
        "ridge": lam,
        "iterations": 0.0,
    }
    info["passes_over_file"] = 2
    return Result(status=Status.CONVERGED_DIRECT, outputs={"x": x}, metrics=metrics, iterations=0, info=info,
                  message=f"exact least squares by TSQR over row blocks (numerical rank {rank} of {n})")
