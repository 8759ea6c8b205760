"""Runner contract with a tiny test job: phases, atomic output, report schema, --strict, overwrite rules."""

from __future__ import annotations

import json
import sys
import types

import h5py
import numpy as np
import pytest
import scipy.sparse as sp

from matcli import runner
from matcli.core.errors import InputError, NotConvergedError, OutputError, UsageError
from matcli.core.result import Result, Status
from matcli.jobs.base import FamilyJob, JobRequest


class EchoJob(FamilyJob):
    """Reads nothing; returns a fixed result whose status the request chooses."""

    family = "solve"

    def input_paths(self):
        return list(self.request.inputs)

    def read(self):
        if self.request.options.get("fail_read"):
            raise InputError(self.request.inputs[0], "broken on purpose")

    def validate(self):
        self.problem_info = {"shape": [2, 2]}

    def setup(self, rng):
        self.method = "echo"
        self.resolved_params = {"k": 1}
        self.choice_reason = "test job"
        self.draw = rng.standard_normal()

    def compute(self, callback):
        for it in range(3):
            callback(it, residual=10.0 ** -it)
        status = Status(self.request.options.get("status", Status.CONVERGED_RTOL))
        return Result(status, outputs={"x": np.arange(3.0), "factors/L": sp.eye(3, format="csr")},
                      metrics={"relative_residual": 1e-9}, iterations=3, info={"draw": self.draw})


@pytest.fixture
def echo_family(monkeypatch):
    module = types.ModuleType("matcli_test_echo_job")
    module.Job = EchoJob
    monkeypatch.setitem(sys.modules, "matcli_test_echo_job", module)
    monkeypatch.setitem(runner.JOB_MODULES, "solve", "matcli_test_echo_job")


def request(tmp_path, **kw):
    base = dict(family="solve", method="auto", inputs=(str(tmp_path / "in.mtx"),),
                output=str(tmp_path / "out.h5"), report=str(tmp_path / "r.json"), quiet=True, seed=7,
                options={})  # the echo family reads its two switches from a plain dict
    base.update(kw)
    return JobRequest(**base)


def test_phases_output_and_report(tmp_path, echo_family):
    outcome = runner.run_job(request(tmp_path))
    report = json.loads((tmp_path / "r.json").read_text())
    assert list(report["phases"]) == ["read", "validate", "setup", "compute", "write"]
    assert report["method"] == "echo" and report["method_requested"] == "auto"
    assert report["status"] == {"reason": "converged_rtol", "converged": True, "message": ""}
    assert report["history"]["residual"] == [1.0, 0.1, 0.01]
    assert report["seed"] == 7 and report["peak_memory_bytes"] > 0
    assert outcome.result.iterations == 3
    with h5py.File(tmp_path / "out.h5") as fh:
        np.testing.assert_array_equal(fh["x"][()], np.arange(3.0))
        assert fh["factors/L"].attrs["encoding-type"] == "csr_matrix"
        assert fh.attrs["method"] == "echo" and fh.attrs["seed"] == 7
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.h5", "r.json"]


def test_recorded_seed_reproduces_the_run(tmp_path, echo_family):
    first = runner.run_job(request(tmp_path, seed=None, output=str(tmp_path / "a.h5"), report=None))
    seed = first.report["seed"]
    again = runner.run_job(request(tmp_path, seed=seed, output=str(tmp_path / "b.h5"), report=None))
    other = runner.run_job(request(tmp_path, seed=seed + 1, output=str(tmp_path / "c.h5"), report=None))
    assert first.report["info"]["draw"] == again.report["info"]["draw"]
    assert first.report["info"]["draw"] != other.report["info"]["draw"]


def test_strict_raises_after_writing(tmp_path, echo_family):
    req = request(tmp_path, strict=True, options={"status": Status.DIVERGED_MAX_IT})
    with pytest.raises(NotConvergedError):
        runner.run_job(req)
    assert (tmp_path / "out.h5").exists()
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["status"]["reason"] == "diverged_max_it" and not report["status"]["converged"]


def test_failed_read_leaves_no_output(tmp_path, echo_family):
    with pytest.raises(InputError):
        runner.run_job(request(tmp_path, options={"fail_read": True}))
    assert list(tmp_path.iterdir()) == []


