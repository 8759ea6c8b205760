"""Direct solvers judge singularity the way LAPACK does (issue #17).

The acceptance test of a solve is LAPACK TESTING's ratio (xGET02 scaled by n, threshold 30 as in
dchkge): ``||b - A x||_1 / (||A||_1 ||x||_1 eps n) < 30``, recomputed here from the written solution
with numpy. A matrix is singular only when a pivot is exactly zero or the refined solution fails that
test or is dominated by near-null directions (``n eps ||A|| ||x|| >= ||b||``); a tiny relative pivot
of a badly scaled matrix is not singularity. Every square matrix of the shared data runs through
``auto`` (end to end) and each direct method that applies, with b = A x_true for a seeded x_true.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from conftest import data_file, shared_data_dir, solve_outputs
from matcli.core.result import Status
from matcli.io.hdf5 import write_arrays
from matcli.io.mtx import read_mtx
from matcli.methods.solve import direct, equilibrate, solvers
from matcli.methods.solve.system import as_matrix

EPS = np.finfo(float).eps
RATIO = 30.0
#: The files SuperLU with partial pivoting meets an exactly zero pivot on: the manifest says "singular
#: (LU failed)" for GD99_cc and zenios; the pattern files (all values 1) are exactly singular too.
EXACTLY_SINGULAR = {"GD99_cc.mtx", "zenios.mtx", "bcspwr10.mtx", "dwt_992.mtx", "rajat01_pattern.mtx"}
#: Symmetric files that are not positive definite: indefinite (manifest kind sym-indef), a Neumann
#: Laplacian with a negative eigenvalue by rounding (amg_poisson1033: "1 negative eigs"), pattern
#: matrices (adjacency plus ones on the diagonal).
NOT_POSITIVE_DEFINITE = {"hangGlider_2.mtx", "reorientation_1.mtx", "zenios.mtx", "amg_poisson1033.mtx",
                         "pushpull.mtx", "bcspwr10.mtx", "dwt_992.mtx"}
#: Bunch-Kaufman LDL^T is a dense LAPACK factorization (O(n^3)); larger symmetric files would cost
#: seconds each, so ldl runs on the symmetric files up to this order (the method accepts up to 5000).
LDL_TEST_ORDER = 1000


def square_matrices() -> list[str]:
    """Every square matrix of the data folder's MANIFEST (real, complex, integer and pattern files)."""
    manifest = shared_data_dir() / "MANIFEST.tsv"
    names = []
    for line in manifest.read_text().splitlines()[1:]:
        fields = line.split("\t")
        if fields[0].startswith("matrices/") and fields[2] == fields[3]:
            names.append(fields[0].split("/", 1)[1])
    return sorted(names)


@lru_cache(maxsize=None)
def load(name: str):
    return as_matrix(sp.csr_matrix(read_mtx(str(data_file(f"matrices/{name}")))))


