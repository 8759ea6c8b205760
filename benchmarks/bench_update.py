"""Benchmark: updating a truncated SVD of an evolving sparse matrix vs recomputing it (issue 21).

Workloads, each a sequence of appends of a fixed fraction of the current matrix per step:

1. MovieLens 100k (../shared/data/ml-100k/u.data), ratings matrix in time order: user rows appended
   in the order of each user's first rating (the first half of the users to start), and, separately,
   item columns in the order of each item's first rating; steps of 5%.
2. A synthetic sparse matrix with power-law rows/columns and log-normal values (the generator of
   bench_factorize.py): ``--quick`` 20000 x 4000 with 2e5 nonzeros, ``--full`` 1e5 x 1e4 with 1e6;
   rows appended, the first 80% to start, steps of 1% and of 5%.

Per step and side by side, in-process on the matrix in memory, interleaved, best of ``REPEAT``
(CPU seconds), ranks 10 and 50. matcli is timed on three paths, each row says which:

* **kernel + certificate**: ``update_svd`` chained from the previous step's update (what the job runs:
  the update and its certificate, triplet residuals and errors against the new matrix by two sparse
  products with the old one);
* **kernel only**: the update's factors without the certificate (``append_cols_update``; ARPACK
  computes no residuals either);
* **API**: ``matcli.factorize(old, update="prev.h5", append_rows=E, method="update", output="next.h5")``,
  what a library user calls per update of a stream: the job layer (option checks, reading the
  previous factors from their file, the shared certificate check, the report) and writing the new
  factors for the next step.

Peers: matcli's fresh Lanczos SVD (``--method lanczos`` kernel, tol 1e-8, certificate included) and
scipy ``svds`` (ARPACK) at its default tolerance (machine precision) and at the update's own accuracy
("equal accuracy": ``tol`` = the update's largest relative singular-value error).

Accuracy beside time: the reference singular values are ARPACK's at ``tol=0``; ``sv err`` is
``max_i |s_i - s_ref_i| / s_ref_i`` over the top ``rank``, ``excess`` is the update's Frobenius error
over the optimal rank-``rank`` error minus 1. Rows give the mean time per step (the extra field has
every step's ratio and their geometric mean) and the worst accuracy over the steps. A final pair of
rows runs the CLI (``--method auto``) on the last step and on an append of the whole matrix with the
exact complement (auto then recomputes), against ``--method lanczos`` on the new matrix: auto is
never slower than recomputing. Single-threaded BLAS; the machine may be loaded by other jobs
(timings are best-of, ratios matter).

Run: ``python benchmarks/bench_update.py [--quick | --full]``.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import scipy.io  # noqa: E402
import scipy.sparse as sp  # noqa: E402
from scipy.sparse.linalg import svds  # noqa: E402

import matcli  # noqa: E402
from benchmarks._common import Row, report, run_matcli, size_from_argv, work_dir  # noqa: E402
from benchmarks.bench_factorize import power_law_matrix  # noqa: E402
from matcli.io.hdf5 import write_arrays  # noqa: E402
from matcli.methods.factorize.gkl import lanczos_svd  # noqa: E402
from matcli.methods.factorize.update import append_cols_update, default_complement_rank, update_svd  # noqa: E402

RANKS = (10, 50)
REPEAT = 3
STEP = 0.05
SHARED_DATA = os.environ.get("MATCLI_SHARED_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data"
#: rows, columns, nonzeros, steps per sequence
SYNTHETIC = {"quick": (20_000, 4_000, 200_000, 2), "full": (100_000, 10_000, 1_000_000, 4)}


def movielens() -> tuple[sp.csr_matrix, np.ndarray, np.ndarray]:
    """943 x 1682 ratings; users and items ordered by their first rating's time."""
    data = np.loadtxt(Path(SHARED_DATA) / "ml-100k" / "u.data", dtype=np.int64)
    users, items, ratings, stamps = data[:, 0] - 1, data[:, 1] - 1, data[:, 2].astype(float), data[:, 3]
    A = sp.csr_matrix((ratings, (users, items)), shape=(943, 1682))
    first_user = np.full(943, np.iinfo(np.int64).max)
    np.minimum.at(first_user, users, stamps)
    first_item = np.full(1682, np.iinfo(np.int64).max)
    np.minimum.at(first_item, items, stamps)
    return A, np.argsort(first_user, kind="stable"), np.argsort(first_item, kind="stable")


def best(fn, repeat=REPEAT):
    times, value = [], None
    for _ in range(repeat):
        t0 = time.process_time()
        value = fn()
        times.append(time.process_time() - t0)
    return min(times), value


def sv_error(s, s_ref) -> float:
    s = np.sort(np.asarray(s))[::-1][: s_ref.size]
    return float(np.max(np.abs(s - s_ref) / s_ref))


