"""Robust matrix completion: a low-rank matrix plus sparse gross outliers, by trimmed alternating
least squares with decreasing hard thresholds.

Model: every observed value is ``M_e = L_e + S_e`` with ``L = mu + b_i + c_j + U_i . V_j`` of rank
``k`` (biases optional) and ``S`` sparse: few entries, of any size. Each iteration

1. runs one exact ALS sweep that fits ``L`` on the entries currently kept as inliers (weight 1;
   outliers weight 0, as if unobserved);
2. computes the residual ``r = M - L`` on every observed entry and its robust scale
   ``s = 1.4826 median |r|`` (the MAD estimate of the inliers' residual spread, unaffected while
   fewer than half of the entries are outliers);
3. flags as outliers the entries with ``|r| > max(THRESHOLD s, floor)`` that are also among the
   ``max_outliers`` share of largest residuals of their row and of their column (``floor = tol``
   times the robust scale of the values); flags are
   recomputed from scratch, so an entry flagged early returns once the fit explains it.

As ``L`` improves the residuals of the inliers shrink and the threshold follows them down, while an
outlier keeps a residual of about ``|S_e|``: the hard-thresholding alternating projections of
AltProj (Netrapalli et al., "Non-convex robust PCA", NeurIPS 2014) and of robust completion by
hard thresholding (Cherapanamjeri, Gupta, Jain, "Nearly optimal robust matrix completion", ICML
2017), with ALS in place of their projections. The start flags the values more than ``THRESHOLD``
robust scales from their median and takes the spectral initialisation of the rest.

Above the true rank the split is not unique (surplus directions settle on a few rows' flagged or
unobserved entries); a converged fit whose spectrum shows a gap is refitted from its truncation at
the gap and kept at the lower rank when that explains the inliers with no more outliers
(:func:`_reveal_rank`; ``info["truncated_rank"]``).

Certificate: ``inlier_relative_residual = ||r_in|| / ||M_in||`` over the entries kept as inliers
and ``outlier_fraction``, the share flagged. The status is positive (``converged_atol``) only when
the inlier set did not change in the last sweep, the inlier residual is at most ``tol`` and the
outlier fraction at most ``max_outliers``; a fit whose inlier residual stops decreasing above
``tol`` ends ``diverged_tolerance_unreachable`` (noisy data: raise ``tol`` to the noise level).
"""

from __future__ import annotations

import numpy as np

from matcli.core.result import Callback, Result, Status, no_callback
from matcli.methods.complete.als import als_sweep
from matcli.methods.complete.common import (
    BASELINE_DAMPING, Entries, FactorModel, Heldout, finish, fit_biases, rmse, spectral_init,
)

#: Inliers are the entries whose residual is within this many robust scales (MAD) of zero: 5 keeps
#: all but 6e-7 of Gaussian residuals and flags any error much larger than the inliers' spread.
THRESHOLD = 5.0
#: MAD to standard deviation of a Gaussian.
MAD_SCALE = 1.4826
#: A converged fit whose singular values fall by this factor after rank q is refitted from its rank-q
#: truncation (:func:`_reveal_rank`): surplus directions sit 2-3 orders below the last true one.
GAP = 0.05


