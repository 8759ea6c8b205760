"""sketch-regress --ensemble K: ridge ensembles on feature sketches tuned by GCV (issue #21).

References are independent of the kernel's SVD path: the ensemble's smoother matrix built densely
(``A S_k pinv(S_k^T A^T A S_k + lam I) S_k^T A^T``) for GCV, the exact ridge solution by
``numpy.linalg.solve`` on the normal equations, and the Galerkin bound of the module docstring for the
approach of the ensemble to the exact ridge as q -> n.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.sparse as sp

import matcli
from matcli.core.errors import UsageError
from matcli.methods.sketch import ensemble as E

EPS = np.finfo(np.float64).eps


def _problem(m: int = 240, n: int = 30, seed: int = 0, noise: float = 1.0, rank: int | None = None):
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((m, n)) * np.linspace(1.0, 3.0, n)[None, :]
    if rank is not None:
        A = A[:, :rank] @ rng.standard_normal((rank, n))
    b = A @ rng.standard_normal(n) + noise * rng.standard_normal(m)
    return A, b


def _dense_gcv(A, b, sketches, lam):
    """GCV of the ensemble from its m x m smoother, formed densely with pseudo-inverses."""
    m = A.shape[0]
    L = np.zeros((m, m))
    for sketch in sketches:
        AS = np.asarray(A @ sketch.dense())
        L += AS @ np.linalg.pinv(AS.T @ AS + lam * np.eye(AS.shape[1])) @ AS.T
    L /= len(sketches)
    r = b - L @ b
    return (r @ r / m) / (1.0 - np.trace(L) / m) ** 2


def _tolerance(A) -> float:
    """Both GCV computations are backward stable in A S; the dense one squares the conditioning:
    relative agreement within n cond(A)^2 eps, with a factor 100 for the pseudo-inverses' cut-offs."""
    s = np.linalg.svd(np.asarray(A.toarray() if sp.issparse(A) else A), compute_uv=False)
    s = s[s > max(A.shape) * EPS * s[0]]
    return 100.0 * A.shape[1] * (s[0] / s[-1]) ** 2 * EPS


def test_feature_sketches_are_the_documented_matrices():
    """srht = D C^T R (C the orthonormal DCT-II matrix, orthonormal columns); countsketch one
    +-sqrt(q/n) per row; and ``apply``/``lift`` agree with the dense S they describe."""
    import scipy.fft

    n, q = 37, 11
    rng = np.random.default_rng(3)
    A, w = rng.standard_normal((50, n)), rng.standard_normal((q, 2))
    srht = E.draw_sketch("srht", n, q, rng)
    C = scipy.fft.dct(np.eye(n), axis=0, norm="ortho")
    S = srht.signs[:, None] * C[srht.rows, :].T
    np.testing.assert_allclose(srht.dense(), S, atol=10 * EPS)
    np.testing.assert_allclose(S.T @ S, np.eye(q), atol=10 * n * EPS)
    count = E.draw_sketch("countsketch", n, q, rng)
    S2 = np.zeros((n, q))
    S2[np.arange(n), count.buckets] = count.signs * np.sqrt(q / n)
    assert np.array_equal(count.dense(), S2)
    for sketch, dense in ((srht, S), (count, S2)):
        np.testing.assert_allclose(sketch.apply(A), A @ dense, atol=100 * n * EPS * np.abs(A).max())
        np.testing.assert_allclose(sketch.lift(w), dense @ w, atol=100 * n * EPS * np.abs(w).max())


@pytest.mark.parametrize("kind", E.FEATURE_SKETCHES)
@pytest.mark.parametrize("rank", [None, 12])
def test_ensemble_gcv_matches_the_dense_smoother(kind, rank):
    """GCV over lam (0 = ridgeless on the numerical rank, also for rank-deficient A S_k) equals the
    formula evaluated on the dense smoother L = mean_k L_k."""
    A, b = _problem(rank=rank)
    n = A.shape[1]
    rng = np.random.default_rng(5)
    sketches = [E.draw_sketch(kind, n, 17, rng) for _ in range(3)]
    members = [E.fit_member(A, b, sketch) for sketch in sketches]
    lams = np.array([0.0, 1e-3, 1.0, 50.0, 1e4])
    got = E.ensemble_gcv(A, b, members, lams)["gcv"]
    want = np.array([_dense_gcv(A, b, sketches, lam) for lam in lams])
    tol = _tolerance(A) if rank is None else 1e-8  # rank-deficient: the pinv cut-off decides, not cond
    np.testing.assert_allclose(got, want, rtol=tol)


