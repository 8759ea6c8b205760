"""A tiny sparse system is read densely by numpy alone and solved by numpy's LAPACK (issue #22): the
same answers as the scipy path to rounding, the same statuses, and the same refusals of hostile files.

References: the scipy path on the same files (``--param backend=superlu`` keeps an input sparse:
SuperLU, as before the dense route existed), scipy.sparse's own ``toarray`` for the readers, and
scipy.linalg's LAPACK wrappers for the dense kernels.
"""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import scipy.linalg as sla
import scipy.sparse as sp

from matcli.core.result import Status
from matcli.io.load import read_matrix, read_matrix_densified
from matcli.methods.solve import direct
from tests.conftest import solve_outputs
from tests.test_hostile_hdf5 import CASES as HDF5_CASES
from tests.test_hostile_mtx import BUDGET, HOSTILE, INVALID, INVALID_FIXTURES, check_refused

EPS = np.finfo(float).eps
ORDER = min(direct.NUMPY_LU_MAX, direct.NUMPY_CHOLESKY_MAX)


def write_group(path, name, matrix, *, csc=False, data=None, index_dtype=None):
    """``matrix`` as an anndata-style CSR (or CSC) group ``name`` of ``path`` (appending); ``data``
    overrides the stored values (another dtype), ``index_dtype`` the stored index type."""
    stored = sp.csc_matrix(matrix) if csc else sp.csr_matrix(matrix)
    with h5py.File(path, "a") as fh:
        group = fh.create_group(name)
        group.attrs["encoding-type"] = "csc_matrix" if csc else "csr_matrix"
        group.attrs["encoding-version"] = "0.1.0"
        group.attrs["shape"] = stored.shape
        group["data"] = stored.data if data is None else data
        group["indices"] = stored.indices if index_dtype is None else stored.indices.astype(index_dtype)
        group["indptr"] = stored.indptr if index_dtype is None else stored.indptr.astype(index_dtype)
    return f"{path}:/{name}"


def write_mtx(path, header: str, shape, entries) -> str:
    """A coordinate MatrixMarket file with ``entries`` (tuples of 1-based indices and values)."""
    lines = [" ".join(repr(v) if isinstance(v, float) else str(v) for v in entry) for entry in entries]
    path.write_text(f"%%MatrixMarket matrix coordinate {header}\n{shape[0]} {shape[1]} {len(lines)}\n"
                    + "".join(line + "\n" for line in lines))
    return str(path)


def poisson2d(k: int) -> sp.csr_matrix:
    T = sp.diags([-1.0, 2.0, -1.0], [-1, 0, 1], shape=(k, k))
    return sp.csr_matrix(sp.kron(sp.identity(k), T) + sp.kron(T, sp.identity(k)))


# --- readers: the dense form is scipy's toarray of the sparse one, bit for bit --------------------

def test_hdf5_groups_read_densely_as_scipy_builds_them(tmp_path):
    rng = np.random.default_rng(0)
    A = sp.random(40, 40, density=0.1, random_state=1, format="csr") + sp.identity(40)
    Z = A + 1j * sp.random(40, 40, density=0.1, random_state=2, format="csr")
    path = tmp_path / "g.h5"
    specs = {
        "csr": write_group(path, "csr", A),
        "csc": write_group(path, "csc", A, csc=True),
        "complex": write_group(path, "complex", Z),
        "float32": write_group(path, "float32", A, data=sp.csr_matrix(A).data.astype(np.float32)),
        "int8": write_group(path, "int8", A, data=np.round(10 * sp.csr_matrix(A).data).astype(np.int8)),
        "uint16 indices": write_group(path, "u16", A, index_dtype=np.uint16),
    }
    # duplicates and unsorted indices within a row: scipy sums them in storage order
    with h5py.File(path, "a") as fh:
        group = fh.create_group("dup")
        group.attrs["encoding-type"], group.attrs["shape"] = "csr_matrix", (3, 3)
        values = rng.standard_normal(6)
        group["data"], group["indices"], group["indptr"] = values, [2, 0, 2, 1, 1, 2], [0, 3, 5, 6]
    specs["duplicates"] = f"{path}:/dup"
    for name, spec in specs.items():
        dense, what = read_matrix_densified(spec, ORDER)
        reference = read_matrix(spec)
        assert sp.issparse(reference) and what == "sparse HDF5 group", name
        assert dense.dtype == reference.dtype and np.array_equal(dense, reference.toarray()), name


