"""``sketch-regress --backend dask``: the workers read A in row blocks; the answer is certified, the
same bits on one worker (in this process) as on a cluster of two, and after a worker is killed.

The reference is the exact least-squares solution x_ls, reached through the a-posteriori bound of
any iterate, ``||x - x_ls|| <= ||A^T (b - A x)|| / sigma_min(A)^2`` (A^T A (x_ls - x) = A^T r(x)),
evaluated in extended precision (np.longdouble) so that forming r adds no rounding of its own: the
run's x and numpy's (LAPACK) solution must each be within their bound of x_ls, so within the sum of
both bounds of each other.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import h5py
import numpy as np
import pytest
import scipy.sparse as sp

pytest.importorskip("distributed")

import matcli  # noqa: E402
from matcli import runner  # noqa: E402
from matcli.backends.local import LocalBackend  # noqa: E402
from matcli.io.writers import write_result  # noqa: E402
from tests.dask_cluster import Cluster  # noqa: E402

MATCLI = [sys.executable, "-m", "matcli"]
EPS = np.finfo(float).eps


@pytest.fixture(scope="module")
def problems(tmp_path_factory):
    """A noisy (inconsistent) dense 30000 x 40 problem with condition 1e3, chunked by 1000 rows,
    and a sparse 40000 x 60 CSR one with a few heavy rows; b in the same files."""
    root = tmp_path_factory.mktemp("sketch-dask")
    rng = np.random.default_rng(5)
    m, n = 30000, 40
    U, _ = np.linalg.qr(rng.standard_normal((m, n)))
    V, _ = np.linalg.qr(rng.standard_normal((n, n)))
    A = (U * np.logspace(0, -3, n)) @ V.T
    b = A @ rng.standard_normal(n) + 1e-3 * rng.standard_normal(m)
    with h5py.File(root / "dense.h5", "w") as fh:
        fh.create_dataset("A", data=A, chunks=(1000, n))
        fh.create_dataset("b", data=b)
    S = sp.random(40000, 60, density=0.05, random_state=7, format="csr") + sp.eye(40000, 60, format="csr")
    S = sp.diags(np.where(np.arange(40000) % 997 == 0, 100.0, 1.0)) @ S
    bs = rng.standard_normal(40000)
    write_result(str(root / "sparse.h5"), str(root / "sparse.h5"), {"A": S.tocsr(), "b": bs}, {}, "test")
    return root, {"dense": (A, b), "sparse": (S.toarray(), bs)}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A scheduler and two worker processes on 127.0.0.1, shared by the tests of this module."""
    with Cluster(tmp_path_factory.mktemp("sketch-cluster"), workers=2) as running:
        yield running


def one_worker_here(monkeypatch):
    """--backend dask with this process as its only worker (the tasks run in block order here)."""
    monkeypatch.setattr(runner, "get_backend", lambda name, address=None: LocalBackend())


def distance_bound(x, A, b, smin) -> float:
    """``||A^T (b - A x)|| / sigma_min^2`` in extended precision: a bound on ||x - x_ls||."""
    wide = A.astype(np.longdouble)
    r = b.astype(np.longdouble) - wide @ x.astype(np.longdouble)
    return float(np.linalg.norm((wide.T @ r).astype(float))) / smin**2


def assert_least_squares(x, A, b):
    smin = np.linalg.svd(A, compute_uv=False)[-1]
    x_lapack = np.linalg.lstsq(A, b, rcond=None)[0]
    ours, theirs = distance_bound(x, A, b, smin), distance_bound(x_lapack, A, b, smin)
    assert np.linalg.norm(x - x_lapack) <= 1.01 * (ours + theirs)
    # --rtol 1e-12 on ||A^T r|| / (||A|| ||r||), ||r|| ~ 0.2, sigma_min^2 = 1e-6: ~1e-7 of ||x|| ~ 6
    assert ours <= 1e-6 * np.linalg.norm(x_lapack), "the run did not solve to a useful accuracy"