def test_ensemble_gcv_sparse_countsketch_matches_dense():
    A, b = _problem(seed=3)
    A[np.abs(A) < 1.0] = 0.0
    As = sp.csr_matrix(A)
    rng = np.random.default_rng(2)
    sketches = [E.draw_sketch("countsketch", A.shape[1], 10, rng) for _ in range(4)]
    members = [E.fit_member(As, b, sketch) for sketch in sketches]
    lams = np.array([0.0, 0.3, 30.0])
    got = E.ensemble_gcv(As, b, members, lams)["gcv"]
    want = [_dense_gcv(A, b, sketches, lam) for lam in lams]
    np.testing.assert_allclose(got, want, rtol=1e-10)


def test_identity_member_is_exact_ridge_gcv_and_exact_ridge_solution():
    """q = n endpoint of the auto grid: GCV of the exact ridge, (I - H) b with H = A (A^T A + lam I)^-1 A^T,
    and the exact ridge x (the auto grid's unsketched candidate)."""
    A, b = _problem(seed=4)
    m, n = A.shape
    lams = np.array([0.0, 0.5, 20.0])
    member = E.fit_member(A, b, E.FeatureSketch("identity", n, n))
    out = E.ensemble_gcv(A, b, [member], lams)
    for j, lam in enumerate(lams):
        x_star = np.linalg.solve(A.T @ A + lam * np.eye(n), A.T @ b)
        H = A @ np.linalg.solve(A.T @ A + lam * np.eye(n), A.T)
        r = b - H @ b
        gcv = (r @ r / m) / (1 - np.trace(H) / m) ** 2
        tol = _tolerance(A)
        np.testing.assert_allclose(out["coefficients"][:, j], x_star, rtol=tol, atol=tol * np.linalg.norm(x_star))
        assert abs(out["gcv"][j] - gcv) <= tol * gcv


@pytest.mark.parametrize("lam", [0.0, 5.0])
def test_ensemble_approaches_exact_ridge_as_sketch_size_grows(lam):
    """srht sketches have orthonormal columns, so member k is the H-orthogonal projection of the exact
    ridge x* on range(S_k) (H = A^T A + lam I): ||S_k w_k - x*||_H <= ||(I - P_k) x*||_H, and the
    ensemble's error is within the mean of those; at q = n it is x* to rounding."""
    A, b = _problem(m=300, n=24, seed=6)
    m, n = A.shape
    H = A.T @ A + lam * np.eye(n)
    x_star = np.linalg.solve(H, A.T @ b)
    cond = np.linalg.cond(H)
    K = 3
    errors = []
    for q in (3, 6, 12, 18, 24):
        result = E.ridge_ensemble(A, b, ensemble=K, sketch="srht", sketch_size=q, ridge=lam,
                                  rng=np.random.default_rng(11))
        rng = np.random.default_rng(11)
        sketches = [E.draw_sketch("srht", n, q, rng) for _ in range(K)]
        bounds = []
        for sketch in sketches:
            S = sketch.dense()
            residue = x_star - S @ (S.T @ x_star)
            bounds.append(np.sqrt(residue @ H @ residue))
        diff = result.outputs["x"] - x_star
        energy = np.sqrt(diff @ H @ diff)
        rounding = 10 * n * cond * EPS * np.sqrt(x_star @ H @ x_star)
        assert energy <= np.mean(bounds) + rounding
        errors.append(np.linalg.norm(diff) / np.linalg.norm(x_star))
        assert result.status.reason == "converged_direct"
    assert errors[-1] <= 10 * n * cond * EPS
    assert errors[0] > 1e-3  # a sketch of 3 of 24 features is far from the exact ridge: the bound is not vacuous


