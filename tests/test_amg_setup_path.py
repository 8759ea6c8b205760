"""The Ruge-Stuben path without pyamg's package: kernels loaded from their files, the Gauss-Seidel
V-cycle against pyamg's own cycle, the strength matrix's edge cases, and no pyamg import in a solve."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import scipy.sparse as sp

pyamg = pytest.importorskip("pyamg")

from matcli.methods.solve import precond  # noqa: E402
from matcli.methods.solve.multigrid import gauss_seidel_cycle  # noqa: E402
from matcli.methods.solve.ruge_stuben import amg_core, hierarchy, ruge_stuben, strength  # noqa: E402

EPS = float(np.finfo(float).eps)


def poisson(*shape):
    return sp.csr_matrix(pyamg.gallery.poisson(shape, format="csr"))


def test_kernels_are_pyamgs_modules():
    import pyamg.amg_core as core

    assert amg_core("ruge_stuben") is core.ruge_stuben
    assert amg_core("relaxation") is core.relaxation
    assert amg_core("graph").connected_components is core.connected_components


@pytest.mark.parametrize("A", [poisson(30, 30), poisson(8, 8, 8),
                               sp.csr_matrix(pyamg.gallery.linear_elasticity((10, 10))[0])],
                         ids=["poisson2d", "poisson3d", "elasticity"])
def test_gauss_seidel_cycle_is_pyamgs_cycle(A):
    """Our cycle over our levels equals pyamg's V-cycle (forward / backward Gauss-Seidel, pinv coarse
    solve) over pyamg's solver object built from the same levels, to rounding, and is symmetric."""
    ours = gauss_seidel_cycle(hierarchy(A))
    ml = ruge_stuben(A)
    rng = np.random.default_rng(1)
    for _ in range(3):
        b = rng.standard_normal(A.shape[0])
        ref = ml.solve(b, x0=np.zeros_like(b), maxiter=1, cycle="V", tol=1e-300)
        got = ours(b)
        assert np.linalg.norm(got - ref) <= 1e3 * EPS * np.linalg.norm(ref)
    x, y = rng.standard_normal((2, A.shape[0]))
    assert abs(x @ ours(y) - y @ ours(x)) <= 1e3 * EPS * np.linalg.norm(x) * np.linalg.norm(ours(y))


def test_hierarchy_levels_are_ruge_stubens():
    A = poisson(40, 40)
    mine, theirs = hierarchy(A), ruge_stuben(A)
    assert len(mine.levels) == len(theirs.levels)
    assert mine.operator_complexity() == pytest.approx(theirs.operator_complexity(), rel=1e-15)
    assert mine.grid_complexity() == pytest.approx(theirs.grid_complexity(), rel=1e-15)
    for a, b in zip(mine.levels, theirs.levels):
        assert (a.A != b.A).nnz == 0


def test_strength_drops_the_diagonal_and_explicit_zeros():
    """theta = 0 makes every stored off-diagonal entry strong, explicit zeros included by pyamg's
    kernel; the strength matrix holds only the nonzero off-diagonal entries, the diagonal (a zero one
    too) never."""
    dense = np.array([[4.0, -1.0, 0.0, -2.0],
                      [-1.0, 0.0, -1.0, 0.0],
                      [0.0, -1.0, 4.0, 0.0],
                      [-2.0, 0.0, 0.0, 4.0]])
    coo = sp.coo_matrix(dense)
    rows, cols, vals = list(coo.row), list(coo.col), list(coo.data)
    rows += [0, 2, 1]
    cols += [2, 0, 1]
    vals += [0.0, 0.0, 0.0]  # explicit zeros off the diagonal and a zero diagonal entry
    A = sp.csr_matrix((vals, (rows, cols)), shape=(4, 4))
    A.sort_indices()
    assert A.nnz == 12 and A.has_canonical_format
    for theta in (0.0, 0.25):
        S = strength(A, theta)
        expected = (dense != 0) & ~np.eye(4, dtype=bool)
        if theta > 0:  # row 0: |-1| >= 0.25 * 2 and |-2|; the others' only neighbours
            expected &= np.abs(dense) >= theta * np.abs(dense - np.diag(np.diag(dense))).max(axis=1, keepdims=True)
        np.testing.assert_array_equal(S.toarray() != 0, expected)
        assert S.nnz == int(expected.sum()) and np.all(S.data != 0)
        np.testing.assert_array_equal(S.toarray()[expected], dense[expected])


