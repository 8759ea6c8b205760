"""Benchmark: top-20 singular triplets of a large sparse matrix, matcli vs sklearn and scipy svds.

Workload (issue 6): a sparse m x n matrix with exactly ``nnz`` nonzeros whose rows and columns
follow power-law (Zipf 0.8) popularity, like ratings or term-document data, with log-normal values.
Its spectrum decays slowly (sigma_21 / sigma_20 ~ 0.98), so a 1e-3 relative accuracy on the top 20
singular values needs real iterations. Sizes: ``--quick`` 20000 x 10000 with 5e5 nonzeros;
``--full`` 200000 x 100000 with 5e6 nonzeros.

Reference singular values: scipy svds (ARPACK) with tol=0 (machine precision); ARPACK is also
timed with tol=1e-3, the accuracy the target asks for, in memory and as a whole process that
reads the HDF5 file and writes U, s, Vt (like matcli). Accuracy = max_i |s_i - s_ref_i| / s_ref_i
over the top 20. Targets: matcli <= 0.7x the time of sklearn's randomized_svd at equal or better
accuracy (ratio >= 1.43; sklearn's defaults stop short of 1e-3 here, so its n_iter is raised until
it reaches 1e-3), and faster than svds/ARPACK (ratio > 1). matcli runs as a whole process
(start-up, HDF5 read, metrics and output write included); peers are timed in-process on the matrix
already in memory, all with single-threaded BLAS. The targets are judged on the ``threads=1`` rows;
``in memory both`` rows put the same run's setup + compute phases (start-up, reading and
writing excluded) against the in-memory peers; the ``threads=2`` row shows matcli on both cores (its sparse products run on row blocks in
parallel; the peers' scipy sparse products cannot).

Like for like with ARPACK (issue 22: >= 2x at the same certified accuracy). svds' ``tol`` and
matcli's ``--tol`` mean different things (svds hands ``tol**2`` to ARPACK on ``A^H A`` and refines
by Rayleigh-Ritz; ARPACK at tol=1e-3 certifies ~1e-10 here), so the requested tolerances are not
comparable. Both sides are measured by the certificate matcli applies to every SVD: ``max_i
max(||A v_i - s_i u_i||, ||A^H u_i - s_i v_i||) / s_1`` recomputed from A (matcli: the report's
``max_triplet_residual``; ARPACK: computed here from its U, s, Vt). ARPACK runs at tol 1e-1, 1e-2,
1e-3, matcli's Lanczos at --tol 1e-3, 1e-4, 1e-8, 1e-10; each ARPACK setting is paired with the fastest
matcli setting that certifies at least as small a residual (``like for like`` rows, in memory and
as processes).

The products bound (issue 22's 2x target). Each like-for-like row also gives the vector products
(with A or A^H) each side used: ARPACK's counted through a wrapping operator in a separate, untimed
run, matcli's from the report. A ``product floor`` row times one pair ``A^H (A x)`` both ways on this
machine: scipy's two single-threaded CSR passes against matcli's row blocks on both cores (the
threads=2 path). Both Lanczos codes are bound by memory bandwidth in these products, so a 2x time
ratio needs half of ARPACK's products or a cheaper pair.

Run: ``python benchmarks/bench_factorize.py [--quick | --full]``.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import h5py  # noqa: E402
import numpy as np  # noqa: E402
import scipy.sparse as sp  # noqa: E402

from benchmarks._common import Row, best_time, report, run_matcli, size_from_argv, work_dir  # noqa: E402

RANK = 20
#: Every timing is the best of this many runs (the machine may be shared; see the load average printed).
REPEAT = 3
TARGET_ACCURACY = 1e-3
SIZES = {"quick": (20_000, 10_000, 500_000), "full": (200_000, 100_000, 5_000_000)}


def power_law_matrix(m: int, n: int, nnz: int, seed: int = 0, alpha: float = 0.8) -> sp.csr_matrix:
    """Deterministic sparse matrix with exactly ``nnz`` distinct nonzeros at Zipf-popular rows/columns."""
    rng = np.random.default_rng(seed)
    pr = np.cumsum(1.0 / np.arange(1, m + 1) ** alpha)
    pc = np.cumsum(1.0 / np.arange(1, n + 1) ** alpha)
    row_perm, col_perm = rng.permutation(m), rng.permutation(n)
    keys = np.zeros(0, dtype=np.int64)
    while keys.size < nnz:
        draw = int(1.3 * (nnz - keys.size)) + 1000
        rows = row_perm[np.minimum(np.searchsorted(pr, rng.random(draw) * pr[-1]), m - 1)]
        cols = col_perm[np.minimum(np.searchsorted(pc, rng.random(draw) * pc[-1]), n - 1)]
        keys = np.unique(np.concatenate([keys, rows.astype(np.int64) * n + cols]))
    keys = rng.permutation(keys)[:nnz]
    values = rng.lognormal(0.0, 1.0, nnz)
    A = sp.csr_matrix((values, (keys // n, keys % n)), shape=(m, n))
    A.sort_indices()
    return A


def accuracy(s: np.ndarray, s_ref: np.ndarray) -> float:
    s = np.sort(np.asarray(s))[::-1][:RANK]
    return float(np.max(np.abs(s - s_ref) / s_ref))


def certified_residual(A, U: np.ndarray, s: np.ndarray, Vt: np.ndarray) -> float:
    """The certificate's measure: max_i max(||A v_i - s_i u_i||, ||A^H u_i - s_i v_i||) / s_1."""
    V = Vt.conj().T
    right = np.linalg.norm(A @ V - U * s, axis=0)
    left = np.linalg.norm(A.conj().T @ U - V * s, axis=0)
    return float(np.max(np.maximum(right, left)) / np.max(s))


