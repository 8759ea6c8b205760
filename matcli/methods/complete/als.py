"""Alternating least squares (alternating minimisation) for regularised matrix completion.

Model ``M[i, j] ~ mu + b_i + c_j + U_i . V_j`` fitted on the observed entries only::

    min  sum_{(i,j) in Omega} w_ij (M_ij - mu - b_i - c_j - U_i . V_j)^2
         + reg * ( sum_i s_i (||U_i||^2 + b_i^2) + sum_j t_j (||V_j||^2 + c_j^2) )

with ``s_i = |Omega_i|`` and ``t_j = |Omega_j|`` (weighted-lambda scaling of ALS-WR, Zhou et al.
2008) or ``s = t = 1``. ``mu`` is the mean of the observed values. Each half-step solves all the
independent ridge problems of one side at once, either exactly (stacked normal equations) or
approximately by a few vectorised CG iterations warm-started from the previous factors, so that
a sweep costs ``O(|Omega| k)`` as in Gu, Song, Yin, Zhang, "Low Rank Matrix Completion via
Robust Alternating Minimization in Nearly Linear Time" (ICLR 2024).
"""

from __future__ import annotations

import numpy as np

from matcli.core.result import Callback, Result, Status, no_callback
from matcli.methods.complete.common import (
    BASELINE_DAMPING, Entries, FactorModel, Heldout, SweepMonitor, finish, fit_biases, ridge_half_step, spectral_init,
)

#: Relative ridge added to every system so rows with fewer observations than unknowns stay solvable.
JITTER = 1e-12


def als(rows: np.ndarray, cols: np.ndarray, values: np.ndarray, shape: tuple[int, int], *, rank: int,
        reg: float = 0.12, bias: bool = True, reg_scaling: str = "count", inner: str = "cg",
        cg_iters: int = 3, init: str = "svd", maxiter: int = 50, rtol: float = 1e-5, atol: float = 0.0,
        heldout: Heldout | None = None, clip: tuple[float, float] | None = None,
        rng: np.random.Generator, callback: Callback = no_callback) -> Result:
    """Fit a rank-``rank`` (biased) factor model by alternating ridge regressions.

    Parameters
    ----------
    rows, cols : (N,) int arrays, 0-based observed coordinates of an ``shape = (m, n)`` matrix.
    values : (N,) float array of observed values.
    rank : number of latent factors k >= 1.
    reg : ridge weight (>= 0); see the module docstring for the scaling.
    bias : fit ``mu``, row and column biases too.
    reg_scaling : ``"count"`` (weighted-lambda) or ``"none"``.
    inner : ``"cg"`` (``cg_iters`` CG steps per half-step) or ``"exact"``.
    init : ``"svd"`` (spectral: truncated SVD of the rescaled centred observations) or ``"random"``.
    maxiter : maximum sweeps (one sweep updates U then V).
    rtol : stop when the objective decreases by less than ``rtol`` (relative) over a sweep.
    atol : stop when the training RMSE is at most ``atol``.
    heldout : validation entries reported per sweep (``val_rmse``); not used for fitting.
    clip : (lo, hi) range applied to validation predictions.

    Returns
    -------
    Result with outputs ``U`` (m, k), ``V`` (n, k) and, when ``bias``, ``mu``, ``row_bias`` (m,),
    ``col_bias`` (n,); metrics ``train_rmse`` (and ``val_rmse``); history via ``callback``
    (``train_rmse``, ``val_rmse``, ``objective`` per sweep).
    """
    entries = Entries(rows, cols, values, shape)
    model = initial_model(entries, rank=rank, reg=reg, bias=bias, init=init, rng=rng)
    status, sweeps, monitor = alternate(
        entries, model, reg=reg, reg_scaling=reg_scaling, inner=inner, cg_iters=cg_iters,
        maxiter=maxiter, rtol=rtol, atol=atol, heldout=heldout, clip=clip, callback=callback)
    info = {"inner_solver": inner, "cg_iters": cg_iters if inner == "cg" else None, "init": init,
            "observed": entries.nnz, "empty_rows": int(np.sum(entries.row_counts == 0)),
            "empty_cols": int(np.sum(entries.col_counts == 0))}
    return finish(status, model, sweeps, monitor.metrics(), info, _message(status, sweeps))


def als_exact(rows: np.ndarray, cols: np.ndarray, values: np.ndarray, shape: tuple[int, int], **options) -> Result:
    """:func:`als` with exact half-steps (stacked (k+1) x (k+1) solves; best for small k)."""
    options["inner"] = "exact"
    return als(rows, cols, values, shape, **options)


def _message(status: Status, sweeps: int) -> str:
    if status == Status.DIVERGED_MAX_IT:
        return f"objective still decreasing after {sweeps} sweeps; raise --maxiter or --rtol"
    if status == Status.DIVERGED_NAN:
        return "non-finite values appeared; increase --reg"
    return f"converged after {sweeps} sweeps"