def test_auto_includes_ridgeless_and_the_unsketched_ridge():
    """The lambda grid starts at 0; the q grid ends at n with one S = I member; the chosen point is the
    curve's minimum and x is the ensemble at it."""
    A, b = _problem(m=400, n=32, seed=8, noise=3.0)
    result = E.ridge_ensemble(A, b, ensemble=4, sketch="srht", sketch_size="auto", ridge="auto",
                              rng=np.random.default_rng(1))
    curve = result.info["gcv_curve"]
    assert curve["lambdas"][0] == 0.0 and curve["sketch_sizes"] == [2, 4, 8, 16, 32]
    assert curve["members"] == [4, 4, 4, 4, 1]
    table = np.array(curve["gcv"])
    i, j = np.unravel_index(np.argmin(table), table.shape)
    assert curve["chosen"] == {"lambda": curve["lambdas"][j], "sketch_size": curve["sketch_sizes"][i],
                               "gcv": table[i, j], "at_grid_edge": bool(j == table.shape[1] - 1)}
    assert result.metrics["ridge"] == curve["lambdas"][j] and result.metrics["member_normal_residual"] < 1e-13


def test_full_ridge_metrics_are_recomputed_from_the_data():
    A, b = _problem(seed=9)
    result = E.ridge_ensemble(A, b, ensemble=3, sketch="gaussian", sketch_size=10, ridge=2.0,
                              rng=np.random.default_rng(0))
    x = result.outputs["x"]
    grad = A.T @ (b - A @ x) - 2.0 * x
    assert result.metrics["ridge_gradient_norm"] == pytest.approx(np.linalg.norm(grad), rel=1e-12)
    # an ensemble of 10-of-30-feature sketches does not solve the full ridge problem
    assert result.metrics["full_ridge_normal_residual"] > 1e-6


def test_nonfinite_input_is_diverged_nan():
    A, b = _problem()
    A[3, 4] = np.nan
    result = E.ridge_ensemble(A, b, ensemble=2, rng=np.random.default_rng(0))
    assert result.status.reason == "diverged_nan"


# ----------------------------------------------------------------------------- through the API / CLI
def test_ensemble_one_is_todays_answer_bitwise():
    A, b = _problem(m=3000, n=40, seed=2)
    base = matcli.sketch_regress(A, b, method="precondition", ridge="auto", seed=3)
    one = matcli.sketch_regress(A, b, method="precondition", ridge="auto", seed=3, ensemble=1)
    assert np.array_equal(base["x"], one["x"]) and base.report["params"] == one.report["params"]
    assert base.method == one.method == "precondition"


def test_api_ensemble_is_deterministic_for_a_seed_and_reports_the_curve():
    A, b = _problem(m=500, n=24, seed=1)
    first = matcli.sketch_regress(A, b, ridge="auto", ensemble=3, sketch_size="auto", seed=9)
    again = matcli.sketch_regress(A, b, ridge="auto", ensemble=3, sketch_size="auto", seed=9)
    other = matcli.sketch_regress(A, b, ridge="auto", ensemble=3, sketch_size=6, seed=10)
    assert np.array_equal(first["x"], again["x"])
    assert first.method == "ridge-ensemble"
    curve = first.report["info"]["gcv_curve"]
    assert first.report["params"]["ridge"] == curve["chosen"]["lambda"]
    assert first.report["params"]["sketch_size"] == curve["chosen"]["sketch_size"]
    kernel = E.ridge_ensemble(A, b, ensemble=3, sketch="srht", sketch_size=6, ridge="auto",
                              rng=np.random.default_rng(10))
    assert np.array_equal(other["x"], kernel.outputs["x"])  # the runner's generator is default_rng(seed)


def test_float32_input_is_computed_in_float64():
    A, b = _problem(m=400, n=20, seed=5)
    A32, b32 = A.astype(np.float32), b.astype(np.float32)
    got = matcli.sketch_regress(A32, b32, ridge=0.5, ensemble=2, sketch_size=8, seed=4)
    want = E.ridge_ensemble(A32.astype(np.float64), b32.astype(np.float64), ensemble=2, sketch="srht",
                            sketch_size=8, ridge=0.5, rng=np.random.default_rng(4))
    assert got["x"].dtype == np.float64 and np.array_equal(got["x"], want.outputs["x"])


