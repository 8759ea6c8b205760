"""Limit BLAS/OpenMP threads for the duration of a job (threadpoolctl)."""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Iterator


@contextmanager
def thread_limit(threads: int | None) -> Iterator[int]:
    """Within the block, native thread pools use at most ``threads`` threads.

    Yields the thread count in effect (the machine's core count when ``threads`` is None).
    """
    if threads is None:
        yield os.cpu_count() or 1
        return
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=threads):
        yield threads
