"""HDF5 reading and writing: dense datasets, sparse groups (anndata / 10x CSR/CSC encoding),
observed-entries COO groups.

Sparse group layout (what we write, and what we read)::

    /A                      group, attrs: encoding-type = "csr_matrix" | "csc_matrix",
                                          encoding-version = "0.1.0", shape = (m, n)
    /A/data, /A/indices, /A/indptr

10x Genomics groups (``shape`` as a dataset, CSC, no ``encoding-type``) are read too.
COO observed entries: group with ``row``, ``col``, ``value`` datasets (0-based) and attr ``shape``.
"""

from __future__ import annotations

import json
import os
from typing import Any, Mapping

import h5py
import numpy as np
import scipy.sparse as sp

from matcli.core.errors import InputError, OutputError


def open_file(path: str) -> h5py.File:
    """Open ``path`` read-only; InputError when missing or not HDF5."""
    if not os.path.exists(path):
        raise InputError(path, "file not found")
    try:
        return h5py.File(path, "r")
    except OSError:
        raise InputError(path, "not a readable HDF5 file") from None


def resolve_object(fh: h5py.File, path: str, internal: str | None) -> h5py.Dataset | h5py.Group:
    """The object at ``internal``; when None, the file's only top-level member."""
    if internal is None:
        members = list(fh.keys())
        if len(members) != 1:
            listing = ", ".join("/" + m for m in members[:10]) or "nothing"
            raise InputError(path, f"name the dataset as {path}:/name (file holds {listing})")
        internal = "/" + members[0]
    if internal not in fh:
        raise InputError(path, f"no dataset or group {internal!r} in the file")
    return fh[internal]


def _check_numeric(path: str, name: str, dtype: np.dtype) -> None:
    if dtype.kind not in "biufc":
        raise InputError(path, f"{name} has non-numeric dtype {dtype}")


def read_dense_dataset(path: str, dset: h5py.Dataset, ndims: tuple[int, ...]) -> np.ndarray:
    """Read a numeric dataset whose rank is one of ``ndims``."""
    _check_numeric(path, dset.name, dset.dtype)
    if dset.ndim not in ndims:
        want = " or ".join(f"{d}-D" for d in ndims)
        raise InputError(path, f"dataset {dset.name} is {dset.ndim}-D, expected {want}")
    data = dset[()]
    if data.dtype.kind in "biu":
        data = data.astype(np.float64)
    return np.asarray(data)


def group_shape(path: str, group: h5py.Group) -> tuple[int, int]:
    shape = group.attrs.get("shape")
    if shape is None and "shape" in group:
        shape = group["shape"][()]
    if shape is None:
        raise InputError(path, f"sparse group {group.name} has no 'shape' attribute")
    try:
        shape = tuple(int(v) for v in np.asarray(shape).ravel())
    except (TypeError, ValueError):
        raise InputError(path, f"group {group.name} has a non-integer 'shape' {shape!r}") from None
    if len(shape) != 2 or min(shape) < 0:
        raise InputError(path, f"sparse group {group.name} has invalid shape {shape}")
    return shape


def is_sparse_group(group: h5py.Group) -> bool:
    return all(k in group for k in ("data", "indices", "indptr"))


def is_coo_group(group: h5py.Group) -> bool:
    return all(k in group for k in ("row", "col", "value"))


def sparse_encoding(path: str, group: h5py.Group) -> str:
    """``csr_matrix`` or ``csc_matrix`` from a sparse group's attributes (10x groups: CSC)."""
    encoding = group.attrs.get("encoding-type", group.attrs.get("h5sparse_format"))
    if isinstance(encoding, bytes):
        encoding = encoding.decode()
    if encoding is None and "barcodes" in group:
        encoding = "csc_matrix"
    encoding = {"csr": "csr_matrix", "csc": "csc_matrix"}.get(encoding, encoding)
    if encoding not in ("csr_matrix", "csc_matrix"):
        raise InputError(path, f"sparse group {group.name} needs attribute encoding-type csr_matrix or csc_matrix")
    return encoding


def check_compressed_arrays(path: str, group: h5py.Group) -> None:
    """InputError unless ``data`` is numeric and ``indices``/``indptr`` are integers (dtypes only)."""
    for name in ("data", "indices", "indptr"):
        _check_numeric(path, f"{group.name}/{name}", group[name].dtype)
    if group["indices"].dtype.kind not in "iu" or group["indptr"].dtype.kind not in "iu":
        raise InputError(path, f"sparse group {group.name}: indices/indptr must be integers")


def check_indptr(path: str, group: h5py.Group, indptr: np.ndarray, major: int) -> None:
    """InputError unless ``indptr`` has ``major + 1`` entries, starts at 0, never decreases and ends at
    the length of ``data``, which ``indices`` shares (the lengths are read from the datasets' shapes)."""
    nnz, n_indices = group["data"].size, group["indices"].size
    if indptr.shape != (major + 1,):
        raise InputError(path, f"sparse group {group.name}: indptr has length {indptr.size}, expected {major + 1}")
    if indptr[0] != 0 or np.any(np.diff(indptr) < 0) or indptr[-1] != nnz or nnz != n_indices:
        raise InputError(path, f"sparse group {group.name}: indptr is inconsistent with data/indices")


