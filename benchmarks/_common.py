"""Shared helpers for the benchmark scripts: run matcli as a whole process, time peers, print ratios.

Every benchmark script generates its workloads deterministically, runs matcli through its CLI
and the peers in the same run, checks both answers, prints a table and writes
``benchmarks/results/<name>.json``.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
WORK_DIR = BENCH_DIR / "work"


@dataclass
class Row:
    """One line of a benchmark table: matcli against one peer on one workload."""

    workload: str
    peer: str
    peer_seconds: float | None
    matcli_seconds: float
    peer_accuracy: str
    matcli_accuracy: str
    target: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        """peer time / matcli time: > 1 means matcli is faster."""
        if self.peer_seconds is None or self.matcli_seconds <= 0:
            return None
        return self.peer_seconds / self.matcli_seconds


def work_dir(name: str) -> Path:
    path = WORK_DIR / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def run_matcli(args: list[str], env_extra: dict[str, str] | None = None) -> tuple[float, dict[str, Any]]:
    """Run ``python -m matcli <args> --report <tmp> --quiet`` as a process.

    Returns (wall seconds of the whole process, parsed JSON report). Raises RuntimeError with
    matcli's stderr when the exit code is non-zero.
    """
    report_path = WORK_DIR / f"report_{os.getpid()}_{time.monotonic_ns()}.json"
    WORK_DIR.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "matcli", *args, "--report", str(report_path), "--quiet"]
    env = dict(os.environ)
    env.update(env_extra or {})
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"matcli exited {proc.returncode}: {' '.join(cmd)}\n{proc.stderr}")
    report = json.loads(report_path.read_text())
    report_path.unlink()
    return elapsed, report


def best_time(fn: Callable[[], Any], repeat: int = 1) -> tuple[float, Any]:
    """Best wall time of ``repeat`` calls of ``fn`` and the value of the last call."""
    best, value = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        value = fn()
        best = min(best, time.perf_counter() - t0)
    return best, value


def machine() -> dict[str, Any]:
    mem_gib = None
    try:
        with open("/proc/meminfo") as fh:
            mem_gib = round(int(fh.readline().split()[1]) / 2**20, 1)
    except OSError:
        pass
    return {"cores": os.cpu_count(), "ram_gib": mem_gib, "python": platform.python_version(),
            "date": time.strftime("%Y-%m-%d")}


def _fmt(value: float | None, spec: str = ".3f") -> str:
    return "n/a" if value is None else format(value, spec)


def report(name: str, rows: list[Row], size: str) -> None:
    """Print the table and write ``benchmarks/results/<name>.json``."""
    header = ("workload", "peer", "peer s", "matcli s", "ratio", "peer acc", "matcli acc", "target")
    lines = [header]
    for r in rows:
        ratio = r.ratio
        lines.append((r.workload, r.peer, _fmt(r.peer_seconds), _fmt(r.matcli_seconds),
                      "n/a" if ratio is None else f"{ratio:.2f}x", r.peer_accuracy, r.matcli_accuracy,
                      r.target))
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(header))]
    for i, line in enumerate(lines):
        print("  ".join(str(cell).ljust(w) for cell, w in zip(line, widths)))
        if i == 0:
            print("  ".join("-" * w for w in widths))
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    payload = {"benchmark": name, "size": size, "machine": machine(),
               "rows": [dict(asdict(r), ratio=r.ratio) for r in rows]}
    (RESULTS_DIR / f"{name}.json").write_text(json.dumps(payload, indent=2) + "\n")


def size_from_argv(argv: list[str] | None = None) -> str:
    """``quick`` (default, < 5 min for the whole suite) or ``full`` from ``--quick`` / ``--full``."""
    args = sys.argv[1:] if argv is None else argv
    return "full" if "--full" in args else "quick"
