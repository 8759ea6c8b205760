"""A fast, exact reading of MatrixMarket data lines by scipy's C++ reader (fast_matrix_market).

fast_matrix_market reads a field as the longest number at its start and ignores the rest of a line,
so on its own it reads ``1.5.3`` as 1.5 and ``1 1 3 4`` as (1, 1, 3). It therefore reads a copy of
the data lines in which every line ends with an extra field ``nan`` (the banner asks for one more
value per line), and its read is accepted only when

* every line's extra field read as NaN and no other field did, so each line's first w reads (w
  fields per line) covered exactly the text before ``nan``: each read is one number that stops at
  the first byte that cannot extend it and never crosses a blank, so every blank-separated token of
  the line was read by at least one read;
* no line holds fewer than w blank-separated tokens, so no token was read by two reads (``1 2.5``
  as 1, 2, .5), i.e. every token is one whole number of the reader's grammar, which is contained
  in :data:`~matcli.io.mtx_grammar.REAL` / :data:`~matcli.io.mtx_grammar.INTEGER` (see
  :func:`read_simple` for the layouts where this needs a token count);
* the text holds no ``n`` or ``N`` (a ``nan`` in it could pass for a sentinel) and, for an
  integer field, no ``.``, ``e`` or ``E`` (``2.7``, ``1e5`` are not integers), and every integer
  value is below 2^53 in magnitude (so exact, and not ``inf``).

Before that the bytes are brought to the reader's layout without a per-line loop: tabs become
spaces (both separate fields), ``\\r\\n`` line ends become ``\\n``, and blank and ``%`` comment lines
are dropped (:func:`drop_blank_and_comment_lines`, vectorized). Anything else (a lone ``\\r``, a
NUL byte, which crashes the reader, a complex field, which has no room for the extra field, an
error of the reader) returns None and the piece goes to the strict path
(:mod:`matcli.io.mtx_body`), which also words the error.
"""

from __future__ import annotations

import numpy as np

from matcli.io.mtx_grammar import Layout

NEWLINE, SPACE, RETURN, PERCENT = b"\n"[0], b" "[0], b"\r"[0], b"%"[0]
TAB_TO_SPACE = bytes.maketrans(b"\t", b" ")
EXACT_INTEGER = 2**53
#: The extra field every line gets; fast_matrix_market reads it as NaN, no number reads as NaN.
SENTINEL = b" nan\n"


def count_lines(data: bytes) -> int:
    """Number of newline bytes in ``data``."""
    return int(np.count_nonzero(np.frombuffer(data, dtype=np.uint8) == NEWLINE))


def blank_separated_tokens(data: bytes) -> int:
    """Number of maximal runs of non-blank bytes (blank: byte <= 32, i.e. space, tab, newline here)."""
    if not data:
        return 0
    blank = np.frombuffer(data, dtype=np.uint8) <= SPACE
    return int(np.count_nonzero(blank[:-1] > blank[1:])) + int(not blank[0])


def _run_ends(a: np.ndarray, value: int, starts: np.ndarray) -> np.ndarray:
    """For each position in ``starts`` (where ``a`` equals ``value``), the first position after the run of ``value``."""
    inside = a == value
    ends = np.flatnonzero(inside[:-1] & ~inside[1:])  # last byte of each run; a[-1] is a newline
    return ends[np.searchsorted(ends, starts)] + 1


def drop_blank_and_comment_lines(data: bytes) -> bytes:
    """``data`` (whole lines, tabs already spaces) without its blank and ``%`` comment lines.

    A line is dropped exactly when :func:`~matcli.io.mtx_grammar.is_comment_or_blank` says so:
    after its leading spaces it is empty, holds only ``\\r`` bytes, or starts with ``%``.
    """
    if count_lines(data) > len(data) // 2:  # mostly empty lines: collapse their runs first, in C
        while b"\n\n" in data:
            data = data.replace(b"\n\n", b"\n")
    a = np.frombuffer(data, dtype=np.uint8)
    ends = np.flatnonzero(a == NEWLINE)
    starts = np.empty_like(ends)
    starts[:1] = 0
    starts[1:] = ends[:-1] + 1
    head = starts.copy()
    indented = a[head] == SPACE
    if indented.any():
        head[indented] = _run_ends(a, SPACE, head[indented])
    first = a[head]
    returns = first == RETURN
    if returns.any():
        # a line of spaces and carriage returns only is blank; "\r x" is a data line
        after = _run_ends(a, RETURN, head[returns])
        first = first.copy()
        first[np.flatnonzero(returns)[a[after] == NEWLINE]] = NEWLINE
    keep = (first != NEWLINE) & (first != PERCENT)
    if keep.all():
        return data
    return a[np.repeat(keep, ends - starts + 1)].tobytes()


def drop_comment_lines(data: bytes, most: int = 4096) -> bytes:
    """``data`` (whole lines, tabs already spaces) without its ``%`` comment lines.

    A file holds a few comment lines at most, as a rule: each ``%`` is found by a search in C and
    its line cut out, one copy of the rest in all. Beyond ``most`` of them the lines are classified
    vectorized instead (:func:`drop_blank_and_comment_lines`, which drops blank lines too).
    """
    parts, kept_from = [], 0
    view = memoryview(data)
    found = data.find(b"%")
    while found >= 0:
        most -= 1
        if most < 0:
            return drop_blank_and_comment_lines(data)
        start = data.rfind(b"\n", 0, found) + 1
        end = data.find(b"\n", found) + 1
        if not data[start:found].strip(b" "):
            parts.append(view[kept_from:start])
            kept_from = end
        found = data.find(b"%", end)
    if not parts:
        return data
    parts.append(view[kept_from:])
    return b"".join(parts)


