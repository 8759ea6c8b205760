"""matcli.threads: the job's thread budget for BLAS pools and matcli's own parallel loops."""

from __future__ import annotations

import threading

import numpy as np
import scipy.sparse as sp

from matcli.methods.factorize.metrics import adjoint_matmul, matmul
from matcli.threads import (blas_on_all_threads, own_threads_only, parallel_map, thread_limit, worker_count,
                            worker_ranges)


def test_parallel_map_keeps_order_and_runs_serially_outside_a_limit():
    seen = set()

    def square(x):
        seen.add(threading.get_ident())
        return x * x

    assert worker_count() == 1
    assert parallel_map(square, range(10)) == [x * x for x in range(10)]
    assert seen == {threading.get_ident()}
    with thread_limit(3):
        assert worker_count() == 3
        assert parallel_map(square, range(10)) == [x * x for x in range(10)]
        assert parallel_map(square, []) == []
    assert worker_count() == 1


def test_parallel_map_uses_several_threads_inside_a_limit():
    barrier = threading.Barrier(2, timeout=10)
    idents = []

    def wait_for_the_other(_):
        idents.append(threading.get_ident())
        barrier.wait()          # deadlocks (BrokenBarrierError after 10 s) unless two threads run at once
        return True

    with thread_limit(2):
        assert parallel_map(wait_for_the_other, [0, 1]) == [True, True]
    assert len(set(idents)) == 2


def test_parallel_map_propagates_exceptions():
    def fail(x):
        if x == 3:
            raise ValueError("three")
        return x

    with thread_limit(2):
        try:
            parallel_map(fail, range(6))
        except ValueError as exc:
            assert "three" in str(exc)
        else:
            raise AssertionError("the worker's exception was lost")


def test_own_threads_only_limits_blas_while_matcli_threads_run():
    from threadpoolctl import threadpool_info

    with thread_limit(2), own_threads_only():
        blas = [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]
        assert blas and all(n == 1 for n in blas)


def test_blas_on_all_threads_lifts_own_threads_only_for_one_block():
    from threadpoolctl import threadpool_info

    def blas_threads():
        return {p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"}

    with thread_limit(2), own_threads_only():
        with blas_on_all_threads():
            assert blas_threads() == {2}
        assert blas_threads() == {1}


def test_worker_ranges_tile_the_range_one_per_thread_above_a_minimum_size():
    assert worker_ranges(10) == [(0, 10)]  # outside a limit: one thread
    with thread_limit(3):
        assert worker_ranges(10) == [(0, 3), (3, 6), (6, 10)]
        assert worker_ranges(10, min_size=4) == [(0, 5), (5, 10)]
        assert worker_ranges(3, min_size=4) == [(0, 3)]
        assert worker_ranges(0) == [(0, 0)]


def test_sparse_products_are_the_same_bits_under_any_thread_limit():
    rng = np.random.default_rng(0)
    A = sp.random(3000, 2000, density=0.01, format="csr", random_state=rng)
    A = A + 1j * sp.random(3000, 2000, density=0.01, format="csr", random_state=rng)
    X, Y = rng.standard_normal((2000, 23)), rng.standard_normal((3000, 23)) * (1 - 2j)
    serial = matmul(A, X), adjoint_matmul(A, Y)
    with thread_limit(2):
        threaded = matmul(A, X), adjoint_matmul(A, Y)
    for a, b in zip(serial, threaded):
        assert np.array_equal(a, b)
    np.testing.assert_allclose(serial[0], A.toarray() @ X, rtol=1e-13, atol=1e-12 * np.abs(serial[0]).max())
    np.testing.assert_allclose(serial[1], A.toarray().conj().T @ Y, rtol=1e-13, atol=1e-12 * np.abs(serial[1]).max())


def test_serial_runs_parallel_map_in_the_caller_and_restores_the_count():
    import threading

    from matcli.threads import parallel_map, serial, thread_limit, worker_count

    with thread_limit(2):
        with serial():
            assert worker_count() == 1
            names = parallel_map(lambda _: threading.current_thread().name, range(4))
            assert set(names) == {threading.current_thread().name}
        assert worker_count() == 2


def test_available_cpus_follows_affinity_and_cgroup_quota(tmp_path):
    """The default thread count is what the process may use, not os.cpu_count()."""
    import os

    from matcli.threads import available_cpus

    affinity = len(os.sched_getaffinity(0))
    assert available_cpus(str(tmp_path / "none")) == affinity  # no cgroup files: the affinity mask
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert available_cpus(str(tmp_path)) == affinity
    (tmp_path / "cpu.max").write_text("50000 100000\n")  # half a CPU: one thread
    assert available_cpus(str(tmp_path)) == 1
    (tmp_path / "cpu.max").write_text(f"{150000 * affinity} 100000\n")  # more quota than CPUs
    assert available_cpus(str(tmp_path)) == affinity
    v1 = tmp_path / "v1"
    (v1 / "cpu").mkdir(parents=True)
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("100000\n")
    (v1 / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert available_cpus(str(v1)) == 1
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    assert available_cpus(str(v1)) == affinity
    (tmp_path / "cpu.max").write_text("garbage\n")
    assert available_cpus(str(tmp_path)) == affinity