def test_a_sparse_api_array_reads_densely_as_the_same_file(tmp_path):
    from matcli.io.in_memory import arrays_as_inputs

    A = sp.random(30, 30, density=0.2, random_state=5, format="csr") + sp.identity(30)
    spec = write_group(tmp_path / "a.h5", "A", A)
    with arrays_as_inputs({"A": A}) as specs:
        held, what = read_matrix_densified(specs["A"], ORDER)
    assert what == "sparse array" and np.array_equal(held, read_matrix_densified(spec, ORDER)[0])


@pytest.mark.parametrize("header, entries, shape", [
    ("real general", [(1, 1, 1.5), (3, 2, -2.25e-3), (2, 3, 7.0), (3, 2, 0.125), (2, 2, 4.0)], (3, 3)),
    ("real symmetric", [(1, 1, 2.0), (2, 1, -1.0), (3, 2, -1.0), (2, 2, 2.0), (3, 3, 2.0)], (3, 3)),
    ("real skew-symmetric", [(2, 1, 1.5), (3, 1, -2.0), (3, 2, 0.5)], (3, 3)),
    ("integer general", [(1, 1, 3), (2, 2, -4), (3, 1, 9007199254740992)], (3, 3)),
    ("pattern symmetric", [(1, 1), (2, 1), (3, 3), (2, 2)], (3, 3)),
    ("complex hermitian", [(1, 1, 2.0, 0.0), (2, 1, 1.0, -3.0), (2, 2, 5.0, 0.0), (3, 3, 1.0, 0.0)], (3, 3)),
    ("real general", [], (4, 4)),
])
def test_coordinate_files_read_densely_as_scipy_builds_them(tmp_path, header, entries, shape):
    spec = write_mtx(tmp_path / "a.mtx", header, shape, entries)
    dense, what = read_matrix_densified(spec, ORDER)
    reference = read_matrix(spec)
    assert what == "coordinate MatrixMarket file"
    assert dense.dtype == reference.dtype and np.array_equal(dense, reference.toarray())


def test_only_square_inputs_within_the_order_and_the_budget_are_densified(tmp_path, monkeypatch):
    path = tmp_path / "g.h5"
    rect = write_group(path, "rect", sp.random(5, 4, density=0.5, random_state=0) + sp.eye(5, 4))
    big = write_group(path, "big", sp.identity(ORDER + 1, format="csr"))
    edge = write_group(path, "edge", sp.identity(ORDER, format="csr"))
    for spec in (rect, big):
        matrix, what = read_matrix_densified(spec, ORDER)
        assert sp.issparse(matrix) and what == ""
    assert isinstance(read_matrix_densified(edge, ORDER)[0], np.ndarray)
    assert sp.issparse(read_matrix_densified(edge, None)[0])
    # a budget the sparse read meets but a dense solve would not: read sparse, as before
    from matcli.io import guard

    policy = guard.InputPolicy(max_memory=ORDER * ORDER * 16 * 2)
    with guard.input_policy(policy):
        assert sp.issparse(read_matrix_densified(edge, ORDER)[0])


# --- the dense kernels against scipy's LAPACK -------------------------------------------------------

