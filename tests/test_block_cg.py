"""Block CG (``--method block-cg``) against scipy's sparse direct solver, column by column.

Tolerances come from the problem: a column that meets ``||b - A x|| <= rtol ||b||`` has
``||x - x*|| / ||x*|| <= cond(A) rtol``, with cond(A) exact for the Poisson matrices (their
eigenvalues are known) and from MANIFEST.tsv for the SuiteSparse ones.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.sparse.linalg import spsolve

from matcli.core.result import Status
from matcli.methods.solve import krylov
from matcli.methods.solve.block_cg import block_cg
from matcli.methods.solve.block_cg_setup import prepare_block_cg
from matcli.methods.solve.precond import Preconditioner, jacobi
from matcli.methods.solve.system import col_norms
from tests.conftest import data_file


def poisson2d(m: int) -> sp.csr_matrix:
    T = sp.diags([-np.ones(m - 1), 2 * np.ones(m), -np.ones(m - 1)], [-1, 0, 1])
    return sp.csr_matrix(sp.kronsum(T, T))


def exact_cond(m: int) -> float:
    """cond2 of the m^2 Poisson matrix: (4 + 4 cos(pi/(m+1))) / (4 - 4 cos(pi/(m+1)))."""
    theta = np.pi / (m + 1)
    return (4 + 4 * np.cos(theta)) / (4 - 4 * np.cos(theta))


def check_columns(A, X, B, rtol, cond):
    """Every column: true residual within rtol, and the error against spsolve within cond * rtol
    (plus the direct solve's own rounding, n eps cond)."""
    X_ref = np.column_stack([spsolve(sp.csc_matrix(A), B[:, j]) for j in range(B.shape[1])])
    res = col_norms(B - A @ X) / np.where(col_norms(B) > 0, col_norms(B), 1.0)
    assert np.all(res <= rtol), res.max()
    ref = np.where(col_norms(X_ref) > 0, col_norms(X_ref), 1.0)
    err = col_norms(X - X_ref) / ref
    assert np.all(err <= cond * rtol + A.shape[0] * np.finfo(float).eps * cond), (err.max(), cond * rtol)


def test_poisson_many_columns_match_spsolve():
    m = 30
    A = poisson2d(m)
    B = np.random.default_rng(0).standard_normal((m * m, 40))
    result = block_cg(A, B, M=jacobi(A), rtol=1e-9)
    assert result.status == Status.CONVERGED_RTOL
    assert result.info["blocks"] == 3 and result.info["block_size"] == 16
    check_columns(A, result.outputs["x"], B, 1e-9, exact_cond(m))


def test_block_iterations_never_exceed_columnwise_cg():
    # Each column's A-norm error is minimised over the block Krylov space, which contains the column's
    # own Krylov space: no column needs more steps than CG on it alone (exact arithmetic; the margin of
    # one step is for rounding near the tolerance).
    m = 25
    A = poisson2d(m)
    B = np.random.default_rng(1).standard_normal((m * m, 8))
    single = [krylov.cg(A, B[:, j], rtol=1e-8).iterations for j in range(8)]
    block = block_cg(A, B, rtol=1e-8, block_size=8)
    assert block.status.converged
    its = block.info["column_iterations"]
    assert all(its[j] <= single[j] + 1 for j in range(8)), (its, single)
    assert max(its) < min(single)


def test_columns_of_very_different_difficulty():
    # an eigenvector right-hand side is solved in one step; the others need many; scales 1e-6 .. 1e6
    m = 20
    n = m * m
    A = poisson2d(m)
    grid = np.arange(1, m + 1) * np.pi / (m + 1)
    eigvec = np.kron(np.sin(grid), np.sin(2 * grid))
    rng = np.random.default_rng(2)
    B = np.column_stack([eigvec, 1e-6 * rng.standard_normal(n), 1e6 * rng.standard_normal(n),
                         rng.standard_normal(n)])
    result = block_cg(A, B, rtol=1e-10)
    assert result.status == Status.CONVERGED_RTOL
    its = result.info["column_iterations"]
    assert its[0] == 1 and min(its[1:]) > 10
    check_columns(A, result.outputs["x"], B, 1e-10, exact_cond(m))


def test_dependent_and_zero_columns_are_dropped_not_broken():
    m = 20
    A = poisson2d(m)
    rng = np.random.default_rng(3)
    b0, b1 = rng.standard_normal(m * m), rng.standard_normal(m * m)
    B = np.column_stack([b0, b0, np.zeros(m * m), 2 * b0 - 3 * b1, b1, b0])
    result = block_cg(A, B, M=jacobi(A), rtol=1e-9)
    assert result.status.converged, result.message
    assert result.info["rank_drops"] > 0
    X = result.outputs["x"]
    assert np.all(X[:, 2] == 0)
    check_columns(A, X, B, 1e-9, exact_cond(m))


def test_suitesparse_spd_with_amg_matches_spsolve():
    from matcli.io.load import read_matrix

    A = sp.csr_matrix(read_matrix(str(data_file("matrices/1138_bus.mtx")))).astype(float)
    B = np.random.default_rng(4).standard_normal((A.shape[0], 20))
    solver = prepare_block_cg(A, params={}, precond_name="amg-sa", symmetric=True, rng=np.random.default_rng(0))
    result = solver.solve(A, B, rtol=1e-10)
    assert result.status == Status.CONVERGED_RTOL, result.message
    check_columns(A, result.outputs["x"], B, 1e-10, 8.57e6)  # cond2 from MANIFEST.tsv


def test_suitesparse_ill_conditioned_fewer_iterations_than_cg():
    from matcli.io.load import read_matrix

    A = sp.csr_matrix(read_matrix(str(data_file("matrices/bcsstk15.mtx")))).astype(float)
    B = np.random.default_rng(5).standard_normal((A.shape[0], 16))
    M = jacobi(A)
    block = block_cg(A, B, M=M, rtol=1e-8)
    single = krylov.cg(A, B, M=M, rtol=1e-8)
    assert block.status == Status.CONVERGED_RTOL and single.status == Status.CONVERGED_RTOL
    assert block.iterations < single.iterations
    res = col_norms(B - A @ block.outputs["x"]) / col_norms(B)
    assert res.max() <= 1e-8


def test_float32_input_computes_in_double():
    m = 16
    A = poisson2d(m).astype(np.float32)
    B = np.random.default_rng(6).standard_normal((m * m, 3)).astype(np.float32)
    solver = prepare_block_cg(A, params={}, precond_name="jacobi", symmetric=True)
    result = solver.solve(A, B, rtol=1e-12)
    X = result.outputs["x"]
    assert result.status.converged and X.dtype == np.float64
    check_columns(A.astype(np.float64), X, B.astype(np.float64), 1e-12, exact_cond(m))


def test_complex_hermitian():
    m = 15
    n = m * m
    L = poisson2d(m).astype(complex)
    rng = np.random.default_rng(7)
    S = sp.random(n, n, density=0.01, random_state=8)
    H = sp.csr_matrix(L + 0.1j * (S - S.T))  # Hermitian; positive definite because ||0.1 (S - S^T)|| is small
    lam = np.linalg.eigvalsh(H.toarray())
    assert lam[0] > 0
    B = rng.standard_normal((n, 5)) + 1j * rng.standard_normal((n, 5))
    result = block_cg(H, B, rtol=1e-10)
    assert result.status.converged and result.outputs["x"].dtype == np.complex128
    check_columns(H, result.outputs["x"], B, 1e-10, lam[-1] / lam[0])


def test_indefinite_matrix_is_reported_not_spd():
    A = sp.diags(np.r_[np.linspace(1, 2, 50), -np.linspace(1, 2, 50)]).tocsr()
    B = np.random.default_rng(9).standard_normal((100, 4))
    result = block_cg(A, B, rtol=1e-8)
    assert result.status == Status.DIVERGED_NOT_SPD
    assert "minres" in result.message


def test_indefinite_preconditioner_is_reported_not_spd():
    A = poisson2d(10)
    M = Preconditioner("neg", lambda R: -R, True)
    result = block_cg(A, np.ones((100, 2)), M=M)
    assert result.status == Status.DIVERGED_NOT_SPD


def test_maxiter_keeps_an_iterate_no_worse_than_the_start():
    m = 30
    A = poisson2d(m)
    B = np.random.default_rng(10).standard_normal((m * m, 4))
    result = block_cg(A, B, rtol=1e-12, maxiter=3)
    assert result.status == Status.DIVERGED_MAX_IT
    X = result.outputs["x"]
    assert np.all(col_norms(B - A @ X) <= col_norms(B))


def test_initial_guess_and_vector_rhs():
    m = 12
    A = poisson2d(m)
    b = np.random.default_rng(11).standard_normal(m * m)
    x_ref = spsolve(sp.csc_matrix(A), b)
    result = block_cg(A, b, x0=x_ref, rtol=1e-10)
    assert result.outputs["x"].shape == (m * m,)
    assert result.iterations == 0 and result.status == Status.CONVERGED_RTOL
    result = block_cg(A, b, x0=np.ones(m * m), rtol=1e-10)
    assert result.status.converged
    check_columns(A, result.outputs["x"][:, None], b[:, None], 1e-10, exact_cond(m))


def test_amg_block_cycle_poisson():
    A = poisson2d(40)
    B = np.random.default_rng(12).standard_normal((1600, 20))
    solver = prepare_block_cg(A, params={}, precond_name="amg-rs", symmetric=True)
    result = solver.solve(A, B, rtol=1e-8)
    assert result.status == Status.CONVERGED_RTOL
    assert result.iterations <= 20  # mesh-independent AMG: ~10 steps at every size
    check_columns(A, result.outputs["x"], B, 1e-8, exact_cond(40))


def test_cli_block_cg_and_auto_choice(cli, tmp_path, monkeypatch):
    from matcli.io.hdf5 import write_arrays
    from matcli.methods.solve import auto
    from tests.conftest import solve_outputs

    m = 30
    A = poisson2d(m)
    B = np.random.default_rng(13).standard_normal((m * m, 5))
    write_arrays(str(tmp_path / "p.h5"), {"A": A, "B": B})
    result, report, x = solve_outputs(cli, tmp_path, [f"{tmp_path}/p.h5:/A", "--rhs", f"{tmp_path}/p.h5:/B",
                                                      "--method", "block-cg", "--rtol", "1e-9"])
    assert result.exit_code == 0, result.stderr
    assert report["method"] == "block-cg" and report["certificate"]["passed"]
    assert report["params"]["precond"] == "ic"  # --precond auto as for cg on a small sparse SPD matrix
    check_columns(A, x, B, 1e-9, exact_cond(m))
    # auto sends large sparse SPD systems to CG; with several columns, to block CG
    monkeypatch.setattr(auto, "DIRECT_LIMIT", 10)
    result, report, x = solve_outputs(cli, tmp_path, [f"{tmp_path}/p.h5:/A", "--rhs", f"{tmp_path}/p.h5:/B"])
    assert result.exit_code == 0, result.stderr
    assert report["method"] == "block-cg" and "Krylov space" in report["method_reason"]
    result, report, x = solve_outputs(cli, tmp_path, [f"{tmp_path}/p.h5:/A"])
    assert report["method"] == "cg"


@pytest.mark.skipif(not hasattr(__import__("ctypes").CDLL(None), "mallinfo2"), reason="glibc >= 2.33 only")
def test_setup_keeps_freed_memory_for_reuse():
    import ctypes

    from matcli.methods.solve import block_cg_setup

    class MallInfo2(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                          "fsmblks", "uordblks", "fordblks", "keepcost")]

    libc = ctypes.CDLL(None)
    libc.mallinfo2.restype = MallInfo2
    A = poisson2d(20)
    prepare_block_cg(A, params={}, precond_name="jacobi", symmetric=True)
    assert block_cg_setup._kept[0] >= block_cg_setup.TRIM_BOUNDS[0]
    block = np.ones(20 * 2**20 // 8)  # 20 MiB: below the mmap threshold, so from the heap ...
    mapped = libc.mallinfo2().hblkhd
    del block
    info = libc.mallinfo2()
    assert info.hblkhd == mapped and info.fordblks >= 20 * 2**20  # ... and kept there once freed
