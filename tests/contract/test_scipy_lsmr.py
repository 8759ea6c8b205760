"""scipy's ``sparse/linalg/_isolve/tests/test_lsmr.py`` (Fong and Saunders' own tests), ported to
matcli's lsmr and lsqr.

Compatible systems (identity, the lower bidiagonal 20x10 matrix, complex x, complex A, complex b,
a complex x0), the reported norms (here the report's metrics, recomputed independently), x0 left
untouched and warm starts; then rectangular matrices from the shared data, well and ill
conditioned, against LAPACK's minimum-norm least-squares solution.

scipy's check ``||x - xtrue|| <= 1e-5`` comes from its defaults atol = btol = 1e-6; matcli's
defaults are rtol = atol = 1e-8, so the bound is cond(A) * 1e-8 * ||xtrue|| (first order), which is
below 1e-5 for every compatible case here (cond <= 36).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.sparse as sp

from conftest import data_file
from matcli.core.result import Status
from matcli.io.load import read_matrix

from .test_scipy_lsqr import B, G, METHODS, relative_residual, run_cli, solve

N = 10


def lower_bidiagonal(m: int, n: int) -> sp.coo_matrix:
    """Fong and Saunders' example: the leading m x n block of [1; 1 2; 2 3; 3 4; ...], zero padded."""
    if m <= n:
        row = np.hstack((np.arange(m), np.arange(1, m)))
        col = np.hstack((np.arange(m), np.arange(m - 1)))
        data = np.hstack((np.arange(1, m + 1, dtype=float), np.arange(1, m, dtype=float)))
    else:
        row = np.hstack((np.arange(n), np.arange(1, n + 1)))
        col = np.hstack((np.arange(n), np.arange(n)))
        data = np.hstack((np.arange(1, n + 1, dtype=float), np.arange(1, n + 1, dtype=float)))
    return sp.coo_matrix((data, (row, col)), shape=(m, n))


def compatible_cases() -> dict[str, tuple[object, np.ndarray]]:
    """scipy's assertCompatibleSystem cases: (A, xtrue) with b = A xtrue."""
    down = np.arange(N, 0, -1)
    return {
        "identity-zeros": (np.eye(N), np.zeros(N)),
        "identity-ones": (np.eye(N), np.ones(N)),
        "identity-arange": (np.eye(N), down.astype(float)),
        "bidiagonal-20x10": (lower_bidiagonal(20, N), down.astype(float)),
        "complex-x": (np.eye(N), down * (1 + 1j)),
        "complex-A": (4 * np.eye(N) + 1j * np.ones((N, N)), down.astype(complex)),
        "complex-b": (4 * np.eye(N) + np.ones((N, N)), down * (1 + 1j)),
    }


CASES = compatible_cases()


def forward_bound(A, xtrue, rtol=1e-8) -> float:
    """cond(A) * rtol * ||xtrue|| (+ an absolute floor of 100 eps ||xtrue|| for rounding)."""
    dense = A.toarray() if sp.issparse(A) else A
    return (np.linalg.cond(dense) * rtol + 100 * np.finfo(float).eps) * max(np.linalg.norm(xtrue), 1.0)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("name", list(CASES))
def test_compatible_system(name, method):
    A, xtrue = CASES[name]
    b = A @ xtrue
    result = solve(method, A, b)
    x = result.outputs["x"]
    assert result.status.converged
    assert np.iscomplexobj(x) == np.iscomplexobj(b)
    assert np.linalg.norm(x - xtrue) <= min(1e-5, forward_bound(A, xtrue))
    if not b.any():
        assert result.status == Status.CONVERGED_ZERO_RHS and not x.any()
    else:
        assert result.status == Status.CONVERGED_RTOL and relative_residual(A, x, b) <= 1e-8


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("name", list(CASES))
def test_compatible_system_through_cli(cli, tmp_path, name, method):
    A, xtrue = CASES[name]
    b = A @ xtrue
    result, report, x = run_cli(cli, tmp_path, A, b, method)
    assert result.exit_code == 0, result.stderr
    assert report["problem"]["compute_dtype"] == ("complex128" if np.iscomplexobj(A) or np.iscomplexobj(b)
                                                  else "float64")
    assert np.linalg.norm(x - xtrue) <= min(1e-5, forward_bound(A, xtrue))


@pytest.mark.parametrize("method", METHODS)
def test_scalar_and_column_b(method):
    A = np.array([[1.0, 2.0]])
    x = solve(method, A, np.array([3.0])).outputs["x"]
    assert np.linalg.norm(A @ x - 3.0) == pytest.approx(0, abs=1e-14)
    b = np.ones((N, 1))
    x = solve(method, np.eye(N), b).outputs["x"]
    assert x.shape == (N, 1) and np.linalg.norm(x - b) == pytest.approx(0, abs=1e-14)


