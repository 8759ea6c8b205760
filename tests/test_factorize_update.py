"""Truncated SVD updates (appended rows/columns, low-rank terms) against exact constructions, dense
numpy SVDs of the new matrix and bounds derived from the discarded spectrum; ``--method auto``'s
choice between updating and recomputing; statuses earned from the triplet residuals.

Ported peer cases: tcSVD's ``test-tensor.m`` (full SVD of a 3 x 5 matrix, 10 columns appended: exact),
IncrementalSVD.jl's README demo (a 5 x 12 Gaussian matrix in chunks of 4 columns at rank 4) and
rank1-svd-update's ``test.m`` (integer 5 x 5 matrix plus a rank-one integer term, full SVD).
"""

from __future__ import annotations

import json
import tracemalloc

import numpy as np
import pytest
import scipy.io
import scipy.sparse as sp

from matcli.core.result import Status
from matcli.io.hdf5 import write_arrays
from matcli.methods.factorize import update_cost
from matcli.methods.factorize.update import update_svd

EPS = np.finfo(float).eps
DTYPES = [np.float32, np.float64, np.complex64, np.complex128]


def _random(rng, shape, dtype):
    X = rng.standard_normal(shape)
    if np.issubdtype(dtype, np.complexfloating):
        X = X + 1j * rng.standard_normal(shape)
    return X.astype(dtype)


def exact_rank(m, n, s, rng, dtype=np.float64):
    """``U diag(s) V^H`` with Haar-like orthonormal U, V of the dtype's kind, and its exact factors."""
    U, _ = np.linalg.qr(_random(rng, (m, s.size), np.complex128 if np.iscomplexobj(np.zeros(0, dtype)) else float))
    V, _ = np.linalg.qr(_random(rng, (n, s.size), U.dtype))
    return (U * s) @ V.conj().T, U, V.conj().T


def svdvals(M):
    return np.linalg.svd(M.toarray() if sp.issparse(M) else M, compute_uv=False)


def _triplet_residual(M, U, s, Vt):
    """max_i max(||M v_i - s_i u_i||, ||M^H u_i - s_i v_i||) / s_1, formed densely (independent of the kernel)."""
    M = M.toarray() if sp.issparse(M) else np.asarray(M)
    V = Vt.conj().T
    right = np.linalg.norm(M @ V - U * s, axis=0)
    left = np.linalg.norm(M.conj().T @ U - V * s, axis=0)
    return float(np.max(np.maximum(right, left)) / s[0])


# ------------------------------------------------------------------ exact constructions
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("side", ["rows", "cols"])
@pytest.mark.parametrize("storage", ["dense", "sparse"])
def test_exact_rank_matrix_updated_exactly(dtype, side, storage):
    # A has rank k: [A; E] lies in span(U, I) x span(V, Q_E), so the update is exact whatever E is
    # (p <= 2 (2 rank + 10): the exact complement)
    rng = np.random.default_rng(1)
    k, p = 5, 8
    A, U, Vt = exact_rank(90, 70, np.linspace(10, 1, k), rng, dtype)
    extra = _random(rng, (p, 70) if side == "rows" else (90, p), dtype)
    if storage == "sparse":
        extra = sp.random(*extra.shape, density=0.3, random_state=2, format="csr", dtype=dtype)
        if np.iscomplexobj(extra):
            extra = extra + 1j * sp.random(*extra.shape, density=0.3, random_state=3, format="csr")
    new = (np.vstack if side == "rows" else np.hstack)([A, extra.toarray() if sp.issparse(extra) else extra])
    s_ref = svdvals(new.astype(np.complex128 if np.iscomplexobj(new) else float))
    result = update_svd(A.astype(dtype), U=U.astype(dtype), s=np.linspace(10, 1, k), Vt=Vt.astype(dtype),
                        rank=k + p, rng=rng, **{side: extra})
    U_new, s_new, Vt_new = result.outputs["U"], result.outputs["s"], result.outputs["Vt"]
    # the inputs are rounded to the dtype first; the update itself is exact to a modest multiple of
    # double precision on those rounded inputs (U, V orthonormal only to the dtype's precision)
    unit = np.finfo(dtype).eps
    np.testing.assert_allclose(s_new, s_ref[: k + p], rtol=0, atol=50 * unit * s_ref[0])
    assert U_new.dtype == (np.complex128 if np.iscomplexobj(new) else np.float64)
    assert result.info["complement"] == "exact thin QR"
    if unit == EPS:
        assert result.status is Status.CONVERGED_DIRECT
        assert result.metrics["max_triplet_residual"] <= 1e3 * EPS
        assert _triplet_residual(new, U_new, s_new, Vt_new) <= 1e3 * EPS