def sequence(A: sp.csr_matrix, start: float, steps: int, side: str, step: float = STEP):
    """(old, appended) pairs: ``side`` rows (or columns) of A appended ``step`` of the current size at a time."""
    total = A.shape[0] if side == "rows" else A.shape[1]
    cut = int(start * total)
    for _ in range(steps):
        add = max(1, int(step * cut))
        if cut + add > total:
            return
        if side == "rows":
            yield A[:cut], A[cut:cut + add]
        else:
            yield A[:, :cut].tocsr(), A[:, cut:cut + add].tocsr()
        cut += add


def api_update(old, extra, side: str, rank: int, previous: Path, output: Path):
    """One update through the Python API, the previous factors read from ``previous``, the new ones
    written to ``output`` (a stream's next previous)."""
    return matcli.factorize(old, update=str(previous), **{f"append_{side}": extra}, method="update", rank=rank,
                            output=str(output), force=True, seed=1)


def run_sequence(name: str, A: sp.csr_matrix, start: float, steps: int, side: str, rank: int,
                 step: float = STEP) -> list[Row]:
    rng = np.random.default_rng(0)
    pairs = list(sequence(A, start, steps, side, step))
    first = lanczos_svd(pairs[0][0], rank=rank, tol=1e-10, rng=rng)
    U, s, Vt = (first.outputs[k] for k in ("U", "s", "Vt"))
    folder = work_dir("update")
    keys = ("update", "kernel", "api", "lanczos", "arpack", "arpack_eq", "err", "excess", "lz_err", "ar_err",
            "eq_err", "residual", "api_err")
    stats = {key: [] for key in keys}
    for old, extra in pairs:
        new = sp.vstack([old, extra], format="csr") if side == "rows" else sp.hstack([old, extra], format="csr")
        s_ref = svds(new, k=rank, tol=0, random_state=0, return_singular_vectors=False)[::-1]
        kwargs = {side: extra}
        write_arrays(str(folder / "prev.h5"), {"U": U, "s": s, "Vt": Vt})
        t_up, up = best(lambda: update_svd(old, U=U, s=s, Vt=Vt, rank=rank, rng=np.random.default_rng(1), **kwargs))
        t_kernel, _ = best(lambda: bare_update(U, s, Vt, extra, side, rank))
        t_api, api = best(lambda: api_update(old, extra, side, rank, folder / "prev.h5", folder / "next.h5"))
        t_lz, lz = best(lambda: lanczos_svd(new, rank=rank, tol=1e-8, rng=np.random.default_rng(2)))
        t_ar, ar = best(lambda: svds(new, k=rank, random_state=0, return_singular_vectors=True))
        err = sv_error(up.outputs["s"], s_ref)
        t_eq, eq = best(lambda: svds(new, k=rank, tol=err, random_state=0, return_singular_vectors=True))
        optimal = np.sqrt(max(sp.linalg.norm(new) ** 2 - np.sum(s_ref**2), 0.0)) / sp.linalg.norm(new)
        for key, value in (("update", t_up), ("kernel", t_kernel), ("api", t_api), ("lanczos", t_lz),
                           ("arpack", t_ar), ("arpack_eq", t_eq), ("err", err),
                           ("excess", up.metrics["reconstruction_error"] / optimal - 1),
                           ("lz_err", sv_error(lz.outputs["s"], s_ref)), ("ar_err", sv_error(ar[1], s_ref)),
                           ("eq_err", sv_error(eq[1], s_ref)), ("residual", up.metrics["max_triplet_residual"]),
                           ("api_err", sv_error(api["s"], s_ref))):
            stats[key].append(value)
        U, s, Vt = (up.outputs[k] for k in ("U", "s", "Vt"))
        print(f"  {name} {side} +{extra.shape[0] if side == 'rows' else extra.shape[1]} rank {rank}: kernel+certificate "
              f"{t_up:.4f} s, kernel only {t_kernel:.4f} s, API {t_api:.4f} s (sv err {err:.1e}, excess "
              f"{stats['excess'][-1]:.1e}, residual {stats['residual'][-1]:.1e}); lanczos {t_lz:.4f} s, "
              f"arpack {t_ar:.4f} s, arpack tol={err:.0e} {t_eq:.4f} s", flush=True)
    mine = (f"sv err <= {max(stats['err']):.1e}, excess err <= {max(stats['excess']):.1e}, "
            f"triplet res <= {max(stats['residual']):.1e}")
    label = f"{name}: {len(pairs)} appends of {step:.0%} {side}, rank {rank}"
    timing = "CPU seconds (process_time), best of 3, mean over steps"
    rows = []
    for path, key, peers in (
            ("kernel + certificate", "update", (("fresh Lanczos (matcli, tol 1e-8)", "lanczos", "lz_err"),
                                                ("scipy svds ARPACK (default tol)", "arpack", "ar_err"),
                                                ("scipy svds ARPACK at the update's accuracy", "arpack_eq", "eq_err"))),
            ("API matcli.factorize, previous factors read from and new ones written to HDF5", "api",
             (("scipy svds ARPACK (default tol)", "arpack", "ar_err"),
              ("scipy svds ARPACK at the update's accuracy", "arpack_eq", "eq_err"))),
            ("kernel only, no certificate", "kernel", (("scipy svds ARPACK (default tol)", "arpack", "ar_err"),))):
        mine_s = np.array(stats[key])
        for peer, peer_key, acc in peers:
            ratios = np.array(stats[peer_key]) / mine_s
            rows.append(Row(f"{label} [{path}]", peer, float(np.mean(stats[peer_key])), float(np.mean(mine_s)),
                            f"sv err <= {max(stats[acc]):.1e}",
                            mine if key != "api" else f"sv err <= {max(stats['api_err']):.1e}", ">= 5x per update",
                            extra={"path": path, "geometric_mean_ratio": float(np.exp(np.mean(np.log(ratios)))),
                                   "min_ratio": float(ratios.min()), "per_step_ratio": ratios.tolist(),
                                   "update_sv_error": stats["err"], "update_excess_error": stats["excess"],
                                   "timing": timing}))
    return rows


