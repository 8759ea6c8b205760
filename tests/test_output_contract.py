"""The output contract (#16): one policy for every written file, checked before any work; atomic,
exclusive writes; nothing left behind by errors or signals; every written format reads back."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from matcli.core.errors import OutputError
from matcli.io import atomic
from matcli.io.hdf5 import write_arrays
from matcli.io.load import read_dense

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def problem(tmp_path):
    """A 100-unknown SPD system in p.h5 (A, b) and the folder's listing before any run."""
    from matcli import gallery

    arrays = gallery.poisson_problem((10, 10), np.random.default_rng(0))
    path = tmp_path / "p.h5"
    write_arrays(str(path), arrays)
    return path


def listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def solve_args(problem: Path, *extra) -> list[str]:
    return ["solve", f"{problem}:/A", "--rhs", f"{problem}:/b", "--quiet", *map(str, extra)]


def assert_refused(result, code: int, needle: str) -> None:
    assert result.exit_code == code, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and needle in lines[0], result.stderr


# ------------------------------------------------------------------ the policy, before any work
@pytest.mark.parametrize("make_args, code, needle", [
    (lambda d, p: ["-o", d / "x.h5", "--report", p], 5, "would overwrite an input"),
    (lambda d, p: ["-o", d / "x.h5", "--report", d / "sub" / ".." / "p.h5"], 5, "would overwrite an input"),
    (lambda d, p: ["-o", d / "x.h5", "--report", d / "x.h5"], 5, "name the same file"),
    (lambda d, p: ["-o", d / "x.h5", "--report", d / "missing" / "r.json"], 5, "does not exist"),
    (lambda d, p: ["-o", d / "x.h5", "--report", p / "r.json"], 5, "is not a folder"),
    (lambda d, p: ["-o", d / "x.h5", "--report", d / "sub"], 5, "is a directory"),
    (lambda d, p: ["-o", d / "x.h5", "--report", f"{d / 'sub'}/"], 5, "names a folder"),
    (lambda d, p: ["-o", d / "x.h5", "--plot", "-"], 2, "cannot go to standard output"),
    (lambda d, p: ["-o", "-", "--report", "-"], 2, "both name standard output"),
    (lambda d, p: ["-o", d / ("a" * 256 + ".h5")], 5, "over this file system's limit"),
])
def test_policy_refuses_before_reading(cli, problem, tmp_path, monkeypatch, make_args, code, needle):
    (tmp_path / "sub").mkdir()
    before = listing(tmp_path)

    def no_reading(*args, **kwargs):
        raise AssertionError("the policy must refuse before any input is read")

    monkeypatch.setattr("matcli.io.load.read_matrix", no_reading)
    result = cli(solve_args(problem, *make_args(tmp_path, problem)))
    assert_refused(result, code, needle)
    assert listing(tmp_path) == before


def test_links_to_an_input_are_the_input(cli, problem, tmp_path):
    os.link(problem, tmp_path / "hard.h5")
    os.symlink(problem, tmp_path / "soft.h5")
    for name in ("hard.h5", "soft.h5"):
        result = cli(solve_args(problem, "-o", tmp_path / name, "--force"))
        assert_refused(result, 5, "would overwrite an input")
    with h5py.File(problem) as fh:
        assert "A" in fh


@pytest.mark.parametrize("flag", ["-o", "--report", "--plot"])
def test_existing_files_are_kept_without_force(cli, problem, tmp_path, flag):
    target = tmp_path / "existing"
    target.write_text("precious")
    args = {"-o": ["-o", target], "--report": ["-o", tmp_path / "x.h5", "--report", target],
            "--plot": ["-o", tmp_path / "x.h5", "--plot", target]}[flag]
    assert_refused(cli(solve_args(problem, *args)), 5, "exists; pass --force")
    assert target.read_text() == "precious" and not (tmp_path / "x.h5").exists()


def test_existing_predictions_are_kept_without_force(cli, tmp_path):
    ratings = tmp_path / "r.tsv"
    ratings.write_text("".join(f"{u}\t{i}\t{(u + i) % 5 + 1}\n" for u in range(1, 8) for i in range(1, 6)))
    pairs = tmp_path / "pairs.tsv"
    pairs.write_text("1\t1\n2\t3\n")
    target = tmp_path / "pred.tsv"
    target.write_text("precious")
    result = cli(["complete", ratings, "--rank", "2", "-o", tmp_path / "m.h5", "--predict", pairs,
                  "--predictions-out", target, "--quiet"])
    assert_refused(result, 5, "exists; pass --force")
    assert target.read_text() == "precious" and not (tmp_path / "m.h5").exists()


