"""Arrays handed to the Python API, read through the same loaders as files.

:func:`arrays_as_inputs` gives each array a spec (``<array:A>``) for the duration of a run; the
loaders of :mod:`matcli.io.load` resolve such specs here, and :func:`as_matrix` applies the rules a
file's values meet (2-D or 1-D as asked, numeric, finite, float64 / complex128, CSR for sparse), so a
job cannot tell an array from a file and every check of the run applies to both.
"""

from __future__ import annotations

import contextlib
import contextvars
from typing import Any, Iterator, Mapping

import numpy as np

from matcli.core.errors import InputError
from matcli.core.lazy_sparse import sp

PREFIX = "<array:"
_HELD: contextvars.ContextVar[dict[str, Any]] = contextvars.ContextVar("matcli_arrays", default={})


def spec_for(name: str) -> str:
    """The input spec of the array called ``name``."""
    return f"{PREFIX}{name}>"


def is_array_spec(spec: str) -> bool:
    return str(spec).startswith(PREFIX)


@contextlib.contextmanager
def arrays_as_inputs(arrays: Mapping[str, Any]) -> Iterator[dict[str, str]]:
    """Within the block, the specs ``{name: "<array:name>"}`` stand for ``arrays`` (numpy arrays or
    scipy.sparse matrices)."""
    token = _HELD.set({**_HELD.get(), **{spec_for(name): value for name, value in arrays.items()}})
    try:
        yield {name: spec_for(name) for name in arrays}
    finally:
        _HELD.reset(token)


def lookup(spec: str) -> Any | None:
    """The array a spec stands for, or None for a file spec. InputError for an unknown array spec."""
    if not is_array_spec(spec):
        return None
    try:
        return _HELD.get()[str(spec)]
    except KeyError:
        raise InputError(spec, "no such array in this run") from None


def as_matrix(spec: str, value: Any, ndims: tuple[int, ...] = (2,)) -> np.ndarray | sp.csr_matrix:
    """``value`` with a file's guarantees: ``ndims`` dimensions, numeric, finite; float64 or complex128
    (integers and single precision converted); sparse matrices as CSR with summed duplicates."""
    if sp.issparse(value):
        if 2 not in ndims:
            raise InputError(spec, "expected a dense array, got a sparse matrix")
        matrix = sp.csr_matrix(value)
        matrix.sum_duplicates()
        values = matrix.data
    else:
        matrix = np.asarray(value)
        if matrix.ndim not in ndims:
            raise InputError(spec, f"array is {matrix.ndim}-D, expected {' or '.join(f'{d}-D' for d in ndims)}")
        values = matrix
    kind = values.dtype.kind
    if kind not in "biufc" or (kind == "f" and values.dtype.itemsize > 8) or (kind == "c" and values.dtype.itemsize > 16):
        raise InputError(spec, f"values of dtype {values.dtype} are not supported (use float64 or complex128)")
    dtype = np.complex128 if kind == "c" else np.float64
    matrix = matrix.astype(dtype, copy=False)
    data = matrix.data if sp.issparse(matrix) else matrix
    if data.size and not np.isfinite(data).all():
        raise InputError(spec, "contains NaN or Inf values")
    return matrix
