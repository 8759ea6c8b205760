"""Ratings triplets: ``user item value [timestamp]`` per line (MovieLens ``u.data`` style).

Separators: tab, comma (``.csv``), or runs of spaces. Ids are positive integers, 1-based. An
optional header line (non-numeric first field) is skipped.
"""

from __future__ import annotations

import os

import numpy as np

from matcli.core.errors import InputError, OutputError


def _delimiter(path: str, first_line: str) -> str | None:
    if path.lower().endswith(".csv") or ("," in first_line and "\t" not in first_line):
        return ","
    if "\t" in first_line:
        return "\t"
    return None


def read_triplets(path: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Read (rows, cols, values): rows/cols int64 0-based, values float64, all finite.

    Raises InputError for a missing file, fewer than three columns, non-integer or non-positive
    ids, unparseable or non-finite values.
    """
    if not os.path.exists(path):
        raise InputError(path, "file not found")
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            first = fh.readline()
    except OSError as exc:
        raise InputError(path, f"cannot read file ({exc.strerror})") from None
    if not first.strip():
        raise InputError(path, "empty ratings file")
    delimiter = _delimiter(path, first)
    fields = first.strip().split(delimiter) if delimiter else first.split()
    skip = 0
    try:
        float(fields[0])
    except ValueError:
        skip = 1
    if len(fields) < 3:
        raise InputError(path, f"line 1: expected user, item, value columns, found {len(fields)} field(s)")
    try:
        table = np.loadtxt(path, delimiter=delimiter, skiprows=skip, usecols=(0, 1, 2),
                           dtype=np.float64, ndmin=2, comments="#")
    except ValueError as exc:
        detail = str(exc).splitlines()[0] if str(exc) else "malformed line"
        raise InputError(path, f"malformed ratings: {detail}") from None
    if table.shape[0] == 0:
        raise InputError(path, "no ratings in file")
    ids = table[:, :2]
    if not np.isfinite(ids).all() or np.any(ids != np.round(ids)):
        raise InputError(path, "user/item ids must be integers")
    if ids.min() < 1:
        raise InputError(path, "user/item ids must be positive (1-based)")
    values = table[:, 2]
    if not np.isfinite(values).all():
        bad = int(np.flatnonzero(~np.isfinite(values))[0]) + 1 + skip
        raise InputError(path, f"line {bad}: rating is NaN/Inf")
    return ids[:, 0].astype(np.int64) - 1, ids[:, 1].astype(np.int64) - 1, values.copy()


def write_triplets(path: str, rows: np.ndarray, cols: np.ndarray, values: np.ndarray) -> None:
    """Write ``row col value`` lines, tab-separated, ids 1-based (inverse of :func:`read_triplets`)."""
    table = np.column_stack([rows + 1, cols + 1, values])
    try:
        np.savetxt(path, table, fmt=["%d", "%d", "%.10g"], delimiter="\t")
    except OSError as exc:
        raise OutputError(path, f"cannot write ({exc.strerror})") from None
