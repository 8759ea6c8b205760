"""Adapter for ``matcli sketch-regress``: randomized least squares ``min ||A x - b||`` (+ ridge).

Inputs: ``request.inputs = (A_spec, b_spec)``. Options (``request.options``):

``sketch``        auto | countsketch | sparse-sign | srht | gaussian | leverage
``sketch_size``   int or None (rows of the sketch)
``eps``           float or None: target residual ratio 1 + eps. sketch-and-solve: sets the sketch
                  size. precondition / refine: CGLS stops once the a-posteriori bound on the
                  residual ratio is within 1 + eps (instead of ``rtol``'s optimality test).
``ridge``         str: a non-negative number or ``auto`` (GCV on the sketched problem)
``rtol``          float, CGLS tolerance (LSQR's stopping criteria)
``maxiter``       int or None
``max_memory``    str or None, e.g. ``500M``: a dense HDF5 matrix larger than this is streamed in
                  row blocks from the file instead of being loaded.

A dense, contiguous float64 HDF5 matrix within the budget is memory-mapped rather than copied;
its NaN/Inf check then happens through the sketch (non-finite entries make S A non-finite, and the
kernel reports it), followed by a scan that names the first offending row.

The method is the mode: ``auto`` (``sketch-and-solve`` when ``--eps`` is given, else
``precondition``), ``precondition``, ``sketch-and-solve`` or ``refine``.
"""

from __future__ import annotations

import os
import re
from typing import Any

import numpy as np

from matcli.core.errors import InputError, UsageError
from matcli.core.registry import get_spec
from matcli.core.result import Callback, Result, Status
from matcli.jobs.base import FamilyJob
# The kernels (and scipy.linalg under them) load with the job, before the timed phases: module
# imports are start-up, and the setup phase then times only this job's own setup.
from matcli.methods.sketch.regress import MODES, default_sketch_size
from matcli.methods.sketch.sketches import STREAMABLE_KINDS

