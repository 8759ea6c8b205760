"""What an HDF5 dataset holds, and reading it within the memory budget.

Which dtypes are numbers matcli reads, and as what; a read that the HDF5 library fails (a corrupt
chunk, data beyond the end of a truncated file) becomes an :class:`InputError` naming the file and
the dataset. A dataset's declared shape costs nothing to store (a 10 GB dataset of fill values, or
of tiny compressed chunks, fits in a few kilobytes), so callers check the bytes a read will take
against the budget first (:func:`matcli.io.guard.check_allocation`, exit 7).
"""

from __future__ import annotations

import h5py
import numpy as np

from matcli.core.errors import InputError

_FLOAT64, _COMPLEX128 = np.dtype(np.float64), np.dtype(np.complex128)


def h5_error(exc: BaseException) -> str:
    """The HDF5 library's message of ``exc`` on one line."""
    return " ".join(str(exc).split())


def value_dtype(path: str, name: str, dtype: np.dtype) -> np.dtype:
    """The type matcli reads values of ``dtype`` as: complex128 for complex64/complex128, float64 for
    booleans (0/1), integers and floats up to 64 bits (float16 converts exactly).

    Raises :class:`InputError` for everything else: long double (float128/complex256 do not fit
    float64 exactly), enums, strings, compounds, opaque and array types, references.
    """
    if h5py.check_enum_dtype(dtype) is not None:
        raise InputError(path, f"{name} holds enumerated values, expected numbers")
    if dtype.kind == "c" and dtype.itemsize <= 16:
        return _COMPLEX128
    if dtype.kind in "biu" or (dtype.kind == "f" and dtype.itemsize <= 8):
        return _FLOAT64
    if dtype.kind in "fc":
        raise InputError(path, f"{name} has dtype {dtype} (extended precision), which float64 cannot hold; "
                               "store it as float64")
    raise InputError(path, f"{name} has non-numeric dtype {describe(dtype)}")


def index_dtype(path: str, name: str, dtype: np.dtype) -> np.dtype:
    """``dtype`` itself when it is an integer type (indices are read as stored), else InputError."""
    if dtype.kind not in "iu" or h5py.check_enum_dtype(dtype) is not None:
        raise InputError(path, f"{name} must hold integers, has dtype {describe(dtype)}")
    return dtype


def describe(dtype: np.dtype) -> str:
    """A short name of an HDF5-mapped numpy dtype (references and strings have object dtype)."""
    if h5py.check_string_dtype(dtype) is not None:
        return "string"
    if h5py.check_ref_dtype(dtype) is not None:
        return "reference"
    if dtype.names:
        return "compound"
    return str(dtype)


def read(path: str, dset: h5py.Dataset, dtype: np.dtype, selection=()) -> np.ndarray:
    """``dset[selection]`` as an array of ``dtype`` (from :func:`value_dtype` or :func:`index_dtype`),
    converted while HDF5 reads where it can. The caller has checked the size against the budget."""
    dtype = np.dtype(dtype)
    try:
        if dset.dtype.kind == "b" or (dset.dtype.kind == "f" and dset.dtype.itemsize == 2):
            # HDF5 converts neither its boolean enum nor (on every platform) half floats to double
            return np.asarray(dset[selection]).astype(dtype)
        if dset.dtype == dtype:
            return np.asarray(dset[selection])
        return np.asarray(dset.astype(dtype)[selection])
    except (OSError, RuntimeError) as exc:
        raise InputError(path, f"cannot read dataset {dset.name} ({h5_error(exc)})") from None
