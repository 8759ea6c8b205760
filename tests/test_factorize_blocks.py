"""``factorize --kind svd --method randomized / block-krylov / lanczos`` on A read in row blocks (a
backend's workers, or this process streaming under --max-memory), against LAPACK's SVD of the same matrix.

Tolerances. Test matrices have singular values ``2^-j``: with block size ``l = k + 10`` and q power
iterations the randomized range finder's error in the top k triplets is of order
``(s_{l+1} / s_k)^(2q+1) = 2^-(10 (2q+1))`` (Halko, Martinsson, Tropp 2011, Cor. 10.10), far below
rounding for q >= 2, so what remains is the rounding of backward-stable steps (Householder TSQR,
products, the small SVD): each singular value within a small multiple of ``sqrt(m n) eps s_1``
(Weyl), the triplet residuals of the same size. Where the spectrum decays slowly (the method is not
exact) the tests check the reported certificate against a recomputation from A and the written
factors, and the Rayleigh-Ritz inequality: the block Krylov space contains the last power iterate,
so block Krylov's rank-k error is at most the randomized SVD's.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading

import h5py
import numpy as np
import pytest
import scipy.sparse as sp

import matcli
from matcli import runner
from matcli.backends.local import LocalBackend
from matcli.core.errors import UsageError
from matcli.io.writers import write_result

EPS = np.finfo(float).eps
MATCLI = [sys.executable, "-m", "matcli"]


def with_spectrum(rng, m: int, n: int, s: np.ndarray, complex_values: bool = False) -> np.ndarray:
    def orthonormal(rows: int) -> np.ndarray:
        X = rng.standard_normal((rows, s.size))
        if complex_values:
            X = X + 1j * rng.standard_normal((rows, s.size))
        return np.linalg.qr(X)[0]

    return (orthonormal(m) * s) @ orthonormal(n).conj().T


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Dense 8000 x 150 (HDF5 chunked by 400 rows, and .npy), complex 3000 x 80 (.npy), a sparse
    CSR 20000 x 60 (HDF5 group): singular values 2^-j; and a slowly decaying dense 4000 x 200
    (singular values 1 / (1 + j))."""
    root = tmp_path_factory.mktemp("blocks")
    rng = np.random.default_rng(19)
    arrays = {"dense": with_spectrum(rng, 8000, 150, 0.5 ** np.arange(150)),
              "complex": with_spectrum(rng, 3000, 80, 0.5 ** np.arange(80), complex_values=True),
              "slow": with_spectrum(rng, 4000, 200, 1.0 / (1.0 + np.arange(200)))}
    with h5py.File(root / "dense.h5", "w") as fh:
        fh.create_dataset("A", data=arrays["dense"], chunks=(400, 150))
    with h5py.File(root / "slow.h5", "w") as fh:
        fh.create_dataset("A", data=arrays["slow"], chunks=(250, 200))
    np.save(root / "dense.npy", arrays["dense"])
    np.save(root / "complex.npy", arrays["complex"])
    # sparse with a known spectrum: disjoint row supports (orthogonal columns), column j of norm 2^-j
    values = rng.standard_normal((60, 40))
    values *= (0.5 ** np.arange(60) / np.linalg.norm(values, axis=1))[:, None]
    S = sp.csr_matrix((values.ravel(), (rng.permutation(20000)[:2400], np.repeat(np.arange(60), 40))),
                      shape=(20000, 60))
    write_result(str(root / "sparse.h5"), str(root / "sparse.h5"), {"A": S.tocsr()}, {}, "test")
    arrays["sparse"] = S.toarray()
    return root, arrays


@pytest.fixture
def local_as_dask(monkeypatch):
    """``--backend dask`` served by the in-process backend: the row-block path without a cluster."""
    monkeypatch.setattr(runner, "get_backend", lambda name, address=None: LocalBackend())


