"""MatrixMarket reader and writer.

The fast path is :func:`scipy.io.mmread` (fast_matrix_market inside). Files it rejects but the
format allows (vectors, blank or comment lines between data lines) go through a tolerant
parser that enforces the same rules: counts, 1-based indices in range, parseable values.
Every failure becomes an :class:`InputError` that names the file and the defect.
"""

from __future__ import annotations

import gzip
import io
import os
from dataclasses import dataclass

import numpy as np
import scipy.io
import scipy.sparse as sp

from matcli.core.errors import InputError, OutputError

OBJECTS = ("matrix", "vector")
FORMATS = ("coordinate", "array")
FIELDS = ("real", "double", "integer", "complex", "pattern")
SYMMETRIES = ("general", "symmetric", "skew-symmetric", "hermitian")


@dataclass(frozen=True)
class Header:
    """The banner of a MatrixMarket file."""

    object: str
    format: str
    field: str
    symmetry: str


def _open_text(path: str) -> io.TextIOBase:
    if path.lower().endswith(".gz"):
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", errors="replace")
    return open(path, encoding="utf-8", errors="replace")


def read_header(path: str) -> Header:
    """Parse and check the banner line; raise InputError on a missing or malformed banner."""
    try:
        with _open_text(path) as fh:
            first = fh.readline()
    except (OSError, EOFError) as exc:
        raise InputError(path, f"cannot read file ({getattr(exc, 'strerror', None) or exc})") from None
    line = first.strip()
    if not line.startswith("%") or "matrixmarket" not in line.split()[0].lower():
        raise InputError(path, "not a MatrixMarket file (missing '%%MatrixMarket' banner on line 1)")
    tokens = [t.lower() for t in line.split()[1:]]
    if len(tokens) != 4:
        raise InputError(path, f"malformed MatrixMarket banner {line!r}: expected object format field symmetry")
    obj, fmt, field, sym = tokens
    for value, allowed, what in ((obj, OBJECTS, "object"), (fmt, FORMATS, "format"),
                                 (field, FIELDS, "field"), (sym, SYMMETRIES, "symmetry")):
        if value not in allowed:
            raise InputError(path, f"invalid MatrixMarket {what} {value!r} (allowed: {', '.join(allowed)})")
    if obj == "vector" and sym != "general":
        raise InputError(path, f"a MatrixMarket vector cannot be {sym}")
    if field == "pattern" and fmt == "array":
        raise InputError(path, "pattern field is not allowed with array format")
    return Header(obj, fmt, "real" if field == "double" else field, sym)


def read_mtx(path: str, *, finite: bool = True) -> np.ndarray | sp.csr_matrix:
    """Read a MatrixMarket file (``.mtx`` or ``.mtx.gz``).

    Returns
    -------
    numpy.ndarray or scipy.sparse.csr_matrix
        ``array`` files give a dense 2-D array, ``coordinate`` files a CSR matrix with duplicates
        summed; vectors give an (n, 1) array. Symmetric, skew-symmetric and hermitian storage is
        expanded. dtype float64 (integer and pattern fields) or complex128.

    With ``finite`` (default) values that are NaN/Inf, or overflow float64, are an input error;
    ``finite=False`` reads them as they are (the format allows ``nan`` and ``inf``).
    """
    if not os.path.exists(path):
        raise InputError(path, "file not found")
    if os.path.isdir(path):
        raise InputError(path, "is a directory, expected a MatrixMarket file")
    header = read_header(path)
    if header.object == "vector":
        matrix = _read_tolerant(path, header)
    else:
        try:
            matrix = scipy.io.mmread(path)
        except (ValueError, OverflowError):
            matrix = _read_tolerant(path, header)
        except (OSError, EOFError) as exc:
            raise InputError(path, f"cannot read file ({exc})") from None
    return _finish(path, matrix, finite)


