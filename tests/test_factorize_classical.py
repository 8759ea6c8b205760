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
