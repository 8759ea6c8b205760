"""Ratings triplets: ``user item value [timestamp]`` per line (MovieLens ``u.data`` style).

What a ratings file may hold; anything else is an :class:`InputError` naming the file and the
1-based line:

- Separator: ``::`` when the first data line holds it (MovieLens ml-1m / ml-10m ``ratings.dat``), comma
  for ``.csv`` files or when the first data line holds a comma, else tab when it holds a tab, else
  runs of blanks. Blanks around fields are ignored.
- Columns: user id, item id, value, and an optional integer timestamp (checked, then dropped).
  Every data line has as many columns as the first one. Pair files (``--predict``) may stop after
  the two ids.
- Ids: decimal integers 1 .. 2**64-1 written with digits (a leading ``+`` and leading zeros are
  allowed): hashed 64-bit ids work. ``0``, ``-3``, ``1.5``, ``1e3`` and ids beyond 2**64-1 are refused.
- Values: decimal numbers (``3``, ``-2.5``, ``.5``, ``4.``, ``1e-3``); ``nan``, ``inf``, ``1e999``
  (overflows), ``3,5``, ``1_000.5``, ``0x10``, ``12abc`` are refused.
- Timestamps: integers in the signed 64-bit range.
- Line 1 may be a header: it is one when none of its fields starts like a number. A header
  anywhere else is a malformed line.
- Empty or blank lines and lines starting with ``#`` are skipped; CRLF line ends and a UTF-8 byte
  order mark are accepted. NUL bytes and non-ASCII bytes outside the header and comments are refused.

The file is read in chunks of :data:`CHUNK_BYTES`: a run of more than :data:`MAX_LINE_BYTES`
without a line end is refused without reading further, and the entries read so far are checked
against the memory budget after every chunk (:func:`matcli.io.guard.check_allocation`).
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from matcli.core.errors import InputError, OutputError

CHUNK_BYTES = 1 << 22
MAX_LINE_BYTES = 1 << 16
#: Memory per entry while reading: user and item ids and the value (8 bytes each), held as the
#: chunks' tables and once more when they are joined.
BYTES_PER_ENTRY = 2 * 3 * 8
ID_MAX = 2**64 - 1
STAMP_RANGE = (-(2**63), 2**63 - 1)
BOM = b"\xef\xbb\xbf"
COLUMN_NAMES = ("user id", "item id", "value", "timestamp")

_ID = re.compile(rb"\+?[0-9]+")
_VALUE = re.compile(rb"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_STAMP = re.compile(rb"[+-]?[0-9]+")
_HEADER_SPLIT = re.compile(rb"[\s,]+")
_NUMBER_START = b"0123456789+-."
#: Bytes a chunk may hold for the fast reader (numpy.loadtxt) per separator; a chunk with any
#: other byte (comments, a header, NUL, non-ASCII, lone CR) goes through the line-by-line reader.
_FAST_BYTES = {sep: b"0123456789+-.eE \t\n\r" + (sep or b"") for sep in (b",", b"\t", None)}
# '::' files are parsed with '::' turned into tabs, so a tab of their own must not reach loadtxt
_FAST_BYTES[b"::"] = b"0123456789+-.eE \n\r:"
_DTYPES = {2: [("u", "u8"), ("i", "u8")], 3: [("u", "u8"), ("i", "u8"), ("v", "f8")],
           4: [("u", "u8"), ("i", "u8"), ("v", "f8"), ("t", "i8")]}


@dataclass(frozen=True)
class Layout:
    """How the data lines of one file are written: ``separator`` (b',', b'\\t', b'::' or None for runs
    of blanks) and the number of ``columns`` (2 to 4), as in the first data ``line``."""

    separator: bytes | None
    columns: int
    line: int

    def split(self, line: bytes) -> list[bytes]:
        if self.separator is None:
            return line.split()
        return [field.strip(b" \t") for field in line.split(self.separator)]


@dataclass
class Table:
    """Entries read so far: ``users``, ``items`` (uint64 ids as written) and ``values`` (float64,
    absent for pair files), and the 1-based ``lines`` they came from when asked for."""

    users: list[np.ndarray]
    items: list[np.ndarray]
    values: list[np.ndarray]
    lines: list[np.ndarray]


def read_triplets(path: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Read a ratings file.

    Returns
    -------
    users, items : (N,) uint64
        Ids as written (1 .. 2**64-1), in file order.
    values : (N,) float64
        Finite values.

    Raises InputError (exit 4) for anything outside the grammar of this module, naming the line;
    ResourceError (exit 7) when the entries do not fit the memory budget.
    """
    users, items, values, _ = _read(path, min_columns=3)
    return users, items, values


def read_pairs(path: str) -> tuple[np.ndarray, np.ndarray]:
    """(users, items) (N,) uint64 ids from a pairs file: ``user item`` lines, optionally followed by
    a value and a timestamp (a ratings file serves as a pairs file); same grammar as ratings."""
    users, items, _, _ = _read(path, min_columns=2)
    return users, items


