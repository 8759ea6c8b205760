"""NMF (HALS, MU, robust) and CUR kernels on exact constructions and real data."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from matcli.core.result import Status
from matcli.methods.factorize.cur import cur_leverage, cur_pivoted_qr
from matcli.methods.factorize.nmf import initial_factors, nmf_hals, nmf_mu, nmf_robust

EPS = np.finfo(float).eps


def exact_nmf(m, n, k, rng):
    """A = W0 H0 with sparse-ish nonnegative factors (separable enough for NMF to be identifiable)."""
    W0 = rng.random((m, k)) * (rng.random((m, k)) < 0.6)
    H0 = rng.random((k, n)) * (rng.random((k, n)) < 0.6)
    return W0 @ H0


@pytest.mark.parametrize("init", ["nndsvda", "nndsvd", "random"])
def test_initial_factors_are_nonnegative_with_right_shapes(init):
    rng = np.random.default_rng(0)
    A = exact_nmf(30, 20, 3, rng)
    W, H = initial_factors(A, 3, init, rng)
    assert W.shape == (30, 3) and H.shape == (3, 20)
    assert W.min() >= 0 and H.min() >= 0


def test_hals_fits_exact_nonnegative_low_rank():
    rng = np.random.default_rng(1)
    A = exact_nmf(120, 80, 4, rng)
    res = nmf_hals(A, rank=4, tol=1e-10, maxiter=2000, rng=rng)
    W, H = res.outputs["W"], res.outputs["H"]
    assert W.min() >= 0 and H.min() >= 0
    assert res.metrics["reconstruction_error"] <= 1e-3
    assert res.metrics["reconstruction_error"] == pytest.approx(np.linalg.norm(A - W @ H) / np.linalg.norm(A), rel=1e-9)
    history = res.history.get("relative_error") or []
    assert not history  # the kernel reports through the callback, which the runner records


def test_hals_error_is_monotone_and_reported_each_sweep():
    rng = np.random.default_rng(2)
    A = exact_nmf(60, 50, 3, rng) + 0.01 * rng.random((60, 50))
    seen = []
    nmf_hals(A, rank=3, tol=0, maxiter=40, rng=rng, callback=lambda it, **v: seen.append(v["relative_error"]))
    assert len(seen) == 40
    assert np.all(np.diff(seen) <= 1e-12)


def test_mu_decreases_and_stays_nonnegative():
    rng = np.random.default_rng(3)
    A = exact_nmf(80, 60, 3, rng)
    seen = []
    res = nmf_mu(A, rank=3, tol=0, maxiter=300, rng=rng, callback=lambda it, **v: seen.append(v["relative_error"]))
    assert np.all(np.diff(seen) <= 1e-12)  # Lee-Seung updates never increase the loss
    assert res.outputs["W"].min() >= 0 and res.outputs["H"].min() >= 0
    assert res.metrics["reconstruction_error"] <= 0.05
    assert res.status is Status.DIVERGED_MAX_IT


def test_sparse_and_dense_inputs_give_the_same_factors():
    rng = np.random.default_rng(4)
    A = sp.random(200, 150, density=0.05, random_state=3, format="csr")
    dense_res = nmf_hals(A.toarray(), rank=5, maxiter=30, tol=0, rng=np.random.default_rng(9))
    sparse_res = nmf_hals(A, rank=5, maxiter=30, tol=0, rng=np.random.default_rng(9))
    np.testing.assert_allclose(sparse_res.outputs["W"] @ sparse_res.outputs["H"],
                               dense_res.outputs["W"] @ dense_res.outputs["H"], atol=1e-8)


def test_robust_column_nmf_ignores_outlier_columns():
    rng = np.random.default_rng(5)
    A = exact_nmf(100, 120, 3, rng)
    outliers = rng.choice(120, size=6, replace=False)
    corrupted = A.copy()
    corrupted[:, outliers] += 20 * rng.random((100, 6))
    clean = np.setdiff1d(np.arange(120), outliers)
    plain = nmf_hals(corrupted, rank=3, tol=1e-8, maxiter=500, rng=np.random.default_rng(0))
    robust = nmf_robust(corrupted, rank=3, tol=1e-8, maxiter=500, rng=np.random.default_rng(0))

    def clean_error(res):
        WH = res.outputs["W"] @ res.outputs["H"]
        return np.linalg.norm(A[:, clean] - WH[:, clean]) / np.linalg.norm(A[:, clean])

    assert clean_error(robust) < 0.1 * clean_error(plain)
    weights = robust.outputs["weights"]
    assert set(np.flatnonzero(weights < 0.5)) == set(outliers)


def test_robust_entry_nmf_ignores_sparse_gross_errors():
    rng = np.random.default_rng(6)
    A = exact_nmf(60, 50, 2, rng) + 0.1
    mask = rng.random(A.shape) < 0.03
    corrupted = A + mask * 30.0
    plain = nmf_mu(corrupted, rank=2, tol=1e-9, maxiter=800, rng=np.random.default_rng(0))
    robust = nmf_robust(corrupted, rank=2, level="entry", tol=1e-9, maxiter=800, rng=np.random.default_rng(0))

    def clean_error(res):
        WH = res.outputs["W"] @ res.outputs["H"]
        return np.linalg.norm((A - WH)[~mask]) / np.linalg.norm(A[~mask])

    assert clean_error(robust) < 0.2 * clean_error(plain)


def test_nmf_on_movielens_ratings(shared_data):
    from matcli.io.load import read_observed

    obs = read_observed(str(shared_data / "ml-100k" / "u1.base"))
    A = sp.csr_matrix((obs.values, (obs.rows, obs.cols)), shape=obs.shape)
    res = nmf_hals(A, rank=10, maxiter=60, rng=np.random.default_rng(0))
    svd_tail = np.linalg.svd(A.toarray(), compute_uv=False)
    optimal = np.sqrt(np.sum(svd_tail[10:] ** 2) / np.sum(svd_tail**2))
    err = res.metrics["reconstruction_error"]
    assert optimal <= err <= 1.1 * optimal  # NMF cannot beat the SVD, and gets close on ratings
    assert res.info["reconstruction_error_method"] == "exact"


@pytest.mark.parametrize("kernel", [cur_leverage, cur_pivoted_qr])
@pytest.mark.parametrize("storage", ["dense", "sparse"])
def test_cur_is_exact_on_exactly_low_rank_matrix(kernel, storage):
    rng = np.random.default_rng(7)
    A = rng.standard_normal((90, 5)) @ rng.standard_normal((5, 70))
    A = sp.csr_matrix(A) if storage == "sparse" else A
    res = kernel(A, rank=5, rng=rng)
    C, U, R = res.outputs["C"], res.outputs["U"], res.outputs["R"]
    cols, rows = res.outputs["col_indices"], res.outputs["row_indices"]
    assert sp.issparse(C) == (storage == "sparse") and sp.issparse(R) == (storage == "sparse")
    dense_A = A.toarray() if storage == "sparse" else A
    Cd = C.toarray() if sp.issparse(C) else C
    Rd = R.toarray() if sp.issparse(R) else R
    np.testing.assert_array_equal(Cd, dense_A[:, cols])
    np.testing.assert_array_equal(Rd, dense_A[rows])
    assert np.linalg.norm(dense_A - Cd @ U @ Rd) / np.linalg.norm(dense_A) <= 1e-10
    assert res.metrics["reconstruction_error"] <= 1e-10


def test_pivoted_qr_cur_is_close_to_svd_on_decaying_spectrum():
    rng = np.random.default_rng(8)
    U0, _ = np.linalg.qr(rng.standard_normal((200, 60)))
    V0, _ = np.linalg.qr(rng.standard_normal((150, 60)))
    A = (U0 * 0.7 ** np.arange(60)) @ V0.T
    res = cur_pivoted_qr(A, rank=10, rng=rng)
    # DEIM-type CUR error bound: within a modest factor of the optimal rank-k error
    assert res.metrics["error_ratio_to_svd"] <= 20
    leverage = cur_leverage(A, rank=10, extra=10, rng=rng)
    assert leverage.outputs["C"].shape == (200, 20)
    assert leverage.metrics["reconstruction_error"] <= 20 * res.metrics["svd_error"]


def test_cur_rank_auto_uses_tolerance():
    rng = np.random.default_rng(9)
    U0, _ = np.linalg.qr(rng.standard_normal((120, 50)))
    V0, _ = np.linalg.qr(rng.standard_normal((100, 50)))
    A = (U0 * 0.6 ** np.arange(50)) @ V0.T
    res = cur_pivoted_qr(A, rank=None, tol=1e-3, rng=rng)
    assert res.metrics["svd_error"] <= 1e-3
    assert res.metrics["reconstruction_error"] <= 1e-1


def test_zero_matrix_error_is_the_absolute_residual_not_inf():
    """Relative to ||A|| = 0 the error is undefined; the metric was "inf" (||W|| ||H|| > 0) for factors
    whose product is ~1e-32. It is now ||W H||_F, exact by the Gram expansion."""
    from matcli.methods.factorize.metrics import low_rank_error

    W = np.array([[1.0, 0.0], [0.0, 0.0]])
    H = np.array([[0.0, 0.0], [0.0, 3.0]])  # W H = 0 although both factors are nonzero
    error, how = low_rank_error(np.zeros((2, 2)), W, H, np.random.default_rng(0))
    assert error == 0.0 and "A = 0" in how
    error, _ = low_rank_error(np.zeros((2, 2)), W, np.eye(2), np.random.default_rng(0))
    assert error == pytest.approx(1.0)


# ------------------------------------------------------------------------------ #17: rank > min(m, n)
@pytest.mark.parametrize("kernel", [nmf_hals, nmf_mu, nmf_robust])
def test_rank_above_the_smaller_dimension_starts_from_random_factors(kernel):
    # nndsvd has only min(m, n) singular triplets: it returned W with 5 columns for rank 7
    A = np.abs(np.random.default_rng(0).standard_normal((6, 5)))
    result = kernel(A, rank=7, rng=np.random.default_rng(0))
    assert result.outputs["W"].shape == (6, 7) and result.outputs["H"].shape == (7, 5)
    assert result.info["init"] == "random"
    with pytest.raises(ValueError, match="min"):
        kernel(A, rank=7, init="nndsvd", rng=np.random.default_rng(0))


def test_robust_weighted_error_of_a_zero_matrix_is_absolute():
    # was 5.7e122 (a tiny product divided by the floor of ||A||)
    result = nmf_robust(np.zeros((6, 5)), rank=2, rng=np.random.default_rng(0))
    assert result.metrics["weighted_error"] <= 1e-12
