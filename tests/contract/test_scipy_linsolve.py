"""scipy's ``sparse/linalg/_dsolve/tests/test_linsolve.py`` (spsolve / splu / factorized), ported to
``matcli solve`` with every direct method of the matching kind (lu for all; cholesky and ldl where
the matrix is Hermitian) and ``auto``, end to end through the CLI.

Tolerances: scipy's own where it states one (``10 cond eps`` for twodiags, ``1e3 eps`` of the case's
dtype for the splu smoke test, ``rtol 1e-7`` for natural_permc), else LAPACK's solve ratio
``||b - A x||_1 / (||A||_1 ||x||_1 eps n) < 30``. matcli computes every dtype in double precision,
so the double-precision bound is also checked for the single-precision cases.

Deliberate differences (each a test here): scipy returns NaN with a warning for an exactly singular
matrix, matcli a negative status (``diverged_singular``; exit 3 under ``--strict``) and, under
``auto``, the minimum-norm least-squares solution with status ``least_squares_only``; a complex
right-hand side with a real matrix is accepted (scipy's factorized refuses it); the solution is a
dense array even for a sparse right-hand side. Not ported: transposed solves (``lu.solve(b, 'T')``,
no matcli option), ``perm_r``/``perm_c``/``L``/``U`` and ``lu_attr`` (solve exposes no factors;
``matcli factorize`` does), UMFPACK, spilu (ILU is a preconditioner here), spsolve_triangular.
"""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import scipy.linalg
import scipy.sparse as sp

from matcli.io.hdf5 import write_arrays

RATIO = 30.0


def ratio(A, x, b) -> float:
    """LAPACK's xGET02 ratio (scaled by n), max over columns, in complex128."""
    A = np.asarray(A.toarray() if sp.issparse(A) else A, dtype=np.complex128)
    X = np.asarray(x, dtype=np.complex128).reshape(A.shape[1], -1)
    B = np.asarray(b.toarray() if sp.issparse(b) else b, dtype=np.complex128).reshape(A.shape[0], -1)
    R = B - A @ X
    eps = np.finfo(float).eps
    worst = 0.0
    for j in range(X.shape[1]):
        if np.any(R[:, j]):
            worst = max(worst, np.abs(R[:, j]).sum() / (np.abs(A).sum(axis=0).max() * np.abs(X[:, j]).sum()
                                                        * eps * A.shape[0]))
    return worst


def hermitian(A) -> bool:
    dense = A.toarray() if sp.issparse(A) else np.asarray(A)
    return dense.shape[0] == dense.shape[1] and np.array_equal(dense, dense.conj().T)


def methods_for(A) -> list[str]:
    return ["lu", "auto"] + (["cholesky", "ldl"] if hermitian(A) else [])


def solve(cli, tmp_path, A, B, method, *extra):
    """``matcli solve`` of A X = B stored in HDF5 (B sparse, dense or an .npy path); returns
    (exit code, report or None, x or None)."""
    path = tmp_path / "sys.h5"
    if isinstance(B, str):
        write_arrays(str(path), {"A": A})
        rhs = B
    else:
        write_arrays(str(path), {"A": A, "B": B})
        rhs = f"{path}:/B"
    out, rep = tmp_path / "x.h5", tmp_path / "r.json"
    for stale in (out, rep):
        stale.unlink(missing_ok=True)
    result = cli(["solve", f"{path}:/A", "--rhs", rhs, "-m", method, "-o", out, "--report", rep, "--quiet", *extra])
    report = json.loads(rep.read_text()) if rep.exists() else None
    x = None
    if out.exists():
        with h5py.File(out, "r") as fh:
            x = fh["x"][()] if "x" in fh else None
    return result.exit_code, report, x


def spdiags_case(n: int):
    d = np.arange(n) + 1.0
    return sp.csc_matrix(sp.spdiags(np.array([d, 2 * d, d[::-1]]), (-3, 0, 5), n, n))


# ---------------------------------------------------------------- TestLinsolve