def test_low_rank_appends_are_exact_through_the_randomized_complement():
    # 60 appended rows of rank 3: the complement is randomized (l = 2*7+10 = 24, 60 > 2 l) but the new rows'
    # part outside span(V) has rank 3 <= l, so nothing is lost: singular values to ~1e-12 relative
    rng = np.random.default_rng(2)
    k = 4
    A, U, Vt = exact_rank(200, 150, np.array([9.0, 5, 2, 1]), rng)
    E = sp.csr_matrix(rng.standard_normal((60, 3)) @ rng.standard_normal((3, 150)))
    result = update_svd(A, U=U, s=np.array([9.0, 5, 2, 1]), Vt=Vt, rows=E, rank=k + 3, rng=rng)
    assert result.info["complement"].startswith("randomized rank 24 ")
    s_ref = svdvals(np.vstack([A, E.toarray()]))
    np.testing.assert_allclose(result.outputs["s"], s_ref[: k + 3], rtol=0, atol=1e-12 * s_ref[0])
    assert result.status is Status.CONVERGED_DIRECT


@pytest.mark.parametrize("dtype", [np.float64, np.complex128])
def test_lowrank_term_of_an_exact_rank_matrix_is_exact(dtype):
    rng = np.random.default_rng(3)
    k, q = 6, 3
    s = np.geomspace(20, 1, k)
    A, U, Vt = exact_rank(80, 60, s, rng, dtype)
    X, Y = _random(rng, (80, q), dtype), _random(rng, (60, q), dtype)
    new = A + X @ Y.conj().T
    result = update_svd(sp.csr_matrix(A), U=U, s=s, Vt=Vt, lowrank=(X, Y), rank=k + q, rng=rng)
    s_ref = svdvals(new)
    np.testing.assert_allclose(result.outputs["s"], s_ref[: k + q], rtol=0, atol=1e3 * EPS * s_ref[0])
    assert result.metrics["frobenius_norm"] == pytest.approx(np.linalg.norm(new), rel=1e-12)
    assert result.metrics["max_triplet_residual"] == pytest.approx(
        _triplet_residual(new, result.outputs["U"], result.outputs["s"], result.outputs["Vt"]), abs=1e-13)
    assert result.status is Status.CONVERGED_DIRECT and result.info["lowrank_terms"] == q


def test_lowrank_metrics_on_a_large_sparse_matrix_never_form_the_sum():
    # 3000 x 2000 > EXACT_ENTRIES: A + X Y^H is applied as products; its norm by the Gram expansion
    rng = np.random.default_rng(4)
    A = sp.random(3000, 2000, density=0.002, random_state=5, format="csr")
    from matcli.methods.factorize.tsvd import lanczos_svd

    start = lanczos_svd(A, rank=5, tol=1e-12, rng=rng)
    X, Y = rng.standard_normal((3000, 2)), rng.standard_normal((2000, 2))
    result = update_svd(A, **{k: start.outputs[k] for k in ("U", "s", "Vt")}, lowrank=(X, Y), rank=5, rng=rng)
    dense = A.toarray() + X @ Y.T
    assert result.metrics["frobenius_norm"] == pytest.approx(np.linalg.norm(dense), rel=1e-10)
    assert result.metrics["max_triplet_residual"] == pytest.approx(
        _triplet_residual(dense, result.outputs["U"], result.outputs["s"], result.outputs["Vt"]), rel=1e-8)


