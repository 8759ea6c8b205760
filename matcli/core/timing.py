"""Phase timer: wall and CPU seconds per named phase, plus peak resident memory."""

from __future__ import annotations

import resource
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator


def peak_memory_bytes() -> int:
    """Peak resident set size of this process so far, in bytes.

    Linux: ``VmHWM`` of /proc/self/status, the high-water mark of this program's own memory.
    ``getrusage``'s ru_maxrss is only the fallback: Linux carries the parent's resident size over
    into it when a process is started by fork/vfork + exec, so a small matcli started from a large
    process (a benchmark holding its matrix, a test runner) would report the parent's peak.
    """
    from matcli.core.memory import proc_kib

    high_water = proc_kib("/proc/self/status", "VmHWM")
    if high_water is not None:
        return high_water
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def resident_memory_bytes() -> int:
    """Resident set size of this process now, in bytes (the peak so far where /proc is missing)."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * resource.getpagesize()
    except (OSError, IndexError, ValueError):
        return peak_memory_bytes()


@dataclass
class PhaseTimer:
    """Accumulates ``{phase: {"wall_s": float, "cpu_s": float}}`` in the order phases ran."""

    phases: dict[str, dict[str, float]] = field(default_factory=dict)

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        wall0, cpu0 = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            entry = self.phases.setdefault(name, {"wall_s": 0.0, "cpu_s": 0.0})
            entry["wall_s"] += time.perf_counter() - wall0
            entry["cpu_s"] += time.process_time() - cpu0

    def total_wall(self) -> float:
        return sum(p["wall_s"] for p in self.phases.values())
