"""``matcli run jobs.txt`` (one process) against the same small solves as separate ``matcli`` processes.

Workload: N small systems (2-D Poisson, 20 x 20 grid, a different diagonal shift each; quick N = 50,
full N = 200), each solved by ``solve --method cg --rtol 1e-10``. Peer: N processes run one after
another, as a Makefile or a shell loop runs them. Both write every x; the answers must agree to the
last bit (the same code on the same inputs). Target: the job list >= 5x faster.
"""

from __future__ import annotations

import subprocess
import sys
import time

import h5py
import numpy as np
import scipy.sparse as sp

from _common import Row, report, size_from_argv, work_dir

from matcli.io.writers import write_result


def write_systems(folder, count: int) -> list[str]:
    grid = 20
    T = sp.diags([-1.0, 2.0, -1.0], [-1, 0, 1], shape=(grid, grid))
    laplacian = (sp.kron(sp.eye(grid), T) + sp.kron(T, sp.eye(grid))).tocsr()
    names = []
    for k in range(count):
        A = (laplacian + 1e-2 * k * sp.eye(grid * grid)).tocsr()
        path = folder / f"sys{k:03d}.h5"
        if path.exists():
            path.unlink()
        write_result(str(path), str(path), {"A": A}, {}, "bench_joblist")
        names.append(path.name)
    return names


def clean(folder) -> None:
    for path in folder.glob("x_*.h5"):
        path.unlink()


def main() -> None:
    size = size_from_argv()
    count = 50 if size == "quick" else 200
    folder = work_dir("joblist")
    clean(folder)
    names = write_systems(folder, count)
    lines = [f"solve {name}:/A -m cg --rtol 1e-10 -o x_{tag}_{k:03d}.h5 --quiet"
             for tag in ("list",) for k, name in enumerate(names)]
    (folder / "jobs.txt").write_text("\n".join(lines) + "\n")
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "matcli", "run", "jobs.txt", "--quiet"], cwd=folder, check=True)
    listed = time.perf_counter() - t0
    t0 = time.perf_counter()
    for k, name in enumerate(names):
        subprocess.run([sys.executable, "-m", "matcli", "solve", f"{name}:/A", "-m", "cg", "--rtol", "1e-10",
                        "-o", f"x_proc_{k:03d}.h5", "--quiet"], cwd=folder, check=True)
    separate = time.perf_counter() - t0
    same = all(np.array_equal(h5py.File(folder / f"x_list_{k:03d}.h5")["x"][()],
                              h5py.File(folder / f"x_proc_{k:03d}.h5")["x"][()]) for k in range(count))
    clean(folder)
    accuracy = "x bitwise equal" if same else "x DIFFERS"
    report("joblist", [Row(f"{count} small solves (cg, 400 unknowns)", f"{count} matcli processes", separate, listed,
                           accuracy, accuracy, target=">= 5x")], size)
    if not same:
        raise SystemExit("the job list's answers differ from the separate processes'")


if __name__ == "__main__":
    main()
