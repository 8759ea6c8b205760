"""Large HDF5 matrices row by row, without loading them: a dense dataset memory-mapped whole or in
row windows, or read in row blocks; a CSR group (anndata encoding) read in row blocks.

A row source is a callable that opens the file afresh and yields consecutive row blocks (dense
arrays or CSR matrices), one pass per call. The first complete pass checks the values (NaN/Inf) and, for
CSR, the column indices, raising InputError that names the file and the rows; later passes read
the same bytes and skip the checks.
"""

from __future__ import annotations

import mmap
import os
from dataclasses import dataclass
from typing import Iterator

import h5py
import numpy as np
import scipy.sparse as sp

from matcli.core.errors import InputError
from matcli.io import hdf5, hdf5_values
from matcli.io.guard import check_allocation
from matcli.io.spec import parse_spec


@dataclass(frozen=True)
class DenseDataset:
    """A 2-D dataset: where it is and what it holds (nothing read yet)."""

    path: str
    #: the path looked up in the file (each pass looks it up again, with the same checks)
    name: str
    shape: tuple[int, ...]
    dtype: np.dtype
    #: byte offset of a contiguous, uncompressed little-endian float64 dataset (mappable), else None
    offset: int | None

    @property
    def nbytes_float64(self) -> int:
        return 8 * int(np.prod(self.shape))


@dataclass(frozen=True)
class SparseGroup:
    """A CSR or CSC group in the anndata encoding (nothing but the shape and sizes read yet)."""

    path: str
    name: str
    shape: tuple[int, int]
    encoding: str
    nnz: int
    index_itemsize: int


def locate(spec_text: str) -> DenseDataset | SparseGroup | None:
    """What an HDF5 spec names when it is a dense 2-D-or-other dataset or a CSR/CSC group, else None
    (not HDF5, missing file, or another kind of group: the ordinary readers then report it).

    The object is reached as the ordinary readers reach it (:func:`matcli.io.hdf5.resolve_object`:
    nothing outside the file without the opt-in), a dataset's type is checked, a group's members
    are checked as :func:`matcli.io.hdf5.compressed_members` checks them; nothing is read.
    """
    spec = parse_spec(spec_text)
    if spec.kind != "hdf5" or not os.path.isfile(spec.path):
        return None
    with hdf5.open_file(spec.path) as fh:
        name = hdf5.internal_path(spec.path, fh, spec.internal)
        obj = hdf5.lookup(spec.path, fh, name)
        if isinstance(obj, h5py.Dataset):
            hdf5_values.value_dtype(spec.path, f"dataset {obj.name}", obj.dtype)
            return DenseDataset(spec.path, name, tuple(obj.shape), obj.dtype, _mappable_offset(spec.path, fh, obj))
        if not hdf5.is_sparse_group(obj):
            return None
        encoding = hdf5.sparse_encoding(spec.path, obj)
        shape = hdf5.group_shape(spec.path, obj)
        arrays = hdf5.compressed_members(spec.path, obj, shape[0] if encoding == "csr_matrix" else shape[1])
        return SparseGroup(spec.path, name, shape, encoding, arrays.nnz, int(arrays.indices.dtype.itemsize))


def _mappable_offset(path: str, fh: h5py.File, dset: h5py.Dataset) -> int | None:
    """Byte offset of ``dset``'s values in the file at ``path`` when they can be mapped: one
    contiguous, uncompressed block of little-endian float64 stored in this file (not reached
    through an allowed external link, not virtual or external raw storage). InputError when the
    block would reach beyond the end of the file: mapping it would kill the process (SIGBUS)."""
    if (dset.chunks is not None or dset.compression is not None or dset.dtype != np.dtype("<f8")
            or not dset.size or dset.is_virtual or dset.external or dset.file.id != fh.id):
        return None
    offset = dset.id.get_offset()
    if offset is None:  # no storage allocated: the values are the fill value
        return None
    size = os.path.getsize(path)
    if offset + 8 * dset.size > size:
        raise InputError(path, f"dataset {dset.name} declares {8 * dset.size} bytes at offset {offset}, "
                               f"beyond the end of the file ({size} bytes)")
    return offset


