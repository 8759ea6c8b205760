"""Intel MKL PARDISO through ``pypardiso`` as a sparse direct backend (extra ``matcli[pardiso]``).

Matrix types: ``lu`` real nonsymmetric (mtype 11: weighted matching and scaling, then LU with pivoting
inside supernodes); ``cholesky`` real symmetric positive definite (mtype 2, no pivoting: a
non-positive pivot stops it); ``ldl`` real symmetric indefinite (mtype -2: Bunch-Kaufman 1x1 / 2x2
pivots inside supernodes, matching and scaling). The ordering is METIS nested dissection.
Symmetric types store the upper triangle with every diagonal entry (zeros too), as PARDISO requires.

Where supernode pivoting meets a pivot below ``10^-13 ||A||`` (``10^-8`` symmetric) PARDISO
perturbs it instead of stopping; ``info["perturbed_pivots"]`` counts them. Such factors are of a
nearby matrix, not of A: :func:`matcli.methods.solve.direct.factorize` then refactors by the exact
pivoting of SuperLU / LAPACK, so an exactly singular matrix is reported as SuperLU reports it.
pypardiso solves real systems only; complex matrices are a usage error here.

MKL is loaded after the job's thread limit was set (threadpoolctl limits only the libraries loaded
at that moment), so each PARDISO call runs with MKL's threads set to the other BLAS pools' count
(:func:`threads_as_blas`): ``--threads`` holds for PARDISO too.
"""

from __future__ import annotations

import os
import weakref
from contextlib import contextmanager
from typing import Any, Iterator

import numpy as np
import scipy.sparse as sp

from matcli.core.errors import UsageError
from matcli.core.result import Status
from matcli.methods.solve.sparse_direct.common import (ADVICE, NOT_SPD_ADVICE, SINGULAR, Factors, empty_lines,
                                                       failed, real_block_solver)

#: PARDISO matrix type of each kind.
MTYPE = {"lu": 11, "cholesky": 2, "ldl": -2}
#: PARDISO's error codes that are facts about the matrix or the machine, not about our call.
ZERO_PIVOT, OUT_OF_MEMORY = -4, -2
#: pypardiso passes 32-bit indices to PARDISO.
MAX_STORED = 2**31 - 1


def stored_matrix(M, kind: str) -> sp.csr_matrix:
    """The CSR matrix PARDISO reads: all of ``M`` for ``lu``; for the symmetric kinds the strict upper
    triangle plus the whole diagonal (explicit zeros included), sorted indices."""
    if kind == "lu":
        csr = sp.csr_matrix(M, dtype=np.float64, copy=True)
    else:
        n = M.shape[0]
        upper = sp.triu(M, k=1, format="coo")
        idx = np.arange(n)
        csr = sp.csr_matrix((np.concatenate([upper.data, M.diagonal()]),
                             (np.concatenate([upper.row, idx]), np.concatenate([upper.col, idx]))),
                            shape=M.shape, dtype=np.float64)
    csr.sort_indices()
    return csr


def _configure(solver, kind: str) -> None:
    """PARDISO's iparm (1-based, as in MKL's documentation) for ``kind``."""
    symmetric = kind != "lu"
    settings = {
        1: 1,                      # use the values below, not the defaults
        2: 2,                      # METIS nested dissection ordering
        8: 0,                      # refinement steps: automatic (two when pivots were perturbed)
        10: 8 if symmetric else 13,  # perturb pivots below 10^-value ||A||
        11: 0 if kind == "cholesky" else 1,  # scaling (with matching below)
        13: 0 if kind == "cholesky" else 1,  # maximum weighted matching
        18: -1,                    # report the factors' nonzeros in iparm(18)
        19: -1,                    # report the factorization's Mflops in iparm(19)
        21: 1,                     # symmetric indefinite: Bunch-Kaufman 1x1 and 2x2 pivots
        24: 0, 25: 0, 27: 0, 28: 0, 35: 0,
    }
    for index, value in settings.items():
        solver.set_iparm(index, value)


@contextmanager
def threads_as_blas() -> Iterator[int | None]:
    """Within the block MKL uses as many threads as the other BLAS pools (the smallest of their
    counts; MKL's own count when it is the only one); yields that count (None: MKL not loaded)."""
    from threadpoolctl import ThreadpoolController

    controller = ThreadpoolController()
    mkl = controller.select(internal_api="mkl")
    others = [info["num_threads"] for info in controller.info()
              if info["internal_api"] != "mkl" and info["user_api"] == "blas"]
    if not mkl.lib_controllers or not others:
        yield None if not mkl.lib_controllers else mkl.info()[0]["num_threads"]
        return
    count = min(others)
    with mkl.limit(limits=count):
        yield count


