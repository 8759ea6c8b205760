"""Ridge regression tuned by cross-validation: ``sketch-regress --ensemble K`` (feature-sketched ridge
ensembles tuned by GCV, issue #21) against single-sketch GCV (``--ridge auto``) and the exact ridge
tuned by leave-one-out.

Workloads (generated deterministically here, seed 0; training rows written to .npy / .npz):

1. Synthetic m >> n: rows x ~ N(0, diag(1/j)), y = x . beta + 5 eps, beta ~ N(0, I)
   (``--quick``: 20000 x 500 training rows, ``--full``: 100000 x 1000), 5000 held-out rows.
2. Proportional (the seed's regime): 4000 x 800 training rows of the same model, 5000 held out.
3. Wide, text-like (n >> m, where feature sketches should pay): documents x vocabulary, each row
   60 terms drawn from a Zipf(1.1) law over n terms, counts log-scaled, idf-weighted, rows
   normalised; y = X beta + 0.5 eps, beta ~ N(0, 9 I) (``--quick``: 2000 x 8000, ``--full``:
   5000 x 20000), 2000 held-out rows. Sparse (60 nonzeros a row).
4. Real: MovieLens 100k (``/work/shared/data/ml-100k/u1.base`` / ``u1.test``, the canonical 80/20
   split): rating minus the training mean regressed on the user and item indicators (80000 x 2625,
   two nonzeros a row: a ridge-regularised user + item bias model), held-out rows from u1.test.

Contenders, side by side in one run, interleaved, ``REPEAT`` runs each (best time counts):

* matcli ``--ensemble 4 --ridge auto`` (q = n / 4 features per member; sparse: q = n / 16),
  ``--ensemble 4 --ridge auto --sketch-size auto`` (dense workload only), ``--ridge auto``
  (today's: lambda by GCV on one row sketch, then the full ridge solved by preconditioned CGLS),
  ``--mode lapack --ridge auto`` (exact GCV, dense only): whole processes, ``--threads 1``.
* peer: exact ridge with leave-one-out over a lambda grid, closed form through the hat matrix
  (dense: SVD, ``e_i / (1 - H_ii)``; sparse: eigendecomposition of A^T A, H_ii from the two indicator
  columns of each row), in this process on the matrix in memory, single-threaded BLAS.
  scikit-learn's RidgeCV is used instead when installed (it is not a dependency).

On the wide workload the CLI refuses ``--ensemble`` (``jobs/sketch.py`` sends every wide A to the
exact minimum-norm solve), so the ensembles there run as the kernel
(:func:`matcli.methods.sketch.ensemble.ridge_ensemble`, countsketch, q = n / 16) in this process,
timed like the peer (single-threaded BLAS); ``--ridge auto`` (exact GCV by LAPACK, what the CLI does
with a wide A) runs as a whole process. The peer there is the exact ridge with leave-one-out
through the dual: the eigendecomposition of A A^T (m x m), ``H = A A^T (A A^T + lam I)^-1``.

Accuracy column: held-out mean squared error of each answer (recomputed here) and, for matcli, its
GCV estimate of that error (a row sketch's GCV scaled by d / m to a per-row error). For the ensembles, ``extra`` also gives the naive estimate (the mean of
the members' own GCVs at the chosen point) and the members' mean held-out error: the seed's point
is that the ensemble's GCV tracks the ensemble's error and the naive one does not.

Times: ``matcli s`` is the whole process (start-up, reading the file, writing x); the ``extra``
field ``inner_s`` is its setup + compute phases, comparable with the peer's in-memory time. The
machine is shared with other jobs: compare ratios within one run, not absolute seconds.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import scipy.sparse as sp

from _common import Row, report, run_matcli, size_from_argv, work_dir

THREADS = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
#: Runs of every contender, interleaved (best time counts): 1 for --quick, 3 for --full.
REPEAT = {"quick": 1, "full": 3}
MOVIELENS = Path("/work/shared/data/ml-100k")


def synthetic(m: int, n: int, m_test: int):
    rng = np.random.default_rng(0)
    scale = 1.0 / np.sqrt(np.arange(1, n + 1))
    beta = rng.standard_normal(n)
    X = rng.standard_normal((m + m_test, n)) * scale[None, :]
    y = X @ beta + 5.0 * rng.standard_normal(m + m_test)
    return X[:m], y[:m], X[m:], y[m:]


def movielens():
    """User and item indicators of u1.base / u1.test (ids 1-based), ratings centred on the training mean."""
    base = np.loadtxt(MOVIELENS / "u1.base", dtype=np.int64)
    test = np.loadtxt(MOVIELENS / "u1.test", dtype=np.int64)
    users, items = 943, 1682

    def design(rows):
        m = rows.shape[0]
        cols = np.concatenate([rows[:, 0] - 1, users + rows[:, 1] - 1])
        return sp.csr_matrix((np.ones(2 * m), (np.tile(np.arange(m), 2), cols)), shape=(m, users + items))

    mean = base[:, 2].mean()
    return design(base), base[:, 2] - mean, design(test), test[:, 2] - mean


def loo_dense(X, y, lams):
    """Exact ridge with leave-one-out over ``lams`` by the SVD: (lam, LOO MSE, x)."""
    U, s, Vt = np.linalg.svd(X, full_matrices=False)
    z = U.T @ y
    U2 = U**2
    best = (np.inf, None)
    for lam in lams:
        h = s**2 / (s**2 + lam)
        e = y - U @ (h * z)
        loo = float(np.mean((e / (1.0 - U2 @ h)) ** 2))
        if loo < best[0]:
            best = (loo, lam)
    lam = best[1]
    return lam, best[0], Vt.T @ (s / (s**2 + lam) * z)


def loo_indicators(A: sp.csr_matrix, y, lams, block: int = 8000):
    """Exact ridge with leave-one-out for rows with two indicator columns: eigendecomposition of
    A^T A, then H_ii = sum_j (Q_uj + Q_vj)^2 / (mu_j + lam) block by block of rows."""
    mu, Q = np.linalg.eigh((A.T @ A).toarray())
    mu = np.maximum(mu, 0.0)
    c = Q.T @ (A.T @ y)
    inv = 1.0 / (mu[:, None] + np.asarray(lams)[None, :])          # n x L
    X = Q @ (c[:, None] * inv)                                     # n x L solutions
    E = y[:, None] - A @ X                                         # m x L residuals
    H = np.empty_like(E)
    for start in range(0, A.shape[0], block):
        rows = A[start:start + block]
        H[start:start + rows.shape[0]] = (rows @ Q) ** 2 @ inv
    loo = np.mean((E / (1.0 - H)) ** 2, axis=0)
    j = int(np.argmin(loo))
    return float(lams[j]), float(loo[j]), X[:, j]


def loo_dual(A, y, lams):
    """Exact ridge with leave-one-out for a wide A (m < n) through the m x m Gram matrix: with
    ``A A^T = Q diag(mu) Q^T``, ``H(lam) = Q diag(mu / (mu + lam)) Q^T`` and ``x = A^T (A A^T + lam I)^-1 y``."""
    gram = A @ A.T
    mu, Q = np.linalg.eigh(gram.toarray() if sp.issparse(gram) else gram)
    mu = np.maximum(mu, 0.0)
    c = Q.T @ y
    Q2 = Q**2
    best = (np.inf, None)
    for lam in lams:
        h = mu / (mu + lam)
        loo = float(np.mean(((y - Q @ (h * c)) / (1.0 - Q2 @ h)) ** 2))
        if loo < best[0]:
            best = (loo, lam)
    loo, lam = best
    return float(lam), loo, np.asarray(A.T @ (Q @ (c / (mu + lam)))).ravel()


def text_like(m: int, n: int, m_test: int, words: int = 60):
    """The wide workload (module docstring): (A, y, X_test, y_test), A and X_test CSR."""
    rng = np.random.default_rng(0)
    p = 1.0 / np.arange(1, n + 1) ** 1.1
    p /= p.sum()
    total = m + m_test
    cols = rng.choice(n, size=(total, words), p=p)
    X = sp.csr_matrix((np.ones(total * words), (np.repeat(np.arange(total), words), cols.ravel())), shape=(total, n))
    X.sum_duplicates()
    X.data = 1.0 + np.log(X.data)
    idf = np.log((1 + total) / (1 + np.bincount(X.indices, minlength=n))) + 1.0
    X = (X @ sp.diags(idf)).tocsr()
    X = (sp.diags(1.0 / np.sqrt(np.asarray(X.multiply(X).sum(axis=1)).ravel())) @ X).tocsr()
    y = X @ (3.0 * rng.standard_normal(n)) + 0.5 * rng.standard_normal(total)
    return X[:m], y[:m], X[m:], y[m:]


def run_wide(A, y, X_test, y_test, directory: Path, repeat: int) -> list[Row]:
    """The wide workload: ensembles as the kernel in this process, ``--ridge auto`` as the CLI,
    against the exact ridge with leave-one-out through the dual (module docstring)."""
    from threadpoolctl import threadpool_limits

    from matcli.methods.sketch.ensemble import ridge_ensemble

    m, n = A.shape
    q = n // 16
    kernels = [(f"ensemble {k} (kernel, countsketch q = n/16)", k) for k in (1, 4, 8)]
    lams = np.logspace(-4, 2, 25)
    a_path, b_path = directory / "wide_A.npz", directory / "wide_b.npy"
    sp.save_npz(a_path, A)
    np.save(b_path, y)
    best: dict[str, tuple[float, Any]] = {}
    peer_time, peer = np.inf, None
    for _ in range(repeat):
        with threadpool_limits(1):
            for label, k in kernels:
                t0 = time.perf_counter()
                result = ridge_ensemble(A, y, ensemble=k, sketch="countsketch", sketch_size=q, ridge="auto",
                                        rng=np.random.default_rng(0))
                seconds = time.perf_counter() - t0
                if label not in best or seconds < best[label][0]:
                    best[label] = (seconds, result)
            t0 = time.perf_counter()
            peer = loo_dual(A, y, lams)
            peer_time = min(peer_time, time.perf_counter() - t0)
        out = directory / "wide_ridge_auto.h5"
        seconds, rep = run_matcli(["sketch-regress", str(a_path), str(b_path), "-o", str(out), "--force", "--seed", "0",
                                   "--threads", "1", "--ridge", "auto"], env_extra=THREADS)
        if "cli" not in best or seconds < best["cli"][0]:
            best["cli"] = (seconds, (rep, read_x(out)))
    lam_peer, loo, x_peer = peer
    peer_mse = float(np.mean((y_test - X_test @ x_peer) ** 2))
    peer_accuracy = f"test MSE {peer_mse:.4g} (LOO {loo:.4g}, lambda {lam_peer:.3g})"
    rows = []
    for label, _ in kernels:
        seconds, result = best[label]
        mse = float(np.mean((y_test - X_test @ result.outputs["x"]) ** 2))
        gcv = result.metrics["gcv"]
        rows.append(Row(workload=f"wide text-like {m}x{n}", peer="exact ridge + LOO (dual)",
                        peer_seconds=round(peer_time, 3), matcli_seconds=round(seconds, 3),
                        peer_accuracy=peer_accuracy, matcli_accuracy=f"{label}: test MSE {mse:.4g} (GCV {gcv:.4g})",
                        target="test MSE within 2% of the exact ridge's",
                        extra={"in_process": True, "lambda": result.metrics["ridge"], "sketch_size": q,
                               "status": result.status.reason, "gcv_estimate": gcv, "test_mse": mse,
                               "gcv_relative_gap": (gcv - mse) / mse}))
    seconds, (rep, x) = best["cli"]
    mse = float(np.mean((y_test - X_test @ x) ** 2))
    rows.append(Row(workload=f"wide text-like {m}x{n}", peer="exact ridge + LOO (dual)",
                    peer_seconds=round(peer_time, 3), matcli_seconds=round(seconds, 3), peer_accuracy=peer_accuracy,
                    matcli_accuracy=f"--ridge auto (CLI, {rep['method']}): test MSE {mse:.4g}",
                    target="test MSE within 2% of the exact ridge's",
                    extra={"inner_s": inner_seconds(rep), "lambda": rep["params"].get("ridge"),
                           "status": rep["status"]["reason"], "method": rep["method"], "test_mse": mse}))
    return rows


def ridge_loo(A, y, lams):
    """sklearn's RidgeCV (efficient LOO) when installed, else the closed forms above."""
    try:
        from sklearn.linear_model import RidgeCV
    except ImportError:
        return loo_indicators(A, y, lams) if sp.issparse(A) else loo_dense(A, y, lams)
    model = RidgeCV(alphas=[lam for lam in lams if lam > 0], fit_intercept=False).fit(A, y)
    return float(model.alpha_), float(model.best_score_), model.coef_


