"""Start-up cost of matcli processes (issue #22): process CPU seconds (user + sys) of tiny runs.

A tiny run's cost is almost all imports, so each row compares a whole ``python -m matcli ...`` process
with the imports it cannot avoid, measured as processes in the same loop:

* ``matcli --help`` against ``python -c pass`` (target < 0.3 s wall);
* a tiny solve (dense and sparse input), sketch-regress, factorize and complete against
  ``python -c "import numpy, scipy.sparse"`` (target for the solve: < 0.25 s CPU).

CPU, not wall time, because the machine is shared: the children's ``ru_utime + ru_stime`` from
``wait4`` is what the process itself spent, whatever else runs. Every command runs once per round,
rounds interleaved (``--quick`` 10, ``--full`` 30); each row reports the median over rounds. The
floors ``python -c pass`` and ``python -c "import numpy"`` are measured in the same rounds and kept in
``extra``. Each tiny run's answer is checked once (its report's status) before timing.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time

from _common import Row, report, size_from_argv, work_dir

FLOOR = "import numpy, scipy.sparse"


def process_cpu(cmd: list[str]) -> tuple[float, float]:
    """(user + sys CPU seconds, wall seconds) of one run of ``cmd``; RuntimeError if it fails."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    err = proc.stderr.read().decode(errors="replace")
    proc.stderr.close()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}: {err}")
    return usage.ru_utime + usage.ru_stime, wall


def tiny_problems(folder) -> dict[str, list[str]]:
    """Generate the tiny inputs (not timed); return each workload's matcli arguments."""
    def generate(*args: str) -> str:
        path = folder / ("_".join(arg.lstrip("-") for arg in args) + ".h5")
        if not path.exists():
            subprocess.run([sys.executable, "-m", "matcli", "generate", *args, "-o", str(path), "--quiet"],
                           check=True)
        return str(path)

    spd = generate("spd", "--n", "10")
    poisson = generate("poisson2d", "--n", "10")
    regression = generate("regression", "--rows", "200", "--cols", "5")
    lowrank = generate("lowrank", "--rows", "30", "--cols", "20")
    completion = generate("completion", "--rows", "20", "--cols", "10", "--rank", "1", "--rate", "0.8")
    out = str(folder / "out.h5")
    return {
        "solve, dense 10x10 SPD": ["solve", f"{spd}:/A", "--rhs", f"{spd}:/b", "-o", out],
        "solve, sparse 100x100 Poisson": ["solve", f"{poisson}:/A", "--rhs", f"{poisson}:/b", "-o", out],
        "sketch-regress, 200x5": ["sketch-regress", f"{regression}:/A", "--rhs", f"{regression}:/b", "-o", out],
        "factorize, 30x20 SVD": ["factorize", f"{lowrank}:/A", "-o", out],
        "complete, 20x10 rank 1": ["complete", f"{completion}:/observed", "--rank", "1", "-o", out],
    }


def checked_status(args: list[str], folder) -> str:
    """Run once with a report; its certified status and its compute phase's CPU seconds (a failed run
    raises), so the reader can tell start-up from work."""
    path = folder / "report.json"
    subprocess.run([sys.executable, "-m", "matcli", *args, "--force", "--quiet", "--report", str(path)],
                   check=True, capture_output=True)
    report = json.loads(path.read_text())
    work = sum(report["phases"][phase]["cpu_s"] for phase in ("setup", "compute"))
    return f"{report['status']['reason']} (setup+compute {work:.3f} s CPU)"


def main() -> None:
    size = size_from_argv()
    rounds = 10 if size == "quick" else 30
    folder = work_dir("startup")
    workloads = tiny_problems(folder)
    statuses = {name: checked_status(args, folder) for name, args in workloads.items()}
    python = sys.executable
    commands = {
        "pass": [python, "-c", "pass"],
        "numpy": [python, "-c", "import numpy"],
        "floor": [python, "-c", FLOOR],
        "--help": [python, "-m", "matcli", "--help"],
        **{name: [python, "-m", "matcli", *args, "--force", "--quiet"] for name, args in workloads.items()},
    }
    cpu: dict[str, list[float]] = {name: [] for name in commands}
    wall: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(rounds):
        for name, cmd in commands.items():
            c, w = process_cpu(cmd)
            cpu[name].append(c)
            wall[name].append(w)
    median = {name: statistics.median(values) for name, values in cpu.items()}
    median_wall = {name: statistics.median(values) for name, values in wall.items()}
    floors = {"python -c pass": median["pass"], "import numpy": median["numpy"], FLOOR: median["floor"],
              "load average": os.getloadavg()[0], "rounds": rounds}
    rows = [Row("matcli --help (median wall)", "python -c pass", median_wall["pass"], median_wall["--help"], "-",
                f"{median_wall['--help']:.3f} s wall, {median['--help']:.3f} s CPU", target="< 0.3 s",
                extra=floors)]
    for name in workloads:
        target = "< 0.25 s CPU" if name.startswith("solve") else ""
        rows.append(Row(f"tiny {name} (median process CPU)", f'python -c "{FLOOR}"', median["floor"], median[name],
                        "-", f"{statuses[name]}, {median[name]:.3f} s CPU ({median_wall[name]:.3f} s wall)",
                        target=target, extra=floors))
    report("startup", rows, size)
    print(" ".join(f"{key}: {value:.3f}" if isinstance(value, float) else f"{key}: {value}"
                   for key, value in floors.items()))


if __name__ == "__main__":
    main()