#: svds tolerances of the like-for-like sweep, and matcli Lanczos --tol values paired with them.
ARPACK_TOLS = (1e-1, 1e-2, 1e-3)
LANCZOS_TOLS = ("1e-3", "1e-4", "1e-8", "1e-10")


def fmt(err: float) -> str:
    return f"{err:.1e}" + ("" if err <= TARGET_ACCURACY else " (>1e-3)")


ARPACK_PROCESS = """
import sys, h5py, numpy as np, scipy.sparse as sp
from scipy.sparse.linalg import svds
path, out, k, tol = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
with h5py.File(path, "r") as fh:
    g = fh["A"]
    A = sp.csr_matrix((g["data"][()], g["indices"][()], g["indptr"][()]), shape=tuple(g.attrs["shape"]))
U, s, Vt = svds(A, k=k, tol=tol, solver="arpack", rng=np.random.default_rng(0))
with h5py.File(out, "w") as fh:
    fh["U"], fh["s"], fh["Vt"] = U, s, Vt
"""


def arpack_process(matrix_file: Path, out: Path, tol: float) -> tuple[float, np.ndarray]:
    """svds as a whole process that reads the HDF5 file and writes U, s, Vt (like matcli), single-threaded BLAS."""
    import subprocess

    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", ARPACK_PROCESS, str(matrix_file), str(out), str(RANK), str(tol)],
                   check=True, env={**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"})
    seconds = time.perf_counter() - t0
    with h5py.File(out) as fh:
        return seconds, np.sort(fh["s"][()])[::-1]


def equal_accuracy_sklearn(A, contenders: dict[str, object]):
    """(label, callable) of sklearn's randomized_svd with the fewest power iterations (its default
    oversampling) that reaches TARGET_ACCURACY against ARPACK, found here by trying n_iter upwards.
    The target compares matcli with this, since sklearn's defaults stop short of 1e-3 on this matrix."""
    from sklearn.utils.extmath import randomized_svd

    s_ref = contenders["scipy svds arpack (tol=0)"]()
    for n_iter in (8, 10, 12, 15, 20, 25, 30, 40):
        err = accuracy(randomized_svd(A, RANK, n_iter=n_iter, random_state=0)[1], s_ref)
        print(f"sklearn randomized_svd n_iter={n_iter}: accuracy {err:.1e}", flush=True)
        if err <= TARGET_ACCURACY:
            return (f"sklearn randomized_svd (n_iter={n_iter}: reaches 1e-3)",
                    lambda: randomized_svd(A, RANK, n_iter=n_iter, random_state=0)[1])
    print("sklearn randomized_svd did not reach the target accuracy with n_iter <= 40")
    return None


def main() -> None:
    size = size_from_argv()
    m, n, nnz = SIZES[size]
    folder = work_dir("factorize")
    matrix_file = folder / f"powerlaw_{m}x{n}_{nnz}.h5"
    A = power_law_matrix(m, n, nnz)
    if not matrix_file.exists():
        from matcli.io.hdf5 import write_arrays

        tmp = matrix_file.with_suffix(".tmp.h5")
        write_arrays(str(tmp), {"A": A})
        tmp.rename(matrix_file)
    print(f"workload: {m} x {n}, nnz {A.nnz}, top {RANK} singular values, target accuracy {TARGET_ACCURACY:g}",
          flush=True)

    from scipy.sparse.linalg import svds

    contenders: dict[str, object] = {
        "scipy svds arpack (tol=0)": lambda: np.sort(svds(A, k=RANK, tol=0, solver="arpack",
                                                          rng=np.random.default_rng(0))[1])[::-1],
        "scipy svds arpack (tol=1e-3)": lambda: np.sort(svds(A, k=RANK, tol=TARGET_ACCURACY, solver="arpack",
                                                             rng=np.random.default_rng(0))[1])[::-1],
    }
    # like-for-like with the matcli process: read the file, solve, write the factors
    peer_file = folder / "factors_arpack.h5"
    process_peers = {"scipy svds arpack (tol=1e-3) as a process (read h5, svds, write U s Vt)":
                     lambda: arpack_process(matrix_file, peer_file, TARGET_ACCURACY)}
    try:
        from sklearn.utils.extmath import randomized_svd
    except ImportError:
        print("sklearn not installed: skipping the randomized_svd peer (pip install scikit-learn)")
    else:
        A32 = A.astype(np.float32)
        contenders["sklearn randomized_svd (defaults)"] = lambda: randomized_svd(A, RANK, random_state=0)[1]
        contenders["sklearn randomized_svd (float32 input)"] = lambda: randomized_svd(A32, RANK, random_state=0)[1]

    sklearn_equal = equal_accuracy_sklearn(A, contenders) if "sklearn randomized_svd (defaults)" in contenders else None
    if sklearn_equal is not None:
        contenders[sklearn_equal[0]] = sklearn_equal[1]

    # Block Krylov with block size k + p. Full size: depth 5 without oversampling reached ~2e-4 for
    # three seeds (depth 4 with p=5: 2.4e-4 .. 8.5e-4) at the same cost (240 vs 250 vector products).
    # Lanczos with --tol 1e-3: every triplet's residual <= 1e-3 sigma_i, which certifies the target.
    q, p = ("4", "10") if size == "quick" else ("5", "0")
    configs = {
        "lanczos tol=1e-3 threads=1": ["--method", "lanczos", "--tol", "1e-3", "--threads", "1"],
        "lanczos tol=1e-3 threads=2": ["--method", "lanczos", "--tol", "1e-3", "--threads", "2"],
        f"block-krylov q={q} p={p} threads=1": ["--method", "block-krylov", "--power-iters", q, "--oversample", p,
                                                "--threads", "1"],
    }
    sweep = {tol: ["--method", "lanczos", "--tol", tol, "--threads", "1"] for tol in LANCZOS_TOLS}
    out = folder / "factors.h5"

    def arpack_certified(tol: float) -> tuple[float, np.ndarray, float, float]:
        """(seconds of svds alone, s descending, certified residual computed after the clock, CPU seconds)."""
        t0, cpu0 = time.perf_counter(), time.process_time()
        U, s, Vt = svds(A, k=RANK, tol=tol, solver="arpack", rng=np.random.default_rng(0))
        seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        return seconds, np.sort(s)[::-1], certified_residual(A, U, s, Vt), cpu

    def run_config(extra: list[str]):
        args = ["factorize", f"{matrix_file}:/A", "--kind", "svd", "--rank", str(RANK), *extra, "--seed", "0",
                "-o", str(out), "--force"]
        seconds, rep = run_matcli(args)
        with h5py.File(out) as fh:
            return seconds, rep, fh["s"][()]

    # Interleave the contenders and keep each one's best time: a shared machine's load then hits
    # peers and matcli alike.
    peer_best: dict[str, tuple[float, np.ndarray]] = {}
    matcli_best: dict[str, tuple[float, dict, np.ndarray]] = {}
    arpack_best: dict[float, tuple[float, np.ndarray, float, float]] = {}
    arpack_process_best: dict[float, float] = {}
    sweep_best: dict[str, tuple[float, dict, np.ndarray]] = {}
    for round_ in range(REPEAT):
        for tol in ARPACK_TOLS:
            seconds, s, cert, cpu = arpack_certified(tol)
            if tol not in arpack_best or seconds < arpack_best[tol][0]:
                arpack_best[tol] = (seconds, s, cert, cpu)
            process_s, _ = arpack_process(matrix_file, peer_file, tol)
            arpack_process_best[tol] = min(process_s, arpack_process_best.get(tol, float("inf")))
            print(f"round {round_ + 1}: svds arpack tol={tol:g}: {seconds:.2f} s in memory (CPU {cpu:.2f} s), "
                  f"{process_s:.2f} s as a process, certified residual {cert:.1e}", flush=True)
        for tol, extra in sweep.items():
            seconds, rep, s = run_config(extra)
            if tol not in sweep_best or seconds < sweep_best[tol][0]:
                sweep_best[tol] = (seconds, rep, s)
            print(f"round {round_ + 1}: matcli lanczos --tol {tol}: {seconds:.2f} s (compute "
                  f"{rep['phases']['compute']['wall_s']:.2f} s, CPU {rep['phases']['compute']['cpu_s']:.2f} s), "
                  "certified residual "
                  f"{rep['metrics']['max_triplet_residual']:.1e}", flush=True)
        for name, fn in contenders.items():
            seconds, s = best_time(fn)
            if name not in peer_best or seconds < peer_best[name][0]:
                peer_best[name] = (seconds, s)
            print(f"round {round_ + 1}: {name}: {seconds:.2f} s", flush=True)
        for name, fn in process_peers.items():
            seconds, s = fn()
            if name not in peer_best or seconds < peer_best[name][0]:
                peer_best[name] = (seconds, s)
            print(f"round {round_ + 1}: {name}: {seconds:.2f} s", flush=True)
        for label, extra in configs.items():
            seconds, rep, s = run_config(extra)
            if label not in matcli_best or seconds < matcli_best[label][0]:
                matcli_best[label] = (seconds, rep, s)
            print(f"round {round_ + 1}: matcli {label}: {seconds:.2f} s "
                  f"(compute {rep['phases']['compute']['wall_s']:.2f} s)", flush=True)

    s_ref = peer_best["scipy svds arpack (tol=0)"][1]
    print(f"reference (ARPACK, tol=0): sigma_1 = {s_ref[0]:.4g}, sigma_20 = {s_ref[-1]:.4g}")
    peers = {name: (seconds, "reference" if name.startswith("scipy") else fmt(accuracy(s, s_ref)))
             for name, (seconds, s) in peer_best.items()}
    rows: list[Row] = []
    for label, (seconds, rep, s) in matcli_best.items():
        err = accuracy(s, s_ref)
        compute = rep["phases"]["compute"]["wall_s"]
        print(f"matcli {label}: best {seconds:.2f} s (compute {compute:.2f} s), accuracy {err:.1e}")
        for peer, (peer_s, peer_acc) in peers.items():
            target = ">= 1.43x (0.7x time)" if peer.startswith("sklearn randomized_svd (n_iter") else (
                "> 1x" if peer.startswith("scipy") else "info")
            if "threads=1" not in label:
                target = "info (2 cores; peers' sparse products are single-threaded)"
            rows.append(Row(workload=f"{m}x{n} nnz={A.nnz} k={RANK}", peer=peer, peer_seconds=peer_s,
                            matcli_seconds=seconds, peer_accuracy=peer_acc, matcli_accuracy=f"{label}: {fmt(err)}",
                            target=target, extra={"matcli_compute_s": compute}))
        if "threads=1" in label:
            # equal footing with the in-memory peers: the same run's setup + compute phases
            inner = sum(rep["phases"][p]["wall_s"] for p in ("setup", "compute"))
            for peer, (peer_s, peer_acc) in peers.items():
                if "as a process" in peer:
                    continue
                if peer.startswith("scipy") or peer.startswith("sklearn randomized_svd (n_iter"):
                    rows.append(Row(workload=f"{m}x{n} nnz={A.nnz} k={RANK}, in memory both", peer=peer,
                                    peer_seconds=peer_s, matcli_seconds=inner, peer_accuracy=peer_acc,
                                    matcli_accuracy=f"{label}: {fmt(err)}", target="> 1x" if peer.startswith("scipy")
                                    else ">= 1.43x (0.7x time)",
                                    extra={"note": "matcli seconds = setup + compute phases of the report"}))
    products = {tol: arpack_products(A, tol) for tol in arpack_best}
    rows += like_for_like_rows(f"{m}x{n} nnz={A.nnz} k={RANK}", arpack_best, arpack_process_best, sweep_best, s_ref,
                               products)
    rows.append(product_floor_row(A, f"{m}x{n} nnz={A.nnz}"))
    print(f"load average (1, 5, 15 min): {os.getloadavg()}")
    report("factorize", rows, size)


def arpack_products(A, tol: float) -> int:
    """Vector products with A or A^H that svds (ARPACK) makes at ``tol``, counted in an untimed run."""
    from scipy.sparse.linalg import LinearOperator, svds

    count = [0]

    def counted(product):
        def apply(X):
            count[0] += 1 if X.ndim == 1 else X.shape[1]
            return product(X)
        return apply

    op = LinearOperator(A.shape, dtype=A.dtype, matvec=counted(A.__matmul__), rmatvec=counted(A.T.__matmul__),
                        matmat=counted(A.__matmul__), rmatmat=counted(A.T.__matmul__))
    svds(op, k=RANK, tol=tol, solver="arpack", rng=np.random.default_rng(0))
    return count[0]


def product_floor_row(A, workload: str, pairs: int = 20) -> Row:
    """One pair ``A^H (A x)``: scipy's two single-threaded CSR passes vs matcli's parallel row blocks.

    Best of three interleaved rounds of ``pairs`` pairs each; seconds per pair.
    """
    from matcli.methods.factorize.gkl import _Products
    from matcli.threads import thread_limit

    x = np.random.default_rng(1).standard_normal(A.shape[1])
    scipy_best = ours_best = float("inf")
    with thread_limit(2):
        blocks = _Products(A)
        assert blocks.blocks is not None and np.allclose(blocks.adjoint(blocks.forward(x)), A.T @ (A @ x))
        for _ in range(3):
            t0 = time.perf_counter()
            for _ in range(pairs):
                A.T @ (A @ x)
            t1 = time.perf_counter()
            for _ in range(pairs):
                blocks.adjoint(blocks.forward(x))
            t2 = time.perf_counter()
            scipy_best, ours_best = min(scipy_best, (t1 - t0) / pairs), min(ours_best, (t2 - t1) / pairs)
    print(f"product floor: A^H (A x) {scipy_best * 1e3:.1f} ms scipy, {ours_best * 1e3:.1f} ms matcli row blocks "
          "on 2 threads", flush=True)
    return Row(workload=f"{workload}, product floor: one pair A^H (A x)", peer="scipy A.T @ (A @ x), 1 thread",
               peer_seconds=scipy_best, matcli_seconds=ours_best, peer_accuracy="same product",
               matcli_accuracy="row blocks on 2 threads (the threads=2 path)", target="info (memory bandwidth)")


def like_for_like_rows(workload: str, arpack_best: dict, arpack_process_best: dict, sweep_best: dict,
                       s_ref: np.ndarray, products: dict[float, int]) -> list[Row]:
    """For each svds tolerance, the fastest matcli Lanczos setting whose certified residual is at most
    ARPACK's: one row in memory (the report's setup + compute phases vs svds alone; their CPU seconds
    too, which a loaded machine distorts less than wall time) and one as processes."""
    rows: list[Row] = []
    for tol, (peer_s, peer_vals, peer_cert, peer_cpu) in sorted(arpack_best.items(), reverse=True):
        eligible = [(seconds, mtol, rep, s) for mtol, (seconds, rep, s) in sweep_best.items()
                    if rep["metrics"]["max_triplet_residual"] <= peer_cert]
        peer_acc = (f"certified {peer_cert:.1e}, accuracy {accuracy(peer_vals, s_ref):.1e}, "
                    f"{products[tol]} products")
        if not eligible:
            print(f"like for like: no matcli --tol in {LANCZOS_TOLS} certifies ARPACK tol={tol:g}'s {peer_cert:.1e}")
            continue
        seconds, mtol, rep, s = min(eligible, key=lambda item: item[0])
        inner = sum(rep["phases"][p]["wall_s"] for p in ("setup", "compute"))
        inner_cpu = sum(rep["phases"][p]["cpu_s"] for p in ("setup", "compute"))
        ours = (f"lanczos --tol {mtol} threads=1: certified {rep['metrics']['max_triplet_residual']:.1e}, "
                f"accuracy {accuracy(s, s_ref):.1e}, {rep['info']['vector_products']} products")
        rows.append(Row(workload=f"{workload}, like for like, in memory both", peer=f"scipy svds arpack (tol={tol:g})",
                        peer_seconds=peer_s, matcli_seconds=inner, peer_accuracy=peer_acc, matcli_accuracy=ours,
                        target=">= 2x", extra={"note": "matcli seconds = setup + compute phases of the report",
                                               "peer_cpu_s": peer_cpu, "matcli_cpu_s": inner_cpu,
                                               "cpu_ratio": peer_cpu / inner_cpu if inner_cpu > 0 else None}))
        rows.append(Row(workload=f"{workload}, like for like, processes",
                        peer=f"scipy svds arpack (tol={tol:g}) as a process (read h5, svds, write U s Vt)",
                        peer_seconds=arpack_process_best[tol], matcli_seconds=seconds, peer_accuracy=peer_acc,
                        matcli_accuracy=ours, target=">= 2x"))
    return rows


if __name__ == "__main__":
    t0 = time.perf_counter()
    main()
    print(f"total benchmark time {time.perf_counter() - t0:.1f} s")
