"""Sparse direct backends (issue #22): SuperLU, PARDISO (pypardiso), CHOLMOD (scikit-sparse).

Each backend factors once and solves many right-hand sides; its solution passes the same LAPACK test
as SuperLU's (xGET02's ratio ``||b - A x||_1 / (||A||_1 ||x||_1 eps n) < 30``, recomputed here with
numpy) and agrees with ``scipy.sparse.linalg.spsolve`` within what that backward error allows:
``||x - x_ref|| / ||x_ref|| <= 2 * 30 n eps * cond_1(A)`` (both solutions are that close to the exact
one), with cond_1 from the data MANIFEST or, for the Poisson constructions, exact. Failures are the
same statuses SuperLU gives. Tests of a library that is not installed skip with the reason.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from conftest import data_file, shared_data_dir
from matcli.core.errors import UsageError
from matcli.core.result import Status
from matcli.io.mtx import read_mtx
from matcli.methods.solve import direct
from matcli.methods.solve.sparse_direct import available, best_direct_backend, choose
from matcli.methods.solve.system import as_matrix

EPS = np.finfo(float).eps
RATIO = 30.0
needs_pardiso = pytest.mark.skipif(not available("pardiso"), reason="pypardiso not installed (matcli[pardiso])")
needs_cholmod = pytest.mark.skipif(not available("cholmod"),
                                   reason="scikit-sparse not installed (matcli[cholmod], needs SuiteSparse >= 7)")
SPD_FILES = ["bcsstk15.mtx", "bcsstk13.mtx", "1138_bus.mtx", "kk_Laplace3D10.mtx", "plat362.mtx"]
NONSYM_FILES = ["sherman5.mtx", "watt_2.mtx", "orsirr_1.mtx", "Pd.mtx", "arrow.mtx", "rajat19.mtx"]
INDEFINITE_FILES = ["hangGlider_2.mtx", "reorientation_1.mtx"]


def manifest_cond(name: str) -> float:
    """cond1_est of a matrices/ file from the MANIFEST notes."""
    for line in (shared_data_dir() / "MANIFEST.tsv").read_text().splitlines()[1:]:
        fields = line.split("\t")
        if fields[0] == f"matrices/{name}" and "cond1_est=" in line:
            return float(line.split("cond1_est=")[1].split(";")[0].split()[0])
    pytest.skip(f"no cond1_est for {name} in the MANIFEST")


def load(name: str):
    return as_matrix(sp.csr_matrix(read_mtx(str(data_file(f"matrices/{name}")))))


def ratio(A, X, B) -> np.ndarray:
    """xGET02's ratio scaled by n per column, computed independently of matcli."""
    X, B = X.reshape(A.shape[0], -1), B.reshape(A.shape[0], -1)
    r = np.abs(B - A @ X).sum(axis=0)
    norm_A = abs(A).sum(axis=0).max()
    return r / (norm_A * np.abs(X).sum(axis=0) * EPS * A.shape[0])


def poisson(k: int, dim: int) -> sp.csr_matrix:
    """Dirichlet Laplacian on a k^dim grid (7-point in 3-D, 5-point in 2-D), order k^dim."""
    T = sp.diags([-np.ones(k - 1), 2 * np.ones(k), -np.ones(k - 1)], [-1, 0, 1], dtype=float)
    A = T
    for _ in range(dim - 1):
        A = sp.kron(A, sp.eye(k)) + sp.kron(sp.eye(A.shape[0]), T)
    return sp.csr_matrix(A)


def poisson_eigenvalues(k: int, dim: int) -> np.ndarray:
    """All eigenvalues of :func:`poisson`: sums of the 1-D ones ``4 sin^2(j pi / (2 (k + 1)))``."""
    one = 4 * np.sin(np.arange(1, k + 1) * np.pi / (2 * (k + 1))) ** 2
    total = one
    for _ in range(dim - 1):
        total = np.add.outer(total, one).ravel()
    return total


def solve_with(A, kind: str, backend: str, B):
    fact = direct.factorize(A, kind, backend=backend)
    return fact, direct.solve_factored(A, fact, B)


def check_against_spsolve(A, X, B, cond: float) -> None:
    assert ratio(A, X, B).max() < RATIO
    X_ref = spla.spsolve(sp.csc_matrix(A), B).reshape(X.shape)
    bound = min(2 * RATIO * A.shape[0] * EPS * cond, 1.0)
    assert np.linalg.norm(X - X_ref) / np.linalg.norm(X_ref) <= bound


