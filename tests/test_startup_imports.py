"""Start-up stays cheap: a run imports its own subcommand's module and the numerical packages its job
uses, nothing else (issue #22). Each case runs in a fresh interpreter and reads ``sys.modules`` after
the command, so an eager import added anywhere on the path makes it fail. No timings here: those are
in benchmarks/bench_startup.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import h5py
import numpy as np
import pytest
import scipy.sparse

#: never needed by the small runs below (multigrid, progress bars and tables, iterative sparse solvers)
NEVER = ("pyamg", "rich", "dask", "distributed", "zarr", "matplotlib")
OTHER_SUBCOMMANDS = ("complete", "predict", "sketch_regress", "factorize", "info", "generate", "methods", "run")


def _imports_after(argv: list[str]) -> tuple[int, set[str]]:
    """Run ``matcli <argv>`` in a fresh interpreter; its exit code and the modules imported by then."""
    code = ("import json, sys\n"
            "from matcli.cli.app import main\n"
            "rc = main(sys.argv[1:])\n"
            "print(json.dumps({'rc': rc, 'modules': sorted(sys.modules)}))\n")
    proc = subprocess.run([sys.executable, "-c", code, *map(str, argv)], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    state = json.loads(proc.stdout.strip().splitlines()[-1])
    return state["rc"], set(state["modules"])


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """An 8x8 SPD system, dense and as CSR, in one HDF5 file; and its exact solution."""
    folder = tmp_path_factory.mktemp("tiny")
    rng = np.random.default_rng(22)
    G = rng.standard_normal((8, 8))
    A = G @ G.T + 8 * np.eye(8)
    x = rng.standard_normal(8)
    path = folder / "tiny.h5"
    with h5py.File(path, "w") as fh:
        fh["A"] = A
        fh["b"] = A @ x
        csr = scipy.sparse.csr_matrix(A)
        group = fh.create_group("S")
        group.attrs["encoding-type"], group.attrs["encoding-version"] = "csr_matrix", "0.1.0"
        group.attrs["shape"] = csr.shape
        group["data"], group["indices"], group["indptr"] = csr.data, csr.indices, csr.indptr
    return folder, path, x


def _solution(path) -> np.ndarray:
    with h5py.File(path, "r") as fh:
        return fh["x"][()]


def test_dense_tiny_solve_imports_only_what_it_uses(tiny):
    folder, path, x = tiny
    out = folder / "x_dense.h5"
    rc, modules = _imports_after(["solve", f"{path}:/A", "--rhs", f"{path}:/b", "-o", out, "--quiet", "--force"])
    assert rc == 0
    # cond(A) < 10 here, so a backward-stable solve is accurate to a few hundred eps
    np.testing.assert_allclose(_solution(out), x, rtol=0, atol=1e3 * np.finfo(float).eps * np.abs(x).max())
    assert not [name for name in NEVER if name in modules]
    # dense input: scipy.sparse (through core/lazy_sparse) and its iterative solvers stay unloaded
    assert "scipy.sparse" not in modules and "scipy.sparse.linalg" not in modules
    # an SPD system of order <= direct.NUMPY_CHOLESKY_MAX: numpy's potrf, no scipy.linalg
    assert "scipy.linalg" not in modules
    assert not [name for name in OTHER_SUBCOMMANDS if f"matcli.cli.{name}" in modules]


#: what a tiny sparse solve (read densely, solved by numpy's LAPACK) must not import
SCIPY_SOLVERS = ("scipy.sparse", "scipy.sparse.linalg", "scipy.linalg", "scipy.io")


@pytest.mark.parametrize("matrix", ["S", "mtx"])
def test_sparse_tiny_solve_imports_no_scipy_solvers(tiny, matrix):
    """A square sparse input of order <= the densify order is read as a dense array by numpy alone and
    solved by numpy's LAPACK: neither scipy.sparse nor scipy.linalg (nor scipy's MatrixMarket reader)
    is loaded, and the report says why."""
    folder, path, x = tiny
    if matrix == "mtx":
        with h5py.File(path, "r") as fh:
            A = fh["A"][()]
        spec = folder / "tiny.mtx"
        rows, cols = np.tril_indices(8)
        lines = [f"{i + 1} {j + 1} {float(A[i, j])!r}" for i, j in zip(rows, cols)]
        spec.write_text("%%MatrixMarket matrix coordinate real symmetric\n8 8 36\n" + "\n".join(lines) + "\n")
    else:
        spec = f"{path}:/S"
    out, report = folder / f"x_{matrix}.h5", folder / f"report_{matrix}.json"
    rc, modules = _imports_after(["solve", spec, "--rhs", f"{path}:/b", "-o", out, "--quiet", "--force",
                                  "--report", report])
    assert rc == 0
    np.testing.assert_allclose(_solution(out), x, rtol=0, atol=1e3 * np.finfo(float).eps * np.abs(x).max())
    assert not [name for name in (*NEVER, *SCIPY_SOLVERS) if name in modules]
    written = json.loads(report.read_text())
    assert written["method"] == "cholesky" and written["problem"]["setup"]["backend"] == "lapack potrf (numpy)"
    assert "read as a dense array" in written["method_reason"]
    assert written["problem"]["input_storage"].endswith("read densely")


def test_sparse_solve_above_the_densify_order_stays_sparse(tmp_path):
    """One order above the bound the input stays a sparse matrix (SuperLU), so scipy.sparse is loaded."""
    from matcli.methods.solve.direct import NUMPY_CHOLESKY_MAX, NUMPY_LU_MAX

    n = min(NUMPY_LU_MAX, NUMPY_CHOLESKY_MAX) + 1
    A = scipy.sparse.diags([-1.0, 2.5, -1.0], [-1, 0, 1], shape=(n, n), format="csr")
    path = tmp_path / "big.h5"
    with h5py.File(path, "w") as fh:
        group = fh.create_group("S")
        group.attrs["encoding-type"], group.attrs["encoding-version"] = "csr_matrix", "0.1.0"
        group.attrs["shape"] = A.shape
        group["data"], group["indices"], group["indptr"] = A.data, A.indices, A.indptr
    report = tmp_path / "report.json"
    rc, modules = _imports_after(["solve", f"{path}:/S", "-o", tmp_path / "x.h5", "--quiet", "--report", report])
    assert rc == 0
    assert "scipy.sparse" in modules
    assert "input_storage" not in json.loads(report.read_text())["problem"]


def test_lazy_sparse_answers_issparse_without_importing_scipy_sparse():
    code = ("import sys\n"
            "import numpy as np\n"
            "from matcli.core.lazy_sparse import sp\n"
            "answers = [sp.issparse(np.eye(2)), sp.issparse([[1.0]]), sp.issparse(None)]\n"
            "print(answers, 'scipy.sparse' in sys.modules)\n"
            "matrix = sp.csr_matrix(np.eye(2))\n"
            "import scipy.sparse\n"
            "print(sp.issparse(matrix), sp.issparse(scipy.sparse.coo_array(np.eye(2))), sp.issparse(np.eye(2)),\n"
            "      sp.csr_matrix is scipy.sparse.csr_matrix)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    first, second = proc.stdout.strip().splitlines()
    assert first == "[False, False, False] False"
    assert second == "True True False True"


def test_command_modules_load_on_lookup_only():
    code = ("import sys\n"
            "import typer\n"
            "from matcli.cli.app import COMMANDS, app\n"
            "group = typer.main.get_command(app)\n"
            "names = list(group.commands)\n"
            "before = [m for m in sys.modules if m.startswith('matcli.cli.') and m.split('.')[-1] in\n"
            "          {module for module, _ in COMMANDS.values()}]\n"
            "command = group.commands['factorize']\n"
            "print(names == list(COMMANDS), before, command.name, 'matcli.cli.factorize' in sys.modules,\n"
            "      group.commands.get('no-such-command'))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert proc.stdout.strip() == "True [] factorize True None"


def test_dense_tiny_svd_imports_no_iterative_sparse_solvers(tiny):
    """A small dense matrix gets LAPACK's dense SVD: ARPACK/PROPACK (scipy.sparse.linalg) stay unloaded."""
    folder, path, _ = tiny
    out = folder / "svd.h5"
    rc, modules = _imports_after(["factorize", f"{path}:/A", "-o", out, "--quiet", "--force"])
    assert rc == 0
    with h5py.File(path, "r") as fh:
        A = fh["A"][()]
    with h5py.File(out, "r") as fh:
        s = fh["s"][()]
    np.testing.assert_allclose(s, np.linalg.svd(A, compute_uv=False), rtol=1e3 * np.finfo(float).eps)
    assert "scipy.sparse.linalg" not in modules
    assert not [name for name in NEVER if name in modules]


@pytest.mark.parametrize("variable, given, expected", [
    ("OPENBLAS_THREAD_TIMEOUT", None, "26"), ("OPENBLAS_THREAD_TIMEOUT", "20", "20"),
    ("NUMPY_MADVISE_HUGEPAGE", None, "0"), ("NUMPY_MADVISE_HUGEPAGE", "1", "1")])
def test_console_script_sets_native_library_variables_before_numpy_loads(variable, given, expected):
    # OpenBLAS reads OPENBLAS_THREAD_TIMEOUT (its idle spin) and numpy NUMPY_MADVISE_HUGEPAGE once,
    # when numpy loads: the console entry must set them before anything imports numpy, and leave a
    # value the user set alone
    code = ("import os, sys\n"
            "import matcli.cli.entry as entry\n"
            "before = 'numpy' in sys.modules\n"
            "import matcli.cli.signals as signals\n"
            f"signals.exit_process = lambda code: print(before, os.environ['{variable}'], code)\n"
            "sys.argv = ['matcli', '--version']\n"
            "entry.console_main()\n")
    env = {k: v for k, v in os.environ.items() if k != variable}
    if given is not None:
        env[variable] = given
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == f"False {expected} 0"
