"""NumPy ``.npy`` files, read only after their header's shape has been checked against the file
and the memory budget (a 200-byte file may declare a 1e10-element array)."""

from __future__ import annotations

import numpy as np

from matcli.core.errors import InputError
from matcli.io.guard import check_allocation, regular_file

_READ_HEADER = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}


def _header(path: str) -> tuple[tuple[int, ...], np.dtype, int]:
    """(shape, dtype, offset of the data) from the header; InputError when it is malformed."""
    try:
        with open(path, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            reader = _READ_HEADER.get(version)
            if reader is None:
                raise ValueError(f"unsupported .npy version {version[0]}.{version[1]}")
            shape, _, dtype = reader(fh)
            return tuple(shape), dtype, fh.tell()
    except (ValueError, OSError, SyntaxError, TypeError) as exc:
        raise InputError(path, f"not a readable .npy file ({' '.join(str(exc).split())})") from None


def read_npy(path: str) -> np.ndarray:
    """A numeric array from ``path``: integers as float64, floats and complex as stored.

    The declared size must match the file and fit the memory budget before anything is allocated;
    object (pickled) arrays are refused.
    """
    size = regular_file(path).st_size
    shape, dtype, offset = _header(path)
    if dtype.hasobject or dtype.kind not in "biufc":
        raise InputError(path, f"non-numeric dtype {dtype}")
    if dtype.kind == "f" and dtype.itemsize > 8 or dtype.kind == "c" and dtype.itemsize > 16:
        raise InputError(path, f"dtype {dtype} (extended precision) is not supported; convert to float64")
    count = int(np.prod(shape, dtype=object))
    declared = count * dtype.itemsize
    if offset + declared != size:
        raise InputError(path, f"header declares shape {shape} of {dtype} ({declared} bytes), but the file "
                               f"holds {size - offset} bytes of data")
    check_allocation(path, count * max(dtype.itemsize, 8), f"the {'x'.join(map(str, shape))} array")
    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise InputError(path, f"not a readable .npy file ({' '.join(str(exc).split())})") from None
    if dtype.kind in "biu" or dtype == np.float16:
        return array.astype(np.float64)
    return array