def test_a_fifo_is_refused_even_with_force(cli, problem, tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    assert_refused(cli(solve_args(problem, "-o", fifo, "--force")), 5, "FIFO")
    assert listing(tmp_path) == ["fifo", "p.h5"]


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="mknod of a device needs root")
def test_a_device_node_is_refused_even_with_force_as_root(cli, problem, tmp_path):
    node = tmp_path / "null"
    os.mknod(node, 0o666 | 0o020000, os.makedev(1, 3))  # a character device like /dev/null
    assert_refused(cli(solve_args(problem, "-o", node, "--force")), 5, "character device")
    assert os.path.exists(node) and not Path(node).is_file()


def test_a_name_at_the_limit_is_written(cli, problem, tmp_path):
    """Temporary names have a fixed length, so the longest name the file system allows works."""
    limit = os.pathconf(tmp_path, "PC_NAME_MAX")
    out = tmp_path / ("a" * (limit - 3) + ".h5")
    assert cli(solve_args(problem, "-o", out)).exit_code == 0
    assert listing(tmp_path) == sorted(["p.h5", out.name])


# ------------------------------------------------------------------ formats read back
def test_every_output_format_reads_back(cli, problem, tmp_path):
    with h5py.File(problem) as fh:
        A, b = fh["A/data"], fh["b"][()]
        assert A is not None
    outputs = {}
    for name in ("x.h5", "x.mtx", "x.mtx.gz"):
        result = cli(solve_args(problem, "-o", tmp_path / name))
        assert result.exit_code == 0, result.stderr
        outputs[name] = read_dense(str(tmp_path / name) + (":/x" if name.endswith(".h5") else "")).ravel()
    reference = outputs["x.h5"]
    from matcli.io.load import read_matrix

    residual = read_matrix(f"{problem}:/A") @ reference - b
    assert np.linalg.norm(residual) <= 1e-10 * np.linalg.norm(b)
    for name, x in outputs.items():
        np.testing.assert_array_equal(x, reference, err_msg=name)  # shortest round-trip digits: exact
    assert not any(n.startswith(".matcli-") for n in listing(tmp_path))


