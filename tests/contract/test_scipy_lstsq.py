"""scipy's ``linalg/tests/test_basic.py::TestLstsq``, ported to ``matcli solve`` with every method
of the least-squares kind: ``auto`` (LAPACK gelsy for these small problems, LU for a square
nonsingular one), ``lsqr``, ``lsmr`` and ``lstsq`` (matcli's dense LAPACK solver, through the CLI when
it is registered as a method, else through the setup factory the job uses).

Tolerances are scipy's: 25 eps of the case's dtype for the small exact, over- and underdetermined
cases and the random overdetermined ones (against the normal-equations solution, scipy's
``direct_lstsq``), 1000 eps (500 for float32, 400 for complex64) on ``A x - b`` for the random square
ones. matcli computes in double precision, so single-precision cases meet the double bound as well.
LSQR and LSMR are iterative: they meet these bounds only when asked for them, so they run with
``--param atol=1e-14 --rtol 1e-14`` (at their default atol 1e-8 the 20x15 case is ~1e-11 off; that
is why auto gives small problems to LAPACK). scipy's ``overwrite_a/b`` and ``lapack_driver`` options
have no matcli counterpart (each case runs once per matcli method instead).

Deliberate difference: an empty matrix (0 x n or m x 0) is an input error (exit 4) for every solve
method, where scipy returns zeros.
"""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from matcli.core.registry import method_names
from matcli.io.hdf5 import write_arrays
from matcli.methods.solve.dense_lstsq import prepare_lstsq

METHODS = ["auto", "lstsq", "lsqr", "lsmr"]
ITERATIVE = ("--param", "atol=1e-14", "--rtol", "1e-14", "--maxiter", "2000")
REAL = (np.float32, np.float64)
COMPLEX = (np.complex64, np.complex128)


def eps(dtype) -> float:
    return float(np.finfo(dtype).eps)


def direct_lstsq(a, b):
    """scipy's reference: the normal equations solved by LU (fine for these well-conditioned cases)."""
    ah = a.conj().T
    return np.linalg.solve(ah @ a, ah @ b)


def solve(cli, tmp_path, a, b, method):
    """x for min ||b - a x|| by ``method``; the report (None for the factory route)."""
    if method == "lstsq" and "lstsq" not in method_names("solve"):
        solver = prepare_lstsq(a, params={})
        result = solver.solve(a, b)
        assert result.status.converged, result.message
        return np.asarray(result.outputs["x"]), {"metrics": result.metrics}
    path = tmp_path / "ls.h5"
    write_arrays(str(path), {"A": a, "b": b})
    out, rep = tmp_path / "x.h5", tmp_path / "r.json"
    extra = ITERATIVE if method in ("lsqr", "lsmr") else ()
    result = cli(["solve", f"{path}:/A", "--rhs", f"{path}:/b", "-m", method, "-o", out, "--report", rep,
                  "--quiet", "--force", "--strict", *extra])
    assert result.exit_code == 0, result.stderr
    with h5py.File(out, "r") as fh:
        x = fh["x"][()]
    return x, json.loads(rep.read_text())


