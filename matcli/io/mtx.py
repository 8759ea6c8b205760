"""MatrixMarket reader (writing is :mod:`matcli.io.writers`).

Reading never trusts the file: the banner and size line are checked first (a symmetric ``array``
must be square, sizes must be integers below 2^63), then the declared sizes are checked against
the file's length (a plain file too short to hold them) and the memory budget
(:func:`matcli.io.guard.check_allocation`) before anything is allocated. The data lines are read
strictly, in bounded pieces (:mod:`matcli.io.mtx_source`, :mod:`matcli.io.mtx_body`), and what they
mean is checked vectorized (:mod:`matcli.io.mtx_build`). Every failure is an :class:`InputError`
(exit 4) naming the file and, where one is to blame, the 1-based line, or a
:class:`~matcli.core.errors.ResourceError` (exit 7) when the declared sizes exceed the budget.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

import numpy as np

from matcli.core.errors import InputError
from matcli.core.lazy_sparse import sp
from matcli.io import mtx_build
from matcli.io.densify import dense_from_entries
from matcli.io.guard import check_allocation, regular_file
from matcli.io.mtx_body import locate_entry, read_entries
from matcli.io.mtx_grammar import SEPARATOR, Layout, integer_defect, is_comment_or_blank
from matcli.io.mtx_source import LineSource

OBJECTS = ("matrix", "vector")
FORMATS = ("coordinate", "array")
FIELDS = ("real", "double", "integer", "complex", "pattern")
SYMMETRIES = ("general", "symmetric", "skew-symmetric", "hermitian")
#: ``%%MatrixMarket``; one ``%`` and leading blanks are tolerated (files in the wild have them).
BANNER = re.compile(rb"[ \t]*%+matrixmarket", re.IGNORECASE)
#: Text a file may hold beyond its data lines (comments, blank lines), plus this much per entry.
SLACK_BYTES = 16 * 2**20
BYTES_PER_ENTRY = 1024
#: Up to this many data lines loadtxt reads as fast as scipy's C reader (measured: 100000 lines in
#: 0.03 s against 0.02 s), less than importing scipy.io costs, so a small file read densely uses it.
LOADTXT_MAX_ENTRIES = 250_000


@dataclass(frozen=True)
class Header:
    """The banner of a MatrixMarket file."""

    object: str
    format: str
    field: str
    symmetry: str


@dataclass(frozen=True)
class Declared:
    """What the banner and size line promise: the shape, the data lines and what each holds."""

    header: Header
    shape: tuple[int, int]
    count: int
    layout: Layout
    size_line: int


def parse_banner(path: str, line: bytes | None) -> Header:
    """Check the banner line (``None``: empty file); raise InputError when it is missing or malformed."""
    if line is None or not BANNER.match(line):
        raise InputError(path, "line 1: not a MatrixMarket file (missing '%%MatrixMarket' banner)")
    text = line.decode("latin-1").strip()
    tokens = [t.lower() for t in text.split()[1:]]
    if len(tokens) != 4:
        raise InputError(path, f"line 1: malformed MatrixMarket banner {text[:80]!r}: expected "
                               "'%%MatrixMarket object format field symmetry'")
    obj, fmt, field, sym = tokens
    for value, allowed, what in ((obj, OBJECTS, "object"), (fmt, FORMATS, "format"),
                                 (field, FIELDS, "field"), (sym, SYMMETRIES, "symmetry")):
        if value not in allowed:
            raise InputError(path, f"line 1: invalid MatrixMarket {what} {value[:40]!r} "
                                   f"(allowed: {', '.join(allowed)})")
    if obj == "vector" and sym != "general":
        raise InputError(path, f"line 1: a MatrixMarket vector cannot be {sym}")
    if field == "pattern" and fmt == "array":
        raise InputError(path, "line 1: pattern field is not allowed with array format")
    return Header(obj, fmt, "real" if field == "double" else field, sym)


def read_header(path: str) -> Header:
    """Parse and check the banner line; raise InputError on a missing or malformed banner."""
    regular_file(path)
    with LineSource(path) as source:
        first = source.next_line()
        return parse_banner(path, None if first is None else first[1])


def read_declared(path: str, source: LineSource) -> Declared:
    """Banner, comments and size line of ``source``; checks the sizes are consistent."""
    first = source.next_line()
    header = parse_banner(path, None if first is None else first[1])
    while True:
        numbered = source.next_line()
        if numbered is None:
            raise InputError(path, f"file ends after line {source.line} without the size line")
        number, line = numbered
        if not is_comment_or_blank(line):
            break
    coordinate = header.format == "coordinate"
    vector = header.object == "vector"
    names = {(False, True): ["rows", "columns", "entries"], (False, False): ["rows", "columns"],
             (True, True): ["length", "entries"], (True, False): ["length"]}[(vector, coordinate)]
    tokens = SEPARATOR.split(line.rstrip(b"\r").strip(b" \t"))
    if len(tokens) != len(names):
        raise InputError(path, f"line {number}: size line needs {len(names)} integers "
                               f"({' '.join(names)}), found {len(tokens)}")
    dims = []
    for token, name in zip(tokens, names):
        defect = integer_defect(token, name)
        if defect:
            raise InputError(path, f"line {number}: {defect}")
        if int(token) < 0:
            raise InputError(path, f"line {number}: negative {name} {int(token)}")
        dims.append(int(token))
    shape = (dims[0], 1) if vector else (dims[0], dims[1])
    if header.symmetry != "general" and shape[0] != shape[1]:
        raise InputError(path, f"line {number}: a {header.symmetry} matrix must be square, "
                               f"the size line declares {shape[0]} x {shape[1]}")
    if coordinate:
        count = dims[-1]
    elif header.symmetry == "general":
        count = shape[0] * shape[1]
    else:
        n = shape[0]
        count = n * (n - 1) // 2 if header.symmetry == "skew-symmetric" else n * (n + 1) // 2
    layout = Layout(indices=(1 if vector else 2) if coordinate else 0, field=header.field)
    return Declared(header, shape, count, layout, number)


def needed_bytes(declared: Declared) -> int:
    """Peak bytes the read takes for what the file declares: parsed lines plus the result."""
    parsed = declared.count * declared.layout.dtype.itemsize
    item = 16 if declared.header.field == "complex" else 8
    rows, cols = declared.shape
    if declared.header.format == "array" or declared.header.object == "vector":
        # symmetric kinds place their triangle through index arrays: rows, cols, sort order, mirror
        triangle = 0 if declared.header.symmetry == "general" else 4 * 8 * declared.count
        return parsed + rows * cols * item + triangle
    entries = declared.count * (1 if declared.header.symmetry == "general" else 2)
    coo = entries * (8 + 8 + item)
    csr = (rows + 1) * 8 + entries * (8 + item)
    return parsed + coo + csr


def check_declared(path: str, declared: Declared, remaining: int | None) -> None:
    """The declared entries fit in the ``remaining`` bytes of a plain file and in the memory budget.

    A data line of w fields takes at least 2w - 1 bytes (a digit per field, a separator or the
    newline after each but the last line).
    """
    if remaining is not None:
        most = (remaining + 1) // (2 * declared.layout.width) if declared.layout.width else 0
        if declared.count > most:
            raise InputError(path, f"line {declared.size_line}: declares {declared.count} entries but the "
                                   f"{remaining} bytes after it hold at most {most}")
    rows, cols = declared.shape
    check_allocation(path, needed_bytes(declared),
                     f"the {rows} x {cols} {declared.header.format} matrix with {declared.count} entries it declares")


def read_mtx(path: str, *, finite: bool = True) -> np.ndarray | sp.csr_matrix:
    """Read a MatrixMarket file (``.mtx`` or ``.mtx.gz``).

    Returns
    -------
    numpy.ndarray or scipy.sparse.csr_matrix
        ``array`` files give a dense 2-D array, ``coordinate`` files a CSR matrix with duplicates
        summed and sorted indices; vectors give an (n, 1) array. Symmetric, skew-symmetric and
        hermitian storage is expanded. dtype float64 (integer and pattern fields) or complex128.

    With ``finite`` (default) values that are NaN/Inf, or overflow float64, are an input error;
    ``finite=False`` reads them as they are (the format allows ``nan`` and ``inf``).

    Raises
    ------
    InputError
        The file is not a regular file, is malformed (the message names the line), or does not
        hold what its size line declares.
    ResourceError
        The declared sizes need more memory than the budget of the current input policy.
    """
    return _read(path, finite, None)[0]


def read_mtx_densified(path: str, densify: Callable[[tuple[int, int]], bool], *,
                       finite: bool = True) -> tuple[np.ndarray | sp.csr_matrix, bool]:
    """:func:`read_mtx`, except that a ``matrix coordinate`` file whose declared shape ``densify``
    accepts is returned as a dense array (duplicates summed) built by numpy alone, its data lines
    read by loadtxt (:func:`~matcli.io.mtx_body.read_entries` without ``fast``) when it declares at
    most ``LOADTXT_MAX_ENTRIES``: a small file is read without importing scipy. The same checks and
    errors as :func:`read_mtx`, plus the dense form's size against the budget. Returns the matrix
    and whether a coordinate file was densified."""
    return _read(path, finite, densify)


def _read(path: str, finite: bool,
          densify: Callable[[tuple[int, int]], bool] | None) -> tuple[np.ndarray | sp.csr_matrix, bool]:
    info = regular_file(path)
    with LineSource(path) as source:
        declared = read_declared(path, source)
        compressed = path.lower().endswith(".gz")
        check_declared(path, declared, None if compressed else info.st_size - source.offset)
        source.limit(SLACK_BYTES + BYTES_PER_ENTRY * declared.count)
        header = declared.header
        dense = densify is not None and densify(declared.shape)
        coordinate_matrix = header.object == "matrix" and header.format == "coordinate"
        fast = not dense or declared.count > LOADTXT_MAX_ENTRIES
        entries = read_entries(source, declared.layout, declared.count, declared.shape, fast=fast)
    first_data_line = declared.size_line + 1

    def locate(k: int) -> tuple[int, bytes]:
        return locate_entry(path, first_data_line, k)

    if header.object == "vector" and header.format == "coordinate":
        return mtx_build.coordinate_vector(path, entries, declared.shape[0], header.field, finite, locate), False
    if dense and coordinate_matrix:
        rows, cols, values = mtx_build.coordinate_entries(path, entries, declared.shape, header.field,
                                                          header.symmetry, finite, locate)
        return dense_from_entries(path, declared.shape, rows, cols, values, "the coordinate matrix"), True
    if header.format == "coordinate":
        return mtx_build.coordinate_matrix(path, entries, declared.shape, header.field, header.symmetry,
                                           finite, locate), False
    return mtx_build.array_matrix(path, entries, declared.shape, header.field, header.symmetry, finite,
                                  locate), False
