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
import traceback
from contextlib import contextmanager
from typing import Any, Iterator, Mapping, NamedTuple

import h5py
import numpy as np

from matcli.core.errors import InputError, OutputError
from matcli.core.lazy_sparse import sp
from matcli.io import hdf5_values
from matcli.io.densify import dense_from_compressed
from matcli.io.guard import check_allocation, regular_file
from matcli.io.hdf5_links import has_member, lookup, member
from matcli.io.hdf5_strings import string_attribute

#: largest dimension a group's ``shape`` may declare (index arithmetic stays within int64)
MAX_DIMENSION = 2**62


@contextmanager
def open_file(path: str) -> Iterator[h5py.File]:
    """``path`` opened read-only for a ``with`` block; InputError when missing, not a regular file
    or not HDF5. Inside the block, an error the HDF5 library raises on the file's structure (a
    corrupt header, heap or B-tree: h5py raises OSError, RuntimeError, KeyError, ValueError or TypeError for
    them) becomes an InputError naming the file; the same exceptions raised elsewhere propagate."""
    regular_file(path)
    try:
        fh = h5py.File(path, "r")
    except _H5PY_ERRORS as exc:
        raise InputError(path, f"not a readable HDF5 file ({hdf5_values.h5_error(exc)})") from None
    with fh:
        try:
            yield fh
        except _H5PY_ERRORS as exc:
            if not _raised_in_h5py(exc):
                raise
            raise InputError(path, f"corrupt HDF5 file ({hdf5_values.h5_error(exc)})") from None


_H5PY_ERRORS = (OSError, RuntimeError, KeyError, ValueError, TypeError)


def _raised_in_h5py(exc: BaseException) -> bool:
    """Whether the innermost frame of ``exc``'s traceback is h5py's (its Cython frames included)."""
    frames = traceback.extract_tb(exc.__traceback__)
    return bool(frames) and "h5py" in frames[-1].filename.replace("\\", "/").split("/")


def internal_path(path: str, fh: h5py.File, internal: str | None) -> str:
    """``internal``, or when None the path of the file's only top-level member."""
    if internal is not None:
        return internal
    members = list(fh.keys())
    if len(members) != 1:
        listing = ", ".join("/" + m for m in members[:10]) or "nothing"
        raise InputError(path, f"name the dataset as {path}:/name (file holds {listing})")
    return "/" + members[0]


def resolve_object(fh: h5py.File, path: str, internal: str | None) -> h5py.Dataset | h5py.Group:
    """The object at ``internal`` (when None, the file's only top-level member), reached inside the
    file (:func:`matcli.io.hdf5_links.lookup`)."""
    return lookup(path, fh, internal_path(path, fh, internal))


def read_dense_dataset(path: str, dset: h5py.Dataset, ndims: tuple[int, ...]) -> np.ndarray:
    """A numeric dataset whose rank is one of ``ndims``, as float64 (complex128 when complex).

    Raises InputError for other ranks and types (:func:`matcli.io.hdf5_values.value_dtype`),
    ResourceError when it would not fit the memory budget.
    """
    dtype = hdf5_values.value_dtype(path, f"dataset {dset.name}", dset.dtype)
    if dset.ndim not in ndims:
        want = " or ".join(f"{d}-D" for d in ndims)
        raise InputError(path, f"dataset {dset.name} is {dset.ndim}-D, expected {want}")
    check_allocation(path, float(dset.size) * dtype.itemsize,
                     f"dataset {dset.name} ({' x '.join(map(str, dset.shape))} {dtype})")
    return hdf5_values.read(path, dset, dtype)


