"""From the parsed data lines of a MatrixMarket file to its matrix, checking what the lines mean.

Every check is vectorized over all entries; only when one fails is the offending entry's line found
(``locate``, which reads the file again) so that the error can name it. Checks: indices within the
declared size; symmetric and hermitian files store the lower triangle only, skew-symmetric files
the strict lower triangle; a hermitian diagonal is real; integer values are exact in float64;
values are finite unless asked otherwise.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from matcli.core.errors import InputError
from matcli.core.lazy_sparse import sp
from matcli.io.mtx_body import Columns
from matcli.io.mtx_grammar import show

#: ``locate(k)`` gives (line number, line text) of the ``k``-th (0-based) data line.
Locate = Callable[[int], tuple[int, bytes]]
EXACT_INTEGER = 2**53


def _fail(path: str, locate: Locate, bad: np.ndarray, defect: Callable[[int], str]) -> None:
    """Raise for the first True entry of ``bad`` (if any); ``defect(k)`` words it."""
    hits = np.flatnonzero(bad)
    if hits.size:
        k = int(hits[0])
        number, _ = locate(k)
        raise InputError(path, f"line {number}: {defect(k)}")


def entry_values(path: str, entries: Columns, field: str, finite: bool, locate: Locate) -> np.ndarray:
    """The values of the entries as float64 (pattern: ones) or complex128."""
    if field == "pattern":
        return np.ones(len(entries["i0"]))
    if field == "integer":
        raw = entries["v0"]
        _fail(path, locate, np.abs(raw) > EXACT_INTEGER,
              lambda k: f"integer value {raw[k]} is not exactly representable in float64 (|v| > 2^53)")
        return raw.astype(np.float64)
    if field == "complex":
        values = np.empty(len(entries["v0"]), dtype=np.complex128)
        values.real, values.imag = entries["v0"], entries["v1"]
    else:
        values = np.ascontiguousarray(entries["v0"])
    if finite and values.size and not np.isfinite(values).all():
        _fail(path, locate, ~np.isfinite(values),
              lambda k: f"value {show(locate(k)[1].split()[-1])} is NaN, Inf or overflows float64 "
                        "(matcli needs finite values)")
    return values


def check_indices(path: str, index: np.ndarray, size: int, what: str, locate: Locate) -> np.ndarray:
    """``index`` (0-based) after checking every one lies in 0..size-1; messages say 1-based."""
    if index.size and (index.min() < 0 or index.max() >= size):
        _fail(path, locate, (index < 0) | (index >= size), lambda k: f"{what} {index[k] + 1} outside 1..{size}")
    return index


def check_triangle(path: str, rows: np.ndarray, cols: np.ndarray, values: np.ndarray, symmetry: str,
                   locate: Locate) -> None:
    """Symmetric kinds store the lower triangle (strictly lower for skew, real diagonal for hermitian)."""
    if symmetry == "general":
        return
    entry = lambda k: f"entry ({rows[k] + 1}, {cols[k] + 1})"  # noqa: E731
    _fail(path, locate, rows < cols,
          lambda k: f"{entry(k)} lies above the diagonal; a {symmetry} file stores only the lower triangle")
    if symmetry == "skew-symmetric":
        _fail(path, locate, rows == cols,
              lambda k: f"{entry(k)} lies on the diagonal; a skew-symmetric matrix has a zero diagonal "
                        "and its file stores only the strict lower triangle")
    if symmetry == "hermitian" and np.iscomplexobj(values):
        _fail(path, locate, (rows == cols) & (values.imag != 0),
              lambda k: f"diagonal {entry(k)} has imaginary part {float(values[k].imag):g}; a hermitian "
                        "matrix has a real diagonal")


def expand_symmetry(rows: np.ndarray, cols: np.ndarray, values: np.ndarray, symmetry: str):
    """Add the mirror image of every off-diagonal entry (negated for skew, conjugated for hermitian)."""
    if symmetry == "general":
        return rows, cols, values
    off = rows != cols
    mirrored = {"symmetric": values[off], "skew-symmetric": -values[off],
                "hermitian": np.conj(values[off])}[symmetry]
    return (np.concatenate([rows, cols[off]]), np.concatenate([cols, rows[off]]),
            np.concatenate([values, mirrored]))


def coordinate_entries(path: str, entries: Columns, shape: tuple[int, int], field: str, symmetry: str,
                       finite: bool, locate: Locate) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rows, cols, values) of a ``matrix coordinate`` file's entries, checked, with the mirror image
    of a symmetric kind's triangle added; duplicates not yet summed."""
    rows = check_indices(path, entries["i0"], shape[0], "row index", locate)
    cols = check_indices(path, entries["i1"], shape[1], "column index", locate)
    values = entry_values(path, entries, field, finite, locate)
    check_triangle(path, rows, cols, values, symmetry, locate)
    return expand_symmetry(rows, cols, values, symmetry)


def coordinate_matrix(path: str, entries: Columns, shape: tuple[int, int], field: str, symmetry: str,
                      finite: bool, locate: Locate) -> sp.csr_matrix:
    """CSR matrix (duplicates summed, indices sorted) of a ``matrix coordinate`` file's entries."""
    rows, cols, values = coordinate_entries(path, entries, shape, field, symmetry, finite, locate)
    matrix = sp.coo_matrix((values, (rows, cols)), shape=shape).tocsr()
    matrix.sum_duplicates()
    return matrix


def coordinate_vector(path: str, entries: Columns, length: int, field: str, finite: bool,
                      locate: Locate) -> np.ndarray:
    """(length, 1) array of a ``vector coordinate`` file (duplicates summed)."""
    index = check_indices(path, entries["i0"], length, "index", locate)
    values = entry_values(path, entries, field, finite, locate)
    out = np.bincount(index, weights=values.real, minlength=length)
    if np.iscomplexobj(values):
        out = out + 1j * np.bincount(index, weights=values.imag, minlength=length)
    return out[:, None]


def array_matrix(path: str, entries: Columns, shape: tuple[int, int], field: str, symmetry: str,
                 finite: bool, locate: Locate) -> np.ndarray:
    """Dense matrix of an ``array`` file: column-major values, the lower triangle for symmetric kinds."""
    values = entry_values(path, entries, field, finite, locate)
    nrows, ncols = shape
    if symmetry == "general":
        return values.reshape((ncols, nrows)).T.copy()
    cols, rows = _lower_colmajor(nrows, -1 if symmetry == "skew-symmetric" else 0)
    check_triangle(path, rows, cols, values, symmetry, locate)
    out = np.zeros(shape, dtype=values.dtype)
    out[rows, cols] = values
    rows, cols, values = expand_symmetry(rows, cols, values, symmetry)
    out[rows, cols] = values
    return out


def _lower_colmajor(n: int, offset: int) -> tuple[np.ndarray, np.ndarray]:
    """(cols, rows) of the lower triangle (strict when ``offset`` is -1) in column-major order."""
    rows, cols = np.tril_indices(n, k=offset)
    order = np.lexsort((rows, cols))
    return cols[order], rows[order]
