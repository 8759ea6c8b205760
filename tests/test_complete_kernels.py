"""Numerical tests of the completion kernels against exact constructions and dense references."""

from __future__ import annotations

import numpy as np
import pytest

from matcli.core.result import Status
from matcli.methods.complete import als, bpmf, robust, scaledgd, softimpute
from matcli.methods.complete.common import Entries, FactorModel, Heldout, fit_biases, ridge_half_step


def lowrank_sample(m, n, r, count, seed, noise=0.0):
    """Exact rank-r M = U V^T (unit-variance factors) and `count` distinct uniformly sampled entries."""
    rng = np.random.default_rng(seed)
    U, V = rng.standard_normal((m, r)), rng.standard_normal((n, r))
    flat = rng.choice(m * n, size=count, replace=False)
    rows, cols = np.divmod(flat, n)
    values = np.einsum("ij,ij->i", U[rows], V[cols]) + noise * rng.standard_normal(count)
    return U @ V.T, rows, cols, values


def dense_of(result) -> np.ndarray:
    """Completed matrix of a small result (dense on purpose: the reference side of a test)."""
    out = result.outputs
    M = out["U"] @ out["V"].T
    if "row_bias" in out:
        M = M + out["mu"] + out["row_bias"][:, None] + out["col_bias"][None, :]
    return M


def rel_err(A, B) -> float:
    return float(np.linalg.norm(A - B) / np.linalg.norm(B))


# m, n, r and the sample size of the recovery tests: ~ 2 r (m + n) log n distinct entries (12%),
# above the information limit r (m + n - r) by a log factor, as matrix completion theory needs.
M_, N_, R_ = 300, 250, 3
COUNT = int(2 * R_ * (M_ + N_) * np.log(N_))


@pytest.fixture(scope="module")
def exact_problem():
    return lowrank_sample(M_, N_, R_, COUNT, seed=11)


@pytest.mark.parametrize("kernel, options", [
    (als.als, {"reg": 0.0}),
    (als.als_exact, {"reg": 0.0}),
    (als.als, {"reg": 0.0, "init": "random", "maxiter": 300}),
    (scaledgd.scaledgd, {"reg": 0.0, "maxiter": 400}),
    (softimpute.softimpute, {"reg": 0.0, "maxiter": 600}),
    (robust.robust, {"reg": 0.0}),
], ids=["als-cg", "als-exact", "als-cg-random-init", "scaledgd", "softimpute-hard", "robust"])
def test_exact_recovery_of_random_low_rank(exact_problem, kernel, options):
    M, rows, cols, values = exact_problem
    options = {"maxiter": 100, **options}
    result = kernel(rows, cols, values, (M_, N_), rank=R_, bias=False, rtol=0.0, atol=1e-10,
                    rng=np.random.default_rng(0), **options)
    assert result.status.converged, result.message
    assert rel_err(dense_of(result), M) < 1e-6
    assert result.outputs["U"].shape == (M_, R_) and result.outputs["V"].shape == (N_, R_)


def test_exact_recovery_with_biases():
    M, rows, cols, values = lowrank_sample(200, 150, 2, 6000, seed=3)
    rng = np.random.default_rng(4)
    b, c = rng.standard_normal(200), rng.standard_normal(150)
    M = M + 3.0 + b[:, None] + c[None, :]
    values = M[rows, cols]
    result = als.als_exact(rows, cols, values, (200, 150), rank=2, reg=0.0, bias=True, maxiter=200,
                           rtol=0.0, atol=1e-10, rng=rng)
    assert result.status.converged
    assert rel_err(dense_of(result), M) < 1e-6
    assert {"mu", "row_bias", "col_bias"} <= set(result.outputs)


def test_half_step_matches_dense_ridge_per_row():
    rng = np.random.default_rng(5)
    m, n, d, count = 40, 30, 4, 500
    flat = rng.choice(m * n, size=count, replace=False)
    rows, cols = np.divmod(flat, n)
    entries = Entries(rows, cols, np.zeros(count), (m, n))
    F = rng.standard_normal((n, d))
    target = rng.standard_normal(count)
    weights = rng.uniform(0.1, 2.0, count)
    lam = rng.uniform(0.01, 1.0, m)
    exact = ridge_half_step(entries, 0, F, target, lam, weights=weights, exact=True)
    for i in range(m):
        sel = rows == i
        A = F[cols[sel]] * np.sqrt(weights[sel])[:, None]
        ref = np.linalg.solve(A.T @ A + lam[i] * np.eye(d), A.T @ (np.sqrt(weights[sel]) * target[sel]))
        tol = 1e3 * np.finfo(float).eps * np.linalg.cond(A.T @ A + lam[i] * np.eye(d))
        np.testing.assert_allclose(exact[i], ref, rtol=0, atol=tol * max(1.0, np.abs(ref).max()))
    # d CG steps solve a d x d SPD system exactly in exact arithmetic.
    cg = ridge_half_step(entries, 0, F, target, lam, weights=weights, exact=False, cg_iters=3 * d)
    np.testing.assert_allclose(cg, exact, rtol=0, atol=1e-8 * np.abs(exact).max())