def group_shape(path: str, group: h5py.Group) -> tuple[int, int]:
    """A sparse or COO group's ``(m, n)`` from its ``shape`` attribute (or, 10x style, dataset).

    InputError unless it holds exactly two integers in ``0..MAX_DIMENSION`` (integral floats pass).
    """
    if "shape" in group.attrs:
        declared = group.attrs.get_id("shape")
        read = lambda: group.attrs["shape"]  # noqa: E731 - read only after the checks below
    else:
        declared = member(path, group, "shape")
        if not isinstance(declared, h5py.Dataset):
            raise InputError(path, f"sparse group {group.name} has no 'shape' attribute")
        read = lambda: declared[()]  # noqa: E731
    dims = tuple(declared.shape or ())  # None: an attribute with a null dataspace
    if int(np.prod(dims)) != 2 or declared.dtype.kind not in "iuf":
        raise InputError(path, f"group {group.name}: 'shape' must hold two integers, "
                               f"has {hdf5_values.describe(declared.dtype)} {dims}")
    try:
        values = np.asarray(read(), dtype=np.float64 if declared.dtype.kind == "f" else object).ravel()
    except (OSError, RuntimeError) as exc:
        raise InputError(path, f"group {group.name}: cannot read 'shape' ({hdf5_values.h5_error(exc)})") from None
    shape = []
    for value in values.tolist():
        if not (isinstance(value, int) or float(value).is_integer()) or not 0 <= value <= MAX_DIMENSION:
            raise InputError(path, f"group {group.name} has invalid shape {values.tolist()} "
                                   f"(dimensions must be integers in 0..2**62)")
        shape.append(int(value))
    return shape[0], shape[1]


def is_sparse_group(group: h5py.Group) -> bool:
    return all(has_member(group, k) for k in ("data", "indices", "indptr"))


def is_coo_group(group: h5py.Group) -> bool:
    return all(has_member(group, k) for k in ("row", "col", "value"))


def sparse_encoding(path: str, group: h5py.Group) -> str:
    """``csr_matrix`` or ``csc_matrix`` from a sparse group's attributes (10x groups: CSC)."""
    encoding = None
    for key in ("encoding-type", "h5sparse_format"):
        if key in group.attrs:
            attr = group.attrs.get_id(key)
            if attr.shape != () or h5py.check_string_dtype(attr.dtype) is None:
                raise InputError(path, f"sparse group {group.name}: attribute {key} must be a single string")
            encoding = string_attribute(path, group, key)
            break
    if encoding is None and has_member(group, "barcodes"):
        encoding = "csc_matrix"
    encoding = {"csr": "csr_matrix", "csc": "csc_matrix"}.get(encoding, encoding)
    if encoding not in ("csr_matrix", "csc_matrix"):
        raise InputError(path, f"sparse group {group.name} needs attribute encoding-type csr_matrix or csc_matrix")
    return encoding


class Compressed(NamedTuple):
    """The datasets of a CSR/CSC group, checked (see :func:`compressed_members`), nothing read."""

    data: h5py.Dataset
    indices: h5py.Dataset
    indptr: h5py.Dataset
    dtype: np.dtype  #: what ``data`` is read as (float64 or complex128)

    @property
    def nnz(self) -> int:
        return int(self.data.shape[0])

    def nbytes(self) -> int:
        """Bytes of the three arrays once read."""
        return self.nnz * (self.dtype.itemsize + self.indices.dtype.itemsize) + \
            self.indptr.shape[0] * self.indptr.dtype.itemsize


def compressed_members(path: str, group: h5py.Group, major: int) -> Compressed:
    """``data``, ``indices`` and ``indptr`` of a CSR/CSC group whose major dimension is ``major``.

    Checks everything the datasets declare before a value is read: each is reached inside the file
    and is a 1-D dataset, ``data`` numeric, the indices integers, ``data`` and ``indices`` of one
    length, ``indptr`` of ``major + 1`` entries. Raises InputError naming the file.
    """
    found = {}
    for name in ("data", "indices", "indptr"):
        dset = member(path, group, name)
        if not isinstance(dset, h5py.Dataset) or dset.ndim != 1:
            what = "missing" if dset is None else "a group" if isinstance(dset, h5py.Group) else f"{dset.ndim}-D"
            raise InputError(path, f"sparse group {group.name}: {name} must be a 1-D dataset, is {what}")
        found[name] = dset
    dtype = hdf5_values.value_dtype(path, f"{group.name}/data", found["data"].dtype)
    for name in ("indices", "indptr"):
        hdf5_values.index_dtype(path, f"sparse group {group.name}: {name}", found[name].dtype)
    if found["indices"].shape != found["data"].shape:
        raise InputError(path, f"sparse group {group.name}: indptr is inconsistent with data/indices (indices "
                               f"has {found['indices'].shape[0]} entries, data {found['data'].shape[0]})")
    if found["indptr"].shape[0] != major + 1:
        raise InputError(path, f"sparse group {group.name}: indptr has length {found['indptr'].shape[0]}, "
                               f"expected {major + 1}")
    return Compressed(found["data"], found["indices"], found["indptr"], dtype)