def initial_model(entries: Entries, *, rank: int, reg: float, bias: bool, init: str,
                  rng: np.random.Generator) -> FactorModel:
    """Baseline biases (when ``bias``) plus spectral or small random factors of the residual."""
    m, n = entries.shape
    if bias:
        mu, b, c = fit_biases(entries, entries.values, reg=BASELINE_DAMPING)
        residual = entries.values - mu - b[entries.rows] - c[entries.cols]
    else:
        mu, b, c = 0.0, None, None
        residual = entries.values
    scale = float(np.sqrt(np.mean(residual**2))) if entries.nnz else 1.0
    if init == "svd":
        U, V = spectral_init(entries, residual, rank, rng)
    else:
        U = rng.standard_normal((m, rank)) * np.sqrt(scale / rank)
        V = rng.standard_normal((n, rank)) * np.sqrt(scale / rank)
    return FactorModel(U, V, mu, b, c)


def _lambdas(counts: np.ndarray, reg: float, reg_scaling: str, features: np.ndarray) -> np.ndarray:
    scale = counts.astype(np.float64) if reg_scaling == "count" else np.ones(counts.size)
    typical = float(np.mean(np.einsum("ij,ij->i", features, features))) if features.size else 1.0
    return reg * scale + JITTER * max(typical, 1e-300) * np.maximum(counts, 1)


def alternate(entries: Entries, model: FactorModel, *, reg: float, reg_scaling: str, inner: str,
              cg_iters: int, maxiter: int, rtol: float, atol: float, heldout: Heldout | None,
              clip: tuple[float, float] | None, callback: Callback) -> tuple[Status, int, SweepMonitor]:
    """Run ALS sweeps on ``model`` in place until the monitor stops it or ``maxiter`` sweeps."""
    monitor = SweepMonitor(callback, rtol=rtol, atol=atol, heldout=heldout, clip=clip)
    status = Status.DIVERGED_MAX_IT
    sweep = 0
    for sweep in range(1, maxiter + 1):
        als_sweep(entries, model, reg=reg, reg_scaling=reg_scaling, exact=inner == "exact", cg_iters=cg_iters)
        residual = entries.values - model.predict(entries.rows, entries.cols)
        objective = _objective(entries, model, residual, reg, reg_scaling)
        stop = monitor.step(sweep, model, residual, objective)
        if stop is not None:
            status = stop
            break
    return status, sweep, monitor


def als_sweep(entries: Entries, model: FactorModel, *, reg: float, reg_scaling: str, exact: bool = True,
              cg_iters: int = 3, weights: np.ndarray | None = None) -> None:
    """One ALS sweep on ``model`` in place: the row factors (and row biases) by ridge regression
    on the fixed column side, then the column factors (and column biases) on the new rows.

    ``weights`` (N,) >= 0 weight each observed entry's squared residual (None: 1); a weight 0
    removes the entry from both half-steps.
    """
    values = entries.values
    ones_m, ones_n = np.ones((entries.shape[0], 1)), np.ones((entries.shape[1], 1))
    for axis in (0, 1):
        own_bias, other_bias = (model.row_bias, model.col_bias) if axis == 0 else (model.col_bias, model.row_bias)
        fixed = model.V if axis == 0 else model.U
        own, other, counts = entries.side(axis)
        if model.has_bias:
            features = np.hstack([fixed, ones_n if axis == 0 else ones_m])
            target = values - model.mu - other_bias[other]
            x0 = np.hstack([model.U if axis == 0 else model.V, own_bias[:, None]])
        else:
            features, target = fixed, values
            x0 = model.U if axis == 0 else model.V
        lam = _lambdas(counts, reg, reg_scaling, features)
        x = ridge_half_step(entries, axis, features, target, lam, weights=weights, exact=exact,
                            x0=x0, cg_iters=cg_iters)
        k = fixed.shape[1]
        if axis == 0:
            model.U = np.ascontiguousarray(x[:, :k])
        else:
            model.V = np.ascontiguousarray(x[:, :k])
        if model.has_bias:
            own_bias[:] = x[:, k]


def _objective(entries: Entries, model: FactorModel, residual: np.ndarray, reg: float, reg_scaling: str) -> float:
    fit = float(residual @ residual)
    rs = entries.row_counts if reg_scaling == "count" else np.ones(entries.shape[0])
    cs = entries.col_counts if reg_scaling == "count" else np.ones(entries.shape[1])
    penalty = float(rs @ np.einsum("ij,ij->i", model.U, model.U) + cs @ np.einsum("ij,ij->i", model.V, model.V))
    if model.has_bias:
        penalty += float(rs @ model.row_bias**2 + cs @ model.col_bias**2)
    return fit + reg * penalty
