"""Sparse entries read from a file, made into a dense array with numpy alone.

A small sparse input (a CSR/CSC group, a coordinate MatrixMarket file) that a job will solve densely
is built here instead of through ``scipy.sparse``: importing scipy.sparse costs a process about as
much CPU as numpy's own import, far more than reading and solving a matrix of a few hundred rows.
The entries have passed the reader's checks (indices within the shape, finite values) before they
get here.
"""

from __future__ import annotations

import numpy as np

from matcli.io.guard import check_allocation, current_policy

#: copies of the dense form a dense solve holds at once (the matrix, its equilibrated copy, the
#: factors, a residual product's temporary), each counted as complex128
DENSE_COPIES = 4


def dense_solve_fits(shape: tuple[int, int]) -> bool:
    """Whether a dense solve of an (m, n) matrix fits the memory budget with room to spare
    (``DENSE_COPIES`` complex128 copies): a sparse input is read densely only then, so a budget the
    sparse path meets is never refused because of the dense one."""
    return DENSE_COPIES * 16 * float(shape[0]) * shape[1] <= current_policy().budget


def dense_from_entries(path: str, shape: tuple[int, int], rows: np.ndarray, cols: np.ndarray, values: np.ndarray,
                       what: str) -> np.ndarray:
    """The (m, n) array holding ``values`` at (``rows``, ``cols``) (0-based, checked to lie within
    ``shape``), zeros elsewhere; entries at one position are summed in storage order, as
    ``scipy.sparse``'s ``toarray`` sums duplicates. dtype that of ``values``.

    Raises :class:`~matcli.core.errors.ResourceError` when the dense form (``what`` names it in the
    message) exceeds the memory budget.
    """
    m, n = shape
    check_allocation(path, float(m) * n * values.dtype.itemsize, f"{what} as a dense {m} x {n} array")
    out = np.zeros((m, n), dtype=values.dtype)
    np.add.at(out, (rows, cols), values)
    return out


def dense_from_compressed(path: str, shape: tuple[int, int], data: np.ndarray, indices: np.ndarray,
                          indptr: np.ndarray, *, by_rows: bool, what: str) -> np.ndarray:
    """:func:`dense_from_entries` of a CSR (``by_rows``) or CSC matrix's arrays, checked: ``indptr``
    consistent with ``data``, ``indices`` within the minor dimension."""
    major = np.repeat(np.arange(indptr.size - 1), np.diff(indptr))
    rows, cols = (major, indices) if by_rows else (indices, major)
    return dense_from_entries(path, shape, rows, cols, data, what)