@pytest.mark.parametrize("n", [1, 63, 64, 65, 200])
@pytest.mark.parametrize("lower", [True, False])
@pytest.mark.parametrize("dtype", [np.float64, np.complex128])
def test_block_triangular_substitution_matches_trsm(n, lower, dtype):
    rng = np.random.default_rng(n)
    T = rng.standard_normal((n, n)) + (1j * rng.standard_normal((n, n)) if dtype is np.complex128 else 0)
    T = (np.tril(T) if lower else np.triu(T)) + 3 * np.sqrt(n) * np.eye(n)
    B = rng.standard_normal((n, 3)).astype(dtype)
    got = direct.triangular_solve(T, B, lower=lower)
    want = sla.solve_triangular(T, B, lower=lower)
    # a backward-stable triangular solve: error within a small multiple of n eps cond(T)
    bound = 10 * n * EPS * np.linalg.cond(T) * np.linalg.norm(want)
    assert np.linalg.norm(got - want) <= bound


@pytest.mark.parametrize("n", [1, 7, 120, direct.NUMPY_LU_MAX])
@pytest.mark.parametrize("dtype", [np.float64, np.complex128])
def test_numpy_lu_matches_scipy_getrf(n, dtype, monkeypatch):
    rng = np.random.default_rng(n)
    A = rng.standard_normal((n, n)) + (1j * rng.standard_normal((n, n)) if dtype is np.complex128 else 0)
    A[:, 0] *= 1e6  # equilibration has work to do
    B = rng.standard_normal((n, 2)).astype(dtype)
    ours = direct.solve_factored(A, direct.factorize(A, "lu"), B)
    assert direct.factorize(A, "lu").info["backend"] == "lapack getrf (numpy gesv)"
    monkeypatch.setattr(direct, "NUMPY_LU_MAX", 0)
    theirs = direct.solve_factored(A, direct.factorize(A, "lu"), B)
    assert ours.status is theirs.status is Status.CONVERGED_DIRECT
    x, y = ours.outputs["x"], theirs.outputs["x"]
    assert np.linalg.norm(x - y) <= 100 * n * EPS * np.linalg.cond(A) * np.linalg.norm(y)
    assert ours.metrics["lapack_ratio"] < direct.RATIO_THRESHOLD


def test_numpy_lu_reports_an_exactly_singular_matrix_as_scipy_does(monkeypatch):
    A = np.array([[1.0, 2.0, 3.0], [2.0, 4.0, 6.0], [0.0, 1.0, 1.0]])
    ours = direct.factorize(A, "lu")
    monkeypatch.setattr(direct, "NUMPY_LU_MAX", 0)
    theirs = direct.factorize(A, "lu")
    assert ours.failure is theirs.failure is Status.DIVERGED_SINGULAR
    assert ours.message == theirs.message


def test_numpy_cholesky_up_to_its_bound_matches_scipy_potrf(monkeypatch):
    k = 31
    A = poisson2d(k).toarray()  # order 961 <= NUMPY_CHOLESKY_MAX: 16 diagonal blocks
    assert A.shape[0] <= direct.NUMPY_CHOLESKY_MAX
    # the eigenvalues of the 2-D Poisson matrix are 4 sin^2(i pi / (2 (k + 1))) + 4 sin^2(j pi / (2 (k + 1)))
    cond = (np.sin(k * np.pi / (2 * (k + 1))) / np.sin(np.pi / (2 * (k + 1)))) ** 2
    b = np.random.default_rng(3).standard_normal(A.shape[0])
    ours = direct.solve_factored(A, direct.factorize(A, "cholesky"), b)
    monkeypatch.setattr(direct, "NUMPY_CHOLESKY_MAX", 0)
    theirs = direct.solve_factored(A, direct.factorize(A, "cholesky"), b)
    assert ours.status is theirs.status is Status.CONVERGED_DIRECT
    y = theirs.outputs["x"]
    assert np.linalg.norm(ours.outputs["x"] - y) <= 100 * A.shape[0] * EPS * cond * np.linalg.norm(y)