def robust(rows: np.ndarray, cols: np.ndarray, values: np.ndarray, shape: tuple[int, int], *, rank: int,
           reg: float = 0.0, bias: bool = True, tol: float = 1e-6, max_outliers: float = 0.25,
           reg_scaling: str = "count", init: str = "svd", maxiter: int = 200,
           rtol: float = 1e-4, atol: float = 0.0, heldout: Heldout | None = None,
           clip: tuple[float, float] | None = None, rng: np.random.Generator,
           callback: Callback = no_callback) -> Result:
    """Split the observed entries into a rank-``rank`` (biased) model and sparse outliers.

    Parameters
    ----------
    rows, cols : (N,) int arrays, 0-based observed coordinates of an ``shape = (m, n)`` matrix.
    values : (N,) float array of observed values, outliers included.
    rank : k >= 1.
    reg : ALS ridge weight (see :mod:`matcli.methods.complete.als`); 0 fits the inliers exactly.
    bias : fit ``mu``, row and column biases as part of ``L``.
    tol : inlier relative residual required for a positive status; also the threshold floor:
        a residual below ``tol * 1.4826 MAD(values)`` never makes an entry an outlier (the fit
        explains it to the accuracy asked for).
    max_outliers : largest share of the entries of any row or column that may be flagged (the
        sparsity the split assumes); a larger overall outlier fraction fails the status.
    reg_scaling, init : as in :func:`matcli.methods.complete.als.als`.
    maxiter : maximum sweeps.
    rtol : stop (stagnation) when the inlier set is unchanged and the inlier relative residual
        decreased by less than this fraction over the last sweep.
    atol : unused by the robust split (the training error includes the outliers); accepted for the
        shared kernel signature.
    heldout : validation entries (outliers included); see :func:`_heldout_metrics` for
        ``val_rmse``, ``baseline_val_rmse``, ``val_outlier_fraction`` and ``val_median_abs_error``
        (the robust score ``--rank auto`` uses).
    clip : (lo, hi) applied to validation predictions.

    Returns
    -------
    Result with ``U`` (m, k), ``V`` (n, k) (and biases); metrics ``train_rmse`` (over the inliers),
    ``train_rmse_all`` (every observed entry), ``inlier_relative_residual``, ``outlier_fraction``
    and the held-out metrics with ``heldout``; ``info["inlier_tolerance"]`` = ``tol``,
    ``info["outlier_threshold"]`` (the final one), ``info["truncated_rank"]`` when the fit was
    continued at a lower rank (the surplus columns of ``U`` and ``V`` are then 0).
    """
    del atol
    entries = Entries(rows, cols, values, shape)
    v = entries.values
    centre = float(np.median(v)) if v.size else 0.0
    value_scale = MAD_SCALE * float(np.median(np.abs(v - centre))) if v.size else 0.0
    if value_scale == 0.0:
        value_scale = float(np.sqrt(np.mean(v**2))) if v.size else 0.0
    floor = tol * max(value_scale, 1e-300)
    inlier = np.abs(v - centre) <= max(THRESHOLD * value_scale, floor)
    model = _initial_model(entries, inlier, rank, bias, init, rng)
    sweeps = _Sweeps(entries, reg=reg, reg_scaling=reg_scaling, tol=tol, rtol=rtol, floor=floor,
                     max_outliers=max_outliers, heldout=heldout, clip=clip, callback=callback)
    status, inlier, threshold, relative = sweeps.run(model, inlier, maxiter, max(THRESHOLD * value_scale, floor))
    revealed = None
    if status == Status.CONVERGED_ATOL:
        model, inlier, threshold, revealed, cut = _reveal_rank(sweeps, model, inlier, threshold, relative, maxiter)
        if cut:
            status = Status.DIVERGED_MAX_IT
    sweep = sweeps.count
    outlier_fraction = 1.0 - float(np.mean(inlier)) if inlier.size else 0.0
    if status == Status.CONVERGED_ATOL and outlier_fraction > max_outliers:
        status = Status.DIVERGED_TOLERANCE_UNREACHABLE
    residual = v - model.predict(entries.rows, entries.cols)
    metrics = {"train_rmse": rmse(residual[inlier]), "train_rmse_all": rmse(residual),
               "inlier_relative_residual": _relative(residual, v, inlier), "outlier_fraction": outlier_fraction}
    if heldout is not None and heldout.values.size:
        metrics.update(_heldout_metrics(entries, inlier, model, heldout, clip, threshold))
    info = {"inlier_tolerance": tol, "max_outliers": max_outliers, "outlier_threshold": threshold,
            "outlier_threshold_floor": floor,
            "outliers": int(np.sum(~inlier)), "observed": entries.nnz}
    if revealed is not None:
        info["truncated_rank"] = revealed
    message = _message(status, sweep, metrics, tol, max_outliers, rank, revealed)
    return finish(status, model, sweep, metrics, info, message)


