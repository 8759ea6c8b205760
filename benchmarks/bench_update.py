"""Benchmark: updating a truncated SVD of an evolving sparse matrix vs recomputing it (issue 21).

Workloads, each a sequence of appends of at most 5% of the current matrix per step:

1. MovieLens 100k (../shared/data/ml-100k/u.data), ratings matrix in time order: user rows appended
   in the order of each user's first rating (the first half of the users to start), and, separately,
   item columns in the order of each item's first rating.
2. A synthetic sparse matrix with power-law rows/columns and log-normal values (the generator of
   bench_factorize.py): ``--quick`` 20000 x 4000 with 2e5 nonzeros, ``--full`` 1e5 x 1e4 with 1e6;
   rows appended, the first 80% to start, steps of 5%.

Per step and side by side, in-process on the matrix in memory, interleaved, best of ``REPEAT``:

* matcli ``update_svd`` chained from the previous step's update (its certificate included: triplet
  residuals and reconstruction error against the new matrix, by sparse products);
* matcli's fresh Lanczos SVD (``--method lanczos`` kernel, tol 1e-8, certificate included);
* scipy ``svds`` (ARPACK) at its default tolerance (machine precision), and at the update's own
  accuracy ("equal accuracy": ``tol`` = the update's largest relative singular-value error).

Accuracy beside time: the reference singular values are ARPACK's at ``tol=0``; ``sv err`` is
``max_i |s_i - s_ref_i| / s_ref_i`` over the top ``rank``, ``excess`` is the update's Frobenius error
over the optimal rank-``rank`` error minus 1. Ranks 10 and 50 (the synthetic matrix at rank 50 in
``--full`` only: its reference SVD alone takes a minute). Rows give the mean time per step (the
extra field has every step's ratio and their geometric mean) and the worst accuracy over the steps.
matcli's update is timed with its certificate (as is matcli's Lanczos) and, in a separate row,
without it against ARPACK (which computes no residuals). A final pair of rows runs the CLI
(``--method auto``) on the last step and on an append of the whole matrix with the exact complement
(auto then recomputes), against ``--method lanczos`` on the new
matrix: auto is never slower than recomputing. Single-threaded BLAS; the machine may be loaded by
other jobs (timings are best-of, ratios matter).

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

from benchmarks._common import Row, report, run_matcli, size_from_argv, work_dir  # noqa: E402
from benchmarks.bench_factorize import power_law_matrix  # noqa: E402
from matcli.methods.factorize.gkl import lanczos_svd  # noqa: E402
from matcli.methods.factorize.update import append_cols_update, default_complement_rank, update_svd  # noqa: E402

RANKS = (10, 50)
REPEAT = 3
STEP = 0.05
SHARED_DATA = os.environ.get("MATCLI_SHARED_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data"
SYNTHETIC = {"quick": (50_000, 5_000, 500_000, 4), "full": (100_000, 10_000, 1_000_000, 4)}


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


def sequence(A: sp.csr_matrix, start: float, steps: int, side: str):
    """(old, appended) pairs: ``side`` rows (or columns) of A appended ``STEP`` of the current size at a time."""
    total = A.shape[0] if side == "rows" else A.shape[1]
    cut = int(start * total)
    for _ in range(steps):
        add = max(1, int(STEP * cut))
        if cut + add > total:
            return
        if side == "rows":
            yield A[:cut], A[cut:cut + add]
        else:
            yield A[:, :cut].tocsr(), A[:, cut:cut + add].tocsr()
        cut += add


def run_sequence(name: str, A: sp.csr_matrix, start: float, steps: int, side: str, rank: int) -> list[Row]:
    rng = np.random.default_rng(0)
    pairs = list(sequence(A, start, steps, side))
    first = lanczos_svd(pairs[0][0], rank=rank, tol=1e-10, rng=rng)
    U, s, Vt = (first.outputs[k] for k in ("U", "s", "Vt"))
    stats = {key: [] for key in ("update", "kernel", "lanczos", "arpack", "arpack_eq", "err", "excess", "lz_err",
                                 "ar_err", "eq_err", "residual")}
    for old, extra in pairs:
        new = sp.vstack([old, extra], format="csr") if side == "rows" else sp.hstack([old, extra], format="csr")
        s_ref = svds(new, k=rank, tol=0, random_state=0, return_singular_vectors=False)[::-1]
        kwargs = {side: extra}
        t_up, up = best(lambda: update_svd(old, U=U, s=s, Vt=Vt, rank=rank, rng=np.random.default_rng(1), **kwargs))
        t_kernel, _ = best(lambda: bare_update(U, s, Vt, extra, side, rank))
        t_lz, lz = best(lambda: lanczos_svd(new, rank=rank, tol=1e-8, rng=np.random.default_rng(2)))
        t_ar, ar = best(lambda: svds(new, k=rank, random_state=0, return_singular_vectors=True))
        err = sv_error(up.outputs["s"], s_ref)
        t_eq, eq = best(lambda: svds(new, k=rank, tol=err, random_state=0, return_singular_vectors=True))
        optimal = np.sqrt(max(sp.linalg.norm(new) ** 2 - np.sum(s_ref**2), 0.0)) / sp.linalg.norm(new)
        stats["update"].append(t_up)
        stats["kernel"].append(t_kernel)
        stats["lanczos"].append(t_lz)
        stats["arpack"].append(t_ar)
        stats["arpack_eq"].append(t_eq)
        stats["err"].append(err)
        stats["excess"].append(up.metrics["reconstruction_error"] / optimal - 1)
        stats["lz_err"].append(sv_error(lz.outputs["s"], s_ref))
        stats["ar_err"].append(sv_error(ar[1], s_ref))
        stats["eq_err"].append(sv_error(eq[1], s_ref))
        stats["residual"].append(up.metrics["max_triplet_residual"])
        U, s, Vt = (up.outputs[k] for k in ("U", "s", "Vt"))
        print(f"  {name} {side} +{extra.shape[0] if side == 'rows' else extra.shape[1]}: update {t_up:.3f} s "
              f"({t_kernel:.3f} s without its certificate; sv err {err:.1e}, excess {stats['excess'][-1]:.1e}, "
              f"residual {stats['residual'][-1]:.1e}), "
              f"lanczos {t_lz:.3f} s, arpack {t_ar:.3f} s, arpack tol={err:.0e} {t_eq:.3f} s", flush=True)
    up_total = np.array(stats["update"])
    mine = (f"sv err <= {max(stats['err']):.1e}, excess err <= {max(stats['excess']):.1e}, "
            f"triplet res <= {max(stats['residual']):.1e}")
    label = f"{name}: {len(pairs)} appends of {STEP:.0%} {side}, rank {rank}"
    rows = []
    for peer, key, acc in (("fresh Lanczos (matcli, tol 1e-8)", "lanczos", "lz_err"),
                           ("scipy svds ARPACK (default tol)", "arpack", "ar_err"),
                           ("scipy svds ARPACK at the update's accuracy", "arpack_eq", "eq_err")):
        ratios = np.array(stats[key]) / up_total
        rows.append(Row(label, peer, float(np.mean(stats[key])), float(np.mean(up_total)),
                        f"sv err <= {max(stats[acc]):.1e}", mine, ">= 5x per update",
                        extra={"geometric_mean_ratio": float(np.exp(np.mean(np.log(ratios)))),
                               "min_ratio": float(ratios.min()), "per_step_ratio": ratios.tolist(),
                               "update_sv_error": stats["err"], "update_excess_error": stats["excess"],
                               "timing": "CPU seconds (process_time), best of 3, mean over steps"}))
    kernel = np.array(stats["kernel"])
    ratios = np.array(stats["arpack"]) / kernel
    rows.append(Row(label + " (update without its certificate)", "scipy svds ARPACK (default tol)",
                    float(np.mean(stats["arpack"])), float(np.mean(kernel)), f"sv err <= {max(stats['ar_err']):.1e}",
                    mine, ">= 5x per update",
                    extra={"geometric_mean_ratio": float(np.exp(np.mean(np.log(ratios)))),
                           "min_ratio": float(ratios.min()), "per_step_ratio": ratios.tolist(),
                           "timing": "CPU seconds, best of 3, mean over steps: the update's factors only, no "
                                     "residuals (ARPACK computes none either)"}))
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
    for rank in RANKS if size == "full" else RANKS[:1]:
        rows += run_sequence(f"synthetic {m}x{n} nnz {nnz:.0e}", synthetic, 0.8, steps, "rows", rank)
    rows += cli_rows(ratings, "ml-100k")
    report("update", rows, size)


if __name__ == "__main__":
    main()