# ------------------------------------------------------------------ choosing


def test_small_or_thin_problems_keep_the_reference_factorization():
    for kind, n in (("lu", choose.SMALL_ORDER - 1), ("cholesky", choose.SMALL_ORDER - 1),
                    ("ldl", choose.LDL_SPARSE_ORDER - 1)):
        name, reason = best_direct_backend(kind, n, 10 * n, True)
        assert name == ("lapack" if kind == "ldl" else "superlu") and "small" in reason
    n = 10 * choose.SMALL_ORDER
    for kind in ("lu", "cholesky"):
        name, reason = best_direct_backend(kind, n, int(choose.MIN_ROW_DENSITY * n) - 1, True)
        assert name == "superlu" and "per row" in reason


@pytest.mark.parametrize("installed, kind, spd, complex_values, expected", [
    ({"pardiso", "cholmod"}, "cholesky", True, False, "cholmod"),
    ({"pardiso", "cholmod"}, "cholesky", False, False, "pardiso"),
    ({"pardiso", "cholmod"}, "lu", True, False, "pardiso"),
    ({"pardiso", "cholmod"}, "ldl", False, False, "pardiso"),
    ({"pardiso", "cholmod"}, "lu", False, True, "superlu"),
    ({"pardiso", "cholmod"}, "cholesky", True, True, "cholmod"),
    ({"pardiso"}, "cholesky", True, False, "pardiso"),
    (set(), "cholesky", True, False, "superlu"),
    (set(), "ldl", False, False, "lapack"),
])
def test_large_problems_go_to_the_fastest_installed_backend(monkeypatch, installed, kind, spd, complex_values,
                                                            expected):
    monkeypatch.setattr(choose, "available", lambda name: name == "superlu" or name in installed)
    n = 50 * choose.SMALL_ORDER
    name, reason = best_direct_backend(kind, n, 7 * n, spd, complex_values=complex_values)
    assert name == expected, reason
    assert str(n) in reason


def test_a_named_backend_that_is_missing_is_a_usage_error_naming_the_extra(monkeypatch):
    monkeypatch.setattr(choose, "_present", lambda module: False)
    A = poisson(10, 2)
    for backend, extra in (("pardiso", "matcli[pardiso]"), ("cholmod", "matcli[cholmod]")):
        with pytest.raises(UsageError, match=extra.replace("[", r"\[").replace("]", r"\]")) as caught:
            direct.factorize(A, "cholesky", backend=backend)
        assert "\n" not in str(caught.value)


def test_a_backend_asked_for_a_kind_it_does_not_factor_is_a_usage_error():
    A = poisson(10, 2)
    with pytest.raises(UsageError, match="cholmod backend factors cholesky"):
        direct.factorize(A, "lu", backend="cholmod")
    with pytest.raises(UsageError, match="superlu backend factors lu and cholesky"):
        direct.factorize(A, "ldl", backend="superlu")
    with pytest.raises(UsageError, match="unknown sparse direct backend"):
        direct.factorize(A, "lu", backend="umfpack")


def test_auto_records_its_choice_and_reason():
    A = poisson(10, 2)
    fact = direct.factorize(A, "lu", backend="auto")
    assert fact.backend == "superlu" and "small" in fact.info["backend_reason"]
    dense = direct.factorize(A.toarray(), "lu", backend="auto")
    assert dense.backend == "lapack"


@pytest.mark.skipif(available("cholmod"), reason="scikit-sparse is installed here")
def test_cholmod_absent_here_is_a_usage_error():
    with pytest.raises(UsageError, match=r"matcli\[cholmod\]"):
        direct.factorize(poisson(10, 2), "cholesky", backend="cholmod")


# ------------------------------------------------------------------ PARDISO


@needs_pardiso
@pytest.mark.parametrize("name", SPD_FILES)
@pytest.mark.parametrize("kind", ["cholesky", "lu", "ldl"])
def test_pardiso_on_spd_files(name, kind):
    A = load(name)
    B = A @ np.random.default_rng(0).standard_normal((A.shape[0], 3))
    fact, result = solve_with(A, kind, "pardiso", B)
    assert result.status == Status.CONVERGED_DIRECT, result.message
    if "backend_fallback" not in fact.info:
        assert fact.backend == "pardiso"
        assert fact.info["factor_memory_bytes"] > 0
        assert fact.info["factor_nnz"] >= sp.triu(A).nnz  # the factor holds at least A's pattern
    check_against_spsolve(A, result.outputs["x"], B, manifest_cond(name))