# --------------------------------------------------------------- ported peer cases
def test_tcsvd_full_svd_of_3x5_with_10_columns_appended_is_exact():
    # tcSVD test-tensor.m: Amat = rand(3, 5), Bmat = rand(3, 10); the update of the full SVD reconstructs
    # Y = [Amat, Bmat] (rank 3 = number of rows)
    rng = np.random.default_rng(5)
    A, B = rng.random((3, 5)), rng.random((3, 10))
    U, s, Vt = np.linalg.svd(A, full_matrices=False)
    result = update_svd(A, U=U, s=s, Vt=Vt, cols=B, rank=3, rng=rng)
    Y = np.hstack([A, B])
    out = result.outputs
    assert np.linalg.norm(Y - (out["U"] * out["s"]) @ out["Vt"]) <= 1e3 * EPS * np.linalg.norm(Y)
    assert result.status is Status.CONVERGED_DIRECT


def test_incremental_svd_jl_chunks_of_four_columns_within_the_discarded_bound():
    # IncrementalSVD.jl README: A = randn(5, 12) in chunks of 4 columns at rank 4. Each step is exact for
    # [T_prev, C] (exact complement), so ||M_j - T_j||_2 <= ||M_{j-1} - T_{j-1}||_2 + sigma_5([T_prev, C]);
    # Weyl then bounds every singular value by that sum.
    rng = np.random.default_rng(6)
    A = rng.standard_normal((5, 12))
    U, s, Vt = np.linalg.svd(A[:, :4], full_matrices=False)
    bound = 0.0
    for j in (4, 8):
        C = A[:, j:j + 4]
        bound += svdvals(np.hstack([(U * s) @ Vt, C]))[4]
        result = update_svd(A[:, :j], U=U, s=s, Vt=Vt, cols=C, rank=4, rng=rng)
        U, s, Vt = result.outputs["U"], result.outputs["s"], result.outputs["Vt"]
    s_ref = svdvals(A)
    assert np.all(np.abs(s - s_ref[:4]) <= bound * (1 + 1e-12) + 1e3 * EPS * s_ref[0])
    assert bound > 1e-3  # the bound is not vacuous: a rank-5 matrix kept at rank 4 loses something


def test_rank1_svd_update_integer_5x5():
    # rank1-svd-update test.m: A = randi([1 9], 5, 5), a, b = randi([1 9], 5, 1); A + a b' vs the direct SVD
    rng = np.random.default_rng(7)
    A = rng.integers(1, 10, (5, 5)).astype(float)
    a, b = rng.integers(1, 10, (5, 1)).astype(float), rng.integers(1, 10, (5, 1)).astype(float)
    U, s, Vt = np.linalg.svd(A)
    result = update_svd(A, U=U, s=s, Vt=Vt, lowrank=(a, b), rank=5, rng=rng)
    s_ref = svdvals(A + a @ b.T)
    np.testing.assert_allclose(result.outputs["s"], s_ref, rtol=0, atol=1e3 * EPS * s_ref[0])


# ---------------------------------------------------- approximate updates, honest statuses
@pytest.mark.parametrize("side", ["rows", "cols"])
def test_random_sparse_append_within_the_discarded_singular_value(side):
    # From the exact rank-k SVD of A, the update (exact complement) returns the singular values of
    # [A_k; E], a compression of [A; E]: 0 <= sigma_i(new) - sigma_i(update) <= ||A - A_k||_2 = s_{k+1}(A)
    rng = np.random.default_rng(8)
    k = 6
    spectrum = np.concatenate([np.geomspace(50, 10, k), np.geomspace(0.5, 0.01, 40)])
    A, U, Vt = exact_rank(300, 200, spectrum, rng)
    E = sp.random(*((10, 200) if side == "rows" else (300, 10)), density=0.05, random_state=9, format="csr") * 5
    new = (np.vstack if side == "rows" else np.hstack)([A, E.toarray()])
    result = update_svd(A, U=U[:, :k], s=spectrum[:k], Vt=Vt[:k], rank=k, rng=rng, **{side: E})
    gap = svdvals(new)[:k] - result.outputs["s"]
    assert np.all(gap >= -1e3 * EPS * spectrum[0]) and np.all(gap <= spectrum[k] * (1 + 1e-12))
    residual = _triplet_residual(new, result.outputs["U"], result.outputs["s"], result.outputs["Vt"])
    assert result.metrics["max_triplet_residual"] == pytest.approx(residual, rel=1e-8)
    # not exact: the default tolerance (sqrt(eps)) is not met and the status says so
    assert residual > 1e-6 and result.status is Status.DIVERGED_TOLERANCE_UNREACHABLE
    accepted = update_svd(A, U=U[:, :k], s=spectrum[:k], Vt=Vt[:k], rank=k, tol=2 * residual,
                          rng=np.random.default_rng(8), **{side: E})
    assert accepted.status is Status.CONVERGED_RTOL
    refused = update_svd(A, U=U[:, :k], s=spectrum[:k], Vt=Vt[:k], rank=k, tol=residual / 2,
                         rng=np.random.default_rng(8), **{side: E})
    assert refused.status is Status.DIVERGED_TOLERANCE_UNREACHABLE


