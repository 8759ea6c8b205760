"""Bayesian probabilistic matrix factorisation by Gibbs sampling (Salakhutdinov and Mnih, ICML 2008).

Model: ``M_ij = mu + U_i . V_j + noise``, noise precision ``alpha``; rows of U and V have Gaussian
priors whose mean and precision carry Normal-Wishart hyperpriors (``mu0 = 0``, ``beta0 = 2``,
``W0 = I``, ``nu0 = k``). Each sweep samples the hyperparameters of V and U, then every
``U_i`` from its Gaussian conditional, then every ``V_j``; all rows of one side are sampled at
once from stacked k x k precision matrices built by one sparse product (``O(|Omega| k^2)``).
Predictions are the average of ``mu + U^(s) V^(s)T`` over the samples after burn-in; the
averaging is what beats a single regularised point estimate on sparse rating data.
"""

from __future__ import annotations

import numpy as np

from matcli.core.result import Callback, Result, Status, no_callback
from matcli.methods.complete.common import Entries, FactorModel, Heldout, entry_dots, finish, rmse

#: Normal-Wishart hyperprior: prior strength of the mean and prior scale of the precision.
BETA0 = 2.0


def bpmf(rows: np.ndarray, cols: np.ndarray, values: np.ndarray, shape: tuple[int, int], *, rank: int,
         bias: bool = True, alpha: float = 0.0, burnin: int = 5, samples: int = 40, out_rank: int = 0,
         maxiter: int = 1000, rtol: float = 0.0, atol: float = 0.0, heldout: Heldout | None = None,
         clip: tuple[float, float] | None = None, rng: np.random.Generator,
         callback: Callback = no_callback) -> Result:
    """Posterior-mean completion by Gibbs sampling of a rank-``rank`` factor model.

    Parameters
    ----------
    rows, cols, values, shape : observed entries (0-based) of an (m, n) matrix.
    rank : k, rank of each sample.
    bias : centre by the global mean ``mu`` (row and column offsets are learnt by the factors,
        so ``row_bias`` and ``col_bias`` are written as zeros).
    alpha : noise precision; 0 means ``2.5 / var(values)`` (about 2 for 1-5 star ratings).
    burnin, samples : sweeps discarded, then sweeps averaged (at most ``maxiter`` sweeps in all).
    out_rank : rank of the written factors. 0 writes the stacked samples ``U = [U^(1) .. U^(S)]
        / sqrt(S)`` (shape (m, S k)) so that ``U V^T`` is exactly the posterior mean; r > 0
        writes its best rank-r approximation (truncated SVD of the average, never dense).
    rtol : stop sampling early when the running average of the training predictions changes
        by less than ``rtol`` (relative 2-norm) in one sweep.
    atol : stop sampling early when the posterior-mean training RMSE is at most ``atol``.

    Returns
    -------
    Result with ``U``, ``V`` (and ``mu``, zero biases when ``bias``); metrics ``train_rmse``,
    ``val_rmse`` of the posterior mean; status ``CONVERGED_ITS`` (all samples drawn) or
    ``CONVERGED_RTOL``.
    """
    entries = Entries(rows, cols, values, shape)
    m, n = entries.shape
    mu = float(np.mean(entries.values)) if bias else 0.0
    target = entries.values - mu
    if alpha <= 0:
        alpha = 2.5 / max(float(np.var(entries.values)), 1e-300)
    scale = 0.1 * max(float(np.std(target)), 1e-12)
    U = scale * rng.standard_normal((m, rank))
    V = scale * rng.standard_normal((n, rank))
    total = min(maxiter, burnin + samples)
    kept_u: list[np.ndarray] = []
    kept_v: list[np.ndarray] = []
    train_sum = np.zeros(entries.nnz)
    val_sum = np.zeros(heldout.values.size) if heldout is not None else None
    status = Status.CONVERGED_ITS
    sweep = 0
    train_rmse = val_rmse = np.nan
    for sweep in range(1, total + 1):
        mu_v, lam_v = _sample_hyper(V, rng)
        mu_u, lam_u = _sample_hyper(U, rng)
        U = _sample_side(entries, 0, V, target, alpha, mu_u, lam_u, rng)
        V = _sample_side(entries, 1, U, target, alpha, mu_v, lam_v, rng)
        if not (np.isfinite(U).all() and np.isfinite(V).all()):
            status = Status.DIVERGED_NAN
            break
        if sweep <= burnin:
            pred = mu + entry_dots(entries.rows, entries.cols, U, V)
            callback(sweep, train_rmse=rmse(pred - entries.values))
            continue
        kept_u.append(U)
        kept_v.append(V)
        previous = train_sum / max(len(kept_u) - 1, 1)
        train_sum += entry_dots(entries.rows, entries.cols, U, V)
        average = train_sum / len(kept_u)
        train_rmse = rmse(mu + average - entries.values)
        if val_sum is not None and heldout.values.size:
            val_sum += entry_dots(heldout.rows, heldout.cols, U, V)
        val_rmse, stop = posterior_sweep(sweep, train_rmse, average, previous, len(kept_u), val_sum, heldout, mu,
                                         clip, atol, rtol, callback)
        if stop is not None:
            status = stop
            break
    if not kept_u:
        kept_u, kept_v = [U], [V]
    Uo, Vo = _average_factors(kept_u, kept_v, out_rank)
    zeros = (np.zeros(m), np.zeros(n)) if bias else (None, None)
    model = FactorModel(Uo, Vo, mu, *zeros)
    metrics = {"train_rmse": float(train_rmse) if np.isfinite(train_rmse)
               else rmse(model.predict(entries.rows, entries.cols) - entries.values)}
    if heldout is not None and heldout.values.size:
        metrics["val_rmse"] = float(val_rmse) if np.isfinite(val_rmse) \
            else rmse(model.predict(heldout.rows, heldout.cols, clip) - heldout.values)
    info = {"alpha": alpha, "burnin": burnin, "samples_averaged": len(kept_u), "output_rank": int(Uo.shape[1]),
            "observed": entries.nnz}
    return finish(status, model, sweep, metrics, info,
                  f"averaged {len(kept_u)} posterior samples after {min(burnin, sweep)} burn-in sweeps")