@needs_pardiso
@pytest.mark.parametrize("name", NONSYM_FILES)
def test_pardiso_lu_on_nonsymmetric_files(name):
    A = load(name)
    b = A @ np.random.default_rng(1).standard_normal(A.shape[0])
    fact, result = solve_with(A, "lu", "pardiso", b)
    assert result.status == Status.CONVERGED_DIRECT, result.message
    check_against_spsolve(A, result.outputs["x"], b, manifest_cond(name))


@needs_pardiso
@pytest.mark.parametrize("name", INDEFINITE_FILES)
def test_pardiso_ldl_on_symmetric_indefinite_files_and_cholesky_refuses_them(name):
    A = load(name)
    b = A @ np.random.default_rng(2).standard_normal(A.shape[0])
    _, result = solve_with(A, "ldl", "pardiso", b)
    assert result.status == Status.CONVERGED_DIRECT, result.message
    check_against_spsolve(A, result.outputs["x"], b, manifest_cond(name))
    for backend in ("superlu", "pardiso"):
        fact = direct.factorize(A, "cholesky", backend=backend)
        assert fact.failure == Status.DIVERGED_NOT_SPD and "not positive definite" in fact.message, backend


@needs_pardiso
@pytest.mark.parametrize("dim, k", [(2, 60), (3, 16)])
def test_pardiso_on_poisson_factors_once_for_many_right_hand_sides(dim, k):
    """Exact construction: cond_2 = lambda_max / lambda_min from the known eigenvalues bounds the
    forward error; eight right-hand sides in one solve equal eight single solves."""
    A = poisson(k, dim)
    eig = poisson_eigenvalues(k, dim)
    cond = eig.max() / eig.min() * np.sqrt(A.shape[0])  # cond_1 <= sqrt(n) cond_2
    X_true = np.random.default_rng(3).standard_normal((A.shape[0], 8))
    B = A @ X_true
    for kind in ("lu", "cholesky", "ldl"):
        fact, result = solve_with(A, kind, "pardiso", B)
        assert fact.backend == "pardiso" and "backend_fallback" not in fact.info, kind
        X = result.outputs["x"]
        check_against_spsolve(A, X, B, cond)
        bound = 2 * RATIO * A.shape[0] * EPS * cond
        assert np.linalg.norm(X - X_true) / np.linalg.norm(X_true) <= bound
        single = np.column_stack([fact.solve(B[:, [j]])[:, 0] for j in range(8)])
        np.testing.assert_allclose(fact.solve(B), single, rtol=0, atol=1e-13 * np.abs(single).max())


@needs_pardiso
def test_pardiso_ldl_counts_the_inertia_of_a_shifted_laplacian_past_the_dense_limit():
    """3-D Laplacian minus sigma I (order 5832 > LDL_DENSE_LIMIT, so only a sparse LDL^T applies): its
    negative eigenvalues are exactly those of the Laplacian below sigma, counted from the formula."""
    k = 18
    A = poisson(k, 3)
    eig = np.sort(poisson_eigenvalues(k, 3))
    sigma = 0.5 * (eig[40] + eig[41]) if eig[41] - eig[40] > 1e-6 else 0.5 * (eig[39] + eig[40])
    shifted = sp.csr_matrix(A - sigma * sp.eye(A.shape[0]))
    assert A.shape[0] > direct.LDL_DENSE_LIMIT
    b = shifted @ np.random.default_rng(4).standard_normal(A.shape[0])
    fact, result = solve_with(shifted, "ldl", "pardiso", b)
    assert result.status == Status.CONVERGED_DIRECT, result.message
    assert ratio(shifted, result.outputs["x"], b).max() < RATIO
    if not fact.info.get("perturbed_pivots"):
        assert fact.info["inertia"]["negative"] == int(np.sum(eig < sigma))
        assert fact.info["inertia"]["positive"] == int(np.sum(eig > sigma))