def read_x(path: Path) -> np.ndarray:
    with h5py.File(path, "r") as fh:
        return fh["x"][()]


def inner_seconds(rep: dict) -> float:
    return round(sum(rep["phases"][p]["wall_s"] for p in ("setup", "compute")), 3)


def naive_estimates(A, y, X_test, y_test, rep: dict, seed: int):
    """The mean of the members' own GCVs at the chosen point and the members' mean held-out error,
    with the members re-drawn exactly as the kernel drew them (default_rng(seed), sizes in order)."""
    from matcli.methods.sketch import ensemble as E

    curve = rep["info"]["gcv_curve"]
    lam, q = curve["chosen"]["lambda"], curve["chosen"]["sketch_size"]
    K, kind = rep["params"]["ensemble"], rep["params"]["sketch"]
    n = A.shape[1]
    rng = np.random.default_rng(seed)
    members = None
    for size, count in zip(curve["sketch_sizes"], curve["members"]):
        if count == 1 and size == n and K > 1:
            drawn = [E.FeatureSketch("identity", n, n)]
        else:
            drawn = [E.draw_sketch(kind, n, size, rng) for _ in range(K)]
        if size == q:
            members = [E.fit_member(A, y, sketch) for sketch in drawn]
            break
    gcvs, errors = [], []
    for member in members:
        out = E.ensemble_gcv(A, y, [member], np.array([lam]))
        gcvs.append(float(out["gcv"][0]))
        errors.append(float(np.mean((y_test - X_test @ out["coefficients"][:, 0]) ** 2)))
    return float(np.mean(gcvs)), float(np.mean(errors))