@pytest.mark.parametrize("name", ["dense", "sparse"])
def test_row_blocks_read_by_the_workers_solve_the_least_squares_problem(problems, monkeypatch, name):
    root, arrays = problems
    one_worker_here(monkeypatch)
    out = matcli.sketch_regress(f"{root}/{name}.h5:/A", f"{root}/{name}.h5:/b", method="precondition",
                                rtol=1e-12, seed=3, backend="dask", threads=1)
    assert out.converged, out.message
    assert out.report["problem"]["row_blocks"] == 8 and "workers" in out.report["problem"]["format"]
    assert out.report["info"]["passes_over_file"] >= out.report["iterations"] + 1
    assert_least_squares(out["x"], *arrays[name])


def test_dask_mode_refuses_what_it_cannot_read_or_do(problems, tmp_path, monkeypatch):
    from matcli.core.errors import InputError, UsageError

    root, arrays = problems
    one_worker_here(monkeypatch)
    A, b = arrays["dense"]
    mtx = tmp_path / "A.mtx"
    import scipy.io

    scipy.io.mmwrite(str(mtx), A[:200])
    np.save(tmp_path / "b.npy", b[:200])
    with pytest.raises(InputError, match="row blocks"):
        matcli.sketch_regress(str(mtx), str(tmp_path / "b.npy"), backend="dask")
    for kwargs, words in [({"sketch": "srht", "method": "precondition"}, "--sketch srht"),
                          ({"sketch": "gaussian", "method": "lapack"}, "--sketch does not apply")]:
        with pytest.raises(UsageError, match=words):
            matcli.sketch_regress(f"{root}/dense.h5:/A", f"{root}/dense.h5:/b", backend="dask", **kwargs)