def check_against_lapack(out, A, k):
    m, n = A.shape
    s_ref = np.linalg.svd(A, compute_uv=False)
    bound = 10 * np.sqrt(m * n) * EPS * s_ref[0]
    assert out["s"].shape == (k,) and out["U"].shape == (m, k) and out["Vt"].shape == (k, n)
    assert np.max(np.abs(out["s"] - s_ref[:k])) <= bound
    U, s, V = out["U"], out["s"], out["Vt"].conj().T
    right = np.linalg.norm(A @ V - U * s, axis=0)
    left = np.linalg.norm(A.conj().T @ U - V * s, axis=0)
    assert max(right.max(), left.max()) <= bound
    assert out.metrics["max_triplet_residual"] <= bound / s_ref[0]
    assert np.linalg.norm(U.conj().T @ U - np.eye(k)) <= 10 * np.sqrt(m) * k * EPS
    assert np.linalg.norm(V.conj().T @ V - np.eye(k)) <= 10 * np.sqrt(n) * k * EPS
    # one sign convention: the largest-modulus entry of each column of U is real and positive
    pivots = U[np.argmax(np.abs(U), axis=0), np.arange(k)]
    assert np.all(pivots.real > 0) and np.allclose(pivots.imag, 0.0)
    exact_error = np.sqrt(np.sum(s_ref[k:] ** 2) / np.sum(s_ref**2))
    assert abs(out.metrics["reconstruction_error"] - exact_error) <= 1e-8 * exact_error + bound / s_ref[0]


@pytest.mark.parametrize("method", ["randomized", "block-krylov"])
@pytest.mark.parametrize("name, spec", [("dense", "dense.h5:/A"), ("sparse", "sparse.h5:/A"),
                                        ("complex", "complex.npy")])
def test_row_block_randomized_svds_match_lapack(files, local_as_dask, method, name, spec):
    root, arrays = files
    out = matcli.factorize(f"{root}/{spec}", kind="svd", method=method, rank=6, power_iters=2, seed=4,
                           backend="dask", threads=1)
    assert out.converged and out.method == f"svd-{method}" and out.report["problem"]["row_blocks"] >= 8
    assert out.report["info"]["passes_over_file"] == (7 if method == "randomized" else 8)
    check_against_lapack(out, arrays[name], 6)


def test_the_certificate_is_measured_from_A_when_the_method_is_not_exact(files, local_as_dask):
    """Spectrum 1/(1+j): neither method is exact. Reported metrics equal a recomputation from A and
    the written factors; block Krylov's error is at most the randomized SVD's (see the module)."""
    root, arrays = files
    A = arrays["slow"]
    errors = {}
    for method in ("randomized", "block-krylov"):
        out = matcli.factorize(f"{root}/slow.h5:/A", kind="svd", method=method, rank=10, power_iters=1,
                               oversample=5, seed=2, backend="dask", threads=1)
        assert out.converged
        U, s, V = out["U"], out["s"], out["Vt"].T
        error = np.linalg.norm(A - (U * s) @ V.T) / np.linalg.norm(A)
        residual = max(np.linalg.norm(A @ V - U * s, axis=0).max(), np.linalg.norm(A.T @ U - V * s, axis=0).max())
        assert out.metrics["reconstruction_error"] == pytest.approx(error, rel=1e-10)
        assert out.metrics["max_triplet_residual"] == pytest.approx(residual / s[0], rel=1e-8)
        optimal = np.linalg.svd(A, compute_uv=False)
        assert error >= np.sqrt(np.sum(optimal[10:] ** 2)) / np.linalg.norm(A) * (1 - 1e-12)
        errors[method] = error
    assert errors["block-krylov"] <= errors["randomized"] * (1 + 1e-12)
    assert errors["randomized"] > 1.001 * np.sqrt(np.sum(optimal[10:] ** 2)) / np.linalg.norm(A)  # not exact