def test_rows_and_columns_without_observations_fall_back_to_biases():
    rng = np.random.default_rng(6)
    rows = rng.integers(0, 20, 300)
    cols = rng.integers(0, 15, 300)
    values = rng.uniform(1, 5, 300)
    result = als.als_exact(rows, cols, values, (25, 18), rank=2, reg=0.1, bias=True, rng=rng)
    out = result.outputs
    assert np.all(out["U"][20:] == 0) and np.all(out["row_bias"][20:] == 0)
    assert np.all(out["V"][15:] == 0) and np.all(out["col_bias"][15:] == 0)
    model = FactorModel.from_outputs(out)
    pred = model.predict(np.array([22]), np.array([3]))
    assert pred[0] == pytest.approx(out["mu"] + out["col_bias"][3])


def test_huge_shape_is_never_densified():
    # A dense 3e5 x 3e5 matrix would need 720 GB; the kernels work in O(|Omega| + (m + n) k^2).
    m = n = 300_000
    rng = np.random.default_rng(7)
    rows, cols = rng.integers(0, m, 20000), rng.integers(0, n, 20000)
    values = rng.standard_normal(20000)
    for kernel in (als.als, als.als_exact, scaledgd.scaledgd, softimpute.softimpute, robust.robust, bpmf.bpmf):
        extra = {"reg": 0.1} if kernel is not bpmf.bpmf else {"samples": 2, "burnin": 1}
        result = kernel(rows, cols, values, (m, n), rank=2, maxiter=2, rng=rng, **extra)
        assert result.outputs["U"].shape[0] == m