@pytest.mark.parametrize("method", ["lu", "auto"])
@pytest.mark.parametrize("case", ["zero", "gh_3312"])
def test_singular(cli, tmp_path, case, method):
    if case == "zero":
        A = sp.csc_matrix((5, 5))
        b = np.arange(1.0, 6.0)
    else:
        ij = np.array([(17, 0), (17, 6), (17, 12), (10, 13)])
        A = sp.csc_matrix((np.array([0.284213, 0.94933781, 0.15767017, 0.38797296]), ij.T), shape=(20, 20))
        b = np.arange(20.0)
    code, report, x = solve(cli, tmp_path, A, b, method)
    assert code == 0
    if method == "lu":
        # scipy: NaN and MatrixRankWarning; matcli: a negative status, no solution
        assert report["status"]["reason"] == "diverged_singular" and x is None
    else:
        assert report["status"]["reason"] == "least_squares_only"
        np.testing.assert_allclose(x, np.linalg.pinv(A.toarray()) @ b, atol=1e-12)
    assert solve(cli, tmp_path, A, b, method, "--strict")[0] == 3


@pytest.mark.parametrize("method", ["lu", "auto"])
@pytest.mark.parametrize("dtype", ["f", "d", "F", "D"])
def test_twodiags(cli, tmp_path, dtype, method):
    A = sp.spdiags(np.array([[1, 2, 3, 4, 5], [6, 5, 8, 9, 10]]), [0, 1], 5, 5)
    dense = A.toarray()
    cond = np.linalg.norm(dense, 2) * np.linalg.norm(np.linalg.inv(dense), 2)
    b = np.array([1, 2, 3, 4, 5]).astype(dtype)
    for fmt in ("csc", "csr"):
        code, report, x = solve(cli, tmp_path, A.astype(dtype).asformat(fmt), b, method, "--strict")
        assert code == 0 and report["method"] == "lu"
        assert x.dtype == (np.complex128 if dtype in "FD" else np.float64)  # computed in double
        assert np.linalg.norm(b - dense @ x) < 10 * cond * np.finfo(dtype).eps
        assert ratio(dense, x, b) < RATIO


def smoke_A():
    return sp.csc_matrix(np.array([[0.0, 1.0, 1.0], [1.0, 0.0, 1.0], [0.0, 0.0, 1.0]]))


@pytest.mark.parametrize("method", ["lu", "auto"])
def test_bvector_smoketest(cli, tmp_path, method):
    A = smoke_A()
    x_true = np.random.RandomState(1234).randn(3)
    code, _, x = solve(cli, tmp_path, A, A @ x_true, method, "--strict")
    assert code == 0
    np.testing.assert_allclose(x, x_true, rtol=30 * 3 * np.finfo(float).eps * 10)


@pytest.mark.parametrize("method", ["lu", "auto"])
@pytest.mark.parametrize("rhs", ["dense", "sparse"])
def test_bmatrix_smoketest(cli, tmp_path, method, rhs):
    """Several right-hand sides at once; a sparse B (an HDF5 sparse group) is read as its dense array."""
    A = smoke_A()
    x_true = np.random.RandomState(1234).randn(3, 4)
    B = A @ x_true
    code, _, x = solve(cli, tmp_path, A, sp.csc_matrix(B) if rhs == "sparse" else B, method, "--strict")
    assert code == 0 and x.shape == (3, 4)
    np.testing.assert_allclose(x, x_true, rtol=1e-13, atol=1e-13)


def test_non_square(cli, tmp_path):
    code, _, _ = solve(cli, tmp_path, np.ones((3, 4)), np.ones(3), "lu")
    assert code == 2  # a usage error: lu needs a square matrix (auto would give least squares)
    code, _, _ = solve(cli, tmp_path, sp.csc_matrix(np.eye(3)), np.array([1.0, 2.0]), "lu")
    assert code == 4  # right-hand side of the wrong length: an input error


@pytest.mark.parametrize("method", ["lu", "auto"])
def test_example_comparison(cli, tmp_path, method):
    sM = sp.csr_matrix((np.array([1, 2, 3, -4, 5, 6]), (np.array([0, 0, 1, 2, 2, 2]), np.array([0, 2, 2, 0, 1, 2]))),
                       shape=(3, 3), dtype=float)
    sN = sp.csr_matrix((np.ones(6), (np.array([0, 0, 1, 1, 0, 0]), np.array([0, 2, 1, 1, 0, 0]))), shape=(3, 3))
    code, _, x = solve(cli, tmp_path, sM, sN, method, "--strict")
    assert code == 0
    np.testing.assert_allclose(x, scipy.linalg.solve(sM.toarray(), sN.toarray()), rtol=1e-14, atol=1e-14)


