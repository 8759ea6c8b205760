"""Format-independent loaders used by the job adapters: pick the reader from the spec."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import numpy as np

from matcli.core.errors import InputError
from matcli.core.lazy_sparse import sp
from matcli.io import in_memory
from matcli.io.densify import dense_from_compressed, dense_solve_fits
from matcli.io.ids import IdAxis, check_extent
from matcli.io.npy import read_npy
from matcli.io.spec import Spec, parse_spec
from matcli.io.stdin import STDIN, read_from_stdin


@dataclass(frozen=True)
class Observed:
    """Observed entries of a matrix, addressed by factor row and column.

    ``rows``/``cols`` (N,) int64 are factor rows/columns (``0..m-1``, ``0..n-1``; -1 for an id that
    has no factor row, possible only in entries mapped through another file's ids), ``values``
    (N,) float64 finite, ``shape`` = (m, n) the number of factor rows and columns. ``row_ids`` /
    ``col_ids`` say which ids those rows stand for (dense: the whole id space; compacted: the
    observed ids only, see :mod:`matcli.io.ids`).
    """

    rows: np.ndarray
    cols: np.ndarray
    values: np.ndarray
    shape: tuple[int, int]
    path: str
    row_ids: IdAxis
    col_ids: IdAxis

    @property
    def nnz(self) -> int:
        return int(self.values.size)

    @property
    def id_space(self) -> tuple[int, int]:
        """Extent of the ids: the declared shape, or the largest ids of a ratings file."""
        return self.row_ids.extent, self.col_ids.extent


def check_finite(array, path: str, what: str) -> None:
    """Raise InputError when a dense array or a sparse matrix's stored values hold NaN/Inf."""
    values = array.data if sp.issparse(array) else np.asarray(array)
    if not values.size or values.dtype.kind not in "fc":
        return
    # A NaN or Inf anywhere makes the sum non-finite; the sum needs no temporary array. Only when it
    # is not finite (or overflowed) are the values checked one by one.
    with np.errstate(over="ignore", invalid="ignore"):
        total = np.add.reduce(values, axis=None)
    if not np.isfinite(total) and not np.isfinite(values).all():
        raise InputError(path, f"{what} contains NaN or Inf values")


def _require_file(spec: Spec) -> None:
    from matcli.io.guard import regular_file

    regular_file(spec.path)


def read_matrix(spec_text: str) -> np.ndarray | sp.csr_matrix:
    """A 2-D matrix from ``.mtx[.gz]``, ``.npy``, ``.npz`` (``scipy.sparse.save_npz`` or one array),
    ``file.h5:/dataset_or_sparse_group`` (also ``.h5ad``) or ``store.zarr:/array_or_sparse_group``
    (:mod:`matcli.io.zarr_arrays`); ``-``: MatrixMarket on standard input.

    Returns a float64/complex128 dense array or CSR matrix with finite values.
    """
    return read_matrix_densified(spec_text, None)[0]


def read_matrix_densified(spec_text: str, max_order: int | None) -> tuple[np.ndarray | sp.csr_matrix, str]:
    """:func:`read_matrix`, except that a square sparse HDF5 group, coordinate MatrixMarket file or
    sparse API array of order at most ``max_order`` (None: never) whose dense solve fits the memory
    budget (:func:`~matcli.io.densify.dense_solve_fits`) is returned as a dense array built by numpy
    alone (:mod:`matcli.io.densify`; a file's read imports no scipy), after the same checks.

    Returns the matrix and, when it was densified, what the input was (``"sparse HDF5 group"``,
    ``"coordinate MatrixMarket file"`` or ``"sparse array"``), else ``""``.
    """
    held = in_memory.lookup(spec_text)
    if held is not None:
        matrix = in_memory.as_matrix(spec_text, held)
        if max_order is not None and sp.issparse(matrix) and _densify(max_order, matrix.shape):
            # as a file with these arrays is read: an API caller gets the CLI's answer, bit for bit
            return dense_from_compressed(spec_text, matrix.shape, matrix.data, matrix.indices, matrix.indptr,
                                         by_rows=True, what="sparse array"), "sparse array"
        return matrix, ""
    spec = parse_spec(spec_text)
    if spec.path == STDIN:
        from matcli.io.mtx import read_mtx

        return read_from_stdin(read_mtx), ""
    if spec.kind == "zarr":
        from matcli.io import zarr_arrays

        matrix = zarr_arrays.read_matrix(spec.path, spec.internal, (2,))
        check_finite(matrix, spec.path, "matrix")
        return matrix, ""
    _require_file(spec)
    if spec.kind == "mtx":
        if max_order is None:
            from matcli.io.mtx import read_mtx

            return read_mtx(spec.path), ""
        from matcli.io.mtx import read_mtx_densified

        matrix, densified = read_mtx_densified(spec.path, partial(_densify, max_order))
        return matrix, "coordinate MatrixMarket file" if densified else ""
    if spec.kind == "hdf5":
        from matcli.io import hdf5

        densified = ""
        with hdf5.open_file(spec.path) as fh:
            obj = hdf5.resolve_object(fh, spec.path, spec.internal)
            if isinstance(obj, hdf5.h5py.Group):
                if not hdf5.is_sparse_group(obj):
                    raise InputError(spec.path, f"group {obj.name} is not a sparse matrix (needs data, indices, indptr)")
                if max_order is not None and _densify(max_order, hdf5.group_shape(spec.path, obj)):
                    matrix = hdf5.read_sparse_group_dense(spec.path, obj)
                    densified = "sparse HDF5 group"
                else:
                    matrix = hdf5.read_sparse_group(spec.path, obj)
            else:
                matrix = hdf5.read_dense_dataset(spec.path, obj, (2,))
        check_finite(matrix, spec.path, "matrix")
        return matrix, densified
    if spec.kind in ("npy", "npz"):
        if spec.kind == "npz":
            from matcli.io.npz import read_npz

            matrix = read_npz(spec.path)
        else:
            matrix = read_npy(spec.path)
        if matrix.ndim != 2:
            raise InputError(spec.path, f"array is {matrix.ndim}-D, expected 2-D")
        check_finite(matrix, spec.path, "matrix")
        return matrix, ""
    raise InputError(spec.path, "unknown matrix format (use .mtx, .mtx.gz, .npy, .npz, file.h5:/dataset or "
                                "store.zarr:/array)")


def _densify(max_order: int, shape: tuple[int, int]) -> bool:
    """A sparse input of ``shape`` is read as a dense array: square, of order at most ``max_order``,
    its dense solve within the memory budget."""
    return shape[0] == shape[1] <= max_order and dense_solve_fits(shape)


def read_dense(spec_text: str) -> np.ndarray:
    """A 1-D or 2-D dense array (right-hand sides, vectors) from .mtx, .h5, .zarr, .npy, .txt/.csv."""
    held = in_memory.lookup(spec_text)
    if held is not None:
        held = held.toarray() if sp.issparse(held) else held
        return in_memory.as_matrix(spec_text, held, (1, 2))
    spec = parse_spec(spec_text)
    if spec.path == STDIN:
        from matcli.io.mtx import read_mtx

        matrix = read_from_stdin(read_mtx)
        return matrix.toarray() if sp.issparse(matrix) else matrix
    if spec.kind == "zarr":
        from matcli.io import zarr_arrays
        from matcli.io.guard import check_allocation

        matrix = zarr_arrays.read_matrix(spec.path, spec.internal, (1, 2))
        if sp.issparse(matrix):
            check_allocation(spec.path, float(matrix.shape[0]) * matrix.shape[1] * matrix.dtype.itemsize,
                             f"sparse group as a dense {matrix.shape[0]} x {matrix.shape[1]} array")
            matrix = matrix.toarray()
        check_finite(matrix, spec.path, "array")
        return matrix
    _require_file(spec)
    if spec.kind == "hdf5":
        from matcli.io import hdf5

        with hdf5.open_file(spec.path) as fh:
            obj = hdf5.resolve_object(fh, spec.path, spec.internal)
            if isinstance(obj, hdf5.h5py.Group):
                if not hdf5.is_sparse_group(obj):
                    raise InputError(spec.path, f"{obj.name} is a group, expected a dataset")
                array = hdf5.read_sparse_group_dense(spec.path, obj)
            else:
                array = hdf5.read_dense_dataset(spec.path, obj, (1, 2))
    elif spec.kind == "mtx":
        from matcli.io.mtx import read_mtx_densified

        array, _ = read_mtx_densified(spec.path, lambda shape: True)
    elif spec.kind == "npy":
        array = read_npy(spec.path)
        if array.ndim not in (1, 2):
            raise InputError(spec.path, f"array is {array.ndim}-D, expected 1-D or 2-D")
    elif spec.path.lower().endswith((".txt", ".csv", ".tsv", ".dat")):
        from matcli.io.text import read_text_array

        array = read_text_array(spec.path)
    else:
        raise InputError(spec.path, "unknown array format (use .h5:/dataset, .zarr:/array, .mtx, .npy, .txt or .csv)")
    check_finite(array, spec.path, "array")
    return array


def read_observed(spec_text: str, shape: tuple[int, int] | None = None, *,
                  training: Observed | None = None) -> Observed:
    """Observed entries from triplets, an HDF5 COO group, or a coordinate ``.mtx``.

    Ids: a ratings file's ids are its own (1 .. 2**64-1, any sparsity); a MatrixMarket file's are
    its 1-based row and column numbers; an HDF5 group's 0-based indices are ids minus one.
    ``shape`` (``--shape``) declares the id space of any input (every id must fit in it); HDF5 and
    MatrixMarket files declare their own. Each axis keeps the whole id space when it costs at most
    twice its observed ids, else only the observed ids (:class:`matcli.io.ids.IdAxis`), so a few
    entries with ids near 1e12 or a 1e7 x 1e7 declared shape take memory for the entries only.

    ``training``: map the entries through the id maps of this (training) file instead of building
    new ones; ids it has no factor row for get row/column -1, ids outside its declared id space
    are an InputError.
    """
    spec = parse_spec(spec_text)
    held = in_memory.lookup(spec_text)
    if held is None:
        _require_file(spec)
    line_of = None
    if held is not None:
        # an array: its stored entries are the observed ones, as in a coordinate MatrixMarket file
        if not sp.issparse(held):
            raise InputError(spec.path, "observed entries need a scipy.sparse matrix (its stored entries are "
                                        "the observed ones)")
        coo = in_memory.as_matrix(spec_text, held).tocoo()
        row_keys, col_keys, values, extent = coo.row.astype(np.uint64), coo.col.astype(np.uint64), coo.data, coo.shape
        if np.iscomplexobj(values):
            raise InputError(spec.path, "observed entries must be real")
    elif spec.kind == "hdf5":
        from matcli.io import hdf5

        with hdf5.open_file(spec.path) as fh:
            obj = hdf5.resolve_object(fh, spec.path, spec.internal)
            if not isinstance(obj, hdf5.h5py.Group) or not hdf5.is_coo_group(obj):
                raise InputError(spec.path, f"{obj.name} is not an observed-entries group (needs row, col, value)")
            rows, cols, values, extent = hdf5.read_coo_group(spec.path, obj)
        row_keys, col_keys = rows.astype(np.uint64), cols.astype(np.uint64)
    elif spec.kind == "mtx":
        from matcli.io.mtx import read_mtx

        matrix = read_mtx(spec.path)
        if not sp.issparse(matrix):
            raise InputError(spec.path, "observed entries need a coordinate MatrixMarket file, got array format")
        coo = matrix.tocoo()
        row_keys, col_keys, values, extent = coo.row.astype(np.uint64), coo.col.astype(np.uint64), coo.data, coo.shape
        if np.iscomplexobj(values):
            raise InputError(spec.path, "observed entries must be real")
    else:
        from matcli.io.triplets import line_of_entry, read_triplets

        users, items, values = read_triplets(spec.path)
        row_keys, col_keys, extent = users - np.uint64(1), items - np.uint64(1), (None, None)
        line_of = partial(line_of_entry, spec.path)
    if not np.isfinite(values).all():
        raise InputError(spec.path, "observed values contain NaN or Inf")
    values = values.astype(np.float64)
    if shape is not None:
        extent = tuple(int(v) for v in shape)
        check_extent(spec.path, row_keys, col_keys, extent, "matrix", line_of)
    if training is None:
        row_ids, rows = IdAxis.build(row_keys, extent[0])
        col_ids, cols = IdAxis.build(col_keys, extent[1])
        return Observed(rows, cols, values, (row_ids.size, col_ids.size), spec.path, row_ids, col_ids)
    if training.row_ids.declared or training.col_ids.declared:
        check_extent(spec.path, row_keys, col_keys, training.id_space, "training matrix", line_of)
    return Observed(training.row_ids.rows_of(row_keys), training.col_ids.rows_of(col_keys), values, training.shape,
                    spec.path, training.row_ids, training.col_ids)


def list_hdf5_members(spec_text: str) -> list[str]:
    """Members directly under the group named by ``file.h5:/group`` (root when no group is given)."""
    spec = parse_spec(spec_text)
    _require_file(spec)
    from matcli.io.hdf5 import list_members

    return list_members(spec.path, spec.internal)