def check_rank(report, method, rank):
    if method == "lstsq":
        assert report["metrics"]["rank"] == rank


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("dtype", REAL)
def test_simple_exact(cli, tmp_path, dtype, method):
    a = np.array([[1, 20], [-30, 4]], dtype=dtype)
    for bt in (((1, 0), (0, 1)), (1, 0), ((2, 1), (-30, 4))):
        b = np.array(bt, dtype=dtype)
        x, report = solve(cli, tmp_path, a, b, method)
        check_rank(report, method, 2)
        np.testing.assert_allclose(a.astype(float) @ x, b, rtol=25 * eps(dtype), atol=25 * eps(dtype))
        np.testing.assert_allclose(a.astype(float) @ x, b, rtol=25 * eps(float), atol=25 * eps(float))


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("dtype", REAL)
def test_simple_overdet(cli, tmp_path, dtype, method):
    a = np.array([[1, 2], [4, 5], [3, 4]], dtype=dtype)
    b = np.array([1, 2, 3], dtype=dtype)
    x, report = solve(cli, tmp_path, a, b, method)
    check_rank(report, method, 2)
    if report and "method" in report and method == "auto":
        assert report["method"] == "lstsq"
    np.testing.assert_allclose(x, (-0.428571428571429, 0.85714285714285), rtol=25 * eps(dtype), atol=25 * eps(dtype))
    np.testing.assert_allclose(x, (-3 / 7, 6 / 7), rtol=25 * eps(float), atol=25 * eps(float))


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("dtype", COMPLEX)
def test_simple_overdet_complex(cli, tmp_path, dtype, method):
    a = np.array([[1 + 2j, 2], [4, 5], [3, 4]], dtype=dtype)
    b = np.array([1, 2 + 4j, 3], dtype=dtype)
    x, report = solve(cli, tmp_path, a, b, method)
    check_rank(report, method, 2)
    np.testing.assert_allclose(x, (-0.4831460674157303 + 0.258426966292135j, 0.921348314606741 + 0.292134831460674j),
                               rtol=25 * eps(dtype), atol=25 * eps(dtype))
    wide = a.astype(np.complex128)
    np.testing.assert_allclose(x, direct_lstsq(wide, b.astype(np.complex128)), rtol=25 * eps(float),
                               atol=25 * eps(float))


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("dtype", REAL)
def test_simple_underdet(cli, tmp_path, dtype, method):
    """Minimum-norm solution of a wide system (LSQR/LSMR from x0 = 0 give it too)."""
    a = np.array([[1, 2, 3], [4, 5, 6]], dtype=dtype)
    b = np.array([1, 2], dtype=dtype)
    x, report = solve(cli, tmp_path, a, b, method)
    check_rank(report, method, 2)
    np.testing.assert_allclose(x, (-0.055555555555555, 0.111111111111111, 0.277777777777777),
                               rtol=25 * eps(dtype), atol=25 * eps(dtype))
    np.testing.assert_allclose(x, (-1 / 18, 1 / 9, 5 / 18), rtol=25 * eps(float), atol=25 * eps(float))


def random_square(n, dtype, rng, complex_=False):
    a = rng.random_sample([n, n])
    if complex_:
        a = a + 1j * rng.random_sample([n, n])
    a[np.arange(n), np.arange(n)] = 20 * (0.1 + a[np.arange(n), np.arange(n)])
    return a.astype(dtype)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("n", [20, 200])
@pytest.mark.parametrize("dtype", REAL)
def test_random_exact(cli, tmp_path, dtype, n, method):
    rng = np.random.RandomState(1234)
    a = random_square(n, dtype, rng)
    tol = 500 * eps(dtype) if dtype == np.float32 else 1000 * eps(dtype)
    for _ in range(2 if n == 200 else 4):
        b = rng.random_sample([n, 3]).astype(dtype)
        x, report = solve(cli, tmp_path, a, b, method)
        check_rank(report, method, n)
        np.testing.assert_allclose(a.astype(float) @ x, b, rtol=tol, atol=tol)
        np.testing.assert_allclose(a.astype(float) @ x, b, rtol=1000 * eps(float), atol=1000 * eps(float))


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("n", [20, 200])
@pytest.mark.parametrize("dtype", COMPLEX)
def test_random_complex_exact(cli, tmp_path, dtype, n, method):
    rng = np.random.RandomState(1234)
    a = random_square(n, dtype, rng, complex_=True)
    tol = 400 * eps(dtype) if dtype == np.complex64 else 1000 * eps(dtype)
    for _ in range(2 if n == 20 else 1):
        b = rng.random_sample([n, 3]).astype(dtype)
        x, report = solve(cli, tmp_path, a, b, method)
        check_rank(report, method, n)
        wide = a.astype(np.complex128)
        np.testing.assert_allclose(wide @ x, b, rtol=tol, atol=tol)
        np.testing.assert_allclose(wide @ x, b, rtol=1000 * eps(float), atol=1000 * eps(float))