def run_workload(name: str, A, y, X_test, y_test, contenders, lams, directory: Path, repeat: int) -> list[Row]:
    a_path = directory / (f"{name}_A.npz" if sp.issparse(A) else f"{name}_A.npy")
    b_path = directory / f"{name}_b.npy"
    if sp.issparse(A):
        sp.save_npz(a_path, A)
    else:
        np.save(a_path, A)
    np.save(b_path, y)
    from threadpoolctl import threadpool_limits

    best: dict[str, tuple[float, dict | None, np.ndarray]] = {}
    peer_time, peer = np.inf, None
    for _ in range(repeat):
        for label, args in contenders:
            out = directory / f"{name}_{label.replace(' ', '_')}.h5"
            seconds, rep = run_matcli(["sketch-regress", str(a_path), str(b_path), "-o", str(out), "--force",
                                       "--seed", "0", "--threads", "1", *args], env_extra=THREADS)
            if label not in best or seconds < best[label][0]:
                best[label] = (seconds, rep, read_x(out))
        with threadpool_limits(1):
            t0 = time.perf_counter()
            peer = ridge_loo(A, y, lams)
            peer_time = min(peer_time, time.perf_counter() - t0)
    lam_peer, loo, x_peer = peer
    peer_mse = float(np.mean((y_test - X_test @ x_peer) ** 2))
    rows = []
    for label, args in contenders:
        seconds, rep, x = best[label]
        mse = float(np.mean((y_test - X_test @ x) ** 2))
        estimate = rep["metrics"].get("gcv")
        if estimate is None:
            # d RSS_S / (d - df)^2 on the d rows of a row sketch (||S r|| ~ ||r||): a mean squared error per
            # sketched row, about m / d times one per row of A; exact GCV (lapack): d = m
            estimate = rep["info"].get("ridge_auto", {}).get("gcv")
            if estimate is not None:
                estimate *= rep["info"]["gcv_curve"]["sketch_sizes"][0] / A.shape[0]
        extra = {"inner_s": inner_seconds(rep), "lambda": rep["params"].get("ridge"), "status": rep["status"]["reason"],
                 "method": rep["method"], "gcv_estimate": estimate, "test_mse": mse}
        if rep["method"] == "ridge-ensemble":
            extra["sketch_size"] = rep["params"]["sketch_size"]
            extra["naive_mean_member_gcv"], extra["members_mean_test_mse"] = naive_estimates(
                A, y, X_test, y_test, rep, seed=0)
        accuracy = f"test MSE {mse:.4g}" + (f" (GCV {estimate:.4g})" if estimate is not None else "")
        rows.append(Row(workload=f"{name} {A.shape[0]}x{A.shape[1]}", peer="exact ridge + LOO",
                        peer_seconds=round(peer_time, 3), matcli_seconds=round(seconds, 3),
                        peer_accuracy=f"test MSE {peer_mse:.4g} (LOO {loo:.4g}, lambda {lam_peer:.3g})",
                        matcli_accuracy=f"{label}: {accuracy}", target="test MSE within 2% of the exact ridge's",
                        extra=extra))
    return rows


