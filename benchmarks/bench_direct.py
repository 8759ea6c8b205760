"""Sparse direct backends: SuperLU against PARDISO (pypardiso) and CHOLMOD (scikit-sparse) where installed.

Each case (matrix, kind, backend) runs in its own process: read or build the matrix, factor with
matcli's kernel (``direct.factorize(A, kind, backend=...)``: equilibration, the backend's
factorization), solve one right-hand side with refinement (``direct.solve_factored``), and report the
factorization's wall and process-CPU time, the solve's wall time, the LAPACK ratio of the answer and
the peak resident memory the factorization and solve added (``ru_maxrss`` after minus before: MKL
and SuiteSparse allocate outside Python, so tracemalloc would not see them). Imports and the
libraries' first-call set-up are left out: each case first factors a 64-unknown problem with the
same backend (``first_call_s`` in the results says what that cost; a matcli process pays it once).
Repeats are interleaved (every backend once, then again) so a change in the machine's load hits all
of them alike; the table shows the median time and the largest memory.

Workloads: the SPD and nonsymmetric matrices of the shared data (``--quick``: a subset; PARDISO only
on the real ones), the 2-D Poisson matrix of the issue (5-point Laplacian, 400^2 = 160000 unknowns)
and 3-D Poisson problems (7-point Laplacian on a k^3 grid): k = 30 and 40, where SuperLU finishes too,
and the largest k of 100 (1e6 unknowns), 80, 64, 50 that the fastest installed backend's Cholesky
factors within ``CASE_SECONDS`` (a backend over the limit shows as such). A case that took longer than
``LONG_CASE`` seconds is not repeated.

    python benchmarks/bench_direct.py [--quick | --full]
"""

from __future__ import annotations

import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Row, report, size_from_argv  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
#: a case that has not finished after this long is stopped and reported as a timeout
CASE_SECONDS = 60.0
#: a case slower than this is measured once
LONG_CASE = 10.0
QUICK_FILES = {"spd": ["bcsstk16.mtx", "1138_bus.mtx"], "nonsym": ["arrow.mtx", "sherman5.mtx"]}
#: 3-D grids every backend runs on, then the grids probed from the largest down
POISSON_SIDES = {"quick": ([20], []), "full": ([30, 40], [100, 80, 64, 50])}
POISSON_2D = {"quick": 200, "full": 400}


def manifest(kind: str) -> dict[str, bool]:
    """Square matrices/ files of a MANIFEST kind -> whether their values are complex."""
    names: dict[str, bool] = {}
    path = DATA / "MANIFEST.tsv"
    if not path.is_file():
        return names
    for line in path.read_text().splitlines()[1:]:
        fields = line.split("\t")
        if fields[0].startswith("matrices/") and fields[1] == kind and fields[2] == fields[3]:
            names[fields[0].split("/", 1)[1]] = fields[5] == "complex"
    return names


def poisson2d(k: int):
    import numpy as np
    import scipy.sparse as sp

    T = sp.diags([-np.ones(k - 1), 2 * np.ones(k), -np.ones(k - 1)], [-1, 0, 1], dtype=float)
    return sp.csr_matrix(sp.kron(T, sp.eye(k)) + sp.kron(sp.eye(k), T))


def poisson3d(k: int):
    import numpy as np
    import scipy.sparse as sp

    T = sp.diags([-np.ones(k - 1), 2 * np.ones(k), -np.ones(k - 1)], [-1, 0, 1], dtype=float)
    I = sp.eye(k)
    return sp.csr_matrix(sp.kron(sp.kron(T, I), I) + sp.kron(sp.kron(I, T), I) + sp.kron(sp.kron(I, I), T))


def run_case(spec: dict) -> dict:
    """One measurement, inside the child process."""
    import numpy as np
    import scipy.sparse as sp

    from matcli.io.mtx import read_mtx
    from matcli.methods.solve import direct
    from matcli.methods.solve.system import as_matrix

    if spec["matrix"].startswith("poisson"):
        build = poisson3d if spec["matrix"].startswith("poisson3d:") else poisson2d
        A = build(int(spec["matrix"].split(":")[1]))
    else:
        A = as_matrix(sp.csr_matrix(read_mtx(str(DATA / "matrices" / spec["matrix"]))))
    b = A @ np.random.default_rng(0).standard_normal(A.shape[0])
    warm = time.perf_counter()
    small = sp.csr_matrix(poisson3d(4))
    direct.solve_factored(small, direct.factorize(small, spec["kind"], backend=spec["backend"]), np.ones(64))
    first_call = time.perf_counter() - warm
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    cpu0, wall0 = time.process_time(), time.perf_counter()
    fact = direct.factorize(A, spec["kind"], backend=spec["backend"])
    factor_wall, factor_cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    wall1 = time.perf_counter()
    result = direct.solve_factored(A, fact, b)
    solve_wall = time.perf_counter() - wall1
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"n": A.shape[0], "nnz": int(A.nnz), "first_call_s": first_call, "factor_wall": factor_wall,
            "factor_cpu": factor_cpu,
            "solve_wall": solve_wall, "peak_mib": (after - before) / 1024.0, "status": result.status.reason,
            "lapack_ratio": result.metrics.get("lapack_ratio"), "backend_used": fact.backend,
            "fallback": fact.info.get("backend_fallback", ""), "factor_nnz": fact.info.get("factor_nnz")}


