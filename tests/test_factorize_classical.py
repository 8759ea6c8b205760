"""Dense QR/LU/Cholesky/LDL^T/eig and sparse LU/Cholesky/ARPACK eig against numpy/scipy on small
and real matrices."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from matcli.core.result import Status
from matcli.methods.factorize import dense, sparse
from tests.conftest import data_file

EPS = np.finfo(float).eps


def read(relative):
    from matcli.io.load import read_matrix

    return read_matrix(str(data_file(relative)))


def spd(n, cond, rng):
    Q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    return (Q * np.geomspace(1, 1 / cond, n)) @ Q.T


@pytest.mark.parametrize("shape", [(40, 25), (25, 40), (30, 30)])
def test_qr_with_pivoting(shape):
    rng = np.random.default_rng(0)
    A = rng.standard_normal(shape)
    res = dense.qr(A)
    Q, R, P = res.outputs["Q"], res.outputs["R"], res.outputs["P"]
    k = min(shape)
    assert Q.shape == (shape[0], k) and R.shape == (k, shape[1])
    assert np.allclose(np.tril(R, -1), 0)
    diag = np.abs(np.diag(R))
    assert np.all(diag[:-1] >= diag[1:] * (1 - 1e-12))
    bound = 10 * max(shape) * EPS
    assert np.linalg.norm(A[:, P] - Q @ R) / np.linalg.norm(A) <= bound
    assert res.metrics["reconstruction_error"] <= bound
    assert res.metrics["orthogonality_loss"] <= bound
    assert res.metrics["numerical_rank"] == k


def test_qr_rank_deficient_numerical_rank():
    rng = np.random.default_rng(1)
    A = rng.standard_normal((50, 4)) @ rng.standard_normal((4, 30))
    assert dense.qr(A).metrics["numerical_rank"] == 4


def test_dense_lu_rectangular_and_singular():
    rng = np.random.default_rng(2)
    A = rng.standard_normal((30, 20))
    res = dense.lu(A)
    L, U, P = res.outputs["L"], res.outputs["U"], res.outputs["P"]
    assert np.allclose(np.diag(L), 1) and np.allclose(np.triu(L, 1), 0) and np.allclose(np.tril(U, -1), 0)
    assert np.linalg.norm(A[P] - L @ U) / np.linalg.norm(A) <= 10 * 30 * EPS
    singular = np.array([[1.0, 2.0], [2.0, 4.0]])
    assert dense.lu(singular).status is Status.DIVERGED_SINGULAR


def test_dense_cholesky_matches_numpy_and_detects_indefinite():
    rng = np.random.default_rng(3)
    A = spd(40, 1e6, rng)
    res = dense.cholesky(A)
    np.testing.assert_allclose(res.outputs["L"], np.linalg.cholesky(A), atol=1e3 * EPS)
    assert res.metrics["reconstruction_error"] <= 10 * 40 * EPS
    indefinite = A - 2 * np.eye(40) * 1e-3
    bad = dense.cholesky(indefinite)
    assert bad.status is Status.DIVERGED_NOT_SPD and not bad.outputs


def test_ldl_inertia_on_real_indefinite_matrix(shared_data):
    A = read("matrices/hangGlider_2.mtx")
    res = dense.ldl(A)
    dense_A = A.toarray()
    L, D, P = res.outputs["L"], res.outputs["D"], res.outputs["P"]
    assert np.allclose(np.triu(L[P], 1), 0)
    assert np.linalg.norm(dense_A - L @ D @ L.T) / np.linalg.norm(dense_A) <= 1e-12
    assert res.metrics["negative_eigenvalues"] == 733  # MANIFEST: 733 negative eigenvalues


def test_eig_symmetric_and_general():
    rng = np.random.default_rng(4)
    S = rng.standard_normal((30, 30))
    S = S + S.T
    res = dense.eig(S, hermitian=True)
    np.testing.assert_allclose(res.outputs["w"], np.linalg.eigvalsh(S), atol=100 * EPS * np.abs(S).sum())
    assert res.metrics["orthogonality_loss"] <= 1e3 * EPS and res.metrics["residual"] <= 1e3 * EPS
    G = rng.standard_normal((30, 30))
    res = dense.eig(G, hermitian=False)
    ref = np.linalg.eigvals(G)
    np.testing.assert_allclose(np.sort_complex(res.outputs["w"]), np.sort_complex(ref), atol=1e-10)
    assert res.metrics["residual"] <= 1e3 * EPS
    assert res.metrics["reconstruction_error"] <= 1e3 * EPS * res.metrics["eigenvector_condition"]


def test_sparse_lu_on_real_unsymmetric_matrix(shared_data):
    A = read("matrices/sherman5.mtx")
    res = sparse.lu_sparse(A)
    L, U, P, Q = (res.outputs[k] for k in ("L", "U", "P", "Q"))
    assert sp.issparse(L) and sp.issparse(U)
    assert sp.triu(L, 1).nnz == 0 and sp.tril(U, -1).nnz == 0
    diff = A.tocsr()[P][:, Q] - L @ U
    # cond1 ~ 3.9e5 (MANIFEST); LU is backward stable: error ~ growth * n * eps, not cond-dependent
    assert abs(diff).max() / abs(A).max() <= 1e-12
    assert res.metrics["reconstruction_error"] <= 1e-13


def test_sparse_cholesky_matches_dense_cholesky_of_permuted_matrix(shared_data):
    A = read("matrices/494_bus.mtx")
    res = sparse.cholesky_sparse(A)
    assert res.status is Status.CONVERGED_DIRECT
    L, P = res.outputs["L"], res.outputs["P"]
    assert sp.triu(L, 1).nnz == 0 and np.all(L.diagonal() > 0)
    ref = np.linalg.cholesky(A.toarray()[np.ix_(P, P)])
    # cond2 = 2.4e6: forward error of the factor ~ cond * eps relative
    np.testing.assert_allclose(L.toarray(), ref, atol=2.4e6 * EPS * np.abs(ref).max() * 10)
    assert res.metrics["reconstruction_error"] <= 1e-14


def test_sparse_cholesky_rejects_indefinite(shared_data):
    res = sparse.cholesky_sparse(read("matrices/hangGlider_2.mtx"))
    assert res.status is Status.DIVERGED_NOT_SPD and not res.outputs


def test_arpack_eig_symmetric_and_general(shared_data):
    rng = np.random.default_rng(5)
    A = read("matrices/494_bus.mtx")
    res = sparse.eig_arpack(A, rank=4, hermitian=True, which="LA", rng=rng)
    ref = np.linalg.eigvalsh(A.toarray())[::-1][:4]
    np.testing.assert_allclose(res.outputs["w"], ref, rtol=1e-10)
    B = read("matrices/west0479.mtx")
    res = sparse.eig_arpack(B, rank=3, hermitian=False, which="LM", rng=rng)
    ref = np.linalg.eigvals(B.toarray())
    ref = ref[np.argsort(-np.abs(ref))][:3]
    np.testing.assert_allclose(np.abs(res.outputs["w"]), np.abs(ref), rtol=1e-8)
    assert res.metrics["residual"] <= 1e-10


# ------------------------------------------------------------------------------ #17: certificates
def test_factorizations_report_factorization_residual():
    rng = np.random.default_rng(3)
    A = rng.standard_normal((30, 30))
    S = spd(30, 1e3, rng)
    for result, product in ((dense.qr(A), None), (dense.lu(A), None), (dense.cholesky(S), None), (dense.ldl(S), None),
                            (sparse.lu_sparse(sp.csc_matrix(A)), None), (sparse.cholesky_sparse(sp.csc_matrix(S)), None)):
        assert 0 <= result.metrics["factorization_residual"] <= 60 * 30 * EPS
        assert result.metrics["factorization_residual"] == result.metrics["reconstruction_error"]


def test_factorization_residual_of_a_zero_matrix_is_absolute():
    result = dense.qr(np.zeros((4, 3)))
    assert result.metrics["factorization_residual"] == 0.0
    assert result.info["reconstruction_error_method"] == "exact, absolute (A = 0)"


def test_eigen_residual_relative_to_the_largest_eigenvalue():
    rng = np.random.default_rng(4)
    A = spd(40, 1e6, rng) * 1e-8
    for result in (dense.eig(A, hermitian=True), dense.eig(A, hermitian=False),
                   sparse.eig_arpack(sp.csr_matrix(A), rank=4, hermitian=True, rng=rng)):
        assert result.metrics["max_eigen_residual"] < 100 * 40 * EPS
    # the definition on pairs with known residuals |delta_i|: max |delta| / max |w|, scale-free
    from matcli.methods.factorize.metrics import eigen_metrics

    d = np.array([4.0, -2.0, 1.0]) * 1e-8
    delta = np.array([1e-12, -3e-12, 2e-12])
    metrics, info = eigen_metrics(np.diag(d), d + delta, np.eye(3), hermitian=True)
    assert metrics["max_eigen_residual"] == pytest.approx(3e-12 / np.max(np.abs(d + delta)), rel=1e-12)
    assert metrics["orthogonality_loss"] == 0.0 and info["eigen_residual_scale"] == "largest computed value"


def test_hermitian_eigenvectors_are_orthonormal_to_lapack_accuracy():
    # scipy's default MRRR driver (syevr) reached ||I - V V^T||_1 = 88 n eps (LAPACK's sep threshold:
    # 60) on this 10x10 matrix with condition 1/sqrt(eps); divide and conquer stays near 2
    rng = np.random.default_rng([10, 1, 0])
    Q, _ = np.linalg.qr(rng.standard_normal((10, 10)))
    w = np.sqrt(0.1 / EPS) ** (-np.arange(10) / 9) * np.where(np.arange(10) % 2, -1.0, 1.0)
    A = (Q * w) @ Q.T
    A = (A + A.T) / 2
    V = dense.eig(A, hermitian=True).outputs["V"]
    assert np.linalg.norm(np.eye(10) - V @ V.T, 1) / (10 * EPS / 2) < 60


def test_sparse_cholesky_is_backward_stable_on_plat362():
    # SuperLU's L D L^T of plat362 (pivots down to 6e-9 of the largest) gave ||A - L L^T||_1 =
    # 98.6 n eps ||A||_1 > LAPACK's 30: refactored densely on the same ordering, same fill
    A = sp.csr_matrix(read("matrices/plat362.mtx"))
    result = sparse.cholesky_sparse(A)
    assert result.status == Status.CONVERGED_DIRECT and "refactored" in result.info
    L, P = result.outputs["L"], result.outputs["P"]
    n = A.shape[0]
    ratio = abs(A[P][:, P] - L @ L.T).sum(axis=0).max() / (n * abs(A).sum(axis=0).max() * EPS / 2)
    assert ratio < 30
    assert sp.tril(L).nnz == L.nnz


def test_sparse_cholesky_of_a_complex_hermitian_matrix():
    # every complex HPD matrix was refused: SuperLU's pivots carry rounding-size imaginary parts
    rng = np.random.default_rng(5)
    G = rng.standard_normal((20, 20)) + 1j * rng.standard_normal((20, 20))
    A = G @ G.conj().T + 20 * np.eye(20)
    result = sparse.cholesky_sparse(sp.csc_matrix(A))
    assert result.status == Status.CONVERGED_DIRECT, result.message
    L, P = result.outputs["L"], result.outputs["P"]
    np.testing.assert_allclose((L @ L.conj().T).toarray(), A[P][:, P], atol=1e-12 * np.abs(A).max())
    indefinite = A - 200 * np.eye(20)
    assert sparse.cholesky_sparse(sp.csc_matrix(indefinite)).status == Status.DIVERGED_NOT_SPD


def test_sparse_factorization_residual_is_estimated_when_forming_the_product_is_expensive(monkeypatch):
    # forming L U costs as much as the factorization: above EXACT_PRODUCT_FLOPS the residual comes
    # from 16 Gaussian probes (relative spread ~ sqrt(2/16)), and info says so
    A = sp.csr_matrix(read("matrices/494_bus.mtx"))
    exact = {"lu": sparse.lu_sparse(A), "cholesky": sparse.cholesky_sparse(A)}
    monkeypatch.setattr(sparse, "EXACT_PRODUCT_FLOPS", 0)
    for name, kernel in (("lu", sparse.lu_sparse), ("cholesky", sparse.cholesky_sparse)):
        estimated = kernel(A, rng=np.random.default_rng(0))
        assert estimated.info["reconstruction_error_method"].startswith("randomized estimate")
        assert exact[name].info["reconstruction_error_method"] == "exact"
        # at rounding level the estimate also measures the rounding of its own products with the probes
        assert estimated.metrics["factorization_residual"] <= 60 * A.shape[0] * EPS
    # a residual well above rounding: the estimator against the exact value
    rng = np.random.default_rng(1)
    E = sp.random(300, 300, density=0.05, random_state=rng, format="csr") * 1e-3
    left = sp.csc_matrix(sp.random(300, 300, density=0.02, random_state=rng)) + sp.eye(300)
    right = sp.csr_matrix(sp.random(300, 300, density=0.02, random_state=rng)) + sp.eye(300)
    target = sp.csr_matrix(left @ right + E)
    metrics, _ = sparse._estimated_residual_metrics(target, left, right, rng)
    truth = sparse.frobenius_norm(E) / sparse.frobenius_norm(target)
    assert abs(metrics["factorization_residual"] / truth - 1) < 3 * np.sqrt(2 / 16)
