"""Thick-restart Lanczos bidiagonalization (svd-lanczos) against numpy.linalg.svd and exact spectra.

The method's guarantee: every returned theta_i has ||A^H u_i - theta_i v_i|| <= tol theta_i with
A v_i = theta_i u_i, so theta_i is within tol * theta_i of a singular value of A. On spectra with
distinct values and small tol that is the i-th one, so the tests compare with tol-derived bounds.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from matcli.core.result import Status
from matcli.io.mtx import read_mtx
from matcli.methods.factorize.gkl import lanczos_svd
from matcli.threads import thread_limit
from tests.conftest import data_file
from tests.test_factorize_svd import NoDensify, known_spectrum, permuted_diagonal

EPS = np.finfo(float).eps


def relative_errors(s, s_ref):
    return np.abs(np.asarray(s) - s_ref[: len(s)]) / s_ref[: len(s)]


def explicit_residuals(A, U, s, Vt):
    """max_i max(||A v_i - s_i u_i||, ||A^H u_i - s_i v_i||) / s_i from explicit products."""
    V = Vt.conj().T
    right = np.linalg.norm(A @ V - U * s, axis=0)
    left = np.linalg.norm(A.conj().T @ U - V * s, axis=0)
    return float(np.max(np.maximum(right, left) / s))


@pytest.mark.parametrize("tol", [1e-4, 1e-10])
def test_top_singular_values_meet_the_residual_tolerance(tol):
    rng = np.random.default_rng(0)
    s_true = np.logspace(0, -4, 150)
    A, _, _ = known_spectrum(400, 250, s_true, rng)
    result = lanczos_svd(A, rank=12, tol=tol, rng=np.random.default_rng(1))
    assert result.status == Status.CONVERGED_RTOL
    U, s, Vt = result.outputs["U"], result.outputs["s"], result.outputs["Vt"]
    assert s.shape == (12,) and U.shape == (400, 12) and Vt.shape == (12, 250)
    # residual <= tol * theta bounds the distance to the nearest singular value (plus rounding)
    assert np.all(relative_errors(s, s_true) <= tol + 50 * EPS / s_true[:12])
    assert explicit_residuals(A, U, s, Vt) <= 2 * tol
    assert result.metrics["orthogonality_loss"] < 1e-12
    assert result.metrics["max_ritz_residual"] <= tol


def test_restarts_with_a_small_basis_still_converge():
    rng = np.random.default_rng(2)
    s_true = 1.0 / np.arange(1, 201) ** 0.5          # slowly decaying: needs many steps
    A, _, _ = known_spectrum(300, 200, s_true, rng)
    result = lanczos_svd(A, rank=6, tol=1e-9, basis=10, rng=np.random.default_rng(3))
    assert result.status == Status.CONVERGED_RTOL
    assert result.info["restarts"] >= 3
    assert np.all(relative_errors(result.outputs["s"], s_true) <= 1e-9 + 50 * EPS / s_true[:6])
    assert explicit_residuals(A, result.outputs["U"], result.outputs["s"], result.outputs["Vt"]) <= 2e-9


def test_sparse_input_is_not_densified_and_matches_exact_values():
    rng = np.random.default_rng(4)
    d = rng.uniform(1.0, 10.0, 60)
    A = NoDensify(permuted_diagonal(3000, 2000, d, rng))   # > EXACT_ENTRIES: metrics stay sparse too
    result = lanczos_svd(A, rank=8, tol=1e-12, rng=np.random.default_rng(5))
    s_ref = np.sort(d)[::-1]
    assert np.all(relative_errors(result.outputs["s"], s_ref) <= 1e-12 + 100 * EPS)


def test_real_sparse_matrix_against_dense_svd():
    A = read_mtx(str(data_file("matrices/west0479.mtx"))).tocsr()
    s_ref = np.linalg.svd(A.toarray(), compute_uv=False)
    result = lanczos_svd(A, rank=10, tol=1e-10, rng=np.random.default_rng(6))
    assert result.status == Status.CONVERGED_RTOL
    assert np.all(relative_errors(result.outputs["s"], s_ref) <= 1e-10 + 100 * EPS * s_ref[0] / s_ref[:10])


def test_complex_matrix():
    rng = np.random.default_rng(7)
    A = rng.standard_normal((120, 80)) + 1j * rng.standard_normal((120, 80))
    s_ref = np.linalg.svd(A, compute_uv=False)
    result = lanczos_svd(A, rank=5, tol=1e-10, rng=np.random.default_rng(8))
    U, s, Vt = result.outputs["U"], result.outputs["s"], result.outputs["Vt"]
    assert np.iscomplexobj(U) and np.iscomplexobj(Vt)
    assert np.all(relative_errors(s, s_ref) <= 1e-10 + 100 * EPS * s_ref[0] / s_ref[:5])
    assert explicit_residuals(A, U, s, Vt) <= 2e-10


def test_exact_low_rank_matrix_is_resolved_exactly():
    rng = np.random.default_rng(9)
    s_true = np.array([5.0, 3.0, 2.0, 1.0])
    A, _, _ = known_spectrum(200, 100, s_true, rng)
    result = lanczos_svd(A, rank=4, tol=1e-12, rng=np.random.default_rng(10))
    assert result.status.converged
    assert np.all(relative_errors(result.outputs["s"], s_true) <= 1e-12)


def test_iteration_cap_returns_the_best_triplets_with_negative_status():
    rng = np.random.default_rng(11)
    A, _, _ = known_spectrum(300, 200, 1.0 / np.arange(1, 201) ** 0.3, rng)
    result = lanczos_svd(A, rank=5, tol=1e-12, basis=8, maxiter=12, rng=np.random.default_rng(12))
    assert result.status == Status.DIVERGED_MAX_IT and not result.status.converged
    assert result.outputs["s"].shape == (5,) and result.iterations == 12
    assert result.metrics["max_ritz_residual"] > 1e-12


def test_threaded_products_agree_with_serial():
    rng = np.random.default_rng(13)
    A = sp.random(20000, 6000, density=0.005, format="csr", random_state=rng)   # 6e5 nonzeros: split in 2
    serial = lanczos_svd(A, rank=6, tol=1e-10, rng=np.random.default_rng(14))
    with thread_limit(2):
        threaded = lanczos_svd(A, rank=6, tol=1e-10, rng=np.random.default_rng(14))
    assert serial.info["product_threads"] == 1 and threaded.info["product_threads"] == 2
    s1, s2 = serial.outputs["s"], threaded.outputs["s"]
    assert np.all(np.abs(s1 - s2) <= 2e-10 * s1)
    assert explicit_residuals(A, threaded.outputs["U"], s2, threaded.outputs["Vt"]) <= 2e-10


@pytest.mark.parametrize("kwargs, needle", [({"rank": 0}, "rank"), ({"rank": 81}, "rank"),
                                            ({"rank": 3, "tol": 0.0}, "tol")])
def test_invalid_arguments(kwargs, needle):
    A = np.random.default_rng(0).standard_normal((100, 80))
    with pytest.raises(ValueError, match=needle):
        lanczos_svd(A, rng=np.random.default_rng(0), **kwargs)


def test_full_rank_request_is_the_dense_svd():
    # rank = min(m, n) leaves no room for a restart vector: the full SVD comes from gesdd, said in info
    A = np.random.default_rng(0).standard_normal((100, 80))
    result = lanczos_svd(A, rank=80, rng=np.random.default_rng(0))
    assert result.status == Status.CONVERGED_DIRECT and "dense_fallback" in result.info
    np.testing.assert_allclose(result.outputs["s"], np.linalg.svd(A, compute_uv=False), rtol=1e-13)
    assert result.metrics["orthogonality_loss"] < 1e-12 and result.metrics["max_triplet_residual"] < 1e-13


def test_repeated_singular_values_are_all_found():
    # single-vector Lanczos sees one copy of a multiple singular value at a time; the restarts and
    # fresh directions must still return every copy among the top k
    rng = np.random.default_rng(15)
    s_true = np.concatenate([[5.0, 5.0, 5.0, 3.0, 3.0], np.linspace(2.0, 0.01, 295)])
    A, _, _ = known_spectrum(400, 300, s_true, rng)
    result = lanczos_svd(A, rank=6, tol=1e-8, rng=np.random.default_rng(16))
    assert result.status == Status.CONVERGED_RTOL
    assert np.all(relative_errors(result.outputs["s"], s_true) <= 1e-8 + 50 * EPS * 5.0 / s_true[:6])
    assert result.metrics["orthogonality_loss"] < 1e-12


def test_invariant_subspaces_continue_with_fresh_directions():
    A = 2.0 * np.eye(200)[:, :150]          # every vector is a singular vector: Lanczos breaks down at once
    result = lanczos_svd(A, rank=3, tol=1e-10, rng=np.random.default_rng(17))
    assert result.status.converged
    np.testing.assert_allclose(result.outputs["s"], [2.0, 2.0, 2.0], rtol=1e-12)
    assert result.metrics["orthogonality_loss"] < 1e-12


# One-sided reorthogonalisation: only the shorter basis is reorthogonalised (a real wide A runs as A^T); the left residuals come from the
# recurrence plus the accumulated defect (an upper bound), U is rebuilt from A V when not orthonormal
# to 1e-12, and A^H U is formed when the defect matters against tol. The fallbacks are forced here.
def _slow_sparse(rng, m=3000, n=1200):
    """Sparse with a slowly decaying spectrum (random sparse rows): restarts and many steps."""
    return sp.random(m, n, density=0.01, random_state=rng, format="csr") + sp.eye(m, n, format="csr")


@pytest.mark.parametrize("shape", [(3000, 1200), (1200, 3000)])
def test_one_sided_reorthogonalisation_reports_an_upper_bound_of_the_true_residual(shape):
    rng = np.random.default_rng(11)
    A = _slow_sparse(rng, *shape)
    result = lanczos_svd(A, rank=8, tol=1e-9, basis=20, rng=np.random.default_rng(2))
    assert result.status == Status.CONVERGED_RTOL and result.info["restarts"] >= 1
    U, s, Vt = result.outputs["U"], result.outputs["s"], result.outputs["Vt"]
    assert result.info["reorthogonalized"] == "the shorter basis only (one-sided)"
    assert ("transposed" in result.info) is (shape[0] < shape[1])  # a real wide A runs as A^T
    assert U.shape == (shape[0], 8) and Vt.shape == (8, shape[1])
    pivots = U[np.argmax(np.abs(U), axis=0), np.arange(8)]
    assert np.all(pivots > 0)  # matcli's sign convention, on A's own left vectors
    V = Vt.T
    true = max(np.linalg.norm(A @ V - U * s, axis=0).max(), np.linalg.norm(A.T @ U - V * s, axis=0).max()) / s[0]
    assert true <= result.metrics["max_triplet_residual"] * (1 + 1e-6)
    assert result.metrics["max_triplet_residual"] <= true + 1e-12  # the defect is rounding-sized here
    assert explicit_residuals(A, U, s, Vt) <= 2e-9
    assert result.metrics["orthogonality_loss"] < 1e-12
    s_ref = np.linalg.svd(A.toarray(), compute_uv=False)[:8]
    assert np.all(relative_errors(s, s_ref) <= 1e-9 + 50 * EPS * s_ref[0] / s_ref)


@pytest.mark.parametrize("forced", ["refine", "explicit_adjoint"])
def test_one_sided_fallbacks_give_measured_certificates(monkeypatch, forced):
    from matcli.methods.factorize import gkl

    monkeypatch.setattr(gkl, "_REFINE_LOSS" if forced == "refine" else "_DEFECT_SHARE", -1.0)
    rng = np.random.default_rng(12)
    A = _slow_sparse(rng)
    result = lanczos_svd(A, rank=8, tol=1e-9, basis=20, rng=np.random.default_rng(2))
    assert result.status == Status.CONVERGED_RTOL
    assert result.info["u_rebuilt_from_AV"] is (forced == "refine")
    assert result.info["left_residuals"] == "A^H U formed"
    U, s, Vt = result.outputs["U"], result.outputs["s"], result.outputs["Vt"]
    V = Vt.T
    true = max(np.linalg.norm(A @ V - U * s, axis=0).max(), np.linalg.norm(A.T @ U - V * s, axis=0).max()) / s[0]
    assert result.metrics["max_triplet_residual"] == pytest.approx(true, rel=1e-6)
    assert explicit_residuals(A, U, s, Vt) <= 2e-9
    assert result.metrics["orthogonality_loss"] < 1e-12
    s_ref = np.linalg.svd(A.toarray(), compute_uv=False)[:8]
    assert np.all(relative_errors(s, s_ref) <= 1e-9 + 50 * EPS * s_ref[0] / s_ref)