def measure(spec: dict) -> dict:
    """Run one case in a fresh process; {"error": ...} on a timeout or a crash."""
    cmd = [sys.executable, __file__, "--case", json.dumps(spec)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=CASE_SECONDS, cwd=REPO)
    except subprocess.TimeoutExpired:
        return {"error": f"over {CASE_SECONDS:.0f} s"}
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or ["exit %d" % proc.returncode])[-1][:120]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def backends_for(kind: str, complex_values: bool = False) -> list[str]:
    from matcli.methods.solve.sparse_direct import available

    names = ["superlu"] + ([] if complex_values else ["pardiso"]) + (["cholmod"] if kind == "cholesky" else [])
    return [name for name in names if available(name)]


def compare(matrix: str, kind: str, repeats: int, complex_values: bool) -> dict[str, list[dict]]:
    """Interleaved repeats of every installed backend on one (matrix, kind)."""
    runs: dict[str, list[dict]] = {name: [] for name in backends_for(kind, complex_values)}
    for _ in range(repeats):
        for name in runs:
            last = runs[name][-1] if runs[name] else {}
            if "error" in last or last.get("factor_wall", 0.0) > LONG_CASE:
                continue
            runs[name].append(measure({"matrix": matrix, "kind": kind, "backend": name}))
    return runs


def summary(runs: list[dict]) -> dict:
    ok = [r for r in runs if "error" not in r]
    if not ok:
        return {"error": runs[-1]["error"]}
    return {"factor_wall": statistics.median(r["factor_wall"] for r in ok),
            "factor_cpu": statistics.median(r["factor_cpu"] for r in ok),
            "solve_wall": statistics.median(r["solve_wall"] for r in ok),
            "peak_mib": max(r["peak_mib"] for r in ok), **{k: ok[-1][k] for k in
                                                           ("n", "nnz", "status", "lapack_ratio", "backend_used",
                                                            "fallback", "factor_nnz", "first_call_s")}}


def accuracy(s: dict) -> str:
    if "error" in s:
        return s["error"]
    ratio = s["lapack_ratio"]
    text = f"{s['status']}, ratio {ratio:.2g}" if ratio is not None else s["status"]
    return text + (f" (fell back to {s['backend_used']})" if s["fallback"] else "")


def rows_for(matrix: str, kind: str, repeats: int, complex_values: bool = False) -> list[Row]:
    if backends_for(kind, complex_values) == ["superlu"]:
        return []
    runs = compare(matrix, kind, repeats, complex_values)
    base = summary(runs.pop("superlu"))
    label = matrix.replace(".mtx", "")
    rows = []
    for name, r in runs.items():
        s = summary(r)
        size = f" n={s.get('n', base.get('n'))}"
        seconds = s.get("factor_wall", float("inf")) + s.get("solve_wall", 0.0)
        rows.append(Row(f"{label}{size} {kind}: {name}", "superlu",
                        None if "error" in base else base["factor_wall"] + base["solve_wall"], seconds,
                        accuracy(base), accuracy(s), target="faster, same ratio < 30",
                        extra={"superlu": base, name: s,
                               "peak_mib": {"superlu": base.get("peak_mib"), name: s.get("peak_mib")}}))
        print(f"{label} {kind}: superlu {base.get('factor_wall', float('nan')):.3f}s "
              f"{base.get('peak_mib', float('nan')):.0f}MiB | {name} {s.get('factor_wall', float('nan')):.3f}s "
              f"{s.get('peak_mib', float('nan')):.0f}MiB {accuracy(s)}", flush=True)
    return rows


def main() -> None:
    size = size_from_argv()
    if backends_for("cholesky") == ["superlu"]:
        print("no optional backend installed (pip install 'matcli[pardiso]', or 'matcli[cholmod]'): "
              "nothing to compare SuperLU with")
    repeats = 2 if size == "quick" else 3
    rows: list[Row] = []
    for kind_of_file, kinds in (("spd", ("cholesky", "lu")), ("nonsym", ("lu",))):
        files = manifest(kind_of_file)
        names = [name for name in QUICK_FILES[kind_of_file] if name in files] if size == "quick" else list(files)
        for name in names:
            for kind in kinds:
                rows.extend(rows_for(name, kind, repeats, files[name]))
    fixed, probed = POISSON_SIDES[size]
    for matrix in [f"poisson2d:{POISSON_2D[size]}"] + [f"poisson3d:{k}" for k in fixed]:
        for kind in ("cholesky", "lu"):
            rows.extend(rows_for(matrix, kind, repeats))
    fastest = backends_for("cholesky")[-1]
    for k in probed:
        probe = measure({"matrix": f"poisson3d:{k}", "kind": "cholesky", "backend": fastest})
        print(f"poisson3d k={k} (n={k ** 3}) {fastest} cholesky: "
              f"{probe.get('error') or format(probe['factor_wall'], '.2f') + ' s'}", flush=True)
        if "error" not in probe:
            for kind in ("cholesky", "lu"):
                rows.extend(rows_for(f"poisson3d:{k}", kind, repeats))
            break
    report("direct", rows, size)


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--case":
        print(json.dumps(run_case(json.loads(sys.argv[2]))))
    else:
        main()
