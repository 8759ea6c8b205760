"""Same seed, same inputs, same thread count: byte-identical output files, for every registered method.

Each case runs twice in this process through :func:`matcli.cli.app.main` with ``--seed 7 --threads 1``.
NumPy's global generator is seeded differently before each run, so a method that draws from it
(instead of the job's seeded Generator) changes its output and fails here; so does the available
memory that the default memory budget comes from, so a machine fact recorded in the output fails too.
A few cases also run in two fresh processes with different hash seeds and two threads (set and
dict ordering of strings, thread-count-dependent reductions at an equal thread count). The HDF5 writer stores
no timestamps (h5py creates datasets without ``track_times``), so whole files are compared byte for
byte: datasets, attributes (``params``, ``metrics``, ``status``, ``seed``) and layout at once.
"""

from __future__ import annotations

import json

import os
import subprocess
import sys

import numpy as np
import pytest
import scipy.sparse as sp

from matcli.core.registry import all_specs
from matcli.io.hdf5 import write_arrays
from matcli.io.writers import write_mtx_file
from tests.conftest import REPO, run_cli

KRYLOV_PRECONDS = ("none", "jacobi", "ic", "amg-sa", "amg-rs", "chebyshev")
SKETCH_KINDS = ("countsketch", "sparse-sign", "srht", "gaussian", "leverage")


@pytest.fixture(scope="module")
def problems(tmp_path_factory):
    """Small inputs of every family (paths by name), written once for the module."""
    root = tmp_path_factory.mktemp("determinism")
    paths = {}
    for name, args in {
        "poisson": ["poisson2d", "--n", "10"],
        "batch": ["batch", "--n", "8", "--count", "4"],
        "regression": ["regression", "--rows", "600", "--cols", "12", "--noise", "0.01", "--heavy-rows", "3"],
        "completion": ["completion", "--rows", "50", "--cols", "40", "--rank", "3", "--rate", "0.4",
                       "--noise", "0.01", "--test-fraction", "0.1"],
        "tall": ["regression", "--rows", "40000", "--cols", "20"],
    }.items():
        paths[name] = root / f"{name}.h5"
        assert run_cli(["generate", *args, "-o", paths[name], "--seed", "1"]).exit_code == 0
    rng = np.random.default_rng(2)
    full = rng.random((46, 8)) @ rng.random((8, 34)) + 0.01 * rng.random((46, 34))
    indefinite = sp.diags(np.arange(-15.0, 15.0) + 0.5) + sp.random(30, 30, 0.1, random_state=3)
    paths["matrix"] = root / "matrix.h5"
    write_arrays(str(paths["matrix"]), {"A": full[:40, :30], "R": full[40:, :30], "C": full[:40, 30:],
                                        "S": (indefinite + indefinite.T).tocsr(),
                                        "N": sp.csr_matrix(full[:40, :30]),
                                        "X": np.random.default_rng(5).random((40, 3)),
                                        "Y": np.random.default_rng(6).random((30, 3))})
    paths["nonsymmetric"] = root / "west.mtx"
    write_mtx_file(str(paths["nonsymmetric"]), "mtx", sp.random(40, 40, 0.15, random_state=4) + 4 * sp.eye(40))
    return paths


def _solve_cases():
    cases = [[method] for method in ("auto", "lu", "cholesky", "ldl", "lstsq", "lsqr", "lsmr", "sor", "ssor")]
    cases += [["cg", precond] for precond in KRYLOV_PRECONDS]
    cases += [["minres", precond] for precond in ("none", "jacobi", "amg-sa", "chebyshev")]
    cases += [["block-cg", precond] for precond in ("none", "amg-rs")]
    cases += [[method, precond] for method in ("gmres", "bicgstab") for precond in ("none", "ilu", "amg-sa", "amg-rs")]
    return cases


def _solve_args(p, case):
    method, *precond = case
    args = ["solve", f"{p['poisson']}:/A", "--method", method, "--rhs", "random", "--nrhs", "2"]
    return args + (["--precond", precond[0]] if precond else [])


BATCH = [["cg", "--recycle", "3"], ["gmres", "--recycle", "2", "--precond", "amg-sa"], ["sor"], ["lu"],
         ["minres", "--precond", "amg-rs"]]