def read_sparse_group(path: str, group: h5py.Group) -> sp.csr_matrix:
    """Read a CSR/CSC group and return CSR; checks index ranges and indptr consistency."""
    encoding = sparse_encoding(path, group)
    shape = group_shape(path, group)
    major, minor = (shape[0], shape[1]) if encoding == "csr_matrix" else (shape[1], shape[0])
    check_compressed_arrays(path, group)
    indptr = np.asarray(group["indptr"][()])
    check_indptr(path, group, indptr, major)
    data = np.asarray(group["data"][()])
    indices = np.asarray(group["indices"][()])
    if indices.size and (indices.min() < 0 or indices.max() >= minor):
        raise InputError(path, f"sparse group {group.name}: index out of range 0..{minor - 1}")
    if data.dtype.kind in "biu":
        data = data.astype(np.float64)
    index_dtype = np.int32 if max(major, minor, data.size) < np.iinfo(np.int32).max else np.int64
    # scipy keeps int32/int64 index arrays as given; anything else (or int64 that fits int32) it would
    # scan and convert, which costs more than the read itself on large matrices.
    indices, indptr = indices.astype(index_dtype, copy=False), indptr.astype(index_dtype, copy=False)
    cls = sp.csr_matrix if encoding == "csr_matrix" else sp.csc_matrix
    return sp.csr_matrix(cls((data, indices, indptr), shape=shape))


def read_coo_group(path: str, group: h5py.Group) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[int, int]]:
    """Observed entries (row, col, value, shape); indices are 0-based and checked against shape."""
    shape = group_shape(path, group)
    arrays = []
    for name in ("row", "col", "value"):
        dset = group[name]
        _check_numeric(path, f"{group.name}/{name}", dset.dtype)
        if dset.ndim != 1:
            raise InputError(path, f"{group.name}/{name} must be 1-D")
        arrays.append(np.asarray(dset[()]))
    rows, cols, values = arrays
    if not (rows.size == cols.size == values.size):
        raise InputError(path, f"{group.name}: row, col and value have different lengths")
    for name, idx, bound in (("row", rows, shape[0]), ("col", cols, shape[1])):
        if idx.dtype.kind not in "iu" and not np.all(np.mod(idx, 1) == 0):
            raise InputError(path, f"{group.name}/{name} holds non-integer indices")
        if idx.size and (idx.min() < 0 or idx.max() >= bound):
            raise InputError(path, f"{group.name}/{name} index out of range 0..{bound - 1}")
    return rows.astype(np.int64), cols.astype(np.int64), values.astype(np.float64), shape


def _attr_value(value: Any) -> Any:
    if isinstance(value, (str, bytes, int, float, bool, np.integer, np.floating, np.bool_)):
        return value
    if isinstance(value, (list, tuple)) and value and all(
            isinstance(v, (int, float, np.integer, np.floating)) for v in value):
        return np.asarray(value)
    if isinstance(value, np.ndarray) and value.dtype.kind in "biuf":
        return value
    return json.dumps(value, default=str)


def write_arrays(path: str, arrays: Mapping[str, Any], attrs: Mapping[str, Any] | None = None,
                 group_attrs: Mapping[str, Mapping[str, Any]] | None = None) -> None:
    """Write named arrays into a new HDF5 file at ``path``.

    Dense arrays become datasets, sparse matrices become encoded groups; a name containing
    ``/`` creates intermediate groups. ``attrs`` go on the root (non-scalars stored as JSON),
    ``group_attrs[name]`` on the group or dataset ``name`` (e.g. the ``shape`` of a COO group).
    """
    try:
        with h5py.File(path, "w") as fh:
            for key, value in (attrs or {}).items():
                fh.attrs[key] = _attr_value(value)
            for name, value in arrays.items():
                write_array(fh, name, value)
            for name, values in (group_attrs or {}).items():
                for key, value in values.items():
                    fh[name].attrs[key] = _attr_value(value)
    except OSError as exc:
        raise OutputError(path, f"cannot write HDF5 ({exc})") from None


def write_array(fh: h5py.File | h5py.Group, name: str, value: Any) -> None:
    """Write one dense dataset or sparse group under ``fh``."""
    if sp.issparse(value):
        fmt = "csc_matrix" if value.format == "csc" else "csr_matrix"
        mat = sp.csc_matrix(value) if fmt == "csc_matrix" else sp.csr_matrix(value)
        group = fh.create_group(name)
        group.attrs["encoding-type"] = fmt
        group.attrs["encoding-version"] = "0.1.0"
        group.attrs["shape"] = np.asarray(mat.shape, dtype=np.int64)
        group.create_dataset("data", data=mat.data)
        group.create_dataset("indices", data=mat.indices)
        group.create_dataset("indptr", data=mat.indptr)
        return
    array = np.asarray(value)
    if array.dtype.kind in "OUS":
        fh.create_dataset(name, data=np.asarray(array, dtype=h5py.string_dtype()))
        return
    fh.create_dataset(name, data=array)


def list_members(path: str, internal: str | None) -> list[str]:
    """Names of the members directly under a group (root when ``internal`` is None), sorted."""
    with open_file(path) as fh:
        if internal and internal not in fh:
            raise InputError(path, f"no group {internal!r} in the file")
        group = fh[internal] if internal else fh
        if not isinstance(group, h5py.Group):
            raise InputError(path, f"{internal} is a dataset, expected a group")
        return sorted(group.keys())