def test_randomized_complement_values_lie_within_their_residuals_of_true_singular_values():
    # whatever the complement, a triplet with residual rho has a singular value of the new matrix within
    # rho (absolute): the status's claim is checked against the dense SVD
    rng = np.random.default_rng(10)
    k = 5
    spectrum = np.concatenate([np.geomspace(30, 8, k), np.geomspace(1, 0.01, 60)])
    A, U, Vt = exact_rank(400, 250, spectrum, rng)
    E = sp.random(400, 80, density=0.05, random_state=11, format="csr")
    result = update_svd(A, U=U[:, :k], s=spectrum[:k], Vt=Vt[:k], cols=E, rank=k, rng=rng)
    assert result.info["complement"].startswith("randomized rank 20 ")
    s_true = svdvals(np.hstack([A, E.toarray()]))
    rho = result.metrics["max_triplet_residual"] * result.outputs["s"][0]
    for value in result.outputs["s"]:
        assert np.min(np.abs(s_true - value)) <= rho * (1 + 1e-10)
    assert result.metrics["reconstruction_error"] < result.metrics["previous_error"]


def test_large_sparse_append_forms_no_dense_block_of_the_appended_size():
    # 1000 sparse columns appended to a 20000-row matrix: the old exact complement formed the dense
    # 20000 x 1000 block (160 MB); the randomized one holds blocks of 20000 x (k + l) (~6 MB)
    rng = np.random.default_rng(12)
    A = sp.random(20000, 400, density=0.002, random_state=13, format="csr")
    C = sp.random(20000, 1000, density=0.002, random_state=14, format="csr")
    U, _ = np.linalg.qr(rng.standard_normal((20000, 8)))
    V, _ = np.linalg.qr(rng.standard_normal((400, 8)))
    tracemalloc.start()
    result = update_svd(A, U=U, s=np.geomspace(4, 1, 8), Vt=V.T, cols=C, rank=8, rng=rng)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert result.outputs["Vt"].shape == (8, 1400)
    assert peak < 20000 * 1000 * 8 / 4, f"peak {peak / 1e6:.0f} MB"


def test_update_needs_exactly_one_modification():
    rng = np.random.default_rng(0)
    A, U, Vt = exact_rank(10, 8, np.array([2.0, 1.0]), rng)
    with pytest.raises(ValueError, match="exactly one"):
        update_svd(A, U=U, s=np.array([2.0, 1.0]), Vt=Vt, rank=2, rng=rng)
    with pytest.raises(ValueError, match="X \\(m x q\\)"):
        update_svd(A, U=U, s=np.array([2.0, 1.0]), Vt=Vt, lowrank=(np.ones((10, 2)), np.ones((8, 3))), rank=2,
                   rng=rng)


# ---------------------------------------------------------------- the auto choice
def _problem(**kw):
    base = dict(m=20000, n=3000, nnz=300_000, p=150, length=20000, nnz_appended=15_000, k=10, rank=10, l=30,
                power_iters=1)
    return update_cost.Problem(**{**base, **kw})


def test_cost_model_prefers_the_update_for_small_appends_and_recomputes_for_huge_ones():
    assert update_cost.choose(_problem())[0] == "update"
    # more new columns than the matrix had (exact complement): the middle SVD alone outweighs a recompute
    huge = _problem(n=23000, p=20000, l=20000, nnz_appended=2_000_000, nnz=2_300_000)
    assert update_cost.choose(huge)[0] == "lanczos"
    small = _problem(m=60, n=50, nnz=3000, p=45, length=60, nnz_appended=2700, rank=5, k=5, l=45)
    assert update_cost.choose(small)[0] == "dense"
    # the update's estimate grows with the appended block; the recomputation's lower bound with the matrix
    assert update_cost.update_cost(_problem(p=300, nnz_appended=30_000)) > update_cost.update_cost(_problem())


