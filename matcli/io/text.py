"""Numeric text arrays (right-hand sides, vectors): ``.txt``/``.dat``/``.tsv`` and ``.csv``.

Whitespace separates the fields of ``.txt``, ``.dat`` and ``.tsv`` files, a comma those of ``.csv``
files. Lines that are blank or start with ``#`` or ``%`` are skipped; every other line is a row of
decimal numbers (:data:`~matcli.io.mtx_grammar.REAL`: no ``1_000``, ``3,5``, ``nan``, ``inf``,
hex or trailing text), all rows with the same number of fields. Comment lines are dropped
vectorized; a single column then goes to the exact C reader of MatrixMarket arrays
(:func:`~matcli.io.mtx_fast.read_fast`, which refuses what the grammar refuses), everything else to
``numpy.loadtxt`` after a check of its bytes. When loadtxt fails, a line-by-line rescan names the
first bad line.
"""

from __future__ import annotations

import io

import numpy as np

from matcli.core.errors import InputError
from matcli.io.guard import check_allocation, regular_file
from matcli.io.mtx_fast import read_fast
from matcli.io.mtx_grammar import REAL, SEPARATOR, Layout
from matcli.io.mtx_source import PIECE_BYTES

_NUMBER_BYTES = b"0123456789+-.eE \t\n"
_NEWLINE = ord("\n")
#: A value takes 8 bytes and at least 2 bytes of text (a digit and a separator).
BYTES_PER_TEXT_BYTE = 4


def read_text_array(path: str) -> np.ndarray:
    """A float64 array from a numeric text file.

    Returns
    -------
    numpy.ndarray
        1-D when the file holds one row or one column (like ``numpy.loadtxt``), else 2-D
        (rows x fields). Every value is finite.

    Raises
    ------
    InputError
        Not a regular file, no numbers, a field that is not a finite decimal number, or rows of
        different lengths; the message names the 1-based line.
    ResourceError
        The file and the array it can hold exceed the memory budget.
    """
    size = regular_file(path).st_size
    check_allocation(path, size * (1 + BYTES_PER_TEXT_BYTE), f"the text file ({size} bytes) and its values")
    comma = path.lower().endswith(".csv")
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        raise InputError(path, f"cannot read file ({exc.strerror})") from None
    rows = _drop_comment_and_blank_lines(data) if b"#" in data or b"%" in data else data
    if not rows or rows.isspace():
        raise InputError(path, "no numbers (the file is empty or holds only comments)")
    column = _single_column(rows)
    if column is not None:
        return column
    rows = _drop_comment_and_blank_lines(rows)  # loadtxt with a comma delimiter reads " \t" as a row
    while b"\r\n" in rows:  # a line ends at its last number or blank: every \r before the newline goes
        rows = rows.replace(b"\r\n", b"\n")
    allowed = _NUMBER_BYTES + (b"," if comma else b"")  # no \r left: loadtxt would split "1\r2" in two
    if rows.translate(None, allowed):
        raise _first_defect(path, data, comma, "a byte that is not part of a number")
    try:
        array = np.loadtxt(io.BytesIO(rows), dtype=np.float64, delimiter="," if comma else None,
                           comments=None, ndmin=1)
    except ValueError as exc:
        raise _first_defect(path, data, comma, str(exc).splitlines()[0]) from None
    if not np.isfinite(array).all():
        raise _first_defect(path, data, comma, "a value overflows float64")
    return array


def _single_column(rows: bytes) -> np.ndarray | None:
    """The values of ``rows`` when each line holds one finite number, else None (loadtxt decides).

    Tried only when the first line holds one field, so that a table does not pay for a failed read.
    Read in pieces of whole lines of about :data:`~matcli.io.mtx_source.PIECE_BYTES`, as MatrixMarket
    files are (measured faster than one piece of the whole file).
    """
    if len(rows[:4096].lstrip().split(b"\n", 1)[0].split()) != 1:
        return None
    if not rows.endswith(b"\n"):
        rows += b"\n"
    layout = Layout(indices=0, field="real")
    values = []
    start = 0
    while start < len(rows):
        end = rows.rfind(b"\n", start, start + PIECE_BYTES) + 1 or rows.find(b"\n", start) + 1
        piece = rows[start:end]
        lines = int(np.count_nonzero(np.frombuffer(piece, dtype=np.uint8) == _NEWLINE))
        columns = read_fast(piece, lines, layout, (lines, 1))
        if columns is None or not np.isfinite(columns["v0"]).all():
            return None
        values.append(columns["v0"])
        start = end
    return np.concatenate(values) if len(values) > 1 else np.ascontiguousarray(values[0])


def _drop_comment_and_blank_lines(data: bytes) -> bytes:
    """``data`` without the lines :func:`_is_comment_or_blank` skips (vectorized, lines end with ``\\n``)."""
    if not data.endswith(b"\n"):
        data += b"\n"
    a = np.frombuffer(data, dtype=np.uint8)
    ends = np.flatnonzero(a == _NEWLINE)
    starts = np.empty_like(ends)
    starts[:1] = 0
    starts[1:] = ends[:-1] + 1
    blank = (a == 32) | (a == 9) | (a == 13)
    head = starts.copy()
    indented = blank[head]
    if indented.any():
        run_ends = np.flatnonzero(blank[:-1] & ~blank[1:])  # a[-1] is a newline, never blank here
        head[indented] = run_ends[np.searchsorted(run_ends, head[indented])] + 1
    first = a[head]
    keep = (first != _NEWLINE) & (first != ord("#")) & (first != ord("%"))
    if keep.all():
        return data
    return a[np.repeat(keep, ends - starts + 1)].tobytes()


def _is_comment_or_blank(line: bytes) -> bool:
    stripped = line.strip(b" \t\r")
    return not stripped or stripped[:1] in (b"#", b"%")


def _fields(line: bytes, comma: bool) -> list[bytes]:
    line = line.rstrip(b"\r")
    if comma:
        return [field.strip(b" \t") for field in line.split(b",")]
    return SEPARATOR.split(line.strip(b" \t"))


def _first_defect(path: str, data: bytes, comma: bool, fallback: str) -> InputError:
    """The error for the first line of ``data`` that is not a row of finite numbers like the rows before."""
    width = None
    for number, line in enumerate(data.split(b"\n"), start=1):
        if _is_comment_or_blank(line):
            continue
        fields = _fields(line, comma)
        for position, field in enumerate(fields, start=1):
            if not REAL.fullmatch(field):
                shown = repr(field[:40].decode("latin-1"))
                return InputError(path, f"line {number}: field {position} {shown} is not a decimal number")
            if not np.isfinite(float(field)):
                return InputError(path, f"line {number}: field {position} {field.decode()!r} overflows float64")
        if width is None:
            width = len(fields)
        elif len(fields) != width:
            return InputError(path, f"line {number}: {len(fields)} fields, the rows above have {width}")
    return InputError(path, fallback)