class MappedRows:
    """A mappable dataset mapped read-only over the file (no copy); ``array`` is the (m, ...) view.

    ``prefetch`` and ``release`` take row ranges: the first asks the kernel to read them ahead, the
    second drops their pages from this process's resident set (they stay in the page cache), so a
    pass over a file larger than the memory budget holds one window of it at a time.
    """

    def __init__(self, dataset: DenseDataset, *, populate: bool):
        if dataset.offset is None:
            raise ValueError(f"{dataset.name} is not a contiguous float64 dataset")
        self.row_bytes = 8 * int(np.prod(dataset.shape[1:]))
        aligned = dataset.offset - dataset.offset % mmap.ALLOCATIONGRANULARITY
        self.lead = dataset.offset - aligned
        length = self.lead + dataset.shape[0] * self.row_bytes
        fd = os.open(dataset.path, os.O_RDONLY)
        try:
            if hasattr(mmap, "MAP_SHARED"):
                flags = mmap.MAP_SHARED | (getattr(mmap, "MAP_POPULATE", 0) if populate else 0)
                self.mapping = mmap.mmap(fd, length, flags=flags, prot=mmap.PROT_READ, offset=aligned)
            else:  # Windows
                self.mapping = mmap.mmap(fd, length, access=mmap.ACCESS_READ, offset=aligned)
        finally:
            os.close(fd)
        self.array = np.ndarray(dataset.shape, dtype="<f8", buffer=self.mapping, offset=self.lead)

    def _advise(self, advice: int, start: int, stop: int, *, whole_pages: bool) -> None:
        first, last = self.lead + start * self.row_bytes, self.lead + stop * self.row_bytes
        first -= first % mmap.PAGESIZE
        if whole_pages:  # never drop a page that the next window shares
            last -= last % mmap.PAGESIZE
        if last > first and hasattr(self.mapping, "madvise"):
            self.mapping.madvise(advice, first, last - first)

    def prefetch(self, start: int, stop: int) -> None:
        self._advise(getattr(mmap, "MADV_WILLNEED", 3), start, stop, whole_pages=False)

    def release(self, start: int, stop: int) -> None:
        if hasattr(mmap, "MADV_DONTNEED"):
            self._advise(mmap.MADV_DONTNEED, start, stop, whole_pages=True)


def map_dense(dataset: DenseDataset) -> np.ndarray:
    """A mappable dataset as a read-only array over the file (no copy), every page mapped up front
    (MAP_POPULATE where the system has it: far cheaper than one page fault per 4 KiB later)."""
    return MappedRows(dataset, populate=True).array


def first_nonfinite_row(A: np.ndarray, rows: int = 65536) -> int | None:
    """Index of the first row of a dense A holding NaN or Inf, or None."""
    for start in range(0, A.shape[0], rows):
        bad = ~np.isfinite(A[start:start + rows]).all(axis=1)
        if bad.any():
            return start + int(np.flatnonzero(bad)[0])
    return None


class DenseRows:
    """Row source over a dense dataset in blocks of ``rows_per_block`` rows: windows of a mapping when
    the dataset is contiguous float64 (no copy through HDF5's buffers: a third of the time per pass;
    each window's pages leave the resident set once the next is asked for), else read through h5py
    and converted to float64."""

    def __init__(self, dataset: DenseDataset, rows_per_block: int):
        self.dataset, self.rows = dataset, max(1, int(rows_per_block))
        self.checked = False

    def __call__(self) -> Iterator[np.ndarray]:
        m = self.dataset.shape[0]
        spans = [(start, min(m, start + self.rows)) for start in range(0, m, self.rows)]
        if self.dataset.offset is not None:
            mapped = MappedRows(self.dataset, populate=False)
            for start, stop in spans:
                mapped.prefetch(start, stop)
                yield self._checked(mapped.array[start:stop], start)
                mapped.release(start, stop)
        else:
            path = self.dataset.path
            with hdf5.open_file(path) as fh:
                dset = hdf5.lookup(path, fh, self.dataset.name)
                dtype = hdf5_values.value_dtype(path, f"dataset {dset.name}", dset.dtype)
                for start, stop in spans:
                    yield self._checked(hdf5_values.read(path, dset, dtype, np.s_[start:stop]), start)
        self.checked = True

    def _checked(self, block: np.ndarray, start: int) -> np.ndarray:
        if not self.checked:
            bad = first_nonfinite_row(block)
            if bad is not None:
                raise InputError(self.dataset.path, f"matrix row {start + bad + 1} contains NaN or Inf")
        return block