def test_wide_design_is_taken_and_q_equal_n_is_the_exact_minimum_norm_ridge():
    # feature sketches belong to n >> m; with q = n the srht member is an orthogonal change of basis,
    # so the ensemble is exactly A^T (A A^T + lambda I)^-1 b (the dual form of ridge)
    rng = np.random.default_rng(11)
    A = rng.standard_normal((40, 160))
    b = A @ (rng.standard_normal(160) / 10) + 0.1 * rng.standard_normal(40)
    got = matcli.sketch_regress(A, b, ridge=0.7, ensemble=3, sketch_size=160, seed=2)
    want = A.T @ np.linalg.solve(A @ A.T + 0.7 * np.eye(40), b)
    assert got.method == "ridge-ensemble" and got.report["status"]["converged"]
    assert np.linalg.norm(got["x"] - want) <= 1e3 * np.finfo(float).eps * np.linalg.cond(A @ A.T + 0.7 * np.eye(40)) * np.linalg.norm(want)
    sketched = matcli.sketch_regress(A, b, ridge="auto", ensemble=3, sketch_size=40, seed=2)
    assert sketched["x"].shape == (160,) and sketched.report["params"]["sketch_size"] == 40


@pytest.mark.parametrize("extra, words", [
    ({"eps": 0.1}, "--eps"),
    ({"method": "precondition"}, "--mode precondition"),
    ({"sketch": "leverage"}, "not a feature sketch"),
    ({"sketch_size": 41}, "exceeds the 40 columns"),
])
def test_options_the_ensemble_does_not_take_are_refused(extra, words):
    A, b = _problem(m=200, n=40)
    with pytest.raises(UsageError, match=words):
        matcli.sketch_regress(A, b, ensemble=2, **extra)


def test_sketch_size_auto_needs_an_ensemble():
    A, b = _problem(m=200, n=10)
    with pytest.raises(UsageError, match="--ensemble"):
        matcli.sketch_regress(A, b, sketch_size="auto")


def test_cli_plot_draws_the_gcv_curve(cli, tmp_path):
    pytest.importorskip("matplotlib")
    A, b = _problem(m=300, n=16, seed=2)
    np.save(tmp_path / "A.npy", A)
    np.save(tmp_path / "b.npy", b)
    png = tmp_path / "gcv.png"
    result = cli(["sketch-regress", tmp_path / "A.npy", tmp_path / "b.npy", "-o", tmp_path / "x.h5",
                  "--ensemble", "2", "--ridge", "auto", "--sketch-size", "auto", "--plot", png,
                  "--report", tmp_path / "r.json", "--seed", "1", "--quiet"])
    assert result.exit_code == 0, result.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["method"] == "ridge-ensemble" and report["outputs"]["plot"] == str(png)
    assert len(report["info"]["gcv_curve"]["gcv"]) == len(report["info"]["gcv_curve"]["sketch_sizes"])


# ----------------------------------------------------------------------------- --ensemble 1: the GCV curve in the report
def test_exact_ridge_auto_reports_its_gcv_curve_matching_the_dense_hat_matrix():
    """--mode lapack --ridge auto: info.gcv_curve holds the grid and GCV(lam) = m ||(I - H) b||^2 /
    (m - tr H)^2 with H = A (A^T A + lam I)^-1 A^T formed densely; the chosen point is its minimum."""
    A, b = _problem(m=200, n=15, seed=12)
    m, n = A.shape
    outcome = matcli.sketch_regress(A, b, method="lapack", ridge="auto")
    curve = outcome.report["info"]["gcv_curve"]
    lams, values = np.array(curve["lambdas"]), np.array(curve["gcv"][0])
    assert curve["sketch_sizes"] == [m] and curve["chosen"]["lambda"] == outcome.report["params"]["ridge"]
    assert curve["chosen"]["gcv"] == values.min() == outcome.report["info"]["ridge_auto"]["gcv"]
    tol = _tolerance(A)
    for j in range(0, lams.size, 40):
        H = A @ np.linalg.solve(A.T @ A + lams[j] * np.eye(n), A.T)
        r = b - H @ b
        want = m * (r @ r) / (m - np.trace(H)) ** 2
        assert abs(values[j] - want) <= tol * want


