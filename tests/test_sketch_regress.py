"""Sketched least-squares kernels against numpy.linalg.lstsq and exact constructions."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from matcli.core.result import Status
from matcli.methods.sketch.regress import MODES, InMemoryProblem, cgls, expected_condition, solve_sketched
from matcli.methods.sketch.ridge import gcv_curve
from matcli.methods.sketch.sketches import SKETCH_KINDS, STREAMABLE_KINDS
from matcli.methods.sketch.streaming import RowStreamProblem

EPS = np.finfo(float).eps


def tall_problem(m, n, cond, heavy, noise, seed):
    """A = U diag(s) V^T with s log-spaced from 1 to 1/cond, ``heavy`` rows scaled by 1e3 (coherence),
    b = A x_true + noise * ||A x_true|| / sqrt(m) * gaussian."""
    rng = np.random.default_rng(seed)
    U, _ = np.linalg.qr(rng.standard_normal((m, n)))
    V, _ = np.linalg.qr(rng.standard_normal((n, n)))
    A = (U * np.logspace(0, -np.log10(cond), n)) @ V.T
    A[:heavy] *= 1e3
    Ax = A @ rng.standard_normal(n)
    b = Ax + noise * np.linalg.norm(Ax) / np.sqrt(m) * rng.standard_normal(m)
    return A, b


def sparse_problem(m, n, seed):
    rng = np.random.default_rng(seed)
    A = sp.random(m, n, density=0.02, format="csr", random_state=rng) + sp.vstack(
        [sp.identity(n, format="csr"), sp.csr_matrix((m - n, n))])
    b = rng.standard_normal(m)
    return A.tocsr(), b


def reference(A, b):
    dense = A.toarray() if sp.issparse(A) else A
    x, *_ = np.linalg.lstsq(dense, b, rcond=None)
    s = np.linalg.svd(dense, compute_uv=False)
    return x, float(np.linalg.norm(b - dense @ x)), s


def residual_slack(A, b, x_ref, s):
    """Rounding in evaluating ||b - Ax|| for two accurate solutions: n eps ||A|| ||x|| / ||r||,
    plus the perturbation of the optimum by backward errors of size eps: (eps cond)^2."""
    dense = A.toarray() if sp.issparse(A) else A
    r = np.linalg.norm(b - dense @ x_ref)
    n = dense.shape[1]
    return 10 * n * EPS * s[0] * np.linalg.norm(x_ref) / r + (EPS * s[0] / s[-1]) ** 2


PROBLEMS = {
    "dense-well": lambda: tall_problem(3000, 40, 1e2, 0, 1e-2, 1),
    "dense-cond1e10-heavy": lambda: tall_problem(3000, 40, 1e10, 4, 1e-3, 2),
    "sparse": lambda: sparse_problem(4000, 60, 3),
}


#: Problems with rows of leverage near 1 (scaled rows; the sparse one stacks an identity on top).
COHERENT = {"dense-cond1e10-heavy", "sparse"}


@pytest.fixture(scope="module", params=list(PROBLEMS))
def problem(request):
    A, b = PROBLEMS[request.param]()
    return request.param, A, b, *reference(A, b)


@pytest.mark.parametrize("sketch", ["auto", *SKETCH_KINDS])
@pytest.mark.parametrize("mode", ["precondition", "refine"])
def test_iterative_modes_reach_the_optimal_residual(problem, mode, sketch):
    name, A, b, x_ref, r_ref, s = problem
    res = solve_sketched(A, b, mode=mode, sketch=sketch, rtol=1e-12, rng=np.random.default_rng(4))
    assert res.status.converged, res.message
    x = res.outputs["x"]
    r = np.linalg.norm(b - A @ x)
    assert r <= r_ref * (1 + residual_slack(A, b, x_ref, s))
    assert res.metrics["residual_norm"] == pytest.approx(r, rel=1e-12)
    assert res.metrics["relative_residual"] == pytest.approx(r / np.linalg.norm(b), rel=1e-12)
    # the preconditioned system is well conditioned whatever cond(A) is
    assert res.metrics["preconditioned_condition_estimate"] < 10
    assert res.metrics["condition_estimate"] == pytest.approx(s[0] / s[-1], rel=1.0)


@pytest.mark.parametrize("sketch", SKETCH_KINDS)
def test_sketch_and_solve_is_within_one_plus_eps(problem, sketch):
    """The default d keeps a Gaussian sketch's residual ratio within 1 + eps three standard deviations
    out (default_sketch_size). Every one of 5 draws must be within 1 + eps, except CountSketch on
    coherent matrices, whose heavy rows collide with probability about k^2 / (2 d): there only the
    median, within 1 + 1.5 eps."""
    name, A, b, x_ref, r_ref, s = problem
    eps = 0.1
    ratios = []
    for seed in range(5):
        res = solve_sketched(A, b, mode="sketch-and-solve", sketch=sketch, eps=eps,
                             rng=np.random.default_rng(seed))
        assert res.status == Status.CONVERGED_DIRECT and res.iterations == 0
        ratios.append(np.linalg.norm(b - A @ res.outputs["x"]) / r_ref)
        assert res.metrics["residual_ratio_estimate"] >= 1.0
    n = A.shape[1]
    requested = n * (1 + 1 / ((1 + eps) ** 2 - 1))  # the mean alone at 1 + eps: the least d may be
    # leverage sampling keeps a random number of rows with mean <= d
    assert res.metrics["sketch_size"] >= (0.8 if sketch == "leverage" else 1.0) * requested
    assert min(ratios) >= 1 - residual_slack(A, b, x_ref, s)
    if sketch == "countsketch" and name in COHERENT:
        assert np.median(ratios) <= 1 + 1.5 * eps, ratios
    else:
        assert max(ratios) <= 1 + eps, ratios


def test_refine_is_forward_accurate_like_lstsq_on_ill_conditioned_problem():
    """Forward error of a backward-stable solver: cond * eps + cond^2 * eps * ||r|| / (||A|| ||x||)."""
    A, b = tall_problem(3000, 40, 1e10, 4, 1e-3, 7)
    x_ref, r_ref, s = reference(A, b)
    cond = s[0] / s[-1]
    bound = 40 * EPS * (cond + cond**2 * r_ref / (s[0] * np.linalg.norm(x_ref)))
    res = solve_sketched(A, b, mode="refine", rtol=1e-14, rng=np.random.default_rng(8))
    x = res.outputs["x"]
    assert np.linalg.norm(x - x_ref) / np.linalg.norm(x_ref) <= bound
    assert res.metrics["backward_error_estimate"] <= 10 * A.shape[1] * EPS
    assert len(res.info["solves"]) == 3


@pytest.mark.parametrize("sparse", [False, True])
def test_streaming_rows_give_the_in_memory_answer(sparse):
    A, b = tall_problem(6000, 20, 1e4, 2, 1e-2, 9)
    if sparse:  # half the entries zeroed: CSR blocks, scattered into the sketch
        A = sp.csr_matrix(A * (np.random.default_rng(10).random(A.shape) < 0.5))
    for sketch in STREAMABLE_KINDS:
        # the same sketch size (streaming's default is larger than in memory)
        whole = solve_sketched(A, b, mode="precondition", sketch=sketch, sketch_size=608,
                               rng=np.random.default_rng(1))
        problem = RowStreamProblem(lambda: (A[i:i + 700] for i in range(0, 6000, 700)), A.shape, b, sparse=sparse)
        streamed = solve_sketched(problem, mode="precondition", sketch=sketch, sketch_size=608,
                                  rng=np.random.default_rng(1))
        # same sketch, different summation order: the answers agree to cond(A) * rtol
        np.testing.assert_allclose(streamed.outputs["x"], whole.outputs["x"], rtol=1e4 * 1e-10)
        # passes: sketch, residual-and-gradient before and after CGLS, one per CGLS iteration
        # (A p and A^T A p fused), and two more for leverage scores
        assert streamed.info["streaming"] and problem.passes == streamed.iterations + 3 + (sketch == "leverage") * 2


def test_streaming_sketch_is_larger_than_in_memory():
    """Every streamed iteration reads the file again: the default sketch has 100 n rows instead of 30 n
    (fewer iterations), except a Gaussian one, which costs d nnz(A) (4 n)."""
    A, b = tall_problem(30000, 20, 1e4, 2, 1e-2, 11)
    problem = RowStreamProblem(lambda: (A[i:i + 4000] for i in range(0, 30000, 4000)), A.shape, b)
    streamed = solve_sketched(problem, rtol=1e-12, rng=np.random.default_rng(2))
    whole = solve_sketched(A, b, rtol=1e-12, rng=np.random.default_rng(2))
    assert streamed.metrics["sketch_size"] == 2008 and whole.metrics["sketch_size"] == 608
    assert streamed.iterations < whole.iterations
    gaussian = solve_sketched(problem, sketch="gaussian", rtol=1e-12, rng=np.random.default_rng(2))
    assert gaussian.metrics["sketch_size"] == 88 and gaussian.status.converged


def test_streaming_rejects_srht_and_bad_blocks():
    A, b = tall_problem(500, 5, 10, 0, 0.1, 10)
    problem = RowStreamProblem(lambda: iter([A[:200], A[200:]]), A.shape, b)
    with pytest.raises(ValueError, match="streaming"):
        solve_sketched(problem, sketch="srht", rng=np.random.default_rng(0))
    short = RowStreamProblem(lambda: iter([A[:200]]), A.shape, b)
    with pytest.raises(ValueError, match="ended after 200"):
        solve_sketched(short, rng=np.random.default_rng(0))


@pytest.mark.parametrize("mode", MODES)
def test_ridge_matches_the_augmented_least_squares_solution(mode):
    A, b = tall_problem(2000, 30, 1e6, 0, 0.1, 11)
    lam = 1e-4
    aug = np.vstack([A, np.sqrt(lam) * np.eye(30)])
    x_ref, *_ = np.linalg.lstsq(aug, np.concatenate([b, np.zeros(30)]), rcond=None)
    f_ref = np.linalg.norm(aug @ x_ref - np.concatenate([b, np.zeros(30)]))
    eps = {"eps": 0.05} if mode == "sketch-and-solve" else {}
    res = solve_sketched(A, b, mode=mode, ridge=lam, rtol=1e-12, rng=np.random.default_rng(12), **eps)
    x = res.outputs["x"]
    f = np.sqrt(np.linalg.norm(A @ x - b) ** 2 + lam * x @ x)
    if mode == "sketch-and-solve":
        assert f <= f_ref * (1 + 3 * 0.05)
    else:
        assert f <= f_ref * (1 + 1e-12)
        # forward error <= cond(aug) * (LSQR tolerance + rounding)
        cond = np.linalg.cond(aug)
        assert np.linalg.norm(x - x_ref) <= 10 * cond * (1e-12 + 30 * EPS) * np.linalg.norm(x_ref)
    assert res.metrics["ridge"] == lam


def test_ridge_auto_nearly_minimises_the_exact_gcv():
    """Sketched GCV approximates full GCV to relative error ~ sqrt(n/d); its minimiser must have full
    GCV within (1 + 2 sqrt(n/d)) of the full-GCV minimum."""
    rng = np.random.default_rng(13)
    m, n = 4000, 30
    A = rng.standard_normal((m, n)) * np.logspace(0, -3, n)
    x_true = rng.standard_normal(n)
    b = A @ x_true + 0.05 * rng.standard_normal(m)
    res = solve_sketched(A, b, mode="precondition", ridge="auto", rng=np.random.default_rng(14))
    lam = res.metrics["ridge"]
    U, s, Vt = np.linalg.svd(A, full_matrices=False)
    z = U.T @ b
    outside = b @ b - z @ z
    grid = np.logspace(-12, 2, 2000) * s[0] ** 2
    full = gcv_curve(grid, s, z, outside, m)
    mine = gcv_curve(np.array([lam]), s, z, outside, m)[0]
    d = res.metrics["sketch_size"]
    assert mine <= full.min() * (1 + 2 * np.sqrt(n / d))
    assert res.info["ridge_auto"]["effective_dof"] <= n


def test_consistent_system_is_solved_to_rtol():
    rng = np.random.default_rng(15)
    A = rng.standard_normal((2000, 25))
    x_true = rng.standard_normal(25)
    res = solve_sketched(A, A @ x_true, mode="precondition", rtol=1e-12, rng=np.random.default_rng(0))
    assert res.status.converged
    np.testing.assert_allclose(res.outputs["x"], x_true, rtol=1e-10)


@pytest.mark.parametrize("mode", ["precondition", "refine"])
@pytest.mark.parametrize("eps", [1e-2, 1e-8])
def test_eps_stops_once_the_residual_is_provably_within_one_plus_eps(problem, mode, eps):
    """With eps, CGLS stops on the a-posteriori bound ||M^T r|| / sigma_min(M) instead of the optimality
    test (rtol 0 disables the test for consistent systems): the residual must be within 1 + eps, and
    the reported estimate must bound the true ratio."""
    name, A, b, x_ref, r_ref, s = problem
    res = solve_sketched(A, b, mode=mode, eps=eps, rtol=0.0, rng=np.random.default_rng(5))
    assert res.status.converged, res.message
    slack = residual_slack(A, b, x_ref, s)
    ratio = np.linalg.norm(b - A @ res.outputs["x"]) / r_ref
    assert ratio <= (1 + eps) * (1 + slack)
    assert ratio * (1 - slack) <= res.metrics["residual_ratio_estimate"] <= 1 + eps
    assert res.metrics["sketch_size"] == solve_sketched(A, b, mode=mode, rtol=1e-12, rng=np.random.default_rng(5)
                                                        ).metrics["sketch_size"]  # eps sizes sketch-and-solve only


def test_a_loose_eps_takes_fewer_iterations_than_a_tight_one():
    A, b = tall_problem(3000, 40, 1e6, 3, 1e-2, 19)
    iterations = [solve_sketched(A, b, eps=eps, rng=np.random.default_rng(0)).iterations for eps in (1e-2, 1e-12)]
    # convergence at rate ~ sqrt(n/d) = 0.18 per iteration: 1e-2 vs 1e-12 is about 5 orders of ||A e||
    assert iterations[0] + 4 <= iterations[1]


def test_eps_target_missed_on_recomputation_restarts_then_gives_up(monkeypatch):
    """The recurrences can claim the target before the recomputed residual meets it: the solve goes on
    from the recomputed residual (twice at most), then reports the target unreachable."""
    from matcli.methods.sketch import regress

    A, b = tall_problem(3000, 40, 1e6, 3, 1e-2, 20)
    x_ref, r_ref, s = reference(A, b)
    genuine = regress._within_ratio
    calls = []

    def premature_once(*args):
        calls.append(1)
        return len(calls) == 1 or genuine(*args)

    monkeypatch.setattr(regress, "_within_ratio", premature_once)
    res = solve_sketched(A, b, eps=1e-10, rng=np.random.default_rng(0))
    assert res.status.converged, res.message
    assert [step["status"] for step in res.info["solves"]] == ["target_missed_on_recomputation", "converged_rtol"]
    assert res.info["solves"][0]["iterations"] == 1
    assert np.linalg.norm(b - A @ res.outputs["x"]) <= r_ref * (1 + 1e-10 + residual_slack(A, b, x_ref, s))

    monkeypatch.setattr(regress, "_within_ratio", lambda *args: True)
    res = solve_sketched(A, b, eps=1e-10, rng=np.random.default_rng(0))
    assert res.status == Status.DIVERGED_TOLERANCE_UNREACHABLE and "provably" in res.message
    assert len(res.info["solves"]) == 3 and res.iterations == 3
    assert res.metrics["residual_ratio_estimate"] > 1 + 1e-10


def test_eps_on_a_consistent_system_stops_by_rtol():
    rng = np.random.default_rng(15)
    A = rng.standard_normal((2000, 25))
    x_true = rng.standard_normal(25)
    res = solve_sketched(A, A @ x_true, eps=1e-6, rtol=1e-12, rng=np.random.default_rng(0))
    assert res.status == Status.CONVERGED_ATOL, res.message
    np.testing.assert_allclose(res.outputs["x"], x_true, rtol=1e-10)


def test_zero_right_hand_side_gives_zero():
    A = np.random.default_rng(16).standard_normal((300, 10))
    for mode in MODES:
        res = solve_sketched(A, np.zeros(300), mode=mode, rng=np.random.default_rng(0))
        assert res.status.converged
        assert not res.outputs["x"].any()


def test_rank_deficient_matrix_still_reaches_the_least_squares_residual():
    rng = np.random.default_rng(17)
    B = rng.standard_normal((1500, 12))
    A = np.hstack([B, B[:, :3]])  # rank 12 of 15
    b = rng.standard_normal(1500)
    x_ref, r_ref, s = reference(A, b)
    res = solve_sketched(A, b, mode="precondition", rtol=1e-12, rng=np.random.default_rng(0))
    assert res.info.get("rank_deficient")
    assert np.linalg.norm(b - A @ res.outputs["x"]) <= r_ref * (1 + 1e-10)


def test_maxiter_reached_is_a_negative_status():
    A, b = tall_problem(2000, 40, 1e8, 0, 1e-3, 18)
    res = solve_sketched(A, b, mode="precondition", sketch_size=41, sketch="countsketch", rtol=1e-15,
                         maxiter=2, rng=np.random.default_rng(0))
    assert res.status == Status.DIVERGED_MAX_IT and res.iterations == 2


def test_invalid_options_raise():
    A = np.ones((10, 20))
    with pytest.raises(ValueError, match="tall"):
        solve_sketched(A, np.ones(10), rng=np.random.default_rng(0))
    A = np.random.default_rng(0).standard_normal((50, 5))
    with pytest.raises(ValueError, match="between"):
        solve_sketched(A, np.ones(50), sketch_size=3, rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match="unknown mode"):
        solve_sketched(A, np.ones(50), mode="fast", rng=np.random.default_rng(0))


@pytest.mark.parametrize("sparse", [False, True])
def test_cgls_matches_scipy_lsqr_on_a_plain_matrix(sparse):
    from scipy.sparse.linalg import lsqr as scipy_lsqr

    rng = np.random.default_rng(19)
    M = rng.standard_normal((3000, 30)) @ np.diag(np.logspace(0, -2, 30))
    M = sp.csr_matrix(M) if sparse else M
    rhs = rng.standard_normal(3000)
    problem = InMemoryProblem(M, rhs)
    seen = []
    out = cgls(problem.normal_product, rhs, M.T @ rhs, 30, rtol=1e-12, maxiter=500,
               bnorm=np.linalg.norm(rhs), callback=lambda k, **v: seen.append(k))
    ref = scipy_lsqr(M, rhs, atol=1e-12, btol=1e-12, iter_lim=1000)[0]
    # both stop at ||M^T r|| <= 1e-12 ||M||_F ||r||: solutions agree to ~1e-12 cond(M)^2 relative
    np.testing.assert_allclose(out.y, ref, rtol=1e-7)
    assert out.status.converged and seen == list(range(1, out.iterations + 1))
    smax, smin = np.linalg.svd(M.toarray() if sparse else M, compute_uv=False)[[0, -1]]
    # Ritz values of a converged Krylov run bracket, and here reach, the extreme singular values
    assert out.singular_range[0] == pytest.approx(smax, rel=1e-6)
    assert out.singular_range[1] == pytest.approx(smin, rel=1e-3)
    zero = cgls(problem.normal_product, np.zeros(3000), np.zeros(30), 30, rtol=1e-12, maxiter=5, bnorm=0.0,
                callback=lambda k, **v: None)
    assert zero.status == Status.CONVERGED_ZERO_RHS and not zero.y.any()


@pytest.mark.parametrize("cond, path", [(1e2, "cholesky"), (1e9, "householder")])
def test_large_n_triangular_preconditioner_paths(cond, path):
    """n > 1000 skips the SVD of R: CholeskyQR of the sketch when it is well conditioned, else
    Householder QR; both must reach the known optimal residual (gallery problem, r* orthogonal
    to range(A)) up to the rounding slack n eps cond ||A|| ||x|| / ||r*||."""
    from matcli.gallery import regression_problem
    from matcli.methods.sketch import regress

    m, n, d = 2000, 1010, 1600
    arrays = regression_problem(m, n, cond, 0, 1e-2, np.random.default_rng(21))
    A, b, r_opt = arrays["A"], arrays["b"], float(arrays["optimal_residual"])
    S = regress.make_sketch("sparse-sign", m, d, np.random.default_rng(0))
    SA, Sb = S.apply(A), S.apply(b)
    assert not regress.factor_sketch(SA, Sb).has_svd
    assert (regress._cholesky_factor(SA, Sb) is None) == (path == "householder")
    res = solve_sketched(A, b, mode="precondition", rtol=1e-12, sketch_size=d, rng=np.random.default_rng(0))
    assert res.status.converged
    slack = 10 * n * EPS * cond * np.linalg.norm(arrays["x_true"]) / r_opt
    assert np.linalg.norm(b - A @ res.outputs["x"]) <= r_opt * (1 + slack)


def test_square_matrix_with_leverage_sampling_keeps_enough_rows():
    """Bernoulli sampling of a square matrix can draw fewer than n rows; it must fall back to all rows."""
    rng = np.random.default_rng(22)
    A = rng.standard_normal((30, 30))
    b = rng.standard_normal(30)
    for mode in MODES:
        res = solve_sketched(A, b, mode=mode, sketch="leverage", rtol=1e-12, rng=np.random.default_rng(0))
        assert res.status.converged
        np.testing.assert_allclose(A @ res.outputs["x"], b, atol=1e-8 * np.linalg.cond(A) * np.linalg.norm(b))


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_fused_residual_and_gradient_match_plain_products(threads):
    from matcli.methods.sketch import regress
    from matcli.threads import thread_limit

    rng = np.random.default_rng(30)
    m, n = 5003, 9
    A, b, x = rng.standard_normal((m, n)), rng.standard_normal(m), rng.standard_normal(n)
    problem = regress.InMemoryProblem(A, b)
    original = regress._FUSED_BLOCK_BYTES
    regress._FUSED_BLOCK_BYTES = 8 * n * 100  # 100-row blocks: the last one partial, spans cut across threads
    try:
        with thread_limit(threads):
            r, g = problem.residual_and_gradient(x)
            t, h = problem.normal_product(x)
    finally:
        regress._FUSED_BLOCK_BYTES = original
    # rounding of the products, summed in another order: a few eps times the sum of |terms|
    # (a length-m sum grows like sqrt(m) eps in the worst realistic case, m eps at most)
    r_ref, t_ref = b - A @ x, A @ x
    tol = 4 * np.finfo(float).eps * np.sqrt(m)
    assert np.all(np.abs(r - r_ref) <= tol * (np.abs(b) + np.abs(A) @ np.abs(x)))
    assert np.all(np.abs(t - t_ref) <= tol * (np.abs(A) @ np.abs(x)))
    assert np.all(np.abs(g - A.T @ r_ref) <= 2 * tol * (np.abs(A).T @ np.abs(r_ref)))
    assert np.all(np.abs(h - A.T @ t_ref) <= 2 * tol * (np.abs(A).T @ np.abs(t_ref)))


def test_iterative_sketch_size_keeps_a_sparse_matrix_sketch_cache_sized():
    from matcli.methods.sketch.regress import default_sketch_size

    m = 10**6
    for n in (50, 300, 1000, 3000):
        dense, sparse = (default_sketch_size("precondition", m, n, 0.1, sparse=s) for s in (False, True))
        assert 2 * n <= sparse <= dense <= 30 * n + 8
        # d = ceil(factor n) + 8 with factor n^2 <= the budget, unless the floor of 2 n applies
        assert (sparse - 9) * n <= max(1.0e6, 2 * n * n) and (dense - 9) * n <= max(4.0e6, 2 * n * n)
    rng = np.random.default_rng(40)
    A = sp.random(20000, 300, density=0.01, format="csr", random_state=rng)
    res = solve_sketched(A, rng.standard_normal(20000), rtol=1e-8, rng=rng)
    assert res.metrics["sketch_size"] == default_sketch_size("precondition", 20000, 300, 0.1, sparse=True) < 20 * 300


def coherent_problem(m=40000, n=200, seed=41):
    """n rows of leverage ~1 (a unit-scaled identity block spread over the rows) above a 1e-3 background."""
    rng = np.random.default_rng(seed)
    A = 1e-3 * rng.standard_normal((m, n))
    A[np.arange(n) * (m // n), np.arange(n)] = 1.0
    b = A @ rng.standard_normal(n) + 1e-3 * rng.standard_normal(m)
    return A, b


def test_auto_sketch_keeps_countsketch_when_the_ritz_values_vouch_for_it():
    A, b = tall_problem(20000, 50, 1e6, 0, 1e-2, 42)
    x_ref, r_ref, s = reference(A, b)
    res = solve_sketched(A, b, rtol=1e-12, rng=np.random.default_rng(43))
    assert res.info["sketch"] == "countsketch" and "Ritz" in res.info["sketch_choice"]
    assert np.linalg.norm(b - A @ res.outputs["x"]) <= r_ref * (1 + residual_slack(A, b, x_ref, s))
    assert res.metrics["preconditioned_condition_estimate"] < 2 * (1 + np.sqrt(50 / 1008)) / (1 - np.sqrt(50 / 1008))


def test_auto_sketch_re_sketches_when_heavy_rows_collide():
    # 200 heavy rows in d = 6008 buckets: about 200^2 / (2 d) = 3.3 colliding pairs, each leaving a
    # direction the sketch sees only through the background (norm 1e-3 sqrt(m) = 0.2 against 1)
    A, b = coherent_problem()
    x_ref, r_ref, s = reference(A, b)
    res = solve_sketched(A, b, rtol=1e-12, rng=np.random.default_rng(44))
    assert res.status.converged, res.message
    assert res.info["sketch"] == "sparse-sign" and "re-sketched" in res.info["sketch_choice"]
    assert res.info["solves"][0]["status"] == "poorly_preconditioned"
    assert res.info["solves"][0]["iterations"] == 3
    assert res.iterations == sum(step["iterations"] for step in res.info["solves"])
    assert np.linalg.norm(b - A @ res.outputs["x"]) <= r_ref * (1 + residual_slack(A, b, x_ref, s))
    # the condition estimate reported is the sparse-sign preconditioner's, not the rejected one's
    assert res.metrics["preconditioned_condition_estimate"] < 10
    # streamed in row blocks with the in-memory sketch size (streaming's default is 100 n): the same
    # choice and answer, one more pass for the second sketch
    problem = RowStreamProblem(lambda: (A[i:i + 5000] for i in range(0, A.shape[0], 5000)), A.shape, b)
    streamed = solve_sketched(problem, rtol=1e-12, sketch_size=6008, rng=np.random.default_rng(44))
    assert streamed.info["sketch"] == "sparse-sign" and streamed.iterations == res.iterations
    assert problem.passes == streamed.iterations + 3 + 2  # + the rejected sketch and its warm start
    np.testing.assert_allclose(streamed.outputs["x"], res.outputs["x"], rtol=1e-8, atol=1e-8 * np.abs(x_ref).max())
    # CountSketch forced on the same problem: the collisions show in the preconditioned condition number,
    # above the limit auto applies (twice the 1.44 of an embedding with d = 30 n)
    forced = solve_sketched(A, b, sketch="countsketch", rtol=1e-12, rng=np.random.default_rng(44))
    assert forced.metrics["sketch_size"] == 6008
    assert forced.metrics["preconditioned_condition_estimate"] > 2 * expected_condition(6008, 200)


def test_cgls_check_stops_on_an_outlying_singular_value():
    rng = np.random.default_rng(45)
    Q, _ = np.linalg.qr(rng.standard_normal((300, 20)))
    M = Q * np.r_[np.linspace(1.0, 2.0, 19), 100.0]  # one outlying singular value
    rhs = rng.standard_normal(300)

    def normal(p):
        q = M @ p
        return q, M.T @ q

    out = cgls(normal, rhs, M.T @ rhs, 20, rtol=1e-12, maxiter=100, bnorm=np.linalg.norm(rhs),
               callback=lambda *a, **k: None, check=(3, 10.0))
    # after 3 Lanczos steps the largest Ritz value has found the outlier, the smallest is inside [1, 2]
    assert out.iterations == 3 and 50.0 <= out.poor_conditioning <= 100.0
    clean = cgls(normal, rhs, M.T @ rhs, 20, rtol=1e-12, maxiter=100, bnorm=np.linalg.norm(rhs),
                 callback=lambda *a, **k: None, check=(3, 200.0))
    assert clean.poor_conditioning is None and clean.status.converged


@pytest.mark.parametrize("sparse", [False, True])
def test_row_norms_of_a_times_m_in_row_blocks(sparse):
    """Leverage-score estimates: squared row norms of A M, formed 65536 rows at a time (no m x k product)."""
    rng = np.random.default_rng(12)
    A = rng.standard_normal((70_000, 6))
    if sparse:
        A = sp.csr_matrix(A * (rng.random(A.shape) < 0.4))
    M = rng.standard_normal((6, 3))
    AM = A @ M
    np.testing.assert_allclose(InMemoryProblem(A, np.ones(70_000)).row_norms2(M), (AM**2).sum(axis=1), rtol=1e-12)
