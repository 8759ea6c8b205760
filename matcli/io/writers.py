"""Writing a result's arrays: HDF5 (any name but ``.mtx``), MatrixMarket (``.mtx``, ``.mtx.gz``, ``-``).

The format comes from the *final* name the user gave, never from the temporary file being written:
writers get an open stream or a path and are told the format. A MatrixMarket file holds one
matrix; a result of several arrays is refused with their names rather than written in part.
"""

from __future__ import annotations

import gzip
import io
import sys
from typing import Any, BinaryIO, Mapping

import numpy as np

from matcli.core.errors import OutputError, UsageError
from matcli.core.lazy_sparse import sp

MTX_SUFFIXES = (".mtx", ".mtx.gz", ".mm", ".mm.gz")


def output_format(name: str) -> str:
    """``mtx``, ``mtx.gz`` or ``hdf5`` for the output name ``name`` (``-`` is MatrixMarket)."""
    lowered = name.lower()
    if name == "-" or lowered.endswith((".mtx", ".mm")):
        return "mtx"
    if lowered.endswith((".mtx.gz", ".mm.gz")):
        return "mtx.gz"
    return "hdf5"


def single_matrix(name: str, outputs: Mapping[str, Any], what: str) -> tuple[str, Any]:
    """The one array of ``outputs``; UsageError naming them all when there are several (or none)."""
    if len(outputs) != 1:
        names = ", ".join(outputs) or "nothing"
        raise UsageError(f"{name}: a MatrixMarket file holds one matrix, but {what} writes {len(outputs)} "
                         f"arrays ({names}); use an .h5 output")
    return next(iter(outputs.items()))


def _matrix(value: Any):
    if sp.issparse(value):
        return value
    array = np.asarray(value)
    if array.ndim == 1:
        return array[:, None]
    if array.ndim != 2 or array.dtype.kind not in "biufc":
        raise UsageError(f"a {array.ndim}-D {array.dtype} array cannot be written as MatrixMarket; use .h5")
    return array


def write_mtx_stream(stream: BinaryIO, matrix: Any, comment: str = "") -> None:
    """Write one dense or sparse matrix (1-D arrays as one column) to a binary stream."""
    import scipy.io

    scipy.io.mmwrite(stream, _matrix(matrix), comment=comment)


def write_mtx_stdout(matrix: Any, comment: str = "") -> None:
    """Write one matrix to standard output (its binary buffer, or as text where it has none)."""
    buffer = getattr(sys.stdout, "buffer", None)
    if buffer is None:
        staged = io.BytesIO()
        write_mtx_stream(staged, matrix, comment)
        sys.stdout.write(staged.getvalue().decode("ascii"))
    else:
        sys.stdout.flush()
        write_mtx_stream(buffer, matrix, comment)
        buffer.flush()


def write_mtx_file(path: str, fmt: str, matrix: Any, comment: str = "", *, display: str | None = None) -> None:
    """Write one matrix to ``path`` as ``mtx`` or gzip-compressed ``mtx.gz`` (``display``: name in errors)."""
    try:
        with open(path, "wb") as raw:
            if fmt == "mtx.gz":
                with gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as stream:
                    write_mtx_stream(stream, matrix, comment)
            else:
                write_mtx_stream(raw, matrix, comment)
    except OSError as exc:
        raise OutputError(display or path, f"cannot write ({exc.strerror or exc})") from None


def write_result(path: str, name: str, outputs: Mapping[str, Any], attrs: Mapping[str, Any], what: str) -> None:
    """Write ``outputs`` to the (temporary) ``path`` in the format of the final ``name``.

    MatrixMarket takes exactly one array (the comment line records ``attrs``' method and status);
    HDF5 takes every array plus ``attrs`` as root attributes. ``name == "-"`` writes MatrixMarket
    to standard output and ignores ``path``.
    """
    fmt = output_format(name)
    if fmt == "hdf5":
        from matcli.io.hdf5 import write_arrays

        try:
            write_arrays(path, outputs, attrs)
        except OutputError as exc:
            raise OutputError(name, exc.defect) from None
        return
    array_name, value = single_matrix(name, outputs, what)
    comment = f"matcli {what} output '{array_name}' status {attrs.get('status', '')}"
    if name == "-":
        write_mtx_stdout(value, comment)
        return
    write_mtx_file(path, fmt, value, comment, display=name)
