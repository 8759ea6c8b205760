"""A fast, exact reading of simple MatrixMarket pieces by scipy's C++ reader (fast_matrix_market).

fast_matrix_market reads a field as the longest number at its start and ignores the rest of a line,
so on its own it reads ``1.5.3`` as 1.5 and ``1 1 3 4`` as (1, 1, 3). It gets a piece only when
the piece is *simple* (bytes from ``0-9 + - . e E``, space, tab and newline; no comment, no letter,
so no value can be NaN) and then reads a copy in which every line ends with an extra field ``nan``
(the banner asks for one more value per line). The read is accepted only when

* every line's extra field read as NaN and no other field did, so each line's first w reads (w
  fields per line) covered exactly the text before ``nan``: each read is one number that stops at
  the first byte that cannot extend it and never crosses a blank, so every blank-separated token of
  the line was read by at least one read;
* the piece holds exactly w blank-separated tokens per line, so no token was read by two reads
  (``1 2.5`` as 1, 2, .5), i.e. every token is one whole number.

Anything else (an error of the reader included) returns None and the piece goes to the strict
path (:mod:`matcli.io.mtx_body`), which also words the error. The reader never sees a NUL byte or
a non-square symmetric array, the two inputs known to crash it.
"""

from __future__ import annotations

import io

import numpy as np
import scipy.io

from matcli.io.mtx_grammar import Layout

_BLANKS = b" \t\n"
#: Bytes of a simple piece, by field (``+`` only in exponents; the reader refuses a leading one).
SIMPLE = {"real": b"0123456789+-.eE" + _BLANKS, "integer": b"0123456789-" + _BLANKS,
          "pattern": b"0123456789" + _BLANKS}
EXACT_INTEGER = 2**53


def blank_separated_tokens(data: bytes) -> int:
    """Number of maximal runs of non-blank bytes (blank: byte <= 32, i.e. space, tab, newline here)."""
    blank = np.frombuffer(data, dtype=np.uint8) <= 32
    return int(np.count_nonzero(~blank[1:] & blank[:-1])) + int(not blank[0])


def read_simple(data: bytes, lines: int, layout: Layout, shape: tuple[int, int]) -> dict[str, np.ndarray] | None:
    """The ``lines`` data lines of ``data`` as columns (see :func:`matcli.io.mtx_body.read_entries`), or None.

    ``data`` holds whole lines, each ending with a newline, none blank or a comment. Coordinate
    (2 indices) and array layouts of real, integer and pattern fields qualify; indices are checked
    to lie within ``shape`` by the reader (out of range: None).
    """
    coordinate = layout.indices == 2
    if layout.indices == 1 or layout.field not in SIMPLE or data.translate(None, SIMPLE[layout.field]):
        return None
    if blank_separated_tokens(data) != layout.width * lines:
        return None
    field = "real" if layout.field == "pattern" else "complex"
    if coordinate:
        banner = f"%%MatrixMarket matrix coordinate {field} general\n{shape[0]} {shape[1]} {lines}\n"
    else:
        banner = f"%%MatrixMarket matrix array {field} general\n{lines} 1\n"
    try:
        parsed = scipy.io.mmread(io.BytesIO(banner.encode() + data.replace(b"\n", b" nan\n")))
    except (ValueError, OverflowError, RuntimeError, IndexError):
        return None
    values = parsed.data if coordinate else np.asarray(parsed)[:, 0]
    if values.size != lines:
        return None
    sentinel, read = (values, None) if layout.field == "pattern" else (values.imag, values.real)
    if not np.isnan(sentinel).all() or (read is not None and np.isnan(read).any()):
        return None
    if layout.field == "integer" and np.abs(read).max(initial=0) > EXACT_INTEGER:
        return None
    columns = {"i0": parsed.row, "i1": parsed.col} if coordinate else {}
    if read is not None:
        columns["v0"] = read.astype(layout.dtype["v0"])
    return columns