@pytest.mark.parametrize("method", ["lu", "auto", "ldl", "cholesky"])
def test_ndarray_support(cli, tmp_path, method):
    """A dense symmetric indefinite 2x2: lu, ldl and auto solve it; Cholesky says it is not SPD."""
    A = np.array([[1.0, 2.0], [2.0, 0.0]])
    x_true = np.array([[1.0, 1.0], [0.5, -0.5]])
    code, report, x = solve(cli, tmp_path, A, np.array([[2.0, 0.0], [2.0, 2.0]]), method)
    assert code == 0
    if method == "cholesky":
        assert report["status"]["reason"] == "diverged_not_spd"
    else:
        assert report["status"]["converged"]
        np.testing.assert_allclose(x, x_true, rtol=1e-15, atol=1e-15)


@pytest.mark.parametrize("method", ["lu", "auto", "cholesky", "ldl"])
def test_sparsity_preservation(cli, tmp_path, method):
    """scipy returns a sparse x for a sparse B; matcli's x is dense with the same values."""
    ident = sp.csc_matrix(np.eye(3))
    b = sp.csc_matrix(np.array([[0.0, 1.0], [1.0, 0.0], [0.0, 0.0]]))
    code, _, x = solve(cli, tmp_path, ident, b, method, "--strict")
    assert code == 0
    np.testing.assert_array_equal(x, b.toarray())


@pytest.mark.parametrize("method", ["lu", "auto"])
def test_dtype_cast(cli, tmp_path, method):
    A_real = sp.csr_matrix(np.array([[1, 2, 0], [0, 0, 3], [4, 0, 5]]))
    A_complex = sp.csr_matrix(np.array([[1, 2, 0], [0, 0, 3], [4, 0, 5 + 1j]]))
    b_real = np.array([1, 1, 1])
    b_complex = np.array([1, 1, 1]) + 1j * np.array([1, 1, 1])
    for A, b in ((A_real, b_real), (A_real, b_complex), (A_complex, b_real), (A_complex, b_complex)):
        code, _, x = solve(cli, tmp_path, A, b, method, "--strict")
        assert code == 0
        assert np.iscomplexobj(x) == (np.iscomplexobj(A) or np.iscomplexobj(b))
        assert ratio(A, x, b) < RATIO


# ---------------------------------------------------------------- TestSplu / TestFactorized


@pytest.mark.parametrize("method", ["lu", "auto"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.complex64, np.complex128])
def test_splu_smoketest(cli, tmp_path, dtype, method):
    """n = 40 spdiags matrix (A + 1j A^T when complex), right-hand sides of k = None, 1, 2, n, n + 2
    columns: |A x - b| < 1e3 eps of the case's dtype (scipy's bound), and LAPACK's ratio in double."""
    n = 40
    A = spdiags_case(n)
    if np.issubdtype(dtype, np.complexfloating):
        A = A + 1j * A.T
    A = A.astype(dtype)
    rng = np.random.RandomState(1234)
    for k in (None, 1, 2, n, n + 2):
        b = rng.rand(n) if k is None else rng.rand(n, k)
        if np.issubdtype(dtype, np.complexfloating):
            b = b + 1j * rng.rand(*b.shape)
        b = b.astype(dtype)
        code, _, x = solve(cli, tmp_path, A, b, method, "--strict")
        assert code == 0, k
        assert x.shape == b.shape
        wide = A.astype(np.complex128)
        assert np.abs(wide @ x - b).max() < 1e3 * np.finfo(dtype).eps, k
        assert ratio(A, x, b) < RATIO, k


