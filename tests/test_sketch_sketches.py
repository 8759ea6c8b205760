"""Sketching operators: structure, linearity, streaming consistency, subspace embedding."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from matcli.methods.sketch.sketches import (SKETCH_KINDS, STREAMABLE_KINDS, leverage_probabilities, make_sketch,
                                            sampling_sketch, sparse_sign)


def orthonormal(m: int, n: int, rng: np.random.Generator, coherent: int = 0) -> np.ndarray:
    """m x n orthonormal basis; ``coherent`` columns are unit vectors (rows of leverage 1)."""
    Q, _ = np.linalg.qr(rng.standard_normal((m, n)))
    if coherent:
        Q[:, :coherent] = 0.0
        Q[np.arange(coherent), np.arange(coherent)] = 1.0
        Q, _ = np.linalg.qr(Q)
    return Q


def build(kind: str, m: int, d: int, seed: int, basis: np.ndarray | None = None):
    rng = np.random.default_rng(seed)
    scores = None
    if kind == "leverage":
        scores = (lambda pre: np.einsum("ij,ij->i", basis, basis)) if basis is not None else (lambda pre: np.ones(m))
    return make_sketch(kind, m, d, rng, zeta=4, row_scores=scores)


@pytest.mark.parametrize("kind", SKETCH_KINDS)
def test_sketch_is_one_linear_map_for_matrices_vectors_and_sparse(kind):
    rng = np.random.default_rng(0)
    m, n, d = 3000, 7, 200
    A = rng.standard_normal((m, n))
    x = rng.standard_normal(n)
    S = build(kind, m, d, 1)
    SA = S.apply(A)
    assert SA.shape == (S.d, n)
    np.testing.assert_allclose(S.apply(A @ x), SA @ x, rtol=1e-12, atol=1e-12 * np.abs(SA).max())
    As = sp.random(m, n, density=0.05, format="csr", random_state=2)
    np.testing.assert_allclose(S.apply(As), S.apply(As.toarray()), rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("kind", STREAMABLE_KINDS)
def test_row_blocks_accumulate_to_the_whole_sketch(kind):
    rng = np.random.default_rng(3)
    m, n, d = 20000, 5, 150
    A = rng.standard_normal((m, n))
    S = build(kind, m, d, 4)
    cuts = [0, 1, 4096, 4096, 8191, 8193, 17000, m]  # with an empty block
    total = sum(S.apply_rows(A[a:b], a) for a, b in zip(cuts[:-1], cuts[1:]))
    np.testing.assert_allclose(total, S.apply(A), rtol=1e-12, atol=1e-12 * np.abs(total).max())


@pytest.mark.parametrize("kind", SKETCH_KINDS)
def test_apply_pair_is_the_sketch_of_each(kind):
    rng = np.random.default_rng(6)
    m, n = 70000, 4  # two generation chunks of the sparse sketches, nine of the Gaussian one
    A, b = rng.standard_normal((m, n)), rng.standard_normal(m)
    S = build(kind, m, 120, 7)
    SA, Sb = S.apply_pair(A, b)
    np.testing.assert_allclose(SA, S.apply(A), rtol=1e-12, atol=1e-12 * np.abs(SA).max())
    np.testing.assert_allclose(Sb, S.apply(b), rtol=1e-12, atol=1e-12 * np.abs(Sb).max())


@pytest.mark.parametrize("kind", ["countsketch", "sparse-sign", "gaussian"])
def test_threaded_sketch_equals_the_serial_one(kind):
    from matcli.threads import thread_limit

    rng = np.random.default_rng(8)
    m = 200_000  # four chunks of the sparse sketches, split over the threads
    A = rng.standard_normal((m, 3))
    S = build(kind, m, 64, 9)
    serial = S.apply(A)
    with thread_limit(3):
        threaded, threaded_b = S.apply_pair(A, A[:, 0])
    # the threads' partial sums are added in another order: equal up to rounding of m terms
    np.testing.assert_allclose(threaded, serial, rtol=0, atol=1e-12 * np.abs(serial).max() * np.sqrt(m))
    np.testing.assert_allclose(threaded_b, serial[:, 0], rtol=0, atol=1e-12 * np.abs(serial).max() * np.sqrt(m))


@pytest.mark.parametrize("scatter_bytes", [2**25, 16 * 4 * 1000])  # one piece per chunk, or many
@pytest.mark.parametrize("zeta", [1, 4])
def test_sparse_sign_of_sparse_rows_equals_the_explicit_product(zeta, scatter_bytes, monkeypatch):
    from matcli.methods.sketch import sketches

    monkeypatch.setattr(sketches, "SCATTER_BYTES", scatter_bytes)
    rng = np.random.default_rng(22)
    m, n = 140_000, 6  # three generation chunks
    A = sp.diags((np.arange(m) % 7 != 0).astype(float)) @ sp.random(m, n, density=0.3, format="csr",
                                                                       random_state=rng)
    A = A.tocsr()
    A.eliminate_zeros()  # every 7th row empty
    # every entry stored twice with half its value: duplicates, which CSR consumers sum
    A = sp.csr_matrix((np.repeat(A.data, 2) / 2, np.repeat(A.indices, 2), 2 * A.indptr), shape=(m, n))
    S = sparse_sign(m, 40, zeta, np.random.default_rng(23))
    reference = S.matrix @ A.toarray()
    np.testing.assert_allclose(S.apply(A), reference, rtol=1e-12, atol=1e-12 * np.abs(reference).max())
    cuts = [0, 65000, 65537, 131072, m]
    total = sum(S.apply_rows(A[a:b], a) for a, b in zip(cuts[:-1], cuts[1:]))
    np.testing.assert_allclose(total, reference, rtol=1e-12, atol=1e-12 * np.abs(reference).max())


def test_sparse_sign_chunks_are_independent_of_row_blocking():
    rng = np.random.default_rng(20)
    m = 150_000  # three generation chunks
    A = rng.standard_normal((m, 3))
    S = sparse_sign(m, 64, 4, np.random.default_rng(21))
    cuts = [0, 65535, 65537, 140000, m]
    total = sum(S.apply_rows(A[a:b], a) for a, b in zip(cuts[:-1], cuts[1:]))
    np.testing.assert_allclose(total, S.matrix @ A, rtol=1e-12, atol=1e-12 * np.abs(total).max())


def test_sparse_sign_has_zeta_distinct_rows_per_column_with_equal_magnitudes():
    S = sparse_sign(5000, 96, 8, np.random.default_rng(5)).matrix
    counts = np.diff(S.indptr)
    assert (counts == 8).all()
    rows = S.indices.reshape(-1, 8)
    assert (np.diff(np.sort(rows, axis=1), axis=1) > 0).all()
    np.testing.assert_allclose(np.abs(S.data), 1 / np.sqrt(8))
    countsketch = sparse_sign(5000, 96, 1, np.random.default_rng(5))
    assert countsketch.kind == "countsketch" and (np.diff(countsketch.matrix.indptr) == 1).all()


def test_srht_with_all_rows_is_orthogonal():
    m, n = 257, 9
    Q = orthonormal(m, n, np.random.default_rng(6))
    S = make_sketch("srht", m, m, np.random.default_rng(7))
    SQ = S.apply(Q)
    np.testing.assert_allclose(SQ.T @ SQ, np.eye(n), atol=50 * m * np.finfo(float).eps)


@pytest.mark.parametrize("kind", SKETCH_KINDS)
@pytest.mark.parametrize("coherent", [0, 5], ids=["incoherent", "coherent"])
def test_subspace_embedding_distortion(kind, coherent):
    """With d = 40 n the singular values of S Q should lie in 1 +- c sqrt(n/d) (c = 3, slack for the
    sparse constructions); heavy rows (coherent bases) must not break any sketch."""
    m, n = 4000, 10
    d = 40 * n
    Q = orthonormal(m, n, np.random.default_rng(8), coherent)
    S = build(kind, m, d, 9, basis=Q)
    s = np.linalg.svd(S.apply(Q), compute_uv=False)
    delta = 3 * np.sqrt(n / d)
    assert s.max() <= 1 + delta and s.min() >= 1 - delta, s


def test_leverage_sampling_keeps_certain_rows_and_is_unbiased():
    rng = np.random.default_rng(10)
    m, d = 1000, 100
    scores = np.ones(m)
    scores[:3] = 1e6
    p = leverage_probabilities(scores)
    S = sampling_sketch(p, d, rng)
    assert set(range(3)) <= set(S.matrix.indices)
    q = np.minimum(1, d * p)
    # diag of E[S^T S] is q_i / q_i = 1: check the weights are exactly 1/sqrt(q_i)
    picked = S.matrix.indices
    np.testing.assert_allclose(S.matrix.data, 1 / np.sqrt(q[picked]))
    sizes = [sampling_sketch(p, d, np.random.default_rng(s)).d for s in range(50)]
    expected = q.sum()
    assert abs(np.mean(sizes) - expected) < 4 * np.sqrt(expected / 50)


@pytest.mark.parametrize("d", [64, 3000])  # one seed per 8192 columns of S, or per 699 (16 MiB)
def test_gaussian_sketch_does_not_depend_on_blocking_and_has_unit_variance(d):
    S = make_sketch("gaussian", 10000, d, np.random.default_rng(11))
    assert S.chunk_columns * d * 8 <= 2**24 or S.chunk_columns == 8192
    e = np.zeros(10000)
    e[9000] = 1.0
    np.testing.assert_array_equal(S.apply_rows(e[8000:], 8000), S.apply(e))
    A = np.random.default_rng(12).standard_normal((10000, 3))
    cuts = [0, 700, 5000, 8191, 10000]
    total = sum(S.apply_rows(A[a:b], a) for a, b in zip(cuts[:-1], cuts[1:]))
    np.testing.assert_allclose(total, S.apply(A), rtol=1e-12, atol=1e-12 * np.abs(total).max())
    I = np.zeros((10000, 500))  # picks 500 columns of S, across the chunks
    I[np.arange(0, 10000, 20), np.arange(500)] = 1.0
    var = (S.apply(I) ** 2).sum(axis=0)  # each column has d entries of variance 1/d
    assert abs(var.mean() - 1.0) < 4 * np.sqrt(2 / d / 500)


def test_unknown_sketch_and_srht_streaming_are_rejected():
    with pytest.raises(ValueError, match="unknown sketch"):
        make_sketch("fourier", 10, 5, np.random.default_rng(0))
    S = make_sketch("srht", 10, 5, np.random.default_rng(0))
    with pytest.raises(ValueError, match="row blocks"):
        S.apply_rows(np.ones((5, 2)), 0)
