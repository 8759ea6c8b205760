"""The data lines of a MatrixMarket file, read strictly into columns.

Each piece of whole lines (:class:`~matcli.io.mtx_source.Piece`) first goes to the exact fast
reader (:func:`~matcli.io.mtx_fast.read_fast`). A piece it turns down (a complex field, a rare
layout, or a defect) loses its blank and ``%`` comment lines (vectorized), is checked for bytes
outside its field's alphabet (NUL, ``,``, ``_``, letters other than those of ``nan``/``inf``...),
then goes to ``numpy.loadtxt`` (C), which converts every field in full or fails: no token is read by
prefix and a line with a field too many or too few is an error. When loadtxt fails, the piece is
rescanned line by line with :func:`~matcli.io.mtx_grammar.line_defect` so that the error names the
first bad line and its defect; that scan is the only per-line loop, and only an invalid file gets there.
"""

from __future__ import annotations

import io

import numpy as np

from matcli.core.errors import InputError
from matcli.io.mtx_fast import TAB_TO_SPACE, drop_blank_and_comment_lines, read_fast
from matcli.io.mtx_grammar import Layout, is_comment_or_blank, line_defect
from matcli.io.mtx_source import LineSource, Piece


#: The fields of the data lines, one array per field of :attr:`Layout.dtype` (``i0``, ``i1``: 0-based
#: indices, ``v0``, ``v1``: values), each of the same length.
Columns = dict[str, np.ndarray]


def read_entries(source: LineSource, layout: Layout, count: int, shape: tuple[int, int], *,
                 fast: bool = True) -> Columns:
    """The next ``count`` data lines of ``source`` as columns (indices made 0-based, not yet checked).

    Pieces first go to :func:`~matcli.io.mtx_fast.read_fast` (indices checked against ``shape``
    there); those it turns down to loadtxt. Without ``fast`` every piece goes to loadtxt (the same
    columns: both read what the grammar accepts, exactly), which spares a small file the import of
    scipy's reader.
    Raises :class:`InputError` naming the line for a malformed line, for data lines beyond
    ``count`` and (without a line) for fewer than ``count``. Blank and ``%`` lines are skipped.
    """
    parts = []
    got = 0
    for piece in source.pieces():
        columns = read_fast(piece.data, piece.count, layout, shape) if fast else None
        if columns is None:
            columns = _read_strict(source.path, piece, piece.data, layout)
            if columns is None:
                continue
        size = len(next(iter(columns.values())))
        if got + size > count:
            number, _ = nth_data_line(piece, count - got)
            raise InputError(source.path, f"line {number}: more data lines than the {count} declared")
        got += size
        parts.append(columns)
    if got < count:
        raise InputError(source.path, f"file truncated: declares {count} entries, found {got}")
    if len(parts) == 1:
        return parts[0]
    empty = np.empty(0, dtype=layout.dtype)
    return {name: np.concatenate([part[name] for part in parts]) if parts else empty[name]
            for name in layout.dtype.names}


def _read_strict(path: str, piece: Piece, data: bytes, layout: Layout) -> Columns | None:
    """The data lines of ``data`` (the lines of ``piece``) through loadtxt; None when it has none."""
    data = drop_blank_and_comment_lines(data.translate(TAB_TO_SPACE))
    if not data:
        return None
    if data.translate(None, layout.allowed):
        raise piece_defect(path, piece, layout, "invalid character")
    try:
        rows = np.loadtxt(io.BytesIO(data), dtype=layout.dtype, comments=None, ndmin=1)
    except ValueError as exc:
        raise piece_defect(path, piece, layout, str(exc).splitlines()[0]) from None
    return {name: rows[name] - 1 if name.startswith("i") else rows[name] for name in layout.dtype.names}


def piece_defect(path: str, piece: Piece, layout: Layout, fallback: str) -> InputError:
    """The error for the first line of ``piece`` that breaks ``layout``."""
    for number, line in piece.lines():
        if is_comment_or_blank(line):
            continue
        defect = line_defect(line, layout)
        if defect:
            return InputError(path, f"line {number}: {defect}")
    last = piece.first_line + piece.count - 1
    return InputError(path, f"lines {piece.first_line}-{last}: {fallback}")


def nth_data_line(piece: Piece, k: int) -> tuple[int, bytes]:
    """(number, text) of the ``k``-th (0-based) data line of ``piece``."""
    for number, line in piece.lines():
        if is_comment_or_blank(line):
            continue
        if k == 0:
            return number, line
        k -= 1
    raise IndexError(k)


def locate_entry(path: str, first_line: int, k: int) -> tuple[int, bytes]:
    """(number, text) of the ``k``-th (0-based) data line at or after line ``first_line``.

    Reads the file again from the start: called only to word an error about an entry's value
    or position, never on the way to a successful read.
    """
    with LineSource(path) as source:
        while source.line < first_line - 1:
            source.next_line()
        for piece in source.pieces():
            data_lines = sum(1 for _, line in piece.lines() if not is_comment_or_blank(line))
            if k < data_lines:
                return nth_data_line(piece, k)
            k -= data_lines
    raise IndexError(k)
