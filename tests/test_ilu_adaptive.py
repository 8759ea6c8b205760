"""ILU that adapts: a factorization that fails or a solve that stagnates is retried with less
dropping and more fill (a bounded schedule, every attempt recorded); a singular matrix gives a
negative status, never a usage error."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.sparse as sp

from conftest import data_file
from matcli.core.result import Status
from matcli.io.mtx import read_mtx
from matcli.methods.solve import krylov, precond

KERNELS = [krylov.gmres, krylov.bicgstab]


def load(name: str):
    return read_mtx(str(data_file(f"matrices/{name}")))


def zero_row_matrix() -> sp.csr_matrix:
    """A 4x4 matrix whose second row is zero (singular for every ILU)."""
    return sp.csr_matrix(np.array([[2.0, 1.0, 0.0, 0.0],
                                   [0.0, 0.0, 0.0, 0.0],
                                   [1.0, 0.0, 3.0, 1.0],
                                   [0.0, 1.0, 0.0, 4.0]]))


def test_schedule_is_bounded_and_strengthens():
    schedule = precond.ilu_schedule(1e-4, 10.0)
    assert len(schedule) == precond.ILU_ATTEMPTS
    assert schedule[0] == (1e-4, 10.0)
    for (dt, ff), (dt_next, ff_next) in zip(schedule, schedule[1:]):
        assert dt_next == pytest.approx(dt / 10) and ff_next == 2 * ff


def test_stagnating_gmres_on_west0479_retries_with_a_stronger_ilu():
    # the README example: with drop_tol 1e-4 GMRES(50) stagnates at relative residual ~1.003
    A = load("west0479.mtx")
    b = np.ones(A.shape[0])
    calls = []
    result = krylov.gmres(A, b, M=precond.ilu(A), rtol=1e-8, callback=lambda it, **v: calls.append((it, v)))
    assert result.status.converged, result.message
    assert result.metrics["relative_residual"] <= 1e-8
    first, *rest = result.info["precond_attempts"]
    assert first["drop_tol"] == 1e-4 and first["status"] == "diverged_stagnation"
    assert rest and rest[-1]["status"] == "converged_rtol" and rest[-1]["drop_tol"] < 1e-4
    assert result.iterations == sum(a["iterations"] for a in result.info["precond_attempts"])
    assert result.info["preconditioner_info"]["drop_tol"] == rest[-1]["drop_tol"]
    # the callback (--monitor) shows each start: iteration 0, then where the stronger ILU starts again
    starts = [(it, v.get("preconditioner")) for it, v in calls if "initial_residual" in v]
    assert starts[0] == (0, None) and starts[1] == (first["iterations"], "ilu(drop_tol=1e-05, fill_factor=20)")
    assert len(starts) == len(result.info["precond_attempts"])


def test_iteration_budget_is_shared_by_the_attempts():
    A = load("west0479.mtx")
    result = krylov.gmres(A, np.ones(A.shape[0]), M=precond.ilu(A), rtol=1e-8, maxiter=52)
    assert result.iterations <= 52
    assert not result.status.converged
    assert "ILU" in result.message


@pytest.mark.parametrize("kernel", KERNELS)
def test_a_singular_matrix_gives_a_negative_status_not_an_exception(kernel):
    A = zero_row_matrix()
    M = precond.ilu(A)
    assert M.failure and "singular" in M.failure
    assert len(M.info["attempts"]) == precond.ILU_ATTEMPTS
    assert all(a["outcome"].startswith("factorization failed") for a in M.info["attempts"])
    result = kernel(A, np.ones(4), M=M)
    assert result.status == Status.DIVERGED_BREAKDOWN and result.iterations == 0
    assert "ILU failed" in result.message and "lsmr" in result.message


def test_a_factorization_failure_moves_on_to_the_next_parameters(monkeypatch):
    import matcli.core.superlu as superlu

    real, calls = superlu.spilu, []

    def first_fails(A, **kw):
        calls.append(kw["drop_tol"])
        if len(calls) == 1:
            raise RuntimeError("Factor is exactly singular")
        return real(A, **kw)

    monkeypatch.setattr(superlu, "spilu", first_fails)
    M = precond.ilu(sp.csr_matrix(np.diag([1.0, 2.0, 3.0])))
    assert M.failure is None and M.info["drop_tol"] == pytest.approx(1e-5)
    assert [a["outcome"] for a in M.info["attempts"]] == ["factorization failed: Factor is exactly singular",
                                                        "built"]


def test_running_out_of_memory_stops_strengthening_but_keeps_the_built_ilu(monkeypatch):
    import matcli.core.superlu as superlu

    real, calls = superlu.spilu, []

    def later_ones_oom(A, **kw):
        calls.append(kw["drop_tol"])
        if len(calls) > 1:
            raise MemoryError("SuperLU ran out of memory")
        return real(A, **kw)

    monkeypatch.setattr(superlu, "spilu", later_ones_oom)
    M = precond.ilu(sp.csr_matrix(np.diag([1.0, 2.0, 3.0])))
    assert M.refine() is None
    assert len(calls) == 2
    with pytest.raises(MemoryError):  # the requested parameters themselves: a resource error (exit 7)
        precond.ilu(sp.csr_matrix(np.diag([1.0, 2.0])))


@pytest.mark.parametrize("name", ["zenios.mtx", "reorientation_1.mtx"])
@pytest.mark.parametrize("method", ["gmres", "bicgstab"])
def test_cli_singular_files_with_auto_ilu_report_a_negative_status(cli, tmp_path, name, method):
    # these exited 2 ("usage error") when ILU could not factor them
    path = data_file(f"matrices/{name}")
    report = tmp_path / "r.json"
    args = ["solve", path, "--rhs", "ones", "-m", method, "-o", tmp_path / "x.h5", "--report", report, "--quiet"]
    result = cli(args)
    assert result.exit_code == 0, result.stderr
    data = json.loads(report.read_text())
    assert data["params"]["precond"] == "ilu"
    assert not data["status"]["converged"] and data["status"]["message"]
    assert data["problem"]["setup"]["preconditioner_info"]["attempts"]
    assert cli(args + ["--force", "--strict"]).exit_code == 3


def test_cli_zero_row_matrix_is_not_a_usage_error(cli, tmp_path):
    path = tmp_path / "zero_row.mtx"
    A = zero_row_matrix().tocoo()
    lines = [f"{i + 1} {j + 1} {v}" for i, j, v in zip(A.row, A.col, A.data)]
    path.write_text("%%MatrixMarket matrix coordinate real general\n4 4 " + f"{A.nnz}\n" + "\n".join(lines) + "\n")
    report = tmp_path / "r.json"
    result = cli(["solve", path, "-m", "gmres", "--precond", "ilu", "--report", report, "--quiet", "-o",
                  tmp_path / "x.h5"])
    assert result.exit_code == 0, result.stderr
    assert json.loads(report.read_text())["status"]["reason"] == "diverged_breakdown"