@pytest.mark.parametrize("method", METHODS)
def test_complex_x0(method):
    """scipy's testComplexX0: a complex x0 (zero, and here also 1j) with a real system. Its imaginary
    part used to be cast away with a ComplexWarning; now the iterates are complex."""
    A = 4 * np.eye(N) + np.ones((N, N))
    xtrue = np.arange(N, 0, -1).astype(float)
    for x0 in (np.zeros(N, dtype=complex), np.full(N, 1j)):
        kept = x0.copy()
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            result = solve(method, A, A @ xtrue, x0=x0)
        assert result.status.converged and np.iscomplexobj(result.outputs["x"])
        np.testing.assert_array_equal(x0, kept)
        assert np.linalg.norm(result.outputs["x"] - xtrue) <= forward_bound(A, xtrue)


@pytest.mark.parametrize("method", METHODS)
def test_initialization(method):
    """scipy's testInitialization: x0 = 0 gives the default answer; a warm start from one iteration
    converges in at most as many iterations, to at most the same residual (up to 1e-6 relative)."""
    reference = solve(method, G, B)
    np.testing.assert_allclose(solve(method, G, B, x0=np.zeros(B.shape)).outputs["x"], reference.outputs["x"])
    x0 = solve(method, G, B, maxiter=1).outputs["x"]
    warm = solve(method, G, B, x0=x0)
    assert warm.status.converged
    assert warm.iterations - reference.iterations in (-1, 0, 1)
    norm_ref = np.linalg.norm(B - G @ reference.outputs["x"])
    assert np.linalg.norm(B - G @ warm.outputs["x"]) < max(norm_ref * (1 + 1e-6), 1e-8 * np.linalg.norm(B))


@pytest.mark.parametrize("method", METHODS)
def test_returns(method):
    """scipy's TestLSMRReturns: the reported norms are those of the returned x, and x0 is untouched.
    matcli reports ||b - A x|| / ||b|| and ||A^H r|| / (||A||_F (||A||_F ||x|| + ||b||))."""
    A = lower_bidiagonal(20, N)
    xtrue = np.arange(N, 0, -1).astype(float)
    b = A @ xtrue
    x0 = np.ones(N)
    for start in (None, x0):
        result = solve(method, A, b, x0=start)
        x = result.outputs["x"]
        r = b - A @ x
        assert result.metrics["relative_residual"] == pytest.approx(np.linalg.norm(r) / np.linalg.norm(b),
                                                                    rel=1e-12, abs=1e-300)
        norm_F = np.linalg.norm(A.toarray())
        normal = np.linalg.norm(A.T @ r) / (norm_F * (norm_F * np.linalg.norm(x) + np.linalg.norm(b)))
        assert result.metrics["normal_residual"] == pytest.approx(normal, rel=1e-12, abs=1e-300)
    np.testing.assert_array_equal(x0, 1.0)


def test_maxiter_zero_is_a_usage_error(cli, tmp_path):
    """scipy returns x0 with istop 0 for maxiter = 0; matcli refuses --maxiter 0 before any work."""
    result, report, x = run_cli(cli, tmp_path, np.eye(3), np.ones(3), "lsmr", "--maxiter", "0")
    assert result.exit_code == 2 and x is None


# ------------------------------------------------------ real rectangular matrices, well and ill conditioned
RECTANGULAR = [("lp_afiro.mtx", 11.2), ("lp_share1b.mtx", 1.05e5), ("ash219.mtx", None)]


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("name,cond", RECTANGULAR)
def test_real_rectangular_minimum_norm(cli, tmp_path, name, cond, method):
    """Wide lp_afiro (cond 11) and lp_share1b (cond 1e5): b = A x_rand is consistent and the answer
    is the minimum-norm solution, LAPACK's lstsq, within cond * rtol. Tall ash219 (a pattern matrix,
    a random b, not in its range): the least-squares solution, judged by its normal residual."""
    A = read_matrix(str(data_file(f"matrices/{name}"))).tocsr()
    dense = A.toarray()
    m, n = A.shape
    rng = np.random.default_rng(7)
    b = A @ rng.standard_normal(n) if m < n else rng.standard_normal(m)
    reference = np.linalg.lstsq(dense, b, rcond=None)[0]
    # lp_share1b takes ~4e3 iterations (35 min(m, n)); the default cap is 4 min(m, n)
    result, report, x = run_cli(cli, tmp_path, A, b, method, "--maxiter", str(100 * min(m, n)))
    assert result.exit_code == 0, (report and report["status"], result.stderr)
    if m < n:
        assert report["status"]["reason"] == "converged_rtol"
        assert relative_residual(dense, x, b) <= 1e-8
        # x - x_min lies in range(A^T) (both do), where A is invertible with ||A^+|| = cond / ||A||
        assert np.linalg.norm(x - reference) <= 10 * cond * 1e-8 * np.linalg.norm(reference)
    else:
        r = b - dense @ x
        norm_F = np.linalg.norm(dense)
        normal = np.linalg.norm(dense.T @ r) / (norm_F * (norm_F * np.linalg.norm(x) + np.linalg.norm(b)))
        assert report["status"]["reason"] == "converged_atol" and normal <= 1e-8
        assert np.linalg.norm(r) <= np.linalg.norm(b - dense @ reference) * (1 + 1e-8)
