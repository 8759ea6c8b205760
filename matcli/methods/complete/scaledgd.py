"""ScaledGD(lambda): preconditioned factored gradient descent for matrix completion.

Tong, Ma, Chi, "Accelerating ill-conditioned low-rank matrix estimation via scaled gradient
descent" (JMLR 2021); the damped preconditioner of Xu, Tong, Chi (ICML 2023). With
``E = P_Omega(U V^T - R) / p`` (sparse, p = sampling rate) and ridge weight ``reg``::

    U <- U - eta (E V + reg U) (V^T V + lam I)^-1
    V <- V - eta (E^T U + reg V) (U^T U + lam I)^-1      (both from the old U, V)

started from the spectral initialisation. The preconditioner makes the linear rate independent of
the condition number of the target. A step costs ``O(|Omega| k + (m + n) k^2)``.
"""

from __future__ import annotations

import numpy as np

from matcli.core.result import Callback, Result, Status, no_callback
from matcli.methods.complete.common import (
    BASELINE_DAMPING, Entries, FactorModel, Heldout, SweepMonitor, entry_dots, finish, fit_biases, spectral_init,
)

#: Step halvings tried before declaring stagnation.
MAX_HALVINGS = 30


def scaledgd(rows: np.ndarray, cols: np.ndarray, values: np.ndarray, shape: tuple[int, int], *, rank: int,
             reg: float = 0.0, bias: bool = True, step: float = 0.5, damping: float = 0.0, maxiter: int = 200,
             rtol: float = 1e-5, atol: float = 0.0, heldout: Heldout | None = None,
             clip: tuple[float, float] | None = None, rng: np.random.Generator,
             callback: Callback = no_callback) -> Result:
    """Fit ``R ~ U V^T`` (R = observed values minus fitted biases when ``bias``) by ScaledGD.

    Parameters
    ----------
    rows, cols, values, shape : observed entries (0-based) of an (m, n) matrix.
    rank : k, columns of U (m, k) and V (n, k).
    reg : ridge weight on ``||U||_F^2 + ||V||_F^2`` (halved), relative to the 1/p-scaled loss.
    step : eta; 0.5 is safe for incoherent problems sampled well above the information limit.
    damping : lam = damping * sigma_1(start), the preconditioner shift (0 = plain ScaledGD).
    maxiter, rtol, atol : at most ``maxiter`` steps; stop when the objective decreases by less
        than ``rtol`` (relative) or the training RMSE <= atol.

    Returns
    -------
    Result with ``U``, ``V`` (and biases), metrics ``train_rmse`` (``val_rmse``).
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
    U, V = spectral_init(entries, target, rank, rng)
    sigma1 = float(np.sum(U[:, 0] ** 2))
    lam = damping * sigma1
    eye = np.eye(rank)
    model = FactorModel(U, V, mu, b, c)
    monitor = SweepMonitor(callback, rtol=rtol, atol=atol, heldout=heldout, clip=clip)
    residual = target - entry_dots(entries.rows, entries.cols, U, V)
    objective = _objective(residual, U, V, p, reg)
    eta = step
    status = Status.DIVERGED_MAX_IT
    it = 0
    for it in range(1, maxiter + 1):
        grad_u = entries.by_row(-residual / p) @ V + reg * U
        grad_v = entries.by_col(-residual / p) @ U + reg * V
        pre_u = np.linalg.solve(V.T @ V + lam * eye, grad_u.T).T
        pre_v = np.linalg.solve(U.T @ U + lam * eye, grad_v.T).T
        # Backtracking: the step is halved until the objective does not increase (noisy or
        # under-sampled data can make eta too long for the sampled operator).
        for _ in range(MAX_HALVINGS):
            U_new, V_new = U - eta * pre_u, V - eta * pre_v
            res_new = target - entry_dots(entries.rows, entries.cols, U_new, V_new)
            obj_new = _objective(res_new, U_new, V_new, p, reg)
            if obj_new <= objective:
                break
            eta *= 0.5
        else:
            status = Status.DIVERGED_STAGNATION
            break
        U, V, residual, objective = U_new, V_new, res_new, obj_new
        model.U, model.V = U, V
        stop = monitor.step(it, model, residual, objective)
        if stop is not None:
            status = stop
            break
    message = f"{status.reason} after {it} steps"
    if status == Status.DIVERGED_MAX_IT:
        message += "; raise --maxiter or lower --param step"
    if np.isnan(monitor.train_rmse):
        monitor.train_rmse = float(np.sqrt(np.mean(residual**2)))
    return finish(status, model, it, monitor.metrics(),
                  {"lambda": lam, "sigma1": sigma1, "final_step": eta, "observed": entries.nnz}, message)


def _objective(residual: np.ndarray, U: np.ndarray, V: np.ndarray, p: float, reg: float) -> float:
    return 0.5 * float(residual @ residual) / p + 0.5 * reg * float(np.sum(U * U) + np.sum(V * V))
