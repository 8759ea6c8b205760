"""Run ``matcli factorize`` on an in-memory matrix and read back its factors and report (contract tests)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

from conftest import run_cli
from matcli.io.hdf5 import write_arrays
from matcli.io.load import read_matrix

EPS = float(np.finfo(np.float64).eps)


@pytest.fixture(autouse=True)
def one_blas_thread():
    """Reference computations in the test process on one BLAS thread too (see :func:`factorize`);
    import this fixture into a test module to apply it there."""
    with threadpool_limits(1):
        yield


@dataclass
class Run:
    exit_code: int
    stderr: str
    report: dict[str, Any] | None
    arrays: dict[str, Any]

    @property
    def status(self) -> str:
        return self.report["status"]["reason"] if self.report else "none"

    @property
    def converged(self) -> bool:
        return bool(self.report and self.report["status"]["converged"])

    @property
    def metrics(self) -> dict[str, float]:
        return self.report["metrics"] if self.report else {}


def factorize(tmp_path: Path, A, *args, seed: int = 0, strict: bool = False) -> Run:
    """``matcli factorize A.h5:/A *args -o f.h5 --report r.json``; ``A`` dense or scipy.sparse.

    Returns the exit code, stderr, the JSON report and every array of the output file (sparse
    groups as scipy.sparse matrices).
    """
    path, out, rep = tmp_path / "A.h5", tmp_path / "f.h5", tmp_path / "r.json"
    for stale in (path, out, rep):
        stale.unlink(missing_ok=True)
    write_arrays(str(path), {"A": A})
    # one BLAS thread: the contract is about answers, and small products on a loaded machine are
    # tens of times slower with threads waiting for cores
    cmd = ["factorize", f"{path}:/A", *map(str, args), "-o", out, "--report", rep, "--quiet", "--seed", seed,
           "--threads", 1]
    result = run_cli(cmd + (["--strict"] if strict else []))
    report = json.loads(rep.read_text()) if rep.exists() else None
    arrays: dict[str, Any] = {}
    if out.exists():
        with h5py.File(out, "r") as fh:
            names = list(fh.keys())
            dense = {name: fh[name][()] for name in names if isinstance(fh[name], h5py.Dataset)}
        arrays.update(dense)
        for name in set(names) - set(dense):
            arrays[name] = read_matrix(f"{out}:/{name}")
    return Run(result.exit_code, result.stderr, report, arrays)


def dense(A) -> np.ndarray:
    """``A`` as a dense complex128 array (reference computations)."""
    return (A.toarray() if sp.issparse(A) else np.asarray(A)).astype(np.complex128)


def orthonormality_error(Q: np.ndarray) -> float:
    """``max |Q^H Q - I|`` (entrywise, as scipy's ``assert_allclose(uh_u, I)``)."""
    k = Q.shape[1]
    return float(np.max(np.abs(Q.conj().T @ Q - np.eye(k)))) if k else 0.0