def test_the_answer_is_fixed_by_the_seed_whatever_the_blocks(files, local_as_dask):
    """Omega is drawn on the client, so another blocking (the same matrix as .npy: blocks of 1000
    rows; as HDF5 chunked by 400: blocks of 800 and 1200) changes only rounding, within the LAPACK
    bound of each other; the same blocks give the same bits."""
    from matcli.io.row_blocks import row_source
    from matcli.jobs.sketch_remote import plan_blocks

    root, arrays = files
    specs = (f"{root}/dense.h5:/A", f"{root}/dense.h5:/A", f"{root}/dense.npy")
    cuts = [[block.stop for block in plan_blocks(row_source(spec))] for spec in specs[1:]]
    assert cuts[0] != cuts[1]
    runs = [matcli.factorize(spec, kind="svd", method="randomized", rank=5, power_iters=2, seed=8,
                             backend="dask", threads=1) for spec in specs]
    for name in ("U", "s", "Vt"):
        assert np.array_equal(runs[0][name], runs[1][name])
    bound = 10 * np.sqrt(8000 * 150) * EPS
    assert np.max(np.abs(runs[0]["s"] - runs[2]["s"])) <= bound
    assert np.max(np.abs(runs[0]["U"] - runs[2]["U"])) <= bound / (0.5**4 - 0.5**5)  # Wedin: residual / gap
    check_against_lapack(runs[2], arrays["dense"], 5)


# Row-block Lanczos (Lanczos on A^H A, one pass per step) with --tol tau stops when every triplet has
# ||A^H u_i - s_i v_i|| <= tau s_i, and the TSQR refinement makes A v_i = s_i u_i and U orthonormal to
# rounding; so each s_i is within tau s_i <= tau s_1 of a singular value (Weyl). With tau = 1e-12 below
# check_against_lapack's rounding bound 10 sqrt(m n) eps s_1 (>= 2.4e-12 s_1 here), that check applies
# unchanged. The attainable tau of the i-th triplet is ~eps (s_1 / s_i)^2 (products with A^H A), 64 eps
# for the 4th of 2^-j.
@pytest.mark.parametrize("name, spec", [("dense", "dense.h5:/A"), ("sparse", "sparse.h5:/A"),
                                        ("complex", "complex.npy")])
def test_row_block_lanczos_matches_lapack(files, local_as_dask, name, spec):
    root, arrays = files
    out = matcli.factorize(f"{root}/{spec}", kind="svd", method="lanczos", rank=4, tol=1e-12, seed=4,
                           backend="dask", threads=1)
    assert out.converged and out.method == "svd-lanczos" and out.report["problem"]["row_blocks"] >= 8
    info = out.report["info"]
    assert info["passes_over_file"] == info["lanczos_steps"] + 2
    assert out.metrics["max_ritz_residual"] <= 1e-12
    check_against_lapack(out, arrays[name], 4)


def test_row_block_lanczos_of_a_float32_input_is_the_svd_of_its_values(files, local_as_dask, tmp_path):
    """A float32 file is read into double precision (compute_dtype float64): the answer is the SVD
    of the float32 values themselves, within the same rounding bound."""
    _, arrays = files
    A32 = arrays["dense"].astype(np.float32)
    np.save(tmp_path / "single.npy", A32)
    out = matcli.factorize(str(tmp_path / "single.npy"), kind="svd", method="lanczos", rank=4, tol=1e-12, seed=4,
                           backend="dask", threads=1)
    assert out.converged and out.report["problem"]["compute_dtype"] == "float64"
    check_against_lapack(out, A32.astype(np.float64), 4)