class _Sweeps:
    """The sweeps of :func:`robust` on fixed entries and settings; :meth:`run` continues from any
    model and inlier set, ``count`` numbers the sweeps of every run."""

    def __init__(self, entries: Entries, *, reg: float, reg_scaling: str, tol: float, rtol: float, floor: float,
                 max_outliers: float, heldout: Heldout | None, clip: tuple[float, float] | None, callback: Callback):
        self.entries, self.reg, self.reg_scaling = entries, reg, reg_scaling
        self.tol, self.rtol, self.floor, self.max_outliers = tol, rtol, floor, max_outliers
        self.heldout, self.clip, self.callback = heldout, clip, callback
        self.count = 0

    def run(self, model: FactorModel, inlier: np.ndarray, maxiter: int, threshold: float,
            target: float | None = None) -> tuple[Status, np.ndarray, float, float]:
        """Sweep ``model`` in place until the inlier set is stable with an inlier relative residual
        at most ``target`` (default ``tol``) or stagnating above it, at most ``maxiter`` sweeps.
        Returns (status, (N,) bool final inliers, final threshold, inlier relative residual)."""
        entries, v = self.entries, self.entries.values
        target = self.tol if target is None else target
        status = Status.DIVERGED_MAX_IT
        previous = relative = np.inf
        for _ in range(maxiter):
            als_sweep(entries, model, reg=self.reg, reg_scaling=self.reg_scaling, exact=True,
                      weights=inlier.astype(np.float64))
            residual = v - model.predict(entries.rows, entries.cols)
            magnitude = np.abs(residual)
            self.count += 1
            if not np.isfinite(magnitude).all():
                status = Status.DIVERGED_NAN
                break
            threshold = max(THRESHOLD * MAD_SCALE * float(np.median(magnitude)), self.floor)
            new_inlier = (magnitude <= threshold) | ~_largest_share(entries, magnitude, self.max_outliers)
            unchanged = bool(np.array_equal(new_inlier, inlier))
            inlier = new_inlier
            relative = _relative(residual, v, inlier)
            values_now = {"train_rmse": rmse(residual[inlier]), "inlier_relative_residual": relative,
                          "outlier_fraction": 1.0 - float(np.mean(inlier)) if inlier.size else 0.0}
            if self.heldout is not None and self.heldout.values.size:
                error = model.predict(self.heldout.rows, self.heldout.cols, self.clip) - self.heldout.values
                values_now["val_rmse"] = rmse(error[np.abs(error) <= threshold])
            self.callback(self.count, **values_now)
            if unchanged and relative <= target:
                status = Status.CONVERGED_ATOL
                break
            if unchanged and relative > (1.0 - self.rtol) * previous:
                status = Status.DIVERGED_TOLERANCE_UNREACHABLE
                break
            previous = relative
        return status, inlier, threshold, relative


