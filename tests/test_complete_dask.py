"""``complete --backend dask``: ALS whose half-steps run over user blocks and item blocks.

Two levels. In this process, :func:`matcli.methods.complete.als_blocks.als_blocks` over in-process
blocks is compared with the local kernel :func:`matcli.methods.complete.als.als`: every half-step
acts row by row, so the factors must be equal bit for bit for any blocking, and only the training
error (a sum over blocks in another order) may differ, by at most the rounding of a sum of N
positive terms, (N - 1) eps relative. On a real cluster (a ``dask scheduler`` and two ``dask
worker`` processes on 127.0.0.1, tests/dask_cluster.py) matcli runs as a process: the same model as
the local run, also with one worker process SIGKILLed while it runs a half-step (Dask loads the
lost blocks again from their references), the rank selection of ``--rank auto``, exit 6 for a bad
scheduler and exit 2 for a method without a distributed form.
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

from matcli.methods.complete.als import als
from matcli.methods.complete.als_blocks import InProcessBlocks, als_blocks, entry_set, make_block, plan_ranges
from matcli.methods.complete.common import Heldout

EPS = np.finfo(np.float64).eps
MATCLI = [sys.executable, "-m", "matcli"]


def _low_rank_entries(m: int, n: int, rank: int, rate: float, noise: float, seed: int):
    """Entries of ``3 + U V^T + noise`` at a random ``rate`` of positions, in random order."""
    rng = np.random.default_rng(seed)
    U, V = rng.standard_normal((m, rank)), rng.standard_normal((n, rank))
    rows, cols = np.nonzero(rng.random((m, n)) < rate)
    order = rng.permutation(rows.size)
    rows, cols = rows[order], cols[order]
    values = 3.0 + np.einsum("ij,ij->i", U[rows], V[cols]) + noise * rng.standard_normal(rows.size)
    return rows, cols, values


def _even_ranges(q: int, count: int) -> list[tuple[int, int]]:
    bounds = np.linspace(0, q, count + 1).round().astype(int)
    return [(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]


# ----------------------------------------------------------------------------- in process
@pytest.mark.parametrize("inner,init", [("cg", "svd"), ("exact", "svd"), ("cg", "random")])
@pytest.mark.parametrize("bias", [True, False])
def test_blocked_als_gives_the_local_factors_bit_for_bit_for_any_blocking(inner, init, bias):
    """The start (biases, spectral products over the blocks) and every sweep."""
    m, n = 120, 90
    rows, cols, values = _low_rank_entries(m, n, 3, 0.2, 0.05, seed=1)
    held = slice(0, 150)
    heldout = Heldout(rows[held], cols[held], values[held])
    rows, cols, values = rows[150:], cols[150:], values[150:]
    options = dict(rank=3, reg=0.05, bias=bias, inner=inner, init=init, maxiter=25, rtol=1e-9, heldout=heldout)
    local = als(rows, cols, values, (m, n), rng=np.random.default_rng(4), **options)
    entries = entry_set(rows, cols, values, (m, n))
    blockings = {
        "one block": ([(0, m)], [(0, n)]),
        "planned": (plan_ranges(entries.row_counts, entries.nnz), plan_ranges(entries.col_counts, entries.nnz)),
        "uneven": ([(0, 7), (7, 8), (8, 100), (100, m)], _even_ranges(n, 13)),
    }
    for name, ranges in blockings.items():
        blocked = als_blocks(InProcessBlocks(rows, cols, values, (m, n), ranges), entries,
                             rng=np.random.default_rng(4), **options)
        assert blocked.iterations == local.iterations and blocked.status == local.status, name
        assert sorted(blocked.outputs) == sorted(local.outputs), name
        for key in local.outputs:
            assert np.array_equal(blocked.outputs[key], local.outputs[key]), (name, key)
        # A sum of N positive squares in another order: relative rounding at most (N - 1) eps (halved by the root).
        rel = entries.nnz * EPS
        assert blocked.metrics["train_rmse"] == pytest.approx(local.metrics["train_rmse"], rel=rel, abs=0)
        assert blocked.metrics["val_rmse"] == local.metrics["val_rmse"]  # the whole model, on the client
        assert blocked.info["blocks"]["row_blocks"] == len(ranges[0])


def test_rows_and_columns_without_entries_and_blocks_without_entries():
    """Empty rows and columns (zero factors, bias-only) and blocks of empty rows only: still bitwise."""
    m, n = 80, 70
    rows, cols, values = _low_rank_entries(m, n, 2, 0.3, 0.1, seed=6)
    keep = (rows % 7 != 3) & (rows < 60) & (cols % 5 != 1)
    rows, cols, values = rows[keep], cols[keep], values[keep]
    options = dict(rank=2, reg=0.1, bias=True, inner="cg", maxiter=10, rtol=0.0)
    local = als(rows, cols, values, (m, n), rng=np.random.default_rng(2), **options)
    ranges = ([(0, 3), (3, 60), (60, 70), (70, m)], [(0, 1), (1, 2), (2, n)])
    blocked = als_blocks(InProcessBlocks(rows, cols, values, (m, n), ranges), entry_set(rows, cols, values, (m, n)),
                         rng=np.random.default_rng(2), **options)
    assert local.info["empty_rows"] == blocked.info["empty_rows"] > 20
    for key in local.outputs:
        assert np.array_equal(blocked.outputs[key], local.outputs[key]), key


def test_interpolating_blocked_als_stops_where_the_local_kernel_does():
    """Exactly rank-3 data (3 + a rank-2 product), no ridge: both interpolate and stop on the same
    sweep by ``atol``."""
    m, n = 60, 50
    rows, cols, values = _low_rank_entries(m, n, 2, 0.5, 0.0, seed=2)
    atol = 1e-10 * float(np.sqrt(np.mean(values**2)))
    options = dict(rank=3, reg=0.0, bias=False, inner="exact", maxiter=200, rtol=0.0, atol=atol)
    local = als(rows, cols, values, (m, n), rng=np.random.default_rng(1), **options)
    entries = entry_set(rows, cols, values, (m, n))
    ranges = (_even_ranges(m, 5), _even_ranges(n, 3))
    blocked = als_blocks(InProcessBlocks(rows, cols, values, (m, n), ranges), entries, rng=np.random.default_rng(1),
                         **options)
    assert local.status.converged and blocked.status == local.status and blocked.iterations == local.iterations
    assert np.array_equal(blocked.outputs["U"], local.outputs["U"])


def test_plan_ranges_cover_the_side_in_order_without_empty_blocks():
    counts = np.array([0, 5, 0, 0, 300, 1, 1, 1, 0, 2] * 40)
    ranges = plan_ranges(counts, int(counts.sum()))
    assert ranges[0][0] == 0 and ranges[-1][1] == counts.size
    assert all(a < b for a, b in ranges) and all(ranges[i][1] == ranges[i + 1][0] for i in range(len(ranges) - 1))
    assert plan_ranges(np.array([3]), 3) == [(0, 1)]


def test_a_block_holds_every_entry_of_its_rows_in_the_order_of_the_whole_set():
    rows, cols, values = _low_rank_entries(30, 20, 2, 0.4, 0.1, seed=3)
    block = make_block(rows, cols, values, (30, 20), 1, 5, 11)
    keep = (cols >= 5) & (cols < 11)
    assert block.entries.shape == (6, 30)
    assert np.array_equal(block.entries.values, values[keep])
    assert np.array_equal(block.entries.rows, cols[keep] - 5) and np.array_equal(block.entries.cols, rows[keep])


# ----------------------------------------------------------------------------- a real cluster
#: The test data (48k entries) is far below DISTRIBUTED_ALS_MIN_ENTRIES: distribute it anyway.
DISTRIBUTE = {**os.environ, "MATCLI_DISTRIBUTED_ALS_MIN_ENTRIES": "0"}


def _run(args: list, cwd: Path, timeout: float = 240.0, env: dict | None = DISTRIBUTE) -> subprocess.CompletedProcess:
    return subprocess.run([*MATCLI, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env=env)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    pytest.importorskip("distributed")
    from tests.dask_cluster import Cluster

    with Cluster(tmp_path_factory.mktemp("dask-als-cluster"), workers=2) as running:
        yield running


@pytest.fixture(scope="module")
def ratings(tmp_path_factory):
    """600 x 400, rank 4 plus noise, 20% observed (48k entries): long enough sweeps to kill a worker in."""
    root = tmp_path_factory.mktemp("dask-als")
    done = _run(["generate", "completion", "--rows", "600", "--cols", "400", "--rank", "4", "--rate", "0.2",
                 "--noise", "0.05", "--seed", "5", "-o", "c.h5"], root)
    assert done.returncode == 0, done.stderr
    return root


def _model(path: Path) -> dict[str, np.ndarray]:
    with h5py.File(path, "r") as fh:
        return {name: fh[name][()] for name in ("U", "V")}


def _kill_a_worker_in_a_half_step(cluster, proc: subprocess.Popen, pids: dict[str, int], killed: list) -> None:
    with cluster.client() as client:
        while proc.poll() is None:
            for worker, keys in client.processing().items():
                if worker in pids and any(str(key).startswith("half_step") for key in keys):
                    os.kill(pids[worker], signal.SIGKILL)
                    killed.append(worker)
                    return
            time.sleep(0.02)


def test_distributed_als_equals_local_and_survives_a_killed_worker(cluster, ratings):
    args = ["complete", "c.h5:/observed", "--method", "als", "--rank", "4", "--reg", "0.05", "--validate", "0.1",
            "--maxiter", "40", "--rtol", "1e-9", "--seed", "3", "--quiet"]
    local = _run([*args, "-o", "m_local.h5", "--report", "r_local.json"], ratings)
    assert local.returncode == 0, local.stderr
    dask = ["--backend", "dask", "--scheduler", cluster.address]
    pids = cluster.worker_pids()
    proc = subprocess.Popen([*MATCLI, *args, *dask, "-o", "m_killed.h5", "--report", "r_killed.json"], cwd=ratings,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=DISTRIBUTE)
    killed: list = []
    killer = threading.Thread(target=_kill_a_worker_in_a_half_step, args=(cluster, proc, pids, killed))
    killer.start()
    try:
        _, stderr = proc.communicate(timeout=240)
    finally:
        killer.join()
    assert killed, "the run ended before a worker was seen in a half-step"
    assert proc.returncode == 0 and stderr.strip() == "", stderr
    reference, survived = _model(ratings / "m_local.h5"), _model(ratings / "m_killed.h5")
    for name in reference:
        assert np.array_equal(reference[name], survived[name]), name
    before, after = (json.loads((ratings / f"r_{name}.json").read_text()) for name in ("local", "killed"))
    assert after["status"] == before["status"] and after["iterations"] == before["iterations"]
    assert after["metrics"]["val_rmse"] == before["metrics"]["val_rmse"]
    train = before["problem"]["train_entries"]
    assert after["metrics"]["train_rmse"] == pytest.approx(before["metrics"]["train_rmse"], rel=train * EPS, abs=0)
    assert after["certificate"]["passed"] == before["certificate"]["passed"]
    assert after["backend"]["workers"] == 2
    assert after["info"]["blocks"] == {"row_blocks": 4, "col_blocks": 4, "where": "dask workers", "workers": 2}
    cluster.wait_for_workers(2)  # the nanny restarts its worker for the next test


def test_rank_auto_runs_the_candidates_one_after_another_over_the_blocks(cluster, ratings):
    args = ["complete", "c.h5:/observed", "--method", "als-exact", "--rank", "auto", "--reg", "0.05", "--maxiter",
            "15", "--seed", "8", "--quiet"]
    runs = {}
    for name, extra in (("local", []), ("dask", ["--backend", "dask", "--scheduler", cluster.address])):
        done = _run([*args, *extra, "-o", f"a_{name}.h5", "--report", f"ra_{name}.json"], ratings)
        assert done.returncode == 0, done.stderr
        runs[name] = json.loads((ratings / f"ra_{name}.json").read_text())
    local, dask = runs["local"], runs["dask"]
    assert dask["params"]["rank"] == local["params"]["rank"]
    strip = [{key: row[key] for key in ("rank", "reg", "sweeps", "converged", "after_stop", "val_rmse")}
             for row in dask["info"]["selection"]]
    # one candidate at a time, as locally: the same table, no fits past the stop
    assert strip == [{key: row[key] for key in strip[0]} for row in local["info"]["selection"]]
    a, b = _model(ratings / "a_local.h5"), _model(ratings / "a_dask.h5")
    assert all(np.array_equal(a[name], b[name]) for name in a)


def test_bad_scheduler_and_methods_without_a_distributed_form(cluster, ratings):
    bad = _run(["complete", "c.h5:/observed", "--method", "als", "--rank", "3", "--reg", "0.1", "--backend", "dask",
                "--scheduler", "tcp://127.0.0.1:1", "-o", "bad.h5"], ratings, timeout=60)
    assert bad.returncode == 6 and len(bad.stderr.strip().splitlines()) == 1, bad.stderr
    assert not (ratings / "bad.h5").exists()
    other = _run(["complete", "c.h5:/observed", "--method", "softimpute", "--rank", "3", "--reg", "0.1", "--backend",
                  "dask", "--scheduler", cluster.address, "-o", "soft.h5"], ratings, timeout=120)
    assert other.returncode == 2 and len(other.stderr.strip().splitlines()) == 1, other.stderr
    assert "no distributed form" in other.stderr and not (ratings / "soft.h5").exists()


def test_below_the_threshold_als_is_not_distributed_and_says_why(cluster, ratings):
    """With the default threshold (4M entries) the 48k-entry set is fitted in this process (fixed rank
    and reg) or its candidates side by side (auto); the answer is the local one either way."""
    default = {key: value for key, value in os.environ.items() if key != "MATCLI_DISTRIBUTED_ALS_MIN_ENTRIES"}
    dask = ["--backend", "dask", "--scheduler", cluster.address]
    fixed = ["complete", "c.h5:/observed", "--method", "als", "--rank", "4", "--reg", "0.05", "--maxiter", "10",
             "--seed", "3", "--quiet"]
    runs = {}
    for name, extra in (("local", []), ("dask", dask)):
        done = _run([*fixed, *extra, "-o", f"t_{name}.h5", "--report", f"rt_{name}.json"], ratings, env=default)
        assert done.returncode == 0, done.stderr
        runs[name] = json.loads((ratings / f"rt_{name}.json").read_text())
    assert "fitted in this process" in runs["dask"]["method_reason"] and "blocks" not in runs["dask"]["info"]
    a, b = _model(ratings / "t_local.h5"), _model(ratings / "t_dask.h5")
    assert all(np.array_equal(a[name], b[name]) for name in a)
    auto = ["complete", "c.h5:/observed", "--method", "als", "--rank", "auto", "--reg", "0.05", "--maxiter", "10",
            "--seed", "3", "--quiet", *dask, "-o", "t_auto.h5", "--report", "rt_auto.json"]
    done = _run(auto, ratings, env=default)
    assert done.returncode == 0, done.stderr
    report = json.loads((ratings / "rt_auto.json").read_text())
    assert "side by side on the workers" in report["method_reason"] and report["backend"]["tasks"] >= 2
    bad = _run([*fixed, *dask, "-o", "t_bad.h5"], ratings, env={**default, "MATCLI_DISTRIBUTED_ALS_MIN_ENTRIES": "x"})
    assert bad.returncode == 2 and "MATCLI_DISTRIBUTED_ALS_MIN_ENTRIES" in bad.stderr
