"""Ruge-Stuben coarsening (classical AMG setup) with direct interpolation, on pyamg's C++ kernels.

The hierarchy is the one ``pyamg.ruge_stuben_solver(A, interpolation="direct")`` builds with its
default strength (classical, ``|a_ij| >= theta max_{k != i} |a_ik|``, theta 0.25), splitting (RS,
one pass) and coarse size (10): the same C/F splittings and the same interpolation operators
(checked in tests/test_multigrid.py). Only the Python around the kernels differs. pyamg forms a
strength matrix with the diagonal, removes the diagonal, rescales the rows, removes it again inside
the splitting, then copies it and multiplies it entrywise by ``A`` for the interpolation; here one
vectorised pass over ``A`` gives the strength pattern without the diagonal and carrying ``A``'s
values, which is what both kernels read. On the 2-D Poisson matrix of 1e6 unknowns this removes
about a third of pyamg's setup time. The kernels are loaded without pyamg's package (:func:`amg_core`),
and :func:`hierarchy` returns plain levels; :func:`ruge_stuben` wraps them in pyamg's solver object.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

import numpy as np

from matcli.core.lazy_sparse import sp

#: pyamg's defaults for ``ruge_stuben_solver``.
THETA = 0.25
MAX_COARSE = 10
MAX_LEVELS = 30


def amg_core(name: str):
    """pyamg's compiled module ``pyamg.amg_core.<name>`` (``ruge_stuben``, ``relaxation``, ...).

    Loaded from its file without running pyamg's package initialisation, which imports pyamg's
    gallery, scipy.io and scipy.linalg (~0.15 s, a tenth of a 1e6-unknown Poisson run's CPU). The
    module is registered under its own name, so a later ``import pyamg`` reuses it.
    """
    qualified = f"pyamg.amg_core.{name}"
    if qualified in sys.modules:
        return sys.modules[qualified]
    import importlib.machinery
    import importlib.util
    from pathlib import Path

    package = importlib.util.find_spec("pyamg")  # locates the package without executing it
    if package is None or package.origin is None:
        raise ModuleNotFoundError("pyamg is not installed")
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        path = Path(package.origin).parent / "amg_core" / f"{name}{suffix}"
        if path.is_file():
            spec = importlib.util.spec_from_file_location(qualified, path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[qualified] = module
            spec.loader.exec_module(module)
            return module
    import importlib

    return importlib.import_module(qualified)  # an unusual layout: the ordinary import


@dataclass
class Level:
    """One level of a hierarchy: operator ``A``; for all but the coarsest, interpolation ``P``,
    restriction ``R = P^T`` and the C/F ``splitting`` (True for C points)."""

    A: sp.csr_matrix
    P: sp.csr_matrix | None = None
    R: sp.csr_matrix | None = None
    splitting: np.ndarray | None = None


@dataclass
class Hierarchy:
    """Ruge-Stuben levels, finest first (the attributes of pyamg's ``MultilevelSolver`` that the
    cycles read: ``levels[i].A``, ``.P``, ``.R``)."""

    levels: list[Level] = field(default_factory=list)

    def operator_complexity(self) -> float:
        """Sum of the levels' nonzeros over the finest level's (pyamg's definition)."""
        return sum(level.A.nnz for level in self.levels) / max(self.levels[0].A.nnz, 1)

    def grid_complexity(self) -> float:
        """Sum of the levels' unknowns over the finest level's (pyamg's definition)."""
        return sum(level.A.shape[0] for level in self.levels) / max(self.levels[0].A.shape[0], 1)


def strength(A: sp.csr_matrix, theta: float = THETA) -> sp.csr_matrix:
    """Classical strength of connection: ``S_ij = a_ij`` where ``j != i`` and
    ``0 < |a_ij| >= theta max_{k != i} |a_ik|``, no diagonal.

    Parameters
    ----------
    A : (n, n) CSR matrix (real).
    theta : threshold in [0, 1].

    Returns
    -------
    (n, n) CSR matrix with the pattern of the strong connections and ``A``'s values on it.
    """
    n = A.shape[0]
    indptr = np.empty_like(A.indptr)
    indices = np.empty_like(A.indices)
    data = np.empty_like(A.data)
    # pyamg's kernel keeps the diagonal (and, for theta 0, explicit zeros): both become zeros that
    # scipy's in-place compaction removes (one pass, no copies of the index arrays)
    amg_core("ruge_stuben").classical_strength_of_connection_abs(n, theta, A.indptr, A.indices, A.data,
                                                                  indptr, indices, data)
    nnz = int(indptr[-1])
    indices, data = indices[:nnz], data[:nnz]
    rows = np.repeat(np.arange(n, dtype=indices.dtype), np.diff(indptr))
    data[indices == rows] = 0
    S = sp.csr_matrix((data, indices, indptr), shape=A.shape)
    S.eliminate_zeros()
    return S


def split(S: sp.csr_matrix) -> np.ndarray:
    """Ruge-Stuben C/F splitting (first pass) of the strength matrix ``S``: 1 for C, 0 for F points."""
    n = S.shape[0]
    T = S.tocsc()  # the CSC arrays of S are the CSR arrays of S^T (who depends on whom)
    splitting = np.empty(n, dtype=S.indptr.dtype)
    influence = np.zeros(n, dtype=S.indptr.dtype)
    amg_core("ruge_stuben").rs_cf_splitting(n, S.indptr, S.indices, T.indptr, T.indices, influence, splitting)
    return splitting


def direct_interpolation(A: sp.csr_matrix, S: sp.csr_matrix, splitting: np.ndarray) -> sp.csr_matrix:
    """(n, n_coarse) direct interpolation from the C points over the strong connections ``S``."""
    kernels = amg_core("ruge_stuben")
    n = A.shape[0]
    indptr = np.empty_like(A.indptr)
    kernels.rs_direct_interpolation_pass1(n, S.indptr, S.indices, splitting, indptr)
    indices = np.empty(indptr[-1], dtype=indptr.dtype)
    data = np.empty(indptr[-1], dtype=A.dtype)
    kernels.rs_direct_interpolation_pass2(n, A.indptr, A.indices, A.data, S.indptr, S.indices, S.data,
                                           splitting, indptr, indices, data)
    return sp.csr_matrix((data, indices, indptr), shape=(n, int(np.count_nonzero(splitting))))


def hierarchy(A, *, theta: float = THETA, max_coarse: int = MAX_COARSE,
              max_levels: int = MAX_LEVELS) -> Hierarchy:
    """Ruge-Stuben levels with direct interpolation for real square ``A`` (pyamg's kernels only).

    Levels are added while the coarsest has more than ``max_coarse`` unknowns, up to ``max_levels``,
    and stop early when a splitting makes every point C or every point F. ``R = P^T``, coarse
    operators ``R A P`` with sorted indices.
    """
    A = sp.csr_matrix(A, dtype=np.result_type(A.dtype, np.float64))
    if not A.has_sorted_indices:
        A = A.sorted_indices()  # the splitting breaks ties in the order of each row's entries
    levels = [Level(A)]
    while len(levels) < max_levels and A.shape[0] > max_coarse:
        S = strength(A, theta)
        splitting = split(S)
        coarse = int(np.count_nonzero(splitting))
        if coarse in (0, A.shape[0]):
            break
        P = direct_interpolation(A, S, splitting)
        del S
        R = P.T.tocsr()
        levels[-1].P, levels[-1].R, levels[-1].splitting = P, R, splitting.astype(bool)
        A = sp.csr_matrix((R @ A) @ P)
        A.sort_indices()
        levels.append(Level(A))
    return Hierarchy(levels)


def ruge_stuben(A, *, theta: float = THETA, max_coarse: int = MAX_COARSE, max_levels: int = MAX_LEVELS,
                presmoother=("gauss_seidel", {"sweep": "forward"}),
                postsmoother=("gauss_seidel", {"sweep": "backward"})):
    """pyamg ``MultilevelSolver`` over :func:`hierarchy`'s levels, with the given smoothers; the
    coarsest level is solved with a pseudo-inverse (pyamg's default)."""
    from pyamg.multilevel import MultilevelSolver
    from pyamg.relaxation.smoothing import change_smoothers

    levels = []
    for mine in hierarchy(A, theta=theta, max_coarse=max_coarse, max_levels=max_levels).levels:
        level = MultilevelSolver.Level()
        level.A = mine.A
        if mine.P is not None:
            level.P, level.R, level.splitting = mine.P, mine.R, mine.splitting
        levels.append(level)
    ml = MultilevelSolver(levels, coarse_solver="pinv")
    change_smoothers(ml, presmoother, postsmoother)
    return ml