def _reveal_rank(sweeps: _Sweeps, model: FactorModel, inlier: np.ndarray, threshold: float, relative: float,
                 maxiter: int) -> tuple[FactorModel, np.ndarray, float, int | None, bool]:
    """The converged fit at the lowest rank its spectrum suggests, when that rank also converges.

    Above the true rank r the split is not unique: directions beyond r are fitted to the entries
    of a few rows or columns that are flagged or unobserved (rank-one spikes ``e_i w^T`` whose
    ``w`` lives there, plus the small change of the true directions that keeps the inliers exact),
    and ALS keeps whatever its start gave them. On 300 x 200, rank 10, 5% outliers of 50 x max|L|,
    fitted at rank 12: two row spikes of singular value ~1.5 beside 180..300, and L off by 3e-3.
    In the SVD of ``U V^T`` every rank q with ``s_q < GAP s_{q-1}`` is a candidate, the smallest
    first: the sweeps continue from the rank-q truncation until it explains the inliers as well as
    the full fit did (its ``relative`` residual) or stagnates, and it is kept when it then meets
    ``tol`` with no more outliers than the full fit (the split's loss, as in principal component
    pursuit: fewer outliers, then a lower rank). Judging the refit at ``tol`` alone would reject a
    right rank whose slower ALS still has an entry or two above the shrinking threshold (the rank-1
    5 x 5 outer product fitted at rank 2: one entry flagged at relative residual 6e-7, back among
    the inliers a few sweeps later). The kept factors get zero columns back to the requested width.
    The refit decides; ``GAP`` only spares refits where no gap suggests a lower rank. A candidate
    below the true rank stagnates within a few sweeps (rank 1 of the rank-2 video of
    benchmarks/bench_robust.py: 2-3). Every sweep counts against ``maxiter``, and a refit cut short
    by it leaves the rank undecided (the surplus directions may be spurious), which the caller
    reports as ``diverged_max_it``.

    Returns (model, inliers, threshold, the rank kept or None when the fit was not truncated, whether
    ``maxiter`` cut a refit short).
    """
    k = model.U.shape[1]
    U_q, R_u = np.linalg.qr(model.U)
    V_q, R_v = np.linalg.qr(model.V)
    W, s, Zt = np.linalg.svd(R_u @ R_v.T)
    outliers = np.count_nonzero(~inlier)
    for q in (q for q in range(1, k) if s[q] < GAP * s[q - 1]):
        if sweeps.count >= maxiter:
            return model, inlier, threshold, None, True
        root = np.sqrt(s[:q])
        trial = FactorModel((U_q @ W[:, :q]) * root, (V_q @ Zt[:q].T) * root, model.mu,
                            None if model.row_bias is None else model.row_bias.copy(),
                            None if model.col_bias is None else model.col_bias.copy())
        status, trial_inlier, trial_threshold, reached = sweeps.run(trial, inlier, maxiter - sweeps.count, threshold,
                                                                    target=relative)
        if status in (Status.CONVERGED_ATOL, Status.DIVERGED_TOLERANCE_UNREACHABLE) and reached <= sweeps.tol \
                and np.count_nonzero(~trial_inlier) <= outliers:
            padding = ((0, 0), (0, k - q))
            trial.U, trial.V = np.pad(trial.U, padding), np.pad(trial.V, padding)
            return trial, trial_inlier, trial_threshold, q, False
        if status == Status.DIVERGED_MAX_IT:
            return model, inlier, threshold, None, True
    return model, inlier, threshold, None, False


def _initial_model(entries: Entries, inlier: np.ndarray, rank: int, bias: bool, init: str,
                   rng: np.random.Generator) -> FactorModel:
    """Biases (damped means over the inliers) and spectral or random factors of the inliers' residual."""
    m, n = entries.shape
    weights = inlier.astype(np.float64)
    if bias:
        mu, b, c = fit_biases(entries, entries.values, reg=BASELINE_DAMPING, weights=weights)
        residual = (entries.values - mu - b[entries.rows] - c[entries.cols]) * weights
    else:
        mu, b, c = 0.0, None, None
        residual = entries.values * weights
    if init == "svd":
        U, V = spectral_init(entries, residual, rank, rng)
    else:
        scale = float(np.sqrt(np.mean(residual**2))) if residual.size else 1.0
        U = rng.standard_normal((m, rank)) * np.sqrt(scale / rank)
        V = rng.standard_normal((n, rank)) * np.sqrt(scale / rank)
    return FactorModel(U, V, mu, b, c)


