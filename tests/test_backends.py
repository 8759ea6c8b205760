"""Execution backends: local and Dask give the same answers; Dask failures are one-line backend errors."""

from __future__ import annotations

import json
import logging
import subprocess
import sys

import h5py
import numpy as np
import pytest

from matcli.backends import get_backend
from matcli.core.errors import InputError
from matcli.io.load import read_dense, read_matrix


def _power(x: int, exponent: int) -> int:
    return x**exponent


def _reject(x: int) -> int:
    raise InputError(f"item{x}", "rejected")


@pytest.fixture(scope="module")
def scheduler():
    """Address of a small in-process Dask cluster (two single-threaded workers)."""
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address="127.0.0.1:0",
                                  silence_logs=logging.ERROR) as cluster:
        yield cluster.scheduler_address


@pytest.fixture(scope="module")
def batch_file(tmp_path_factory):
    from tests.conftest import run_cli

    path = tmp_path_factory.mktemp("backends") / "b.h5"
    result = run_cli(["generate", "batch", "--n", "8", "--count", "4", "--seed", "1", "-o", path])
    assert result.exit_code == 0, result.stderr
    return path


@pytest.fixture(scope="module")
def completion_file(tmp_path_factory):
    from tests.conftest import run_cli

    path = tmp_path_factory.mktemp("backends") / "c.h5"
    result = run_cli(["generate", "completion", "--rows", "120", "--cols", "80", "--rank", "3", "--rate", "0.3",
                      "--seed", "2", "-o", path])
    assert result.exit_code == 0, result.stderr
    return path


def report_of(path) -> dict:
    return json.loads(path.read_text())


def test_map_keeps_order_and_passes_shared_values(scheduler):
    for backend in (get_backend("local"), get_backend("dask", scheduler)):
        with backend:
            seen = []
            backend.progress = lambda done, total: seen.append((done, total))
            assert backend.map(_power, list(range(9, 0, -1)), exponent=2) == [x * x for x in range(9, 0, -1)]
            assert seen == [(k, 9) for k in range(1, 10)]
            assert backend.map(_power, [], exponent=2) == []
            assert backend.describe()["tasks"] == 9


def test_task_errors_propagate_unchanged(scheduler):
    with get_backend("dask", scheduler) as backend:
        assert backend.parallelism == 2 and backend.describe()["workers"] == 2
        with pytest.raises(InputError, match="item1: rejected"):
            backend.map(_reject, [1])


def test_solve_batch_local_and_dask_agree(cli, tmp_path, batch_file, scheduler):
    rtol = 1e-8
    runs = {}
    for name, extra in (("local", []), ("dask", ["--backend", "dask", "--scheduler", scheduler])):
        out, rep = tmp_path / f"x_{name}.h5", tmp_path / f"r_{name}.json"
        result = cli(["solve", f"{batch_file}:/systems", "--batch", "-m", "cg", "--recycle", "4", "--rtol", rtol,
                      "-o", out, "--report", rep, "--quiet", "--strict", *extra])
        assert result.exit_code == 0, result.stderr
        with h5py.File(out, "r") as fh:
            runs[name] = (report_of(rep), {key: fh[f"x/{key}"][()] for key in fh["x"]})
    (local, x_local), (dask, x_dask) = runs["local"], runs["dask"]
    assert dask["backend"]["name"] == "dask" and dask["backend"]["workers"] == 2
    # More tasks than workers (3 per worker thread, at most one per system), gathered in order.
    assert dask["backend"]["address"] == scheduler and dask["info"]["chunks"] == dask["backend"]["tasks"] == 4
    assert local["backend"] == {"name": "local", "workers": 1, "tasks": 0} and local["info"]["chunks"] == 1
    systems = dask["info"]["systems"]
    assert [s["name"] for s in systems] == local["info"]["order"] == dask["info"]["order"]
    assert [s["position"] for s in systems] == [0, 1, 2, 3] and [s["chunk"] for s in systems] == [0, 1, 2, 3]
    assert [s["setup"] for s in systems] == ["set up on worker"] * 4
    assert dask["iterations"] == sum(s["iterations"] for s in systems)
    assert dask["metrics"]["systems"] == 4 and dask["metrics"]["failed_systems"] == 0
    for name in x_local:
        A = read_matrix(f"{batch_file}:/systems/{name}/A").toarray()
        b = read_dense(f"{batch_file}:/systems/{name}/b")
        residuals = [next(s["relative_residual"] for s in run["info"]["systems"] if s["name"] == name)
                     for run in (local, dask)]
        assert max(residuals) <= rtol
        # Both satisfy ||b - A x|| <= rtol ||b||, so they differ by at most 2 rtol ||A^-1|| ||b||.
        bound = 2 * rtol * np.linalg.norm(np.linalg.inv(A), 2) * np.linalg.norm(b)
        assert np.linalg.norm(x_local[name] - x_dask[name]) <= bound