def line_of_entry(path: str, index: int, *, min_columns: int = 3) -> int:
    """The 1-based line of the ``index``-th entry of a file that reads without error."""
    return int(_read(path, min_columns=min_columns, with_lines=True)[3][index])


def _read(path: str, *, min_columns: int, with_lines: bool = False):
    from matcli.io.guard import check_allocation, regular_file

    regular_file(path)
    table = Table([], [], [], [])
    layout: Layout | None = None
    count = 0
    try:
        with open(path, "rb") as fh:
            for first_line, chunk in _chunks(path, fh):
                if first_line == 1 and _is_header(chunk[:chunk.index(b"\n")]):
                    chunk, first_line = chunk[chunk.index(b"\n") + 1:], 2
                if layout is None:
                    layout = _detect(path, chunk, first_line, min_columns)
                part = None if with_lines or layout is None else _fast(path, chunk, layout)
                if part is None:
                    layout, part = _strict(path, chunk, first_line, layout, min_columns)
                for store, array in zip((table.users, table.items, table.values, table.lines), part):
                    if array is not None:
                        store.append(array)
                count += part[0].size
                check_allocation(path, count * BYTES_PER_ENTRY, f"reading {count} entries")
    except OSError as exc:
        raise InputError(path, f"cannot read file ({exc.strerror})") from None
    if count == 0:
        raise InputError(path, "no entries in file (only blank, comment or header lines)")
    join = (lambda parts: np.concatenate(parts) if parts else None)
    return join(table.users), join(table.items), join(table.values), join(table.lines)


def _chunks(path: str, fh: io.BufferedReader) -> Iterator[tuple[int, bytes]]:
    """Yield (1-based number of its first line, chunk of whole lines, each ending in b'\\n')."""
    line, carry, start = 1, b"", True
    while True:
        block = fh.read(CHUNK_BYTES)
        if start:
            block, start = block.removeprefix(BOM), False
        if not block:
            if carry:
                yield line, carry + b"\n"
            return
        data = carry + block
        cut = data.rfind(b"\n") + 1
        chunk, carry = data[:cut], data[cut:]
        if chunk:
            yield line, chunk
            line += chunk.count(b"\n")
        if len(carry) > MAX_LINE_BYTES:
            raise InputError(path, f"line {line}: longer than {MAX_LINE_BYTES} bytes (not a ratings file?)")


def _is_header(line: bytes) -> bool:
    """Line 1 is a header when none of its fields starts like a number (e.g. ``user,item,rating``)."""
    fields = [f for f in _HEADER_SPLIT.split(line.strip()) if f]
    return (bool(fields) and b"\0" not in line and not line.lstrip().startswith(b"#")
            and all(f[0] not in _NUMBER_START for f in fields))


def _lines(chunk: bytes) -> Iterator[bytes]:
    """The lines of a chunk (without their b'\\n'), one at a time."""
    start = 0
    while start < len(chunk):
        end = chunk.index(b"\n", start)
        yield chunk[start:end]
        start = end + 1


def _is_data(line: bytes) -> bool:
    stripped = line.strip(b" \t\r")
    return bool(stripped) and not stripped.startswith(b"#")


def _detect(path: str, chunk: bytes, first_line: int, min_columns: int) -> Layout | None:
    """The layout from the chunk's first data line (None when the chunk has none)."""
    for number, line in enumerate(_lines(chunk), start=first_line):
        if not _is_data(line):
            continue
        _check_bytes(path, number, line)
        text = line.strip(b" \t\r")
        if b"::" in text:  # MovieLens ml-1m / ml-10m: user::item::rating::timestamp
            separator = b"::"
        elif path.lower().endswith(".csv") or (b"," in text and b"\t" not in text):
            separator = b","
        else:
            separator = b"\t" if b"\t" in text else None
        columns = len(Layout(separator, 0, number).split(text))
        if not min_columns <= columns <= 4:
            wanted = ", ".join(COLUMN_NAMES[:min_columns])
            raise InputError(path, f"line {number}: found {columns} column(s), expected {wanted} and optionally "
                                   f"{' and '.join(COLUMN_NAMES[min_columns:])}")
        return Layout(separator, columns, number)
    return None


def _fast(path: str, chunk: bytes, layout: Layout) -> tuple | None:
    """Parse a chunk with numpy.loadtxt when it can only hold numbers; None when the chunk needs
    the line-by-line reader (an unusual byte, a malformed or out-of-range field).

    Every chunk this accepts, :func:`_strict` accepts with the same entries (a property test
    checks it): loadtxt refuses every malformed number the grammar refuses once the chunk holds
    only digits, signs, points, exponents, blanks and the separator.
    """
    if (chunk.translate(None, _FAST_BYTES[layout.separator]) or not chunk.strip()
            or (b"\r" in chunk and chunk.count(b"\r") != chunk.count(b"\r\n"))):
        return None
    separator = layout.separator
    if separator == b"::":
        # loadtxt takes one-character delimiters; a ':' left after this fails it (strict reader then)
        chunk, separator = chunk.replace(b"::", b"\t"), b"\t"
    try:
        rows = np.loadtxt(io.StringIO(chunk.decode("ascii")), dtype=_DTYPES[layout.columns],
                          delimiter=None if separator is None else separator.decode(),
                          comments=None, ndmin=1)
    except ValueError:
        return None
    users, items = rows["u"].copy(), rows["i"].copy()
    values = rows["v"].copy() if layout.columns >= 3 else None
    if (users.size and (users.min() == 0 or items.min() == 0)) or (values is not None and not np.isfinite(values).all()):
        return None
    return users, items, values, None