def _finish(path: str, matrix, finite: bool) -> np.ndarray | sp.csr_matrix:
    if sp.issparse(matrix):
        matrix = sp.csr_matrix(matrix)
        matrix.sum_duplicates()
        values = matrix.data
    else:
        matrix = np.asarray(matrix)
        values = matrix
    if values.dtype.kind in "iub":
        if values.size and np.abs(values).max() > 2**53:
            raise InputError(path, "integer values exceed the exactly representable float64 range")
        values = values.astype(np.float64)
    elif values.dtype.kind == "f" and values.dtype != np.float64:
        values = values.astype(np.float64)
    if finite and values.size and not np.isfinite(values).all():
        raise InputError(path, "values are NaN/Inf or overflow float64")
    if sp.issparse(matrix):
        matrix.data = values
        return matrix
    return values


def _data_lines(path: str) -> tuple[list[str], list[int]]:
    """Non-comment, non-blank lines after the banner, with their 1-based line numbers."""
    lines, numbers = [], []
    with _open_text(path) as fh:
        for number, raw in enumerate(fh, start=1):
            if number == 1:
                continue
            text = raw.strip()
            if not text or text.startswith("%"):
                continue
            lines.append(text)
            numbers.append(number)
    return lines, numbers


def _parse_int(path: str, token: str, line: int, what: str) -> int:
    try:
        value = int(token)
    except ValueError:
        raise InputError(path, f"line {line}: {what} {token!r} is not an integer") from None
    if abs(value) >= 2**63:
        raise InputError(path, f"line {line}: {what} {token} overflows a 64-bit integer")
    return value


def _parse_values(path: str, tokens: list[list[str]], numbers: list[int], field: str) -> np.ndarray:
    width = 2 if field == "complex" else 1
    for toks, line in zip(tokens, numbers):
        if len(toks) != width:
            raise InputError(path, f"line {line}: expected {width} value(s), found {len(toks)}")
    try:
        if field == "integer":
            for toks, line in zip(tokens, numbers):
                _parse_int(path, toks[0], line, "value")
            return np.array([float(int(t[0])) for t in tokens], dtype=np.float64)
        if field == "complex":
            return np.array([complex(float(a), float(b)) for a, b in tokens], dtype=np.complex128)
        return np.array([float(t[0]) for t in tokens], dtype=np.float64)
    except ValueError:
        for toks, line in zip(tokens, numbers):
            for tok in toks:
                try:
                    float(tok)
                except ValueError:
                    raise InputError(path, f"line {line}: invalid {field} value {tok!r}") from None
        raise


