"""AMG setup (our Ruge-Stuben pipeline) and the block cycle behind CG with many right-hand sides.

References: pyamg's own ``ruge_stuben_solver(A, interpolation="direct")`` (same splittings, same
interpolation), dense eigenvalues of the cycle as a matrix, and scipy's ``spsolve`` for solutions.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.sparse.linalg import eigsh, spsolve

pyamg = pytest.importorskip("pyamg")

from matcli.core.result import Status  # noqa: E402
from matcli.io.load import read_matrix  # noqa: E402
from matcli.methods.solve import krylov, precond, solvers  # noqa: E402
from matcli.methods.solve.multigrid import L1_SCALE, block_cycle, single_precision_fits  # noqa: E402
from matcli.methods.solve.ruge_stuben import ruge_stuben, strength  # noqa: E402
from tests.conftest import shared_data_dir  # noqa: E402

EPS32 = float(np.finfo(np.float32).eps)


def poisson(*shape: int) -> sp.csr_matrix:
    return sp.csr_matrix(pyamg.gallery.poisson(shape, format="csr"))


def spd_problems():
    """(name, A): 2-D and 3-D Poisson, 2-D linear elasticity (not an M-matrix, two unknowns per
    node), and a SuiteSparse SPD matrix when the shared data is present."""
    yield "poisson2d", poisson(40, 40)
    yield "poisson3d", poisson(12, 12, 12)
    yield "elasticity", sp.csr_matrix(pyamg.gallery.linear_elasticity((16, 16))[0])
    path = shared_data_dir() / "matrices" / "gr_30_30.mtx"
    if path.exists():  # without the shared data the catalogue is the three generated problems
        yield "gr_30_30", sp.csr_matrix(read_matrix(str(path)), dtype=float)


PROBLEMS = list(spd_problems())


@pytest.mark.parametrize("name,A", PROBLEMS, ids=[p[0] for p in PROBLEMS])
def test_ruge_stuben_builds_pyamgs_hierarchy(name, A):
    """Same levels, splittings and interpolation as pyamg; coarse operators equal to rounding."""
    ours = ruge_stuben(A)
    ref = pyamg.ruge_stuben_solver(A, interpolation="direct")
    assert len(ours.levels) == len(ref.levels) > 1
    for mine, theirs in zip(ours.levels[:-1], ref.levels[:-1]):
        np.testing.assert_array_equal(mine.splitting, theirs.splitting)
        assert mine.P.shape == theirs.P.shape
        scale = abs(theirs.P).max()
        assert abs(sp.csr_matrix(mine.P) - sp.csr_matrix(theirs.P)).max() <= 64 * np.finfo(float).eps * scale
    coarse_mine, coarse_ref = sp.csr_matrix(ours.levels[-1].A), sp.csr_matrix(ref.levels[-1].A)
    # Galerkin products R A P over the levels: entries agree to a few ulps of the largest one
    assert abs(coarse_mine - coarse_ref).max() <= 1e3 * np.finfo(float).eps * abs(coarse_ref).max()


def test_strength_pattern_against_definition():
    """Strong iff off-diagonal and |a_ij| >= theta max_{k != i} |a_ik|; explicit zeros never strong."""
    rng = np.random.default_rng(3)
    A = sp.random(60, 60, density=0.15, random_state=rng, format="csr") + sp.eye(60)
    A = sp.csr_matrix(A + A.T)
    A.data[::7] = 0.0  # explicit zeros stay in the pattern
    theta = 0.3
    S = strength(A, theta).toarray()
    D = A.toarray()
    off = np.abs(D - np.diag(np.diag(D)))
    expected = (off >= theta * off.max(axis=1, keepdims=True)) & (off > 0)
    np.testing.assert_array_equal(S != 0, expected)
    np.testing.assert_array_equal(S[expected], D[expected])


SMALL = [("poisson2d", poisson(12, 12)), ("poisson3d", poisson(6, 6, 6)),
         ("elasticity", sp.csr_matrix(pyamg.gallery.linear_elasticity((7, 7))[0]))]


@pytest.mark.parametrize("name,A", SMALL, ids=[p[0] for p in SMALL])
def test_block_cycle_is_symmetric_positive_definite(name, A):
    """The cycle as a matrix (applied to the identity) is symmetric to single-precision rounding and
    positive definite, and each l1-Jacobi step contracts: eig(I - M^-1 A) in (-1, 1)."""
    ml = ruge_stuben(A, max_coarse=4)
    assert len(ml.levels) > 2
    cycle = block_cycle(ml)
    assert cycle.dtype == np.float32
    n = A.shape[0]
    C = cycle(np.eye(n))
    assert np.abs(C - C.T).max() <= 50 * EPS32 * np.abs(C).max()
    eigs = np.linalg.eigvalsh((C + C.T) / 2)
    assert eigs.min() > 0
    # the preconditioned operator's spectrum lies in (0, 1]: the cycle never over-corrects
    lam = np.linalg.eigvals(C @ A.toarray()).real
    assert lam.min() > 0 and lam.max() <= 1 + 1e-4
    Ad = A.toarray()
    m = L1_SCALE * np.abs(Ad).sum(axis=1)
    contraction = np.linalg.eigvals(np.eye(n) - Ad / m[:, None]).real
    assert np.all(np.abs(contraction) < 1)


def test_block_cycle_precision_matches_double_to_single_rounding():
    A = poisson(30, 30)
    ml = ruge_stuben(A)
    B = np.random.default_rng(0).standard_normal((A.shape[0], 5))
    single, double = block_cycle(ml)(B), block_cycle(ml, np.float64)(B)
    assert single.dtype == np.float64  # the caller's dtype comes back
    assert np.abs(single - double).max() <= 1e3 * EPS32 * np.abs(double).max()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name,A", PROBLEMS, ids=[p[0] for p in PROBLEMS])
def test_block_cycle_through_mkl_equals_scipys_cycle(name, A, dtype):
    """With MKL installed, each level's products run in place through MKL (residual = B - A X with
    beta = 1): the same cycle as scipy's products, to the rounding of the additions' order."""
    from matcli.methods.solve import sparse_blas

    if not sparse_blas.available():
        pytest.skip("MKL (the [pardiso] extra) is not installed: the cycle uses scipy's products")
    cycle = block_cycle(ruge_stuben(A), dtype)
    assert all(level.mkl is not None for level in cycle.levels)
    B = np.random.default_rng(1).standard_normal((A.shape[0], 7))
    through_mkl = cycle(B)
    for level in cycle.levels:
        level.mkl = None
    through_scipy = cycle(B)
    # each product's sums differ by order only: a few eps of |A||X| per level and smoothing step
    assert np.abs(through_mkl - through_scipy).max() <= 1e3 * np.finfo(dtype).eps * np.abs(through_scipy).max()
    assert not np.array_equal(cycle(B), np.zeros_like(B))


def test_single_precision_refused_for_values_out_of_range():
    A = poisson(20, 20) * 1e35  # fits float32 (max ~3e38) but products of the cycle would overflow
    ml = ruge_stuben(A)
    assert not single_precision_fits(ml)
    assert block_cycle(ml).dtype == np.float64
    assert single_precision_fits(ruge_stuben(poisson(20, 20)))


def _cg_amg(A, B, **kw):
    return solvers.prepare_cg(A, params={}, precond_name="amg-rs", symmetric=True).solve(A, B, **kw)


@pytest.mark.parametrize("name,A", PROBLEMS, ids=[p[0] for p in PROBLEMS])
def test_many_rhs_cg_amg_against_spsolve(name, A):
    """40 columns of very different scales and smoothness (random, smooth, one-hot, a zero column):
    every column meets rtol on its true residual, and the error is within the bound
    ||x - x*|| <= cond(A) rtol ||x*|| against spsolve."""
    n = A.shape[0]
    rng = np.random.default_rng(1)
    B = rng.standard_normal((n, 40)) * np.logspace(-3, 3, 40)
    B[:, 1] = np.sin(np.linspace(0, np.pi, n))
    B[:, 2] = 0.0
    B[:, 3] = 0.0
    B[n // 2, 3] = 1.0
    rtol = 1e-8
    result = _cg_amg(A, B, rtol=rtol)
    X = result.outputs["x"]
    assert result.status.converged
    residual = np.linalg.norm(B - A @ X, axis=0)
    assert np.all(residual <= rtol * np.linalg.norm(B, axis=0))
    assert np.all(X[:, 2] == 0)
    ref = spsolve(sp.csc_matrix(A), B)
    lam_max = eigsh(A, 1, which="LA", return_eigenvectors=False)[0]
    lam_min = eigsh(sp.csc_matrix(A), 1, sigma=0, which="LM", return_eigenvectors=False)[0]
    cond = lam_max / lam_min
    err = np.linalg.norm(X - ref, axis=0)
    assert np.all(err <= cond * rtol * np.linalg.norm(ref, axis=0) * 1.01 + 1e-300)


def test_block_and_single_column_solves_agree():
    """A column solved alone (Gauss-Seidel cycle) and inside a block (l1-Jacobi block cycle): both
    certified to rtol, so they agree to within the error bound."""
    A = poisson(40, 40)
    B = np.random.default_rng(2).standard_normal((A.shape[0], 6))
    block = _cg_amg(A, B, rtol=1e-10).outputs["x"]
    alone = _cg_amg(A, B[:, 4], rtol=1e-10).outputs["x"]
    ref = spsolve(sp.csc_matrix(A), B[:, 4])
    cond = 4 / (2 * np.pi ** 2 / 41 ** 2)  # lambda_max / lambda_min of the 2-D Laplacian, h = 1/41
    bound = cond * 1e-10 * np.linalg.norm(ref)
    assert np.linalg.norm(block[:, 4] - ref) <= bound and np.linalg.norm(alone - ref) <= bound


def test_column_that_cannot_converge_is_reported():
    """maxiter too small for the hardest column only: that column fails (status, per-column count),
    the easy ones converge, and the failed column hands back an iterate no worse than x0 = 0."""
    A = poisson(40, 40)
    n = A.shape[0]
    rng = np.random.default_rng(4)
    X_true = np.zeros((n, 4))
    X_true[:, 0] = rng.standard_normal(n)  # rough: many iterations
    ref_single = _cg_amg(A, A @ X_true[:, 0], rtol=1e-12)
    needed = ref_single.iterations
    B = A @ X_true
    B[:, 1:] = 0.0
    B[5, 1] = 1.0
    result = _cg_amg(A, B, rtol=1e-12, maxiter=2)
    assert needed > 2
    assert result.status == Status.DIVERGED_MAX_IT
    assert "of 4 right-hand sides" in result.message
    r = np.linalg.norm(B - A @ result.outputs["x"], axis=0)
    assert r[0] <= np.linalg.norm(B[:, 0])
    assert r[2] == 0 and r[3] == 0  # zero right-hand sides


def test_float32_input_many_rhs():
    A = poisson(30, 30).astype(np.float32)
    B = np.random.default_rng(5).standard_normal((A.shape[0], 8)).astype(np.float32)
    result = _cg_amg(A, B, rtol=1e-8)
    X = result.outputs["x"]
    assert X.dtype == np.float64 and result.status.converged
    A64, B64 = A.astype(np.float64), B.astype(np.float64)
    assert np.all(np.linalg.norm(B64 - A64 @ X, axis=0) <= 1e-8 * np.linalg.norm(B64, axis=0))


def test_block_variant_is_used_for_the_whole_solve(monkeypatch):
    """Columns converge at different iterations; the solve keeps the block preconditioner even when
    one column is left (a preconditioner that changed mid-solve would break CG's conjugacy)."""
    A = poisson(30, 30)
    M = precond.amg(A, "rs", True, np.random.default_rng(0))
    blocked = M.block()
    widths = []
    original = blocked.apply
    monkeypatch.setattr(blocked, "apply", lambda R: (widths.append(R.shape[1]), original(R))[1])
    M.apply = lambda R: pytest.fail("the single-vector cycle was used inside a block solve")
    B = np.random.default_rng(6).standard_normal((A.shape[0], 3)) * np.array([1.0, 1e-6, 1e6])
    B[:, 1] = A @ np.ones(A.shape[0])  # smooth: converges first
    result = krylov.cg(A, B, M=M, rtol=1e-9)
    assert result.status.converged
    assert widths[0] == 3


def test_auto_reason_names_the_shared_hierarchy(monkeypatch):
    from matcli.methods.solve import auto

    monkeypatch.setattr(auto, "DIRECT_LIMIT", 100)
    monkeypatch.setattr(auto, "DENSE_JACOBI_LIMIT", 100)
    A = poisson(40, 40)
    facts = auto.inspect(A)
    method, pc, reason = auto.choose_method(A, facts, 30, np.random.default_rng(0))
    assert (method, pc) == ("cg", "amg-rs") and "30 right-hand sides share the hierarchy" in reason
    assert "share" not in auto.choose_method(A, facts, 1, np.random.default_rng(0))[2]


@pytest.mark.parametrize("shape", [(500,), (50, 50), (10, 10, 10)])
def test_ruge_stuben_convergence_factor_pyamg_case(shape):
    """pyamg's (and scipy's sandbox) Ruge-Stuben case: 20 V-cycles from a random x0 on Poisson in
    1-3 dimensions, symmetric Gauss-Seidel, average convergence factor below 0.15."""
    A = poisson(*shape)
    rng = np.random.default_rng(0)
    x0, b = rng.random(A.shape[0]), A @ rng.random(A.shape[0])
    smoother = ("gauss_seidel", {"sweep": "symmetric"})
    ml = ruge_stuben(A, presmoother=smoother, postsmoother=smoother)
    residuals: list[float] = []
    ml.solve(b, x0=x0, maxiter=20, tol=1e-12, residuals=residuals)
    assert (residuals[-1] / residuals[0]) ** (1.0 / len(residuals)) < 0.15


@pytest.mark.parametrize("n", [2, 3, 5, 40])
def test_ruge_stuben_random_matrices_match_pyamg(n):
    """pyamg's random test matrices (dense N x N, nonsymmetric): the first level's splitting and
    interpolation agree with pyamg's."""
    rng = np.random.default_rng(0)
    A = sp.csr_matrix(rng.random((n, n)) + n * np.eye(n))
    ours = ruge_stuben(A, max_coarse=1)
    ref = pyamg.ruge_stuben_solver(A, interpolation="direct", max_coarse=1)
    assert len(ours.levels) == len(ref.levels)
    if len(ref.levels) > 1:
        np.testing.assert_array_equal(ours.levels[0].splitting, ref.levels[0].splitting)
        np.testing.assert_allclose(sp.csr_matrix(ours.levels[0].P).toarray(),
                                   sp.csr_matrix(ref.levels[0].P).toarray(), rtol=0, atol=1e-14)
