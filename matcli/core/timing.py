"""Phase timer: wall and CPU seconds per named phase, plus peak resident memory."""

from __future__ import annotations

import resource
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator


def peak_memory_bytes() -> int:
    """Peak resident set size of this process so far, in bytes."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


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
