"""csr_facts (auto's exact structural tests on CSR arrays) against the general routines and constructions."""

import numpy as np
import pytest
import scipy.sparse as sp

from matcli.methods.solve import auto, csr_facts, spectrum


def catalogue():
    """Square sparse matrices of every kind auto meets: symmetric, nearly symmetric, nonsymmetric,
    complex Hermitian and complex symmetric, duplicates, explicit zeros, empty rows."""
    rng = np.random.default_rng(7)
    out = []
    for k in range(12):
        B = sp.random(40, 40, density=0.15, random_state=k, format="csr")
        S = (B + B.T).tocsr()
        out += [("nonsymmetric", B), ("symmetric", S)]
        near = S.copy()
        near.data[rng.integers(near.nnz)] *= 1 + 1e-13 * (k + 1)  # tiny one-sided asymmetry
        out.append(("nearly symmetric", near))
        Z = sp.random(40, 40, density=0.1, random_state=100 + k, format="csr") * 1j + B
        out += [("complex", Z.tocsr()), ("complex Hermitian", (Z + Z.conj().T).tocsr()),
                ("complex symmetric", (Z + Z.T).tocsr())]
        dup = sp.csr_matrix((np.repeat(S.data / 2, 2), np.repeat(S.indices, 2), 2 * S.indptr), shape=S.shape)
        assert not dup.has_canonical_format
        out.append(("duplicates", dup))
        one_sided = S.copy()
        one_sided.data[0] = 0.0
        one_sided.eliminate_zeros()  # an entry on one side of the diagonal only
        out.append(("one-sided", one_sided))
    return out


@pytest.mark.parametrize("kind,A", catalogue())
def test_symmetry_is_spectrum_symmetry_error(kind, A):
    got = csr_facts.symmetry(csr_facts.canonical(A))
    assert got.error == pytest.approx(spectrum.symmetry_error(A), rel=1e-12, abs=0)
    if kind in ("symmetric", "complex Hermitian", "duplicates"):
        assert got.error == 0.0 and got.pattern_symmetric
    if kind == "nearly symmetric":
        assert 0 < got.error < auto.SYMMETRY_TOL  # still Hermitian for auto, as before
    if kind == "explicit zero":
        assert not got.pattern_symmetric


def test_canonical_never_modifies_its_argument():
    A = sp.csr_matrix((np.array([1.0, 2.0, 3.0]), np.array([1, 0, 0]), np.array([0, 3, 3])), shape=(2, 2))
    before = (A.indptr.copy(), A.indices.copy(), A.data.copy())
    C = csr_facts.canonical(A)
    assert C is not A and C.has_canonical_format
    np.testing.assert_array_equal(C.toarray(), [[5.0, 1.0], [0.0, 0.0]])
    for old, new in zip(before, (A.indptr, A.indices, A.data)):
        np.testing.assert_array_equal(old, new)
    assert csr_facts.canonical(C) is C


def laplacian_1d(n, neumann=False):
    L = sp.diags([-np.ones(n - 1), 2 * np.ones(n), -np.ones(n - 1)], [-1, 0, 1], format="csr")
    if neumann:
        L = L.tolil()
        L[0, 0] = L[n - 1, n - 1] = 1.0
        L = L.tocsr()
    return L


@pytest.mark.parametrize("build", [
    lambda: laplacian_1d(9),  # Dirichlet: strict rows at both ends, irreducible -> definite
    lambda: laplacian_1d(9, neumann=True),  # no strict row: singular, not claimed
    lambda: sp.block_diag([laplacian_1d(5), laplacian_1d(4, neumann=True)]).tocsr(),  # one block without
    lambda: sp.block_diag([laplacian_1d(5), laplacian_1d(4, neumann=True) + 0.5 * sp.eye(4)]).tocsr(),
    lambda: sp.eye(6, format="csr") * 3.0,  # all strict
    lambda: laplacian_1d(6) + 0.9 * sp.eye(6, k=3) + 0.9 * sp.eye(6, k=-3),  # not dominant
    lambda: laplacian_1d(6) - 3 * sp.eye(6),  # negative diagonal
])
@pytest.mark.parametrize("pattern_symmetric", [True, False])
def test_gershgorin_matches_spectrum(build, pattern_symmetric):
    A = sp.csr_matrix(build())
    C = csr_facts.canonical(A)
    got = csr_facts.gershgorin_positive(C, C.diagonal(), pattern_symmetric)
    assert got == spectrum.gershgorin_positive(A)


def test_components_of_a_symmetric_pattern_match_scipy():
    from scipy.sparse.csgraph import connected_components

    A = sp.block_diag([laplacian_1d(5), sp.csr_matrix((1, 1)), laplacian_1d(3), laplacian_1d(2)]).tocsr()
    count, labels = csr_facts.components(A, True)
    ref_count, ref_labels = connected_components(A, directed=False)
    assert count == ref_count == 4
    # same partition (labels may be numbered differently)
    pairs = set(zip(labels.tolist(), ref_labels.tolist()))
    assert len(pairs) == count


def test_auto_decisions_unchanged_on_the_catalogue():
    """What auto reports and decides equals the general routines' facts on every catalogue matrix."""
    rng = np.random.default_rng(0)
    for kind, A in catalogue():
        facts = auto.inspect(A)
        err = spectrum.symmetry_error(A)
        assert facts.hermitian == (err <= auto.SYMMETRY_TOL), kind
        d = spectrum.diagonal(A)
        assert facts.positive_diagonal == bool(np.all(np.imag(d) == 0) and np.all(np.real(d) > 0)), kind
        if facts.hermitian and facts.positive_diagonal:
            assert ("Gershgorin" in auto.definiteness(A, facts, rng)) == spectrum.gershgorin_positive(A), kind


def test_named_method_and_preconditioner_skip_the_m_matrix_test():
    L = laplacian_1d(20)
    assert auto.inspect(L).m_matrix_like
    assert not auto.inspect(L, choosing=False).m_matrix_like  # not computed: only choose_precond reads it
    assert auto.inspect(L, choosing=False).hermitian
