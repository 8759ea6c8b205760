"""Robust (l1) matrix completion by iteratively reweighted alternating least squares.

Minimises ``sum_Omega |M_ij - mu - b_i - c_j - U_i . V_j| + reg * (ridge terms as in ALS)`` so a
few grossly corrupted entries do not pull the fit. Each sweep replaces ``|r|`` by the quadratic
majoriser ``r^2 / (2 max(|r_old|, eps)) + const`` (IRLS) and runs one weighted exact ALS sweep;
``eps`` shrinks geometrically from the median absolute residual to ``delta * rms(values)``.
"""

from __future__ import annotations

import numpy as np

from matcli.core.result import Callback, Result, Status, no_callback
from matcli.methods.complete.als import alternate, initial_model
from matcli.methods.complete.common import Entries, Heldout, finish

#: Factor by which the IRLS smoothing eps shrinks per sweep.
EPS_DECAY = 0.5


def robust(rows: np.ndarray, cols: np.ndarray, values: np.ndarray, shape: tuple[int, int], *, rank: int,
           reg: float = 0.12, bias: bool = True, delta: float = 1e-6, reg_scaling: str = "count",
           init: str = "svd", maxiter: int = 50, rtol: float = 1e-5, atol: float = 0.0,
           heldout: Heldout | None = None, clip: tuple[float, float] | None = None,
           rng: np.random.Generator, callback: Callback = no_callback) -> Result:
    """Fit a rank-``rank`` (biased) factor model under the l1 loss.

    Parameters are those of :func:`matcli.methods.complete.als.als` plus ``delta``, the final
    IRLS smoothing relative to the root mean square of the observed values. The spectral start
    uses the observed values as given (outliers included); IRLS then down-weights entries with
    large residuals.

    Returns
    -------
    Result with ``U``, ``V`` (and biases); metrics ``train_rmse``, ``train_mae`` (l1 loss per
    entry), ``val_rmse``; ``info["outlier_fraction"]`` = share of entries whose final residual
    exceeds 10 times the median absolute residual.
    """
    entries = Entries(rows, cols, values, shape)
    model = initial_model(entries, rank=rank, reg=reg, bias=bias, init=init, rng=rng)
    scale = float(np.sqrt(np.mean(entries.values**2))) if entries.nnz else 1.0
    floor = delta * max(scale, 1e-300)
    state = {"eps": None}

    def weights_fn(residual: np.ndarray) -> np.ndarray:
        magnitude = np.abs(residual)
        eps = float(np.median(magnitude)) if state["eps"] is None else state["eps"] * EPS_DECAY
        eps = max(eps, floor)
        state["eps"] = eps
        return 1.0 / np.maximum(magnitude, eps)

    status, sweeps, monitor = alternate(
        entries, model, reg=reg, reg_scaling=reg_scaling, inner="exact", cg_iters=0, maxiter=maxiter,
        rtol=rtol, atol=atol, heldout=heldout, clip=clip, callback=callback, weights_fn=weights_fn)
    residual = entries.values - model.predict(entries.rows, entries.cols)
    magnitude = np.abs(residual)
    med = float(np.median(magnitude)) if magnitude.size else 0.0
    metrics = monitor.metrics()
    metrics["train_mae"] = float(np.mean(magnitude)) if magnitude.size else float("nan")
    if status == Status.DIVERGED_MAX_IT and state["eps"] is not None and state["eps"] <= floor:
        # IRLS reached its final smoothing: the l1 fit is as accurate as delta allows.
        status = Status.CONVERGED_ITS
    info = {"irls_final_eps": state["eps"], "median_abs_residual": med,
            "outlier_fraction": float(np.mean(magnitude > 10 * max(med, floor))) if magnitude.size else 0.0,
            "observed": entries.nnz}
    return finish(status, model, sweeps, metrics, info, f"{status.reason} after {sweeps} IRLS sweeps")
