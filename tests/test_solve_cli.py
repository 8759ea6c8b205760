"""``matcli solve`` end to end: exit codes, output datasets, report fields, batch mode, errors."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import scipy.sparse as sp

from conftest import data_file
from matcli import gallery
from matcli.io.hdf5 import write_arrays
from matcli.io.mtx import read_mtx


@pytest.fixture
def poisson_file(tmp_path):
    path = tmp_path / "p.h5"
    problem = gallery.poisson_problem((20, 20), np.random.default_rng(0))
    write_arrays(str(path), problem)
    return path, problem


def report_of(path):
    return json.loads(path.read_text())


def read_x(path, name="x"):
    with h5py.File(path, "r") as fh:
        return fh[name][()]


def test_auto_direct_solve_writes_x_and_report(cli, tmp_path, poisson_file):
    path, problem = poisson_file
    out, rep = tmp_path / "x.h5", tmp_path / "r.json"
    result = cli(["solve", f"{path}:/A", "--rhs", f"{path}:/b", "-o", out, "--report", rep, "--quiet"])
    assert result.exit_code == 0, result.stderr
    x = read_x(out)
    np.testing.assert_allclose(x, problem["x_true"], rtol=1e-10, atol=1e-10)
    report = report_of(rep)
    assert report["method"] == "cholesky" and report["method_requested"] == "auto"
    assert "Cholesky" in report["method_reason"]
    assert report["status"]["converged"] and report["status"]["reason"] == "converged_direct"
    assert report["metrics"]["relative_residual"] < 1e-13
    assert report["metrics"]["backward_error"] < 1e-14
    assert report["iterations"] == 0 and "iterations" not in report["metrics"]
    assert {"setup", "compute"} <= set(report["phases"])
    assert report["problem"]["hermitian"] is True


@pytest.mark.parametrize("method,precond", [("cg", "amg-sa"), ("cg", "amg-rs"), ("cg", "chebyshev"), ("cg", "ic"),
                                            ("minres", "jacobi"), ("gmres", "ilu"), ("bicgstab", "ilu"),
                                            ("lsqr", "none"), ("lsmr", "none"), ("sor", "none"), ("ssor", "none"),
                                            ("lu", "none"), ("ldl", "none")])
def test_every_method_end_to_end(cli, tmp_path, poisson_file, method, precond):
    path, problem = poisson_file
    out, rep = tmp_path / "x.h5", tmp_path / "r.json"
    args = ["solve", f"{path}:/A", "--rhs", f"{path}:/b", "-m", method, "--precond", precond,
            "--rtol", "1e-10", "-o", out, "--report", rep, "--quiet", "--strict"]
    if method in ("lsqr", "lsmr"):
        args += ["--param", "atol=1e-12"]
    result = cli(args)
    assert result.exit_code == 0, result.stderr
    report = report_of(rep)
    assert report["method"] == method and report["params"]["precond"] == precond
    assert report["metrics"]["relative_residual"] <= 1e-10
    # cond_2 of the 20x20 Poisson matrix is ~178: forward error <= cond * rtol.
    x = read_x(out)
    assert np.linalg.norm(x - problem["x_true"]) <= 200 * 1e-10 * np.linalg.norm(problem["x_true"]) * 10
    if method not in ("lu", "ldl"):
        assert len(report["history"]["residual"]) == report["iterations"]


def test_many_rhs_one_setup_and_block_output(cli, tmp_path, poisson_file):
    path, _ = poisson_file
    out, rep = tmp_path / "x.h5", tmp_path / "r.json"
    result = cli(["solve", f"{path}:/A", "--rhs", "random", "--nrhs", "5", "-m", "cg", "--precond", "amg-sa",
                  "-o", out, "--report", rep, "--quiet", "--seed", "3"])
    assert result.exit_code == 0, result.stderr
    x = read_x(out)
    assert x.shape == (400, 5)
    report = report_of(rep)
    assert report["params"]["nrhs"] == 5 and len(report["info"]["column_iterations"]) == 5
    assert report["metrics"]["relative_residual"] <= 1e-8


def test_non_spd_to_cg_negative_status_and_strict_exit(cli, tmp_path):
    A = sp.csr_matrix(gallery.poisson((10, 10)) - 2.0 * sp.identity(100))
    path = tmp_path / "indef.h5"
    write_arrays(str(path), {"A": A})
    out, rep = tmp_path / "x.h5", tmp_path / "r.json"
    result = cli(["solve", f"{path}:/A", "-m", "cg", "--precond", "none", "-o", out, "--report", rep, "--quiet"])
    assert result.exit_code == 0
    report = report_of(rep)
    assert report["status"]["reason"] == "diverged_not_spd" and not report["status"]["converged"]
    assert "minres" in report["status"]["message"].lower()
    strict = cli(["solve", f"{path}:/A", "-m", "cg", "--precond", "none", "-o", out, "--force", "--quiet",
                  "--strict"])
    assert strict.exit_code == 3
    assert "minres" in strict.stderr.lower()


def test_nonsymmetric_file_to_cg_is_refused_up_front(cli, tmp_path):
    rep = tmp_path / "r.json"
    result = cli(["solve", data_file("matrices/west0067.mtx"), "-m", "cg", "-o", tmp_path / "x.h5",
                  "--report", rep, "--quiet"])
    assert result.exit_code == 0
    report = report_of(rep)
    assert report["status"]["reason"] == "diverged_not_spd"
    assert "not symmetric" in report["status"]["message"] and "gmres" in report["status"]["message"]


@pytest.mark.parametrize("name", ["sherman5.mtx", "hangGlider_2.mtx", "bcsstk16.mtx", "young1c.mtx"])
def test_auto_on_real_files(cli, tmp_path, name):
    rep = tmp_path / "r.json"
    result = cli(["solve", data_file(f"matrices/{name}"), "--rhs", "ones", "-o", tmp_path / "x.h5",
                  "--report", rep, "--quiet", "--strict"])
    assert result.exit_code == 0, result.stderr
    report = report_of(rep)
    assert report["method"] != "cg" or report["problem"]["hermitian"]
    A = read_mtx(str(data_file(f"matrices/{name}")))
    x = read_x(tmp_path / "x.h5")
    b = np.ones(A.shape[0])
    assert np.linalg.norm(b - A @ x) / np.linalg.norm(b) == pytest.approx(
        report["metrics"]["relative_residual"], rel=1e-6, abs=1e-15)
    assert report["metrics"]["backward_error"] <= 1e-12


def test_rectangular_auto_gives_minimum_norm(cli, tmp_path):
    path = data_file("matrices/lp_afiro.mtx")
    rep = tmp_path / "r.json"
    result = cli(["solve", path, "--rhs", "ones", "-o", tmp_path / "x.h5", "--report", rep, "--quiet",
                  "--rtol", "1e-12"])
    assert result.exit_code == 0, result.stderr
    assert report_of(rep)["method"] == "lstsq"  # small and dense enough for LAPACK gelsy
    A = read_mtx(str(path)).toarray()
    x = read_x(tmp_path / "x.h5")
    np.testing.assert_allclose(x, np.linalg.pinv(A) @ np.ones(A.shape[0]), rtol=1e-8, atol=1e-10)


def test_singular_with_auto_falls_back_to_least_squares(cli, tmp_path):
    A = sp.csr_matrix(np.array([[1.0, 1.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 2.0]]))
    path = tmp_path / "s.h5"
    write_arrays(str(path), {"A": A, "b": np.array([2.0, 2.0, 2.0])})
    rep = tmp_path / "r.json"
    result = cli(["solve", f"{path}:/A", "--rhs", f"{path}:/b", "-o", tmp_path / "x.h5", "--report", rep,
                  "--quiet"])
    assert result.exit_code == 0, result.stderr
    report = report_of(rep)
    assert report["method"] == "lstsq" and "singular" in report["method_reason"]
    assert report["status"]["converged"]  # b lies in the range of A: the minimum-norm x solves it
    np.testing.assert_allclose(read_x(tmp_path / "x.h5"), [1.0, 1.0, 1.0], atol=1e-12)


def test_singular_inconsistent_system_with_auto_is_not_reported_solved(cli, tmp_path):
    """b outside the range of A: the least-squares answer has its own negative status (exit 3 with --strict)."""
    A = sp.csr_matrix(np.array([[1.0, 1.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 2.0]]))
    path = tmp_path / "s.h5"
    write_arrays(str(path), {"A": A, "b": np.array([1.0, 3.0, 2.0])})
    rep = tmp_path / "r.json"
    result = cli(["solve", f"{path}:/A", "--rhs", f"{path}:/b", "-o", tmp_path / "x.h5", "--report", rep,
                  "--quiet", "--strict"])
    assert result.exit_code == 3, result.stderr
    report = report_of(rep)
    assert report["status"]["reason"] == "least_squares_only" and not report["status"]["converged"]
    # the minimum-norm least-squares solution, as pinv gives it
    np.testing.assert_allclose(read_x(tmp_path / "x.h5"), [1.0, 1.0, 1.0], atol=1e-8)


def test_batch_from_hdf5_groups(cli, tmp_path):
    path = tmp_path / "batch.h5"
    data = gallery.poisson_batch((12, 12), 5, 0.1, np.random.default_rng(1))
    write_arrays(str(path), data)
    out, rep = tmp_path / "x.h5", tmp_path / "r.json"
    result = cli(["solve", f"{path}:/systems", "--batch", "-m", "cg", "--precond", "jacobi", "--recycle", "4",
                  "-o", out, "--report", rep, "--quiet", "--strict"])
    assert result.exit_code == 0, result.stderr
    report = report_of(rep)
    systems = report["info"]["systems"]
    assert [s["name"] for s in systems] == report["info"]["order"] and len(systems) == 5
    assert all(s["setup"] in ("setup phase", "preconditioner reused") for s in systems)
    assert systems[0]["recycled_dim"] == 0 and systems[-1]["recycled_dim"] > 0
    assert report["iterations"] == sum(s["iterations"] for s in systems)
    with h5py.File(out, "r") as fh:
        for t in range(5):
            name = f"s{t:03d}"
            np.testing.assert_allclose(fh[f"x/{name}"][()], data[f"systems/{name}/x_true"], rtol=1e-6, atol=1e-6)


def test_batch_sor_learns_omega_and_direct_reuses_ordering(cli, tmp_path):
    path = tmp_path / "batch.h5"
    write_arrays(str(path), gallery.poisson_batch((12, 12), 6, 0.02, np.random.default_rng(2)))
    rep = tmp_path / "r.json"
    result = cli(["solve", f"{path}:/systems", "--batch", "-m", "sor", "-o", tmp_path / "x.h5", "--report", rep,
                  "--quiet", "--strict"])
    assert result.exit_code == 0, result.stderr
    report = report_of(rep)
    omegas = [s["omega"] for s in report["info"]["systems"]]
    assert len(set(omegas)) > 1 and 1.0 <= report["info"]["omega_learned"] < 2.0
    rep2 = tmp_path / "r2.json"
    result = cli(["solve", f"{path}:/systems", "--batch", "-m", "lu", "-o", tmp_path / "x2.h5", "--report", rep2,
                  "--quiet", "--strict"])
    assert result.exit_code == 0, result.stderr
    setups = [s["setup"] for s in report_of(rep2)["info"]["systems"]]
    assert setups[0] == "setup phase" and all("ordering reused" in s for s in setups[1:])


def test_batch_of_files_with_shared_rhs(cli, tmp_path):
    files = []
    for shift in (0.0, 0.5):
        A = sp.csr_matrix(gallery.poisson((8, 8)) + shift * sp.identity(64))
        path = tmp_path / f"A{shift}.h5"
        write_arrays(str(path), {"A": A})
        files.append(f"{path}:/A")
    result = cli(["solve", *files, "--batch", "--rhs", "ones", "-o", tmp_path / "x.h5", "--quiet", "--strict"])
    assert result.exit_code == 0, result.stderr
    with h5py.File(tmp_path / "x.h5", "r") as fh:
        assert len(fh["x"]) == 2


def test_plot_is_written(cli, tmp_path, poisson_file):
    pytest.importorskip("matplotlib")
    path, _ = poisson_file
    png = tmp_path / "conv.png"
    result = cli(["solve", f"{path}:/A", "-m", "cg", "-o", tmp_path / "x.h5", "--plot", png, "--quiet"])
    assert result.exit_code == 0, result.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_monitor_prints_residuals(cli, tmp_path, poisson_file):
    path, _ = poisson_file
    result = cli(["solve", f"{path}:/A", "-m", "cg", "--precond", "jacobi", "-o", tmp_path / "x.h5", "--monitor",
                  "--quiet"])
    assert result.exit_code == 0, result.stderr
    assert "residual=" in result.stderr


@pytest.mark.parametrize("args,code,fragment", [
    (["--rhs", "RHS_BAD"], 4, "expected (400,)"),
    (["-m", "lu", "--precond", "ilu"], 2, "no preconditioner"),
    (["-m", "cg", "--precond", "ilu"], 2, "--precond ic"),
    (["--param", "nosuch=1"], 2, "nosuch"),
    (["-m", "gmres", "--param", "restart=0"], 2, "restart"),
    (["--rtol", "2"], 2, "rtol"),
])
def test_errors_are_one_line_with_exit_code(cli, tmp_path, poisson_file, args, code, fragment):
    path, _ = poisson_file
    bad = tmp_path / "bad.h5"
    write_arrays(str(bad), {"b": np.ones(7)})
    args = [a.replace("RHS_BAD", f"{bad}:/b") for a in args]
    out = tmp_path / "x.h5"
    result = cli(["solve", f"{path}:/A", "-o", out, "--quiet", *args])
    assert result.exit_code == code, result.stderr
    assert fragment in result.stderr and "Traceback" not in result.stderr
    assert not out.exists()


def test_non_square_to_direct_is_usage_error(cli, tmp_path):
    result = cli(["solve", data_file("matrices/lp_afiro.mtx"), "-m", "lu", "-o", tmp_path / "x.h5", "--quiet"])
    assert result.exit_code == 2 and "lsqr" in result.stderr


def test_factorization_happens_in_setup_not_compute(tmp_path, poisson_file, monkeypatch):
    from matcli.jobs.base import JobRequest
    from matcli.jobs.options import SolveOptions
    from matcli.jobs.solve import Job
    from matcli.methods.solve import direct

    path, problem = poisson_file
    request = JobRequest(family="solve", method="lu", inputs=(f"{path}:/A",), output=None,
                         options=SolveOptions(rhs=f"{path}:/b", precond="auto", rtol=1e-8))
    job = Job(request)
    job.read()
    job.validate()
    job.setup(np.random.default_rng(0))
    assert job.solver.factorization.solve is not None

    def no_factorization(*args, **kwargs):
        raise AssertionError("factorization in the compute phase")

    monkeypatch.setattr(direct, "factorize", no_factorization)
    result = job.compute(lambda it, **values: None)
    np.testing.assert_allclose(result.outputs["x"], problem["x_true"], rtol=1e-10, atol=1e-10)


def test_auto_precond_falls_back_when_incomplete_cholesky_breaks_down(cli, tmp_path):
    A = sp.csr_matrix(gallery.poisson((10, 10)) - 3.0 * sp.identity(100))  # positive diagonal, indefinite
    path = tmp_path / "indef.h5"
    write_arrays(str(path), {"A": A})
    rep = tmp_path / "r.json"
    result = cli(["solve", f"{path}:/A", "-m", "cg", "-o", tmp_path / "x.h5", "--report", rep, "--quiet"])
    assert result.exit_code == 0, result.stderr
    report = report_of(rep)
    assert "incomplete Cholesky broke down" in report["method_reason"]
    assert report["params"]["precond"] == "jacobi"
    assert report["status"]["reason"] == "diverged_not_spd"


@pytest.mark.parametrize("shape", [(0, 3), (3, 0), (0, 0)])
def test_empty_systems_are_solved_by_least_squares_as_scipy_does(cli, tmp_path, shape):
    """scipy.linalg.lstsq returns x = 0 for an empty A; auto and lstsq do too, other methods refuse."""
    path = tmp_path / "e.h5"
    write_arrays(str(path), {"A": np.zeros(shape), "b": np.ones(shape[0])})
    rep = tmp_path / "r.json"
    result = cli(["solve", f"{path}:/A", "--rhs", f"{path}:/b", "-o", tmp_path / "x.h5", "--report", rep,
                  "--quiet", "--strict"])
    assert result.exit_code == 0, result.stderr
    assert report_of(rep)["method"] == "lstsq"
    assert read_x(tmp_path / "x.h5").shape == (shape[1],) and not read_x(tmp_path / "x.h5").any()
    result = cli(["solve", f"{path}:/A", "--rhs", f"{path}:/b", "-o", tmp_path / "y.h5", "-m", "gmres"])
    assert result.exit_code == 4 and "empty" in result.stderr and not (tmp_path / "y.h5").exists()