def _read_tolerant(path: str, header: Header):
    lines, numbers = _data_lines(path)
    if not lines:
        raise InputError(path, "missing size line after the banner")
    size = lines[0].split()
    size_line = numbers[0]
    expected = {("matrix", "coordinate"): 3, ("matrix", "array"): 2,
                ("vector", "coordinate"): 2, ("vector", "array"): 1}[(header.object, header.format)]
    if len(size) != expected:
        raise InputError(path, f"line {size_line}: size line needs {expected} integers, found {len(size)}")
    dims = [_parse_int(path, tok, size_line, "size") for tok in size]
    if any(d < 0 for d in dims):
        raise InputError(path, f"line {size_line}: negative size {' '.join(size)}")
    body, body_numbers = lines[1:], numbers[1:]
    if header.object == "vector":
        nrows, ncols = dims[0], 1
        count = dims[1] if header.format == "coordinate" else nrows
    elif header.format == "coordinate":
        nrows, ncols, count = dims
    else:
        nrows, ncols = dims
        if header.symmetry != "general" and nrows != ncols:
            raise InputError(path, f"{header.symmetry} array storage needs a square matrix, got {nrows}x{ncols}")
        count = _array_count(nrows, ncols, header.symmetry)
    if len(body) < count:
        raise InputError(path, f"file truncated: expected {count} data lines, found {len(body)}")
    if len(body) > count:
        raise InputError(path, f"line {body_numbers[count]}: more data lines than the {count} declared")
    tokens = [line.split() for line in body]
    if header.format == "array":
        values = _parse_values(path, tokens, body_numbers, header.field)
        return _expand_array(values, nrows, ncols, header.symmetry)
    nidx = 1 if header.object == "vector" else 2
    rows = np.zeros(count, dtype=np.int64)
    cols = np.zeros(count, dtype=np.int64)
    value_tokens = []
    for k, (toks, line) in enumerate(zip(tokens, body_numbers)):
        if len(toks) < nidx:
            raise InputError(path, f"line {line}: truncated entry")
        rows[k] = _parse_int(path, toks[0], line, "row index")
        if nidx == 2:
            cols[k] = _parse_int(path, toks[1], line, "column index")
        else:
            cols[k] = 1
        if not 1 <= rows[k] <= nrows:
            raise InputError(path, f"line {line}: row index {rows[k]} outside 1..{nrows}")
        if not 1 <= cols[k] <= ncols:
            raise InputError(path, f"line {line}: column index {cols[k]} outside 1..{ncols}")
        value_tokens.append(toks[nidx:])
    if header.field == "pattern":
        for toks, line in zip(value_tokens, body_numbers):
            if toks:
                raise InputError(path, f"line {line}: pattern entries carry no value")
        values = np.ones(count, dtype=np.float64)
    else:
        values = _parse_values(path, value_tokens, body_numbers, header.field)
    rows -= 1
    cols -= 1
    rows, cols, values = _expand_symmetry(rows, cols, values, header.symmetry)
    matrix = sp.coo_matrix((values, (rows, cols)), shape=(nrows, ncols))
    if header.object == "vector":
        return matrix.toarray()
    return matrix


def _array_count(nrows: int, ncols: int, symmetry: str) -> int:
    if symmetry == "general":
        return nrows * ncols
    n = nrows
    return n * (n - 1) // 2 if symmetry == "skew-symmetric" else n * (n + 1) // 2


def _expand_array(values: np.ndarray, nrows: int, ncols: int, symmetry: str) -> np.ndarray:
    """Column-major array entries to a dense matrix; symmetric kinds store the lower triangle."""
    if symmetry == "general":
        return values.reshape((ncols, nrows)).T.copy()
    n = nrows
    out = np.zeros((n, n), dtype=values.dtype)
    offset = -1 if symmetry == "skew-symmetric" else 0
    cols, rows = _lower_colmajor(n, offset)
    out[rows, cols] = values
    mirror = rows != cols
    if symmetry == "symmetric":
        out[cols[mirror], rows[mirror]] = values[mirror]
    elif symmetry == "skew-symmetric":
        out[cols[mirror], rows[mirror]] = -values[mirror]
    else:
        out[cols[mirror], rows[mirror]] = np.conj(values[mirror])
    return out


def _lower_colmajor(n: int, offset: int) -> tuple[np.ndarray, np.ndarray]:
    """(cols, rows) of the lower triangle (strict when ``offset`` is -1) in column-major order."""
    rows, cols = np.tril_indices(n, k=offset)
    order = np.lexsort((rows, cols))
    return cols[order], rows[order]


def _expand_symmetry(rows, cols, values, symmetry):
    if symmetry == "general":
        return rows, cols, values
    off = rows != cols
    if symmetry == "symmetric":
        mirrored = values[off]
    elif symmetry == "skew-symmetric":
        mirrored = -values[off]
    else:
        mirrored = np.conj(values[off])
    return (np.concatenate([rows, cols[off]]), np.concatenate([cols, rows[off]]),
            np.concatenate([values, mirrored]))


def write_mtx(path: str, matrix, comment: str = "") -> None:
    """Write a dense or sparse matrix (1-D arrays become one column) in MatrixMarket format."""
    data = matrix
    if not sp.issparse(data):
        data = np.asarray(data)
        if data.ndim == 1:
            data = data[:, None]
    try:
        scipy.io.mmwrite(path, data, comment=comment)
    except OSError as exc:
        raise OutputError(path, f"cannot write ({exc.strerror})") from None
