"""``--update-lowrank X,Y``: the SVD of ``A + X Y^H`` updated from the SVD of ``A``, through the CLI
and the API, against the dense SVD of the sum; shape errors name the file (exit 4, nothing written);
the status is earned from the triplet residuals against the sum."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import scipy.sparse as sp

import matcli
from matcli.io.hdf5 import write_arrays

EPS = np.finfo(float).eps


@pytest.fixture
def terms(tmp_path):
    """A 120 x 90 matrix of exact rank 6 (values 20 ... 1), its rank-6 SVD, and q = 2 terms."""
    rng = np.random.default_rng(30)
    U, _ = np.linalg.qr(rng.standard_normal((120, 6)))
    V, _ = np.linalg.qr(rng.standard_normal((90, 6)))
    s = np.geomspace(20, 1, 6)
    A = (U * s) @ V.T
    X, Y = rng.standard_normal((120, 2)), rng.standard_normal((90, 2))
    write_arrays(str(tmp_path / "A.h5"), {"A": A})
    write_arrays(str(tmp_path / "prev.h5"), {"U": U, "s": s, "Vt": V.T})
    write_arrays(str(tmp_path / "XY.h5"), {"X": X, "Y": Y, "Y_short": Y[:-1], "Y3": rng.standard_normal((90, 3)),
                                           "x": X[:, 0], "y": Y[:, 0]})
    return tmp_path, A, X, Y


def _run(cli, folder, args, out="new.h5"):
    report = folder / "r.json"
    result = cli(["factorize", str(folder / "A.h5") + ":/A", "--update", str(folder / "prev.h5"), *map(str, args),
                  "-o", str(folder / out), "--report", str(report), "--quiet", "--force", "--seed", "1"])
    return result, (json.loads(report.read_text()) if report.exists() and result.exit_code == 0 else None)


def _svd(path):
    with h5py.File(path) as fh:
        return fh["U"][()], fh["s"][()], fh["Vt"][()]


def test_exact_rank_plus_two_terms_is_updated_exactly(cli, terms):
    # rank(A + X Y^H) <= 6 + 2 and both complements are exact: the update is the SVD of the sum
    folder, A, X, Y = terms
    result, report = _run(cli, folder, ["--update-lowrank", f"{folder}/XY.h5:/X,{folder}/XY.h5:/Y", "--rank", "8"])
    assert result.exit_code == 0, result.stderr
    assert report["method"] == "svd-update" and report["info"]["lowrank_terms"] == 2
    assert report["status"]["reason"] == "converged_direct"
    U, s, Vt = _svd(folder / "new.h5")
    new = A + X @ Y.T
    s_ref = np.linalg.svd(new, compute_uv=False)
    np.testing.assert_allclose(s, s_ref[:8], rtol=0, atol=1e3 * EPS * s_ref[0])
    np.testing.assert_allclose((U * s) @ Vt, new, rtol=0, atol=1e3 * EPS * s_ref[0])
    assert report["metrics"]["frobenius_norm"] == pytest.approx(np.linalg.norm(new), rel=1e-12)


def test_approximate_update_is_honest_about_its_residuals(cli, terms):
    # A plus a Gaussian tail, updated from its rank-6 SVD: the tail is discarded, so the triplets are
    # those of a compression; the residual against the sum (measured densely here) is reported, and only
    # a --tol above it converges
    folder, A, X, Y = terms
    A = A + 0.05 * np.random.default_rng(33).standard_normal(A.shape)
    U, s, Vt = np.linalg.svd(A, full_matrices=False)
    write_arrays(str(folder / "A2.h5"), {"A": A})
    write_arrays(str(folder / "prev2.h5"), {"U": U[:, :6], "s": s[:6], "Vt": Vt[:6]})
    spec = f"{folder}/XY.h5:/X,{folder}/XY.h5:/Y"

    def run(*extra):
        report = folder / "r2.json"
        result = cli(["factorize", f"{folder}/A2.h5:/A", "--update", str(folder / "prev2.h5"), "--update-lowrank",
                      spec, "--rank", "6", *extra, "-o", str(folder / "new2.h5"), "--report", str(report), "--quiet",
                      "--force"])
        assert result.exit_code == 0, result.stderr
        return json.loads(report.read_text())

    report = run()
    U, s, Vt = _svd(folder / "new2.h5")
    new = A + X @ Y.T
    V = Vt.T
    dense = max(np.max(np.linalg.norm(new @ V - U * s, axis=0)), np.max(np.linalg.norm(new.T @ U - V * s, axis=0)))
    assert report["metrics"]["max_triplet_residual"] == pytest.approx(dense / s[0], rel=1e-8)
    assert dense / s[0] > 1e-4 and report["status"]["reason"] == "diverged_tolerance_unreachable"
    s_ref = np.linalg.svd(new, compute_uv=False)
    # a triplet with residual rho has a singular value of the sum within rho (absolute)
    for value in s:
        assert np.min(np.abs(s_ref - value)) <= dense * (1 + 1e-10)
    assert run("--tol", f"{2 * dense / s[0]:.3g}")["status"]["reason"] == "converged_rtol"
    assert run("--tol", f"{dense / s[0] / 2:.3g}")["status"]["reason"] == "diverged_tolerance_unreachable"


@pytest.mark.parametrize("pair, bad, needle", [
    ("X,Y_short", "XY.h5:/Y_short", "89 rows"), ("X,Y3", "XY.h5:/Y3", "3 columns"), ("Y,X", "XY.h5:/Y", "90 rows"),
    ("x,Y", "XY.h5", "1-D")])
def test_shape_errors_name_the_file_exit_4_and_write_nothing(cli, terms, pair, bad, needle):
    folder, *_ = terms
    x, y = pair.split(",")
    result, _ = _run(cli, folder, ["--update-lowrank", f"{folder}/XY.h5:/{x},{folder}/XY.h5:/{y}"], out="bad.h5")
    assert result.exit_code == 4
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and bad in lines[0] and needle in lines[0], result.stderr
    assert not (folder / "bad.h5").exists()


@pytest.mark.parametrize("args, needle", [
    (["--update-lowrank", "XY.h5:/X"], "two specs"),
    (["--update-lowrank", "XY.h5:/X,XY.h5:/Y", "--append-rows", "XY.h5:/X"], "only one of"),
])
def test_usage_errors_exit_2(cli, terms, args, needle):
    folder, *_ = terms
    result, _ = _run(cli, folder, args, out="bad.h5")
    assert result.exit_code == 2 and needle in result.stderr and not (folder / "bad.h5").exists()


def test_lowrank_needs_update(cli, terms):
    folder, *_ = terms
    result = cli(["factorize", f"{folder}/A.h5:/A", "--rank", "3", "--update-lowrank", "a.h5:/X,a.h5:/Y",
                  "-o", str(folder / "bad.h5"), "--quiet"])
    assert result.exit_code == 2 and "--update" in result.stderr


def test_api_takes_a_pair_of_arrays_on_a_sparse_matrix(tmp_path):
    # the sparse 400 x 300 matrix stays sparse; the sum is never formed by the update
    rng = np.random.default_rng(31)
    A = sp.random(400, 300, density=0.02, random_state=32, format="csr")
    previous = matcli.factorize(A, rank=5, method="lanczos", output=str(tmp_path / "prev.h5"))
    assert previous.converged
    X, Y = rng.standard_normal((400, 1)), sp.csr_matrix(rng.standard_normal((300, 1)))
    out = matcli.factorize(A, update=str(tmp_path / "prev.h5"), update_lowrank=(X, Y), rank=5, tol=0.9)
    assert out.method == "svd-update" and out.report["problem"]["storage"] == "sparse"
    new = A.toarray() + X @ Y.toarray().T
    s_ref = np.linalg.svd(new, compute_uv=False)
    V = out["Vt"].T
    rho = max(np.max(np.linalg.norm(new @ V - out["U"] * out["s"], axis=0)),
              np.max(np.linalg.norm(new.T @ out["U"] - V * out["s"], axis=0)))
    assert out.metrics["max_triplet_residual"] == pytest.approx(rho / out["s"][0], rel=1e-8)
    for value in out["s"]:
        assert np.min(np.abs(s_ref - value)) <= rho * (1 + 1e-10)
    write_arrays(str(tmp_path / "XY.h5"), {"X": X, "Y": Y.toarray()})
    same = matcli.factorize(A, update=str(tmp_path / "prev.h5"), update_lowrank=f"{tmp_path}/XY.h5:/X,{tmp_path}/XY.h5:/Y",
                            rank=5, tol=0.9)
    np.testing.assert_allclose(same["s"], out["s"], rtol=1e-13)


def test_auto_recomputes_the_dense_sum_when_cheaper(cli, tmp_path):
    # 15 terms on a 30 x 20 matrix: the two 15-column complements and a 25 x 25 middle SVD cost more
    # than the dense SVD of the 30 x 20 sum, which auto forms and factorizes (and certifies) instead
    rng = np.random.default_rng(34)
    A = rng.standard_normal((30, 20))
    U, s, Vt = np.linalg.svd(A, full_matrices=False)
    X, Y = rng.standard_normal((30, 15)), rng.standard_normal((20, 15))
    write_arrays(str(tmp_path / "A.h5"), {"A": A, "X": X, "Y": Y})
    write_arrays(str(tmp_path / "prev.h5"), {"U": U[:, :10], "s": s[:10], "Vt": Vt[:10]})
    report = tmp_path / "r.json"
    result = cli(["factorize", f"{tmp_path}/A.h5:/A", "--update", str(tmp_path / "prev.h5"), "--update-lowrank",
                  f"{tmp_path}/A.h5:/X,{tmp_path}/A.h5:/Y", "-o", str(tmp_path / "new.h5"), "--report", str(report),
                  "--quiet"])
    assert result.exit_code == 0, result.stderr
    report = json.loads(report.read_text())
    cost = report["problem"]["update_cost"]
    assert report["method"] == "svd-dense" and cost["recompute_cost"] <= cost["update_cost"]
    assert "recomputed" in report["method_reason"] and report["status"]["reason"] == "converged_direct"
    s_ref = np.linalg.svd(A + X @ Y.T, compute_uv=False)
    np.testing.assert_allclose(_svd(tmp_path / "new.h5")[1], s_ref[:10], rtol=0, atol=1e3 * EPS * s_ref[0])