def _sample_hyper(X: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Draw (mean, precision) of the row prior from its Normal-Wishart conditional given rows X (N, k)."""
    count, k = X.shape
    xbar = X.mean(axis=0)
    centred = X - xbar
    scatter = centred.T @ centred
    beta = BETA0 + count
    w_inv = np.eye(k) + scatter + (BETA0 * count / beta) * np.outer(xbar, xbar)
    w = np.linalg.inv(w_inv)
    lam = _wishart(k + count, (w + w.T) / 2, rng)
    chol = np.linalg.cholesky(beta * lam)
    mean = count * xbar / beta + np.linalg.solve(chol.T, rng.standard_normal(k))
    return mean, lam


def _wishart(df: float, scale: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One Wishart(df, scale) draw by the Bartlett decomposition: ``L A A^T L^T`` with
    ``scale = L L^T``, ``A`` lower triangular, ``A_ii = sqrt(chi2(df - i))``, ``A_ij ~ N(0, 1)``."""
    k = scale.shape[0]
    A = np.tril(rng.standard_normal((k, k)), -1)
    A[np.diag_indices(k)] = np.sqrt(rng.chisquare(df - np.arange(k)))
    LA = np.linalg.cholesky(scale) @ A
    return LA @ LA.T


def _sample_side(entries: Entries, axis: int, F: np.ndarray, target: np.ndarray, alpha: float,
                 prior_mean: np.ndarray, prior_prec: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Draw every row of one side from ``N(P_i^-1 b_i, P_i^-1)`` with
    ``P_i = prior_prec + alpha sum_j F_j F_j^T`` and ``b_i = alpha sum_j t_ij F_j + prior_prec prior_mean``."""
    q, k = entries.shape[axis], F.shape[1]
    iu, ju = np.triu_indices(k)
    tri = entries.matrix(axis, np.ones(entries.nnz)) @ (F[:, iu] * F[:, ju])
    prec = np.empty((q, k, k))
    prec[:, iu, ju] = tri
    prec[:, ju, iu] = tri
    prec *= alpha
    prec += prior_prec
    rhs = alpha * (entries.matrix(axis, target) @ F) + prior_prec @ prior_mean
    chol = np.linalg.cholesky(prec)
    # x = L^-T (L^-1 b + z) has mean P^-1 b and covariance L^-T L^-1 = P^-1.
    half = np.linalg.solve(chol, rhs[:, :, None]) + rng.standard_normal((q, k, 1))
    return np.linalg.solve(np.transpose(chol, (0, 2, 1)), half)[:, :, 0]


def posterior_sweep(sweep: int, train_rmse: float, average: np.ndarray, previous: np.ndarray, kept: int,
                    val_sum: np.ndarray | None, heldout: Heldout | None, mu: float, clip, atol: float, rtol: float,
                    callback: Callback) -> tuple[float, Status | None]:
    """Report one sweep of posterior averaging (``kept`` samples in ``average``; ``val_sum`` their summed
    held-out predictions) and decide the stop: ``(val_rmse, CONVERGED_ATOL | CONVERGED_RTOL | None)``.

    Stops when the averaged training RMSE is <= atol, or when the average moved by less than rtol
    (relative) with the last sample."""
    values_now = {"train_rmse": train_rmse}
    val_rmse = np.nan
    if val_sum is not None and heldout.values.size:
        pred = mu + val_sum / kept
        if clip is not None:
            pred = np.clip(pred, clip[0], clip[1])
        val_rmse = rmse(pred - heldout.values)
        values_now["val_rmse"] = val_rmse
    callback(sweep, **values_now)
    if train_rmse <= atol:
        return val_rmse, Status.CONVERGED_ATOL
    if kept > 1 and rtol > 0:
        change = np.linalg.norm(average - previous) / max(np.linalg.norm(average), 1e-300)
        if change < rtol:
            return val_rmse, Status.CONVERGED_RTOL
    return val_rmse, None


def _average_factors(kept_u: list[np.ndarray], kept_v: list[np.ndarray], out_rank: int) -> tuple[np.ndarray, np.ndarray]:
    """Factors of ``(1/S) sum_s U_s V_s^T``: stacked (out_rank 0) or its truncated SVD."""
    scale = 1.0 / np.sqrt(len(kept_u))
    U = np.hstack(kept_u) * scale
    V = np.hstack(kept_v) * scale
    if out_rank <= 0 or out_rank >= U.shape[1]:
        return U, V
    qu, ru = np.linalg.qr(U)
    qv, rv = np.linalg.qr(V)
    w, s, zt = np.linalg.svd(ru @ rv.T)
    root = np.sqrt(s[:out_rank])
    return (qu @ w[:, :out_rank]) * root, (qv @ zt[:out_rank].T) * root