def test_robust_ignores_sparse_outliers_that_break_least_squares():
    M, rows, cols, values = lowrank_sample(200, 160, 2, 7000, seed=8)
    rng = np.random.default_rng(9)
    bad = rng.choice(values.size, values.size // 20, replace=False)
    corrupted = values.copy()
    corrupted[bad] += 20.0 * rng.standard_normal(bad.size)
    ls = als.als_exact(rows, cols, corrupted, (200, 160), rank=2, reg=0.0, bias=False, maxiter=40,
                       rtol=0.0, rng=np.random.default_rng(0))
    l1 = robust.robust(rows, cols, corrupted, (200, 160), rank=2, reg=0.0, bias=False, maxiter=60,
                       rtol=0.0, rng=np.random.default_rng(0))
    assert rel_err(dense_of(ls), M) > 1e-2
    assert rel_err(dense_of(l1), M) < 1e-5
    assert l1.metrics["outlier_fraction"] == pytest.approx(0.05, abs=0.01)
    assert l1.status.converged and l1.metrics["inlier_relative_residual"] <= l1.info["inlier_tolerance"]


def dense_softimpute(M_obs, mask, lam, iters=3000):
    """Reference soft-impute with full dense SVDs (Mazumder et al. 2010, Algorithm 1)."""
    Z = np.zeros_like(M_obs)
    for _ in range(iters):
        X = np.where(mask, M_obs, Z)
        W, s, Vt = np.linalg.svd(X, full_matrices=False)
        Z_new = (W * np.maximum(s - lam, 0)) @ Vt
        if np.linalg.norm(Z_new - Z) <= 1e-13 * np.linalg.norm(Z_new):
            return Z_new
        Z = Z_new
    return Z


def test_softimpute_reaches_the_dense_reference_fixed_point():
    M, rows, cols, values = lowrank_sample(40, 30, 2, 700, seed=10, noise=0.05)
    result = softimpute.softimpute(rows, cols, values, (40, 30), rank=8, reg=0.1, bias=False, maxiter=3000,
                                   rtol=1e-12, rng=np.random.default_rng(0))
    mask = np.zeros((40, 30), dtype=bool)
    mask[rows, cols] = True
    M_obs = np.zeros((40, 30))
    M_obs[rows, cols] = values
    ref = dense_softimpute(M_obs, mask, result.info["lambda"])
    assert np.linalg.matrix_rank(ref, tol=1e-8) < 8
    assert rel_err(dense_of(result), ref) < 1e-6


def test_scaledgd_is_insensitive_to_condition_number():
    def iterations(singular_values):
        rng = np.random.default_rng(12)
        m, n, r = 200, 150, 3
        Uq = np.linalg.qr(rng.standard_normal((m, r)))[0]
        Vq = np.linalg.qr(rng.standard_normal((n, r)))[0]
        M = (Uq * np.asarray(singular_values)) @ Vq.T
        flat = rng.choice(m * n, size=9000, replace=False)
        rows, cols = np.divmod(flat, n)
        result = scaledgd.scaledgd(rows, cols, M[rows, cols], (m, n), rank=r, reg=0.0, bias=False, maxiter=400,
                                   rtol=0.0, atol=1e-9 * np.sqrt(np.mean(M**2)), rng=rng)
        assert result.status == Status.CONVERGED_ATOL
        assert rel_err(dense_of(result), M) < 1e-6
        return result.iterations

    well, ill = iterations([10.0, 10.0, 10.0]), iterations([100.0, 30.0, 10.0])
    # Plain gradient descent would need ~ kappa^2 = 100 times more steps on the second problem.
    assert ill <= 1.5 * well + 10


def test_bpmf_posterior_mean_denoises_and_factors_reproduce_it():
    M, rows, cols, values = lowrank_sample(150, 120, 2, 6000, seed=13, noise=0.3)
    rng = np.random.default_rng(14)
    held = rng.random(values.size) < 0.1
    heldout = Heldout(rows[held], cols[held], M[rows[held], cols[held]])
    result = bpmf.bpmf(rows[~held], cols[~held], values[~held], (150, 120), rank=2, samples=30, burnin=10,
                       alpha=1 / 0.09, heldout=heldout, rng=rng)
    assert result.status.converged
    # The posterior mean is far closer to the truth than the noise level 0.3.
    assert result.metrics["val_rmse"] < 0.15
    model = FactorModel.from_outputs(result.outputs)
    rmse_from_factors = np.sqrt(np.mean((model.predict(heldout.rows, heldout.cols) - heldout.values) ** 2))
    assert rmse_from_factors == pytest.approx(result.metrics["val_rmse"], rel=1e-10)
    assert result.outputs["U"].shape == (150, 2 * 30)


def test_bpmf_out_rank_compresses_the_average():
    M, rows, cols, values = lowrank_sample(80, 60, 2, 2000, seed=15, noise=0.1)
    full = bpmf.bpmf(rows, cols, values, (80, 60), rank=2, samples=10, rng=np.random.default_rng(1))
    small = bpmf.bpmf(rows, cols, values, (80, 60), rank=2, samples=10, out_rank=4, rng=np.random.default_rng(1))
    assert small.outputs["U"].shape == (80, 4)
    A, B = dense_of(full), dense_of(small)
    s = np.linalg.svd(A - full.outputs["mu"], compute_uv=False)
    # Eckart-Young: the rank-4 truncation error is exactly the tail of the singular values.
    assert np.linalg.norm(A - B) == pytest.approx(np.sqrt(np.sum(s[4:] ** 2)), rel=1e-8, abs=1e-12)


def test_fit_biases_matches_closed_form_on_one_sweep_structure():
    rows = np.array([0, 0, 1, 2, 2, 2])
    cols = np.array([0, 1, 1, 0, 1, 2])
    values = np.array([4.0, 5.0, 3.0, 1.0, 2.0, 3.0])
    entries = Entries(rows, cols, values, (3, 3))
    mu, b, c = fit_biases(entries, values, reg=0.0, sweeps=2000)
    residual = values - mu - b[rows] - c[cols]
    # Stationarity of the unregularised least squares: per-row and per-column residual sums vanish.
    np.testing.assert_allclose(np.bincount(rows, residual, 3), 0, atol=1e-9)
    np.testing.assert_allclose(np.bincount(cols, residual, 3), 0, atol=1e-9)


def test_spectral_init_is_the_truncated_svd_when_everything_is_observed():
    from matcli.methods.complete.common import spectral_init

    rng = np.random.default_rng(16)
    m, n = 60, 40
    W = np.linalg.qr(rng.standard_normal((m, n)))[0]
    Z = np.linalg.qr(rng.standard_normal((n, n)))[0]
    s = 0.5 ** np.arange(n)
    M = (W * s) @ Z.T
    rows, cols = np.divmod(np.arange(m * n), n)
    U, V = spectral_init(Entries(rows, cols, M.ravel(), (m, n)), M.ravel(), 3, rng)
    best = (W[:, :3] * s[:3]) @ Z[:, :3].T
    # Subspace iteration error ~ (s_12 / s_3)^(2 q + 1) with width 11, q = 4: far below rounding.
    assert np.linalg.norm(U @ V.T - best) <= 1e-12 * np.linalg.norm(best)
    np.testing.assert_allclose(np.sort(np.sum(U * U, axis=0))[::-1], s[:3], rtol=1e-12)


def test_cg_als_with_enough_inner_steps_follows_exact_als():
    # With cg_iters >= k + 1 the vectorised CG solves each (k+1) x (k+1) system to rounding, so
    # both variants produce the same sweeps (compared through their objective histories).
    rng = np.random.default_rng(17)
    rows, cols = rng.integers(0, 120, 3000), rng.integers(0, 90, 3000)
    values = rng.uniform(1, 5, 3000)
    histories = []
    for kernel, extra in ((als.als_exact, {}), (als.als, {"cg_iters": 40})):
        history = []
        kernel(rows, cols, values, (120, 90), rank=6, reg=0.1, maxiter=8, rtol=0.0, rng=np.random.default_rng(0),
               callback=lambda it, **v: history.append(v["objective"]), **extra)
        histories.append(history)
    np.testing.assert_allclose(histories[1], histories[0], rtol=1e-8)