def random_tall(n, m, rng, complex_=False):
    a = rng.random_sample([n, m])
    if complex_:
        a = a + 1j * rng.random_sample([n, m])
    a[np.arange(m), np.arange(m)] = 20 * (0.1 + a[np.arange(m), np.arange(m)])
    return a


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("shape", [(20, 15), (200, 2)])
@pytest.mark.parametrize("dtype", REAL)
def test_random_overdet(cli, tmp_path, dtype, shape, method):
    rng = np.random.RandomState(1234)
    a = random_tall(*shape, rng).astype(dtype)
    for _ in range(2):
        b = rng.random_sample([shape[0], 3]).astype(dtype)
        x, report = solve(cli, tmp_path, a, b, method)
        check_rank(report, method, shape[1])
        reference = direct_lstsq(a.astype(float), b.astype(float))
        np.testing.assert_allclose(x, reference, rtol=25 * eps(dtype), atol=25 * eps(dtype))
        np.testing.assert_allclose(x, reference, rtol=25 * eps(float), atol=25 * eps(float))


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("shape", [(20, 15), (200, 2)])
@pytest.mark.parametrize("dtype", COMPLEX)
def test_random_complex_overdet(cli, tmp_path, dtype, shape, method):
    rng = np.random.RandomState(1234)
    a = random_tall(*shape, rng, complex_=True).astype(dtype)
    b = rng.random_sample([shape[0], 3]).astype(dtype)
    x, report = solve(cli, tmp_path, a, b, method)
    check_rank(report, method, shape[1])
    reference = direct_lstsq(a.astype(np.complex128), b.astype(np.complex128))
    np.testing.assert_allclose(x, reference, rtol=25 * eps(dtype), atol=25 * eps(dtype))
    np.testing.assert_allclose(x, reference, rtol=25 * eps(float), atol=25 * eps(float))


@pytest.mark.parametrize("method", ["auto", "lsqr", "lsmr"])
def test_rank_deficient_gives_the_minimum_norm_solution(cli, tmp_path, method):
    """Not in scipy's TestLstsq but in its docstring's promise (and gelsy's): a rank-2 6x4 matrix."""
    rng = np.random.RandomState(7)
    a = rng.standard_normal((6, 2)) @ rng.standard_normal((2, 4))
    b = rng.standard_normal(6)
    x, report = solve(cli, tmp_path, a, b, method)
    np.testing.assert_allclose(x, np.linalg.pinv(a) @ b, rtol=1e-12, atol=1e-12)
    if method == "auto":
        assert report["method"] == "lstsq" and report["metrics"]["rank"] == 2


@pytest.mark.parametrize("method", ["auto", "lstsq", "lsqr", "lsmr"])
@pytest.mark.parametrize("a_shape,b_shape", [((0, 2), (0,)), ((0, 4), (0, 2)), ((4, 0), (4,)), ((4, 0), (4, 2))])
def test_empty(cli, tmp_path, a_shape, b_shape, method):
    """scipy's test_empty: x = 0 of shape (n,) or (n, k). auto and lstsq agree; the iterative least-squares
    methods refuse an empty matrix (exit 4, naming lstsq)."""
    path = tmp_path / "e.h5"
    write_arrays(str(path), {"A": np.zeros(a_shape), "b": np.ones(b_shape)})
    result = cli(["solve", f"{path}:/A", "--rhs", f"{path}:/b", "-m", method, "-o", tmp_path / "x.h5", "--quiet",
                  "--strict"])
    if method in ("lsqr", "lsmr"):
        assert result.exit_code == 4 and "empty" in result.stderr and "lstsq" in result.stderr
        return
    assert result.exit_code == 0, result.stderr
    with h5py.File(tmp_path / "x.h5") as fh:
        x = fh["x"][()]
    assert x.shape == (a_shape[1], *b_shape[1:]) and not x.any()


@pytest.mark.parametrize("method", ["auto", "lsqr", "lsmr"])
def test_check_finite(cli, tmp_path, method):
    """scipy's check_finite=True raises ValueError on inf; matcli refuses it on reading (exit 4)."""
    path = tmp_path / "inf.h5"
    write_arrays(str(path), {"A": np.array([[1.0, 2.0], [3.0, np.inf]]), "b": np.array([1.0, 0.0])})
    result = cli(["solve", f"{path}:/A", "--rhs", f"{path}:/b", "-m", method, "-o", tmp_path / "x.h5", "--quiet",
                  "--strict"])
    assert result.exit_code == 4 and "NaN or Inf" in result.stderr