def check_indptr(path: str, group_name: str, indptr: np.ndarray, nnz: int) -> None:
    """InputError unless ``indptr`` (read from a group checked by :func:`compressed_members`) starts
    at 0, never decreases and ends at ``nnz``, the length of ``data`` and ``indices``."""
    if indptr[0] != 0 or np.any(np.diff(indptr) < 0) or indptr[-1] != nnz:
        raise InputError(path, f"sparse group {group_name}: indptr is inconsistent with data/indices")


def _read_compressed(path: str, group: h5py.Group):
    """The checked arrays of a CSR/CSC group: (by_rows, shape, data, indices, indptr). Sizes are checked
    against the budget before reading, then indptr consistency and index ranges."""
    encoding = sparse_encoding(path, group)
    shape = group_shape(path, group)
    major, minor = (shape[0], shape[1]) if encoding == "csr_matrix" else (shape[1], shape[0])
    arrays = compressed_members(path, group, major)
    check_allocation(path, arrays.nbytes(), f"sparse group {group.name} ({shape[0]} x {shape[1]}, "
                                            f"{arrays.nnz} nonzeros)")
    indptr = hdf5_values.read(path, arrays.indptr, arrays.indptr.dtype)
    check_indptr(path, group.name, indptr, arrays.nnz)
    data = hdf5_values.read(path, arrays.data, arrays.dtype)
    indices = hdf5_values.read(path, arrays.indices, arrays.indices.dtype)
    if indices.size and (indices.min() < 0 or indices.max() >= minor):
        raise InputError(path, f"sparse group {group.name}: index out of range 0..{minor - 1}")
    return encoding == "csr_matrix", shape, data, indices, indptr


def read_sparse_group(path: str, group: h5py.Group) -> sp.csr_matrix:
    """Read a CSR/CSC group and return CSR; checks sizes against the budget before reading, then
    index ranges and indptr consistency."""
    by_rows, shape, data, indices, indptr = _read_compressed(path, group)
    index_dtype = np.int32 if max(*shape, data.size) < np.iinfo(np.int32).max else np.int64
    # scipy keeps int32/int64 index arrays as given; anything else (or int64 that fits int32) it would
    # scan and convert, which costs more than the read itself on large matrices.
    indices, indptr = indices.astype(index_dtype, copy=False), indptr.astype(index_dtype, copy=False)
    cls = sp.csr_matrix if by_rows else sp.csc_matrix
    return sp.csr_matrix(cls((data, indices, indptr), shape=shape))


def read_sparse_group_dense(path: str, group: h5py.Group) -> np.ndarray:
    """A CSR/CSC group as a dense (m, n) array, with the checks of :func:`read_sparse_group` and the
    dense form's size against the budget; built with numpy (:mod:`matcli.io.densify`), so
    scipy.sparse is not imported."""
    by_rows, shape, data, indices, indptr = _read_compressed(path, group)
    return dense_from_compressed(path, shape, data, indices, indptr, by_rows=by_rows,
                                 what=f"sparse group {group.name}")


def read_coo_group(path: str, group: h5py.Group) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[int, int]]:
    """Observed entries (row, col, value, shape); indices are 0-based and checked against shape."""
    shape = group_shape(path, group)
    dsets = []
    for name in ("row", "col", "value"):
        dset = member(path, group, name)
        if not isinstance(dset, h5py.Dataset):
            raise InputError(path, f"{group.name}/{name} must be a dataset")
        if dset.dtype.kind not in "biufc":
            raise InputError(path, f"{group.name}/{name} has non-numeric dtype {hdf5_values.describe(dset.dtype)}")
        if dset.ndim != 1:
            raise InputError(path, f"{group.name}/{name} must be 1-D")
        dsets.append(dset)
    if not (dsets[0].size == dsets[1].size == dsets[2].size):
        raise InputError(path, f"{group.name}: row, col and value have different lengths")
    # each array as stored, then as int64/int64/float64
    check_allocation(path, sum(d.size * (d.dtype.itemsize + 8) for d in dsets),
                     f"observed-entries group {group.name} ({dsets[0].size} entries)")
    rows, cols, values = (hdf5_values.read(path, d, d.dtype) for d in dsets)
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
        group = lookup(path, fh, internal) if internal else fh
        if not isinstance(group, h5py.Group):
            raise InputError(path, f"{internal} is a dataset, expected a group")
        return sorted(group.keys())
