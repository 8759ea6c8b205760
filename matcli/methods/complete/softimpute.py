"""Soft-impute (Mazumder, Hastie, Tibshirani 2010) with a sparse-plus-low-rank representation.

Solves ``min_Z 1/2 ||P_Omega(R - Z)||_F^2 + lam ||Z||_*`` where ``R`` holds the observed values
minus the fitted biases. The iteration is ``Z <- S_lam(P_Omega(R) - P_Omega(Z) + Z)``: the
completed matrix is a sparse matrix (the residual on Omega) plus the current low-rank ``Z =
U diag(s) V^T``, so its products with blocks cost ``O(|Omega| k + (m + n) k^2)`` and no dense
``m x n`` array is formed. The singular value thresholding ``S_lam`` is applied to a rank-``k``
approximation computed by warm-started subspace iteration (``power_iters`` steps per update),
as in the softImpute-ALS analysis of Hastie et al. (2015).
"""

from __future__ import annotations

import numpy as np

from matcli.core.result import Callback, Result, Status, no_callback
from matcli.methods.complete.common import (
    BASELINE_DAMPING, Entries, FactorModel, Heldout, SweepMonitor, entry_dots, finish, fit_biases, spectral_init,
)


def softimpute(rows: np.ndarray, cols: np.ndarray, values: np.ndarray, shape: tuple[int, int], *, rank: int,
               reg: float = 0.3, bias: bool = True, power_iters: int = 1, maxiter: int = 100,
               rtol: float = 1e-5, atol: float = 0.0, heldout: Heldout | None = None,
               clip: tuple[float, float] | None = None, rng: np.random.Generator,
               callback: Callback = no_callback) -> Result:
    """Nuclear-norm regularised completion with at most ``rank`` singular values.

    Parameters
    ----------
    rows, cols, values, shape : observed entries (0-based) of an (m, n) matrix.
    rank : maximum rank k of Z (the thresholded SVD keeps at most k values).
    reg : threshold relative to the top singular value of ``P_Omega(R) / p`` (p = sampling
        rate), i.e. ``lam = reg * sigma_1 * p``; ``0`` gives hard-impute (rank-k projection).
    bias : fit ``mu`` and row/column biases first (damped means), then complete the residual.
    power_iters : subspace-iteration steps per soft-impute update.
    maxiter, rtol, atol : stop when the relative change ``||Z_new - Z||_F / ||Z||_F < rtol`` or
        the training RMSE <= atol, at most ``maxiter`` updates.

    Returns
    -------
    Result with ``U = U_z diag(sqrt(s))``, ``V = V_z diag(sqrt(s))`` (so ``Z = U V^T``), ``s``
    (k,) the singular values (zeros beyond the effective rank), and biases when ``bias``;
    ``info["effective_rank"]``, ``info["lambda"]``.
    """
    entries = Entries(rows, cols, values, shape)
    m, n = entries.shape
    if bias:
        mu, b, c = fit_biases(entries, entries.values, reg=BASELINE_DAMPING)
        target = entries.values - mu - b[entries.rows] - c[entries.cols]
    else:
        mu, b, c = 0.0, None, None
        target = entries.values
    p = entries.nnz / (float(m) * n)
    U0, V0 = spectral_init(entries, target, rank, rng)
    sigma1 = float(np.sum(U0[:, 0] ** 2)) if rank else 0.0
    lam = reg * sigma1 * p
    # Start from Z = 0 with the spectral right singular vectors as the subspace.
    Vz = np.linalg.qr(V0)[0]
    Uz = np.zeros((m, rank))
    s = np.zeros(rank)
    monitor = SweepMonitor(callback, rtol=0.0, atol=atol, heldout=heldout, clip=clip)
    status = Status.DIVERGED_MAX_IT
    it = 0
    residual = target.copy()
    for it in range(1, maxiter + 1):
        S = entries.by_row(residual)
        St = entries.by_col(residual)
        Q = Vz
        for _ in range(power_iters):
            # Y = X* Q with X* = S + Uz diag(s) Vz^T.
            Y = S @ Q + Uz @ (s[:, None] * (Vz.T @ Q))
            Qy = np.linalg.qr(Y)[0]
            Bt = St @ Qy + Vz @ (s[:, None] * (Uz.T @ Qy))
            Q = np.linalg.qr(Bt)[0]
        W, sb, Zt = np.linalg.svd(Bt.T, full_matrices=False)
        Un, Vn = Qy @ W, Zt.T
        sn = np.maximum(sb - lam, 0.0)
        change = _frob_change(Uz, s, Vz, Un, sn, Vn)
        Uz, s, Vz = Un, sn, Vn
        model = _model(Uz, s, Vz, mu, b, c)
        residual = target - entry_dots(entries.rows, entries.cols, Uz * s, Vz)
        objective = 0.5 * float(residual @ residual) + lam * float(np.sum(s))
        stop = monitor.step(it, model, residual, objective)
        if stop is not None:
            status = stop
            break
        if change < rtol:
            status = Status.CONVERGED_STEP
            break
    model = _model(Uz, s, Vz, mu, b, c)
    result = finish(status, model, it, monitor.metrics(),
                    {"lambda": lam, "sigma1": sigma1, "effective_rank": int(np.sum(s > 0)), "observed": entries.nnz},
                    f"{status.reason} after {it} updates, effective rank {int(np.sum(s > 0))}")
    result.outputs["s"] = s
    return result


def _model(Uz, s, Vz, mu, b, c) -> FactorModel:
    root = np.sqrt(s)
    return FactorModel(Uz * root, Vz * root, mu, b, c)


def _frob_change(U1, s1, V1, U2, s2, V2) -> float:
    """``||Z2 - Z1||_F / max(||Z1||_F, tiny)`` for ``Z = U diag(s) V^T`` with orthonormal U, V,
    computed from k x k cross products only."""
    cross = float(np.sum((U1.T @ U2) * (s1[:, None] * (V1.T @ V2) * s2[None, :])))
    n1, n2 = float(s1 @ s1), float(s2 @ s2)
    diff = max(n1 + n2 - 2.0 * cross, 0.0)
    return float(np.sqrt(diff / max(n1, 1e-300))) if n1 > 0 else np.inf