@pytest.mark.parametrize("method", ["lu", "auto"])
def test_splu_basic(cli, tmp_path, method):
    n = 30
    a = np.random.RandomState(12).rand(n, n)
    a[a < 0.95] = 0
    a[:, 0] = 0  # exactly singular
    code, report, _ = solve(cli, tmp_path, sp.csc_matrix(a), np.ones(n), method)
    assert code == 0 and not report["status"]["converged"]
    assert report["status"]["reason"] == ("diverged_singular" if method == "lu" else "least_squares_only")
    a += 4 * np.eye(n)
    code, _, x = solve(cli, tmp_path, sp.csc_matrix(a), np.ones(n), method, "--strict")
    assert code == 0
    assert ratio(a, x, np.ones(n)) < RATIO
    np.testing.assert_allclose(a @ x, np.ones(n), atol=1e-13)


@pytest.mark.parametrize("method", ["lu", "auto"])
def test_natural_permc(cli, tmp_path, method):
    """The ordering is not a matcli option (COLAMD always); the solve's accuracy is the contract."""
    rs = np.random.RandomState(42)
    n = 500
    A = sp.random(n, n, 0.01, random_state=rs) + (n + 1) * sp.identity(n)
    x_true = rs.rand(n)
    A = sp.csc_matrix(A)
    code, _, x = solve(cli, tmp_path, A, A @ x_true, method, "--strict")
    assert code == 0
    np.testing.assert_allclose(x, x_true, rtol=1e-7)
    assert ratio(A, x, A @ x_true) < RATIO


@pytest.mark.parametrize("method", ["lu", "auto"])
def test_factorized_non_singular(cli, tmp_path, method):
    a = sp.csc_matrix(np.random.RandomState(1234).rand(5, 5))
    code, _, x = solve(cli, tmp_path, a, np.ones(5), method, "--strict")
    assert code == 0
    expected = scipy.sparse.linalg.splu(a).solve(np.ones(5))
    np.testing.assert_allclose(x, expected, rtol=1e-12 * np.linalg.cond(a.toarray()))


def test_incorrectly_sized_right_hand_sides(cli, tmp_path):
    """scipy's factorized and splu raise ValueError; matcli exits 4 (input error) before any work."""
    A = spdiags_case(5)
    rng = np.random.RandomState(0)
    for bad in (rng.rand(4), rng.rand(4, 3), rng.rand(5, 3, 9)):
        path = tmp_path / "bad.npy"
        np.save(path, bad)
        code, report, _ = solve(cli, tmp_path, A, str(path), "lu")
        assert code == 4 and report is None


@pytest.mark.parametrize("dtype", [np.complex64, np.complex128])
def test_complex_right_hand_side_with_real_factors(cli, tmp_path, dtype):
    """scipy's factorized(A)(b.astype(complex)) raises TypeError; matcli solves the real and imaginary
    parts with the real factors."""
    A = spdiags_case(5)
    b = (np.random.RandomState(1).rand(5) + 1j * np.random.RandomState(2).rand(5)).astype(dtype)
    code, _, x = solve(cli, tmp_path, A, b, "lu", "--strict")
    assert code == 0 and np.iscomplexobj(x)
    assert ratio(A, x, b) < RATIO


def test_cholesky_on_a_nonsymmetric_case_is_a_negative_status(cli, tmp_path):
    code, report, x = solve(cli, tmp_path, spdiags_case(40), np.ones(40), "cholesky")
    assert code == 0 and report["status"]["reason"] == "diverged_not_spd" and x is None


@pytest.mark.parametrize("method", ["lu", "auto", "cholesky", "ldl"])
def test_hermitian_positive_definite_variant(cli, tmp_path, method):
    """The spdiags matrix made Hermitian (A + A^T + i (triu(A) - triu(A)^T)) and positive definite by a
    shift past its largest absolute row sum (Gershgorin): every direct method of the kind solves it."""
    A = spdiags_case(40)
    H0 = A + A.T + 1j * (sp.triu(A, 1) - sp.triu(A, 1).T)
    H = sp.csc_matrix(H0 + (1.0 + abs(H0).sum(axis=1).max()) * sp.identity(40))
    assert hermitian(H)
    b = np.random.RandomState(3).rand(40, 2)
    code, report, x = solve(cli, tmp_path, H, b, method, "--strict")
    assert code == 0, report and report["status"]
    assert ratio(H, x, b) < RATIO
