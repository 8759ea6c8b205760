"""Bayesian SVD++ by Gibbs sampling: BPMF with sampled biases and implicit-feedback priors.

Model (``k = rank``; with ``bias`` each factor row carries one more coordinate, the bias, whose
partner on the other side is fixed to 1)::

    M_ij = mu + b_i + c_j + U_i . V_j + noise,                   noise ~ N(0, 1 / alpha)
    [U_i, b_i] ~ N(mu_u + beta^T x_i, Lambda_u^-1),  x_i = 1(j rated by i) / sqrt(#rated by i)
    [V_j, c_j] ~ N(mu_v + gamma^T z_j, Lambda_v^-1), z_j = 1(i rated j) / sqrt(#raters of j)

``x_i`` is the set of items user i rated in the *training* entries (Koren's implicit feedback of
SVD++, KDD 2008), ``z_j`` the set of users who rated item j ("flipped" SVD++, Rendle et al. 2019,
"On the difficulty of evaluating baselines"); the rows of ``beta`` (one per item) and ``gamma``
(one per user) are the implicit factors ``y_j`` of SVD++. Writing the prior mean as a regression
on side features is Macau's construction (Simm et al. 2015): ``beta | Lambda_u ~ MN(0,
(lambda_beta I)^-1, Lambda_u^-1)``, and ``(mu_u, Lambda_u)`` has BPMF's Normal-Wishart hyperprior.

Each sweep samples, per side: ``(mu, Lambda)`` from their Normal-Wishart conditional (the scatter
of the residual rows ``U - X beta`` plus ``lambda_beta beta^T beta``), then ``beta`` exactly from
its matrix-normal conditional (one ridge solve with k + 1 right-hand sides and noise injected on
both sides, the factorisation of the D x D or N x N Gram matrix computed once per fit), then all
rows of the side at once from stacked (k+1) x (k+1) Gaussian conditionals. The noise precision
``alpha`` is sampled from its Gamma conditional unless fixed, with the residual sum of squares the
column half-step forms anyway (no pass over the entries). Predictions average, over the sweeps
after burn-in, ``mu + b + c + U E[V | rest]^T`` with the column draw's conditional mean in place of
the draw (Rao-Blackwellisation, Gelfand and Smith 1990: the same expectation, less Monte Carlo
variance). The first half of the burn-in leaves the coefficients at zero (see ``warmup`` below).

Defaults (lambda_beta 3 among 1, 3, 10; implicit priors on both sides, against rows or columns
only, averaged over three 90/10 validation splits; ``INIT_SCALE``) were chosen on validation
splits of MovieLens u1.base. The 4 + 14 sweeps too (six 90/10 splits of u1.base: validation RMSE
0.8953 against 0.8952 for 5 + 18 sweeps averaging the draws themselves, 0.8925 for 5 + 18
Rao-Blackwellised sweeps), by the time budget of five folds in 4 s. Measured on the u1..u5 test
folds: see ``benchmarks/bench_complete.py`` (GLocal-K's published 0.889 is the best we know of).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp

from matcli.core.result import Callback, Result, Status, no_callback
from matcli.methods.complete.bpmf import BETA0, _average_factors, _wishart, posterior_sweep
from matcli.methods.complete.common import Entries, FactorModel, Heldout, entry_dots, finish, rmse

#: Values of ``implicit``: the sides whose prior mean regresses on implicit feedback.
IMPLICIT_SIDES = ("both", "rows", "cols", "none")
#: Gamma(shape, rate) hyperprior of the noise precision when it is sampled (weak: one pseudo-entry).
ALPHA_SHAPE = 1.0
ALPHA_RATE = 1.0
#: Largest sparse matrix (entries, zeros included) whose Gram matrix is formed by a dense update.
DENSE_GRAM_ENTRIES = 1 << 22
#: Standard deviation of the random start, relative to that of the centred values (chosen on
#: validation splits of MovieLens u1.base: the scale of the factors mixes slowly, so a start
#: closer to it shortens the burn-in). Short chains are sensitive to it: validation RMSE after
#: 4 + 14 sweeps 0.1 -> 0.917 (the sampled precision pins a start this small near zero for many
#: sweeps), 0.15 -> 0.897, 0.2 -> 0.8916, 0.25 -> 0.8934, 0.3 -> 0.8953, 0.5 -> 0.8986; but from
#: 0.2 two of six seeds stall on the two-type problem of the tests (rank 2), and from 0.5 one
#: runs away there, so 0.3.
INIT_SCALE = 0.3


@dataclass
class _Side:
    """State of one side: factor rows ``F`` (q, d), implicit features ``X`` (q, D) with their
    ridge solver and coefficients ``coef`` (D, d), and the prior offset ``X @ coef`` (q, d)."""

    F: np.ndarray
    X: sp.csr_matrix | None = None
    solver: "_RidgeSolver | None" = None
    coef: np.ndarray | None = None
    offset: np.ndarray | float = 0.0


class _RidgeSolver:
    """``R -> (C, X C)`` with ``C = (X^T X + lam I)^-1 R`` for a sparse (N, D) ``X``: a Cholesky
    factor of the D x D matrix when ``D <= N``, otherwise of ``K = X X^T + lam I`` (N x N) through
    the Woodbury identity ``(X^T X + lam I)^-1 = (I - X^T K^-1 X) / lam``, which also gives
    ``X C = K^-1 X R`` without another product."""

    def __init__(self, X: sp.csr_matrix, lam: float):
        self.X, self.lam = X, lam
        N, D = X.shape
        self.dual = D > N
        dense = _gram(X if self.dual else sp.csr_matrix(X.T))
        dense[np.diag_indices_from(dense)] += lam
        self.factor = sla.cho_factor(dense, lower=True, overwrite_a=True, check_finite=False)

    def solve(self, R: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if not self.dual:
            C = sla.cho_solve(self.factor, R, check_finite=False)
            return C, self.X @ C
        XC = sla.cho_solve(self.factor, self.X @ R, check_finite=False)
        return (R - self.X.T @ XC) / self.lam, XC


def _gram(Y: sp.csr_matrix) -> np.ndarray:
    """Lower triangle of ``Y Y^T`` (r, r) for a sparse (r, c) ``Y`` (the upper triangle is not
    set): one BLAS rank-k update of the dense ``Y`` when it holds at most ``DENSE_GRAM_ENTRIES``
    entries (on MovieLens 100k 3x faster than the sparse product and its conversion)."""
    r, c = Y.shape
    if r * c <= DENSE_GRAM_ENTRIES:
        return sla.blas.dsyrk(1.0, Y.toarray(), lower=1)
    return (Y @ Y.T).toarray()


def implicit_features(entries: Entries, axis: int) -> sp.csr_matrix:
    """(q, p) CSR matrix whose row i is the indicator of the entities row i (axis 0) or column i
    (axis 1) was observed with, scaled by ``1 / sqrt(count)`` (empty rows stay zero)."""
    # A copy: the CSR arrays of ``entries`` are shared, and sum_duplicates sorts indices in place.
    pattern = entries.matrix(axis, np.ones(entries.nnz)).copy()
    pattern.sum_duplicates()
    pattern.data[:] = 1.0
    counts = np.diff(pattern.indptr)
    scale = 1.0 / np.sqrt(np.maximum(counts, 1))
    return sp.csr_matrix(sp.diags(scale) @ pattern)


def bpmf_implicit(rows: np.ndarray, cols: np.ndarray, values: np.ndarray, shape: tuple[int, int], *, rank: int,
                  bias: bool = True, alpha: float = 0.0, burnin: int = 4, samples: int = 14,
                  implicit: str = "both", lambda_beta: float = 3.0, out_rank: int = 0, maxiter: int = 1000,
                  rtol: float = 0.0, atol: float = 0.0, heldout: Heldout | None = None,
                  clip: tuple[float, float] | None = None, rng: np.random.Generator,
                  callback: Callback = no_callback) -> Result:
    """Posterior-mean completion by Gibbs sampling of the Bayesian SVD++ model above.

    Parameters
    ----------
    rows, cols, values, shape : observed entries (0-based) of an (m, n) matrix.
    rank : k, rank of each sample.
    bias : centre by the global mean ``mu`` and sample a bias per row and per column; False fits
        ``U V^T`` alone (no mean, no biases).
    alpha : noise precision; 0 samples it (Gamma(1, 1) hyperprior).
    burnin, samples : sweeps discarded, then sweeps averaged (at most ``maxiter`` sweeps in all).
    implicit : which sides get implicit-feedback priors: "both", "rows" (SVD++), "cols" or
        "none" (BPMF with sampled biases). The features come from ``rows, cols`` only.
    lambda_beta : prior precision of the implicit factors, relative to the factor precision.
    out_rank : 0 writes the stacked samples (``U V^T`` is exactly the posterior mean); r > 0 its
        best rank-r approximation.
    rtol, atol : early stops as in :func:`matcli.methods.complete.bpmf.bpmf`.

    Returns
    -------
    Result with ``U``, ``V`` (m, S k) and (n, S k) (or rank ``out_rank``): the S kept row draws and
    the column conditional means stacked, so that ``mu + b + c + U V^T`` is the Rao-Blackwellised
    posterior-mean estimate, with ``mu`` and the averaged biases; metrics ``train_rmse`` and
    ``val_rmse`` of the posterior mean; status ``CONVERGED_ITS``, ``CONVERGED_RTOL``,
    ``CONVERGED_ATOL`` or ``DIVERGED_NAN``.
    """
    if implicit not in IMPLICIT_SIDES:
        raise ValueError(f"implicit={implicit!r}: expected one of {', '.join(IMPLICIT_SIDES)}")
    entries = Entries(rows, cols, values, shape)
    m, n = entries.shape
    mu = float(np.mean(entries.values)) if bias else 0.0
    target = entries.values - mu
    fixed_alpha = alpha > 0
    if not fixed_alpha:
        alpha = 2.5 / max(float(np.var(entries.values)), 1e-300)
    d = rank + int(bias)
    scale = INIT_SCALE * max(float(np.std(target)), 1e-12)
    sides = []
    for axis, q in ((0, m), (1, n)):
        use = implicit == "both" or implicit == ("rows", "cols")[axis]
        F = scale * rng.standard_normal((q, d))
        if bias:
            F[:, rank] = 0.0
        side = _Side(F)
        if use:
            side.X = implicit_features(entries, axis)
            side.solver = _RidgeSolver(side.X, lambda_beta)
            side.coef = np.zeros((side.X.shape[1], d))
        sides.append(side)
    total = min(maxiter, burnin + samples)
    # The implicit coefficients start at zero, and while they are far below their prior scale
    # they pin Lambda (D extra degrees of freedom with no scatter) and the factors grow slowly:
    # the first half of the burn-in is plain BPMF, then each coefficient block is drawn from its
    # conditional given factors already at their scale.
    warmup = burnin // 2
    # Per side, the observed pattern and the centred values as CSR matrices, built once.
    patterns = [entries.matrix(axis, np.ones(entries.nnz)) for axis in (0, 1)]
    targets = [entries.matrix(axis, target) for axis in (0, 1)]
    kept_u: list[np.ndarray] = []
    kept_v: list[np.ndarray] = []
    bias_sum = [np.zeros(m), np.zeros(n)]
    train_sum = np.zeros(entries.nnz)
    val_sum = np.zeros(heldout.values.size) if heldout is not None else None
    status = Status.CONVERGED_ITS
    sweep = 0
    train_rmse = val_rmse = np.nan
    for sweep in range(1, total + 1):
        for axis in (0, 1):
            own, other = sides[axis], sides[1 - axis]
            mean, prec = _sample_hyper(own, lambda_beta, rng)
            if own.X is not None and sweep > warmup:
                own.coef, own.offset = _sample_coef(own, mean, prec, rng)
            partner = other.F.copy()
            # With biases the partner's last column is 1 and its bias is subtracted from the target.
            other_bias = None
            if bias:
                other_bias = other.F[:, rank].copy()
                partner[:, rank] = 1.0
            args = (patterns[axis], targets[axis], partner, other_bias, alpha, mean + own.offset, prec, rng)
            if axis == 0:
                own.F = _sample_rows(*args)
            else:
                own.F, cond_mean, sse = _sample_rows_averaged(*args)
        # The column half-step saw every entry once: sse is the whole fit's, of U and V just drawn.
        U, V = sides[0].F, sides[1].F
        if not (np.isfinite(U).all() and np.isfinite(V).all() and np.isfinite(cond_mean).all()):
            status = Status.DIVERGED_NAN
            break
        if not fixed_alpha:
            alpha = rng.gamma(ALPHA_SHAPE + entries.nnz / 2, 1.0 / (ALPHA_RATE + sse / 2))
        if sweep <= burnin:
            callback(sweep, train_rmse=float(np.sqrt(sse / max(entries.nnz, 1))))
            continue
        # Rao-Blackwellised average: each sweep contributes E[prediction | U and the column prior]
        # = [U_i, 1] . E[[V_j, c_j] | ...] + b_i, the column draw's conditional mean in place of
        # the draw (same expectation, less Monte Carlo variance: on validation splits of
        # MovieLens u1.base the average of 12 such sweeps predicts as well as 18 plain ones).
        kept_u.append(U[:, :rank])
        kept_v.append(cond_mean[:, :rank])
        if bias:
            bias_sum[0] += U[:, rank]
            bias_sum[1] += cond_mean[:, rank]
        previous = train_sum / max(len(kept_u) - 1, 1)
        train_sum += _entry_predictions(entries.rows, entries.cols, U, cond_mean, rank, bias)
        average = train_sum / len(kept_u)
        train_rmse = rmse(average - target)
        if val_sum is not None and heldout.values.size:
            val_sum += _entry_predictions(heldout.rows, heldout.cols, U, cond_mean, rank, bias)
        val_rmse, stop = posterior_sweep(sweep, train_rmse, average, previous, len(kept_u), val_sum, heldout, mu,
                                         clip, atol, rtol, callback)
        if stop is not None:
            status = stop
            break
    if not kept_u:
        kept_u, kept_v = [sides[0].F[:, :rank]], [sides[1].F[:, :rank]]
        if bias:
            bias_sum = [sides[0].F[:, rank].copy(), sides[1].F[:, rank].copy()]
    Uo, Vo = _average_factors(kept_u, kept_v, out_rank)
    biases = (bias_sum[0] / len(kept_u), bias_sum[1] / len(kept_u)) if bias else (None, None)
    model = FactorModel(Uo, Vo, mu, *biases)
    metrics = {"train_rmse": float(train_rmse) if np.isfinite(train_rmse)
               else rmse(model.predict(entries.rows, entries.cols) - entries.values)}
    if heldout is not None and heldout.values.size:
        metrics["val_rmse"] = float(val_rmse) if np.isfinite(val_rmse) \
            else rmse(model.predict(heldout.rows, heldout.cols, clip) - heldout.values)
    info = {"alpha": float(alpha), "alpha_sampled": not fixed_alpha, "burnin": burnin,
            "samples_averaged": len(kept_u), "output_rank": int(Uo.shape[1]), "observed": entries.nnz,
            "implicit": implicit, "lambda_beta": lambda_beta}
    return finish(status, model, sweep, metrics, info,
                  f"averaged {len(kept_u)} posterior samples after {min(burnin, sweep)} burn-in sweeps")


def _entry_predictions(rows: np.ndarray, cols: np.ndarray, U: np.ndarray, V: np.ndarray, rank: int,
                       bias: bool) -> np.ndarray:
    """``b_i + c_j + U_i . V_j`` (without ``mu``) at the given entries."""
    out = entry_dots(rows, cols, U[:, :rank], V[:, :rank])
    if bias:
        out += U[rows, rank] + V[cols, rank]
    return out


def _sample_hyper(side: _Side, lambda_beta: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Draw (mean, precision) of the row prior from the Normal-Wishart conditional given the
    residual rows ``F - X coef`` (N, d) and, with implicit features, the (D, d) coefficients
    (prior ``coef | Lambda ~ MN(0, I / lambda_beta, Lambda^-1)`` adds ``lambda_beta coef^T coef``
    to the scatter and D degrees of freedom)."""
    E = side.F - side.offset
    count, d = E.shape
    ebar = E.mean(axis=0)
    centred = E - ebar
    beta = BETA0 + count
    w_inv = np.eye(d) + centred.T @ centred + (BETA0 * count / beta) * np.outer(ebar, ebar)
    df = d + count
    if side.X is not None and side.coef.any():
        w_inv += lambda_beta * (side.coef.T @ side.coef)
        df += side.coef.shape[0]
    w = np.linalg.inv(w_inv)
    lam = _wishart(df, (w + w.T) / 2, rng)
    chol = np.linalg.cholesky(beta * lam)
    mean = count * ebar / beta + np.linalg.solve(chol.T, rng.standard_normal(d))
    return mean, lam