def test_complete_rank_auto_local_and_dask_agree(cli, tmp_path, completion_file, scheduler, monkeypatch):
    monkeypatch.setenv("MATCLI_DISTRIBUTED_ALS_MIN_ENTRIES", "0")  # distributed ALS on this small set
    reports = {}
    for name in ("local", "dask"):
        rep = tmp_path / f"r_{name}.json"
        if name == "dask":
            monkeypatch.setenv("MATCLI_DASK_SCHEDULER", scheduler)
        result = cli(["complete", f"{completion_file}:/observed", "--rank", "auto", "--reg", "0", "--no-bias",
                      "--seed", "3", "-o", tmp_path / f"m_{name}.h5", "--report", rep, "--quiet",
                      "--backend", name])
        assert result.exit_code == 0, result.stderr
        reports[name] = report_of(rep)
    local, dask = reports["local"], reports["dask"]
    assert local["params"]["rank"] == dask["params"]["rank"] == 3
    assert dask["backend"]["address"] == scheduler and dask["backend"]["cluster"] == "scheduler"
    assert dask["metrics"]["val_rmse"] == pytest.approx(local["metrics"]["val_rmse"], rel=1e-6, abs=1e-9)
    used = [row for row in dask["info"]["selection"] if not row["after_stop"]]
    assert [(r["rank"], r["reg"]) for r in used] == [(r["rank"], r["reg"]) for r in local["info"]["selection"]]
    # ALS fits its candidates one after another over the workers' blocks (distributed ALS)
    assert len(used) == len(dask["info"]["selection"]) and dask["info"]["blocks"]["where"] == "dask workers"


def test_default_dask_backend_starts_a_local_process_cluster(cli, tmp_path, batch_file, monkeypatch):
    pytest.importorskip("distributed")
    monkeypatch.delenv("MATCLI_DASK_SCHEDULER", raising=False)
    rep = tmp_path / "r.json"
    result = cli(["solve", f"{batch_file}:/systems", "--batch", "-m", "lu", "--backend", "dask",
                  "-o", tmp_path / "x.h5", "--report", rep, "--quiet", "--strict"])
    assert result.exit_code == 0, result.stderr
    report = report_of(rep)
    assert report["backend"]["cluster"] == "local" and report["backend"]["workers"] >= 1
    assert report["info"]["chunks"] == min(3 * report["backend"]["threads"], 4)


def test_unreachable_scheduler_is_a_one_line_backend_error(cli, tmp_path, batch_file):
    out = tmp_path / "x.h5"
    result = cli(["solve", f"{batch_file}:/systems", "--batch", "--backend", "dask",
                  "--scheduler", "tcp://127.0.0.1:1", "-o", out])
    assert result.exit_code == 6, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.stderr
    assert "tcp://127.0.0.1:1" in lines[0] or "pip install 'matcli[dask]'" in lines[0]
    assert not out.exists()


@pytest.mark.parametrize("args", [
    ["solve", "{batch}:/systems/s000/A", "--backend", "dask"],
    ["solve", "{batch}:/systems", "--batch", "--scheduler", "tcp://127.0.0.1:8786"],
    ["complete", "{completion}:/observed", "-m", "softimpute", "--rank", "3", "--reg", "0.12", "--backend", "dask"],
])
def test_backend_options_where_they_do_nothing_are_usage_errors(cli, tmp_path, batch_file, completion_file, args):
    args = [a.format(batch=batch_file, completion=completion_file) for a in args]
    result = cli([*args, "-o", tmp_path / "out.h5"])
    assert result.exit_code == 2, result.stderr
    assert len([line for line in result.stderr.splitlines() if line.strip()]) == 1
    assert not (tmp_path / "out.h5").exists()