def bare_update(U, s, Vt, extra, side, rank):
    """The update's factors alone (what update_svd computes before its certificate)."""
    p = extra.shape[0] if side == "rows" else extra.shape[1]
    l = default_complement_rank(p, rank)
    rng = np.random.default_rng(1)
    if side == "rows":
        return append_cols_update(Vt.T, s, U.T, extra.T, rank=rank, complement_rank=l, power_iters=1, rng=rng)[:3]
    return append_cols_update(U, s, Vt, extra, rank=rank, complement_rank=l, power_iters=1, rng=rng)[:3]


def cli_rows(A: sp.csr_matrix, name: str) -> list[Row]:
    """--method auto on the last 5% row append and on an append of the whole matrix with the exact
    complement, vs --method lanczos on the new matrix."""
    folder = work_dir("update")
    rows = []
    cut = int(A.shape[0] / (1 + STEP))
    half = A.shape[0] // 2
    # the second case asks for the exact complement of its 471 rows (the old default): a 481 x 481
    # middle SVD and a dense 1682 x 471 block, where auto's estimate prefers recomputing
    cases = (("5% rows", A[:cut], A[cut:], []),
             ("100% rows, exact complement", A[:half], A[half:], ["--param", f"complement_rank={A.shape[0] - half}"]))
    for label, old, extra, params in cases:
        scipy.io.mmwrite(folder / "A.mtx", old)
        scipy.io.mmwrite(folder / "E.mtx", extra)
        scipy.io.mmwrite(folder / "N.mtx", sp.vstack([old, extra], format="csr"))
        prev = folder / "prev.h5"
        run_matcli(["factorize", str(folder / "A.mtx"), "--rank", str(RANKS[0]), "--method", "lanczos", "-o", str(prev),
                    "--force"])
        auto_s, fresh_s = [], []
        for _ in range(REPEAT):
            t, auto = run_matcli(["factorize", str(folder / "A.mtx"), "--update", str(prev), "--append-rows",
                                  str(folder / "E.mtx"), "--rank", str(RANKS[0]), *params, "-o", str(folder / "u.h5"),
                                  "--force"])
            auto_s.append(t)
            t, fresh = run_matcli(["factorize", str(folder / "N.mtx"), "--rank", str(RANKS[0]), "--method", "lanczos",
                                   "-o", str(folder / "f.h5"), "--force"])
            fresh_s.append(t)
        chose = auto["problem"]["update_cost"]["chosen"]
        rows.append(Row(f"{name} CLI, appended {label}", "matcli --method lanczos on the new matrix", min(fresh_s),
                        min(auto_s), f"triplet res {fresh['metrics']['max_triplet_residual']:.1e}",
                        f"auto chose {chose}: triplet res {auto['metrics']['max_triplet_residual']:.1e}",
                        "auto never slower than recomputing (ratio >= ~1)",
                        extra={"method": auto["method"], "reason": auto["method_reason"],
                               "timing": "wall seconds of the whole process, best of 3"}))
    return rows


def main() -> None:
    size = size_from_argv()
    print(f"load average {os.getloadavg()}", flush=True)
    A, user_order, item_order = movielens()
    ratings = A[user_order][:, item_order].tocsr()
    steps = 8 if size == "quick" else 14
    rows = []
    for rank in RANKS:
        rows += run_sequence("ml-100k users in time order", ratings, 0.5, steps, "rows", rank)
        rows += run_sequence("ml-100k items in time order", ratings, 0.5, steps, "cols", rank)
    m, n, nnz, steps = SYNTHETIC[size]
    synthetic = power_law_matrix(m, n, nnz, seed=3)
    for rank in RANKS:
        for step in (0.01, STEP):
            rows += run_sequence(f"synthetic {m}x{n} nnz {nnz:.0e}", synthetic, 0.8, steps, "rows", rank, step)
    rows += cli_rows(ratings, "ml-100k")
    report("update", rows, size)


if __name__ == "__main__":
    main()
