"""Zarr arrays and sparse groups as matrices, within the memory budget.

Dense: a numeric 1-D or 2-D array. Sparse: a group laid out as our HDF5 sparse groups (the
anndata encoding, which anndata also writes to Zarr)::

    /A                      group, attributes: encoding-type = "csr_matrix" | "csc_matrix",
                                               shape = [m, n]
    /A/data, /A/indices, /A/indptr   1-D arrays

Everything the metadata declares (rank, dtype, shape, chunk shape, lengths) is checked, and the
bytes a read takes are checked against the budget, before a chunk is read. A chunk the store lacks
reads as the array's ``fill_value``, as the Zarr specification says (zarr itself omits chunks that
hold only the fill value); a NaN or infinite fill value then fails the finite-value check.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from matcli.core.errors import InputError
from matcli.io.guard import check_allocation
from matcli.io.zarr_store import Node, locate, open_node, zarr_errors

#: largest dimension a sparse group's ``shape`` may declare (as for HDF5 groups)
MAX_DIMENSION = 2**62
_FLOAT64, _COMPLEX128 = np.dtype(np.float64), np.dtype(np.complex128)


def value_dtype(store: str, what: str, dtype: Any) -> np.dtype:
    """float64 for booleans, integers and floats up to 64 bits, complex128 for complex; InputError for
    anything else (strings, objects, structured, datetimes, extended precision)."""
    try:
        dtype = np.dtype(dtype)
    except TypeError:
        raise InputError(store, f"{what} has non-numeric dtype {dtype}") from None
    if dtype.names is None and dtype.kind == "c" and dtype.itemsize <= 16:
        return _COMPLEX128
    if dtype.names is None and (dtype.kind in "biu" or (dtype.kind == "f" and dtype.itemsize <= 8)):
        return _FLOAT64
    if dtype.kind in "fc":
        raise InputError(store, f"{what} has dtype {dtype} (extended precision), which float64 cannot hold")
    raise InputError(store, f"{what} has non-numeric dtype {dtype}")


def check_chunks(store: str, what: str, array) -> None:
    """InputError unless the chunk shape has the array's rank and positive sides; ResourceError when
    decoding one chunk would take more than the budget (a tiny store may declare 1e12-element chunks)."""
    chunks = tuple(int(c) for c in array.chunks)
    if len(chunks) != array.ndim or any(c < 1 for c in chunks):
        raise InputError(store, f"{what} declares chunks {chunks} for shape {tuple(array.shape)}")
    check_allocation(store, float(np.prod(chunks, dtype=float)) * np.dtype(array.dtype).itemsize,
                     f"one chunk of {what} ({' x '.join(map(str, chunks))} {array.dtype})")


def read_array(store: str, what: str, array, dtype: np.dtype, selection: Any = ()) -> np.ndarray:
    """``array[selection]`` as ``dtype`` (the caller checked its size against the budget)."""
    with zarr_errors(store, f"cannot read {what}"):
        values = np.asarray(array[selection])
    if values.dtype.kind == "c" and dtype.kind != "c":
        raise InputError(store, f"{what} is complex")
    return values.astype(dtype, copy=False)


def open_dense(store: str, node: Node, ndims: tuple[int, ...]):
    """(zarr array, dtype read as) for a numeric array whose rank is one of ``ndims``, its chunks checked."""
    what = f"array {node.name}"
    if node.kind != "array":
        raise InputError(store, f"{node.name} is a group, expected an array")
    array = open_node(node)
    dtype = value_dtype(store, what, array.dtype)
    if array.ndim not in ndims:
        want = " or ".join(f"{d}-D" for d in ndims)
        raise InputError(store, f"{what} is {array.ndim}-D, expected {want}")
    check_chunks(store, what, array)
    return array, dtype


def read_dense(store: str, node: Node, ndims: tuple[int, ...]) -> np.ndarray:
    """A numeric array of rank in ``ndims`` as float64/complex128, after the budget check (the array
    as stored plus its converted copy when the types differ)."""
    array, dtype = open_dense(store, node, ndims)
    stored = np.dtype(array.dtype).itemsize
    per_entry = dtype.itemsize + (0 if np.dtype(array.dtype) == dtype else stored)
    check_allocation(store, float(np.prod(array.shape, dtype=float)) * per_entry,
                     f"array {node.name} ({' x '.join(map(str, array.shape))} {array.dtype})")
    return read_array(store, f"array {node.name}", array, dtype)


def is_sparse_node(node: Node, group) -> bool:
    """Whether a group holds the three arrays of a compressed sparse matrix."""
    names = set(group.array_keys())
    return node.kind == "group" and {"data", "indices", "indptr"} <= names


def sparse_layout(store: str, node: Node, group) -> tuple[str, tuple[int, int]]:
    """(``csr_matrix`` or ``csc_matrix``, (m, n)) from a sparse group's attributes."""
    attrs = group.attrs.asdict()
    encoding = attrs.get("encoding-type", attrs.get("h5sparse_format"))
    encoding = {"csr": "csr_matrix", "csc": "csc_matrix"}.get(encoding, encoding)
    if encoding not in ("csr_matrix", "csc_matrix"):
        raise InputError(store, f"sparse group {node.name} needs attribute encoding-type csr_matrix or csc_matrix")
    shape = attrs.get("shape")
    if (not isinstance(shape, list) or len(shape) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= MAX_DIMENSION for v in shape)):
        raise InputError(store, f"sparse group {node.name} has invalid shape {shape!r} (two integers in 0..2**62)")
    return encoding, (shape[0], shape[1])


