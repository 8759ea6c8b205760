"""``matcli factorize`` end to end: exit codes, output files, report fields."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import scipy.sparse as sp

from matcli.io.hdf5 import write_arrays
from tests.conftest import data_file


@pytest.fixture
def lowrank(tmp_path):
    """A 300 x 200 matrix with singular values 0.7^i (i < 60) and two blocks of extra rows/columns."""
    rng = np.random.default_rng(0)
    U, _ = np.linalg.qr(rng.standard_normal((340, 60)))
    V, _ = np.linalg.qr(rng.standard_normal((230, 60)))
    full = (U * 0.7 ** np.arange(60)) @ V.T
    path = tmp_path / "A.h5"
    write_arrays(str(path), {"A": full[:300, :200], "R": full[300:, :200], "C": full[:300, 200:]})
    return path, full


def run(cli, args, tmp_path, name="report.json"):
    report = tmp_path / name
    result = cli(["factorize", *map(str, args), "--report", str(report), "--quiet", "--seed", "3"])
    facts = json.loads(report.read_text()) if report.exists() else None
    return result, facts


def test_randomized_svd_writes_factors_and_report(cli, tmp_path, lowrank):
    path, full = lowrank
    out = tmp_path / "f.h5"
    result, report = run(cli, [f"{path}:/A", "--kind", "svd", "--method", "randomized", "--rank", "6",
                               "-o", out], tmp_path)
    assert result.exit_code == 0, result.stderr
    s_ref = np.linalg.svd(full[:300, :200], compute_uv=False)
    with h5py.File(out) as fh:
        U, s, Vt = fh["U"][()], fh["s"][()], fh["Vt"][()]
        assert fh.attrs["method"] == "svd-randomized"
    assert U.shape == (300, 6) and Vt.shape == (6, 200)
    np.testing.assert_allclose(s, s_ref[:6], rtol=1e-10)
    assert report["method"] == "svd-randomized"
    assert report["method_reason"] == "requested with --method"
    assert report["params"]["power_iters"] == 4 and report["params"]["oversample"] == 10
    assert report["seed"] == 3 and report["status"]["converged"]
    optimal = np.sqrt(np.sum(s_ref[6:] ** 2) / np.sum(s_ref**2))
    assert report["metrics"]["reconstruction_error"] == pytest.approx(optimal, rel=1e-8)
    assert report["metrics"]["orthogonality_loss"] < 1e-12
    assert report["info"]["reconstruction_error_method"] == "exact"
    assert report["problem"]["shape"] == [300, 200]
    assert len(report["history"]["sigma_change"]) == 4


def test_auto_picks_dense_for_small_and_lanczos_for_large_sparse(cli, tmp_path, lowrank):
    path, _ = lowrank
    result, report = run(cli, [f"{path}:/A", "--rank", "5", "-o", tmp_path / "a.h5"], tmp_path)
    assert result.exit_code == 0, result.stderr
    assert report["method"] == "svd-dense" and "small" in report["method_reason"]
    big = tmp_path / "big.h5"
    write_arrays(str(big), {"A": sp.random(3000, 1500, density=0.002, random_state=1, format="csr")})
    result, report = run(cli, [big, "--rank", "3", "-o", tmp_path / "b.h5"], tmp_path, "r2.json")
    assert result.exit_code == 0, result.stderr
    assert report["method"] == "svd-lanczos" and "large" in report["method_reason"]


def test_rank_auto_meets_tolerance_on_sparse_real_matrix(cli, tmp_path, shared_data):
    matrix = data_file("matrices/sherman5.mtx")
    result, report = run(cli, [matrix, "--method", "randomized", "--rank", "auto", "--tol", "0.7",
                               "-o", tmp_path / "f.h5"], tmp_path)
    assert result.exit_code == 0, result.stderr
    assert report["method"] == "svd-randomized"
    assert report["status"]["reason"] == "converged_rtol"
    assert report["metrics"]["reconstruction_error"] <= 0.7 * (1 + 1e-6)
    assert report["params"]["tol"] == 0.7
    # optimal rank 75; one power iteration per block gives a rank within ~20% of it
    assert 75 <= len(np.asarray(h5py.File(tmp_path / "f.h5")["s"])) <= 90


@pytest.mark.parametrize("side", ["rows", "cols"])
def test_update_with_appended_rows_or_columns(cli, tmp_path, lowrank, side):
    path, full = lowrank
    prev = tmp_path / "prev.h5"
    result, _ = run(cli, [f"{path}:/A", "--method", "dense", "--rank", "10", "-o", prev], tmp_path)
    assert result.exit_code == 0, result.stderr
    out = tmp_path / "new.h5"
    flag, spec = ("--append-rows", f"{path}:/R") if side == "rows" else ("--append-cols", f"{path}:/C")
    result, report = run(cli, [f"{path}:/A", "--update", prev, flag, spec, "-o", out], tmp_path, "u.json")
    assert result.exit_code == 0, result.stderr
    assert report["method"] == "svd-update" and "--update" in report["method_reason"]
    new = np.vstack([full[:300, :200], full[300:, :200]]) if side == "rows" else full[:300, :]
    s_ref = np.linalg.svd(new, compute_uv=False)
    with h5py.File(out) as fh:
        s = fh["s"][()]
        assert fh["U"].shape[0] == new.shape[0] and fh["Vt"].shape[1] == new.shape[1]
    # The discarded tail of A is 0.7^10 ~ 3e-2 relative: the updated values are that close.
    np.testing.assert_allclose(s, s_ref[:10], rtol=0, atol=0.7**10 * s_ref[0])
    assert report["metrics"]["reconstruction_error"] < report["metrics"]["previous_error"]


def test_sparse_lu_factors_written_in_sparse_encoding(cli, tmp_path, shared_data):
    from matcli.io.load import read_matrix

    matrix = data_file("matrices/west0479.mtx")
    out = tmp_path / "lu.h5"
    result, report = run(cli, [matrix, "--kind", "lu", "-o", out], tmp_path)
    assert result.exit_code == 0, result.stderr
    assert report["method"] == "lu-sparse"
    with h5py.File(out) as fh:
        assert fh["L"].attrs["encoding-type"] == "csc_matrix"
        P, Q = fh["P"][()], fh["Q"][()]
    L, U = read_matrix(f"{out}:/L"), read_matrix(f"{out}:/U")
    A = read_matrix(str(matrix))
    assert abs(A[P][:, Q] - L @ U).max() <= 1e-12 * abs(A).max()


def test_sparse_cholesky_and_dense_qr(cli, tmp_path, shared_data):
    matrix = data_file("matrices/494_bus.mtx")
    result, report = run(cli, [matrix, "--kind", "cholesky", "-o", tmp_path / "c.h5"], tmp_path)
    assert result.exit_code == 0, result.stderr
    assert report["method"] == "cholesky-sparse" and report["metrics"]["reconstruction_error"] < 1e-14
    result, report = run(cli, [matrix, "--kind", "qr", "-o", tmp_path / "q.h5"], tmp_path, "q.json")
    assert result.exit_code == 0, result.stderr
    assert report["method"] == "qr-dense" and report["metrics"]["orthogonality_loss"] < 1e-12


def test_not_spd_gives_negative_status_and_exit_3_under_strict(cli, tmp_path, shared_data):
    matrix = data_file("matrices/hangGlider_2.mtx")
    result, report = run(cli, [matrix, "--kind", "cholesky", "-o", tmp_path / "c.h5"], tmp_path)
    assert result.exit_code == 0
    assert report["status"]["reason"] == "diverged_not_spd" and "ldl" in report["status"]["message"]
    result, _ = run(cli, [matrix, "--kind", "cholesky", "--strict", "-o", tmp_path / "d.h5"], tmp_path, "s.json")
    assert result.exit_code == 3


def test_nmf_and_cur_through_the_cli(cli, tmp_path, shared_data):
    ratings = tmp_path / "r.h5"
    from matcli.io.load import read_observed

    obs = read_observed(str(data_file("ml-100k/u1.base")))
    write_arrays(str(ratings), {"A": sp.csr_matrix((obs.values, (obs.rows, obs.cols)), shape=obs.shape)})
    out = tmp_path / "nmf.h5"
    result, report = run(cli, [ratings, "--kind", "nmf", "--rank", "8", "--maxiter", "50", "-o", out], tmp_path)
    assert result.exit_code == 0, result.stderr
    assert report["method"] == "nmf-hals" and 0 < report["metrics"]["reconstruction_error"] < 1
    with h5py.File(out) as fh:
        assert fh["W"].shape == (943, 8) and fh["H"].shape == (8, 1682) and fh["W"][()].min() >= 0
    out = tmp_path / "cur.h5"
    result, report = run(cli, [ratings, "--kind", "cur", "--rank", "10", "-o", out], tmp_path, "c.json")
    assert result.exit_code == 0, result.stderr
    assert report["method"] == "cur-pivoted-qr"
    with h5py.File(out) as fh:
        assert fh["C"].attrs["encoding-type"] == "csc_matrix"
        assert fh["col_indices"].shape == (10,) and fh["U"].shape == (10, 10)


def test_mtx_output_of_several_factors_is_refused_naming_them(cli, tmp_path):
    """LU writes L, U and the permutations: a .mtx output (one matrix) is an error, not L alone."""
    A = np.random.default_rng(1).standard_normal((20, 20))
    path = tmp_path / "A.h5"
    write_arrays(str(path), {"A": A})
    out = tmp_path / "L.mtx"
    result, _ = run(cli, [path, "--kind", "lu", "-o", out], tmp_path)
    assert result.exit_code == 2, result.stderr
    assert "a MatrixMarket file holds one matrix" in result.stderr and "L, U" in result.stderr
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["A.h5"]


@pytest.mark.parametrize("args, code, needle", [
    (["--kind", "cholesky"], 4, "square"),
    (["--kind", "lu", "--power-iters", "3"], 2, "--power-iters"),
    (["--kind", "svd", "--method", "hals", "--rank", "2"], 2, "no method"),
    (["--kind", "svd", "--method", "randomized", "--rank", "500"], 2, "--rank"),
    (["--kind", "svd", "--method", "randomized"], 2, "--rank"),
    (["--kind", "svd", "--method", "arpack", "--rank", "abc"], 2, "--rank"),
    (["--kind", "svd", "--rank", "2", "--param", "nope=1"], 2, "nope"),
    (["--kind", "svd", "--rank", "2", "--append-rows", "x.h5:/R"], 2, "--update"),
    (["--kind", "nmf", "--rank", "2"], 4, "nonnegative"),
])
def test_errors_give_one_line_and_exit_code(cli, tmp_path, args, code, needle):
    A = np.random.default_rng(2).standard_normal((30, 20))
    path = tmp_path / "A.h5"
    write_arrays(str(path), {"A": A})
    out = tmp_path / "o.h5"
    result = cli(["factorize", str(path), *args, "-o", str(out), "--quiet"])
    assert result.exit_code == code, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in result.stderr
    assert not out.exists()


def test_methods_lists_every_factorize_method(cli):
    result = cli(["methods", "factorize"])
    assert result.exit_code == 0
    for name in ("svd-randomized", "svd-block-krylov", "svd-lanczos", "svd-arpack", "svd-propack", "svd-dense", "svd-update",
                 "nmf-hals", "nmf-mu", "nmf-robust", "cur-leverage", "cur-pivoted-qr", "qr-dense", "lu-dense",
                 "lu-sparse", "cholesky-dense", "cholesky-sparse", "ldl-dense", "eig-dense", "eig-arpack"):
        kind, _, method = name.partition("-")
        assert f"--kind {kind} --method {method} " in result.stdout  # as the user types it


def test_eig_auto_choices_and_ldl(cli, tmp_path, shared_data):
    matrix = data_file("matrices/494_bus.mtx")
    result, report = run(cli, [matrix, "--kind", "eig", "-o", tmp_path / "e.h5"], tmp_path)
    assert result.exit_code == 0, result.stderr
    assert report["method"] == "eig-dense" and report["info"]["hermitian"] is True
    assert report["metrics"]["residual"] < 1e-13
    result, report = run(cli, [matrix, "--kind", "eig", "--rank", "3", "--param", "which=LA",
                               "-o", tmp_path / "k.h5"], tmp_path, "k.json")
    assert result.exit_code == 0, result.stderr
    assert report["method"] == "eig-arpack"
    with h5py.File(tmp_path / "k.h5") as fh, h5py.File(tmp_path / "e.h5") as full:
        np.testing.assert_allclose(fh["w"][()], full["w"][()][::-1][:3], rtol=1e-10)
    result, report = run(cli, [data_file("matrices/hangGlider_2.mtx"), "--kind", "ldl", "-o", tmp_path / "l.h5"],
                         tmp_path, "l.json")
    assert result.exit_code == 0, result.stderr
    assert report["metrics"]["negative_eigenvalues"] == 733


def test_complex_matrix_svd(cli, tmp_path, shared_data):
    from matcli.io.load import read_matrix

    matrix = data_file("matrices/young1c.mtx")
    out = tmp_path / "c.h5"
    result, report = run(cli, [matrix, "--method", "arpack", "--rank", "4", "-o", out], tmp_path)
    assert result.exit_code == 0, result.stderr
    s_ref = np.linalg.svd(read_matrix(str(matrix)).toarray(), compute_uv=False)
    with h5py.File(out) as fh:
        assert fh["U"].dtype == np.complex128
        np.testing.assert_allclose(fh["s"][()], s_ref[:4], rtol=1e-10)
    assert report["metrics"]["orthogonality_loss"] < 1e-12


def test_cli_method_choices_match_the_registry():
    from matcli.cli.factorize import Method
    from matcli.methods.factorize.specs import METHODS

    registered = {name for names in METHODS.values() for name in names}
    assert registered == {m.value for m in Method} - {"auto"}