def _new_solver(mtype: int):
    """A PARDISO handle of matrix type ``mtype``.

    Each PyPardisoSolver looks for MKL's runtime by a recursive glob of the environment (0.15 s here)
    unless ``PYPARDISO_MKL_RT`` names it; the import already found it (``pypardiso.ps``), so later
    handles are told where it is instead of searching again.
    """
    try:
        import pypardiso
    except ImportError as exc:
        raise UsageError(f"the pardiso backend needs pypardiso and MKL ({' '.join(str(exc).split())}); "
                         "install the extra: pip install 'matcli[pardiso]'") from None
    os.environ.setdefault("PYPARDISO_MKL_RT", pypardiso.ps.libmkl._name)
    return pypardiso.PyPardisoSolver(mtype=mtype)


def factor(M, kind: str) -> Factors:
    """PARDISO factors of square sparse real ``M`` for ``kind`` in ``lu``, ``cholesky``, ``ldl``.

    Fails with ``DIVERGED_SINGULAR`` on a row or column without nonzeros or a zero pivot PARDISO could
    not perturb, with ``DIVERGED_NOT_SPD`` when a Cholesky pivot is not positive; MemoryError when
    MKL runs out of memory. ``info`` adds ``perturbed_pivots``, ``factor_memory_bytes`` (MKL's peak
    for the analysis, or its factors plus solve workspace, whichever is larger) and, for ``ldl``,
    ``inertia`` as PARDISO counts it.
    """
    if kind not in MTYPE:
        raise ValueError(f"PARDISO factors {', '.join(MTYPE)}, not {kind!r}")
    if np.iscomplexobj(M):
        raise UsageError("the pardiso backend (pypardiso) factors real matrices only; "
                         "the superlu backend factors complex ones")
    info: dict[str, Any] = {"backend": "pardiso", "ordering": "METIS nested dissection", "matrix_type": MTYPE[kind]}
    not_spd = kind == "cholesky"
    empty = empty_lines(M)
    if empty:
        status = Status.DIVERGED_NOT_SPD if not_spd else Status.DIVERGED_SINGULAR
        what = f"{empty} rows/columns without a nonzero entry"
        return failed(info, status, (f"the matrix is not positive definite ({what}); {NOT_SPD_ADVICE}" if not_spd
                                     else f"{SINGULAR}: an exactly zero pivot ({what}); {ADVICE}"))
    stored = stored_matrix(M, kind)
    if stored.nnz > MAX_STORED:
        raise UsageError(f"the pardiso backend takes at most {MAX_STORED} stored entries (pypardiso's 32-bit "
                         f"indices), this matrix has {stored.nnz}; use the superlu backend")
    from pypardiso.pardiso_wrapper import PyPardisoError

    solver = _new_solver(MTYPE[kind])
    _configure(solver, kind)
    try:
        with threads_as_blas():
            solver.factorize(stored)
    except PyPardisoError as exc:
        solver.free_memory(everything=True)
        if exc.value == OUT_OF_MEMORY:
            raise MemoryError("PARDISO ran out of memory (error -2)") from None
        if exc.value != ZERO_PIVOT:
            raise RuntimeError(f"PARDISO failed with error {exc.value}") from None
        if not_spd:
            return failed(info, Status.DIVERGED_NOT_SPD,
                          f"the matrix is not positive definite (PARDISO met a non-positive pivot); {NOT_SPD_ADVICE}")
        return failed(info, Status.DIVERGED_SINGULAR, f"{SINGULAR}: a zero pivot (PARDISO error -4); {ADVICE}")
    iparm = solver.get_iparm
    factor_nnz = int(iparm(18))
    info.update({"factor_nnz": factor_nnz, "fill_ratio": float(factor_nnz / max(M.nnz, 1)),
                 "factor_flops": float(iparm(19)) * 1e6, "perturbed_pivots": int(iparm(14)),
                 "factor_memory_bytes": 1024 * max(int(iparm(15)), int(iparm(16)) + int(iparm(17)))})
    if kind == "ldl":
        positive, negative = int(iparm(22)), int(iparm(23))
        info["inertia"] = {"positive": positive, "negative": negative, "zero": M.shape[0] - positive - negative}

    def solve_real(B: np.ndarray) -> np.ndarray:
        with threads_as_blas():
            X = solver.solve(stored, np.asfortranarray(B, dtype=np.float64))
        return np.asarray(X).reshape(B.shape)

    solve = real_block_solver(solve_real)
    weakref.finalize(solve, solver.free_memory, True)
    return Factors(solve, info)