@needs_pardiso
@pytest.mark.parametrize("storage", ["exact zero pivot", "empty row"])
def test_pardiso_reports_an_exactly_singular_matrix_as_superlu_does(storage):
    if storage == "exact zero pivot":
        A = sp.csr_matrix(np.kron(np.eye(50), [[1.0, 2.0], [2.0, 4.0]]) + np.diag(np.r_[0.0, 0.0, np.ones(98)]))
    else:
        A = sp.csr_matrix(poisson(10, 2).toarray() * np.r_[np.ones(50), 0.0, np.ones(49)][:, None])
    reference = direct.factorize(A, "lu")
    assert reference.failure == Status.DIVERGED_SINGULAR
    fact = direct.factorize(A, "lu", backend="pardiso")
    assert fact.failure == Status.DIVERGED_SINGULAR and "zero pivot" in fact.message
    result = direct.solve_factored(A, fact, np.ones(A.shape[0]))
    assert result.status == Status.DIVERGED_SINGULAR and "x" not in result.outputs


@needs_pardiso
def test_perturbed_pivots_hand_the_matrix_to_superlu():
    """nnc1374 (cond ~4e15): PARDISO's supernode pivoting perturbs pivots there; the factors of that
    nearby matrix are replaced by SuperLU's partial pivoting, and the report says so."""
    A = load("nnc1374.mtx")
    probe = __import__("matcli.methods.solve.sparse_direct.pardiso", fromlist=["factor"]).factor(A, "lu")
    if not probe.info.get("perturbed_pivots"):
        pytest.skip("this MKL did not perturb pivots on nnc1374")
    b = A @ np.random.default_rng(5).standard_normal(A.shape[0])
    fact, result = solve_with(A, "lu", "pardiso", b)
    assert fact.backend == "superlu" and "SuperLU refactored" in fact.info["backend_fallback"]
    assert result.status == Status.CONVERGED_DIRECT
    assert ratio(A, result.outputs["x"], b).max() < RATIO


@needs_pardiso
def test_pardiso_is_real_only_and_auto_sends_complex_matrices_to_superlu():
    A = sp.csr_matrix(poisson(50, 2) * (1 + 0.5j))
    with pytest.raises(UsageError, match="real matrices only"):
        direct.factorize(A, "lu", backend="pardiso")
    n = 10 * choose.SMALL_ORDER
    name, reason = best_direct_backend("lu", n, 7 * n, False, complex_values=True)
    assert name == "superlu" and "complex" in reason


@needs_pardiso
def test_pardiso_real_factors_solve_a_complex_right_hand_side():
    A = poisson(30, 2)
    rng = np.random.default_rng(6)
    x_true = rng.standard_normal(A.shape[0]) + 1j * rng.standard_normal(A.shape[0])
    b = A @ x_true
    _, result = solve_with(A, "lu", "pardiso", b)
    assert result.status == Status.CONVERGED_DIRECT
    assert np.iscomplexobj(result.outputs["x"])
    assert ratio(A, result.outputs["x"], b).max() < RATIO


# ------------------------------------------------------------------ CHOLMOD


@needs_cholmod
@pytest.mark.parametrize("name", SPD_FILES)
def test_cholmod_on_spd_files(name):
    A = load(name)
    B = A @ np.random.default_rng(7).standard_normal((A.shape[0], 3))
    fact, result = solve_with(A, "cholesky", "cholmod", B)
    assert fact.backend == "cholmod" and result.status == Status.CONVERGED_DIRECT, result.message
    check_against_spsolve(A, result.outputs["x"], B, manifest_cond(name))


@needs_cholmod
@pytest.mark.parametrize("name", INDEFINITE_FILES)
def test_cholmod_refuses_indefinite_files_as_superlu_does(name):
    fact = direct.factorize(load(name), "cholesky", backend="cholmod")
    assert fact.failure == Status.DIVERGED_NOT_SPD and "not positive definite" in fact.message


@needs_cholmod
def test_cholmod_on_poisson_3d():
    A = poisson(16, 3)
    eig = poisson_eigenvalues(16, 3)
    B = A @ np.random.default_rng(8).standard_normal((A.shape[0], 4))
    fact, result = solve_with(A, "cholesky", "cholmod", B)
    assert result.status == Status.CONVERGED_DIRECT
    check_against_spsolve(A, result.outputs["x"], B, eig.max() / eig.min() * np.sqrt(A.shape[0]))


# ------------------------------------------------------------------ factorize --kind cholesky


def test_factorize_cholesky_auto_takes_cholmod_only_where_installed():
    from matcli.methods.factorize.sparse import cholesky_sparse

    A = poisson(12, 2)
    result = cholesky_sparse(A, backend="auto")
    assert result.status == Status.CONVERGED_DIRECT
    assert result.info["backend"] == ("cholmod" if available("cholmod") else "superlu")
    with pytest.raises(UsageError, match="PARDISO does not hand out its factors"):
        cholesky_sparse(A, backend="pardiso")