# --- whole solves: the dense route against the sparse one on the same files -------------------------

def _systems(tmp_path):
    """(name, matrix spec, rhs spec, scipy matrix) of the catalogue."""
    rng = np.random.default_rng(22)
    path = tmp_path / "systems.h5"
    n = 60
    spd = poisson2d(8)
    nonsym = sp.csr_matrix(poisson2d(8) + sp.diags([0.7], [1], shape=(64, 64)))
    hermitian = sp.csr_matrix(spd + 1j * (sp.diags([0.5], [1], shape=(64, 64)) - sp.diags([0.5], [-1], shape=(64, 64))))
    complex_nonsym = sp.csr_matrix(nonsym + 1j * sp.random(64, 64, density=0.05, random_state=3))
    G = sp.random(n, n, density=0.1, random_state=4, format="csr") + 4 * sp.identity(n)
    singular = sp.lil_matrix(poisson2d(5))
    singular[3, :] = singular[2, :]
    singular = sp.csr_matrix(singular)
    cases = {"spd": spd, "nonsymmetric": nonsym, "hermitian": hermitian, "complex nonsymmetric": complex_nonsym,
             "general": G, "singular": singular}
    with h5py.File(path, "w") as fh:
        for name, A in cases.items():
            m = A.shape[0]
            fh[f"b_{name}".replace(" ", "_")] = rng.standard_normal(m)
            if name == "singular":
                fh["b_singular_consistent"] = A @ rng.standard_normal(m)
    out = []
    for name, A in cases.items():
        key = name.replace(" ", "_")
        out.append((name, write_group(path, key, A), f"{path}:/b_{key}", A))
    out.append(("singular consistent", f"{path}:/singular", f"{path}:/b_singular_consistent", singular))
    out.append(("float32", write_group(path, "f32", spd, data=spd.data.astype(np.float32)), f"{path}:/b_spd", spd))
    ints = sp.csr_matrix(np.round(4 * nonsym.toarray()))
    out.append(("integer", write_group(path, "ints", ints, data=ints.data.astype(np.int32)), f"{path}:/b_nonsymmetric",
                ints))
    P = poisson2d(6)
    lower = sp.tril(P).tocoo()
    pattern = write_mtx(tmp_path / "pattern.mtx", "pattern symmetric", P.shape,
                        [(i + 1, j + 1) for i, j in zip(lower.row, lower.col)])
    with h5py.File(path, "a") as fh:
        fh["b_36"] = rng.standard_normal(36)
    out.append(("pattern symmetric MatrixMarket", pattern, f"{path}:/b_36",
                sp.csr_matrix(P.astype(bool).astype(float))))
    sym = write_mtx(tmp_path / "sym.mtx", "real symmetric", P.shape,
                    [(i + 1, j + 1, float(v)) for i, j, v in zip(lower.row, lower.col, lower.data)])
    out.append(("symmetric MatrixMarket", sym, f"{path}:/b_36", P))
    return out


@pytest.fixture(scope="module")
def systems(tmp_path_factory):
    return _systems(tmp_path_factory.mktemp("systems"))


CATALOGUE = ["spd", "nonsymmetric", "hermitian", "complex nonsymmetric", "general", "singular", "singular consistent",
             "float32", "integer", "pattern symmetric MatrixMarket", "symmetric MatrixMarket"]