def x_true_for(A, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(A.shape[1])
    return x + 1j * rng.standard_normal(A.shape[1]) if np.iscomplexobj(A) else x


def lapack_ratio(A, x, b) -> float:
    """xGET02's ratio scaled by n, computed independently of matcli (sparse A stays sparse)."""
    r = b - A @ x
    xnorm = np.abs(x).sum()
    if not np.any(r):
        return 0.0
    norm_A = abs(A).sum(axis=0).max() if sp.issparse(A) else np.abs(A).sum(axis=0).max()
    return float(np.abs(r).sum() / (norm_A * xnorm * EPS * A.shape[0]))


def hermitian(A) -> bool:
    return abs(A - A.conj().T).max() <= 1e-12 * abs(A).max()


def run_solve(cli, tmp_path, matrix_path, b, *extra):
    """``matcli solve`` with ``b`` from an .npy file; returns (exit code, report, x or None)."""
    rhs = tmp_path / "b.npy"
    np.save(rhs, b)
    return solve_outputs(cli, tmp_path, [matrix_path, "--rhs", rhs, *extra])


# ---------------------------------------------------------------- the issue's matrix


def badly_scaled(k: int, seed: int = 0, span: float = 4.0):
    """D1 A0 D2 on a k x k grid (order k^2): A0 is a random nonsymmetric 5-point-stencil matrix made
    strictly diagonally dominant (1-norm condition about 12), D1 and D2 log-uniform in
    [10^-span, 10^span], so the entries span 1e-8..1e8 and the condition number is about 1e15."""
    rng = np.random.default_rng(seed)
    n = k * k
    T = sp.diags([np.ones(k - 1), np.ones(k - 1)], [-1, 1])
    pattern = (sp.kron(sp.eye(k), T) + sp.kron(T, sp.eye(k))).tocoo()
    off = sp.csr_matrix((rng.uniform(-1, 1, pattern.nnz), (pattern.row, pattern.col)), shape=(n, n))
    A0 = off + sp.diags(1.0 + np.asarray(abs(off).sum(axis=1)).ravel())
    r, c = 10.0 ** rng.uniform(-span, span, n), 10.0 ** rng.uniform(-span, span, n)
    return sp.csr_matrix(sp.diags(r) @ A0 @ sp.diags(c)), c


@pytest.fixture(scope="module")
def issue_matrix(tmp_path_factory):
    A, col_scale = badly_scaled(100)
    path = tmp_path_factory.mktemp("issue") / "scaled.h5"
    write_arrays(str(path), {"A": A})
    return A, path, col_scale


def test_the_issue_matrix_is_the_kind_the_pivot_threshold_called_singular(issue_matrix):
    A, _, _ = issue_matrix
    n = A.shape[0]
    lu = spla.splu(sp.csc_matrix(A), permc_spec="COLAMD")
    pivots = np.abs(lu.U.diagonal())
    # the old rule: singular when min |u_jj| <= n eps max |u_jj|
    assert pivots.min() / pivots.max() <= n * EPS
    fact = direct.factorize(A, "lu")
    assert fact.failure is None
    assert fact.info["equilibration"]["equed"] == "B"
    assert fact.info["min_pivot_ratio"] > 1e-8  # equilibrated pivots are of a well-conditioned matrix


@pytest.mark.parametrize("method", ["auto", "lu"])
def test_auto_and_lu_solve_the_badly_scaled_matrix_fast_and_right(cli, tmp_path, issue_matrix, method):
    """Order 1e4, condition ~1e15, raw relative pivots ~1e-16: declared singular before, and auto then ran
    an LSMR for minutes; the equilibrated LU solves it in a fraction of a second."""
    A, path, col_scale = issue_matrix
    x_true = x_true_for(A)
    b = A @ x_true
    result, report, x = run_solve(cli, tmp_path, f"{path}:/A", b, "-m", method, "--strict")
    assert result.exit_code == 0, result.stderr
    assert report["method"] == "lu" and report["status"]["reason"] == "converged_direct"
    assert lapack_ratio(A, x, b) < RATIO
    assert report["metrics"]["lapack_ratio"] < RATIO
    # x = D2^{-1} y where y solves (D1 A0) y = b, a row scaling of a system of condition ~12: y is
    # accurate to a small multiple of n eps (x itself only componentwise through y)
    y, y_true = col_scale * x, col_scale * x_true
    assert np.linalg.norm(y - y_true) / np.linalg.norm(y_true) < 1e-11
    assert report["phases"]["setup"]["wall_s"] + report["phases"]["compute"]["wall_s"] < 10.0


# ---------------------------------------------------------------- every square matrix


def direct_methods(A) -> list[str]:
    methods = ["lu"]
    if hermitian(A):
        methods.append("cholesky")
        if A.shape[0] <= LDL_TEST_ORDER:
            methods.append("ldl")
    return methods


@pytest.mark.parametrize("name", square_matrices())
def test_auto_on_every_square_matrix(cli, tmp_path, name):
    """b = A x_true. Where LU with equilibration gets a solution, auto is positive within the LAPACK
    ratio; on an exactly singular matrix it ends with a least-squares fallback (bounded), never an error,
    and a positive status only for an x that solves A x = b within the ratio."""
    A = load(name)
    b = A @ x_true_for(A)
    result, report, x = run_solve(cli, tmp_path, data_file(f"matrices/{name}"), b)
    assert result.exit_code == 0, result.stderr
    status = report["status"]
    if name in EXACTLY_SINGULAR:
        assert report["info"]["attempts"][-1]["method"] in ("lstsq", "lsmr")
        assert report["method"] in ("lstsq", "lsmr")
        if status["converged"]:
            assert lapack_ratio(A, x, b) < RATIO
        else:
            assert status["reason"] in ("least_squares_only", "diverged_max_it")
    else:
        assert report["method"] in ("lu", "cholesky"), report["method_reason"]
        assert status["converged"], status
        assert lapack_ratio(A, x, b) < RATIO


@pytest.mark.parametrize("name", square_matrices())
def test_each_direct_method_on_every_square_matrix(name):
    A = load(name)
    b = A @ x_true_for(A)
    for method in direct_methods(A):
        solver = getattr(solvers, f"prepare_{method}")(A, params={})
        result = solver.solve(A, b)
        if name in EXACTLY_SINGULAR:
            assert result.status in (Status.DIVERGED_SINGULAR, Status.DIVERGED_NOT_SPD), (method, result.status)
            assert "x" not in result.outputs
            continue
        if result.status == Status.DIVERGED_NOT_SPD:
            # Cholesky on a matrix with a negative eigenvalue (indefinite, or semidefinite by rounding)
            assert method == "cholesky" and name in NOT_POSITIVE_DEFINITE, name
            continue
        assert result.status == Status.CONVERGED_DIRECT, (method, result.message)
        assert lapack_ratio(A, result.outputs["x"], b) < RATIO, method


@pytest.mark.parametrize("name", ["amg_poisson1033.mtx", "amg_anisotropic3d7816.mtx"])
def test_singular_neumann_laplacian_with_an_inconsistent_rhs_is_not_solved(cli, tmp_path, name):
    """b = ones is (mostly) in the null space of a pure-Neumann Laplacian: LU's refined x has a LAPACK
    ratio ~1e-5 (backward stable!) but |x| ~ 1e16 and a residual larger than b. That x is dominated by
    the near-null direction; the status says singular, and auto's fallback is bounded and reported."""
    A = load(name)
    b = np.ones(A.shape[0])
    lu = solvers.prepare_lu(A, params={}).solve(A, b)
    assert lu.status == Status.DIVERGED_SINGULAR and "not in its range" in lu.message
    assert lu.metrics["relative_residual"] > 0.1  # the reason this x is no answer
    result, report, x = run_solve(cli, tmp_path, data_file(f"matrices/{name}"), b, "--strict")
    assert result.exit_code == 3, result.stderr
    assert not report["status"]["converged"]
    attempts = report["info"]["attempts"]
    assert attempts[-2]["outcome"] == "diverged_singular"
    assert attempts[-1]["method"] == report["method"] == "lsmr"
    assert attempts[-1]["iterations"] <= attempts[-1]["maxiter"]
    assert "iterations" in report["method_reason"] and "bounded" in report["method_reason"]
    # whatever LSMR reached within its bound, it is not the 1e16-sized x of the factorization
    assert np.abs(x).max() < 1e3


def test_exactly_singular_file_falls_back_within_the_bound(cli, tmp_path):
    """zenios (singular, LU fails on a zero pivot) with b = ones: LSMR capped at the minimum of 100
    iterations (the failed factorization reports no flops); the report lists both attempts in order."""
    A = load("zenios.mtx")
    result, report, _ = run_solve(cli, tmp_path, data_file("matrices/zenios.mtx"), np.ones(A.shape[0]))
    assert result.exit_code == 0, result.stderr
    attempts = report["info"]["attempts"]
    assert [a["method"] for a in attempts] == ["lu", "lsmr"]
    assert attempts[0]["outcome"] == "diverged_singular" and "zero pivot" in attempts[0]["message"]
    assert attempts[1]["maxiter"] == 100 and report["iterations"] <= 100
    assert report["status"]["reason"] in ("least_squares_only", "diverged_max_it")


# ---------------------------------------------------------------- kernels


def test_a_nonsingular_matrix_with_a_tiny_pivot_is_solved():
    """diag(1, 1e-20): the old test (min pivot <= n eps max pivot) called it singular."""
    for A in (np.diag([1.0, 1e-20]), sp.csr_matrix(np.diag([1.0, 1e-20]))):
        result = direct.solve_factored(A, direct.factorize(A, "lu"), np.array([1.0, 1e-20]))
        assert result.status == Status.CONVERGED_DIRECT
        np.testing.assert_allclose(result.outputs["x"], [1.0, 1.0], rtol=4 * EPS)


@pytest.mark.parametrize("storage", ["dense", "sparse"])
def test_exact_zero_pivot_is_singular_with_no_output(storage):
    A = np.array([[1.0, 2.0], [2.0, 4.0]])
    A = sp.csr_matrix(A) if storage == "sparse" else A
    for kind in ("lu", "ldl"):
        fact = direct.factorize(A, kind)
        assert fact.failure == Status.DIVERGED_SINGULAR, kind
        result = direct.solve_factored(A, fact, np.ones(2))
        assert result.status == Status.DIVERGED_SINGULAR and not result.outputs


def neumann_1d(n: int, seed: int = 0):
    """Weighted path-graph Laplacian: singular, null space = constants, range = vectors summing to 0.
    Random weights in [1, 2] leave a last pivot at rounding level instead of exactly zero (the case
    a pivot threshold is about); integer weights would give an exactly zero pivot."""
    w = np.random.default_rng(seed).uniform(1.0, 2.0, n - 1)
    main = np.zeros(n)
    main[:-1] += w
    main[1:] += w
    return sp.csr_matrix(sp.diags([-w, main, -w], [-1, 0, 1]))


@pytest.mark.parametrize("kind", ["lu", "ldl"])
def test_singular_matrix_consistent_rhs_is_solved_inconsistent_is_not(kind):
    A = neumann_1d(60)
    rng = np.random.default_rng(3)
    consistent = A @ rng.standard_normal(60)
    inconsistent = consistent + 1e-3 * np.linalg.norm(consistent)  # a constant: outside the range
    fact = direct.factorize(A, kind)
    assert fact.failure is None  # no exactly zero pivot: the decision is the solution's
    good = direct.solve_factored(A, fact, consistent)
    assert good.status == Status.CONVERGED_DIRECT
    assert lapack_ratio(A, good.outputs["x"], consistent) < RATIO
    bad = direct.solve_factored(A, fact, np.column_stack([consistent, inconsistent]))
    assert bad.status == Status.DIVERGED_SINGULAR and "1 of 2" in bad.message


def test_ill_conditioned_nonsingular_matrix_is_not_called_singular():
    """cond = 1e13 with a random b: x is dominated by the smallest singular direction, but n eps ||A|| ||x||
    stays far below ||b||; the solve is backward stable and must be reported as solved."""
    rng = np.random.default_rng(5)
    Q1, _ = np.linalg.qr(rng.standard_normal((80, 80)))
    Q2, _ = np.linalg.qr(rng.standard_normal((80, 80)))
    A = (Q1 * np.logspace(0, -13, 80)) @ Q2.T
    b = rng.standard_normal(80)
    result = direct.solve_factored(A, direct.factorize(A, "lu"), b)
    assert result.status == Status.CONVERGED_DIRECT
    assert lapack_ratio(A, result.outputs["x"], b) < RATIO


def test_refinement_recovers_backward_stability_from_a_perturbed_factorization():
    """Factors of A + E (||E|| ~ 1e-7 ||A||) give a backward error ~1e-7; each refinement step gains
    about 7 digits, so two or three steps reach the rounding level and the loop stops on its own."""
    rng = np.random.default_rng(7)
    A = rng.standard_normal((120, 120)) + 12 * np.eye(120)
    E = 1e-7 * np.linalg.norm(A, 1) * rng.standard_normal((120, 120)) / 120
    perturbed = direct.factorize(A + E, "lu")
    B = A @ rng.standard_normal((120, 3))
    X0 = perturbed.solve(B)
    X, steps, history = direct.refine_solution(A, perturbed.solve, B, X0.copy())
    assert history[0] > 1e-10
    assert history[-1] <= 4 * EPS
    assert 1 <= steps < direct.REFINE_STEPS
    assert max(lapack_ratio(A, X[:, j], B[:, j]) for j in range(3)) < RATIO


def test_refine_param_caps_the_steps():
    A, _ = badly_scaled(20)
    b = A @ x_true_for(A)
    fact = direct.factorize(A, "lu")
    one = direct.solve_factored(A, fact, b, refine=1)
    assert one.info["refinement"]["steps"] <= 1 and one.info["refinement"]["max_steps"] == 1
    default = direct.solve_factored(A, fact, b)
    assert default.info["refinement"]["max_steps"] == direct.REFINE_STEPS


# ---------------------------------------------------------------- equilibration


def test_general_equilibration_is_exact_and_balances_rows_and_columns():
    A, _ = badly_scaled(15, seed=2)
    s = equilibrate.general(A)
    assert s.equed == "B"
    for factor in (s.row, s.col):
        np.testing.assert_array_equal(np.exp2(np.round(np.log2(factor))), factor)  # powers of two
    scaled = abs(s.apply(A))
    col_max = np.asarray(scaled.max(axis=0).toarray()).ravel()
    assert np.all((col_max >= 0.5) & (col_max < 2.0))
    # scaling by powers of two is exact: R A C has the same bits as the entries scaled one by one
    np.testing.assert_array_equal(s.apply(A).toarray(), (s.row[:, None] * A.toarray()) * s.col[None, :])


def test_a_well_scaled_matrix_is_left_alone():
    A = sp.csr_matrix(np.array([[4.0, 1.0], [1.0, 3.0]]))
    assert equilibrate.general(A).equed == "N"
    assert equilibrate.positive_diagonal(A).equed == "N"
    assert equilibrate.symmetric(A).equed == "N"


def test_symmetric_scalings_keep_symmetry():
    rng = np.random.default_rng(4)
    d = 10.0 ** rng.uniform(-6, 6, 30)
    M = rng.standard_normal((30, 30))
    A = d[:, None] * (M + M.T + 70 * np.eye(30)) * d[None, :]
    A = (A + A.T) / 2  # exactly symmetric in floating point
    for s in (equilibrate.positive_diagonal(A), equilibrate.symmetric(A)):
        assert s.equed == "Y"
        As = s.apply(A)
        np.testing.assert_array_equal(As, As.T)
    x = x_true_for(A)
    for kind in ("cholesky", "ldl"):
        result = direct.solve_factored(A, direct.factorize(A, kind), A @ x)
        assert result.status == Status.CONVERGED_DIRECT
        assert lapack_ratio(A, result.outputs["x"], A @ x) < RATIO


# ---------------------------------------------------------------- small dense least squares


def test_auto_gives_small_dense_least_squares_to_lapack(cli, tmp_path):
    """scipy's TestLstsq 20x15 case: LSMR at its default atol 1e-8 was 1e-11 off; LAPACK is within
    scipy's 25 eps of the normal-equations solution, and the report says why it was chosen."""
    rng = np.random.RandomState(1234)
    a = rng.random_sample((20, 15))
    a[np.arange(15), np.arange(15)] = 20 * (0.1 + a[np.arange(15), np.arange(15)])
    b = rng.random_sample(20)
    path = tmp_path / "ls.h5"
    write_arrays(str(path), {"A": a})
    result, report, x = run_solve(cli, tmp_path, f"{path}:/A", b, "--strict")
    assert result.exit_code == 0, result.stderr
    assert report["method"] == "lstsq" and "LAPACK" in report["method_reason"]
    reference = np.linalg.solve(a.T @ a, a.T @ b)
    np.testing.assert_allclose(x, reference, rtol=25 * EPS, atol=25 * EPS)


def test_auto_singular_small_system_gets_the_lapack_minimum_norm_solution(cli, tmp_path):
    A = np.array([[1.0, 1.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 2.0]])
    path = tmp_path / "s.h5"
    write_arrays(str(path), {"A": sp.csr_matrix(A)})
    for b, reason in (([2.0, 2.0, 2.0], "converged_direct"), ([1.0, 3.0, 2.0], "least_squares_only")):
        result, report, x = run_solve(cli, tmp_path, f"{path}:/A", np.array(b))
        assert result.exit_code == 0, result.stderr
        assert report["method"] == "lstsq" and report["status"]["reason"] == reason
        np.testing.assert_allclose(x, np.linalg.pinv(A) @ np.array(b), rtol=10 * EPS, atol=10 * EPS)


def test_refinement_callback_starts_at_zero_and_reports_the_kept_iterate():
    A, _ = badly_scaled(20)
    b = A @ x_true_for(A)
    calls = []
    result = direct.solve_factored(A, direct.factorize(A, "lu"), b,
                                   callback=lambda it, **values: calls.append((it, values)))
    assert [it for it, _ in calls] == list(range(len(calls))) and len(calls) >= 1
    # the last line printed is the residual of the x returned
    assert calls[-1][1]["residual"] == pytest.approx(result.metrics["relative_residual"], rel=1e-6, abs=1e-300)


def test_fallback_iteration_bound_is_proportional_to_the_direct_work():
    from matcli.methods.solve import auto

    A = sp.random(1000, 1000, density=0.005, random_state=1, format="csr")
    per_iteration = 4.0 * A.nnz + 12.0 * 2000
    cap, why = auto.fallback_maxiter(A, 1e9, None)
    assert cap == int(np.ceil(auto.FALLBACK_WORK_FACTOR * 1e9 / per_iteration)) and "flops" in why
    assert auto.fallback_maxiter(A, 0.0, None)[0] == auto.FALLBACK_MIN_ITERATIONS
    capped, why = auto.fallback_maxiter(A, 1e9, 50)
    assert capped == 50 and "--maxiter 50" in why


def test_componentwise_backward_error_by_column_chunks_is_the_whole_block_formula(monkeypatch):
    # the chunks (sized to stay in cache) must give exactly the Oettli-Prager ratio of the whole block,
    # including the chunk that is cut short and the rows where |A||x| + |b| is zero
    from matcli.methods.solve import direct

    rng = np.random.default_rng(3)
    A = sp.random(50, 50, density=0.1, random_state=4, format="csr") + sp.identity(50, format="csr")
    X = rng.standard_normal((50, 7))
    B = A @ X + 1e-9 * rng.standard_normal((50, 7))
    B[:, 2] = 0.0
    X[:, 2] = 0.0
    R = B - A @ X
    denom = abs(A) @ np.abs(X) + np.abs(B)
    with np.errstate(divide="ignore", invalid="ignore"):
        want = np.where(denom > 0, np.abs(R) / np.where(denom > 0, denom, 1.0), 0.0).max(axis=0)
    monkeypatch.setattr(direct, "_CACHE_BYTES", 50 * 8 * 3)  # chunks of 3 columns: 3 + 3 + 1
    berr, R_got = direct.componentwise_backward_error(abs(A), A, X, B)
    assert np.array_equal(R_got, R) and np.array_equal(berr, want) and berr[2] == 0.0


@pytest.mark.parametrize("n", [1, 7, 64, 65])
@pytest.mark.parametrize("dtype", [np.float64, np.complex128])
def test_small_dense_cholesky_through_numpy_matches_scipy_potrf(n, dtype):
    # orders <= NUMPY_CHOLESKY_MAX factor with numpy's potrf (no scipy.linalg import), larger with scipy's:
    # the same LAPACK routine, so the two solutions agree to the backward error of either
    import scipy.linalg as sla

    from matcli.methods.solve import direct

    rng = np.random.default_rng(n)
    G = rng.standard_normal((n, n)) + (1j * rng.standard_normal((n, n)) if dtype is np.complex128 else 0)
    A = G @ G.conj().T + n * np.eye(n)
    b = rng.standard_normal(n).astype(dtype)
    result = direct.solve_factored(A, direct.factorize(A, "cholesky"), b)
    assert result.status is Status.CONVERGED_DIRECT
    want = sla.cho_solve(sla.cho_factor(A), b)
    cond = np.linalg.cond(A)
    assert np.linalg.norm(result.outputs["x"] - want) <= 100 * n * np.finfo(float).eps * cond * np.linalg.norm(want)
    indefinite = A - 2 * np.linalg.eigvalsh(A).max() * np.eye(n)
    assert direct.factorize(indefinite, "cholesky").failure is Status.DIVERGED_NOT_SPD
