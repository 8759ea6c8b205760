"""Thread budget of a job: BLAS/OpenMP pools (threadpoolctl) and matcli's own worker threads.

Inside :func:`thread_limit`, native BLAS/OpenMP pools use at most the job's thread count, and
:func:`parallel_map` runs independent pieces of work (the column chunks of a sparse x dense
product, whose scipy kernels release the GIL) on the same number of threads. Outside it,
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


@contextmanager
def thread_limit(threads: int | None) -> Iterator[int]:
    """Within the block, native thread pools and :func:`parallel_map` use at most ``threads`` threads.

    Yields the thread count in effect (the machine's core count when ``threads`` is None).
    """
    effective = threads if threads is not None else (os.cpu_count() or 1)
    with _workers_at(effective):
        if threads is None:
            yield effective
            return
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=threads):
            yield threads


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
