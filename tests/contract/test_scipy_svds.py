"""scipy's ``sparse/linalg/_eigen/tests/test_svds.py``, ported to every matcli SVD method.

Each case re-creates scipy's matrix and runs it through ``matcli factorize --kind svd`` with every
method (randomized, block-krylov, lanczos, arpack, propack, dense), dense and sparse storage, and
checks what scipy's ``_check_svds`` checks, with scipy's tolerances: shapes, ``U`` and ``V``
orthonormal (``atol=1e-10`` entrywise), ``U diag(s) V^H`` against ``A`` where the whole SVD is asked,
and the singular values against LAPACK's. The status the user sees must be converged exactly when
these hold.

Cases scipy has that do not apply, and why (the closing note of #17 lists them):

* ``which='SM'`` (smallest singular values; ``test_svds_parameter_k_which`` SM half,
  ``test_small_sigma_sparse``, ``test_small_sigma2``'s ``svds`` call, ``test_svd_linop``'s SM half):
  matcli computes the largest triplets only. ``test_small_sigma2``'s matrix is kept and asked for
  more triplets than its rank instead (the null-space half of that test).
* ``LinearOperator`` inputs, ``v0`` / ``random_state`` / ``ncv`` / ``return_singular_vectors``
  validation: matcli reads matrices from files; the starting vectors come from ``--seed`` (same seed,
  same bytes: the determinism case below).
* ``test_svds_parameter_tol``'s lower bounds (``error > accuracy / 10``) pin scipy's discrete
  convergence steps for ``v0 = ones``; the upper bounds are kept. ``tol = 1``: ``--tol`` must be < 1.
* ARPACK with a complex matrix and ``k = min(m, n) - 1``: scipy skips it (the driver returns at most
  ``N - 2`` pairs); matcli refuses it with exit 2 naming the limit, checked here.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg as sla
import scipy.sparse as sp

from matcli.core.result import Status
from matcli.methods.factorize.tsvd import lanczos_svd

from .factorize_cli import one_blas_thread  # noqa: F401  (autouse fixture: one BLAS thread)
from .factorize_cli import EPS, dense, factorize, orthonormality_error

METHODS = ("randomized", "block-krylov", "lanczos", "arpack", "propack", "dense")
#: Methods whose triplets are computed to a residual tolerance (the randomized ones run a fixed
#: number of power iterations: their accuracy depends on the spectrum, see the sklearn suite).
CERTIFIED = ("lanczos", "arpack", "propack", "dense")


def max_rank(method: str, shape: tuple[int, int], complex_values: bool) -> int:
    """Largest --rank each method accepts (svds' own limits for arpack; lanczos falls back to
    the dense SVD at min(m, n))."""
    k = min(shape)
    if method == "arpack":
        return k - (2 if complex_values else 1)
    return k


def check_svds(A, k: int, run, *, atol: float = 1e-10, rtol: float = 1e-7, whole: bool = False,
               against_svd: bool = True) -> None:
    """scipy's ``_check_svds`` on a matcli run (singular vectors compared up to sign/phase)."""
    assert run.exit_code == 0, run.stderr
    assert run.converged, run.report["status"]
    U, s, Vt = run.arrays["U"], run.arrays["s"], run.arrays["Vt"]
    m, n = A.shape
    assert U.shape == (m, k) and s.shape == (k,) and Vt.shape == (k, n)
    assert orthonormality_error(U) <= atol + rtol
    assert orthonormality_error(Vt.conj().T) <= atol + rtol
    full = dense(A)
    if whole:
        np.testing.assert_allclose((U * s) @ Vt, full, atol=atol, rtol=rtol)
    if against_svd:
        u2, s2, vh2 = np.linalg.svd(full)
        np.testing.assert_allclose(s, s2[:k], atol=atol, rtol=rtol)
        np.testing.assert_allclose(np.abs(U), np.abs(u2[:, :k]), atol=atol, rtol=rtol)
        np.testing.assert_allclose(np.abs(Vt), np.abs(vh2[:k]), atol=atol, rtol=rtol)


