"""Every dtype the peers accept (float32, float64, complex64, complex128, integers): every registered
solve method and every factorize kind/method either computes in double precision and answers within
the LAPACK test ratio, or refuses with a one-line usage/input error, never an internal error.

The LAPACK ratio for a solve is ||b - A x|| / (||A|| ||x|| eps n) with eps of float64: a solve done
in single precision (float32 eps ~ 1.2e-7) lands near 1e8 and fails it, so the tests check the
compute precision and not only that something came out.
"""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import scipy.sparse as sp

from matcli.io.hdf5 import write_arrays
from matcli.methods.factorize.sparse import eig_arpack
from matcli.methods.factorize.specs import SPECS as FACTORIZE_SPECS
from matcli.methods.solve.specs import SPECS as SOLVE_SPECS

DTYPES = ("float32", "float64", "complex64", "complex128", "int32", "int64")
#: Through the CLI: the dtypes the rest of the suite does not already cover.
NARROW = ("float32", "complex64", "int32")
EPS = np.finfo(np.float64).eps
#: LAPACK's threshold on its test ratios (xLATMS-based tests of the drivers).
RATIO = 30.0
N = 12


def hpd_matrix(dtype: str) -> np.ndarray:
    """An N x N Hermitian positive definite, diagonally dominant tridiagonal matrix of ``dtype``:
    integer-valued for real and integer dtypes, with a nonzero imaginary off-diagonal for complex
    ones (|off| = 1.118, so 2 |off| < 4 keeps it dominant), exactly representable in every dtype."""
    off = 1.0 + 0.5j if np.dtype(dtype).kind == "c" else 1.0
    A = 4.0 * np.eye(N) - off * np.eye(N, k=1) - np.conj(off) * np.eye(N, k=-1)
    return A.astype(dtype)


def solution_ratio(A, x, b) -> float:
    """LAPACK's solve test ratio ||b - A x||_2 / (||A||_2 ||x||_2 eps n), all in double precision."""
    A = np.asarray(A.toarray() if sp.issparse(A) else A, dtype=np.complex128)
    r = np.asarray(b, dtype=np.complex128) - A @ x
    return float(np.linalg.norm(r) / (np.linalg.norm(A, 2) * np.linalg.norm(x) * EPS * N))


