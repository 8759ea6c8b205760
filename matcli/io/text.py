"""Numeric text arrays (right-hand sides, vectors): ``.txt``/``.dat``/``.tsv`` and ``.csv``.

Whitespace separates the fields of ``.txt``, ``.dat`` and ``.tsv`` files, a comma those of ``.csv``
files. Lines that are blank or start with ``#`` or ``%`` are skipped; every other line is a row of
decimal numbers (:data:`~matcli.io.mtx_grammar.REAL`: no ``1_000``, ``3,5``, ``nan``, ``inf``,
hex or trailing text), all rows with the same number of fields. The whole file is parsed by
``numpy.loadtxt`` after a check of its bytes; when that fails, a line-by-line rescan names the
first bad line.
"""

from __future__ import annotations

import io

import numpy as np

from matcli.core.errors import InputError
from matcli.io.guard import check_allocation, regular_file
from matcli.io.mtx_grammar import REAL, SEPARATOR

_NUMBER_BYTES = b"0123456789+-.eE \t\r\n"
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
    rows = data
    if b"#" in data or b"%" in data:
        rows = b"\n".join(line for line in data.split(b"\n") if not _is_comment_or_blank(line))
    allowed = _NUMBER_BYTES + (b"," if comma else b"")
    if not rows.strip():
        raise InputError(path, "no numbers (the file is empty or holds only comments)")
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