def test_help_and_local_runs_do_not_import_dask(tmp_path):
    path = tmp_path / "p.h5"
    code = ("import sys; from matcli.cli.app import main; "
            "rc = [main(['--help']), main(['solve', '--help'])]; "
            "print('AFTER_HELP', [m for m in ('dask', 'distributed') if m in sys.modules], rc); "
            f"rc = [main(['generate', 'poisson2d', '--n', '4', '-o', {str(path)!r}]), "
            f"main(['solve', {str(path) + ':/A'!r}, '-o', {str(tmp_path / 'x.h5')!r}, '--quiet'])]; "
            "print('AFTER_SOLVE', [m for m in ('dask', 'distributed') if m in sys.modules], rc)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "--backend" in proc.stdout and "--scheduler" in proc.stdout
    assert "AFTER_HELP [] [0, 0]" in proc.stdout
    assert "AFTER_SOLVE [] [0, 0]" in proc.stdout


def _record_reads(monkeypatch) -> list[str]:
    """Every input a task loads by reference (the in-process workers share this module)."""
    from matcli.backends import refs

    loads: list[str] = []
    original = refs.FileInput.load

    def load(self):
        loads.append(self.spec)
        return original(self)

    monkeypatch.setattr(refs.FileInput, "load", load)
    return loads


def _no_scatter(monkeypatch) -> None:
    import distributed

    def scatter(*args, **kwargs):
        raise AssertionError("problem data must not be scattered: a lost worker's scattered data is not recomputed")

    monkeypatch.setattr(distributed.Client, "scatter", scatter)


def test_batch_workers_read_their_systems_by_reference(cli, tmp_path, batch_file, scheduler, monkeypatch):
    _no_scatter(monkeypatch)
    loads = _record_reads(monkeypatch)
    monkeypatch.chdir(batch_file.parent)
    result = cli(["solve", f"{batch_file.name}:/systems", "--batch", "-m", "lu", "--backend", "dask",
                  "--scheduler", scheduler, "-o", tmp_path / "x.h5", "--quiet", "--strict"])
    assert result.exit_code == 0, result.stderr
    # each system's A and b, named by absolute path (workers need not share the working directory)
    expected = {f"{batch_file}:/systems/{name}/{part}" for name in ("s000", "s001", "s002", "s003")
                for part in ("A", "b")}
    assert set(loads) == expected and len(loads) == 8


def test_batch_with_a_shared_rhs_file_and_generated_rhs(cli, tmp_path, batch_file, scheduler, monkeypatch):
    """--rhs FILE is read by the workers; --rhs random (drawn on the client) goes by value; both
    give the local run's answer."""
    loads = _record_reads(monkeypatch)
    rhs = tmp_path / "rhs.h5"
    from matcli.io.writers import write_result

    write_result(str(rhs), str(rhs), {"b": np.linspace(1.0, 2.0, 64)}, {}, "test")
    for spec in (f"{rhs}:/b", "random"):
        solutions = {}
        for name, extra in (("local", []), ("dask", ["--backend", "dask", "--scheduler", scheduler])):
            out = tmp_path / f"x_{name}.h5"
            result = cli(["solve", f"{batch_file}:/systems", "--batch", "-m", "lu", "--rhs", spec, "--seed", "5",
                          "-o", out, "--quiet", "--strict", "--force", *extra])
            assert result.exit_code == 0, result.stderr
            with h5py.File(out, "r") as fh:
                solutions[name] = {key: fh[f"x/{key}"][()] for key in fh["x"]}
        for key, x in solutions["local"].items():
            # Both are LU solutions of the same system (backward error ~ eps each), so they differ by
            # at most ~ cond(A) eps ||x||; another right-hand side would differ by O(||x||).
            A = read_matrix(f"{batch_file}:/systems/{key}/A").toarray()
            bound = 100 * np.linalg.cond(A) * np.finfo(float).eps * np.linalg.norm(x)
            assert np.linalg.norm(x - solutions["dask"][key]) <= bound, (spec, key)
    assert loads.count(f"{rhs}:/b") == 4 and not any(spec.endswith("/b") and "systems" in spec for spec in loads)


def test_complete_candidates_read_the_observed_entries_by_reference(cli, tmp_path, completion_file, scheduler,
                                                                  monkeypatch):
    _no_scatter(monkeypatch)
    loads = _record_reads(monkeypatch)
    rep = tmp_path / "r.json"
    result = cli(["complete", f"{completion_file}:/observed", "-m", "softimpute", "--rank", "auto", "--reg", "0.1",
                  "--no-bias", "--seed", "3", "-o", tmp_path / "m.h5", "--report", rep, "--quiet", "--backend", "dask",
                  "--scheduler", scheduler])
    assert result.exit_code == 0, result.stderr
    tasks = report_of(rep)["backend"]["tasks"]
    assert tasks >= 4 and loads == [f"{completion_file}:/observed"] * tasks


def test_a_parallel_batch_with_a_fixed_method_sets_up_only_on_the_workers(cli, tmp_path, batch_file, scheduler,
                                                                           monkeypatch):
    from matcli.jobs import solve as solve_job

    client_setups = []
    original = solve_job.Job._prepare
    monkeypatch.setattr(solve_job.Job, "_prepare", lambda self, *a: client_setups.append(a[0]) or original(self, *a))
    rep = tmp_path / "r.json"
    result = cli(["solve", f"{batch_file}:/systems", "--batch", "-m", "cg", "--precond", "ic", "-o", tmp_path / "x.h5",
                  "--report", rep, "--quiet", "--strict", "--backend", "dask", "--scheduler", scheduler])
    assert result.exit_code == 0, result.stderr
    report = report_of(rep)
    assert client_setups == []
    # the report's setup facts are those of the first chunk's worker (incomplete Cholesky of the first matrix)
    assert report["params"]["precond"] == "ic" and report["problem"]["setup"]["preconditioner"] == "ic"
    assert [s["setup"] for s in report["info"]["systems"]] == ["set up on worker"] * 4


def test_arrays_of_the_python_api_travel_by_value(scheduler):
    """No file for the workers to read: the arrays go inside the tasks, and the answers are the local ones."""
    import scipy.sparse as sp

    import matcli

    rng = np.random.default_rng(8)
    n = 30
    T = sp.diags([-1.0, 2.5, -1.0], [-1, 0, 1], shape=(n, n), format="csr")
    matrices = [T + 0.1 * k * sp.eye(n, format="csr") for k in range(5)]
    b = rng.standard_normal(n)
    local = matcli.solve(matrices, b, batch=True, method="lu", seed=1)
    dask = matcli.solve(matrices, b, batch=True, method="lu", seed=1, backend="dask", scheduler=scheduler)
    assert dask.report["backend"]["tasks"] == 5
    names = [name for name in local.arrays if name.startswith("x/")]
    assert sorted(names) == sorted(dask.arrays) and len(names) == 5
    for name, A in zip(sorted(names), matrices):  # the names end in A0 .. A4
        x = local.arrays[name]
        # LU solutions of the same system: they differ by at most ~ cond(A) eps ||x||
        bound = 100 * np.linalg.cond(A.toarray()) * np.finfo(float).eps * np.linalg.norm(x)
        assert np.linalg.norm(x - dask.arrays[name]) <= bound
        assert np.linalg.norm(A @ x - b) <= 1e-12 * np.linalg.norm(b)

    U, V = rng.standard_normal((60, 2)), rng.standard_normal((40, 2))
    mask = rng.random((60, 40)) < 0.4
    observed = sp.coo_matrix(np.where(mask, U @ V.T, 0.0))
    fits = [matcli.complete(observed, rank="auto", reg=0.0, bias=False, seed=4, **extra)
            for extra in ({}, {"backend": "dask", "scheduler": scheduler})]
    assert fits[0].report["params"]["rank"] == fits[1].report["params"]["rank"] == 2
    assert np.array_equal(fits[0].arrays["U"], fits[1].arrays["U"])