def data_lines(data: bytes, lines: int) -> tuple[bytes, int, bool] | None:
    """The ``lines`` whole lines ``data`` in fast_matrix_market's layout; or None when they cannot be.

    Returns the text, its number of lines and whether blank lines were dropped. The text holds the
    same lines with tabs as spaces and ``\\n`` line ends, without comment lines, and without blank
    lines when the third item is True (when it is False, blank lines may remain). None: a NUL byte
    or a ``\\r`` that does not end a line.
    """
    if b"\0" in data:
        return None
    if b"\t" in data:
        data = data.translate(TAB_TO_SPACE)
    dropped = False
    if b"\r" in data:
        data = data.replace(b"\r\n", b"\n")
        if b"\r" in data:  # only lines of carriage returns may keep one: they are blank
            data, dropped = drop_blank_and_comment_lines(data), True
            lines = count_lines(data)
            if b"\r" in data:
                return None
    if b"%" in data and not dropped:
        kept = drop_comment_lines(data)
        data, lines = kept, lines if kept is data else count_lines(kept)
    return data, lines, dropped


def read_fast(data: bytes, lines: int, layout: Layout, shape: tuple[int, int]) -> dict[str, np.ndarray] | None:
    """The data lines among the ``lines`` whole lines ``data`` as columns, or None (see :func:`read_simple`).

    Blank and comment lines in ``data`` are skipped. Comment lines are found by a search for ``%``;
    blank lines only when a first read fails (a search for them would cost a pass over the bytes
    of every file), then they are dropped and the lines read again.
    """
    normal = data_lines(data, lines)
    if normal is None:
        return None
    text, lines, dropped = normal
    if not dropped and 2 * layout.width * lines > len(text):
        # a data line takes at least 2 bytes per field, so some of these lines are blank
        text, dropped = drop_blank_and_comment_lines(text), True
        lines = count_lines(text)
    columns = read_simple(text, lines, layout, shape) if text else _no_lines(layout)
    if columns is None and not dropped:
        kept = drop_blank_and_comment_lines(text)
        if kept is not text:
            columns = read_simple(kept, count_lines(kept), layout, shape) if kept else _no_lines(layout)
    return columns


def _no_lines(layout: Layout) -> dict[str, np.ndarray]:
    return {name: np.empty(0, dtype=layout.dtype[name]) for name in layout.dtype.names}


def read_simple(data: bytes, lines: int, layout: Layout, shape: tuple[int, int]) -> dict[str, np.ndarray] | None:
    """The ``lines`` data lines of ``data`` as columns (see :func:`matcli.io.mtx_body.read_entries`), or None.

    ``data`` holds whole lines, each ending with a newline, none blank or a comment, fields
    separated by spaces. Coordinate (1 or 2 indices) and array layouts of real, integer and pattern
    fields qualify; indices are checked to lie within ``shape`` by the reader (out of range: None).

    The token count is needed only where a value follows an index: there a line ``i j.5`` could
    give the reads i, j, .5 and the sentinel. Elsewhere a token read by two reads leaves its second
    part to the next read, which is an index read (it fails on ``.``, ``e``, ``+``; ``-`` gives a
    negative index, out of range) or the sentinel's (not NaN), and a line with too few tokens makes
    an index read or the value read meet the sentinel (not an integer; NaN refused).
    """
    if layout.field == "complex" or not lines or b"\0" in data or b"n" in data or b"N" in data:
        return None  # "nan" in the text could pass for a sentinel
    if layout.field == "integer" and (b"." in data or b"e" in data or b"E" in data):
        return None
    if layout.indices and layout.values and blank_separated_tokens(data) != layout.width * lines:
        return None
    import scipy.io  # on first use: small files read densely go to loadtxt and never need scipy

    try:
        parsed = scipy.io.mmread(_Parts(_banner(layout, shape, lines), data.replace(b"\n", SENTINEL)))
    except (ValueError, OverflowError, RuntimeError, IndexError):
        return None
    coordinate = layout.indices > 0
    values = parsed.data if coordinate else np.asarray(parsed)[:, 0]
    if values.size != lines:
        return None
    sentinel, read = (values, None) if layout.field == "pattern" else (values.imag, values.real)
    if not np.isnan(sentinel).all() or (read is not None and np.isnan(read).any()):
        return None
    if layout.field == "integer" and np.abs(read).max(initial=0) >= EXACT_INTEGER:
        return None
    columns = {}
    if coordinate:
        columns["i0"] = parsed.row
        if layout.indices == 2:
            columns["i1"] = parsed.col
    if read is not None:
        columns["v0"] = read.astype(layout.dtype["v0"], copy=layout.field == "integer")
    return columns


class _Parts:
    """A binary stream over whole bytes objects, one per ``read`` call, none of them copied.

    scipy's reader asks a stream for 1 KiB at a time (one Python call per KiB) and takes as many
    bytes as ``read`` returns, so handing it each part whole saves those calls and a copy.
    """

    def __init__(self, *parts: bytes):
        self._parts = list(parts)

    def read(self, size: int = -1) -> bytes:
        return self._parts.pop(0) if self._parts else b""


def _banner(layout: Layout, shape: tuple[int, int], lines: int) -> bytes:
    field = "real" if layout.field == "pattern" else "complex"
    if layout.indices == 2:
        return f"%%MatrixMarket matrix coordinate {field} general\n{shape[0]} {shape[1]} {lines}\n".encode()
    if layout.indices == 1:
        return f"%%MatrixMarket vector coordinate {field} general\n{shape[0]} {lines}\n".encode()
    return f"%%MatrixMarket matrix array {field} general\n{lines} 1\n".encode()
