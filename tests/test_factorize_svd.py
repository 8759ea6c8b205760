"""Truncated SVD kernels (randomized, block Krylov, adaptive, ARPACK/PROPACK, dense) and SVD updates
against numpy.linalg.svd and exact constructions with known spectra."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from matcli.core.result import Status
from matcli.methods.factorize import metrics
from matcli.methods.factorize.rsvd import adaptive_svd, block_krylov_svd, randomized_svd
from matcli.methods.factorize.tsvd import dense_svd, lanczos_svd
from matcli.methods.factorize.update import update_svd
from tests.conftest import data_file

EPS = np.finfo(float).eps


def known_spectrum(m, n, s, rng):
    """``U diag(s) V^T`` with Haar-random orthonormal U (m x r), V (n x r)."""
    U, _ = np.linalg.qr(rng.standard_normal((m, s.size)))
    V, _ = np.linalg.qr(rng.standard_normal((n, s.size)))
    return (U * s) @ V.T, U, V


def permuted_diagonal(m, n, d, rng):
    """Sparse m x n matrix with entries d at distinct random (row, col) pairs: singular values |d| exactly."""
    rows = rng.permutation(m)[: d.size]
    cols = rng.permutation(n)[: d.size]
    return sp.csr_matrix((d, (rows, cols)), shape=(m, n))


def sin_theta(Q, Q0):
    """Largest sine of the principal angles between range(Q) and range(Q0) (both orthonormal)."""
    return float(np.linalg.norm(Q0 - Q @ (Q.T @ Q0), 2))


class NoDensify(sp.csr_matrix):
    """A CSR matrix that fails the test if anything densifies it."""

    def toarray(self, *args, **kwargs):
        raise AssertionError("sparse input was densified")

    todense = toarray


@pytest.mark.parametrize("kernel", [randomized_svd, block_krylov_svd])
def test_randomized_kernels_recover_fast_decaying_spectrum(kernel):
    rng = np.random.default_rng(0)
    s0 = 0.5 ** np.arange(40)
    A, U0, V0 = known_spectrum(300, 200, s0, rng)
    k = 8
    result = kernel(A, rank=k, oversample=10, power_iters=3, rng=rng)
    U, s, Vt = result.outputs["U"], result.outputs["s"], result.outputs["Vt"]
    assert U.shape == (300, k) and s.shape == (k,) and Vt.shape == (k, 200)
    # sigma_{k+p+1}/sigma_k = 2^-10 raised to 2q+1 = 7 is far below eps: backward-stable accuracy.
    tol = 50 * EPS * np.sqrt(300)
    np.testing.assert_allclose(s, s0[:k], rtol=0, atol=tol * s0[0])
    gap = s0[k - 1] - s0[k]
    assert sin_theta(U, U0[:, :k]) <= tol * s0[0] / gap
    assert sin_theta(Vt.T, V0[:, :k]) <= tol * s0[0] / gap
    optimal = np.sqrt(np.sum(s0[k:] ** 2)) / np.sqrt(np.sum(s0**2))
    assert result.metrics["reconstruction_error"] == pytest.approx(optimal, rel=1e-8)
    assert result.metrics["orthogonality_loss"] <= 10 * EPS * np.sqrt(300 * k)
    assert result.status.converged


def test_block_krylov_beats_subspace_iteration_on_flat_spectrum():
    rng = np.random.default_rng(1)
    d = 1.0 / np.arange(1, 401) ** 0.5
    A = permuted_diagonal(3000, 2000, d, rng)
    k = 10
    errs = {}
    for kernel in (randomized_svd, block_krylov_svd):
        s = kernel(A, rank=k, oversample=5, power_iters=3, rng=np.random.default_rng(2)).outputs["s"]
        errs[kernel.__name__] = np.max(np.abs(s - d[:k]) / d[:k])
    assert errs["block_krylov_svd"] < errs["randomized_svd"] / 3
    assert errs["block_krylov_svd"] < 2e-2


@pytest.mark.parametrize("kernel", [randomized_svd, block_krylov_svd])
def test_sparse_input_is_never_densified(kernel):
    rng = np.random.default_rng(3)
    d = 0.8 ** np.arange(50)
    A = NoDensify(permuted_diagonal(3000, 2500, d, rng))
    assert A.shape[0] * A.shape[1] > metrics.EXACT_ENTRIES
    result = kernel(A, rank=5, power_iters=4, rng=rng)
    np.testing.assert_allclose(result.outputs["s"], d[:5], rtol=1e-10)
    assert result.info["reconstruction_error_method"] == "exact (Gram expansion)"
    optimal = np.sqrt(np.sum(d[5:] ** 2) / np.sum(d**2))
    assert result.metrics["reconstruction_error"] == pytest.approx(optimal, rel=1e-8)


def test_adaptive_rank_meets_tolerance_with_near_optimal_rank():
    rng = np.random.default_rng(4)
    s0 = 0.9 ** np.arange(150)
    A, _, _ = known_spectrum(400, 300, s0, rng)
    tol = 1e-2
    result = adaptive_svd(A, tol=tol, block_size=8, power_iters=1, rng=rng)
    assert result.status is Status.CONVERGED_RTOL
    r = result.outputs["s"].size
    tails = np.sqrt(np.maximum(np.sum(s0**2) - np.cumsum(s0**2), 0) / np.sum(s0**2))
    r_opt = int(np.flatnonzero(tails <= tol)[0]) + 1
    assert r_opt <= r <= r_opt + 2
    exact = np.linalg.norm(A - (result.outputs["U"] * result.outputs["s"]) @ result.outputs["Vt"]) / np.linalg.norm(A)
    assert exact <= tol
    assert result.metrics["error_indicator"] == pytest.approx(exact, rel=1e-6)


def test_adaptive_rank_cap_reports_failure():
    rng = np.random.default_rng(5)
    A, _, _ = known_spectrum(200, 100, 0.99 ** np.arange(100), rng)
    result = adaptive_svd(A, tol=1e-3, block_size=5, max_rank=10, rng=rng)
    assert result.status is Status.DIVERGED_MAX_IT
    assert result.outputs["s"].size == 10


def test_adaptive_rank_on_sparse_real_matrix(shared_data):
    from matcli.io.load import read_matrix

    A = read_matrix(str(data_file("matrices/bcsstk13.mtx")))
    s_ref = np.linalg.svd(A.toarray(), compute_uv=False)
    tails = np.sqrt(np.maximum(np.sum(s_ref**2) - np.cumsum(s_ref**2), 0) / np.sum(s_ref**2))
    r_opt = int(np.flatnonzero(tails <= 0.1)[0]) + 1
    result = adaptive_svd(A, tol=0.1, block_size=16, rng=np.random.default_rng(6))
    assert result.status is Status.CONVERGED_RTOL
    assert r_opt <= result.outputs["s"].size <= 1.1 * r_opt
    assert result.metrics["reconstruction_error"] <= 0.1 * (1 + 1e-6)
    assert result.metrics["error_indicator"] == pytest.approx(result.metrics["reconstruction_error"], rel=1e-4)


@pytest.mark.parametrize("solver", ["arpack", "propack"])
def test_lanczos_matches_numpy_on_real_matrix(shared_data, solver):
    from matcli.io.load import read_matrix

    A = read_matrix(str(data_file("matrices/lp_share1b.mtx")))
    s_ref = np.linalg.svd(A.toarray(), compute_uv=False)
    rng = np.random.default_rng(7)
    result = lanczos_svd(A, rank=6, solver=solver, rng=rng)
    assert result.status is Status.CONVERGED_RTOL
    np.testing.assert_allclose(result.outputs["s"], s_ref[:6], rtol=1e-8)
    assert result.metrics["max_triplet_residual"] <= 1e-8
    assert result.info["vector_products"] > 0


def test_dense_svd_truncation_by_rank_and_tolerance():
    rng = np.random.default_rng(8)
    A = rng.standard_normal((60, 40))
    s_ref = np.linalg.svd(A, compute_uv=False)
    full = dense_svd(A, rng=rng)
    np.testing.assert_allclose(full.outputs["s"], s_ref, rtol=1e-12)
    assert full.metrics["reconstruction_error"] <= 40 * EPS * 60
    by_tol = dense_svd(A, tol=0.3, rng=rng)
    r = by_tol.outputs["s"].size
    tails = np.sqrt(np.sum(s_ref**2) - np.cumsum(s_ref**2)) / np.linalg.norm(A)
    assert tails[r - 1] <= 0.3 < tails[r - 2]
    assert by_tol.metrics["reconstruction_error"] == pytest.approx(tails[r - 1], rel=1e-10)


def test_complex_input():
    rng = np.random.default_rng(9)
    A = rng.standard_normal((80, 50)) + 1j * rng.standard_normal((80, 50))
    s_ref = np.linalg.svd(A, compute_uv=False)
    result = block_krylov_svd(A, rank=4, power_iters=6, rng=rng)
    np.testing.assert_allclose(result.outputs["s"], s_ref[:4], rtol=1e-6)
    U, s, Vt = result.outputs["U"], result.outputs["s"], result.outputs["Vt"]
    assert np.linalg.norm(A @ Vt.conj().T - U * s) <= 1e-5 * s[0]


@pytest.mark.parametrize("complement_rank", [0, 12])
@pytest.mark.parametrize("side", ["rows", "cols"])
def test_update_is_exact_for_exactly_low_rank_matrix(side, complement_rank):
    rng = np.random.default_rng(10)
    k, p = 6, 12 if side == "rows" else 9
    A, _, _ = known_spectrum(120, 90, np.linspace(10, 1, k), rng)
    U, s, Vt = np.linalg.svd(A, full_matrices=False)
    U, s, Vt = U[:, :k], s[:k], Vt[:k]
    extra = rng.standard_normal((p, 90)) if side == "rows" else rng.standard_normal((120, p))
    new = np.vstack([A, extra]) if side == "rows" else np.hstack([A, extra])
    s_ref = np.linalg.svd(new, compute_uv=False)
    kwargs = {side: sp.csr_matrix(extra)}
    result = update_svd(A, U=U, s=s, Vt=Vt, rank=k + p, complement_rank=complement_rank, rng=rng, **kwargs)
    # A has rank k, so [A; E] lies in span(U, I) x span(V, Q_E): the update is exact.
    np.testing.assert_allclose(result.outputs["s"], s_ref[: k + p], rtol=0, atol=1e3 * EPS * s_ref[0])
    assert result.metrics["reconstruction_error"] <= 1e3 * EPS
    assert result.metrics["orthogonality_loss"] <= 1e3 * EPS
    assert result.outputs["U"].shape[0] == new.shape[0] and result.outputs["Vt"].shape[1] == new.shape[1]


def test_update_truncated_matches_direct_svd_when_new_rows_follow_the_model():
    rng = np.random.default_rng(11)
    k = 5
    W, H = rng.standard_normal((300, k)), rng.standard_normal((k, 200))
    noise = 1e-4
    A = W[:250] @ H + noise * rng.standard_normal((250, 200))
    E = W[250:] @ H + noise * rng.standard_normal((50, 200))
    U, s, Vt = np.linalg.svd(A, full_matrices=False)
    result = update_svd(A, U=U[:, :k], s=s[:k], Vt=Vt[:k], rows=E, rank=k, rng=rng)
    s_ref = np.linalg.svd(np.vstack([A, E]), compute_uv=False)
    # Zha-Simon error: of the order of the discarded singular values (noise level), relative to sigma_1.
    np.testing.assert_allclose(result.outputs["s"], s_ref[:k], rtol=0, atol=10 * s_ref[k] ** 2 / s_ref[k - 1])
    assert result.metrics["reconstruction_error"] < result.metrics["previous_error"]


def test_low_rank_error_paths_agree(monkeypatch):
    rng = np.random.default_rng(12)
    A = sp.random(300, 200, density=0.05, random_state=1, format="csr")
    X, Y = rng.standard_normal((300, 3)), rng.standard_normal((3, 200)) * 0.01
    exact, how = metrics.low_rank_error(A, X, Y, rng)
    assert how == "exact"
    monkeypatch.setattr(metrics, "EXACT_ENTRIES", 0)
    gram, how = metrics.low_rank_error(A, X, Y, rng)
    assert how == "exact (Gram expansion)"
    assert gram == pytest.approx(exact, rel=1e-10)
    # a near-exact factorization cancels in the Gram expansion: the randomized estimate takes over
    U, s, Vt = np.linalg.svd(A.toarray(), full_matrices=False)
    tiny, how = metrics.low_rank_error(A, U * s, Vt, rng)
    assert how.startswith("randomized estimate")
    assert tiny < 1e-12


@pytest.mark.parametrize("kernel", [randomized_svd, block_krylov_svd])
def test_float32_working_precision(kernel):
    rng = np.random.default_rng(13)
    d = 0.7 ** np.arange(60)
    A = permuted_diagonal(4000, 3000, d, rng)
    result = kernel(A, rank=8, power_iters=4, precision="float32", rng=rng)
    U, s, Vt = result.outputs["U"], result.outputs["s"], result.outputs["Vt"]
    assert U.dtype == s.dtype == Vt.dtype == np.float64
    # single precision: eps32 = 6e-8, times a modest growth factor
    np.testing.assert_allclose(s, d[:8], rtol=20 * np.finfo(np.float32).eps)
    assert result.metrics["orthogonality_loss"] <= 100 * np.finfo(np.float32).eps
    assert result.info["precision"] == "float32"


def test_stop_tol_ends_iteration_early():
    rng = np.random.default_rng(14)
    A, _, _ = known_spectrum(300, 200, 0.5 ** np.arange(40), rng)
    seen = []
    result = block_krylov_svd(A, rank=5, power_iters=10, stop_tol=1e-12, rng=rng,
                              callback=lambda it, **v: seen.append(v["sigma_change"]))
    assert result.status is Status.CONVERGED_STEP
    assert result.iterations < 10 and seen[-1] <= 1e-12
    np.testing.assert_allclose(result.outputs["s"], 0.5 ** np.arange(5), rtol=1e-12)


def test_update_with_many_sparse_rows_switches_to_randomized_complement():
    rng = np.random.default_rng(15)
    k = 4
    W, H = rng.random((260, k)), rng.random((k, 80))
    A, E = W[:200] @ H, sp.csr_matrix(W[200:] @ H)
    U, s, Vt = np.linalg.svd(A, full_matrices=False)
    result = update_svd(A, U=U[:, :k], s=s[:k], Vt=Vt[:k], rows=E, rank=k, rng=rng)
    # 60 rows > 2 (2 k + 10): the complement is a randomized rank-18 range finder, not the dense 80 x 60 block
    assert result.info["complement"].startswith(f"randomized rank {2 * k + 10} ")
    # the new rows lie in the old row space: the rank-k update stays exact
    assert result.metrics["reconstruction_error"] <= 1e3 * EPS


def test_block_krylov_small_singular_values_keep_relative_accuracy():
    # s_10 / s_1 = 2e-5: the Gram route would lose (s_1/s_10)^2 eps ~ 5e-7 relative; the QR route does not
    rng = np.random.default_rng(16)
    s0 = 0.3 ** np.arange(30)
    A, _, _ = known_spectrum(200, 150, s0, rng)
    result = block_krylov_svd(A, rank=10, oversample=10, power_iters=3, rng=rng)
    np.testing.assert_allclose(result.outputs["s"], s0[:10], rtol=1e-9)


# ------------------------------------------------------------------------------ #17: honest triplets
@pytest.mark.parametrize("solver", ["propack", "arpack"])
@pytest.mark.parametrize("rank", [2, 3, 4])
def test_svds_rank_deficient_triplets_are_certified_and_completed(solver, rank):
    # PROPACK on the 6x5 ones matrix returned s = [5.477, 1.039, 0] with orthogonality loss 1.41 and
    # said converged (rank 3), and did not converge at all for rank 4
    A = np.ones((6, 5))
    result = lanczos_svd(A, rank=rank, solver=solver, rng=np.random.default_rng(0))
    assert result.status == Status.CONVERGED_RTOL
    U, s, Vt = result.outputs["U"], result.outputs["s"], result.outputs["Vt"]
    np.testing.assert_allclose(s, [np.sqrt(30)] + [0] * (rank - 1), atol=1e-14 * np.sqrt(30))
    assert result.metrics["orthogonality_loss"] < 1e-14 and result.metrics["max_triplet_residual"] < 1e-14
    np.testing.assert_allclose((U * s) @ Vt, A, atol=1e-13)


def test_svds_completion_that_misses_the_range_is_a_negative_status(monkeypatch):
    # when the kept triplets do not span A's range, the random completion is not a set of singular
    # triplets: the kernel must say so instead of returning it as converged
    import matcli.methods.factorize.tsvd as tsvd

    A = np.diag([5.0, 3.0, 2.0, 1.0, 0.5])
    monkeypatch.setattr(tsvd, "certified_prefix", lambda *args: 1)
    result = tsvd.lanczos_svd(A, rank=3, solver="arpack", rng=np.random.default_rng(0))
    assert result.status == Status.DIVERGED_BREAKDOWN
    assert result.info["certified_by_solver"] == 1 and result.info["completed"] == 2
    assert result.metrics["max_triplet_residual"] > np.sqrt(EPS)


@pytest.mark.parametrize("A", [np.ones((12, 11)), np.zeros((12, 11)), np.outer(np.arange(1, 13), np.arange(1, 12))])
@pytest.mark.parametrize("rank", [3, 10])
def test_block_krylov_returns_every_requested_triplet(A, rank):
    # the blocks deflate to A's rank (1 or 0 here): it returned 1 triplet for rank 3 on the ones matrix
    # and 0 for rank 10 on a zero matrix
    result = block_krylov_svd(A, rank=rank, rng=np.random.default_rng(0))
    U, s, Vt = result.outputs["U"], result.outputs["s"], result.outputs["Vt"]
    assert s.shape == (rank,) and U.shape == (12, rank) and Vt.shape == (rank, 11)
    assert result.metrics["orthogonality_loss"] < 1e-13 and result.metrics["max_triplet_residual"] < 1e-13
    np.testing.assert_allclose(s, np.linalg.svd(A, compute_uv=False)[:rank], atol=1e-13 * max(s[0], 1))
    assert result.info["zero_triplets_completed"] == rank - np.linalg.matrix_rank(A)


def test_triplet_residual_is_reported_for_a_zero_matrix():
    # the metric was missing when s_1 = 0, so a certificate could not be evaluated
    for kernel in (randomized_svd, block_krylov_svd):
        result = kernel(np.zeros((8, 6)), rank=2, rng=np.random.default_rng(0))
        assert result.metrics["max_triplet_residual"] == 0.0
        assert result.info["triplet_residual_scale"] == "absolute (A = 0)"


def test_metrics_do_not_overflow_near_the_range_limits():
    rng = np.random.default_rng(0)
    A = rng.standard_normal((20, 10))
    for scale in (1e-290, 1e290):
        result = dense_svd(A * scale, rank=3, rng=rng)
        assert np.isfinite(result.metrics["reconstruction_error"]) and result.metrics["max_triplet_residual"] < 1e-14
        reference = dense_svd(A, rank=3, rng=rng)
        assert result.metrics["reconstruction_error"] == pytest.approx(reference.metrics["reconstruction_error"],
                                                                      rel=1e-12)


@pytest.mark.parametrize("kernel", ["randomized", "block-krylov", "lanczos", "arpack", "propack", "dense"])
def test_signs_do_not_depend_on_the_seed(kernel):
    from matcli.methods.factorize import gkl

    run = {"randomized": randomized_svd, "block-krylov": block_krylov_svd, "lanczos": gkl.lanczos_svd,
           "arpack": lambda A, **kw: lanczos_svd(A, solver="arpack", **kw),
           "propack": lambda A, **kw: lanczos_svd(A, solver="propack", **kw), "dense": dense_svd}[kernel]
    A, _, _ = known_spectrum(30, 20, np.geomspace(1, 1e-3, 20), np.random.default_rng(1))
    first = run(A, rank=3, rng=np.random.default_rng(0))
    second = run(A, rank=3, rng=np.random.default_rng(99))
    np.testing.assert_allclose(first.outputs["U"], second.outputs["U"], atol=1e-8)
    np.testing.assert_allclose(first.outputs["Vt"], second.outputs["Vt"], atol=1e-8)
    U = first.outputs["U"]
    assert np.all(U[np.argmax(np.abs(U), axis=0), np.arange(3)] > 0)


def test_update_returns_every_requested_triplet_when_new_rows_add_no_direction():
    # rows inside the current row space: the update spans only the old rank, and returned fewer
    # triplets than --rank; the rest are zero singular values of the new (rank-1) matrix
    rng = np.random.default_rng(0)
    A = np.outer(np.arange(1, 9), np.arange(1, 7)).astype(float)
    start = dense_svd(A, rank=1, rng=rng)
    rows = 2 * A[:2]
    result = update_svd(A, U=start.outputs["U"], s=start.outputs["s"], Vt=start.outputs["Vt"], rows=rows, rank=4,
                        rng=rng)
    new = np.vstack([A, rows])
    assert result.outputs["s"].shape == (4,) and result.info["zero_triplets_completed"] == 3
    np.testing.assert_allclose(result.outputs["s"], np.linalg.svd(new, compute_uv=False)[:4], atol=1e-12 * 143)
    assert result.metrics["orthogonality_loss"] < 1e-13 and result.metrics["max_triplet_residual"] < 1e-13
