"""Format-independent loaders used by the job adapters: pick the reader from the spec."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from matcli.core.errors import InputError
from matcli.io.spec import Spec, parse_spec


@dataclass(frozen=True)
class Observed:
    """Observed entries of an m x n matrix: 0-based ``rows``/``cols`` (int64), ``values`` (float64)."""

    rows: np.ndarray
    cols: np.ndarray
    values: np.ndarray
    shape: tuple[int, int]
    path: str

    @property
    def nnz(self) -> int:
        return int(self.values.size)


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
    """A 2-D matrix from ``.mtx[.gz]``, ``.npy`` or ``file.h5:/dataset_or_sparse_group``.

    Returns a float64/complex128 dense array or CSR matrix with finite values.
    """
    spec = parse_spec(spec_text)
    _require_file(spec)
    if spec.kind == "mtx":
        from matcli.io.mtx import read_mtx

        return read_mtx(spec.path)
    if spec.kind == "hdf5":
        from matcli.io import hdf5

        with hdf5.open_file(spec.path) as fh:
            obj = hdf5.resolve_object(fh, spec.path, spec.internal)
            if isinstance(obj, hdf5.h5py.Group):
                if not hdf5.is_sparse_group(obj):
                    raise InputError(spec.path, f"group {obj.name} is not a sparse matrix (needs data, indices, indptr)")
                matrix = hdf5.read_sparse_group(spec.path, obj)
            else:
                matrix = hdf5.read_dense_dataset(spec.path, obj, (2,))
        check_finite(matrix, spec.path, "matrix")
        return matrix
    if spec.kind == "npy":
        matrix = _read_npy(spec.path)
        if matrix.ndim != 2:
            raise InputError(spec.path, f"array is {matrix.ndim}-D, expected 2-D")
        check_finite(matrix, spec.path, "matrix")
        return matrix
    raise InputError(spec.path, "unknown matrix format (use .mtx, .mtx.gz, .npy or file.h5:/dataset)")


def _read_npy(path: str) -> np.ndarray:
    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise InputError(path, f"not a readable .npy file ({exc})") from None
    if array.dtype.kind not in "biufc":
        raise InputError(path, f"non-numeric dtype {array.dtype}")
    return array.astype(np.float64) if array.dtype.kind in "biu" else array


def read_dense(spec_text: str) -> np.ndarray:
    """A 1-D or 2-D dense array (right-hand sides, vectors) from .mtx, .h5, .npy, .txt/.csv."""
    spec = parse_spec(spec_text)
    _require_file(spec)
    if spec.kind == "hdf5":
        from matcli.io import hdf5

        with hdf5.open_file(spec.path) as fh:
            obj = hdf5.resolve_object(fh, spec.path, spec.internal)
            if isinstance(obj, hdf5.h5py.Group):
                if not hdf5.is_sparse_group(obj):
                    raise InputError(spec.path, f"{obj.name} is a group, expected a dataset")
                array = hdf5.read_sparse_group(spec.path, obj).toarray()
            else:
                array = hdf5.read_dense_dataset(spec.path, obj, (1, 2))
    elif spec.kind == "mtx":
        from matcli.io.mtx import read_mtx

        matrix = read_mtx(spec.path)
        array = matrix.toarray() if sp.issparse(matrix) else matrix
    elif spec.kind == "npy":
        array = _read_npy(spec.path)
        if array.ndim not in (1, 2):
            raise InputError(spec.path, f"array is {array.ndim}-D, expected 1-D or 2-D")
    elif spec.path.lower().endswith((".txt", ".csv", ".tsv", ".dat")):
        delimiter = "," if spec.path.lower().endswith(".csv") else None
        try:
            array = np.loadtxt(spec.path, delimiter=delimiter, dtype=np.float64, comments=("#", "%"))
        except ValueError as exc:
            raise InputError(spec.path, f"malformed numeric text ({str(exc).splitlines()[0]})") from None
    else:
        raise InputError(spec.path, "unknown array format (use .h5:/dataset, .mtx, .npy, .txt or .csv)")
    check_finite(array, spec.path, "array")
    return array


def read_observed(spec_text: str, shape: tuple[int, int] | None = None) -> Observed:
    """Observed entries from triplets, an HDF5 COO group, or a coordinate ``.mtx``.

    ``shape`` overrides the inferred shape (max id) of triplet files; every index must fit in it.
    """
    spec = parse_spec(spec_text)
    _require_file(spec)
    if spec.kind == "hdf5":
        from matcli.io import hdf5

        with hdf5.open_file(spec.path) as fh:
            obj = hdf5.resolve_object(fh, spec.path, spec.internal)
            if not isinstance(obj, hdf5.h5py.Group) or not hdf5.is_coo_group(obj):
                raise InputError(spec.path, f"{obj.name} is not an observed-entries group (needs row, col, value)")
            rows, cols, values, file_shape = hdf5.read_coo_group(spec.path, obj)
    elif spec.kind == "mtx":
        from matcli.io.mtx import read_mtx

        matrix = read_mtx(spec.path)
        if not sp.issparse(matrix):
            raise InputError(spec.path, "observed entries need a coordinate MatrixMarket file, got array format")
        coo = matrix.tocoo()
        rows, cols, values, file_shape = coo.row.astype(np.int64), coo.col.astype(np.int64), coo.data, coo.shape
        if np.iscomplexobj(values):
            raise InputError(spec.path, "observed entries must be real")
    else:
        from matcli.io.triplets import read_triplets

        rows, cols, values = read_triplets(spec.path)
        file_shape = (int(rows.max()) + 1, int(cols.max()) + 1)
    if not np.isfinite(values).all():
        raise InputError(spec.path, "observed values contain NaN or Inf")
    final = tuple(int(v) for v in (shape or file_shape))
    if rows.size and (rows.max() >= final[0] or cols.max() >= final[1]):
        raise InputError(spec.path, f"entry ({rows.max() + 1}, {cols.max() + 1}) lies outside the {final[0]}x{final[1]} matrix")
    return Observed(rows, cols, values.astype(np.float64), (final[0], final[1]), spec.path)


def list_hdf5_members(spec_text: str) -> list[str]:
    """Members directly under the group named by ``file.h5:/group`` (root when no group is given)."""
    spec = parse_spec(spec_text)
    _require_file(spec)
    from matcli.io.hdf5 import list_members

    return list_members(spec.path, spec.internal)
