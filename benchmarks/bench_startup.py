"""Start-up time of ``matcli --help`` (target < 0.3 s): imports of numerical modules must stay lazy.

Peer: the bare interpreter (``python -c pass``), so the ratio shows matcli's own share.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time

from _common import Row, report, size_from_argv


def median_seconds(cmd: list[str], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    size = size_from_argv()
    repeat = 7 if size == "quick" else 25
    bare = median_seconds([sys.executable, "-c", "pass"], repeat)
    helped = median_seconds([sys.executable, "-m", "matcli", "--help"], repeat)
    report("startup", [Row("matcli --help (median)", "python -c pass", bare, helped,
                           "-", f"{helped:.3f} s", target="< 0.3 s")], size)


if __name__ == "__main__":
    main()
