"""scipy's ``sparse/linalg/_isolve/tests/test_lsqr.py``, ported to matcli's lsqr and lsmr.

Every case runs through both least-squares iterative methods (the kernels the CLI calls, and the
CLI with ``--strict`` where the case is a file a user could give). scipy's problem matrix ``G``
(identity plus five symmetric rank-one terms and five rank-one terms) is drawn from numpy's
unseeded global generator there; here from a seeded Generator, so the test is reproducible.

Tolerances: scipy's atol = btol = 2e-10 are matcli's ``--param atol`` and ``--rtol``; its
comparison tolerances (atol 4e-10, rtol 2e-8 against LAPACK) are kept. They are tighter than the
first-order bound cond(G) (atol + btol) ||x|| ~ 1e-7 ||x|| (cond(G) = 268): G is the identity plus a
low-rank term, so both methods end in a few steps at rounding level (scipy gh-15301 calls them
fragile). Every residual is recomputed here from the returned x.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from matcli.core.result import Status
from conftest import solve_outputs
from matcli.methods.solve import krylov, solvers

METHODS = ("lsqr", "lsmr")
#: scipy's atol/btol for the G problem, and its comparison tolerances.
TOL = 2e-10
ATOL_TEST = 4e-10
RTOL_TEST = 2e-8


def scipy_G(n: int = 35, seed: int = 1234) -> tuple[np.ndarray, np.ndarray]:
    """scipy's test problem: G = I + sum of 5 (g g^T + (g g^T)^T)/2 + 5 outer-product-like terms.

    As in scipy, ``gg * gg.T`` of a 1-D array is the elementwise square (a diagonal update), and
    ``normal(size=n) * normal(size=n)`` is a vector broadcast over the rows.
    """
    rng = np.random.default_rng(seed)
    G = np.eye(n)
    for _ in range(5):
        gg = rng.normal(size=n)
        hh = gg * gg.T
        G += (hh + hh.T) * 0.5
        G += rng.normal(size=n) * rng.normal(size=n)
    return G, rng.normal(size=n)


G, B = scipy_G()


def solve(method: str, A, b, **options):
    """The job's setup factory for ``method`` with ``--param`` options, then its solve."""
    params = {k: options.pop(k) for k in ("atol", "damp") if k in options}
    solver = getattr(solvers, f"prepare_{method}")(A, params=params, rng=np.random.default_rng(0))
    return solver.solve(A, b, **options)


def relative_residual(A, x, b) -> float:
    r = np.asarray(b, dtype=complex) - A @ np.asarray(x, dtype=complex)
    return float(np.linalg.norm(r) / np.linalg.norm(b))


def run_cli(cli, tmp_path, A, b, method, *extra):
    """``matcli solve A --rhs b -m method --strict``; returns (exit code, report, x)."""
    np.save(tmp_path / "A.npy", A.toarray() if sp.issparse(A) else A)
    np.save(tmp_path / "b.npy", b)
    return solve_outputs(cli, tmp_path, [tmp_path / "A.npy", "--rhs", tmp_path / "b.npy", "-m", method, "--strict",
                                         *extra])


@pytest.mark.parametrize("method", METHODS)
def test_basic(method):
    """scipy's test_lsqr_basic: G x = b to LAPACK's answer, b untouched; then damp = 1.5 against the
    least-squares solution of the stacked system [G; 1.5 I] x = [b; 0]."""
    b = B.copy()
    result = solve(method, G, b, rtol=TOL, atol=TOL)
    np.testing.assert_array_equal(b, B)
    assert result.status.converged
    np.testing.assert_allclose(result.outputs["x"], np.linalg.solve(G, b), atol=ATOL_TEST, rtol=RTOL_TEST)

    damp = 1.5
    result = solve(method, G, b, rtol=TOL, atol=TOL, damp=damp)
    stacked = np.r_[G, damp * np.eye(G.shape[1])]
    reference = np.linalg.lstsq(stacked, np.r_[b, np.zeros(G.shape[1])], rcond=None)[0]
    assert result.status == Status.CONVERGED_ATOL and result.info["damp"] == damp
    np.testing.assert_allclose(result.outputs["x"], reference, atol=ATOL_TEST, rtol=RTOL_TEST)
    # the certificate is the stacked system's normal residual, not ||G^T r|| (which is damp^2 ||x||)
    assert result.metrics["normal_residual"] <= TOL
    r = b - G @ result.outputs["x"]
    np.testing.assert_allclose(G.T @ r, damp ** 2 * result.outputs["x"], atol=1e-8 * np.linalg.norm(G.T @ r))