@pytest.mark.parametrize("storage", ["dense", "sparse"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("method", [s.name for s in SOLVE_SPECS if s.name != "auto"])
def test_every_solve_method_solves_every_dtype_in_double(method, dtype, storage):
    dense = hpd_matrix(dtype)
    A = sp.csr_matrix(dense) if storage == "sparse" else dense
    rng = np.random.default_rng(1)
    x_true = rng.standard_normal(N)
    b = dense.astype(np.complex128 if np.dtype(dtype).kind == "c" else np.float64) @ x_true
    spec = next(s for s in SOLVE_SPECS if s.name == method)
    solver = spec.load()(A, params={p.name: p.default for p in spec.params}, precond_name="none", symmetric=True,
                         rng=np.random.default_rng(0))
    # ||b|| <= ||A|| ||x||, so a relative residual below 10 n eps keeps the ratio below 10 < 30.
    result = solver.solve(A, b, rtol=10 * N * EPS, maxiter=1000)
    assert result.status.converged, (result.status, result.message)
    x = result.outputs["x"]
    assert x.dtype == (np.complex128 if np.dtype(dtype).kind == "c" else np.float64)
    assert solution_ratio(A, x, b) < RATIO


@pytest.mark.parametrize("method,precond", [("lu", "none"), ("cholesky", "none"), ("ldl", "none"),
                                            ("minres", "amg-rs"), ("cg", "amg-sa"), ("gmres", "ilu"),
                                            ("bicgstab", "ilu"), ("lsmr", "none"), ("ssor", "none")])
def test_real_sparse_matrix_with_complex_rhs(method, precond):
    # SuperLU's real factors (lu, cholesky) and pyamg's real smoothers (minres + amg-rs) refused a
    # complex right-hand side: TypeError, exit 1 through the CLI.
    A = sp.csr_matrix(hpd_matrix("float64"))
    b = np.arange(N) + 1j * np.ones(N)
    spec = next(s for s in SOLVE_SPECS if s.name == method)
    solver = spec.load()(A, params={p.name: p.default for p in spec.params}, precond_name=precond, symmetric=True,
                         rng=np.random.default_rng(0))
    result = solver.solve(A, b, rtol=10 * N * EPS, maxiter=1000)
    assert result.status.converged and result.outputs["x"].dtype == np.complex128
    assert solution_ratio(A, result.outputs["x"], b) < RATIO
    assert result.metrics["relative_residual"] <= 10 * N * EPS


def _write(path, dtype, storage, kind="hpd"):
    dense = hpd_matrix(dtype) if kind == "hpd" else (np.abs(hpd_matrix("float64")) + 1).astype(dtype)
    A = sp.csr_matrix(dense) if storage == "sparse" else dense
    if storage == "npy":
        np.save(path, dense)
        return str(path)
    write_arrays(str(path), {"A": A})
    return f"{path}:/A"


@pytest.mark.parametrize("storage", ["dense", "sparse", "npy"])
@pytest.mark.parametrize("dtype", NARROW)
@pytest.mark.parametrize("method", ["auto", "lu", "gmres", "bicgstab"])
def test_solve_cli_reads_single_precision_and_reports_compute_dtype(cli, tmp_path, method, dtype, storage):
    spec = _write(tmp_path / ("A.npy" if storage == "npy" else "A.h5"), dtype, storage)
    out, rep = tmp_path / "x.h5", tmp_path / "r.json"
    result = cli(["solve", spec, "-m", method, "--rtol", "1e-13", "-o", out, "--report", rep, "--quiet"])
    assert result.exit_code == 0, result.stderr
    report = json.loads(rep.read_text())
    complex_input = np.dtype(dtype).kind == "c"
    assert report["problem"]["compute_dtype"] == ("complex128" if complex_input else "float64")
    with h5py.File(out, "r") as fh:
        x = fh["x"][()]
    assert solution_ratio(hpd_matrix(dtype), x, np.ones(N)) < RATIO


def test_solve_cli_complex_rhs_for_real_sparse_matrix(cli, tmp_path):
    path = tmp_path / "p.h5"
    write_arrays(str(path), {"A": sp.csr_matrix(hpd_matrix("float32")), "b": (np.ones(N) + 1j).astype("complex64")})
    out, rep = tmp_path / "x.h5", tmp_path / "r.json"
    result = cli(["solve", f"{path}:/A", "--rhs", f"{path}:/b", "-m", "lu", "-o", out, "--report", rep, "--quiet"])
    assert result.exit_code == 0, result.stderr
    assert json.loads(rep.read_text())["problem"]["compute_dtype"] == "complex128"
    with h5py.File(out, "r") as fh:
        assert solution_ratio(hpd_matrix("float64"), fh["x"][()], np.ones(N) + 1j) < RATIO


@pytest.mark.parametrize("method", ["gmres", "minres", "cg"])
def test_solve_cli_batch_of_real_and_complex_systems(cli, tmp_path, method):
    # the setup made for the first (real) system met the complex ones: TypeError, exit 1
    path = tmp_path / "batch.h5"
    arrays = {}
    for i, dtype in enumerate(("float32", "complex64", "int32")):
        arrays[f"s{i}/A"] = sp.csr_matrix(hpd_matrix(dtype))
        arrays[f"s{i}/b"] = np.ones(N, dtype=dtype)
    write_arrays(str(path), arrays)
    out, rep = tmp_path / "x.h5", tmp_path / "r.json"
    result = cli(["solve", f"{path}:/", "--batch", "-m", method, "--precond", "amg-sa", "--rtol", "1e-13",
                  "-o", out, "--report", rep, "--quiet"])
    assert result.exit_code == 0, result.stderr
    assert json.loads(rep.read_text())["problem"]["compute_dtype"] == "complex128"
    with h5py.File(out, "r") as fh:
        for i, dtype in enumerate(("float32", "complex64", "int32")):
            assert solution_ratio(hpd_matrix(dtype), fh[f"x/s{i}"][()], np.ones(N)) < RATIO


@pytest.mark.parametrize("batch", [False, True])
def test_solve_cli_refuses_ruge_stuben_amg_for_complex_matrices(cli, tmp_path, batch):
    # pyamg's Ruge-Stuben setup has no complex kernels: TypeError, exit 1
    path = tmp_path / "c.h5"
    write_arrays(str(path), {"s0/A": sp.csr_matrix(hpd_matrix("float64")), "s1/A": sp.csr_matrix(hpd_matrix("complex64"))})
    spec = [f"{path}:/", "--batch"] if batch else [f"{path}:/s1/A"]
    result = cli(["solve", *spec, "-m", "gmres", "--precond", "amg-rs", "-o", tmp_path / "x.h5", "--quiet"])
    assert result.exit_code == 2 and "amg-rs" in result.stderr and "internal" not in result.stderr


def _factorize_args(name: str) -> list[str]:
    kind, method = name.split("-", 1)
    args = ["--kind", kind, "-m", method]
    if kind in ("svd", "nmf", "cur") or method == "arpack":
        args += ["--rank", "3"]
    return args


@pytest.mark.parametrize("storage", ["dense", "sparse"])
@pytest.mark.parametrize("dtype", NARROW)
@pytest.mark.parametrize("name", [s.name for s in FACTORIZE_SPECS if s.name != "svd-update"])
def test_every_factorize_method_takes_every_dtype(cli, tmp_path, name, dtype, storage):
    kind = name.split("-", 1)[0]
    spec = _write(tmp_path / "A.h5", dtype, storage, kind="nonnegative" if kind == "nmf" else "hpd")
    out, rep = tmp_path / "f.h5", tmp_path / "r.json"
    result = cli(["factorize", spec, *_factorize_args(name), "-o", out, "--report", rep, "--quiet"])
    if kind == "nmf" and np.dtype(dtype).kind == "c":
        # documented refusal: NMF is defined for real nonnegative matrices only
        assert result.exit_code == 4 and "complex" in result.stderr
        return
    assert result.exit_code == 0, result.stderr
    report = json.loads(rep.read_text())
    assert report["status"]["converged"], report["status"]
    assert report["problem"]["compute_dtype"] == ("complex128" if np.dtype(dtype).kind == "c" else "float64")
    metrics = report["metrics"]
    if kind in ("lu", "qr", "cholesky", "ldl"):
        assert metrics["reconstruction_error"] < RATIO * N * EPS
    if kind == "svd":
        # the 3 largest singular values of the double-precision matrix, to working accuracy
        with h5py.File(out, "r") as fh:
            s = fh["s"][()]
        exact = np.linalg.svd(hpd_matrix(dtype).astype(np.complex128), compute_uv=False)[:3]
        np.testing.assert_allclose(s, exact, rtol=RATIO * N * EPS)
    if kind == "eig":
        assert metrics["residual"] < RATIO * N * EPS


@pytest.mark.parametrize("args", [["--kind", "svd", "-m", "arpack", "--rank", "2"],
                                  ["--kind", "eig", "-m", "arpack", "--rank", "2"],
                                  ["--kind", "eig", "-m", "arpack", "--rank", "2", "--param", "hermitian=no"]])
def test_arpack_on_zero_matrix_returns_zeros_and_orthonormal_vectors(cli, tmp_path, args):
    # ARPACK stops with error -9 ("starting vector is zero") after its first product with A = 0
    path = tmp_path / "z.h5"
    write_arrays(str(path), {"A": sp.csr_matrix((N, N))})
    out, rep = tmp_path / "f.h5", tmp_path / "r.json"
    result = cli(["factorize", f"{path}:/A", *args, "-o", out, "--report", rep, "--quiet"])
    assert result.exit_code == 0, result.stderr
    assert json.loads(rep.read_text())["status"]["converged"]
    with h5py.File(out, "r") as fh:
        values = fh["s"][()] if "s" in fh else fh["w"][()]
        vectors = fh["U"][()] if "U" in fh else fh["V"][()]
    assert values.shape == (2,) and np.all(values == 0)
    np.testing.assert_allclose(vectors.conj().T @ vectors, np.eye(2), atol=N * EPS)


def test_arpack_complex_rank_limits_are_usage_errors(cli, tmp_path):
    # scipy hands complex input to the non-Hermitian ARPACK driver, which returns at most n - 2
    # pairs; k = n - 1 raised TypeError (exit 1) in svds and in eigsh.
    path = tmp_path / "c.h5"
    write_arrays(str(path), {"A": sp.csr_matrix(hpd_matrix("complex128"))})
    for kind in ("svd", "eig"):
        result = cli(["factorize", f"{path}:/A", "--kind", kind, "-m", "arpack", "--rank", str(N - 1),
                      "-o", tmp_path / f"{kind}.h5", "--quiet"])
        assert result.exit_code == 2, result.stderr
        assert f"--rank <= {N - 2}" in result.stderr and "internal" not in result.stderr
    with pytest.raises(ValueError, match="rank <= 10"):
        eig_arpack(sp.csr_matrix(hpd_matrix("complex128")), rank=N - 1, hermitian=True, rng=np.random.default_rng(0))