def test_row_block_lanczos_restarts_on_a_slow_spectrum_and_meets_its_tolerance(files, local_as_dask):
    """Singular values 1/(1+j), basis 14 for rank 6: thick restarts are needed. Each s_i within
    tol s_i of LAPACK's, every triplet's residual recomputed from A and the written factors within
    tol s_i (plus rounding), and the reported metrics are that recomputation."""
    root, arrays = files
    A, tol, k = arrays["slow"], 1e-9, 6
    out = matcli.factorize(f"{root}/slow.h5:/A", kind="svd", method="lanczos", rank=k, tol=tol,
                           params=["basis=14"], seed=2, backend="dask", threads=1)
    assert out.converged and out.report["info"]["restarts"] >= 2
    s_ref = np.linalg.svd(A, compute_uv=False)
    rounding = 10 * np.sqrt(A.size) * EPS * s_ref[0]
    U, s, V = out["U"], out["s"], out["Vt"].T
    assert np.all(np.abs(s - s_ref[:k]) <= tol * s_ref[:k] + rounding)
    right = np.linalg.norm(A @ V - U * s, axis=0)
    left = np.linalg.norm(A.T @ U - V * s, axis=0)
    assert np.all(np.maximum(right, left) <= tol * s + rounding)
    assert out.metrics["max_triplet_residual"] == pytest.approx(max(right.max(), left.max()) / s[0], rel=1e-6)
    assert out.metrics["orthogonality_loss"] <= 10 * np.sqrt(4000) * k * EPS
    error = np.linalg.norm(A - (U * s) @ V.T) / np.linalg.norm(A)
    assert out.metrics["reconstruction_error"] == pytest.approx(error, rel=1e-10)


def test_row_block_lanczos_is_fixed_by_the_seed_whatever_the_blocks(files, local_as_dask):
    """The start vector is drawn on the client: HDF5 (blocks of 800/1200 rows) and .npy (1000) runs
    of the same matrix agree to rounding, and the same blocks give the same bits."""
    root, arrays = files
    specs = (f"{root}/dense.h5:/A", f"{root}/dense.h5:/A", f"{root}/dense.npy")
    runs = [matcli.factorize(spec, kind="svd", method="lanczos", rank=4, tol=1e-12, seed=8, backend="dask",
                             threads=1) for spec in specs]
    for name in ("U", "s", "Vt"):
        assert np.array_equal(runs[0][name], runs[1][name])
    bound = 10 * np.sqrt(8000 * 150) * EPS
    assert np.max(np.abs(runs[0]["s"] - runs[2]["s"])) <= 2 * bound
    assert np.max(np.abs(runs[0]["U"] - runs[2]["U"])) <= 2 * bound / (0.5**3 - 0.5**4)  # Wedin: residual / gap


@pytest.mark.parametrize("method", ["lanczos", "randomized"])
def test_large_sparse_blocks_sum_the_error_by_the_gram_expansion(files, local_as_dask, monkeypatch, method):
    """Sparse blocks beyond EXACT_BLOCK_ENTRIES (set to 0 here) add ||A_i||^2 - 2 Re tr(S U_i^H A_i V)
    + ||U_i S V^H||^2 instead of forming dense residual rows (m n work). The relative error here is
    ~1e-2 (rank 6 of 2^-j), so the expansion's rounding, ~eps ||A||^2 / error^2 relative, is below 1e-10."""
    from matcli.methods.factorize import blocked_rsvd

    root, arrays = files
    monkeypatch.setattr(blocked_rsvd, "EXACT_BLOCK_ENTRIES", 0)
    options = {"tol": 1e-12} if method == "lanczos" else {"power_iters": 2}
    out = matcli.factorize(f"{root}/sparse.h5:/A", kind="svd", method=method, rank=6, seed=4, backend="dask",
                           threads=1, **options)
    assert out.converged and "Gram expansion" in out.report["info"]["reconstruction_error_method"]
    A, U, s, Vt = arrays["sparse"], out["U"], out["s"], out["Vt"]
    error = np.linalg.norm(A - (U * s) @ Vt) / np.linalg.norm(A)
    assert out.metrics["reconstruction_error"] == pytest.approx(error, rel=1e-10)
    check_against_lapack(out, A, 6)


def test_auto_on_row_blocks_picks_tsqr_for_few_columns_and_randomized_for_wide(files, local_as_dask, tmp_path):
    root, arrays = files
    tall = matcli.factorize(f"{root}/dense.npy", kind="svd", rank=4, backend="dask", threads=1)
    assert tall.method == "svd-tsqr" and "TSQR" in tall.report["method_reason"]
    wide = np.ascontiguousarray(arrays["complex"][:600].T)  # 80 x 600, singular values 2^-j (rows kept)
    np.save(tmp_path / "wide.npy", wide)
    out = matcli.factorize(str(tmp_path / "wide.npy"), kind="svd", rank=4, power_iters=3, backend="dask", threads=1)
    assert out.method == "svd-randomized" and "wide" in out.report["method_reason"]
    check_against_lapack(out, wide, 4)