COMPLETE = [["--method", m] for m in ("als", "als-exact", "softimpute", "scaledgd", "robust")]
COMPLETE += [["--method", "bpmf", "--maxiter", "10", "--param", "samples=4", "--param", "burnin=2"],
             ["--method", "bpmf-implicit", "--param", "samples=4", "--param", "burnin=2"],
             ["--method", "als", "--param", "init=random", "--validate", "0.2"],
             ["--method", "auto", "--rank", "auto", "--maxiter", "8"],
             ["--method", "softimpute", "--reg", "auto", "--maxiter", "8"]]
SKETCH = [["--mode", mode, "--sketch", kind] for mode in ("precondition", "refine") for kind in SKETCH_KINDS]
SKETCH += [["--mode", "sketch-and-solve", "--eps", "0.5", "--sketch", kind] for kind in SKETCH_KINDS]
SKETCH += [["--mode", "auto"], ["--mode", "auto", "--eps", "0.3", "--ridge", "auto"], ["--mode", "lapack"]]
FACTORIZE = [
    ["A", "svd", m, "--rank", "4"] for m in ("randomized", "block-krylov", "lanczos", "arpack", "propack", "dense")
] + [
    ["A", "svd", "randomized", "--rank", "auto", "--tol", "0.05"],
    ["A", "svd", "tsqr", "--rank", "4"], ["tall", "svd", "tsqr", "--rank", "auto", "--tol", "0.5"],
    ["A", "svd", "randomized", "--rank", "4", "--param", "precision=float32"],
    ["N", "nmf", "hals", "--rank", "3"], ["N", "nmf", "mu", "--rank", "3", "--param", "init=random"],
    ["N", "nmf", "robust", "--rank", "3"],
    ["A", "cur", "leverage", "--rank", "4", "--param", "sampling=random"], ["A", "cur", "pivoted-qr", "--rank", "auto"],
    ["A", "qr", "dense"], ["A", "lu", "dense"], ["S", "lu", "sparse"], ["S", "ldl", "dense"],
    ["poisson", "cholesky", "dense"], ["poisson", "cholesky", "sparse"],
    ["S", "eig", "dense"], ["S", "eig", "arpack", "--rank", "3"], ["nonsymmetric", "eig", "arpack", "--rank", "3"],
    ["A", "rpca", "ialm"], ["A", "rpca", "subgradient", "--rank", "4"],
]


def _factorize_args(p, case):
    matrix, kind, method, *rest = case
    spec = {"A": f"{p['matrix']}:/A", "N": f"{p['matrix']}:/N", "S": f"{p['matrix']}:/S",
            "poisson": f"{p['poisson']}:/A", "nonsymmetric": str(p["nonsymmetric"]),
            "tall": f"{p['tall']}:/A"}[matrix]
    return ["factorize", spec, "--kind", kind, "--method", method, *rest]


def _twice(args, tmp_path, monkeypatch=None):
    """Run ``args`` twice and return both output files' bytes. NumPy's global state is seeded
    differently before each run, and so is the available memory that the default budget comes from."""
    outputs = []
    for run in range(2):
        out = tmp_path / f"out{run}.h5"
        np.random.seed(1000 + run)
        if monkeypatch is not None:
            monkeypatch.setattr("matcli.core.memory.available_memory", lambda: (3 + run) * 2**30)
        result = run_cli([*map(str, args), "-o", out, "--seed", "7", "--threads", "1", "--quiet"])
        assert result.exit_code == 0, result.stderr
        outputs.append(out.read_bytes())
    return outputs


@pytest.mark.parametrize("case", _solve_cases(), ids=lambda c: "-".join(c))
def test_solve(problems, tmp_path, case):
    first, second = _twice(_solve_args(problems, case), tmp_path)
    assert first == second


@pytest.mark.parametrize("case", BATCH, ids=lambda c: "-".join(c))
def test_solve_batch(problems, tmp_path, case):
    first, second = _twice(["solve", f"{problems['batch']}:/systems", "--batch", "--method", *case], tmp_path)
    assert first == second


