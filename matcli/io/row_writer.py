"""Writing arrays larger than memory row block by row block, into HDF5 or a Zarr store, atomically.

:func:`write_row_blocks` creates the row-blocked arrays with their final shapes, writes each block
the caller's iterator yields where it belongs, adds the small arrays and the root attributes, and
publishes the file or store only when every row was written (:mod:`matcli.io.atomic` for HDF5,
:mod:`matcli.io.atomic_store` for ``.zarr``). Peak memory is one block plus the writer's buffers.

Layout: HDF5 row-blocked arrays are contiguous datasets (the streaming reader maps contiguous
float64 without a copy, and any row range of them is one read); Zarr arrays are chunked by
rows of full width (:func:`chunk_rows`: about 8 MiB a chunk, unless the caller says), zstd-compressed
as zarr does by default.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping

import numpy as np

from matcli.core.errors import OutputError

#: bytes of one Zarr chunk aimed at: large enough for object stores, small enough for a worker
CHUNK_BYTES = 8 * 2**20


@dataclass(frozen=True)
class RowArray:
    """An array written by row blocks: ``(rows, *trailing)`` of ``dtype``; in a Zarr store chunked by
    ``chunk`` rows (None: :func:`chunk_rows`). Blocks that start and end on chunk boundaries are
    written without reading a chunk back."""

    trailing: tuple[int, ...]
    dtype: np.dtype = np.dtype(np.float64)
    chunk: int | None = None


def chunk_rows(trailing: tuple[int, ...], itemsize: int, rows: int) -> int:
    """Rows of one Zarr chunk: about :data:`CHUNK_BYTES`, at least 1, at most ``rows``."""
    row_bytes = itemsize * int(np.prod(trailing, dtype=np.int64))
    return max(1, min(rows, CHUNK_BYTES // max(row_bytes, 1)))


def write_row_blocks(path: str, *, force: bool, rows: int, arrays: Mapping[str, RowArray],
                     blocks: Iterable[tuple[int, Mapping[str, np.ndarray]]], small: Mapping[str, Any],
                     attrs: Mapping[str, Any]) -> None:
    """Write ``rows``-row arrays ``arrays`` from ``blocks`` ((start row, {name: rows of it}) in any
    order) and the in-memory ``small`` arrays, with root ``attrs``, as the file or store ``path``
    (``.zarr``: a Zarr format 3 store; else HDF5). The output appears only complete: OutputError
    when it cannot be written, ValueError (a caller's bug) when the blocks leave rows unwritten or
    do not fit the arrays; either way nothing is published."""
    if path.lower().rstrip("/").endswith(".zarr"):
        from matcli.io.atomic_store import atomic_store

        with atomic_store(path, force=force) as tmp:
            _write(_ZarrSink(tmp, path), path, rows, arrays, blocks, small, attrs)
    else:
        from matcli.io.atomic import atomic_write

        with atomic_write(path, force=force) as tmp:
            _write(_Hdf5Sink(tmp, path), path, rows, arrays, blocks, small, attrs)


def _write(sink, path: str, rows: int, arrays, blocks, small, attrs) -> None:
    with sink:
        for name, spec in arrays.items():
            dtype = np.dtype(spec.dtype)
            chunk = spec.chunk or chunk_rows(spec.trailing, dtype.itemsize, rows)
            sink.create(name, (rows, *spec.trailing), dtype, max(1, min(chunk, rows)))
        written = 0
        for start, values in blocks:
            count = None
            for name, block in values.items():
                block = np.asarray(block)
                if name not in arrays or block.shape[1:] != arrays[name].trailing or start + block.shape[0] > rows:
                    raise ValueError(f"{path}: block of {name} at row {start} has shape {block.shape}, "
                                     "which does not fit the array")
                sink.put_rows(name, start, block)
                count = block.shape[0]
            written += count or 0
        if written != rows:
            raise ValueError(f"{path}: {written} of {rows} rows were written")
        for name, value in small.items():
            sink.put(name, np.asarray(value))
        for key, value in attrs.items():
            sink.attr(key, value)


class _Hdf5Sink:
    """Writes the temporary file ``path``; errors name the output ``display``."""

    def __init__(self, path: str, display: str):
        self.path, self.display = path, display

    def __enter__(self):
        import h5py

        try:
            self.fh = h5py.File(self.path, "w")
        except OSError as exc:
            raise OutputError(self.display, f"cannot write HDF5 ({exc})") from None
        return self

    def __exit__(self, *exc_info) -> None:
        self.fh.close()

    def create(self, name: str, shape: tuple[int, ...], dtype: np.dtype, chunk: int) -> None:
        self.fh.create_dataset(name, shape=shape, dtype=dtype)

    def put_rows(self, name: str, start: int, block: np.ndarray) -> None:
        try:
            self.fh[name][start:start + block.shape[0]] = block
        except OSError as exc:
            raise OutputError(self.display, f"cannot write HDF5 ({exc})") from None

    def put(self, name: str, value: np.ndarray) -> None:
        self.fh.create_dataset(name, data=value)

    def attr(self, key: str, value: Any) -> None:
        self.fh.attrs[key] = value


class _ZarrSink:
    """Writes the temporary store ``path``; errors name the output ``display``."""

    def __init__(self, path: str, display: str):
        self.path, self.display = path, display

    def __enter__(self):
        from matcli.io.zarr_store import zarr_package

        zarr = zarr_package(self.display, OutputError)
        self.root = zarr.open_group(zarr.storage.LocalStore(self.path), mode="w-", zarr_format=3)
        return self

    def __exit__(self, *exc_info) -> None:
        return None

    def create(self, name: str, shape: tuple[int, ...], dtype: np.dtype, chunk: int) -> None:
        self.root.create_array(name, shape=shape, chunks=(chunk, *shape[1:]), dtype=dtype, fill_value=0)

    def put_rows(self, name: str, start: int, block: np.ndarray) -> None:
        try:
            self.root[name][start:start + block.shape[0]] = block
        except OSError as exc:
            raise OutputError(self.display, f"cannot write the Zarr store ({exc.strerror})") from None

    def put(self, name: str, value: np.ndarray) -> None:
        array = self.root.create_array(name, shape=value.shape, dtype=value.dtype, fill_value=0)
        array[...] = value

    def attr(self, key: str, value: Any) -> None:
        self.root.attrs[key] = value