_UNITS = {"": 1, "B": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


def parse_memory(text: str) -> int:
    """Bytes from ``500M``, ``2G``, ``1.5G``, ``800K``, ``123456`` (binary units); UsageError otherwise."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([KMGT]?)(?:I?B)?\s*", text.upper())
    if not match:
        raise UsageError(f"--max-memory {text!r}: expected a size such as 500M or 2G")
    value = float(match.group(1)) * _UNITS[match.group(2)]
    if value < 1024:
        raise UsageError(f"--max-memory {text!r}: must be at least 1K")
    return int(value)


def _available_memory() -> int:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 8 * 2**30


def _hdf5_dense_dataset(spec_text: str) -> tuple[str, str, tuple[int, ...], np.dtype] | None:
    """``(path, dataset name, shape, dtype)`` when the spec names a dense HDF5 dataset, else None."""
    from matcli.io import hdf5
    from matcli.io.spec import parse_spec

    spec = parse_spec(spec_text)
    if spec.kind != "hdf5" or not os.path.isfile(spec.path):
        return None
    with hdf5.open_file(spec.path) as fh:
        obj = hdf5.resolve_object(fh, spec.path, spec.internal)
        if isinstance(obj, hdf5.h5py.Group):
            return None
        return spec.path, obj.name, tuple(obj.shape), obj.dtype


def hdf5_memmap(path: str, dataset: str) -> np.ndarray | None:
    """Map a contiguous, uncompressed float64 HDF5 dataset read-only (no copy), else None.

    The pages are read on first touch, i.e. during the sketch pass, so A is not copied into
    private memory and no separate reading pass is spent.
    """
    import h5py

    with h5py.File(path, "r") as fh:
        dset = fh[dataset]
        if dset.chunks is not None or dset.compression is not None or dset.dtype != np.dtype("<f8"):
            return None
        offset = dset.id.get_offset()
        if offset is None or dset.size == 0:
            return None
        shape = dset.shape
    import mmap

    populate = getattr(mmap, "MAP_POPULATE", 0)
    if not populate:
        return np.memmap(path, dtype="<f8", mode="r", offset=offset, shape=shape)
    # MAP_POPULATE maps every page up front (far cheaper than one page fault per 4 KiB later)
    start = offset - offset % mmap.ALLOCATIONGRANULARITY
    fd = os.open(path, os.O_RDONLY)
    try:
        mapped = mmap.mmap(fd, offset - start + dset_bytes(shape), flags=mmap.MAP_SHARED | populate,
                           prot=mmap.PROT_READ, offset=start)
    finally:
        os.close(fd)
    return np.ndarray(shape, dtype="<f8", buffer=mapped, offset=offset - start)


def dset_bytes(shape: tuple[int, ...]) -> int:
    return int(np.prod(shape)) * 8


def _first_nonfinite_row(A: np.ndarray, rows: int = 65536) -> int | None:
    for start in range(0, A.shape[0], rows):
        bad = ~np.isfinite(A[start:start + rows]).all(axis=1)
        if bad.any():
            return start + int(np.flatnonzero(bad)[0])
    return None


def hdf5_row_blocks(path: str, dataset: str, rows_per_block: int):
    """A callable returning an iterator over blocks of ``rows_per_block`` rows of an HDF5 dataset.

    Each call opens the file again (one pass); blocks holding NaN/Inf raise InputError.
    """

    def blocks():
        import h5py

        with h5py.File(path, "r") as fh:
            dset = fh[dataset]
            m = dset.shape[0]
            for start in range(0, m, rows_per_block):
                block = dset[start:min(m, start + rows_per_block)]
                if block.dtype.kind in "fc" and not np.isfinite(block).all():
                    raise InputError(path, f"matrix rows {start + 1}..{start + block.shape[0]} contain NaN or Inf")
                yield block

    return blocks


class Job(FamilyJob):
    family = "sketch"

    def read(self) -> None:
        from matcli.io.load import read_dense, read_matrix

        if len(self.request.inputs) != 2:
            raise UsageError("sketch-regress needs two inputs: the matrix A and the right-hand side b")
        a_spec, b_spec = self.request.inputs
        options = self.request.options
        budget_text = options.get("max_memory")
        self.budget = parse_memory(budget_text) if budget_text else _available_memory() // 2
        self.A = None
        self.stream: tuple[str, str, tuple[int, ...], np.dtype] | None = None
        dense = _hdf5_dense_dataset(a_spec)
        if dense is not None:
            path, name, shape, dtype = dense
            if dtype.kind not in "biuf":
                raise InputError(path, f"dataset {name} has dtype {dtype}; sketch-regress needs real numbers")
            if len(shape) != 2:
                raise InputError(path, f"dataset {name} is {len(shape)}-D, expected 2-D")
            if shape[0] * shape[1] * 8 > self.budget:
                self.stream = dense
        self.mapped = False
        if self.stream is None and dense is not None:
            self.A = hdf5_memmap(dense[0], dense[1])
            self.mapped = self.A is not None
        if self.stream is None and self.A is None:
            self.A = read_matrix(a_spec)
        self.b = read_dense(b_spec)
        self.a_path = a_spec
        self.b_path = b_spec
        self.a_file = dense[0] if dense is not None else a_spec

    def _shape(self) -> tuple[int, int]:
        if self.stream is not None:
            return int(self.stream[2][0]), int(self.stream[2][1])
        return self.A.shape

    def validate(self) -> None:
        from matcli.io.spec import parse_spec

        a_path, b_path = parse_spec(self.a_path).path, parse_spec(self.b_path).path
        m, n = self._shape()
        if self.A is not None and np.iscomplexobj(self.A):
            raise InputError(a_path, "complex matrices are not supported by sketch-regress")
        if np.iscomplexobj(self.b):
            raise InputError(b_path, "complex right-hand sides are not supported by sketch-regress")
        if m == 0 or n == 0:
            raise InputError(a_path, f"matrix is empty ({m} x {n})")
        if m < n:
            raise InputError(a_path, f"matrix is {m} x {n}; sketch-regress needs a tall matrix (m >= n), "
                                     "transpose a wide one")
        b = self.b
        if b.ndim == 2 and 1 in b.shape:
            b = b.reshape(-1)
        if b.ndim != 1:
            raise InputError(b_path, f"right-hand side has shape {self.b.shape}; expected a vector of length {m}")
        if b.size != m:
            raise InputError(b_path, f"right-hand side has length {b.size}, but A has {m} rows")
        self.b = b.astype(np.float64)

    def setup(self, rng: np.random.Generator) -> None:
        self.rng = rng
        options = self.request.options
        m, n = self._shape()
        eps = options.get("eps")
        sketch = options.get("sketch", "auto")
        size = options.get("sketch_size")
        if eps is not None and not 0.0 < eps < 1.0:
            raise UsageError(f"--eps {eps}: must lie in (0, 1)")
        method = self.request.method
        if method == "auto":
            if eps is not None:
                method = "sketch-and-solve"
                self.choice_reason = "--eps asks for a (1+eps)-optimal residual, which sketch-and-solve gives in one pass"
            else:
                method = "precondition"
                self.choice_reason = ("no --eps: solve to --rtol with CGLS preconditioned by the sketch "
                                      "(iterations independent of cond(A))")
        elif method not in MODES:
            raise UsageError(f"unknown mode {method!r}; choose one of auto, {', '.join(MODES)}")
        else:
            self.choice_reason = "requested with --mode"
        self.method = method
        if method == "sketch-and-solve" and eps is not None and size is not None:
            raise UsageError("sketch-and-solve: give either --sketch-size or --eps (which sets the sketch size), "
                             "not both")
        spec = get_spec("sketch", method)
        params = spec.resolve_params(list(self.request.params))
        if size is not None and not n <= size <= m:
            raise UsageError(f"--sketch-size {size}: must lie between n = {n} and m = {m}")
        if self.stream is not None and sketch != "auto" and sketch not in STREAMABLE_KINDS:
            raise UsageError(f"--sketch {sketch} needs the whole matrix in memory; the matrix exceeds "
                             f"--max-memory, so use one of {', '.join(STREAMABLE_KINDS)}")
        ridge_text = str(options.get("ridge", "0")).strip().lower()
        if ridge_text == "auto":
            ridge: float | str = "auto"
        else:
            try:
                ridge = float(ridge_text)
            except ValueError:
                raise UsageError(f"--ridge {ridge_text!r}: expected a non-negative number or 'auto'") from None
            if not ridge >= 0.0 or not np.isfinite(ridge):
                raise UsageError(f"--ridge {ridge_text!r}: must be a finite number >= 0")
        eps_value = 0.1 if eps is None else float(eps)
        self.kernel_options: dict[str, Any] = {
            "sketch": sketch,
            "sketch_size": int(size) if size is not None else default_sketch_size(
                method, m, n, eps_value, sparse=self.A is not None and hasattr(self.A, "nnz")),
            "eps": None if eps is None else float(eps),
            "ridge": ridge,
            "rtol": float(options.get("rtol", 1e-10)),
            "maxiter": options.get("maxiter") or 200 + n // 10,
            **params,
        }
        if method != "refine":
            self.kernel_options.pop("refine_steps", None)
        self.resolved_params = dict(self.kernel_options, max_memory_bytes=self.budget)
        nnz = int(self.A.nnz) if self.A is not None and hasattr(self.A, "nnz") else m * n
        self.problem_info = {"shape": [m, n], "nnz": nnz,
                             "format": "streamed hdf5 rows" if self.stream else
                             ("sparse csr" if hasattr(self.A, "nnz") else "dense"),
                             "streaming": self.stream is not None}
        if self.stream is not None:
            rows = max(1, self.budget // (4 * 8 * n))
            self.problem_info["rows_per_block"] = int(min(rows, m))

    def compute(self, callback: Callback) -> Result:
        spec = get_spec("sketch", self.method)
        kernel = spec.load()
        if self.stream is not None:
            from matcli.methods.sketch.streaming import RowStreamProblem

            path, name, shape, _ = self.stream
            blocks = hdf5_row_blocks(path, name, self.problem_info["rows_per_block"])
            problem = RowStreamProblem(blocks, (shape[0], shape[1]), self.b)
            result = kernel(problem, rng=self.rng, callback=callback, **self.kernel_options)
            result.info["passes_over_file"] = problem.passes
            return result
        result = kernel(self.A, self.b, rng=self.rng, callback=callback, **self.kernel_options)
        if self.mapped and result.status == Status.DIVERGED_NAN:
            # a mapped matrix was not scanned when read: find out whether the input is at fault
            row = _first_nonfinite_row(self.A)
            if row is not None:
                raise InputError(self.a_file, f"matrix row {row + 1} contains NaN or Inf values")
        return result
