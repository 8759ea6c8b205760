"""``matcli run jobs.txt``: every line runs as its own command line would (same outputs, reports and
exit codes), all lines are checked before any runs, and the run's exit code and combined JSON say
which jobs failed. The Dask path runs the same jobs as tasks on a real two-worker cluster."""

from __future__ import annotations

import json
import subprocess
import sys

import h5py
import numpy as np
import pytest

from tests.conftest import run_cli


@pytest.fixture
def folder(tmp_path, monkeypatch):
    """A scratch folder (the working folder of the jobs) with a small SPD problem."""
    monkeypatch.chdir(tmp_path)
    assert run_cli(["generate", "poisson2d", "--n", "12", "-o", "p.h5", "-q"]).exit_code == 0
    return tmp_path


def x_of(path) -> np.ndarray:
    with h5py.File(path) as fh:
        return fh["x"][()]


def test_jobs_run_as_their_command_lines_and_the_first_failure_is_the_exit_code(folder):
    (folder / "jobs.txt").write_text(
        "# comments and blank lines are skipped\n\n"
        "solve p.h5:/A -o x1.h5 --report r1.json\n"
        "matcli solve p.h5:/A -m cg --rtol 1e-10 \\\n"
        "    -o x2.h5\n"
        "solve missing.h5:/A -o x3.h5\n"
        "solve p.h5:/A -m cg --precond none --maxiter 2 --strict -o x4.h5\n")
    result = run_cli(["run", "jobs.txt", "--report", "all.json"])
    assert result.exit_code == 4, result.stderr  # line 6 failed first (exit 4); line 7 then exited 3
    summary = json.loads((folder / "all.json").read_text())
    jobs = summary["jobs"]
    assert [j["line"] for j in jobs] == [3, 4, 6, 7] and [j["exit_code"] for j in jobs] == [0, 0, 4, 3]
    assert summary["jobs_failed"] == 2 and summary["jobs_run"] == summary["jobs_total"] == 4
    assert jobs[0]["status"] == "converged_direct" and jobs[1]["status"] == "converged_rtol"
    assert jobs[2]["error"] == "matcli: error: missing.h5: file not found" and jobs[2]["report"] is None
    assert "did not converge (diverged_max_it)" in jobs[3]["error"]  # --strict: exit 3, x kept as alone
    assert jobs[1]["report"]["method"] == "cg" and jobs[1]["report"]["status"]["converged"]
    # each job's own outputs, exactly as the same command line alone writes them
    assert json.loads((folder / "r1.json").read_text())["status"] == jobs[0]["report"]["status"]
    alone = run_cli(["solve", "p.h5:/A", "-m", "cg", "--rtol", "1e-10", "-o", "alone.h5", "-q"])
    assert alone.exit_code == 0 and np.array_equal(x_of(folder / "x2.h5"), x_of(folder / "alone.h5"))
    assert not (folder / "x3.h5").exists() and (folder / "x4.h5").exists()
    assert "[line 6] exit 4" in result.stderr
    assert result.stderr.splitlines()[-1].startswith("matcli run: 2 of 4 jobs exited 0") and "lines 6, 7" in result.stderr


@pytest.mark.parametrize("text, words", [
    ("solve p.h5:/A -o y.h5\nsolve p.h5:/A -o y.h5\n", "line 3 writes y.h5, which line 2 also writes"),
    ("solve p.h5:/A -o a.h5 --report all.json\n", "which the run's --report also writes"),
    ("solve p.h5:/A -o z.h5 --bogus\n", "line 2: No such option: --bogus"),
    ("run other.txt\n", "'run' is not a subcommand a job can run"),
    ("solve p.h5:/A -o 'unclosed\n", "line 2: No closing quotation"),
    ("# only comments\n\n", "no command lines"),
    ("solve p.h5:/A -o w.h5 \\\n", "continuation"),
])
def test_every_line_is_checked_before_any_job_runs(folder, text, words):
    (folder / "jobs.txt").write_text("solve p.h5:/A -o first.h5\n" * ("only" not in text) + text)
    before = sorted(p.name for p in folder.iterdir())
    result = run_cli(["run", "jobs.txt", "--report", "all.json"])
    assert result.exit_code == 2 and words in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert sorted(p.name for p in folder.iterdir()) == before  # nothing ran, nothing was written


@pytest.mark.parametrize("line, words", [
    ("solve p.h5:/A -o kept.h5\n", "jobs.txt: line 2: kept.h5: output exists"),
    ("solve p.h5:/A -o p.h5 --force\n", "jobs.txt: line 2: p.h5: -o would overwrite an input file"),
    ("solve p.h5:/A -o x.h5 --report kept.h5\n", "jobs.txt: line 2: kept.h5: output exists"),
])
def test_each_jobs_output_policy_is_applied_before_any_job_runs(folder, line, words):
    """A job that could only fail on its outputs stops the list before the first job runs (exit 5)."""
    (folder / "kept.h5").write_bytes(b"precious")
    (folder / "jobs.txt").write_text("solve p.h5:/A -o first.h5\n" + line)
    before = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}
    result = run_cli(["run", "jobs.txt"])
    assert result.exit_code == 5 and words in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()} == before


def test_the_run_report_follows_the_output_policy(folder):
    (folder / "jobs.txt").write_text("solve p.h5:/A -o x.h5\n")
    (folder / "all.json").write_text("keep me")
    result = run_cli(["run", "jobs.txt", "--report", "all.json"])
    assert result.exit_code == 5 and (folder / "all.json").read_text() == "keep me"
    assert not (folder / "x.h5").exists()
    assert run_cli(["run", "jobs.txt", "--report", "jobs.txt", "--force"]).exit_code == 5  # never over an input


def test_jobs_on_a_dask_cluster_give_the_local_answers(folder):
    pytest.importorskip("distributed")
    from tests.dask_cluster import Cluster

    lines = [f"solve p.h5:/A -m cg --rtol 1e-12 --threads 1 -o x{k}.h5" for k in range(4)]
    lines.append("factorize p.h5:/A --kind svd --method lanczos --rank 2 --seed 4 -o s.h5")
    (folder / "jobs.txt").write_text("\n".join(lines) + "\n")
    with Cluster(folder / "cluster", workers=2) as cluster:
        proc = subprocess.run([sys.executable, "-m", "matcli", "run", "jobs.txt", "--backend", "dask", "--scheduler",
                               cluster.address, "--report", "all.json", "-q"], cwd=folder, capture_output=True,
                              text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((folder / "all.json").read_text())
    assert summary["backend"] == "dask" and [j["exit_code"] for j in summary["jobs"]] == [0] * 5
    alone = run_cli(["solve", "p.h5:/A", "-m", "cg", "--rtol", "1e-12", "--threads", "1", "-o", "alone.h5", "-q"])
    assert alone.exit_code == 0
    for k in range(4):
        assert np.array_equal(x_of(folder / f"x{k}.h5"), x_of(folder / "alone.h5"))