@pytest.mark.skipif(available("cholmod"), reason="scikit-sparse is installed here")
def test_factorize_cholesky_with_cholmod_absent_is_a_usage_error():
    from matcli.methods.factorize.sparse import cholesky_sparse

    with pytest.raises(UsageError, match=r"matcli\[cholmod\]"):
        cholesky_sparse(poisson(12, 2), backend="cholmod")


@needs_cholmod
@pytest.mark.parametrize("name", SPD_FILES)
def test_factorize_cholesky_with_cholmod_reconstructs_the_permuted_matrix(name):
    """xPOT01's test: ||A[P][:, P] - L L^T||_1 / (n ||A||_1 eps) <= 30, recomputed here."""
    from matcli.methods.factorize.sparse import cholesky_sparse

    A = load(name)
    result = cholesky_sparse(A, backend="cholmod")
    assert result.status == Status.CONVERGED_DIRECT and result.info["backend"] == "cholmod"
    L, P = result.outputs["L"], result.outputs["P"]
    assert sorted(P) == list(range(A.shape[0]))
    permuted = sp.csr_matrix(A)[P][:, P]
    diff = abs(permuted - L @ L.T).sum(axis=0).max()
    assert diff / (A.shape[0] * abs(A).sum(axis=0).max() * EPS) <= RATIO
    assert sp.triu(L, k=1).nnz == 0 and np.all(L.diagonal() > 0)


@needs_cholmod
def test_factorize_cholesky_with_cholmod_refuses_an_indefinite_matrix():
    from matcli.methods.factorize.sparse import cholesky_sparse

    result = cholesky_sparse(load("hangGlider_2.mtx"), backend="cholmod")
    assert result.status == Status.DIVERGED_NOT_SPD and not result.outputs


@needs_pardiso
def test_pardiso_runs_on_the_blas_thread_count_even_when_mkl_loaded_late():
    """threadpoolctl limits only the libraries loaded when the limit is set; MKL, loaded later by the
    first PARDISO call, is brought to the other BLAS pools' count for each call."""
    from threadpoolctl import ThreadpoolController, threadpool_limits

    from matcli.methods.solve.sparse_direct import pardiso

    pardiso.factor(poisson(5, 2), "lu")  # MKL loaded
    mkl = ThreadpoolController().select(internal_api="mkl")
    with threadpool_limits(limits=1, user_api="blas"), mkl.limit(limits=2):
        assert mkl.info()[0]["num_threads"] == 2  # as if loaded after the job's limit
        with pardiso.threads_as_blas() as count:
            assert count == 1 and ThreadpoolController().select(internal_api="mkl").info()[0]["num_threads"] == 1


# ------------------------------------------------------------------ end to end


@pytest.mark.parametrize("method", ["auto", "cholesky", "lu", "ldl"])
def test_solve_reports_the_backend_auto_chose(cli, tmp_path, method):
    """A 3-D Poisson problem of 5832 unknowns (7 per row): the direct methods take the fastest
    installed backend (PARDISO here when pypardiso is installed, SuperLU / LAPACK otherwise), the
    report says which and why, and the answer passes the same LAPACK test."""
    from conftest import solve_outputs
    from matcli.io.hdf5 import write_arrays

    if method == "ldl" and not available("pardiso"):
        pytest.skip("without PARDISO, ldl of order 5832 is dense: over LDL_DENSE_LIMIT")
    A = poisson(18, 3)
    path = tmp_path / "poisson.h5"
    write_arrays(str(path), {"A": A})
    b = A @ np.random.default_rng(9).standard_normal(A.shape[0])
    np.save(tmp_path / "b.npy", b)
    result, report, x = solve_outputs(cli, tmp_path, [f"{path}:/A", "--rhs", tmp_path / "b.npy", "-m", method,
                                                      "--strict"])
    assert result.exit_code == 0, result.stderr
    setup = report["problem"]["setup"]
    expected = best_direct_backend(report["method"], A.shape[0], A.nnz, report["method"] == "cholesky")[0]
    assert setup["backend"] == expected and setup["backend_reason"]
    assert report["status"]["reason"] == "converged_direct"
    assert ratio(A, np.asarray(x), b).max() < RATIO