def test_matrixmarket_to_standard_output(problem, tmp_path):
    result = subprocess.run([sys.executable, "-m", "matcli", *solve_args(problem, "-o", "-")],
                            capture_output=True, cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(b"%%MatrixMarket matrix array real general")
    staged = tmp_path / "x.mtx"
    staged.write_bytes(result.stdout)
    assert read_dense(str(staged)).shape == (100, 1)
    assert listing(tmp_path) == ["p.h5", "x.mtx"]


def test_generate_writes_every_array_or_refuses(cli, tmp_path):
    too_high = cli(["generate", "lowrank", "--rows", "6", "--cols", "4", "-o", tmp_path / "l.h5"])
    assert_refused(too_high, 2, "rank at most 4")  # the default rank 5 (was exit 1, a matmul error)
    assert cli(["generate", "lowrank", "--rows", "6", "--cols", "4", "--rank", "2", "-o", tmp_path / "l.h5"]).exit_code == 0
    with h5py.File(tmp_path / "l.h5") as fh:
        assert set(fh) == {"A", "U_true", "s_true", "V_true"}
    refused = cli(["generate", "lowrank", "--rows", "6", "--cols", "4", "--rank", "2", "-o", tmp_path / "l.mtx.gz"])
    assert_refused(refused, 2, "4 arrays (A, U_true, s_true, V_true)")
    assert listing(tmp_path) == ["l.h5"]


def test_generate_checks_its_size_before_allocating(cli, tmp_path):
    started = time.perf_counter()
    result = cli(["generate", "batch", "--count", "1000000000", "-o", tmp_path / "b.h5"])
    assert_refused(result, 7, "more than the memory budget")
    assert time.perf_counter() - started < 1.0 and listing(tmp_path) == []


# ------------------------------------------------------------------ exclusive, atomic publishing
def test_a_file_that_appears_during_the_run_is_kept(tmp_path):
    target = tmp_path / "out.h5"
    with pytest.raises(OutputError, match="created by someone else"):
        with atomic.atomic_write(str(target), force=False) as tmp:
            Path(tmp).write_text("ours")
            target.write_text("theirs")
    assert target.read_text() == "theirs" and listing(tmp_path) == ["out.h5"]


def test_force_replaces_but_never_a_device_that_appears(tmp_path):
    target = tmp_path / "out"
    target.write_text("old")
    with atomic.atomic_write(str(target), force=True) as tmp:
        Path(tmp).write_text("new")
    assert target.read_text() == "new"
    target.unlink()
    with pytest.raises(OutputError, match="FIFO"):
        with atomic.atomic_write(str(target), force=True) as tmp:
            os.mkfifo(target)
    assert listing(tmp_path) == ["out"]


def test_stale_temporaries_of_dead_processes_are_removed(tmp_path):
    target = tmp_path / "x.h5"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    dead_pid = int(dead.stdout)
    stale = atomic.temp_path(str(target)).replace(f"-{os.getpid()}-", f"-{dead_pid}-")
    alive = atomic.temp_path(str(target)).replace(f"-{os.getpid()}-", f"-{os.getppid()}-")
    other = atomic.temp_path(str(tmp_path / "y.h5")).replace(f"-{os.getpid()}-", f"-{dead_pid}-")
    for path in (stale, alive, other):
        Path(path).write_text("partial")
    with atomic.atomic_write(str(target), force=False) as tmp:
        Path(tmp).write_text("done")
    assert not Path(stale).exists()
    assert Path(alive).exists() and Path(other).exists()  # a live writer's, another output's
    assert target.read_text() == "done"


def test_two_concurrent_writers_one_wins(problem, tmp_path):
    """Two runs on one output: exactly one publishes. Usually both pass the output policy before either
    has written and the loser learns it when publishing ("created by someone else"); on a loaded
    machine the second may start after the first finished and be refused up front ("output exists")."""
    from matcli import gallery

    write_arrays(str(tmp_path / "big.h5"), gallery.poisson_problem((250, 250), np.random.default_rng(1)))
    args = [sys.executable, "-m", "matcli", "solve", "big.h5:/A", "--rhs", "big.h5:/b", "-o", "c.h5", "--quiet"]
    runs = [subprocess.Popen(args, cwd=tmp_path, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    codes = sorted(run.wait(timeout=300) for run in runs)
    errors = [run.stderr.read() for run in runs]
    assert codes == [0, 5], errors
    loser = next(e for e, run in zip(errors, runs) if run.returncode == 5)
    assert "created by someone else" in loser or "output exists" in loser, loser
    assert listing(tmp_path) == ["big.h5", "c.h5", "p.h5"]
    with h5py.File(tmp_path / "c.h5") as fh:
        assert fh["x"].shape == (250 * 250,)


# ------------------------------------------------------------------ signals and streams
@pytest.fixture(scope="module")
def slow_problem(tmp_path_factory):
    """A CG solve of a few seconds whose write phase is large (x of 1.4e6 numbers, 11 MB)."""
    from matcli import gallery

    folder = tmp_path_factory.mktemp("slow")
    write_arrays(str(folder / "s.h5"), gallery.poisson_problem((1200, 1200), np.random.default_rng(2)))
    return folder / "s.h5"


def _interrupt(slow_problem, folder, signum, delay):
    args = [sys.executable, "-m", "matcli", "solve", f"{slow_problem}:/A", "--rhs", f"{slow_problem}:/b",
            "-m", "cg", "--precond", "jacobi", "--rtol", "1e-6", "-o", "x.h5", "--report", "r.json", "--quiet"]
    run = subprocess.Popen(args, cwd=folder, stderr=subprocess.PIPE, text=True)
    time.sleep(delay)
    run.send_signal(signum)
    code = run.wait(timeout=120)
    return code, run.stderr.read()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_signals_end_the_run_with_their_code_and_leave_nothing(slow_problem, tmp_path, signum):
    rng = np.random.default_rng(int(signum))
    for attempt, delay in enumerate(rng.uniform(0.3, 2.5, size=3)):
        folder = tmp_path / f"run{attempt}"
        folder.mkdir()
        code, stderr = _interrupt(slow_problem, folder, signum, delay)
        names = listing(folder)
        if code == 0:  # finished before the signal
            assert names == ["r.json", "x.h5"] and json.loads((folder / "r.json").read_text())
            continue
        # never killed by the default action, even when the signal lands after the run returned
        assert code == 128 + signum, stderr
        name = signal.Signals(signum).name
        assert all(not n.startswith(".matcli-") for n in names)
        if "x.h5" in names:  # the signal came after publishing: whole outputs, and the line names them
            with h5py.File(folder / "x.h5") as fh:
                assert fh["x"].shape == (1200 * 1200,)
            written = ", ".join(n for n in ("x.h5", "r.json") if n in names)
            assert stderr.strip().splitlines() == [f"matcli: stopped by {name}; after writing {written} (whole); "
                                                   "nothing else was published"]
        else:
            assert names == [] and stderr.strip().splitlines() == [f"matcli: stopped by {name}; "
                                                                   "no output was published"]


def test_a_signal_between_output_and_report_names_what_was_written(slow_problem, tmp_path):
    """-o is published, --report not yet: the old report is kept, the one line names x.h5 only
    (it said "no output was published" although x.h5 had been replaced)."""
    args = [sys.executable, "-m", "matcli", "solve", f"{slow_problem}:/A", "--rhs", f"{slow_problem}:/b", "-m", "cg",
            "--precond", "jacobi", "--rtol", "1e-1", "-o", "x.h5", "--report", "r.json", "--force", "--quiet"]
    for _ in range(6):  # the window between the two writes is a few ms: try until a signal lands in it
        (tmp_path / "x.h5").write_bytes(b"old output")
        (tmp_path / "r.json").write_text("old report")
        run = subprocess.Popen(args, cwd=tmp_path, stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 120
        while time.time() < deadline and run.poll() is None:
            if (tmp_path / "x.h5").read_bytes()[:10] != b"old output":
                run.send_signal(signal.SIGTERM)
                break
            time.sleep(0.0005)
        code, stderr = run.wait(timeout=120), run.stderr.read()
        if code != 0:  # 0: the run finished before the signal, try again
            break
    else:
        pytest.skip("every report was written between two looks at the folder")
    assert code == 143 and listing(tmp_path) == ["r.json", "x.h5"]
    with h5py.File(tmp_path / "x.h5") as fh:
        assert fh["x"].shape == (1200 * 1200,)
    report = (tmp_path / "r.json").read_text()
    written = "x.h5, r.json" if report != "old report" else "x.h5"
    assert stderr.splitlines() == [f"matcli: stopped by SIGTERM; after writing {written} (whole); "
                                   "nothing else was published"]


def test_signal_during_the_write_removes_the_temporary_file(slow_problem, tmp_path):
    """Stop the run while its temporary output exists: the watcher removes it."""
    args = [sys.executable, "-m", "matcli", "solve", f"{slow_problem}:/A", "--rhs", f"{slow_problem}:/b",
            "-m", "cg", "--precond", "jacobi", "--rtol", "1e-1", "-o", "x.h5", "--quiet"]
    run = subprocess.Popen(args, cwd=tmp_path, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and run.poll() is None:
        if any(n.startswith(".matcli-") for n in os.listdir(tmp_path)):
            run.send_signal(signal.SIGTERM)
            break
        time.sleep(0.002)
    code = run.wait(timeout=120)
    if code == 0:
        pytest.skip("the run finished between two looks at the folder")
    assert code == 143
    if listing(tmp_path) != []:  # published in the moment between the look and the signal: whole
        assert listing(tmp_path) == ["x.h5"]
        with h5py.File(tmp_path / "x.h5") as fh:
            assert fh["x"].shape == (1200 * 1200,)


def _run_into_closed_pipe(args, cwd):
    """Run matcli with its stdout a pipe whose reading end is already closed (the reader went away)."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        return subprocess.run([sys.executable, "-m", "matcli", *map(str, args)], stdout=write_end,
                              stderr=subprocess.PIPE, text=True, cwd=cwd, timeout=120)
    finally:
        os.close(write_end)


def test_closed_standard_output_is_a_broken_pipe_not_a_bug(problem, tmp_path):
    """`matcli methods | head -1` and `--report -` into a closed pipe: 141 and silence, like any tool."""
    for args in (["methods"], solve_args(problem, "-o", "x.h5", "--report", "-")):
        run = _run_into_closed_pipe(args, tmp_path)
        assert run.returncode == 141 and run.stderr == "", (args, run.stderr)
    assert listing(tmp_path) == ["p.h5", "x.h5"]  # the output was published before the report failed


def test_usage_errors_are_one_line(cli):
    for args in (["solve"], ["solve", "a.mtx"], ["solve", "a.mtx", "-o", "x.h5", "--bogus"],
                 ["factorize", "a.mtx", "-o", "x.h5", "--kind", "nope"], ["nonsense"]):
        result = cli(args)
        assert result.exit_code == 2 and len(result.stderr.splitlines()) == 1, (args, result.stderr)
        assert "usage error" in result.stderr


def test_out_of_memory_is_exit_7_not_a_bug(cli, problem, tmp_path, monkeypatch):
    def exhausted(request):
        raise MemoryError

    monkeypatch.setattr("matcli.runner.run_job", exhausted)
    assert_refused(cli(solve_args(problem, "-o", tmp_path / "x.h5")), 7, "out of memory")


def test_closed_standard_streams(problem, tmp_path):
    """A closed descriptor 2 must not be reused by an output file; a closed stdout refuses '-'."""
    base = f"'{sys.executable}' -m matcli solve '{problem}:/A' --rhs '{problem}:/b' --quiet"
    ran = subprocess.run(["bash", "-c", f"{base} -o x.h5 2>&-; echo $?"], cwd=tmp_path, capture_output=True,
                         text=True, timeout=120)
    assert ran.stdout.strip() == "0"
    with h5py.File(tmp_path / "x.h5") as fh:
        assert fh["x"].shape == (100,)
    ran = subprocess.run(["bash", "-c", f"{base} -o - >&-; echo $? >&2"], cwd=tmp_path, capture_output=True,
                         text=True, timeout=120)
    assert ran.stderr.splitlines() == ["matcli: error: -: -o -: standard output is closed", "5"]


def _children(pid: int) -> list[int]:
    listed = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True)
    return [int(p) for p in listed.stdout.split()]


def test_a_signal_during_a_local_dask_run_is_one_line_and_leaves_no_worker(tmp_path):
    """The local cluster's worker processes go with matcli, and multiprocessing's resource tracker
    does not add its warnings about the cluster's semaphores to the one line."""
    pytest.importorskip("distributed")
    from matcli import gallery

    write_arrays(str(tmp_path / "b.h5"), gallery.poisson_batch((200, 200), 24, 0.05, np.random.default_rng(3)))
    args = [sys.executable, "-m", "matcli", "solve", "b.h5:/systems", "--batch", "-m", "cg", "--precond", "none",
            "--backend", "dask", "-o", "x.h5", "--quiet"]
    run = subprocess.Popen(args, cwd=tmp_path, stderr=subprocess.PIPE, text=True)
    deadline, children = time.time() + 60, []
    while time.time() < deadline and run.poll() is None and len(children) < 3:  # tracker + 2 workers
        time.sleep(0.1)
        children = _children(run.pid)
    run.send_signal(signal.SIGTERM)
    code = run.wait(timeout=60)
    stderr = run.stderr.read()
    if code == 0:
        pytest.skip("the batch finished before the cluster was seen")
    assert code == 143 and stderr.splitlines() == ["matcli: stopped by SIGTERM; no output was published"], stderr
    deadline = time.time() + 30
    while time.time() < deadline and any(os.path.exists(f"/proc/{pid}") for pid in children):
        time.sleep(0.2)
    assert not any(os.path.exists(f"/proc/{pid}") for pid in children)
    assert listing(tmp_path) == ["b.h5"]


def test_a_signal_after_the_run_returned_still_gets_its_line(tmp_path):
    """The console script ends with os._exit after flushing, not through interpreter finalization
    (which stops the watcher thread and restores the default signal action: a SIGINT there killed the
    process with no line). A signal that lands while the final flush runs ends as 128 + signal with the
    one line; without it the run exits with its own code."""
    script = tmp_path / "late.py"
    script.write_text(
        "import atexit, os, signal, sys, time\n"
        "import matcli.cli.app as app\n"
        "atexit.register(lambda: sys.stderr.write('finalized\\n'))\n"
        "from matcli.cli import entry\n"
        "class Late:\n"
        "    def __init__(self, stream): self.stream = stream\n"
        "    def write(self, text): return self.stream.write(text)\n"
        "    def flush(self):\n"
        "        if os.environ.get('LATE_SIGNAL'):\n"
        "            os.kill(os.getpid(), int(os.environ['LATE_SIGNAL'])); time.sleep(5)\n"
        "        self.stream.flush()\n"
        "app.main = lambda argv=None: (sys.stdout.write('done\\n'), 0)[1]\n"
        "sys.stdout = Late(sys.stdout)\n"
        "entry.console_main()\n")
    for signum, code in ((signal.SIGINT, 130), (signal.SIGTERM, 143), (signal.SIGHUP, 129)):
        run = subprocess.run([sys.executable, script], env={**os.environ, "LATE_SIGNAL": str(int(signum))},
                             capture_output=True, text=True, timeout=60)
        assert run.returncode == code, (signum, run.returncode, run.stderr)
        assert run.stderr.strip() == f"matcli: stopped by {signum.name}; no output was published"
    # no finalization at all (the window where a signal met the default action): atexit never runs
    quiet = subprocess.run([sys.executable, script], capture_output=True, text=True, timeout=60)
    assert quiet.returncode == 0 and quiet.stdout == "done\n" and quiet.stderr == ""