# ------------------------------------------------------------------------------ edge cases
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("shape", [(6, 5), (5, 5), (5, 6)])
@pytest.mark.parametrize("dtype", [np.float64, np.complex128])
def test_svd_LM_ones_matrix(tmp_path, method, shape, dtype):
    # rank 1 < k = 3: the two extra triplets are zero singular values with orthonormal vectors
    # (scipy xfails PROPACK here: "does not return orthonormal singular vectors associated with zero
    # singular values"; matcli once returned s = [5.477, 1.039, 0], orthogonality loss 1.41, converged)
    A = np.ones(shape, dtype=dtype)
    run = factorize(tmp_path, A, "--kind", "svd", "-m", method, "--rank", 3)
    check_svds(A, 3, run, whole=True, against_svd=False)
    s = run.arrays["s"]
    np.testing.assert_allclose(np.max(s), np.sqrt(A.size))
    np.testing.assert_allclose(np.sort(s)[:-1] + 1, np.ones(2))
    assert run.metrics["orthogonality_loss"] < 1e-10 and run.metrics["max_triplet_residual"] < 1e-10


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("shape", [(3, 4), (4, 4), (4, 3), (4, 2)])
@pytest.mark.parametrize("dtype", [np.float64, np.complex128])
def test_svd_LM_zeros_matrix(tmp_path, method, shape, dtype):
    A = np.zeros(shape, dtype=dtype)
    # both storages: the real case dense, the complex one sparse (an empty sparse matrix)
    stored = sp.csr_matrix(A) if np.iscomplexobj(A) else A
    run = factorize(tmp_path, stored, "--kind", "svd", "-m", method, "--rank", 1)
    if 1 > max_rank(method, shape, np.iscomplexobj(A)):
        # scipy skips this case (ARPACK, complex, k = min(m, n) - 1); matcli says why, exit 2
        assert run.exit_code == 2 and "--rank <= 0" in run.stderr
        return
    check_svds(A, 1, run, whole=True, against_svd=False)
    np.testing.assert_array_equal(run.arrays["s"], 0)


@pytest.mark.parametrize("method", ["block-krylov", "propack", "arpack", "lanczos"])
@pytest.mark.parametrize("rank", [3, 10])
def test_block_krylov_and_lanczos_return_every_requested_triplet(tmp_path, method, rank):
    # #17: block Krylov returned 1 triplet for --rank 3 on the ones matrix and 0 for --rank 10 on a
    # zero matrix, exit 0; PROPACK on a zero matrix returned Vt = 0, converged
    for A in (np.ones((12, 11)), np.zeros((12, 11))):
        run = factorize(tmp_path, A, "--kind", "svd", "-m", method, "--rank", rank, strict=True)
        assert run.exit_code == 0, run.stderr
        U, s, Vt = run.arrays["U"], run.arrays["s"], run.arrays["Vt"]
        assert s.shape == (rank,) and U.shape == (12, rank) and Vt.shape == (rank, 11)
        assert orthonormality_error(U) < 1e-12 and orthonormality_error(Vt.T) < 1e-12
        np.testing.assert_allclose((U * s) @ Vt, A, atol=1e-12)
        assert run.metrics["max_triplet_residual"] <= 1e-12


