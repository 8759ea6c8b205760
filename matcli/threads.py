"""Thread budget of a job: BLAS/OpenMP pools (threadpoolctl) and matcli's own worker threads.

Inside :func:`thread_limit`, native BLAS/OpenMP pools use at most the job's thread count, and
:func:`parallel_map` runs independent pieces of work (row ranges of a sketch's passes over A,
whose numpy/scipy kernels release the GIL) on the same number of threads. Outside it,
:func:`parallel_map` is a plain serial loop, so library callers keep full control.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Callable, Iterable, Iterator, TypeVar

import numpy as np

T = TypeVar("T")
R = TypeVar("R")

#: Worker threads :func:`parallel_map` may use (1 outside :func:`thread_limit`).
_workers = 1
_pool: ThreadPoolExecutor | None = None


@contextmanager
def _workers_at(count: int) -> Iterator[None]:
    """:func:`parallel_map` uses ``count`` threads inside the block; the previous count after it."""
    global _workers
    previous = _workers
    _workers = max(1, count)
    try:
        yield
    finally:
        _workers = previous


def available_cpus(cgroup_root: str = "/sys/fs/cgroup") -> int:
    """CPUs this process may use: its affinity mask (``taskset``, a container's cpuset), lowered to the
    cgroup CPU quota when one is set (``docker --cpus 1.5`` gives 2: the quota rounded up), at least 1.

    ``os.cpu_count()`` counts the machine's CPUs, so a job in a 2-CPU container on a 64-core host
    started 64 BLAS threads contending for 2 CPUs.
    """
    try:
        count = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        count = os.cpu_count() or 1
    for path, parse in ((f"{cgroup_root}/cpu.max", _quota_v2),
                        (f"{cgroup_root}/cpu/cpu.cfs_quota_us", _quota_v1)):
        try:
            with open(path) as fh:
                quota = parse(fh.read(), path)
        except (OSError, ValueError):
            continue
        if quota is not None:
            count = min(count, max(1, -(-quota // 1)))
            break
    return max(1, int(count))


def _quota_v2(text: str, path: str) -> float | None:
    """cgroup v2 ``cpu.max``: ``"<quota> <period>"`` or ``"max <period>"`` -> CPUs (None: no quota)."""
    quota, period = text.split()[:2]
    return None if quota == "max" else float(quota) / float(period)


def _quota_v1(text: str, path: str) -> float | None:
    """cgroup v1 ``cpu.cfs_quota_us`` (-1: no quota) over ``cpu.cfs_period_us`` beside it."""
    quota = float(text.strip())
    if quota <= 0:
        return None
    with open(os.path.join(os.path.dirname(path), "cpu.cfs_period_us")) as fh:
        return quota / float(fh.read().strip())


@contextmanager
def thread_limit(threads: int | None) -> Iterator[int]:
    """Within the block, native thread pools and :func:`parallel_map` use at most ``threads`` threads.

    Yields the thread count in effect (:func:`available_cpus` when ``threads`` is None; native
    pools are then limited to it too).
    """
    effective = threads if threads is not None else available_cpus()
    with _workers_at(effective):
        if threads is None and effective >= (os.cpu_count() or 1):
            yield effective
            return
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=effective):
            yield effective


def worker_count() -> int:
    """Threads :func:`parallel_map` uses at this point (1 outside :func:`thread_limit`)."""
    return _workers


def worker_ranges(length: int, min_size: int = 1) -> list[tuple[int, int]]:
    """Split ``range(length)`` into contiguous ``(start, stop)`` ranges, one per worker thread
    (:func:`worker_count`) but none shorter than ``min_size`` (so at least one range)."""
    parts = max(1, min(worker_count(), length // max(min_size, 1)))
    edges = np.linspace(0, length, parts + 1).astype(int)
    return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:])]


def parallel_map(fn: Callable[[T], R], items: Iterable[T]) -> list[R]:
    """``[fn(item) for item in items]``, on up to :func:`worker_count` threads; results in order.

    Worth it only for ``fn`` that spends its time in native code releasing the GIL.
    """
    items = list(items)
    if _workers <= 1 or len(items) <= 1:
        return [fn(item) for item in items]
    global _pool
    if _pool is None or _pool._max_workers < _workers - 1:  # noqa: SLF001 - grow the shared pool
        _pool = ThreadPoolExecutor(max_workers=_workers - 1, thread_name_prefix="matcli")
    # one task per thread (round-robin), the first one in the calling thread: no idle waiting and
    # no per-item overhead on short products
    groups = min(_workers, len(items))
    chunks = [items[i::groups] for i in range(groups)]
    futures = [_pool.submit(lambda chunk: [fn(item) for item in chunk], chunk) for chunk in chunks[1:]]
    parts = [[fn(item) for item in chunks[0]]] + [future.result() for future in futures]
    out: list[R] = [None] * len(items)  # type: ignore[list-item]
    for i, part in enumerate(parts):
        out[i::groups] = part
    return out


@contextmanager
def serial() -> Iterator[None]:
    """:func:`parallel_map` runs in the calling thread inside the block: for work whose per-thread
    partial results would multiply its memory and whose speed is bound by reading its input."""
    with _workers_at(1):
        yield


@contextmanager
def own_threads_only() -> Iterator[None]:
    """BLAS single-threaded inside the block when :func:`parallel_map` has several threads.

    For kernels that parallelise their heavy loops themselves: BLAS worker threads spinning
    between calls would otherwise compete with those threads for the cores (and tiny LAPACK calls
    pay for waking them).
    """
    if _workers <= 1:
        yield
        return
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        yield


@contextmanager
def blas_on_all_threads() -> Iterator[None]:
    """Within :func:`own_threads_only`: BLAS on all :func:`worker_count` threads for one large call
    (a dense factorisation worth waking the BLAS workers for)."""
    if _workers <= 1:
        yield
        return
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=_workers, user_api="blas"):
        yield