def test_what_the_row_block_randomized_svd_refuses(files, local_as_dask):
    root, _ = files
    spec = f"{root}/dense.h5:/A"
    with pytest.raises(UsageError, match="--rank auto on row blocks needs --method tsqr"):
        matcli.factorize(spec, kind="svd", method="randomized", rank="auto", backend="dask")
    with pytest.raises(UsageError, match="--tol"):
        matcli.factorize(spec, kind="svd", method="block-krylov", rank=3, tol=1e-3, backend="dask")
    with pytest.raises(UsageError, match="in-memory randomized SVD"):
        matcli.factorize(spec, kind="svd", method="randomized", rank=3, params=["precision=float32"], backend="dask")
    with pytest.raises(UsageError, match="tsqr, randomized, block-krylov or lanczos"):
        matcli.factorize(spec, kind="svd", method="arpack", rank=3, backend="dask")
    with pytest.raises(UsageError, match="at most min.m, n. - 1 = 149 triplets; .*--method tsqr"):
        matcli.factorize(spec, kind="svd", method="lanczos", rank=150, backend="dask")
    with pytest.raises(UsageError, match="--power-iters does not apply"):
        matcli.factorize(spec, kind="svd", method="lanczos", rank=3, power_iters=2, backend="dask")


def _peak_rss_mib(argv: list[str], cwd) -> tuple[subprocess.CompletedProcess, float]:
    """Run ``argv`` as the only child of a fresh Python, which reports the child's peak RSS."""
    probe = ("import resource, subprocess, sys; p = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
             "sys.stderr.write(p.stderr); print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); "
             "sys.exit(p.returncode)")
    proc = subprocess.run([sys.executable, "-c", probe, *argv], capture_output=True, text=True, cwd=cwd, timeout=300)
    return proc, int(proc.stdout.split()[-1]) / 1024 if proc.stdout.split() else float("nan")


@pytest.mark.parametrize("method", [["--method", "randomized", "--power-iters", "2"], ["--method", "lanczos"]])
def test_an_input_beyond_the_budget_streams_and_stays_under_it(tmp_path, method):
    """A 120 MB matrix (50000 x 300) under --max-memory 150M: the in-memory path would hold the
    interpreter (~70 MB) and A; the streamed run's peak RSS stays within 150 MiB."""
    rng = np.random.default_rng(5)
    V = np.linalg.qr(rng.standard_normal((300, 300)))[0] * 0.5 ** np.arange(300)
    with h5py.File(tmp_path / "big.h5", "w") as fh:
        data = fh.create_dataset("A", shape=(50000, 300), dtype="f8", chunks=(1000, 300))
        for start in range(0, 50000, 10000):
            data[start:start + 10000] = rng.standard_normal((10000, 300)) @ V.T
    argv = [*MATCLI, "factorize", "big.h5:/A", "--kind", "svd", *method, "--rank", "5", "--max-memory", "150M", "--threads", "1", "-o", "f.h5", "--report", "r.json",
            "-q", "--strict"]
    proc, peak = _peak_rss_mib(argv, tmp_path)
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert "row blocks" in report["problem"]["streamed"] and report["problem"]["row_blocks"] >= 8
    assert peak <= 150, f"peak RSS {peak:.0f} MiB over the 150 MiB budget"