@pytest.fixture
def evolving(tmp_path):
    """A 300 x 200 matrix of singular values 0.7^i and a 400-column block (more than A has)."""
    rng = np.random.default_rng(15)
    U, _ = np.linalg.qr(rng.standard_normal((300, 60)))
    V, _ = np.linalg.qr(rng.standard_normal((600, 60)))
    full = (U * 0.7 ** np.arange(60)) @ V.T
    path = tmp_path / "A.h5"
    write_arrays(str(path), {"A": full[:, :200], "C": full[:, 200:], "C5": full[:, 200:210]})
    return path, full


def _factorize(cli, tmp_path, args, name):
    report = tmp_path / f"{name}.json"
    result = cli(["factorize", *map(str, args), "--report", str(report), "--quiet", "--seed", "1"])
    assert result.exit_code == 0, result.stderr
    return json.loads(report.read_text())


def test_auto_recomputes_when_the_appended_block_outweighs_the_update(cli, tmp_path, evolving):
    path, full = evolving
    prev = tmp_path / "prev.h5"
    _factorize(cli, tmp_path, [f"{path}:/A", "--rank", "8", "--method", "dense", "-o", prev], "prev")
    # the exact complement of 400 columns: a 408 x 408 middle SVD against one Lanczos basis of the 300 x 600
    report = _factorize(cli, tmp_path, [f"{path}:/A", "--update", prev, "--append-cols", f"{path}:/C",
                                        "--param", "complement_rank=400", "-o", tmp_path / "new.h5"], "auto")
    cost = report["problem"]["update_cost"]
    assert cost["chosen"] in ("lanczos", "dense") and cost["recompute_cost"] <= cost["update_cost"]
    assert report["method"] == f"svd-{cost['chosen']}" and "recomputed" in report["method_reason"]
    assert report["status"]["converged"]
    import h5py

    with h5py.File(tmp_path / "new.h5") as fh:
        np.testing.assert_allclose(fh["s"][()], 0.7 ** np.arange(8), rtol=1e-10)


def test_auto_updates_a_small_append_and_tol_decides_the_status(cli, tmp_path, evolving):
    path, full = evolving
    prev = tmp_path / "prev.h5"
    _factorize(cli, tmp_path, [f"{path}:/A", "--rank", "8", "--method", "dense", "-o", prev], "prev")
    base = [f"{path}:/A", "--update", prev, "--append-cols", f"{path}:/C5", "-o", tmp_path / "new.h5", "--force"]
    report = _factorize(cli, tmp_path, base, "auto")
    assert report["method"] == "svd-update" and report["problem"]["update_cost"]["chosen"] == "update"
    residual = report["metrics"]["max_triplet_residual"]
    # A's discarded tail (0.7^8 of s_1) couples to the new columns: an approximate update, refused at the
    # default tolerance sqrt(eps)
    assert residual > 1e-6 and not report["status"]["converged"]
    accepted = _factorize(cli, tmp_path, base + ["--tol", f"{2 * residual:.3g}"], "tol")
    assert accepted["metrics"]["max_triplet_residual"] == pytest.approx(residual, rel=1e-6)
    assert accepted["params"]["tol"] == pytest.approx(2 * residual, rel=1e-2)


def test_tol_met_by_an_approximate_update_is_converged_after_the_certificate(cli, tmp_path, evolving):
    path, full = evolving
    prev = tmp_path / "prev.h5"
    _factorize(cli, tmp_path, [f"{path}:/A", "--rank", "8", "--method", "dense", "-o", prev], "prev")
    report = _factorize(cli, tmp_path, [f"{path}:/A", "--update", prev, "--append-cols", f"{path}:/C5",
                                        "--tol", "1e-2", "-o", tmp_path / "new.h5"], "tol")
    assert report["metrics"]["max_triplet_residual"] <= 1e-2
    assert report["status"]["reason"] == "converged_rtol"


