"""Parse input specifications such as ``file.h5:/group/dataset`` or ``A.mtx.gz``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf", ".he5", ".h5ad")  # .h5ad: anndata (X as a dense or sparse group)
MTX_SUFFIXES = (".mtx", ".mtx.gz", ".mm", ".mm.gz")
TRIPLET_SUFFIXES = (".tsv", ".csv", ".data", ".base", ".test", ".txt", ".dat")
ZARR_SUFFIXES = (".zarr",)  # a directory store (format 2 or 3)
#: suffixes after which ``:/inner/path`` names an object inside the file or store
CONTAINER_SUFFIXES = HDF5_SUFFIXES + ZARR_SUFFIXES


@dataclass(frozen=True)
class Spec:
    """A parsed input: the file ``path`` and, for HDF5 and Zarr, the ``internal`` object path (or None)."""

    path: str
    internal: str | None = None

    @property
    def kind(self) -> str:
        """``hdf5``, ``zarr``, ``mtx``, ``npy``, ``npz``, ``triplets`` or ``unknown`` from the file name."""
        name = self.path.lower()
        if name.endswith(HDF5_SUFFIXES):
            return "hdf5"
        if name.rstrip("/").endswith(ZARR_SUFFIXES):
            return "zarr"
        if name.endswith(MTX_SUFFIXES):
            return "mtx"
        if name.endswith(".npy"):
            return "npy"
        if name.endswith(".npz"):
            return "npz"
        if name.endswith(TRIPLET_SUFFIXES) or Path(name).name.startswith("u.data"):
            return "triplets"
        return "unknown"

    def __str__(self) -> str:
        return f"{self.path}:{self.internal}" if self.internal else self.path


def parse_spec(spec: str) -> Spec:
    """Split ``file.h5:/a/b`` (or ``store.zarr:/a/b``) into path and internal path; other specs are
    plain paths.

    Only a ``:`` that follows an HDF5 or Zarr suffix separates an internal path, so ordinary file
    names containing colons stay intact.
    """
    text = str(spec)
    lowered = text.lower()
    for suffix in CONTAINER_SUFFIXES:
        marker = suffix + ":"
        pos = lowered.rfind(marker)
        if pos >= 0:
            cut = pos + len(suffix)
            internal = text[cut + 1:] or None
            if internal is not None and not internal.startswith("/"):
                internal = "/" + internal
            return Spec(text[:cut], internal)
    return Spec(text, None)