def test_sketched_ridge_auto_reports_its_curve_and_plot(cli, tmp_path):
    pytest.importorskip("matplotlib")
    A, b = _problem(m=3000, n=20, seed=13)
    np.save(tmp_path / "A.npy", A)
    np.save(tmp_path / "b.npy", b)
    png = tmp_path / "gcv.png"
    result = cli(["sketch-regress", tmp_path / "A.npy", tmp_path / "b.npy", "-o", tmp_path / "x.h5", "-m",
                  "sketch-and-solve", "--eps", "0.5", "--ridge", "auto", "--plot", png,
                  "--report", tmp_path / "r.json", "--quiet"])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "r.json").read_text())
    curve = report["info"]["gcv_curve"]
    assert curve["sketch_sizes"] == [report["params"]["sketch_size"]] and curve["sketch_side"].startswith("rows")
    assert min(curve["gcv"][0]) == curve["chosen"]["gcv"] and "curve" not in report["info"]["ridge_auto"]
    assert png.stat().st_size > 5000


def test_certified_status_is_about_the_members_not_the_full_ridge_problem():
    """The ensemble is certified by its members' sketched normal equations (what --ensemble asks for);
    the full ridge problem's gradient is reported, not required (an ensemble does not solve it)."""
    A, b = _problem(m=500, n=30, seed=14)
    outcome = matcli.sketch_regress(A, b, ensemble=3, ridge="auto", sketch_size=8, seed=1)
    checks = outcome.report["certificate"]["checks"]
    assert outcome.status == "converged_direct" and [c["check"] for c in checks] == ["member_normal_residual"]
    assert outcome.metrics["full_ridge_normal_residual"] > checks[0]["limit"]


def test_nan_in_a_mapped_hdf5_matrix_is_blamed_on_its_row(tmp_path):
    import h5py

    from matcli.core.errors import InputError

    A, b = _problem(m=300, n=12, seed=15)
    A[123, 4] = np.inf
    with h5py.File(tmp_path / "p.h5", "w") as fh:
        fh["A"], fh["b"] = A, b
    with pytest.raises(InputError, match="row 124"):
        matcli.sketch_regress(f"{tmp_path}/p.h5:/A", f"{tmp_path}/p.h5:/b", ensemble=2)


@pytest.mark.parametrize("q, lams", [(20, [0.0, 0.1, 10.0]), (60, [0.1, 10.0])])
def test_wide_design_gcv_matches_the_dense_smoother(q, lams):
    """n >> m (the regime where feature sketches should pay; bench_ridge's wide workload): A S is
    tall for q < m (the QR path) and wide for q > m (the SVD path, where lam = 0 interpolates and
    GCV is infinite, so it is left out). GCV and x match the dense smoother and the members' ridge
    solutions ``S_k pinv(S_k^T A^T A S_k + lam I) S_k^T A^T b`` (a bucket no feature fell in is a
    zero column of A S_k: the pseudo-inverse is the minimum-norm member the kernel computes)."""
    A, b = _problem(m=40, n=120, seed=7)
    rng = np.random.default_rng(8)
    sketches = [E.draw_sketch("countsketch", A.shape[1], q, rng) for _ in range(4)]
    members = [E.fit_member(sp.csr_matrix(A), b, sketch) for sketch in sketches]
    out = E.ensemble_gcv(sp.csr_matrix(A), b, members, np.array(lams))
    tol = _tolerance(A)
    for j, lam in enumerate(lams):
        assert abs(out["gcv"][j] - _dense_gcv(A, b, sketches, lam)) <= tol * out["gcv"][j]
        want = np.mean([S @ np.linalg.pinv((A @ S).T @ (A @ S) + lam * np.eye(q)) @ (A @ S).T @ b
                        for S in (sketch.dense() for sketch in sketches)], axis=0)
        np.testing.assert_allclose(out["coefficients"][:, j], want, rtol=0, atol=tol * np.linalg.norm(want))