def test_gram_expansion_of_complex_factors():
    from matcli.methods.factorize import metrics

    rng = np.random.default_rng(20)
    A = sp.random(2500, 2000, density=0.001, random_state=21, format="csr") * (1 + 1j)
    X = rng.standard_normal((2500, 3)) + 1j * rng.standard_normal((2500, 3))
    Y = rng.standard_normal((3, 2000)) + 1j * rng.standard_normal((3, 2000))
    error, how = metrics.low_rank_error(A, X, Y, rng)
    assert how == "exact (Gram expansion)"
    exact = np.linalg.norm(A.toarray() - X @ Y) / np.linalg.norm(A.toarray())
    assert error == pytest.approx(exact, rel=1e-10)


@pytest.mark.parametrize("dtype", ["float32", "complex64", "complex128"])
def test_cli_update_of_every_dtype(cli, tmp_path, dtype):
    # exact rank 4, 6 rows appended: exact in double precision after the float32/complex64 rounding
    rng = np.random.default_rng(16)
    A, _, _ = exact_rank(50, 40, np.array([8.0, 4, 2, 1]), rng, np.dtype(dtype).type)
    R = _random(rng, (6, 40), np.dtype(dtype).type)
    A, R = A.astype(dtype), R.astype(dtype)
    path = tmp_path / "A.h5"
    write_arrays(str(path), {"A": A, "R": R})
    prev = tmp_path / "prev.h5"
    _factorize(cli, tmp_path, [f"{path}:/A", "--rank", "4", "--method", "dense", "-o", prev], "prev")
    report = _factorize(cli, tmp_path, [f"{path}:/A", "--update", prev, "--append-rows", f"{path}:/R",
                                        "--method", "update", "--rank", "10", "-o", tmp_path / "n.h5"], "up")
    wide = np.complex128 if "complex" in dtype else np.float64
    new = np.vstack([A, R]).astype(wide)
    import h5py

    with h5py.File(tmp_path / "n.h5") as fh:
        s = fh["s"][()]
    s_ref = svdvals(new)
    # the rank-4 part is A rounded to the dtype: its tail (rank > 4) is at the dtype's eps
    unit = np.finfo(dtype).eps
    np.testing.assert_allclose(s, s_ref[:10], rtol=0, atol=100 * unit * s_ref[0])
    assert report["problem"]["compute_dtype"] == np.dtype(wide).name


def test_cli_sparse_matrix_market_update(cli, tmp_path):
    A = sp.random(400, 300, density=0.02, random_state=18, format="csr")
    E = sp.random(12, 300, density=0.02, random_state=19, format="csr")
    scipy.io.mmwrite(tmp_path / "A.mtx", A)
    scipy.io.mmwrite(tmp_path / "E.mtx", E)
    prev = tmp_path / "prev.h5"
    _factorize(cli, tmp_path, [tmp_path / "A.mtx", "--rank", "5", "--method", "lanczos", "-o", prev], "prev")
    report = _factorize(cli, tmp_path, [tmp_path / "A.mtx", "--update", prev, "--append-rows", tmp_path / "E.mtx",
                                        "--method", "update", "-o", tmp_path / "n.h5"], "up")
    assert report["info"]["new_shape"] == [412, 300] and report["info"]["appended_rows"] == 12


def test_exact_complement_of_vectors_of_very_different_norms_stays_on_cholesky_qr(monkeypatch):
    # appended vectors with norms from 1e-3 to 1e3 (power-law rows): their unit columns are well
    # conditioned for Cholesky QR; the test relative to the largest column used to send such blocks to
    # two Householder QRs (2.5x the whole update's time on 160 power-law rows at rank 50)
    from matcli.methods.factorize.update import complement_basis

    rng = np.random.default_rng(40)
    B, _ = np.linalg.qr(rng.standard_normal((500, 5)))
    M = rng.standard_normal((500, 30)) * np.geomspace(1e-3, 1e3, 30)

    def householder(*args, **kwargs):
        raise AssertionError("Householder QR called")

    monkeypatch.setattr("scipy.linalg.qr", householder)
    Q = complement_basis(M, B, 30, 1, rng, BhM=B.T @ M)
    assert Q.shape == (500, 30)
    assert np.linalg.norm(Q.T @ Q - np.eye(30)) < 1e-13 and np.linalg.norm(B.T @ Q) < 1e-13
    # every projected column lies in range(Q), relative to its own norm
    P = M - B @ (B.T @ M)
    outside = P - Q @ (Q.T @ P)
    assert np.max(np.linalg.norm(outside, axis=0) / np.linalg.norm(P, axis=0)) < 1e-13
