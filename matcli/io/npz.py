"""``.npz`` files: a sparse matrix from ``scipy.sparse.save_npz`` (csr, csc, coo) or a single dense array
from ``numpy.savez``, read only after every member's header has been checked.

An ``.npz`` is a zip archive of ``.npy`` members. Before anything is decompressed in full, each
member's ``.npy`` header (shape, dtype) is read from the archive and compared with the member's
declared uncompressed size and with the memory budget, so a 1 KB archive declaring 1e10 entries is an
:class:`InputError`/`ResourceError` at once. Pickled (object) members are refused. Sparse members are
validated as the HDF5 sparse groups are: ``indptr`` monotone from 0 to nnz, indices in range.
"""

from __future__ import annotations

import zipfile

import numpy as np
import scipy.sparse as sp

from matcli.core.errors import InputError
from matcli.io.guard import check_allocation, regular_file

_READ_HEADER = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}

#: Members of each scipy.sparse.save_npz format (besides ``format`` and ``shape``).
SPARSE_MEMBERS = {"csr": ("data", "indices", "indptr"), "csc": ("data", "indices", "indptr"),
                  "coo": ("data", "row", "col")}


def read_npz(path: str) -> np.ndarray | sp.csr_matrix:
    """The matrix stored in ``path``: a CSR matrix (float64 or complex128 values) for a
    ``scipy.sparse.save_npz`` archive, else the archive's only array (integers as float64)."""
    regular_file(path)
    try:
        with zipfile.ZipFile(path) as archive:
            headers = {name[:-4]: _member_header(path, archive, name) for name in archive.namelist()
                       if name.endswith(".npy")}
            extra = [n for n in archive.namelist() if not n.endswith(".npy")]
            if extra:
                raise InputError(path, f"member {extra[0]!r} is not a .npy array")
            total = sum(int(np.prod(shape, dtype=object)) * max(dtype.itemsize, 8)
                        for shape, dtype in headers.values())
            check_allocation(path, total, f"the arrays of the .npz archive ({len(headers)} members)")
            arrays = {name: _load(path, archive, name + ".npy") for name in headers}
    except zipfile.BadZipFile as exc:
        raise InputError(path, f"not a readable .npz archive ({exc})") from None
    if "format" in arrays:
        return _sparse(path, arrays)
    if len(arrays) != 1:
        raise InputError(path, f"holds {len(arrays)} arrays ({', '.join(sorted(arrays))}) and no sparse "
                               "'format': save one array per file, or a scipy.sparse matrix with save_npz")
    (array,) = arrays.values()
    return _numeric(path, array, "array")


def _member_header(path: str, archive: zipfile.ZipFile, name: str) -> tuple[tuple[int, ...], np.dtype]:
    """(shape, dtype) from the member's .npy header; its declared data size must match the zip entry."""
    info = archive.getinfo(name)
    try:
        with archive.open(name) as fh:
            version = np.lib.format.read_magic(fh)
            reader = _READ_HEADER.get(version)
            if reader is None:
                raise ValueError(f"unsupported .npy version {version[0]}.{version[1]}")
            shape, _, dtype = reader(fh)
            offset = fh.tell()
    except (ValueError, OSError, SyntaxError, TypeError, zipfile.BadZipFile) as exc:
        raise InputError(path, f"member {name!r}: not a readable .npy array ({' '.join(str(exc).split())})") from None
    if dtype.hasobject:
        raise InputError(path, f"member {name!r} holds Python objects (pickles are refused)")
    declared = int(np.prod(shape, dtype=object)) * dtype.itemsize
    if offset + declared != info.file_size:
        raise InputError(path, f"member {name!r} declares shape {tuple(shape)} of {dtype} ({declared} bytes), "
                               f"but holds {info.file_size - offset} bytes of data")
    return tuple(shape), dtype


def _load(path: str, archive: zipfile.ZipFile, name: str) -> np.ndarray:
    try:
        with archive.open(name) as fh:
            return np.lib.format.read_array(fh, allow_pickle=False)
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
        raise InputError(path, f"member {name!r}: {' '.join(str(exc).split())}") from None


def _numeric(path: str, array: np.ndarray, what: str) -> np.ndarray:
    """Numeric values as float64/complex128 (integers, booleans, float16/32, complex64 converted)."""
    kind = array.dtype.kind
    if kind not in "biufc":
        raise InputError(path, f"{what} has non-numeric dtype {array.dtype}")
    if kind == "f" and array.dtype.itemsize > 8 or kind == "c" and array.dtype.itemsize > 16:
        raise InputError(path, f"{what} has dtype {array.dtype} (extended precision); convert to float64")
    return array.astype(np.complex128 if kind == "c" else np.float64, copy=False)


def _index(path: str, array: np.ndarray, name: str, bound: int) -> np.ndarray:
    if array.dtype.kind not in "iu" or array.ndim != 1:
        raise InputError(path, f"sparse member {name!r} must be a 1-D integer array, got {array.dtype} {array.shape}")
    if array.size and (array.min() < 0 or array.max() >= bound):
        raise InputError(path, f"sparse member {name!r}: index out of range 0..{bound - 1}")
    return array.astype(np.int64, copy=False)


def _sparse(path: str, arrays: dict[str, np.ndarray]) -> sp.csr_matrix:
    """A scipy.sparse.save_npz archive as a CSR matrix, after checking its members."""
    fmt = arrays["format"]
    fmt = fmt.item().decode() if fmt.dtype.kind == "S" else str(fmt.item()) if fmt.dtype.kind == "U" else None
    if fmt not in SPARSE_MEMBERS:
        raise InputError(path, f"sparse format {fmt!r} is not supported (save it as csr, csc or coo)")
    missing = [m for m in ("shape", *SPARSE_MEMBERS[fmt]) if m not in arrays]
    if missing:
        raise InputError(path, f"{fmt} archive lacks member(s) {', '.join(missing)}")
    shape = arrays["shape"]
    if shape.dtype.kind not in "iu" or shape.shape != (2,) or np.any(shape < 0):
        raise InputError(path, f"member 'shape' must hold two non-negative integers, got {shape!r}")
    m, n = (int(v) for v in shape)
    data = arrays["data"]
    if data.ndim != 1:
        raise InputError(path, f"member 'data' must be 1-D, got shape {data.shape}")
    data = _numeric(path, data, "member 'data'")
    if fmt == "coo":
        rows, cols = _index(path, arrays["row"], "row", m), _index(path, arrays["col"], "col", n)
        if not rows.size == cols.size == data.size:
            raise InputError(path, "members row, col and data have different lengths")
        return sp.coo_matrix((data, (rows, cols)), shape=(m, n)).tocsr()
    major, minor = (m, n) if fmt == "csr" else (n, m)
    indptr = arrays["indptr"]
    if indptr.dtype.kind not in "iu" or indptr.shape != (major + 1,):
        raise InputError(path, f"member 'indptr' must be {major + 1} integers, got {indptr.dtype} {indptr.shape}")
    indices = _index(path, arrays["indices"], "indices", minor)
    if indices.size != data.size or indptr[0] != 0 or np.any(np.diff(indptr) < 0) or indptr[-1] != data.size:
        raise InputError(path, "members indptr, indices and data are inconsistent")
    cls = sp.csr_matrix if fmt == "csr" else sp.csc_matrix
    return sp.csr_matrix(cls((data, indices, indptr.astype(np.int64)), shape=(m, n)))