def main() -> None:
    size = size_from_argv()
    directory = work_dir("ridge")
    m, n = (100_000, 1000) if size == "full" else (20_000, 500)
    A, y, X_test, y_test = synthetic(m, n, 5000)
    top = np.linalg.norm(A, 2) ** 2
    contenders = [("ensemble 4", ["--ensemble", "4", "--ridge", "auto"]),
                  ("ensemble 4 q auto", ["--ensemble", "4", "--ridge", "auto", "--sketch-size", "auto"]),
                  ("single-sketch GCV", ["--ridge", "auto"]),
                  ("exact GCV (lapack)", ["--mode", "lapack", "--ridge", "auto"])]
    rows = run_workload("synthetic", A, y, X_test, y_test, contenders, top * np.logspace(-8, 1, 46), directory,
                        REPEAT[size])
    # the seed's regime, n / m not small: the ensemble's averaging matters and the naive estimate shows it
    A, y, X_test, y_test = synthetic(4000, 800, 5000)
    contenders = [("ensemble 4", ["--ensemble", "4", "--ridge", "auto"]),
                  ("ensemble 4 q auto", ["--ensemble", "4", "--ridge", "auto", "--sketch-size", "auto"]),
                  ("exact GCV (lapack)", ["--mode", "lapack", "--ridge", "auto"])]
    top = np.linalg.norm(A, 2) ** 2
    rows += run_workload("proportional", A, y, X_test, y_test, contenders, top * np.logspace(-8, 1, 46), directory,
                         REPEAT[size])
    m, n = (5000, 20000) if size == "full" else (2000, 8000)
    A, y, X_test, y_test = text_like(m, n, 2000)
    rows += run_wide(A, y, X_test, y_test, directory, REPEAT[size])
    if (MOVIELENS / "u1.base").exists():
        A, y, X_test, y_test = movielens()
        q = str(A.shape[1] // 16)
        contenders = [("ensemble 4", ["--ensemble", "4", "--ridge", "auto", "--sketch-size", q]),
                      ("single-sketch GCV", ["--ridge", "auto"])]
        rows += run_workload("movielens u1", A, y, X_test, y_test, contenders, np.logspace(-1, 3, 17), directory,
                             REPEAT[size])
    else:
        print(f"{MOVIELENS} not found: the real workload is skipped", file=sys.stderr)
    report("ridge", rows, size)


if __name__ == "__main__":
    main()