@pytest.mark.parametrize("name", CATALOGUE)
@pytest.mark.parametrize("method", ["auto", "lu", "cholesky"])
def test_dense_route_solves_as_the_sparse_route(cli, tmp_path, systems, name, method):
    _, spec, rhs, A = next(case for case in systems if case[0] == name)
    (tmp_path / "dense").mkdir()
    (tmp_path / "sparse").mkdir()
    dense_run, dense_report, x = solve_outputs(cli, tmp_path / "dense", [spec, "--rhs", rhs, "-m", method])
    sparse_run, sparse_report, y = solve_outputs(cli, tmp_path / "sparse", [spec, "--rhs", rhs, "-m", method,
                                                                            "--param", "backend=superlu"])
    assert dense_run.exit_code == sparse_run.exit_code == 0, (dense_run.stderr, sparse_run.stderr)
    assert dense_report["problem"]["input_storage"].endswith("read densely")
    assert "input_storage" not in sparse_report["problem"]
    assert dense_report["method"] == sparse_report["method"]
    assert dense_report["status"]["reason"] == sparse_report["status"]["reason"]
    assert dense_report["problem"]["compute_dtype"] == sparse_report["problem"]["compute_dtype"]
    assert (x is None) == (y is None)
    if x is None:
        return  # the same negative status and no solution on either route (Cholesky of a nonsymmetric A)
    # two backward-stable (minimum-norm) solutions of one system differ by at most a multiple of
    # n eps cond(A) ||x||, cond over the nonzero singular values
    s = np.linalg.svd(A.toarray(), compute_uv=False)
    cond = s[0] / s[s > A.shape[0] * EPS * s[0]][-1]
    assert np.linalg.norm(x - y) <= 100 * A.shape[0] * EPS * cond * np.linalg.norm(y)
    if dense_report["status"]["reason"] != "least_squares_only":  # b in the range of A: a solution
        for report in (dense_report, sparse_report):
            assert report["metrics"]["relative_residual"] <= 1e3 * EPS * cond


# --- hostile inputs: the dense route refuses them as the sparse one does -------------------------------

SOLVE = ["solve", "{spec}", "-o", "{out}"]
#: factorize's cases, but an empty matrix, which solve answers (x = 0, auto's least squares)
HDF5_SOLVE = [(build, code, fragment) for build, argv, code, fragment in HDF5_CASES
              if argv[0] == "factorize" and fragment != "empty"]


@pytest.mark.parametrize("build, code, fragment", HDF5_SOLVE,
                         ids=[f"{c[0].__name__ if c[0].__name__ != '<lambda>' else 'case'}-{i}"
                              for i, c in enumerate(HDF5_SOLVE)])
def test_hostile_hdf5_file_ends_a_tiny_solve_with_one_line(cli, tmp_path, monkeypatch, build, code, fragment):
    monkeypatch.setenv("MATCLI_MAX_MEMORY", BUDGET)
    monkeypatch.delenv("HDF5_EXT_PREFIX", raising=False)
    monkeypatch.delenv("HDF5_VDS_PREFIX", raising=False)
    monkeypatch.chdir(tmp_path)
    spec = build(tmp_path)
    out = tmp_path / "out.h5"
    res = cli([a.format(spec=spec, out=out) for a in SOLVE])
    lines = res.stderr.strip().splitlines()
    assert (res.exit_code, len(lines)) == (code, 1), res.stderr
    assert lines[0].startswith(f"matcli: error: {spec.split('.h5')[0]}.h5"), lines[0]
    assert fragment in lines[0]
    assert not out.exists()


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_matrix_market_file_ends_a_tiny_solve_with_one_line(name, tmp_path, capsys):
    content, code, expected = HOSTILE[name]
    path = tmp_path / f"{name}.mtx"
    path.write_bytes(content)
    out = tmp_path / "out.h5"
    check_refused(path, out, capsys, code, expected, args=["solve", path, "-o", out, "--max-memory", BUDGET])


@pytest.mark.parametrize("name", sorted(INVALID_FIXTURES))
def test_invalid_fixture_ends_a_tiny_solve_naming_its_defect(name, tmp_path, capsys):
    path = INVALID / name
    if not path.exists():
        pytest.skip(f"{name} not in this data root")
    out = tmp_path / "out.h5"
    check_refused(path, out, capsys, 4, INVALID_FIXTURES[name], args=["solve", path, "-o", out, "--max-memory", BUDGET])