# ------------------------------------------------------------------ pypardiso's own catalogue, ported
# (tests/test_basic_solve.py, test_input_A.py, test_special.py of the pypardiso project: their matrices
# and right-hand sides, judged by our LAPACK test instead of assert_array_almost_equal; where pypardiso
# raises on input (empty rows, non-square, other dtypes) matcli reports a status or a usage error)


def pypardiso_small(sort_indices: bool = True):
    """Their 5 x 5 upper bidiagonal matrix (diagonal 5..9, superdiagonal 1..4) and 5 x 3 b; unsorted:
    the same entries with each row's column indices in descending order."""
    A = sp.csr_matrix(sp.spdiags(np.arange(10, dtype=np.float64).reshape(2, 5), [1, 0], 5, 5))
    if not sort_indices:
        for i in range(5):
            lo, hi = A.indptr[i], A.indptr[i + 1]
            A.indices[lo:hi] = A.indices[lo:hi][::-1].copy()
            A.data[lo:hi] = A.data[lo:hi][::-1].copy()
        A.has_sorted_indices = False
    return A, np.arange(1, 16, dtype=np.float64).reshape(5, 3)


def pypardiso_random(n: int = 1000, density: float = 0.05, columns: int = 1, seed: int = 27):
    """Their ``rand(n, n, density) + I`` with uniform right-hand sides."""
    rng = np.random.default_rng(seed)
    A = sp.csr_matrix(sp.random(n, n, density, random_state=rng) + sp.eye(n))
    return A, rng.random((n, columns))


@needs_pardiso
@pytest.mark.parametrize("kind", ["lu"])
@pytest.mark.parametrize("case", ["small sorted", "small unsorted", "random vector", "random 5 columns",
                                  "csc input"])
def test_pypardiso_catalogue_solves(case, kind):
    if case.startswith("small"):
        A, B = pypardiso_small(sort_indices=case == "small sorted")
        assert A.has_sorted_indices == (case == "small sorted")
    else:
        A, B = pypardiso_random(columns=5 if case == "random 5 columns" else 1)
    if case == "csc input":
        A = sp.csc_matrix(A)
    fact, result = solve_with(A, kind, "pardiso", B)
    assert result.status == Status.CONVERGED_DIRECT, result.message
    X = result.outputs["x"].reshape(B.shape)
    assert ratio(sp.csr_matrix(A), X, B).max() < RATIO
    dense = np.linalg.solve(A.toarray(), B)
    cond = np.linalg.cond(A.toarray(), 1)
    assert np.linalg.norm(X - dense) / np.linalg.norm(dense) <= 2 * RATIO * A.shape[0] * EPS * cond


@needs_pardiso
@pytest.mark.slow
def test_pypardiso_catalogue_issue36():
    """Their issue 36: rand(5000, 5000, density 0.01) without the identity. A random graph fills almost
    completely (21.5e6 factor entries), so this takes seconds; judged by the LAPACK ratio alone (the
    condition number would need a dense 5000 x 5000 inverse)."""
    rng = np.random.default_rng(36)
    A, b = sp.csr_matrix(sp.random(5000, 5000, 0.01, random_state=rng)), rng.random(5000)
    _, result = solve_with(A, "lu", "pardiso", b)
    assert result.status == Status.CONVERGED_DIRECT, result.message
    assert ratio(A, result.outputs["x"], b).max() < RATIO


@needs_pardiso
@pytest.mark.parametrize("case", ["empty row and column", "empty row"])
def test_pypardiso_catalogue_empty_lines_are_singular_not_errors(case):
    """pypardiso raises ValueError (PARDISO itself would crash on a row without entries); a matrix with
    a zero row or column is exactly singular, which matcli reports as SuperLU does."""
    A, _ = pypardiso_random(25, 0.7)
    dense = A.toarray()
    dense[0, :] = 0
    if case == "empty row and column":
        dense[:, 0] = 0
    else:
        dense[1, 0] = 1
    fact = direct.factorize(sp.csr_matrix(dense), "lu", backend="pardiso")
    assert fact.failure == Status.DIVERGED_SINGULAR and "zero pivot" in fact.message


@needs_pardiso
def test_pypardiso_catalogue_non_square_is_a_usage_error():
    A, _ = pypardiso_random(50)
    wide = sp.csr_matrix(sp.hstack([A, sp.csr_matrix(np.ones((50, 1)))]))
    with pytest.raises(UsageError, match="square"):
        direct.factorize(wide, "lu", backend="pardiso")