# ------------------------------------------------------------------------------ accuracy
A1 = np.array([[1, 2, 3], [3, 4, 3], [1 + 1j, 0, 2], [0, 0, 1]])
A2 = np.array([[1, 2, 3, 8 + 5j], [3 - 2j, 4, 3, 5], [1, 0, 2, 3], [0, 0, 1, 0]])


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("which", ["A1", "A2"])
@pytest.mark.parametrize("real", [True, False])
@pytest.mark.parametrize("transpose", [False, True])
def test_svd_simple(tmp_path, method, which, real, transpose):
    base = {"A1": A1, "A2": A2}[which]
    A = np.real(base) if real else base
    A = A.T if transpose else A
    for k in range(1, 5):
        if k > min(A.shape):
            continue
        # scipy's own lo_type axis: dense and sparse storage alternate over k
        stored = sp.csc_matrix(A) if k % 2 else A
        run = factorize(tmp_path, stored, "--kind", "svd", "-m", method, "--rank", k)
        if k > max_rank(method, A.shape, not real):
            assert run.exit_code == 2 and f"--rank <= {max_rank(method, A.shape, not real)}" in run.stderr
            continue
        # (the randomized methods' basis of min(k + 10, min(m, n)) columns is the whole range of
        # these 3- and 4-column matrices: their Rayleigh-Ritz triplets are exact too)
        check_svds(A, k, run, atol=3e-10)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("n, m, k", [(6, 7, 3), (9, 5, 4), (10, 8, 5)])
def test_svd_linop_matrices(tmp_path, method, n, m, k):
    # test_svd_linop's matrices (the LinearOperator wrapper does not apply): RandomState(52) normal,
    # and the complex RandomState(1648) ones where k < min(n, m) - 1, scipy's rtol 1e-7 for complex128
    A = np.random.RandomState(52).randn(n, m)
    check_svds(A, k, factorize(tmp_path, A, "--kind", "svd", "-m", method, "--rank", k), atol=1e-10)
    if k < min(n, m) - 1:
        rng = np.random.RandomState(1648)
        C = rng.randn(n, m) + 1j * rng.randn(n, m)
        check_svds(C, k, factorize(tmp_path, C, "--kind", "svd", "-m", method, "--rank", k), atol=1e-10)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("k", [3, 5])
def test_svds_parameter_k(tmp_path, method, k):
    A = np.random.default_rng(0).random((10, 10))
    run = factorize(tmp_path, A, "--kind", "svd", "-m", method, "--rank", k)
    check_svds(A, k, run, atol=8e-10)


@pytest.mark.parametrize("method", CERTIFIED)
def test_svd_maxiter(tmp_path, method):
    # the default iteration budget reaches scipy's accuracy on hilbert(6)
    A = sla.hilbert(6)
    check_svds(A, 1, factorize(tmp_path, A, "--kind", "svd", "-m", method, "--rank", 1))


def test_svd_maxiter_too_small_is_a_negative_status(tmp_path):
    # scipy: ARPACK ncv=3 maxiter=1 raises ArpackNoConvergence, PROPACK maxiter=1 LinAlgError.
    # matcli's Lanczos with --maxiter 1 (one step) must not claim convergence (exit 3 under --strict)
    A = sla.hilbert(6)
    run = factorize(tmp_path, A, "--kind", "svd", "-m", "lanczos", "--rank", 1, "--maxiter", 1, strict=True)
    assert run.exit_code == 3 and not run.converged


@pytest.mark.parametrize("method", METHODS)
def test_same_seed_same_triplets(tmp_path, method):
    # scipy's test_svd_v0 / test_svd_random_state: the same start gives the same (accurate) result
    A = np.random.default_rng(0).random((30, 20))
    first = factorize(tmp_path, A, "--kind", "svd", "-m", method, "--rank", 1, seed=5)
    second = factorize(tmp_path, A, "--kind", "svd", "-m", method, "--rank", 1, seed=5)
    for name in ("U", "s", "Vt"):
        np.testing.assert_array_equal(first.arrays[name], second.arrays[name])
    check_svds(A, 1, first)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("shape", [(20, 20), (20, 21), (21, 20)])