@pytest.mark.parametrize("case", COMPLETE, ids=lambda c: "-".join(c))
def test_complete(problems, tmp_path, case):
    first, second = _twice(["complete", f"{problems['completion']}:/observed", "--rank", "3", *case,
                            "--test", f"{problems['completion']}:/test"], tmp_path)
    assert first == second


@pytest.mark.parametrize("case", SKETCH, ids=lambda c: "-".join(c))
def test_sketch(problems, tmp_path, monkeypatch, case):
    p = problems["regression"]
    first, second = _twice(["sketch-regress", f"{p}:/A", f"{p}:/b", *case], tmp_path, monkeypatch)
    assert first == second


@pytest.mark.parametrize("case", FACTORIZE, ids=lambda c: "-".join(c))
def test_factorize(problems, tmp_path, case):
    first, second = _twice(_factorize_args(problems, case), tmp_path)
    assert first == second


@pytest.mark.parametrize("flag, block", [("--append-rows", "R"), ("--append-cols", "C"), ("--update-lowrank", "X,Y")])
def test_svd_update(problems, tmp_path, flag, block):
    p = problems["matrix"]
    previous = tmp_path / "previous.h5"
    assert run_cli(["factorize", f"{p}:/A", "--kind", "svd", "--method", "dense", "--rank", "5", "-o", previous,
                    "--quiet"]).exit_code == 0
    spec = ",".join(f"{p}:/{name}" for name in block.split(","))
    first, second = _twice(["factorize", f"{p}:/A", "--update", previous, flag, spec,
                            "--param", "complement_rank=2"], tmp_path)
    assert first == second


def test_every_registered_method_is_exercised():
    """A method added to the registry without a case here fails this test."""
    covered = {("solve", c[0]) for c in _solve_cases() + BATCH}
    covered |= {("complete", c[1]) for c in COMPLETE} | {("complete", "auto")}
    covered |= {("sketch", c[1]) for c in SKETCH} - {("sketch", "auto")}
    covered |= {("factorize", f"{c[1]}-{c[2]}") for c in FACTORIZE} | {("factorize", "svd-update")}
    registered = {(spec.family, spec.name) for spec in all_specs()}
    assert registered <= covered


@pytest.mark.parametrize("case", ["solve", "sketch", "lanczos"])
def test_fresh_processes_with_two_threads(problems, tmp_path, case):
    p = problems
    args = {"solve": ["solve", f"{p['poisson']}:/A", "--method", "cg", "--precond", "amg-sa"],
            "sketch": ["sketch-regress", f"{p['regression']}:/A", f"{p['regression']}:/b"],
            "lanczos": ["factorize", f"{p['matrix']}:/A", "--kind", "svd", "--method", "lanczos", "--rank", "4"]}[case]
    outputs = []
    for run in range(2):
        out = tmp_path / f"out{run}.h5"
        env = {**os.environ, "PYTHONHASHSEED": str(run)}
        subprocess.run([sys.executable, "-m", "matcli", *map(str, args), "-o", str(out), "--seed", "7",
                        "--threads", "2", "--quiet"], cwd=REPO, env=env, check=True, timeout=120)
        outputs.append(out.read_bytes())
    assert outputs[0] == outputs[1]


def test_streamed_sketch_regress_ignores_the_resident_memory(problems, tmp_path, monkeypatch):
    p = problems["tall"]
    outputs = []
    for run in range(2):
        # two resident sizes within one of the plan's 8 MiB steps
        monkeypatch.setattr("matcli.jobs.sketch.resident_memory_bytes", lambda run=run: (49 + 5 * run) * 2**20)
        out, report = tmp_path / f"out{run}.h5", tmp_path / f"r{run}.json"
        result = run_cli(["sketch-regress", f"{p}:/A", f"{p}:/b", "--max-memory", "70M", "--sketch-size", "400",
                          "--seed", "7", "--threads", "1", "-o", out, "--report", report, "--quiet"])
        assert result.exit_code == 0, result.stderr
        assert json.loads(report.read_text())["problem"]["row_blocks"] > 1  # streamed, in several blocks
        outputs.append(out.read_bytes())
    assert outputs[0] == outputs[1]