def _strict(path: str, chunk: bytes, first_line: int, layout: Layout | None,
            min_columns: int) -> tuple[Layout | None, tuple]:
    """Parse a chunk line by line against the module's grammar; raise InputError at the first
    line outside it. Returns the (possibly just detected) layout and (users, items, values, lines)."""
    users: list[int] = []
    items: list[int] = []
    values: list[float] = []
    lines: list[int] = []
    for number, line in enumerate(chunk.split(b"\n")[:-1], start=first_line):
        if len(line) > MAX_LINE_BYTES:
            raise InputError(path, f"line {number}: longer than {MAX_LINE_BYTES} bytes (not a ratings file?)")
        if not _is_data(line):
            continue
        _check_bytes(path, number, line)
        if layout is None:
            layout = _detect(path, line + b"\n", number, min_columns)
        fields = layout.split(line.strip(b" \t\r"))
        if len(fields) != layout.columns:
            raise InputError(path, f"line {number}: found {len(fields)} column(s), expected {layout.columns} "
                                   f"as in line {layout.line}")
        users.append(_id(path, number, fields[0], COLUMN_NAMES[0]))
        items.append(_id(path, number, fields[1], COLUMN_NAMES[1]))
        if layout.columns >= 3:
            values.append(_value(path, number, fields[2]))
        if layout.columns == 4:
            _stamp(path, number, fields[3])
        lines.append(number)
    return layout, (np.array(users, dtype=np.uint64), np.array(items, dtype=np.uint64),
                    np.array(values, dtype=np.float64) if layout is not None and layout.columns >= 3 else None,
                    np.array(lines, dtype=np.int64))


def _check_bytes(path: str, number: int, line: bytes) -> None:
    """Refuse a data line holding a NUL byte or a carriage return before its end."""
    if b"\0" in line:
        raise InputError(path, f"line {number}: holds a NUL byte (binary file?)")
    if b"\r" in line.rstrip(b"\r"):
        raise InputError(path, f"line {number}: holds a carriage return inside the line (old Mac line ends?)")


def _show(field: bytes) -> str:
    text = field[:32].decode("ascii", errors="backslashreplace")
    return repr(text + ("..." if len(field) > 32 else ""))


def _id(path: str, line: int, field: bytes, what: str) -> int:
    if not _ID.fullmatch(field):
        raise InputError(path, f"line {line}: {what} {_show(field)} is not a positive integer written with digits")
    value = int(field)
    if value == 0:
        raise InputError(path, f"line {line}: {what} 0: ids start at 1")
    if value > ID_MAX:
        raise InputError(path, f"line {line}: {what} {_show(field)} exceeds 2**64-1")
    return value


def _value(path: str, line: int, field: bytes) -> float:
    if not _VALUE.fullmatch(field):
        raise InputError(path, f"line {line}: value {_show(field)} is not a decimal number")
    value = float(field)
    if not np.isfinite(value):
        raise InputError(path, f"line {line}: value {_show(field)} overflows to infinity")
    return value


def _stamp(path: str, line: int, field: bytes) -> None:
    if not _STAMP.fullmatch(field) or not STAMP_RANGE[0] <= int(field) <= STAMP_RANGE[1]:
        raise InputError(path, f"line {line}: timestamp {_show(field)} is not a 64-bit integer")


def write_triplets(path: str, users: np.ndarray, items: np.ndarray, values: np.ndarray) -> None:
    """Write ``user item value`` lines, tab-separated: ids (N,) as given (uint64, 1-based, the
    inverse of :func:`read_triplets`) and values with 10 significant digits."""
    try:
        with open(path, "w", encoding="ascii") as fh:
            write_triplet_lines(fh, users, items, values)
    except OSError as exc:
        raise OutputError(path, f"cannot write ({exc.strerror})") from None


def write_triplet_lines(fh, users: np.ndarray, items: np.ndarray, values: np.ndarray) -> None:
    """The lines of :func:`write_triplets` on an open text stream (a file, or standard output)."""
    for user, item, value in zip(np.asarray(users, dtype=np.uint64).tolist(),
                                 np.asarray(items, dtype=np.uint64).tolist(), np.asarray(values).tolist()):
        fh.write(f"{user}\t{item}\t{value:.10g}\n")