def compressed_arrays(store: str, node: Node, group, major: int):
    """(data, indices, indptr, data dtype) of a sparse group, their metadata checked as
    :func:`matcli.io.hdf5.compressed_members` checks HDF5 datasets; nothing read."""
    found = {}
    for name in ("data", "indices", "indptr"):
        with zarr_errors(store, f"cannot open {node.name}/{name}"):
            array = group[name]
        if array.ndim != 1:
            raise InputError(store, f"sparse group {node.name}: {name} must be a 1-D array, is {array.ndim}-D")
        check_chunks(store, f"{node.name}/{name}", array)
        found[name] = array
    dtype = value_dtype(store, f"{node.name}/data", found["data"].dtype)
    for name in ("indices", "indptr"):
        if np.dtype(found[name].dtype).kind not in "iu":
            raise InputError(store, f"sparse group {node.name}: {name} must hold integers, "
                                    f"has dtype {found[name].dtype}")
    if found["indices"].shape != found["data"].shape:
        raise InputError(store, f"sparse group {node.name}: indices has {found['indices'].shape[0]} entries, "
                                f"data {found['data'].shape[0]}")
    if found["indptr"].shape[0] != major + 1:
        raise InputError(store, f"sparse group {node.name}: indptr has length {found['indptr'].shape[0]}, "
                                f"expected {major + 1}")
    return found["data"], found["indices"], found["indptr"], dtype


def read_sparse(store: str, node: Node) -> sp.csr_matrix:
    """A CSR/CSC group as CSR: sizes against the budget first, then indptr and index ranges."""
    from matcli.io.hdf5 import check_indptr

    group = open_node(node)
    encoding, shape = sparse_layout(store, node, group)
    major, minor = (shape[0], shape[1]) if encoding == "csr_matrix" else (shape[1], shape[0])
    data, indices, indptr, dtype = compressed_arrays(store, node, group, major)
    nnz = int(data.shape[0])
    check_allocation(store, nnz * (dtype.itemsize + 8) + 8.0 * (major + 1),
                     f"sparse group {node.name} ({shape[0]} x {shape[1]}, {nnz} nonzeros)")
    pointer = read_array(store, f"{node.name}/indptr", indptr, np.dtype(np.int64))
    check_indptr(store, node.name, pointer, nnz)
    values = read_array(store, f"{node.name}/data", data, dtype)
    cols = read_array(store, f"{node.name}/indices", indices, np.dtype(np.int64))
    if cols.size and (cols.min() < 0 or cols.max() >= minor):
        raise InputError(store, f"sparse group {node.name}: index out of range 0..{minor - 1}")
    index_dtype = np.int32 if max(major, minor, nnz) < np.iinfo(np.int32).max else np.int64
    cls = sp.csr_matrix if encoding == "csr_matrix" else sp.csc_matrix
    matrix = cls((values, cols.astype(index_dtype), pointer.astype(index_dtype)), shape=shape)
    return sp.csr_matrix(matrix)


def read_matrix(store: str, internal: str | None, ndims: tuple[int, ...] = (2,)) -> np.ndarray | sp.csr_matrix:
    """The dense array or sparse group ``store:internal`` (see the module docstring)."""
    node = locate(store, internal)
    if node.kind == "array":
        return read_dense(store, node, ndims)
    group = open_node(node)
    if not is_sparse_node(node, group):
        raise InputError(store, f"group {node.name} is not a sparse matrix (needs data, indices, indptr)")
    return read_sparse(store, node)