@pytest.mark.parametrize("method", METHODS)
def test_basic_through_cli(cli, tmp_path, method):
    result, report, x = run_cli(cli, tmp_path, G, B, method, "--rtol", str(TOL), "--param", f"atol={TOL}")
    assert result.exit_code == 0, result.stderr
    np.testing.assert_allclose(x, np.linalg.solve(G, B), atol=ATOL_TEST, rtol=RTOL_TEST)
    result, report, x = run_cli(cli, tmp_path, G, B, method, "--rtol", str(TOL), "--param", f"atol={TOL}",
                                "--param", "damp=1.5")
    assert result.exit_code == 0, (report["status"], result.stderr)
    assert report["status"]["reason"] == "converged_atol" and report["params"]["damp"] == 1.5
    stacked = np.r_[G, 1.5 * np.eye(G.shape[1])]
    np.testing.assert_allclose(x, np.linalg.lstsq(stacked, np.r_[B, np.zeros(G.shape[1])], rcond=None)[0],
                               atol=ATOL_TEST, rtol=RTOL_TEST)


@pytest.mark.parametrize("method", METHODS)
def test_gh_2466(cli, tmp_path, method):
    """scipy gh-2466: a 1x2 sparse integer matrix [1, -1], b = [4] (a ZeroDivisionError there once).
    The minimum-norm solution is [2, -2]."""
    A = sp.coo_matrix((np.array([1, -1]), (np.array([0, 0]), np.array([0, 1]))), shape=(1, 2))
    result = solve(method, A, np.asarray([4]))
    assert result.status.converged
    np.testing.assert_allclose(result.outputs["x"], [2.0, -2.0], rtol=1e-12)
    code, report, x = run_cli(cli, tmp_path, A, np.asarray([4.0]), method)
    assert code.exit_code == 0, code.stderr
    np.testing.assert_allclose(x, [2.0, -2.0], rtol=1e-12)


@pytest.mark.parametrize("method", METHODS)
def test_well_conditioned_problems(method):
    """scipy: the sparse identity with 30 random right-hand sides; the stop is "x solves A x = b"
    (scipy's istop 1, matcli's converged_rtol) and x is the ground truth, with no 0/0 on the way."""
    n = 10
    A = sp.eye(n, n, format="csr")
    with np.errstate(invalid="raise"):
        for seed in range(30):
            beta = np.random.RandomState(seed + 10).rand(n)
            beta[beta == 0] = 0.00001
            result = solve(method, A, A @ beta[:, np.newaxis])
            assert result.status == Status.CONVERGED_RTOL
            assert result.outputs["x"].shape == (n, 1)
            np.testing.assert_allclose(result.outputs["x"][:, 0], beta)
            np.testing.assert_allclose(result.outputs["x"][:, 0], np.linalg.solve(A.toarray(), beta))


@pytest.mark.parametrize("method", METHODS)
def test_b_shapes(method):
    """scipy: b a scalar (one equation), b a column vector (x comes back as a column)."""
    A = np.array([[1.0, 2.0]])
    x = solve(method, A, np.asarray(3.0).reshape(1)).outputs["x"]
    assert np.linalg.norm(A @ x - 3.0) == pytest.approx(0, abs=1e-14)
    np.testing.assert_allclose(x, [0.6, 1.2], rtol=1e-12)  # minimum norm: A^T (A A^T)^-1 b
    b = np.ones((10, 1))
    x = solve(method, np.eye(10), b).outputs["x"]
    assert x.shape == (10, 1) and np.linalg.norm(x - b) == pytest.approx(0, abs=1e-14)


@pytest.mark.parametrize("method", METHODS)
def test_initialization(method):
    """scipy: x0 = 0 is the default; a warm start from one iteration ends at the same answer; b and
    x0 are left untouched."""
    b = B.copy()
    reference = solve(method, G, b, rtol=TOL, atol=TOL)
    x0 = np.zeros(G.shape[1])
    again = solve(method, G, b, rtol=TOL, atol=TOL, x0=x0)
    np.testing.assert_array_equal(x0, 0.0)
    np.testing.assert_allclose(again.outputs["x"], reference.outputs["x"])
    one = solve(method, G, b, rtol=TOL, atol=TOL, maxiter=1)
    assert one.status == Status.DIVERGED_MAX_IT and one.iterations == 1
    start = one.outputs["x"].copy()
    warm = solve(method, G, b, rtol=TOL, atol=TOL, x0=one.outputs["x"])
    np.testing.assert_array_equal(one.outputs["x"], start)
    assert warm.status.converged
    np.testing.assert_allclose(warm.outputs["x"], reference.outputs["x"], atol=ATOL_TEST, rtol=RTOL_TEST)
    np.testing.assert_array_equal(b, B)


@pytest.mark.parametrize("damp", [-1.0, float("nan"), float("inf")])
def test_invalid_damp(cli, tmp_path, damp):
    """A negative or non-finite damping is refused before any work (exit 2)."""
    result, report, x = run_cli(cli, tmp_path, G, B, "lsqr", "--param", f"damp={damp}")
    assert result.exit_code == 2 and x is None
    with pytest.raises(ValueError):
        krylov.lsqr(G, B, damp=damp)
