"""Sparse times dense block through MKL (when installed) against scipy's product."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from matcli.methods.solve import sparse_blas
from matcli.methods.solve.sparse_blas import BlockProduct


def bound(A, X, dtype) -> np.ndarray:
    """Rounding bound of a sum of products: (row length) eps |A| |X| entrywise."""
    row_len = np.diff(A.indptr).max(initial=1)
    return row_len * np.finfo(dtype).eps * (abs(A) @ np.abs(X)) + np.finfo(dtype).tiny


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(300, 300), (500, 120), (80, 400)])
def test_product_matches_scipy(dtype, shape):
    A = sp.random(*shape, density=0.03, random_state=1, format="csr", dtype=np.float64).astype(dtype)
    A.data[A.indptr[5]:A.indptr[6]] = 0  # an empty row
    A.eliminate_zeros()
    product = BlockProduct(A)
    assert product.backend == ("mkl" if sparse_blas.available() else "scipy")
    X = np.random.default_rng(2).standard_normal((shape[1], 7)).astype(dtype)
    for block in (X, X[:, ::2], np.asfortranarray(X)):
        Y = product(block)
        assert Y.dtype == dtype and Y.flags.c_contiguous
        assert np.all(np.abs(Y - A @ block) <= 2 * bound(A, block, dtype))
    out = np.ones((shape[0], 7), dtype=dtype)
    assert product(X, out=out, beta=-2.0) is out
    assert np.all(np.abs(out - (A @ X - 2)) <= 2 * bound(A, X, dtype) + 4 * np.finfo(dtype).eps)


def test_unsorted_and_int64_indices():
    A = sp.random(200, 200, density=0.05, random_state=3, format="csr")
    A.indices = A.indices.astype(np.int64)
    A.indptr = A.indptr.astype(np.int64)
    rows = [A.indices[A.indptr[i]:A.indptr[i + 1]] for i in range(3)]
    for i, r in enumerate(rows):  # reverse the first rows' order
        A.indices[A.indptr[i]:A.indptr[i + 1]] = r[::-1].copy()
        A.data[A.indptr[i]:A.indptr[i + 1]] = A.data[A.indptr[i]:A.indptr[i + 1]][::-1].copy()
    A.has_sorted_indices = False
    X = np.random.default_rng(4).standard_normal((200, 3))
    assert np.all(np.abs(BlockProduct(A)(X) - A @ X) <= 2 * bound(sp.csr_matrix(A), X, np.float64))


@pytest.mark.parametrize("A", [sp.random(50, 50, density=0.1, random_state=5, format="csr") * (1 + 1j),
                               sp.random(50, 50, density=0.1, random_state=5, format="csc"),
                               np.eye(50)])
def test_other_inputs_use_scipy(A):
    product = BlockProduct(A)
    assert product.backend == "scipy"
    X = np.random.default_rng(6).standard_normal((50, 4))
    np.testing.assert_array_equal(product(X), A @ X)


def test_mkl_can_be_switched_off(monkeypatch):
    monkeypatch.setenv("MATCLI_NO_MKL", "1")
    sparse_blas._mkl.cache_clear()
    try:
        assert not sparse_blas.available()
        assert BlockProduct(sp.eye(5, format="csr")).backend == "scipy"
    finally:
        monkeypatch.delenv("MATCLI_NO_MKL")
        sparse_blas._mkl.cache_clear()


@pytest.mark.parametrize("dtype", [np.float64, np.complex128, np.float32])
def test_gram_matches_numpy(dtype):
    rng = np.random.default_rng(7)
    X = rng.standard_normal((5000, 6)).astype(dtype)
    Y = rng.standard_normal((5000, 4)).astype(dtype)
    if np.iscomplexobj(X):
        X = X + 1j * rng.standard_normal(X.shape)
    G = sparse_blas.gram(X, Y)
    reference = X.conj().T @ Y
    assert G.shape == (6, 4) and G.dtype == reference.dtype
    bound = 5000 * np.finfo(dtype).eps * (np.abs(X).T @ np.abs(Y))
    assert np.all(np.abs(G - reference) <= bound)
    np.testing.assert_array_equal(sparse_blas.gram(X[:, :0], Y), np.zeros((0, 4), dtype=reference.dtype))
