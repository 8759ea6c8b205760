"""Krylov recycling on sequences of PDE systems as neural-operator data generation produces them
(issue #20; SKR, "Accelerating Data Generation for Neural Operators via Krylov Subspace Recycling").

Families (``matcli generate sequence``, :mod:`matcli.sequences`): darcy (SPD, CG), convdiff
(nonsymmetric, GMRES), helmholtz (complex indefinite, GMRES); no preconditioner for any contender;
rtol 1e-8 on the true residual ||b - A x|| / ||b||, checked here for every system.

Per family, in one process, interleaved system by system (the machine is shared: ratios, not
absolute times, are what to read), the systems in the greedy nearest-neighbour order that
``solve --batch`` uses:

* from scratch: matcli's GMRES(50) / CG per system (the baseline of the ratios);
* GMRES family: GCRO-DR(50 + k, k) with the recycled space reset for every system (what deflation
  alone gives), GCRO-DR carried across the sequence (recycling), and the same in the given order
  (the effect of sorting); scipy's gmres(restart=50) and gcrotmk(m=50, k=k, CU passed along) per system;
* CG family: RecyclingCG (projected starts) and def-CG (:class:`DeflatedCG`) carried across the
  sequence, the latter also in the given order; scipy's cg per system.

Then the product: ``matcli solve --batch --recycle k`` against ``--recycle 0`` as whole processes
(interleaved, best of 1 round quick, 2 full); with recycling on, the probe (first 7 systems: 3 fresh, 4 recycled) decides
whether recycling stays on, and its decision is printed.

Ratio column: the baseline's seconds over the contender's (> 1: the contender is faster), so
the scipy rows show how matcli's from-scratch baseline compares with the outside reference.

``--quick`` (default): 12 systems on 32 x 32 (helmholtz) / 64 x 64 grids. ``--full``: 100 systems on
100 x 100 grids (1e4 unknowns), helmholtz also on 200 x 200 (4e4 unknowns) with 100 systems.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import h5py  # noqa: E402
import numpy as np  # noqa: E402

from _common import Row, report, run_matcli, size_from_argv, work_dir  # noqa: E402

RTOL = 1e-8
RESTART = 50
RECYCLE = {"darcy": 16, "convdiff": 10, "helmholtz": 20}


def generate(family: str, n: int, count: int) -> str:
    path = work_dir("sequences") / f"{family}_{n}_{count}.h5"
    if not path.exists():
        subprocess.run([sys.executable, "-m", "matcli", "generate", "sequence", "--family", family, "--n", str(n),
                        "--count", str(count), "--seed", "0", "-o", str(path), "--quiet"], check=True)
    return str(path)


def load(path: str):
    from matcli.io.load import read_matrix

    with h5py.File(path, "r") as fh:
        names = sorted(fh["systems"])
        rhs = [fh[f"systems/{name}/b"][()] for name in names]
    return names, [read_matrix(f"{path}:/systems/{name}/A") for name in names], rhs


def relres(A, x, b) -> float:
    return float(np.linalg.norm(b - A @ x) / np.linalg.norm(b))


class Tally:
    """Seconds, iterations and the worst relative residual of one contender over a sequence."""

    def __init__(self):
        self.seconds, self.iterations, self.worst, self.per_system = 0.0, 0, 0.0, []

    def run(self, fn, A, b):
        t0 = time.perf_counter()
        x, its = fn(A, b)
        seconds = time.perf_counter() - t0
        self.seconds += seconds
        self.iterations += its
        self.worst = max(self.worst, relres(A, x, b))
        self.per_system.append((its, round(seconds, 4)))

    def acc(self) -> str:
        return f"{self.worst:.1e}"


def matcli_kernel(kernel, **kw):
    def fn(A, b):
        result = kernel(A, b, rtol=RTOL, **kw)
        return result.outputs["x"], result.iterations
    return fn


def recycler_fn(solver, reset: bool = False):
    def fn(A, b):
        if reset:
            solver.reset()
        result = solver.solve(A, b, rtol=RTOL)
        return result.outputs["x"], result.iterations
    return fn


def scipy_fn(method, **kw):
    def fn(A, b):
        counter = []
        x, info = method(A, b, rtol=RTOL, atol=0.0, callback=lambda *a: counter.append(1), **kw)
        return x, len(counter)
    return fn


def gcrotmk_fn(k: int):
    """scipy's gcrotmk with its CU space passed along; "iterations" are its products with A (its
    callback runs once per outer cycle)."""
    from scipy.sparse.linalg import LinearOperator, gcrotmk

    CU: list = []

    def fn(A, b):
        counter = []

        def matvec(v):
            counter.append(1)
            return A @ v

        # scipy rebuilds C = A U for the new matrix from the U part of CU when C is None.
        for i, (c, u) in enumerate(CU):
            CU[i] = (None, u)
        op = LinearOperator(A.shape, matvec=matvec, dtype=A.dtype)
        x, info = gcrotmk(op, b, rtol=RTOL, atol=0.0, m=RESTART, k=k, CU=CU, truncate="smallest", maxiter=2000)
        return x, len(counter)
    return fn


def kernel_rows(family: str, n: int, count: int) -> list[Row]:
    from scipy.sparse.linalg import cg as scipy_cg, gmres as scipy_gmres

    from matcli.methods.solve.batch import RecyclingCG, order_systems
    from matcli.methods.solve.deflated_cg import DeflatedCG
    from matcli.methods.solve.gcrodr import GCRODR
    from matcli.methods.solve.krylov import cg, gmres

    path = generate(family, n, count)
    names, mats, rhs = load(path)
    order = order_systems(mats)
    k = RECYCLE[family]
    if family == "darcy":
        contenders = {"CG fresh": matcli_kernel(cg), "RecyclingCG": recycler_fn(RecyclingCG(k)),
                      "def-CG": recycler_fn(DeflatedCG(k)), "scipy cg": scipy_fn(scipy_cg, maxiter=20000)}
        unsorted = {"def-CG given order": recycler_fn(DeflatedCG(k))}
        base, best = "CG fresh", ("def-CG", "RecyclingCG")
    else:
        contenders = {"GMRES fresh": matcli_kernel(gmres, restart=RESTART),
                      "GCRO-DR reset": recycler_fn(GCRODR(RESTART + k, k), reset=True),
                      "GCRO-DR recycled": recycler_fn(GCRODR(RESTART + k, k)),
                      "scipy gmres": scipy_fn(scipy_gmres, restart=RESTART, maxiter=2000, callback_type="pr_norm"),
                      "scipy gcrotmk (CU kept)": gcrotmk_fn(k)}
        unsorted = {"GCRO-DR given order": recycler_fn(GCRODR(RESTART + k, k))}
        base, best = "GMRES fresh", ("GCRO-DR recycled", "GCRO-DR reset")
    tallies = {name: Tally() for name in {**contenders, **unsorted}}
    for i in order:
        for name, fn in contenders.items():
            tallies[name].run(fn, mats[i], rhs[i])
    for i in range(count):
        for name, fn in unsorted.items():
            tallies[name].run(fn, mats[i], rhs[i])
    workload = f"{family} {n}x{n} x{count}"
    ref = tallies[base]
    rows = []
    for name, tally in tallies.items():
        if name == base:
            continue
        rows.append(Row(workload, f"{base} vs {name}", ref.seconds, tally.seconds, ref.acc(), tally.acc(),
                        ">= 3x (one family)" if name in best else "",
                        {"peer_iterations": ref.iterations, "matcli_iterations": tally.iterations,
                         "recycle_dim": k, "per_system": tally.per_system}))
    for name, tally in tallies.items():
        print(f"  {workload:24s} {name:26s} {tally.seconds:8.2f} s {tally.iterations:8d} its  worst {tally.acc()}")
    return rows


def product_rows(family: str, n: int, count: int, rounds: int) -> list[Row]:
    path = generate(family, n, count)
    method = "cg" if family == "darcy" else "gmres"
    out = work_dir("sequences") / "x.h5"
    base = ["solve", f"{path}:/systems", "--batch", "-m", method, "--precond", "none", "--rtol", str(RTOL),
            "-o", str(out), "--force", "--threads", "1"]
    rec_s = plain_s = float("inf")
    for _ in range(rounds):
        seconds, rec = run_matcli([*base, "--recycle", str(RECYCLE[family])])
        rec_s = min(rec_s, seconds)
        seconds, plain = run_matcli([*base, "--recycle", "0"])
        plain_s = min(plain_s, seconds)
    decision = rec["info"].get("recycling", {})
    print(f"  {family}: {decision.get('reason', '')}")

    def worst(r):
        return f"{max(e['relative_residual'] for e in r['info']['systems']):.1e}"

    return [Row(f"{family} {n}x{n} x{count} (CLI)", f"--recycle 0 vs --recycle {RECYCLE[family]}", plain_s, rec_s,
                worst(plain), worst(rec), "",
                {"peer_iterations": plain["iterations"], "matcli_iterations": rec["iterations"],
                 "recycling": decision,
                 "per_system": [(e["name"], e["iterations"], round(e["seconds"], 4), e.get("recycled_dim"))
                                for e in rec["info"]["systems"]]})]


def main() -> None:
    size = size_from_argv()
    if size == "quick":
        plan, rounds = [("darcy", 64, 12), ("convdiff", 64, 12), ("helmholtz", 32, 12)], 1
    else:
        plan = [("darcy", 100, 100), ("convdiff", 100, 100), ("helmholtz", 100, 100), ("helmholtz", 200, 100)]
        rounds = 2
    rows: list[Row] = []
    for family, n, count in plan:
        rows += kernel_rows(family, n, count)
        rows += product_rows(family, n, count, rounds)
    print("machine shared with other jobs: compare ratios, not seconds")
    report("sequences", rows, size)


if __name__ == "__main__":
    main()