def _heldout_metrics(entries: Entries, inlier: np.ndarray, model: FactorModel, heldout: Heldout,
                     clip: tuple[float, float] | None, threshold: float) -> dict[str, float]:
    """Held-out metrics of a robust fit. The held-out entries contain outliers too, which would
    swamp any RMSE, so ``val_rmse`` and ``baseline_val_rmse`` (the better of the inliers' mean
    and biases-only predictor, fitted on the training inliers) are taken over the held-out entries
    the fit keeps as inliers by its final ``threshold``; ``val_outlier_fraction`` is the share it
    does not keep and ``val_median_abs_error`` the median over all of them (the selection score)."""
    error = model.predict(heldout.rows, heldout.cols, clip) - heldout.values
    keep = np.abs(error) <= threshold
    if not keep.any():
        keep = np.ones(error.size, dtype=bool)
    mu, b, c = fit_biases(entries, entries.values, reg=BASELINE_DAMPING, weights=inlier.astype(np.float64))
    m, n = entries.shape
    rows, cols, values = heldout.rows[keep], heldout.cols[keep], heldout.values[keep]
    baselines = [rmse(FactorModel(np.zeros((m, 0)), np.zeros((n, 0)), mu, row_bias, col_bias).predict(rows, cols, clip)
                      - values)
                 for row_bias, col_bias in ((np.zeros(m), np.zeros(n)), (b, c))]
    return {"val_rmse": rmse(error[keep]), "baseline_val_rmse": min(baselines),
            "val_outlier_fraction": 1.0 - float(np.mean(keep)),
            "val_median_abs_error": float(np.median(np.abs(error)))}


def _largest_share(entries: Entries, magnitude: np.ndarray, share: float) -> np.ndarray:
    """(N,) bool: the entry is among the ``floor(share * count)`` largest ``magnitude`` of its row
    and among those of its column (the sparsity projection of Yi, Park, Chen, Caramanis, "Fast
    algorithms for robust PCA via gradient descent", NeurIPS 2016). Capping the outliers of every row
    and column keeps each of them determined by its inliers, so a row fitted badly early is refitted
    instead of being flagged whole."""
    keep = np.ones(entries.nnz, dtype=bool)
    for own, counts in ((entries.rows, entries.row_counts), (entries.cols, entries.col_counts)):
        order = np.lexsort((-magnitude, own))
        starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
        position = np.empty(entries.nnz, dtype=np.int64)
        position[order] = np.arange(entries.nnz) - np.repeat(starts, counts)
        keep &= position < np.floor(share * counts[own])
    return keep


def _relative(residual: np.ndarray, values: np.ndarray, inlier: np.ndarray) -> float:
    """``||r_in|| / ||M_in||`` (0 when nothing is an inlier and nothing is left to explain)."""
    top = float(np.linalg.norm(residual[inlier]))
    bottom = float(np.linalg.norm(values[inlier]))
    return top / bottom if bottom > 0 else (0.0 if top == 0 else np.inf)


def _message(status: Status, sweeps: int, metrics: dict[str, float], tol: float, max_outliers: float,
             rank: int, identified: int | None) -> str:
    said = (f"inlier relative residual {metrics['inlier_relative_residual']:.2e} (tol {tol:g}), "
            f"{100 * metrics['outlier_fraction']:.2f}% of the entries flagged as outliers")
    if status == Status.CONVERGED_ATOL:
        at = "" if identified is None else f" at rank {identified} (a gap in the rank-{rank} fit's spectrum)"
        return f"split into low rank plus sparse outliers{at} after {sweeps} sweeps: {said}"
    if status == Status.DIVERGED_TOLERANCE_UNREACHABLE:
        if metrics["outlier_fraction"] > max_outliers:
            return (f"more than {100 * max_outliers:g}% of the entries are outliers of this fit, not a sparse "
                    f"corruption: {said}")
        return (f"the inlier residual stopped decreasing above tol after {sweeps} sweeps: {said}; "
                "noisy data: raise -p tol")
    if status == Status.DIVERGED_MAX_IT and metrics["inlier_relative_residual"] <= tol:
        return (f"the rank-{rank} split converged, but the refit at the lower rank its spectrum suggests ran out of "
                f"sweeps after {sweeps}: {said}; directions beyond the true rank may be spurious; raise --maxiter")
    if status == Status.DIVERGED_MAX_IT:
        return f"no stable split after {sweeps} sweeps: {said}; raise --maxiter"
    return f"{status.reason} after {sweeps} sweeps"