@pytest.mark.parametrize("dtype", [np.float64, np.complex128, np.float32])
def test_small_sigma(tmp_path, method, shape, dtype):
    # singular values 100^-i (10^-i for float32): the 4 largest, every one > 0, scipy's
    # _check_svds_n with atol 1e-3 (mean absolute orthogonality error and residual)
    rng = np.random.default_rng(179847540)
    A = rng.random(shape).astype(dtype)
    u, _, vh = sla.svd(A, full_matrices=False)
    e = 10.0 if dtype == np.float32 else 100.0
    A = ((u * e ** (-np.arange(len(vh))).astype(dtype)) @ vh).astype(dtype)
    k = 4
    run = factorize(tmp_path, A, "--kind", "svd", "-m", method, "--rank", k, *_maxiter(method, 100))
    assert run.exit_code == 0 and run.converged, (run.stderr, run.report and run.report["status"])
    U, s, Vt = run.arrays["U"], run.arrays["s"], run.arrays["Vt"]
    assert np.sum(s > 0) == k
    m, n = A.shape
    assert np.sum(np.abs(U.conj().T @ U - np.eye(k))) / k**2 <= 1e-3
    assert np.sum(np.abs(Vt @ Vt.conj().T - np.eye(k))) / k**2 <= 1e-3
    full = dense(A)
    assert np.sum(np.abs(full.conj().T @ U - Vt.conj().T * s)) / (m * k) <= 1e-3
    assert np.sum(np.abs(full @ Vt.conj().T - U * s)) / (n * k) <= 1e-3
    np.testing.assert_allclose(s, np.linalg.svd(full, compute_uv=False)[:k], atol=1e-3, rtol=1.0)


def _maxiter(method: str, value: int) -> list:
    return ["--maxiter", value] if method in ("lanczos", "arpack") else []


@pytest.mark.parametrize("method", METHODS)
def test_rank_deficient_beyond_the_rank(tmp_path, method):
    # test_small_sigma2's 10x10 matrix with a 4-dimensional null space, asked for 8 > 6 = rank
    # triplets: the last two singular values are 0 and their right vectors lie in the null space
    rng = np.random.default_rng(179847540)
    x = rng.random((10, 6))
    mat = np.hstack((x, x[:, :4] * rng.random(4)))
    assert sla.null_space(mat).shape[1] == 4
    run = factorize(tmp_path, sp.csc_matrix(mat), "--kind", "svd", "-m", method, "--rank", 8)
    check_svds(mat, 8, run, atol=1e-7, rtol=1e-7, against_svd=False)
    s, Vt = run.arrays["s"], run.arrays["Vt"]
    np.testing.assert_allclose(s, np.linalg.svd(mat, compute_uv=False)[:8], atol=1e-7, rtol=1e-7)
    np.testing.assert_allclose(mat @ Vt[-2:].T, 0, atol=1e-6)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("shape", [(100, 100), (100, 101), (101, 100)])
def test_random_sparse_largest_triplets(tmp_path, method, shape):
    # test_small_sigma_sparse's matrix (density 0.1, first rows scaled by 1e-10..1e-2), asked for
    # its largest triplets (matcli has no SM): certified methods to their residual bound sqrt(eps);
    # the randomized ones (4 power iterations on a flat spectrum) are approximations, held to
    # orthonormality and to a reconstruction error within 1 % of the optimal one
    rng = np.random.default_rng(0)
    m, n = shape
    S = sp.random(m, n, density=0.1, random_state=rng)
    e = np.ones(m)
    e[:5] *= 10.0 ** np.arange(-10, 0, 2)
    S = (sp.diags(e) @ S).tocsr()
    k = 5
    run = factorize(tmp_path, S, "--kind", "svd", "-m", method, "--rank", k)
    assert run.exit_code == 0 and run.converged, run.stderr
    U, s, Vt = run.arrays["U"], run.arrays["s"], run.arrays["Vt"]
    assert orthonormality_error(U) <= 1e-10 and orthonormality_error(Vt.T) <= 1e-10
    exact = np.linalg.svd(S.toarray(), compute_uv=False)
    if method in CERTIFIED:
        # a triplet residual rho bounds the singular value error by rho
        assert run.metrics["max_triplet_residual"] <= np.sqrt(EPS)
        np.testing.assert_allclose(s, exact[:k], rtol=0, atol=np.sqrt(EPS) * exact[0])
    else:
        optimal = np.sqrt(np.sum(exact[k:] ** 2) / np.sum(exact**2))
        assert run.metrics["reconstruction_error"] <= 1.01 * optimal