def test_a_budget_without_room_for_one_block_is_exit_7_in_one_line(tmp_path):
    """3000 x 40000 declared (never written): one storage chunk of 1000 rows is 305 MiB."""
    with h5py.File(tmp_path / "wide.h5", "w") as fh:
        fh.create_dataset("A", shape=(3000, 40000), dtype="f8", chunks=(1000, 40000))
    proc = subprocess.run([*MATCLI, "factorize", "wide.h5:/A", "--kind", "svd", "--rank", "3", "--max-memory",
                           "200M", "-o", "f.h5"], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert proc.returncode == 7, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "one row block" in proc.stderr
    assert not (tmp_path / "f.h5").exists()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    pytest.importorskip("distributed")
    from tests.dask_cluster import Cluster

    with Cluster(tmp_path_factory.mktemp("blocks-cluster"), workers=2) as running:
        yield running


def _cli_svd(spec: str, method: str, address: str, out) -> list[str]:
    return [*MATCLI, "factorize", spec, "--kind", "svd", "--method", method, "--rank", "5", "--power-iters", "2",
            "--seed", "3", "--threads", "1", "--backend", "dask", "--scheduler", address, "-o", str(out), "-q",
            "--strict"]


def _written(path) -> dict[str, np.ndarray]:
    with h5py.File(path) as fh:
        return {name: fh[name][()] for name in ("U", "s", "Vt")}


@pytest.mark.parametrize("method", ["randomized", "block-krylov"])
def test_on_a_real_cluster_the_factors_are_the_local_bits(files, cluster, tmp_path, monkeypatch, method):
    root, _ = files
    monkeypatch.setattr(runner, "get_backend", lambda name, address=None: LocalBackend())
    local = matcli.factorize(f"{root}/dense.h5:/A", kind="svd", method=method, rank=5, power_iters=2, seed=3,
                             backend="dask", threads=1)
    proc = subprocess.run(_cli_svd(f"{root}/dense.h5:/A", method, cluster.address, tmp_path / "f.h5"),
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr
    for name, value in _written(tmp_path / "f.h5").items():
        assert np.array_equal(value, local[name]), name


def test_on_a_real_cluster_row_block_lanczos_gives_the_local_bits(files, cluster, tmp_path, monkeypatch):
    root, _ = files
    monkeypatch.setattr(runner, "get_backend", lambda name, address=None: LocalBackend())
    local = matcli.factorize(f"{root}/dense.h5:/A", kind="svd", method="lanczos", rank=5, tol=1e-10, seed=3,
                             backend="dask", threads=1)
    argv = [*MATCLI, "factorize", f"{root}/dense.h5:/A", "--kind", "svd", "--method", "lanczos", "--rank", "5",
            "--tol", "1e-10", "--seed", "3", "--threads", "1", "--backend", "dask", "--scheduler",
            cluster.address, "-o", str(tmp_path / "f.h5"), "-q", "--strict"]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr
    for name, value in _written(tmp_path / "f.h5").items():
        assert np.array_equal(value, local[name]), name


@pytest.mark.parametrize("method, task", [("randomized", "basis_"), ("lanczos", "gram_")])
def test_a_worker_killed_mid_svd_is_recomputed_and_the_answer_is_bitwise_the_same(files, cluster, tmp_path, method,
                                                                                   task):
    from tests.test_dask_cluster import _kill_a_busy_worker

    root, _ = files

    def argv(out):
        command = _cli_svd(f"{root}/dense.h5:/A", method, cluster.address, out)
        if method == "lanczos":  # --tol instead of --power-iters 2
            at = command.index("--power-iters")
            command[at:at + 2] = ["--tol", "1e-10"]
        return command

    quiet = subprocess.run(argv(tmp_path / "quiet.h5"), capture_output=True, text=True, timeout=240)
    assert quiet.returncode == 0, quiet.stderr
    pids = cluster.worker_pids()
    proc = subprocess.Popen(argv(tmp_path / "killed.h5"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    killed: list = []
    killer = threading.Thread(target=_kill_a_busy_worker, args=(cluster, proc, pids, killed, task))
    killer.start()
    try:
        _, stderr = proc.communicate(timeout=240)
    finally:
        killer.join()
    assert killed, "the run ended before a worker was seen running one of its tasks"
    assert proc.returncode == 0, stderr
    reference, survived = _written(tmp_path / "quiet.h5"), _written(tmp_path / "killed.h5")
    for name in reference:
        assert np.array_equal(reference[name], survived[name]), name
    cluster.wait_for_workers(2)