def test_a_solve_with_amg_rs_never_imports_pyamgs_package():
    code = (
        "import sys, numpy as np, scipy.sparse as sp\n"
        "from matcli.methods.solve import solvers\n"
        "n = 40\n"
        "T = sp.diags([-np.ones(n - 1), 2 * np.ones(n), -np.ones(n - 1)], [-1, 0, 1])\n"
        "A = sp.csr_matrix(sp.kron(sp.eye(n), T) + sp.kron(T, sp.eye(n)))\n"
        "b = np.ones(n * n)\n"
        "s = solvers.prepare_cg(A, params={}, precond_name='amg-rs', symmetric=True)\n"
        "r = s.solve(A, b, rtol=1e-10)\n"
        "assert np.linalg.norm(b - A @ r.outputs['x']) <= 1e-10 * np.linalg.norm(b)\n"
        "print('pyamg' in sys.modules, 'pyamg.amg_core.ruge_stuben' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "True"]


def test_other_cycles_still_use_pyamgs_solver():
    A = poisson(20, 20)
    pc = precond.amg(A, "rs", True, np.random.default_rng(0), cycle="W")
    b = np.ones(A.shape[0])
    z = pc.apply(b[:, None])[:, 0]
    assert np.all(np.isfinite(z)) and z @ b > 0


def test_pyamg_imported_after_our_loader_reuses_the_modules():
    """Loading a kernel first, then importing pyamg: pyamg's package binds the same module objects and
    its own solvers work."""
    code = (
        "import numpy as np\n"
        "from matcli.methods.solve.ruge_stuben import amg_core\n"
        "mine = amg_core('ruge_stuben'), amg_core('relaxation')\n"
        "import pyamg, pyamg.amg_core as core\n"
        "assert core.ruge_stuben is mine[0] and core.relaxation is mine[1]\n"
        "A = pyamg.gallery.poisson((30, 30), format='csr')\n"
        "x = pyamg.ruge_stuben_solver(A).solve(A @ np.ones(900), tol=1e-10)\n"
        "print(float(np.abs(x - 1).max()))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert float(out.stdout) < 1e-7


@pytest.mark.parametrize("kind", ["rs", "sa"])
def test_minres_replaces_an_indefinite_multilevel_cycle(kind, tmp_path):
    """A shifted 2-D Laplacian (symmetric indefinite, positive diagonal, several AMG levels): the
    cycle is indefinite, MINRES meets r^H M^-1 r < 0 and the solve falls back to |diag A| scaling."""
    import json

    import matcli

    T = sp.diags([-np.ones(19), 2 * np.ones(20), -np.ones(19)], [-1, 0, 1])
    A = sp.csr_matrix(sp.kronsum(T, T) - sp.eye(400))
    assert np.linalg.eigvalsh(A.toarray())[0] < 0 < A.diagonal().min()
    b = np.ones(400)
    out = matcli.solve(A, b, method="minres", precond=f"amg-{kind}", output=str(tmp_path / "x.h5"),
                       report=str(tmp_path / "r.json"), seed=0)
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["problem"]["setup"]["preconditioner"] == "jacobi"
    assert f"amg-{kind} is not positive definite" in report["method_reason"]
    assert np.linalg.norm(b - A @ out.arrays["x"]) <= 1e-8 * np.linalg.norm(b)
