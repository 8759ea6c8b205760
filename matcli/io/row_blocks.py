"""Matrices read as row blocks by whoever holds a reference: a Dask worker opens the file itself.

:func:`row_source` inspects an input once (metadata only) and returns a small picklable
:class:`RowBlockSource`; :meth:`RowBlockSource.blocks` cuts the rows into balanced
:class:`RowBlock` ranges (dense: aligned to the storage chunks' rows where the blocks are at least
a chunk tall; CSR: balanced by nonzeros); :meth:`RowBlockSource.read` reads one block, on any
machine that reaches the same path. Nothing but the spec and a few integers travels.

Readable: a dense HDF5 dataset or CSR group (``file.h5:/A``), a dense Zarr array or CSR group
(``store.zarr:/A``), a ``.npy`` file (memory-mapped); dense inputs are 2-D matrices or 1-D vectors
(right-hand sides, read in the same row blocks as their matrix). Other inputs are refused with a one-line
InputError saying what to convert to: MatrixMarket text has no row index to seek to, a CSC group
has no rows to cut.

Every read applies the input policy the source was made under (memory budget, external links),
checks that the input still declares the same shape and type, checks the block's size against the
budget before reading it, and refuses non-finite values and out-of-range column indices naming
the file and the row.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from matcli.core.errors import InputError
from matcli.io.guard import InputPolicy, check_allocation, current_policy, input_policy, regular_file
from matcli.io.spec import parse_spec

#: CSR blocks are balanced on ``indptr`` sampled at this many rows at most (one strided read)
INDPTR_SAMPLES = 65536


@dataclass(frozen=True)
class RowBlock:
    """Rows ``start`` (inclusive) to ``stop`` (exclusive) of the input ``spec``."""

    spec: str
    start: int
    stop: int

    @property
    def n_rows(self) -> int:
        return self.stop - self.start


@dataclass(frozen=True)
class RowBlockSource:
    """A reference to an ``n_rows`` x ``n_cols`` matrix read in row blocks (see the module docstring).

    ``dtype`` is what blocks are returned as (float64 or complex128), ``nnz`` the stored entries
    (``n_rows * n_cols`` for dense inputs), ``layout`` ``dense``, ``vector`` (1-D, ``n_cols`` = 1,
    blocks are 1-D) or ``csr``, ``chunk_rows`` the rows
    of one storage chunk (1 when the storage has none), ``policy`` the input policy reads apply.
    """

    spec: str
    n_rows: int
    n_cols: int
    dtype: np.dtype
    nnz: int
    layout: str
    chunk_rows: int = 1
    policy: InputPolicy = field(default_factory=InputPolicy)
    #: CSR only: (rows, indptr at those rows), a sample used to balance blocks by nonzeros
    indptr_sample: tuple[tuple[int, ...], tuple[int, ...]] | None = None

    def blocks(self, k: int) -> list[RowBlock]:
        """At most ``k`` non-empty consecutive blocks covering every row exactly once, in order.

        Dense: cuts at ``i * n_rows / k`` rounded to a multiple of ``chunk_rows`` when each block
        spans at least a chunk (a block never reads a chunk another block reads). CSR: cuts where
        the sampled ``indptr`` crosses ``i * nnz / k`` (balanced within one sampling stride).
        Raises ValueError for ``k < 1``; an empty matrix has no blocks.
        """
        if k < 1:
            raise ValueError(f"blocks(k): k must be at least 1, got {k}")
        m = self.n_rows
        targets = np.arange(1, k) / k
        if self.layout == "csr" and self.nnz and self.indptr_sample is not None:
            rows, pointer = (np.asarray(v, dtype=np.int64) for v in self.indptr_sample)
            at = np.searchsorted(pointer, targets * self.nnz, side="left").clip(0, rows.size - 1)
            cuts = rows[at]
        else:
            cuts = np.rint(targets * m).astype(np.int64)
            c = self.chunk_rows
            if c > 1 and m >= k * c:
                cuts = np.rint(cuts / c).astype(np.int64) * c
        edges = np.unique(np.concatenate(([0], cuts.clip(0, m), [m])))
        return [RowBlock(self.spec, int(a), int(b)) for a, b in zip(edges[:-1], edges[1:]) if b > a]

    def read(self, block: RowBlock) -> np.ndarray | sp.csr_matrix:
        """Rows ``[block.start, block.stop)`` as a dense ``(rows, n_cols)`` array (``(rows,)`` for a
        vector) or a CSR matrix of that shape, of :attr:`dtype`, under the source's input policy
        (see the module docstring)."""
        if block.spec != self.spec or not 0 <= block.start <= block.stop <= self.n_rows:
            raise ValueError(f"block {block} is not a block of {self.spec} ({self.n_rows} rows)")
        with input_policy(self.policy):
            spec = parse_spec(self.spec)
            if spec.kind == "npy":
                return _NpyReader(self).read(block)
            if spec.kind == "hdf5":
                return _Hdf5Reader(self).read(block)
            return _ZarrReader(self).read(block)


def row_source(spec_text: str) -> RowBlockSource:
    """A :class:`RowBlockSource` for ``spec_text`` under the current input policy (metadata read,
    and for CSR a sample of ``indptr``; no values). InputError for inputs that cannot be read in
    row blocks, or whose metadata is invalid (as the ordinary readers would say)."""
    spec = parse_spec(spec_text)
    policy = current_policy()
    policy = InputPolicy(max_memory=policy.budget, allow_external=policy.allow_external)
    if spec.kind == "npy":
        return _NpyReader.inspect(spec_text, policy)
    if spec.kind == "hdf5":
        return _Hdf5Reader.inspect(spec_text, policy)
    if spec.kind == "zarr":
        return _ZarrReader.inspect(spec_text, policy)
    if spec.kind == "mtx":
        raise InputError(spec.path, "a MatrixMarket file cannot be read in row blocks (text has no row index); "
                                    "store it as an HDF5 dataset or CSR group, a Zarr array or .npy")
    raise InputError(spec.path, "cannot be read in row blocks (use file.h5:/A, store.zarr:/A or .npy)")


def _dense_source(spec_text: str, shape: tuple[int, ...], dtype: np.dtype, chunk: int,
                  policy: InputPolicy) -> RowBlockSource:
    m, n = (shape[0], 1) if len(shape) == 1 else shape
    return RowBlockSource(spec_text, int(m), int(n), dtype, int(m) * int(n), "vector" if len(shape) == 1 else "dense",
                          int(chunk), policy)


def _sample_rows(m: int) -> np.ndarray:
    step = max(1, -(-m // INDPTR_SAMPLES))
    return np.unique(np.append(np.arange(0, m + 1, step), m))


def _dense_block(path: str, values: np.ndarray, start: int) -> np.ndarray:
    bad = ~np.isfinite(values.reshape(values.shape[0], -1)).all(axis=1)
    if bad.any():
        raise InputError(path, f"matrix row {start + int(np.flatnonzero(bad)[0]) + 1} contains NaN or Inf")
    return values


def _csr_block(path: str, name: str, pointer: np.ndarray, values: np.ndarray, cols: np.ndarray,
               start: int, n: int) -> sp.csr_matrix:
    """The CSR block from its slice of ``indptr`` (absolute) and the entries it spans, checked."""
    local = pointer - pointer[0]
    if local.size > 1 and np.any(np.diff(local) < 0):
        raise InputError(path, f"sparse group {name}: indptr decreases within rows "
                               f"{start + 1}..{start + local.size - 1}")

    def row_of(k: int) -> int:
        return start + int(np.searchsorted(local, k, side="right"))

    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        raise InputError(path, f"matrix row {row_of(int(bad[0]))} contains NaN or Inf values")
    if cols.size and (int(cols.min()) < 0 or int(cols.max()) >= n):
        k = int(np.flatnonzero((cols < 0) | (cols >= n))[0])
        raise InputError(path, f"sparse group {name}: row {row_of(k)} has column index {int(cols[k])} "
                               f"outside 0..{n - 1}")
    index = np.int32 if max(n, values.size) < np.iinfo(np.int32).max else np.int64
    return sp.csr_matrix((values, cols.astype(index, copy=False), local.astype(index)), shape=(local.size - 1, n))


def _check_same(source: RowBlockSource, path: str, shape, nnz: int, dtype: np.dtype) -> None:
    planned = (source.n_rows,) if source.layout == "vector" else (source.n_rows, source.n_cols)
    if tuple(shape) != planned or nnz != source.nnz or dtype != source.dtype:
        raise InputError(path, f"changed since the blocks were planned (now {tuple(shape)}, {nnz} stored "
                               f"entries, {dtype}; was {planned}, {source.nnz}, {source.dtype})")


def _check_block(source: RowBlockSource, block: RowBlock, nnz: int | None = None) -> None:
    """Budget check for one block: dense rows, or a CSR block's entries and row pointer."""
    path = parse_spec(source.spec).path
    if nnz is None:
        nbytes = 2.0 * block.n_rows * source.n_cols * source.dtype.itemsize
        what = f"rows {block.start + 1}..{block.stop} ({block.n_rows} x {source.n_cols})"
    else:
        nbytes = nnz * (2.0 * source.dtype.itemsize + 16) + 16.0 * (block.n_rows + 1)
        what = f"rows {block.start + 1}..{block.stop} ({nnz} nonzeros)"
    check_allocation(path, nbytes, what)


