"""What a MatrixMarket data line may hold: the fields of each layout and the strict grammar of a field.

This module is the reference for what the reader accepts. The exact C reading
(:mod:`matcli.io.mtx_fast`) accepts a subset of it (anything else goes on), and the strict path
(:mod:`matcli.io.mtx_body`) hands lines to ``numpy.loadtxt`` only after :data:`Layout.allowed` bytes
have been checked, and loadtxt is at least as strict as :func:`line_defect` on those bytes; when
loadtxt refuses a piece, :func:`line_defect` names the first bad line and what is wrong with it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

#: 1-based MatrixMarket indices and sizes: optional sign, ASCII digits.
INTEGER = re.compile(rb"[+-]?[0-9]+")
#: A decimal real: digits with at most one point, then an optional exponent. No ``_`` (Python's
#: float() accepts ``1_000``), no hex, no ``,`` as decimal mark.
REAL = re.compile(rb"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
#: Legal MatrixMarket values that matcli refuses unless asked (``finite=False``).
NONFINITE = re.compile(rb"[+-]?(?:nan|inf|infinity)", re.IGNORECASE)
#: Field separators inside a line; other control bytes (NUL, form feed, vertical tab) are refused.
SEPARATOR = re.compile(rb"[ \t]+")

_DIGITS_SPACE = b"0123456789+- \t\r\n"
#: Bytes a data line may hold, by field; every other byte is refused before any parsing.
ALLOWED = {
    "pattern": _DIGITS_SPACE,
    "integer": _DIGITS_SPACE,
    "real": _DIGITS_SPACE + b".eEnNaAiIfFtTyY",
    "complex": _DIGITS_SPACE + b".eEnNaAiIfFtTyY",
}
INT64_LIMIT = 2**63


@dataclass(frozen=True)
class Layout:
    """The fields of one data line: ``indices`` 1-based integers, then ``values`` of ``field``.

    ``field`` is real, integer, complex or pattern (``double`` is read as real).
    """

    indices: int
    field: str

    @property
    def values(self) -> int:
        return {"pattern": 0, "complex": 2}.get(self.field, 1)

    @property
    def width(self) -> int:
        """Fields per data line."""
        return self.indices + self.values

    @property
    def allowed(self) -> bytes:
        return ALLOWED[self.field]

    @property
    def dtype(self) -> np.dtype:
        """A structured dtype with one member per field: ``i0``, ``i1`` (int64), ``v0``, ``v1``."""
        value = np.int64 if self.field == "integer" else np.float64
        members = [(f"i{k}", np.int64) for k in range(self.indices)]
        members += [(f"v{k}", value) for k in range(self.values)]
        return np.dtype(members)

    def names(self) -> list[str]:
        """What each field means, for messages."""
        index_names = ["row index", "column index"] if self.indices == 2 else ["index"][: self.indices]
        value_names = {0: [], 1: ["value"], 2: ["real part", "imaginary part"]}[self.values]
        return index_names + value_names


def is_comment_or_blank(line: bytes) -> bool:
    """A line that carries no data: blank, or a ``%`` comment (leading blanks allowed)."""
    stripped = line.lstrip(b" \t")
    return not stripped.rstrip(b"\r") or stripped.startswith(b"%")


def integer_defect(token: bytes, what: str) -> str | None:
    """Why ``token`` is not a 64-bit integer (None when it is)."""
    if not INTEGER.fullmatch(token):
        return f"{what} {show(token)} is not an integer"
    if abs(int(token)) >= INT64_LIMIT:
        return f"{what} {show(token)} overflows a 64-bit integer"
    return None


def line_defect(line: bytes, layout: Layout) -> str | None:
    """Why a data line (without its newline) breaks ``layout``; None when it is valid."""
    if line.endswith(b"\r"):
        line = line[:-1]
    tokens = SEPARATOR.split(line.strip(b" \t"))
    names = layout.names()
    if len(tokens) != layout.width:
        expected = " ".join(names)
        return f"expected {layout.width} fields ({expected}), found {len(tokens)}"
    for token, name in zip(tokens[: layout.indices], names):
        defect = integer_defect(token, name)
        if defect:
            return defect
    for token, name in zip(tokens[layout.indices:], names[layout.indices:]):
        if layout.field == "integer":
            defect = integer_defect(token, name)
            if defect:
                return defect + " (the file's field is integer)"
        elif not (REAL.fullmatch(token) or NONFINITE.fullmatch(token)):
            return f"{name} {show(token)} is not a real number"
    return None


def show(token: bytes) -> str:
    """A token for a one-line message: quoted, non-printable bytes escaped, long ones shortened."""
    text = repr(token[:40].decode("latin-1"))
    return text + "..." if len(token) > 40 else text