class CsrRows:
    """Row source over a CSR group in blocks cut at ``cuts`` (row indices, 0 first, m last)."""

    def __init__(self, group: SparseGroup, indptr: np.ndarray, cuts: np.ndarray):
        self.group, self.indptr, self.cuts = group, indptr, np.asarray(cuts, dtype=np.int64)
        self.checked = False

    def __call__(self) -> Iterator[sp.csr_matrix]:
        m, n = self.group.shape
        with hdf5.open_file(self.group.path) as fh:
            arrays = _compressed(fh, self.group)
            for r0, r1 in zip(self.cuts[:-1].tolist(), self.cuts[1:].tolist()):
                lo, hi = int(self.indptr[r0]), int(self.indptr[r1])
                values = hdf5_values.read(self.group.path, arrays.data, arrays.dtype, np.s_[lo:hi])
                cols = hdf5_values.read(self.group.path, arrays.indices, arrays.indices.dtype, np.s_[lo:hi])
                if cols.dtype not in (np.int32, np.int64):
                    cols = cols.astype(np.int64)
                local = (self.indptr[r0:r1 + 1] - lo).astype(cols.dtype)
                if not self.checked:
                    self._check(values, cols, local, r0, n)
                yield sp.csr_matrix((values, cols, local), shape=(r1 - r0, n))
        self.checked = True

    def _check(self, values: np.ndarray, cols: np.ndarray, local: np.ndarray, r0: int, n: int) -> None:
        """InputError naming the first row with a non-finite value or an out-of-range column index."""
        def row_of(k: int) -> int:
            """1-based row of the block's k-th nonzero (the last row starting at or before k)."""
            return r0 + int(np.searchsorted(local, k, side="right"))

        bad = np.flatnonzero(~np.isfinite(values))
        if bad.size:
            raise InputError(self.group.path, f"matrix row {row_of(int(bad[0]))} contains NaN or Inf values")
        if cols.size and (int(cols.min()) < 0 or int(cols.max()) >= n):
            k = int(np.flatnonzero((cols < 0) | (cols >= n))[0])
            raise InputError(self.group.path, f"sparse group {self.group.name}: row {row_of(k)} has column "
                                              f"index {int(cols[k])} outside 0..{n - 1}")


def csr_indptr(group: SparseGroup) -> np.ndarray:
    """The row pointer of a CSR group (int64, length m + 1), checked against the memory budget and
    then the group's sizes as :func:`matcli.io.hdf5.read_sparse_group` checks them."""
    check_allocation(group.path, 8 * (group.shape[0] + 1), f"the row pointer of {group.name} ({group.shape[0]} rows)")
    with hdf5.open_file(group.path) as fh:
        arrays = _compressed(fh, group)
        indptr = hdf5_values.read(group.path, arrays.indptr, np.int64)
        hdf5.check_indptr(group.path, group.name, indptr, arrays.nnz)
    return indptr


def _compressed(fh: h5py.File, group: SparseGroup) -> hdf5.Compressed:
    """The checked datasets of ``group``, reached again in the reopened file ``fh``."""
    return hdf5.compressed_members(group.path, hdf5.lookup(group.path, fh, group.name), group.shape[0])


def row_cuts(cost: np.ndarray, budget: float) -> np.ndarray:
    """Cut rows into consecutive blocks of cumulative ``cost`` (length m + 1, non-decreasing, cost[0]
    = 0) at most ``budget`` each, except a single row that alone costs more. Returns the block
    boundaries ``[0, ..., m]``."""
    m = cost.size - 1
    cuts = [0]
    while cuts[-1] < m:
        start = cuts[-1]
        stop = int(np.searchsorted(cost, cost[start] + budget, side="right")) - 1
        cuts.append(min(m, max(stop, start + 1)))
    return np.asarray(cuts, dtype=np.int64)