class _NpyReader:
    """2-D .npy files, memory-mapped read-only; a block is copied out (and converted)."""

    def __init__(self, source: RowBlockSource):
        self.source = source

    @staticmethod
    def _map(path: str) -> np.memmap:
        from matcli.io.zarr_arrays import value_dtype

        regular_file(path)
        try:
            mapped = np.load(path, mmap_mode="r", allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise InputError(path, f"not a readable .npy file ({' '.join(str(exc).split())})") from None
        value_dtype(path, "the array", mapped.dtype)
        if mapped.ndim not in (1, 2):
            raise InputError(path, f"array is {mapped.ndim}-D, expected 1-D or 2-D")
        return mapped

    @classmethod
    def inspect(cls, spec_text: str, policy: InputPolicy) -> RowBlockSource:
        from matcli.io.zarr_arrays import value_dtype

        path = parse_spec(spec_text).path
        mapped = cls._map(path)
        return _dense_source(spec_text, mapped.shape, value_dtype(path, "the array", mapped.dtype), 1, policy)

    def read(self, block: RowBlock) -> np.ndarray:
        path = parse_spec(self.source.spec).path
        mapped = self._map(path)
        _check_same(self.source, path, mapped.shape, mapped.size, _out_dtype(mapped.dtype))
        _check_block(self.source, block)
        return _dense_block(path, np.array(mapped[block.start:block.stop], dtype=self.source.dtype), block.start)


def _out_dtype(dtype: np.dtype) -> np.dtype:
    return np.dtype(np.complex128 if np.dtype(dtype).kind == "c" else np.float64)


class _Hdf5Reader:
    """Dense datasets (read by row slices through h5py) and CSR groups."""

    def __init__(self, source: RowBlockSource):
        self.source = source

    @staticmethod
    def inspect(spec_text: str, policy: InputPolicy) -> RowBlockSource:
        from matcli.io import hdf5, hdf5_values

        spec = parse_spec(spec_text)
        with hdf5.open_file(spec.path) as fh:
            obj = hdf5.resolve_object(fh, spec.path, spec.internal)
            if isinstance(obj, hdf5.h5py.Dataset):
                dtype = hdf5_values.value_dtype(spec.path, f"dataset {obj.name}", obj.dtype)
                if obj.ndim not in (1, 2):
                    raise InputError(spec.path, f"dataset {obj.name} is {obj.ndim}-D, expected 1-D or 2-D")
                return _dense_source(spec_text, obj.shape, dtype, obj.chunks[0] if obj.chunks else 1, policy)
            if not hdf5.is_sparse_group(obj):
                raise InputError(spec.path, f"group {obj.name} is not a sparse matrix (needs data, indices, indptr)")
            if hdf5.sparse_encoding(spec.path, obj) != "csr_matrix":
                raise InputError(spec.path, f"sparse group {obj.name} is CSC, which has no rows to cut; "
                                            "store it as CSR")
            m, n = hdf5.group_shape(spec.path, obj)
            arrays = hdf5.compressed_members(spec.path, obj, m)
            rows = _sample_rows(m)
            check_allocation(spec.path, 16.0 * rows.size, f"a sample of the row pointer of {obj.name}")
            pointer = hdf5_values.read(spec.path, arrays.indptr, np.int64, (rows,))
            _check_sample(spec.path, obj.name, pointer, arrays.nnz)
            return RowBlockSource(spec_text, m, n, arrays.dtype, arrays.nnz, "csr", 1, policy,
                                  (tuple(rows.tolist()), tuple(pointer.tolist())))

    def read(self, block: RowBlock):
        from matcli.io import hdf5, hdf5_values

        spec = parse_spec(self.source.spec)
        with hdf5.open_file(spec.path) as fh:
            obj = hdf5.resolve_object(fh, spec.path, spec.internal)
            if self.source.layout != "csr":
                if not isinstance(obj, hdf5.h5py.Dataset):
                    raise InputError(spec.path, f"{obj.name} is no longer a dataset")
                dtype = hdf5_values.value_dtype(spec.path, f"dataset {obj.name}", obj.dtype)
                _check_same(self.source, spec.path, obj.shape, obj.size, dtype)
                _check_block(self.source, block)
                values = hdf5_values.read(spec.path, obj, dtype, np.s_[block.start:block.stop])
                return _dense_block(spec.path, values, block.start)
            if not isinstance(obj, hdf5.h5py.Group) or not hdf5.is_sparse_group(obj):
                raise InputError(spec.path, f"{obj.name} is no longer a sparse group")
            shape = hdf5.group_shape(spec.path, obj)
            arrays = hdf5.compressed_members(spec.path, obj, shape[0])
            _check_same(self.source, spec.path, shape, arrays.nnz, arrays.dtype)
            check_allocation(spec.path, 8.0 * (block.n_rows + 1),
                             f"the row pointer of rows {block.start + 1}..{block.stop}")
            pointer = hdf5_values.read(spec.path, arrays.indptr, np.int64, np.s_[block.start:block.stop + 1])
            lo, hi = _span(spec.path, obj.name, pointer, arrays.nnz)
            _check_block(self.source, block, hi - lo)
            values = hdf5_values.read(spec.path, arrays.data, arrays.dtype, np.s_[lo:hi])
            cols = hdf5_values.read(spec.path, arrays.indices, np.int64, np.s_[lo:hi])
            return _csr_block(spec.path, obj.name, pointer, values, cols, block.start, self.source.n_cols)


def _check_sample(path: str, name: str, pointer: np.ndarray, nnz: int) -> None:
    if pointer.size and (pointer[0] != 0 or pointer[-1] != nnz or np.any(np.diff(pointer) < 0)):
        raise InputError(path, f"sparse group {name}: indptr is inconsistent with data/indices")


def _span(path: str, name: str, pointer: np.ndarray, nnz: int) -> tuple[int, int]:
    lo, hi = int(pointer[0]), int(pointer[-1])
    if not 0 <= lo <= hi <= nnz:
        raise InputError(path, f"sparse group {name}: indptr is inconsistent with data/indices")
    return lo, hi


class _ZarrReader:
    """Dense Zarr arrays (row slices) and CSR groups."""

    def __init__(self, source: RowBlockSource):
        self.source = source

    @staticmethod
    def _open(spec_text: str):
        from matcli.io import zarr_arrays
        from matcli.io.zarr_store import locate, open_node

        spec = parse_spec(spec_text)
        node = locate(spec.path, spec.internal)
        if node.kind == "array":
            array, dtype = zarr_arrays.open_dense(spec.path, node, (1, 2))
            return node, array, dtype, None
        group = open_node(node)
        if not zarr_arrays.is_sparse_node(node, group):
            raise InputError(spec.path, f"group {node.name} is not a sparse matrix (needs data, indices, indptr)")
        encoding, shape = zarr_arrays.sparse_layout(spec.path, node, group)
        if encoding != "csr_matrix":
            raise InputError(spec.path, f"sparse group {node.name} is CSC, which has no rows to cut; store it as CSR")
        data, indices, indptr, dtype = zarr_arrays.compressed_arrays(spec.path, node, group, shape[0])
        return node, (data, indices, indptr), dtype, shape

    @classmethod
    def inspect(cls, spec_text: str, policy: InputPolicy) -> RowBlockSource:
        from matcli.io.zarr_arrays import read_array

        path = parse_spec(spec_text).path
        node, arrays, dtype, shape = cls._open(spec_text)
        if shape is None:
            stored = arrays.shards or arrays.chunks
            return _dense_source(spec_text, arrays.shape, dtype, stored[0], policy)
        data, _, indptr = arrays
        rows = _sample_rows(shape[0])
        check_allocation(path, 16.0 * rows.size, f"a sample of the row pointer of {node.name}")
        pointer = read_array(path, f"{node.name}/indptr", indptr.oindex, np.dtype(np.int64), (rows,))
        nnz = int(data.shape[0])
        _check_sample(path, node.name, pointer, nnz)
        return RowBlockSource(spec_text, shape[0], shape[1], dtype, nnz, "csr", 1, policy,
                              (tuple(rows.tolist()), tuple(pointer.tolist())))

    def read(self, block: RowBlock):
        from matcli.io.zarr_store import zarr_package
        from matcli.threads import worker_count

        path = parse_spec(self.source.spec).path
        # zarr decodes a read's chunks as up to async.concurrency (10) tasks at once, whose threads
        # fight over the process's cores: on one thread (a Dask worker's), a 1e6 x 100 float64
        # array (zstd, 8 MiB chunks) took 2.3-3.1 s of CPU in 8.5-9.2 s; one chunk at a time, 1.2-1.4 s in 2.2-4 s
        with zarr_package(path, InputError).config.set({"async.concurrency": worker_count()}):
            return self._read(path, block)

    def _read(self, path: str, block: RowBlock):
        from matcli.io.zarr_arrays import read_array

        node, arrays, dtype, shape = self._open(self.source.spec)
        if shape is None:
            _check_same(self.source, path, arrays.shape, int(np.prod(arrays.shape)), dtype)
            _check_block(self.source, block)
            values = read_array(path, f"array {node.name}", arrays, dtype, np.s_[block.start:block.stop])
            return _dense_block(path, values, block.start)
        data, indices, indptr = arrays
        _check_same(self.source, path, shape, int(data.shape[0]), dtype)
        check_allocation(path, 8.0 * (block.n_rows + 1), f"the row pointer of rows {block.start + 1}..{block.stop}")
        pointer = read_array(path, f"{node.name}/indptr", indptr, np.dtype(np.int64), np.s_[block.start:block.stop + 1])
        lo, hi = _span(path, node.name, pointer, int(data.shape[0]))
        _check_block(self.source, block, hi - lo)
        values = read_array(path, f"{node.name}/data", data, dtype, np.s_[lo:hi])
        cols = read_array(path, f"{node.name}/indices", indices, np.dtype(np.int64), np.s_[lo:hi])
        return _csr_block(path, node.name, pointer, values, cols, block.start, self.source.n_cols)