@pytest.mark.parametrize("method", ["arpack", "propack"])
@pytest.mark.parametrize("tol", [1e-4, 1e-2])
def test_svds_parameter_tol(tmp_path, method, tol):
    # scipy's problem: A = B B^T, B 100x100 keeping the entries of U(0, 1) below 0.1, k = 3.
    # scipy's accuracy steps (ARPACK 2e-15 / 1e-10, PROPACK 1e-12 / 1e-6 for tol 1e-4 / 1e-2) hold
    # for its v0 = ones(n); with matcli's seeded start PROPACK at tol 1e-4 reaches 1.9e-11, so the
    # test holds svds' tol to what it means: relative accuracy tol of the singular values
    rng = np.random.default_rng(0)
    B = rng.random((100, 100))
    B[B > 0.1] = 0
    A = B @ B.T
    s = sla.svd(A, compute_uv=False)
    run = factorize(tmp_path, sp.csc_matrix(A), "--kind", "svd", "-m", method, "--rank", 3, "--tol", tol)
    assert run.exit_code == 0, run.stderr
    assert np.linalg.norm((run.arrays["s"] - s[:3]) / s[:3]) <= tol
    assert run.metrics["max_triplet_residual"] <= tol
    # the kernel's own status: converged to the asked tol (the runner's certificate decides the rest)
    result = lanczos_svd(sp.csc_matrix(A), rank=3, solver=method, tol=tol, rng=np.random.default_rng(0))
    assert result.status == Status.CONVERGED_RTOL and result.info["certify_bound"] == max(tol, np.sqrt(EPS))


def test_lanczos_tol_bounds_the_singular_value_error(tmp_path):
    # matcli's --tol for lanczos is the relative triplet residual: |s_i - sigma_i| <= tol s_i
    rng = np.random.default_rng(0)
    B = rng.random((100, 100))
    B[B > 0.1] = 0
    A = B @ B.T
    s = sla.svd(A, compute_uv=False)
    for tol in (1e-4, 1e-8):
        run = factorize(tmp_path, sp.csc_matrix(A), "--kind", "svd", "-m", "lanczos", "--rank", 3, "--tol", tol)
        assert run.exit_code == 0 and run.converged
        assert np.all(np.abs(run.arrays["s"] - s[:3]) <= tol * s[:3] * (1 + 1e-6))


# ------------------------------------------------------------------------------ input validation
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("k", [0, 4])
def test_svds_input_validation_k(tmp_path, method, k):
    # scipy: k must satisfy 0 < k < min(m, n) (PROPACK: <= min(m, n)); 4 > min(4, 3) for every method
    A = np.random.default_rng(0).random((4, 3))
    run = factorize(tmp_path, A, "--kind", "svd", "-m", method, "--rank", k)
    assert run.exit_code == 2 and "--rank" in run.stderr


@pytest.mark.parametrize("method", ["propack", "lanczos", "randomized", "block-krylov", "dense"])
def test_complete_svd_where_scipy_propack_gives_it(tmp_path, method):
    # scipy's test_svds_input_validation_k_1: PROPACK returns the complete SVD for k = min(m, n) = 3
    A = np.random.default_rng(0).random((4, 3))
    check_svds(A, 3, factorize(tmp_path, A, "--kind", "svd", "-m", method, "--rank", 3), whole=True)


def test_empty_matrix_is_an_input_error(tmp_path):
    # scipy: "`A` must not be empty." -- matcli: exit 4 naming the shape
    run = factorize(tmp_path, np.zeros((0, 3)), "--kind", "svd", "-m", "dense")
    assert run.exit_code == 4 and "empty" in run.stderr