def run(args, cwd, timeout=240):
    return subprocess.run([*MATCLI, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=timeout)


def _kill_first_worker_running(cluster, proc, pids, killed, prefix):
    with cluster.client() as client:
        while proc.poll() is None:
            for worker, keys in client.processing().items():
                if worker in pids and any(str(key).startswith(prefix) for key in keys):
                    os.kill(pids[worker], signal.SIGKILL)
                    killed.append(worker)
                    return
            time.sleep(0.01)


def test_two_workers_one_worker_and_a_killed_worker_give_the_same_bits(problems, monkeypatch, tmp_path, cluster):
    """The blocks are cut from A's size alone and summed in block order on the client, so the same
    seed gives the same x on a cluster of two as on one in-process worker, and a worker killed
    mid-run (its blocks read again by the other) changes nothing."""
    root, _ = problems
    one_worker_here(monkeypatch)
    here = matcli.sketch_regress(f"{root}/dense.h5:/A", f"{root}/dense.h5:/b", method="precondition",
                                 rtol=1e-12, seed=3, backend="dask", threads=1)
    args = ["sketch-regress", f"{root}/dense.h5:/A", f"{root}/dense.h5:/b", "-m", "precondition", "--rtol", "1e-12",
            "--seed", "3", "--threads", "1", "--backend", "dask", "--quiet", "--strict"]
    cluster.wait_for_workers(2)
    args += ["--scheduler", cluster.address]
    quiet = run([*args, "-o", "x.h5", "--report", "r.json"], tmp_path)
    assert quiet.returncode == 0, quiet.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["backend"]["workers"] == 2
    # the blocks fit the default budget: read once and held by the workers, so the worker killed
    # below takes blocks with it, which the other reads again
    assert report["info"]["passes_over_file"] == 1
    with h5py.File(tmp_path / "x.h5") as fh:
        assert np.array_equal(fh["x"][()], here["x"])
    pids = cluster.worker_pids()
    proc = subprocess.Popen([*MATCLI, *args, "-o", "xk.h5"], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    killed: list = []
    killer = threading.Thread(target=_kill_first_worker_running,
                              args=(cluster, proc, pids, killed, "kept_products_group"))
    killer.start()
    try:
        _, stderr = proc.communicate(timeout=240)
    finally:
        killer.join()
    assert proc.returncode == 0, stderr
    if not killed:
        pytest.skip("the run ended before a worker was seen running a pass (machine too fast to catch one)")
    with h5py.File(tmp_path / "xk.h5") as fh:
        assert np.array_equal(fh["x"][()], here["x"])


@pytest.mark.parametrize("name", ["dense", "sparse"])
def test_exact_mode_by_tsqr_over_the_blocks(problems, monkeypatch, name):
    """--mode lapack (and auto, for A with few columns) on a backend: the R factor of [A b] by TSQR,
    then the SVD of R; certified from A by a second pass."""
    root, arrays = problems
    one_worker_here(monkeypatch)
    out = matcli.sketch_regress(f"{root}/{name}.h5:/A", f"{root}/{name}.h5:/b", backend="dask", threads=1)
    assert out.method == "lapack" and "TSQR" in out.report["method_reason"] and out.converged
    assert out.report["info"]["passes_over_file"] == 2
    assert out.metrics["normal_residual"] <= 30 * max(arrays[name][0].shape) * EPS
    assert_least_squares(out["x"], *arrays[name])


def test_tsqr_ridge_auto_chooses_the_local_exact_ridge(problems, monkeypatch):
    """GCV over the exact singular values (m rows, rho^2 outside the range) is the local exact
    solve's GCV: the same grid point, and x within the ridge solution's conditioning of it."""
    root, arrays = problems
    spec_a, spec_b = f"{root}/dense.h5:/A", f"{root}/dense.h5:/b"
    local = matcli.sketch_regress(spec_a, spec_b, method="lapack", ridge="auto")
    one_worker_here(monkeypatch)
    remote = matcli.sketch_regress(spec_a, spec_b, method="lapack", ridge="auto", backend="dask", threads=1)
    lam = remote.report["params"]["ridge"]
    assert lam == pytest.approx(local.report["params"]["ridge"], rel=1e-9) and lam > 0
    A, _ = arrays["dense"]
    s = np.linalg.svd(A, compute_uv=False)
    cond = (s[0] ** 2 + lam) / (s[-1] ** 2 + lam)  # of the ridge normal equations
    assert np.linalg.norm(remote["x"] - local["x"]) <= 100 * cond * EPS * np.linalg.norm(local["x"])


def test_holding_plan_keeps_the_most_blocks_whose_runs_fit_the_budget(problems):
    """Exact construction: the first k blocks in equal runs over 2 workers; the budget that just
    holds the fullest run (with the worker's bytes and a task's copies) gives k, a byte less fewer."""
    from matcli.io.row_blocks import row_source
    from matcli.jobs.sketch_remote import BLOCK_COPIES, holding_plan, plan_blocks

    root, _ = problems
    source = row_source(f"{root}/dense.h5:/A")
    blocks = plan_blocks(source)
    sizes = [block.n_rows * 40 * 8 for block in blocks]  # float64 rows of the 40 columns
    working = BLOCK_COPIES * max(sizes) + 2 * 8 * 1000 * 40  # copies of the largest, two 1000-row chunks
    base = 100 * 2**20

    def fullest(k):
        return max(sum(sizes[i] for i in range(k) if i * 2 // k == w) for w in (0, 1))

    for k in (2, 4, len(blocks)):  # even k: k + 1 blocks put one more block in the first run
        budget = base + working + fullest(k)
        assert holding_plan(source, blocks, 2, base, budget)[0] == k
        assert holding_plan(source, blocks, 2, base, budget - 1)[0] < k
    assert holding_plan(source, blocks, 2, base, base + working - 1)[0] == 0
    count, facts = holding_plan(source, blocks, 1, base, 2**40)
    assert count == len(blocks) and facts["held_bytes_per_worker"] == sum(sizes)


@pytest.mark.parametrize("held", ["all", "some", "none"])
def test_blocks_held_by_the_workers_give_the_bits_of_blocks_read_each_pass(problems, cluster, monkeypatch, held):
    """Every pass over blocks held on 2 workers (all, the first 5 of 8 with the rest read again, or
    none) equals, bit for bit, the pass in this process reading every block; passes_over_file
    counts the passes that read the file."""
    import matcli.jobs.sketch_remote as remote
    from matcli.backends.dask import DaskBackend
    from matcli.io.row_blocks import row_source
    from matcli.methods.sketch.sketches import make_sketch

    root, arrays = problems
    _, b = arrays["dense"]
    source = row_source(f"{root}/dense.h5:/A")
    blocks = remote.plan_blocks(source)
    plan = remote.holding_plan
    if held != "all":
        monkeypatch.setattr(remote, "holding_plan", lambda *a: (5 if held == "some" else 0, plan(*a)[1]))
    rng = np.random.default_rng(1)
    x, M = rng.standard_normal(40), rng.standard_normal((40, 7))
    S = make_sketch("countsketch", b.size, 400, np.random.default_rng(2), min_rows=41)

    def passes(problem):
        t, gradient = problem.normal_product(x)  # t stays on the workers
        return (problem.sketch(S)[0], *problem.residual_and_gradient(x), problem.vectors.array(t), gradient,
                problem.row_norms2(M), *problem.r_factors())

    expected = passes(remote.DistributedRowProblem(LocalBackend(), source, b, blocks))
    cluster.wait_for_workers(2)  # a worker killed by an earlier test is back
    with DaskBackend(cluster.address) as backend:
        problem = remote.DistributedRowProblem(backend, source, b, blocks)
        got = passes(problem)
        facts = problem.describe()
    assert len(got) == len(expected)
    for mine, theirs in zip(got, expected):
        assert np.array_equal(mine, theirs)
    count = {"all": len(blocks), "some": 5, "none": 0}[held]
    assert sum(future is not None for future in problem.held) == count
    assert facts["passes_over_A"] == 5  # the sketch, two products, the row norms, the R factors
    # holding reads the file once; a pass reads it when a block is not held
    assert facts["passes_over_file"] == {"all": 1, "some": 1 + 5, "none": 5}[held]
    assert facts["row_blocks_held"].startswith({"all": f"all {count}", "some": "5 of 8", "none": "none"}[held])


def test_a_task_taking_a_held_future_runs_on_the_worker_holding_it(cluster):
    """DaskBackend.map places a task whose item holds a future on that future's worker (Dask alone
    moved held blocks between workers to balance its queues), and resident(spread=True) puts
    equal runs of items on the workers."""
    from matcli.backends.dask import DaskBackend

    def where_and_sum(item):
        from distributed import get_worker

        values, _ = item
        return get_worker().address, float(values.sum())

    cluster.wait_for_workers(2)
    with DaskBackend(cluster.address) as backend:
        held = backend.resident(np.full, [(1000, float(k)) for k in range(8)], spread=True)
        holders = backend.client.who_has(held)
        ran = backend.map(where_and_sum, [(future, k) for k, future in enumerate(held)])
    assert len({holders[future.key][0] for future in held}) == 2
    for k, (future, (worker, total)) in enumerate(zip(held, ran)):
        assert worker in holders[future.key]
        assert total == 1000.0 * k


def test_cgls_vectors_stay_on_the_workers_and_are_the_arrays_of_a_local_pass(problems, cluster):
    """A p and r stay on the workers as futures (the client gets n-vectors and scalars); gathered,
    they are bit for bit the arrays of the same passes in this process, ``r - alpha q`` is the
    elementwise update, and its norm the blocks' sums of squares added in block order."""
    from distributed import Future

    import matcli.jobs.sketch_remote as remote
    from matcli.backends.dask import DaskBackend
    from matcli.io.row_blocks import row_source

    root, arrays = problems
    _, b = arrays["dense"]
    source = row_source(f"{root}/dense.h5:/A")
    blocks = remote.plan_blocks(source)
    rng = np.random.default_rng(4)
    x, p, alpha = rng.standard_normal(40), rng.standard_normal(40), 0.37
    local = remote.DistributedRowProblem(LocalBackend(), source, b, blocks)
    r_here, g_here = local.residual_and_gradient(x)
    q_here = local.vectors.array(local.normal_product(p)[0])
    cluster.wait_for_workers(2)
    with DaskBackend(cluster.address) as backend:
        problem = remote.DistributedRowProblem(backend, source, b, blocks)
        r, g = problem.residual_vector(x)
        q, _ = problem.normal_product(p)
        assert all(isinstance(part, Future) for part in (*r.parts, *q.parts))
        update = problem.vectors.subtract(r, alpha, q)
        stacked = problem.vectors.stack(update, np.array([3.0, 4.0]))
        got = [problem.vectors.array(v) for v in (r, q, update)]
    assert np.array_equal(got[0], r_here) and np.array_equal(g, g_here) and np.array_equal(got[1], q_here)
    assert np.array_equal(got[2], r_here - alpha * q_here)
    total = 0.0
    for block in blocks:
        piece = got[2][block.start:block.stop]
        total += float(piece @ piece)
    assert update.norm2 == total and problem.vectors.norm2(stacked) == total + 25.0
    # a sum of m squares in another order: within m eps of numpy's
    assert abs(total - float(got[2] @ got[2])) <= b.size * EPS * total


def test_ridge_on_two_workers_is_the_local_bits_and_the_ridge_solution(problems, monkeypatch, tmp_path, cluster):
    """With ridge the operator's range vectors are [A P y; sqrt(lam) P y]: the n rows stay on the
    client beside the m on the workers. Same bits as in this process, and x within its
    a-posteriori distance bound ||A^T r - lam x|| / (sigma_min^2 + lam) of the exact ridge solution."""
    root, arrays = problems
    A, b = arrays["dense"]
    lam = 1e-4
    one_worker_here(monkeypatch)
    here = matcli.sketch_regress(f"{root}/dense.h5:/A", f"{root}/dense.h5:/b", method="precondition",
                                 ridge=lam, rtol=1e-12, seed=3, backend="dask", threads=1)
    assert here.converged, here.message
    cluster.wait_for_workers(2)
    done = run(["sketch-regress", f"{root}/dense.h5:/A", f"{root}/dense.h5:/b", "-m", "precondition", "--ridge",
                lam, "--rtol", "1e-12", "--seed", "3", "--threads", "1", "--backend", "dask", "--scheduler",
                cluster.address, "--quiet", "--strict", "-o", "x.h5"], tmp_path)
    assert done.returncode == 0, done.stderr
    with h5py.File(tmp_path / "x.h5") as fh:
        assert np.array_equal(fh["x"][()], here["x"])
    x = here["x"]
    exact = np.linalg.solve(A.T @ A + lam * np.eye(A.shape[1]), A.T @ b)
    wide = A.astype(np.longdouble)
    gradient = (wide.T @ (b.astype(np.longdouble) - wide @ x.astype(np.longdouble))).astype(float) - lam * x
    smin = np.linalg.svd(A, compute_uv=False)[-1]
    bound = np.linalg.norm(gradient) / (smin**2 + lam)
    # the reference's own error: its normal equations' condition times eps
    s = np.linalg.svd(A, compute_uv=False)
    own = 10 * (s[0] ** 2 + lam) / (s[-1] ** 2 + lam) * EPS * np.linalg.norm(exact)
    assert np.linalg.norm(x - exact) <= 1.01 * bound + own
    assert bound <= 1e-6 * np.linalg.norm(exact)


def test_blocks_read_from_the_file_are_shared_out_over_the_workers():
    """Under a budget that holds the first blocks, the unheld tail is cut into one run per worker
    (cut over all blocks, a tail past the middle was one run that one worker read every pass)."""
    from types import SimpleNamespace

    from matcli.jobs.sketch_remote import DistributedRowProblem

    class Client:
        def nthreads(self):
            return {"w0": 1, "w1": 1}

        def who_has(self, futures):
            return {future.key: (f"w{index * 2 // 6}",) for index, future in enumerate(futures)}

    problem = object.__new__(DistributedRowProblem)
    problem.backend = SimpleNamespace(client=Client())
    problem.held = [SimpleNamespace(key=f"held-{i}") for i in range(6)] + [None] * 4
    problem.blocks = list(range(10))
    problem._group_list = None
    groups = problem._groups()
    assert sorted(map(sorted, groups)) == [[0, 1, 2], [3, 4, 5], [6, 7], [8, 9]]