def test_existing_output_needs_force_and_input_is_never_overwritten(tmp_path, echo_family):
    (tmp_path / "out.h5").write_text("keep me")
    with pytest.raises(OutputError, match="--force"):
        runner.run_job(request(tmp_path))
    assert (tmp_path / "out.h5").read_text() == "keep me"
    runner.run_job(request(tmp_path, force=True))
    assert h5py.is_hdf5(tmp_path / "out.h5")
    with pytest.raises(OutputError, match="overwrite an input"):
        runner.run_job(request(tmp_path, output=str(tmp_path / "in.mtx"), force=True))


def test_mtx_output_of_several_arrays_is_refused_naming_them(tmp_path, echo_family):
    """A MatrixMarket file holds one matrix: a result of two is an error, never its first array alone."""
    with pytest.raises(UsageError, match=r"2 arrays \(x, factors/L\)"):
        runner.run_job(request(tmp_path, output=str(tmp_path / "x.mtx"), report=None))
    assert list(tmp_path.iterdir()) == []


def test_mtx_output_of_known_several_arrays_is_refused_before_reading(tmp_path, echo_family, monkeypatch):
    monkeypatch.setattr(EchoJob, "output_arrays", lambda self: ("x", "factors/L"), raising=False)
    with pytest.raises(UsageError, match="x, factors/L"):  # not the InputError that reading raises
        runner.run_job(request(tmp_path, output=str(tmp_path / "x.mtx"), report=None, options={"fail_read": True}))
    assert list(tmp_path.iterdir()) == []


def test_summary_shows_ratios_near_one_by_their_distance_from_one():
    from matcli.report import _fmt

    assert _fmt(1.0000000000228, "residual_ratio_estimate") == "1 + 2.3e-11"
    assert _fmt(0.9999995, "residual_ratio") == "1 - 5e-07"
    assert _fmt(1.0, "residual_ratio_estimate") == "1"
    assert _fmt(1.076, "residual_ratio_estimate") == "1.076"
    assert _fmt(1.0000000000228, "optimality") == "1"


def test_peak_memory_is_the_process_own_not_its_parents(tmp_path):
    """A process started by a large one (a benchmark holding its matrix, pytest) reports its own peak:
    Linux carries the parent's resident size into getrusage's ru_maxrss across fork + exec."""
    import subprocess
    import sys

    import numpy as np

    from matcli.core.timing import peak_memory_bytes, resident_memory_bytes

    ballast = np.ones(300 * 2**20 // 8)  # 300 MiB resident in this process
    assert resident_memory_bytes() > 300 * 2**20
    code = "from matcli.core.timing import peak_memory_bytes as p; print(p())"
    child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert int(child.stdout) < 200 * 2**20 < peak_memory_bytes()
    del ballast


def test_progress_shows_phase_method_and_residual_against_its_target_on_a_terminal(monkeypatch):
    """On a TTY: the phase and resolved method in the label; the bar is the fraction of the orders of
    magnitude from the first residual to the target (1e0 -> 1e-8: 1e-4 is half way)."""
    import io
    import sys

    from matcli.report import Progress

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr(sys, "stderr", Terminal())
    with Progress(enabled=True, label="solve auto", target=1e-8) as progress:
        progress.phase("setup")
        progress.relabel("solve cg")
        progress.phase("compute")
        progress.update(0, {"initial_residual": 1.0})
        progress.update(5, {"residual": 1e-4})
        task = progress._display.tasks[0]
        assert task.description == "solve cg: compute"
        assert task.completed == pytest.approx(0.5) and task.total == 1.0
        assert "1.00e-04 -> 1e-08" in task.fields["detail"]
    with Progress(enabled=True, label="x", target=None) as silent_bar:
        silent_bar.update(1, {"train_rmse": 0.9})
        assert silent_bar._display.tasks[0].total is None  # no target: a spinner, no bar


def test_progress_is_silent_without_a_terminal(monkeypatch):
    import io
    import sys

    from matcli.report import Progress

    monkeypatch.setattr(sys, "stderr", io.StringIO())
    with Progress(enabled=True, label="solve auto", target=1e-8) as progress:
        progress.phase("compute")
        progress.update(1, {"residual": 0.5})
    assert sys.stderr.getvalue() == ""
