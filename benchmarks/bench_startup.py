"""Start-up cost of matcli processes (issue #22): process CPU seconds (user + sys) of tiny runs.

A tiny run's cost is almost all imports, so each row compares a whole ``python -m matcli ...`` process
with the imports it cannot avoid, measured as processes in the same loop:

* ``matcli --help`` against ``python -c pass`` (target < 0.3 s wall);
* a tiny solve (dense and sparse input), sketch-regress, factorize and complete against
  ``python -c "import numpy, scipy.sparse"`` (target for the solve: < 0.25 s CPU).

CPU, not wall time, because the machine is shared: the children's ``ru_utime + ru_stime`` from
``wait4`` is what the process itself spent, whatever else runs. Every command runs once per round,
rounds interleaved (``--quick`` 10, ``--full`` 30); each row reports the median over rounds. The
floors ``python -c pass``, ``import numpy``, ``import numpy, h5py`` (what a tiny run reading HDF5
cannot avoid) and ``import numpy, scipy.sparse`` are measured in the same rounds, as rows of their
own and in every row's ``extra``. Each tiny run's answer is checked once (its report's status)
before timing.

Bytecode: an installed package runs from cached bytecode (pip compiles it), but a process started
with ``PYTHONDONTWRITEBYTECODE`` set (as in some sandboxes) compiles every matcli module at each
start, which costs a tiny run ~0.05 s of CPU. Every command is therefore timed both ways: with
bytecode cached under a private ``PYTHONPYCACHEPREFIX`` (the rows' times; the cache is filled once
before timing, and the source tree gets no ``__pycache__``) and with ``PYTHONDONTWRITEBYTECODE=1``
(said beside each row and kept in ``extra``).
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


FLOORS = {"pass": "pass", "numpy": "import numpy", "numpy, h5py": "import numpy, h5py", "floor": FLOOR}


def environments(folder) -> dict[str, dict[str, str]]:
    """The two ways every command runs: bytecode cached (a private prefix) and never written."""
    cached = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    cached["PYTHONPYCACHEPREFIX"] = str(folder / "pycache")
    uncached = {k: v for k, v in os.environ.items() if k != "PYTHONPYCACHEPREFIX"}
    uncached["PYTHONDONTWRITEBYTECODE"] = "1"
    return {"cached": cached, "uncached": uncached}


def process_cpu(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, float]:
    """(user + sys CPU seconds, wall seconds) of one run of ``cmd``; RuntimeError if it fails."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
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
    poisson_mtx = folder / "poisson2d_10.mtx"
    if not poisson_mtx.exists():
        import h5py
        import scipy.io
        import scipy.sparse

        with h5py.File(poisson, "r") as fh:
            group = fh["A"]
            A = scipy.sparse.csr_matrix((group["data"][()], group["indices"][()], group["indptr"][()]),
                                        shape=tuple(group.attrs["shape"]))
        scipy.io.mmwrite(poisson_mtx, A)  # symmetric: the lower triangle
    regression = generate("regression", "--rows", "200", "--cols", "5")
    lowrank = generate("lowrank", "--rows", "30", "--cols", "20")
    completion = generate("completion", "--rows", "20", "--cols", "10", "--rank", "1", "--rate", "0.8")
    out = str(folder / "out.h5")
    return {
        "solve, dense 10x10 SPD": ["solve", f"{spd}:/A", "--rhs", f"{spd}:/b", "-o", out],
        "solve, sparse 100x100 Poisson": ["solve", f"{poisson}:/A", "--rhs", f"{poisson}:/b", "-o", out],
        "solve, sparse 100x100 Poisson .mtx": ["solve", str(poisson_mtx), "--rhs", f"{poisson}:/b", "-o", out],
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
        **{name: [python, "-c", code] for name, code in FLOORS.items()},
        "--help": [python, "-m", "matcli", "--help"],
        **{name: [python, "-m", "matcli", *args, "--force", "--quiet"] for name, args in workloads.items()},
    }
    envs = environments(folder)
    for cmd in commands.values():  # fill the bytecode cache (not timed)
        process_cpu(cmd, envs["cached"])
    runs = [(name, mode) for name in commands for mode in envs]
    cpu: dict[tuple[str, str], list[float]] = {run: [] for run in runs}
    wall: dict[tuple[str, str], list[float]] = {run: [] for run in runs}
    for _ in range(rounds):
        for name, mode in runs:
            c, w = process_cpu(commands[name], envs[mode])
            cpu[name, mode].append(c)
            wall[name, mode].append(w)
    median = {run: statistics.median(values) for run, values in cpu.items()}
    median_wall = {run: statistics.median(values) for run, values in wall.items()}
    floors = {**{f"{FLOORS[name]} (cached bytecode)": median[name, "cached"] for name in FLOORS},
              **{f"{FLOORS[name]} (no bytecode written)": median[name, "uncached"] for name in FLOORS},
              "load average": os.getloadavg()[0], "rounds": rounds}

    def uncached(name: str) -> str:
        return f"{median[name, 'uncached']:.3f} s CPU with PYTHONDONTWRITEBYTECODE=1"

    help_cpu, help_wall = median["--help", "cached"], median_wall["--help", "cached"]
    rows = [Row("matcli --help (median wall)", "python -c pass", median_wall["pass", "cached"], help_wall, "-",
                f"{help_wall:.3f} s wall, {help_cpu:.3f} s CPU ({uncached('--help')})", target="< 0.3 s",
                extra=floors)]
    for name in workloads:
        target = "< 0.25 s CPU" if name.startswith("solve") else ""
        cpu_s, wall_s = median[name, "cached"], median_wall[name, "cached"]
        rows.append(Row(f"tiny {name} (median process CPU)", f'python -c "{FLOOR}"', median["floor", "cached"],
                        cpu_s, "-", f"{statuses[name]}, {cpu_s:.3f} s CPU ({wall_s:.3f} s wall; {uncached(name)})",
                        target=target, extra=floors))
    for name, code in FLOORS.items():
        rows.append(Row(f"floor: python -c \"{code}\" (median process CPU)", "-", None, median[name, "cached"], "-",
                        f"{median[name, 'cached']:.3f} s CPU ({uncached(name)})", extra=floors))
    report("startup", rows, size)
    print(" ".join(f"{key}: {value:.3f}" if isinstance(value, float) else f"{key}: {value}"
                   for key, value in floors.items()))


if __name__ == "__main__":
    main()