def _sample_coef(side: _Side, mean: np.ndarray, prec: np.ndarray,
                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Draw the (D, d) implicit coefficients from ``MN(A^-1 X^T E, A^-1, prec^-1)``,
    ``A = X^T X + lambda_beta I``, ``E = F - mean``, and return them with ``X @ coef``.

    With ``prec = L L^T`` and standard normal G1 (N, d), G2 (D, d),
    ``A^-1 (X^T (E + G1 L^-1) + sqrt(lambda_beta) G2 L^-1)`` has that law: its noise has row
    covariance ``A^-1 (X^T X + lambda_beta I) A^-1 = A^-1`` and column covariance
    ``L^-T L^-1 = prec^-1``.
    """
    X, solver = side.X, side.solver
    N, D = X.shape
    d = mean.size
    chol = np.linalg.cholesky(prec)
    g1, g2 = (sla.solve_triangular(chol, rng.standard_normal((d, size)), trans=1, lower=True,
                                   check_finite=False).T for size in (N, D))
    return solver.solve(X.T @ (side.F - mean + g1) + np.sqrt(solver.lam) * g2)


def _sample_rows(pattern: sp.csr_matrix, values: sp.csr_matrix, F: np.ndarray, other_bias: np.ndarray | None,
                 alpha: float, prior_mean: np.ndarray, prior_prec: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Draw every row (q, d) of one side from ``N(P_i^-1 b_i, P_i^-1)`` with ``P_i = prior_prec +
    alpha sum_j F_j F_j^T`` and ``b_i = alpha sum_j (t_ij - o_j) F_j + prior_prec prior_mean_i``.

    ``pattern`` and ``values`` are the (q, p) observed pattern and targets ``t`` of this side,
    ``F`` (p, d) the other side's rows, ``other_bias`` (p,) its biases ``o`` (None: zero),
    ``prior_mean`` (d,) or (q, d).
    """
    _, prec, _, rhs = _conditionals(pattern, values, F, other_bias, alpha, prior_mean, prior_prec)
    chol = np.linalg.cholesky(prec)
    # P^-1 (b + L z) = P^-1 b + L^-T z has mean P^-1 b and covariance L^-T L^-1 = P^-1: one solve.
    rhs += np.matmul(chol, rng.standard_normal((prec.shape[0], prec.shape[1], 1)))[:, :, 0]
    return np.linalg.solve(prec, rhs[:, :, None])[:, :, 0]


def _sample_rows_averaged(pattern: sp.csr_matrix, values: sp.csr_matrix, F: np.ndarray,
                          other_bias: np.ndarray | None, alpha: float, prior_mean: np.ndarray, prior_prec: np.ndarray,
                          rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, float]:
    """:func:`_sample_rows` (the same draw from the same generator state, to rounding) for the side
    whose half-step feeds the posterior average and the noise precision.

    Returns the draw (q, d), the conditional means ``P_i^-1 b_i`` (q, d) and the sum of squared
    residuals ``sum_ij (t_ij - o_j - F_j . draw_i)^2`` over this side's entries (every observed
    entry once), expanded as ``sum (t - o)^2 - 2 sum_i draw_i . g_i + sum_i draw_i^T G_i draw_i``
    with ``g_i = sum_j (t_ij - o_j) F_j`` and ``G_i = sum_j F_j F_j^T``, already formed for the
    draw: no pass over the entries with the factors.
    """
    gram, prec, data, rhs = _conditionals(pattern, values, F, other_bias, alpha, prior_mean, prior_prec)
    q, d = rhs.shape
    chol = np.linalg.cholesky(prec)
    # The mean P^-1 b and the noise P^-1 L z = L^-T z from one batched solve with two right-hand sides.
    noise = np.matmul(chol, rng.standard_normal((q, d, 1)))
    solved = np.linalg.solve(prec, np.concatenate((rhs[:, :, None], noise), axis=2))
    mean = solved[:, :, 0]
    draw = mean + solved[:, :, 1]
    start = values.data if other_bias is None else values.data - other_bias[values.indices]
    quad = np.einsum("ij,ij->", np.matmul(gram, draw[:, :, None])[:, :, 0], draw)
    sse = float(start @ start) - 2.0 * float(np.einsum("ij,ij->", draw, data)) + float(quad)
    return draw, mean, max(sse, 0.0)


def _conditionals(pattern: sp.csr_matrix, values: sp.csr_matrix, F: np.ndarray, other_bias: np.ndarray | None,
                  alpha: float, prior_mean: np.ndarray, prior_prec: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(G, P, g, b)`` of :func:`_sample_rows`: G_i = sum_j F_j F_j^T and P_i (q, d, d), g_i =
    sum_j (t_ij - o_j) F_j and b_i (q, d), from one sparse product with the other side's pairwise
    products."""
    q, d = pattern.shape[0], F.shape[1]
    iu, ju = np.triu_indices(d)
    blocks = [F[:, iu] * F[:, ju]]
    if other_bias is not None:
        blocks.append(other_bias[:, None] * F)
    products = pattern @ np.hstack(blocks)
    # G_i from its upper triangle by one gather: entry (a, b) is column t(min(a, b), max(a, b)).
    position = np.empty((d, d), dtype=np.intp)
    position[iu, ju] = position[ju, iu] = np.arange(iu.size)
    gram = products[:, position.ravel()].reshape(q, d, d)
    prec = alpha * gram
    prec += prior_prec
    data = values @ F
    if other_bias is not None:
        data -= products[:, iu.size:]
    rhs = alpha * data + np.broadcast_to(prior_mean, (q, d)) @ prior_prec
    return gram, prec, data, rhs
