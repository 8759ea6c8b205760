"""The Dask backend against real processes: a ``dask scheduler`` and two ``dask worker`` processes
(each with its nanny) on 127.0.0.1 (tests/dask_cluster.py), matcli run as a process.

A worker process (not its nanny) is killed with SIGKILL while it runs a task of the run (a chunk
of ``solve --batch``, a candidate fit of ``complete --rank auto``): Dask recomputes the lost tasks
from the task graph, the run exits 0 with nothing on stderr, and the output is bit for bit the
output of an undisturbed run with the same seed. Bitwise, not to a tolerance: every task's result
is a function of its arguments only (inputs read by reference, a generator spawned for the task),
and the replacement runs the same code on the same machine with one BLAS thread (Dask's nanny sets
OMP/MKL/OpenBLAS threads to 1 in each worker process; complete limits BLAS to one thread itself),
so not one rounding may differ.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

pytest.importorskip("distributed")

from tests.dask_cluster import Cluster  # noqa: E402

MATCLI = [sys.executable, "-m", "matcli"]


def run_matcli(args: list, cwd: Path, timeout: float = 240.0) -> subprocess.CompletedProcess:
    return subprocess.run([*MATCLI, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with Cluster(tmp_path_factory.mktemp("dask-cluster"), workers=2) as running:
        yield running


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    """12 systems (5-point Laplacian on a 70 x 70 grid plus 1e-3 k I, random b) in one batch group:
    unpreconditioned CG needs a few hundred iterations each, so each chunk of two runs long enough
    for a kill to land while it runs."""
    import scipy.sparse as sp

    from matcli.io.writers import write_result

    root = tmp_path_factory.mktemp("dask-batch")
    grid = 70
    T = sp.diags([-1.0, 2.0, -1.0], [-1, 0, 1], shape=(grid, grid))
    laplacian = (sp.kron(sp.eye(grid), T) + sp.kron(T, sp.eye(grid))).tocsr()
    rng = np.random.default_rng(11)
    arrays = {}
    for k in range(12):
        arrays[f"systems/s{k:03d}/A"] = (laplacian + 1e-3 * k * sp.eye(grid * grid)).tocsr()
        arrays[f"systems/s{k:03d}/b"] = rng.standard_normal(grid * grid)
    write_result(str(root / "b.h5"), str(root / "b.h5"), arrays, {}, "test batch")
    return root


def arrays(path: Path) -> dict[str, np.ndarray]:
    with h5py.File(path, "r") as fh:
        return {name: fh[f"x/{name}"][()] for name in fh["x"]}


def _kill_a_busy_worker(cluster: Cluster, proc: subprocess.Popen, pids: dict[str, int], killed: list,
                        task: str) -> None:
    """SIGKILL the worker process of the first worker seen running a task named ``task...`` while
    ``proc`` runs; record (worker, its tasks then)."""
    with cluster.client() as client:
        while proc.poll() is None:
            for worker, keys in client.processing().items():
                mine = [key for key in keys if str(key).startswith(task)]
                if mine and worker in pids:
                    os.kill(pids[worker], signal.SIGKILL)
                    killed.append((worker, mine))
                    return
            time.sleep(0.02)


def test_a_worker_killed_mid_batch_is_recomputed_and_the_answer_is_bitwise_the_same(cluster, batch):
    args = ["solve", "b.h5:/systems", "--batch", "-m", "cg", "--precond", "none", "--rtol", "1e-10", "--seed", "7",
            "--backend", "dask", "--scheduler", cluster.address, "--quiet", "--strict"]
    quiet = run_matcli([*args, "-o", "x_quiet.h5", "--report", "r_quiet.json"], batch)
    assert quiet.returncode == 0, quiet.stderr
    report = json.loads((batch / "r_quiet.json").read_text())
    assert report["backend"]["workers"] == 2 and report["info"]["chunks"] == 6 == report["backend"]["tasks"]

    pids = cluster.worker_pids()
    proc = subprocess.Popen([*MATCLI, *args, "-o", "x_killed.h5", "--report", "r_killed.json"], cwd=batch,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    killed: list = []
    killer = threading.Thread(target=_kill_a_busy_worker, args=(cluster, proc, pids, killed, "solve_chunk_input"))
    killer.start()
    try:
        _, stderr = proc.communicate(timeout=240)
    finally:
        killer.join()
    assert killed, "the run ended before a worker was seen running one of its chunks"
    assert proc.returncode == 0, stderr
    assert stderr.strip() == ""
    reference, survived = arrays(batch / "x_quiet.h5"), arrays(batch / "x_killed.h5")
    assert sorted(reference) == sorted(survived) and len(reference) == 12
    for name in reference:
        assert reference[name].dtype == survived[name].dtype
        assert np.array_equal(reference[name], survived[name]), name  # bit for bit, see the module docstring
    after = json.loads((batch / "r_killed.json").read_text())
    assert after["info"]["order"] == report["info"]["order"]
    assert [s["iterations"] for s in after["info"]["systems"]] == [s["iterations"] for s in report["info"]["systems"]]
    cluster.wait_for_workers(2)  # the nanny restarts its worker for the next test


def test_complete_auto_with_a_worker_killed_mid_selection_gives_the_local_model_bitwise(cluster, tmp_path):
    """complete --rank auto: the candidate fits lost with the worker are refitted by Dask from the
    same arguments (observed entries by reference, split mask, the candidate's generator). Each
    fit has its own spawned generator and runs in one BLAS thread on either side (the job limits
    BLAS to one thread), so the cluster's model is the local one, bit for bit."""
    subprocess.run([*MATCLI, "generate", "completion", "--rows", "800", "--cols", "600", "--rank", "4", "--rate",
                    "0.1", "--noise", "0.01", "--seed", "2", "-o", "c.h5"], cwd=tmp_path, check=True,
                   capture_output=True)
    # softimpute: its candidates are fitted side by side (ALS runs them one after another over blocks)
    args = ["complete", "c.h5:/observed", "-m", "softimpute", "--rank", "auto", "--reg", "0.1", "--no-bias", "--seed",
            "3", "--quiet"]
    local = run_matcli([*args, "-o", "m_local.h5", "--report", "r_local.json"], tmp_path)
    assert local.returncode == 0, local.stderr
    pids = cluster.worker_pids()
    proc = subprocess.Popen([*MATCLI, *args, "--backend", "dask", "--scheduler", cluster.address, "-o",
                             "m_killed.h5", "--report", "r_killed.json"], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    killed: list = []
    killer = threading.Thread(target=_kill_a_busy_worker, args=(cluster, proc, pids, killed, "_score"))
    killer.start()
    try:
        _, stderr = proc.communicate(timeout=240)
    finally:
        killer.join()
    assert killed, "the run ended before a worker was seen running one of its fits"
    assert proc.returncode == 0 and stderr.strip() == "", stderr
    local, dask = [json.loads((tmp_path / f"r_{name}.json").read_text()) for name in ("local", "killed")]
    assert dask["backend"]["workers"] == 2 and local["params"]["rank"] == dask["params"]["rank"]
    # the local run fits one candidate per round, the cluster two: it may fit one past the stop
    used = [row for row in dask["info"]["selection"] if not row["after_stop"]]
    assert used == local["info"]["selection"]
    with h5py.File(tmp_path / "m_local.h5", "r") as a, h5py.File(tmp_path / "m_killed.h5", "r") as b:
        for name in ("U", "V"):
            assert np.array_equal(a[name][()], b[name][()]), name
    cluster.wait_for_workers(2)


def test_a_task_that_kills_every_worker_it_runs_on_is_a_one_line_backend_error(cluster):
    """``os._exit`` ends the worker process running it; Dask retries the task on a fresh worker
    until its allowed failures (3) are spent, then gives up: exit 6's BackendError, not a hang."""
    from matcli.backends import get_backend
    from matcli.core.errors import BackendError

    with get_backend("dask", cluster.address) as backend:
        with pytest.raises(BackendError) as info:
            backend.map(os._exit, [3])
    message = str(info.value)
    assert "\n" not in message and f"the Dask cluster at {cluster.address} failed while running _exit" in message
    assert "KilledWorker" in message
    cluster.wait_for_workers(2)
