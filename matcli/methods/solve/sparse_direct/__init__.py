"""Sparse direct factorizations behind one interface, one module per library.

Each backend module has ``factor(A, kind, ...) -> Factors``: ``A`` is square, sparse, already
equilibrated and in the compute dtype (float64 / complex128); ``kind`` is ``lu``, ``cholesky`` or
``ldl``. The factors solve any number of right-hand sides (``Factors.solve``, all columns per call),
and fail the way SuperLU does: ``DIVERGED_SINGULAR`` on an exactly zero pivot, ``DIVERGED_NOT_SPD``
on a non-positive Cholesky pivot; running out of memory raises :class:`MemoryError`.

- :mod:`.superlu`  scipy's SuperLU (always present; LU with partial pivoting, Cholesky as LU in
  symmetric mode with diagonal pivots);
- :mod:`.pardiso`  Intel MKL PARDISO through ``pypardiso`` (extra ``matcli[pardiso]``; real matrices;
  LU, Cholesky and LDL^T);
- :mod:`.cholmod`  SuiteSparse CHOLMOD through ``scikit-sparse`` (extra ``matcli[cholmod]``, which needs
  the SuiteSparse >= 7 headers to build; Cholesky only).

:mod:`.choose` says which are installed and which is fastest (:func:`best_direct_backend`).
"""

from matcli.methods.solve.sparse_direct.choose import (BACKENDS, available, best_direct_backend,
                                                        require)
from matcli.methods.solve.sparse_direct.common import Factors

__all__ = ["BACKENDS", "Factors", "available", "best_direct_backend", "require"]
