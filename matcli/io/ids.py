"""Id maps: which row (column) id each factor row stands for.

Observed entries name their rows and columns by **keys**: 0-based unsigned 64-bit integers (the
index of an HDF5 COO group or a MatrixMarket file, a ratings file's id minus one). A completion
model has one factor row per key it keeps. An axis keeps the whole id space ``0..extent-1`` when
that costs at most twice the rows that are observed ("dense": factor row ``r`` is key ``r``, the
shape users expect, e.g. 943 x 1682 for MovieLens); otherwise it keeps only the observed keys in
ascending order ("compacted"), so a file with ids near 1e12 or hashed 64-bit ids needs memory for
its observed rows only.

Ids shown to users (model datasets ``row_ids``/``col_ids``, prediction files) are keys + 1: the ids
of a ratings file, the row numbers of a MatrixMarket file, one more than an HDF5 group's index.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from matcli.core.errors import InputError

#: An axis stays dense while extent <= DENSE_FACTOR * (number of distinct observed keys).
DENSE_FACTOR = 2


@dataclass(frozen=True)
class IdAxis:
    """The keys of one axis's factor rows.

    Attributes
    ----------
    size : int
        Number of factor rows.
    keys : (size,) uint64 array, ascending, or None
        Key of each factor row; None when the axis is dense (row ``r`` is key ``r``).
    extent : int
        Size of the id space: keys are ``0..extent-1``. The declared shape (HDF5 ``shape``
        attribute, MatrixMarket size line, ``--shape``) or, for a ratings file, its largest id.
    declared : bool
        Whether ``extent`` was declared; keys of other files (test, predict) must then lie inside
        it. An undeclared id space is open: any key is valid, unknown ones have no factor row.
    """

    size: int
    keys: np.ndarray | None
    extent: int
    declared: bool

    @classmethod
    def build(cls, keys: np.ndarray, extent: int | None) -> tuple["IdAxis", np.ndarray]:
        """The axis of the observed ``keys`` (N,) uint64, and each entry's factor row (N,) int64.

        ``extent`` is the declared id-space size (every key below it) or None (largest key + 1).
        Costs O(N) when the axis is dense, O(N log N) (a sort) when it is compacted.
        """
        declared = extent is not None
        if extent is None:
            extent = int(keys.max()) + 1 if keys.size else 0
        if extent <= DENSE_FACTOR * keys.size:
            # extent is small here, so the count of distinct keys costs O(extent) memory at most.
            distinct = int(np.count_nonzero(np.bincount(keys.astype(np.int64), minlength=extent)))
            if extent <= DENSE_FACTOR * distinct:
                return cls(extent, None, extent, declared), keys.astype(np.int64)
        unique, rows = np.unique(keys, return_inverse=True)
        return cls(int(unique.size), unique, extent, declared), rows.astype(np.int64).reshape(-1)

    @property
    def compacted(self) -> bool:
        return self.keys is not None

    def rows_of(self, keys: np.ndarray) -> np.ndarray:
        """Factor row of each key (N,) uint64 as (N,) int64; -1 for keys without a factor row."""
        if self.keys is None:
            rows = keys.astype(np.int64)
            rows[keys >= np.uint64(self.size)] = -1
            return rows
        where = np.searchsorted(self.keys, keys)
        found = where < self.size
        found[found] = self.keys[where[found]] == keys[found]
        return np.where(found, where, -1).astype(np.int64)

    def first_outside(self, keys: np.ndarray) -> int | None:
        """Index of the first key beyond a declared extent (None when all fit or it is open)."""
        if not self.declared or not keys.size:
            return None
        beyond = np.flatnonzero(keys >= np.uint64(self.extent))
        return int(beyond[0]) if beyond.size else None

    def ids(self) -> np.ndarray:
        """(size,) uint64: the user-facing id (key + 1) of every factor row."""
        if self.keys is None:
            return np.arange(1, self.size + 1, dtype=np.uint64)
        return self.keys + np.uint64(1)


def check_extent(path: str, row_keys: np.ndarray, col_keys: np.ndarray, extent: tuple[int, int], what: str,
                 line_of: Callable[[int], int] | None = None) -> None:
    """Raise InputError naming the first entry whose keys (N,) uint64 lie outside ``extent``.

    ``line_of(index)`` gives the 1-based line of an entry of a text file, for the message.
    """
    outside = (row_keys >= np.uint64(extent[0])) | (col_keys >= np.uint64(extent[1]))
    if not outside.any():
        return
    first = int(np.flatnonzero(outside)[0])
    where = f"line {line_of(first)}: " if line_of is not None else ""
    raise InputError(path, f"{where}entry ({int(row_keys[first]) + 1}, {int(col_keys[first]) + 1}) lies outside "
                           f"the {extent[0]}x{extent[1]} {what}")
