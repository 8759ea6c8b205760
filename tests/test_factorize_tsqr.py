"""``factorize --kind svd --method tsqr`` (and ``--backend dask``): the SVD of a tall matrix read in
row blocks, against numpy's SVD (LAPACK gesdd) of the same matrix.

Tolerances: both are backward stable, so each singular value is within a small multiple of
``sqrt(m n) eps s_1`` of the exact one (Weyl); the vectors are compared through the certificate's
triplet residuals, which bound them against the exact ones by residual / gap (Wedin).
"""

from __future__ import annotations

import subprocess
import sys

import h5py
import numpy as np
import pytest
import scipy.sparse as sp

import matcli
from matcli import runner
from matcli.backends.local import LocalBackend
from matcli.core.errors import InputError, UsageError
from matcli.io.writers import write_result

EPS = np.finfo(float).eps


@pytest.fixture(scope="module")
def tall(tmp_path_factory):
    """A 20000 x 60 dense matrix with singular values 1 .. 1e-6 (chunked by 500 rows), a sparse
    30000 x 40 CSR one, and the dense one as .npy."""
    root = tmp_path_factory.mktemp("tsqr")
    rng = np.random.default_rng(8)
    U, _ = np.linalg.qr(rng.standard_normal((20000, 60)))
    V, _ = np.linalg.qr(rng.standard_normal((60, 60)))
    dense = (U * np.logspace(0, -6, 60)) @ V.T
    with h5py.File(root / "dense.h5", "w") as fh:
        fh.create_dataset("A", data=dense, chunks=(500, 60))
    np.save(root / "dense.npy", dense)
    sparse = sp.random(30000, 40, density=0.05, random_state=3, format="csr") + sp.eye(30000, 40, format="csr")
    write_result(str(root / "sparse.h5"), str(root / "sparse.h5"), {"A": sparse.tocsr()}, {}, "test")
    return root, {"dense": dense, "sparse": sparse.toarray()}


def check_against_lapack(out, A, k):
    m, n = A.shape
    s_ref = np.linalg.svd(A, compute_uv=False)
    bound = 10 * np.sqrt(m * n) * EPS * s_ref[0]
    assert out["s"].shape == (k,) and out["U"].shape == (m, k) and out["Vt"].shape == (k, n)
    assert np.max(np.abs(out["s"] - s_ref[:k])) <= bound
    # the certificate, recomputed here from A and the written factors
    U, s, V = out["U"], out["s"], out["Vt"].T
    right = np.linalg.norm(A @ V - U * s, axis=0)
    left = np.linalg.norm(A.T @ U - V * s, axis=0)
    assert max(right.max(), left.max()) <= bound
    assert np.linalg.norm(U.T @ U - np.eye(k)) <= 10 * np.sqrt(m) * k * EPS
    assert out.metrics["max_triplet_residual"] <= 10 * np.sqrt(m * n) * EPS
    # one sign convention: the largest-modulus entry of each column of U is positive
    assert np.all(U[np.argmax(np.abs(U), axis=0), np.arange(k)] > 0)


@pytest.mark.parametrize("name, spec", [("dense", "dense.h5:/A"), ("sparse", "sparse.h5:/A"), ("dense", "dense.npy")])
def test_tsqr_streams_the_row_blocks_and_matches_lapack(tall, name, spec):
    root, arrays = tall
    out = matcli.factorize(f"{root}/{spec}", kind="svd", method="tsqr", rank=7, max_memory="200M", threads=1)
    assert out.converged and out.method == "svd-tsqr" and out.report["problem"]["row_blocks"] >= 8
    assert out.report["info"]["passes_over_file"] == 3
    check_against_lapack(out, arrays[name], 7)


def test_rank_auto_is_the_smallest_rank_within_tol(tall):
    root, arrays = tall
    s = np.linalg.svd(arrays["dense"], compute_uv=False)
    out = matcli.factorize(f"{root}/dense.h5:/A", kind="svd", method="tsqr", rank="auto", tol=0.3)
    tails = np.sqrt(np.cumsum((s**2)[::-1])[::-1] / np.sum(s**2))  # tails[k] = error of rank k
    expected = int(np.argmax(np.append(tails, 0.0) <= 0.3))
    assert out["s"].size == expected and out.metrics["reconstruction_error"] <= 0.3 < tails[expected - 1]


def test_the_dask_path_is_the_local_path(tall, monkeypatch):
    root, _ = tall
    local = matcli.factorize(f"{root}/dense.h5:/A", kind="svd", method="tsqr", rank=5, threads=1)
    monkeypatch.setattr(runner, "get_backend", lambda name, address=None: LocalBackend())
    remote = matcli.factorize(f"{root}/dense.h5:/A", kind="svd", rank=5, backend="dask", threads=1)
    assert remote.method == "svd-tsqr" and "TSQR" in remote.report["method_reason"]
    for name in ("U", "s", "Vt"):
        assert np.array_equal(local[name], remote[name])


def test_what_tsqr_refuses(tall, tmp_path):
    root, arrays = tall
    np.save(tmp_path / "wide.npy", arrays["dense"].T.copy())
    with pytest.raises(UsageError, match="tall matrix"):
        matcli.factorize(str(tmp_path / "wide.npy"), kind="svd", method="tsqr", rank=2)
    with pytest.raises(UsageError, match="needs --rank"):
        matcli.factorize(f"{root}/dense.h5:/A", kind="svd", method="tsqr")
    with pytest.raises(UsageError, match="other factorizations run in this process"):
        matcli.factorize(f"{root}/dense.h5:/A", kind="lu", backend="dask")
    import scipy.io

    scipy.io.mmwrite(str(tmp_path / "a.mtx"), arrays["dense"][:100])
    with pytest.raises(InputError, match="row blocks"):
        matcli.factorize(str(tmp_path / "a.mtx"), kind="svd", method="tsqr", rank=2)


def test_a_huge_declared_matrix_is_refused_before_planning_or_allocating(tmp_path):
    """10^12 declared rows (chunked, never written, so the file is tiny): the blocks are capped and
    U, which the client assembles, is checked against the budget first (exit 7), not allocated."""
    from matcli.core.errors import ResourceError

    with h5py.File(tmp_path / "huge.h5", "w") as fh:
        fh.create_dataset("A", shape=(10**12, 4), dtype="f8", chunks=(4096, 4))
    with pytest.raises(ResourceError, match="TSQR factors"):
        matcli.factorize(f"{tmp_path}/huge.h5:/A", kind="svd", method="tsqr", rank=2, max_memory="1G")


def test_on_a_real_cluster_the_factors_are_the_local_bits(tall, tmp_path):
    pytest.importorskip("distributed")
    from tests.dask_cluster import Cluster

    root, _ = tall
    local = matcli.factorize(f"{root}/dense.h5:/A", kind="svd", method="tsqr", rank=4, threads=1)
    with Cluster(tmp_path / "cluster", workers=2) as cluster:
        proc = subprocess.run([sys.executable, "-m", "matcli", "factorize", f"{root}/dense.h5:/A", "--kind", "svd",
                               "--rank", "4", "--threads", "1", "--backend", "dask", "--scheduler", cluster.address,
                               "-o", str(tmp_path / "f.h5"), "-q", "--strict"], capture_output=True, text=True,
                              timeout=240)
    assert proc.returncode == 0, proc.stderr
    with h5py.File(tmp_path / "f.h5") as fh:
        for name in ("U", "s", "Vt"):
            assert np.array_equal(fh[name][()], local[name]), name
