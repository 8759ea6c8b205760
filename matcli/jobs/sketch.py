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
``max_memory``    str or None, e.g. ``500M``: the peak resident memory of the whole process
                  (default: half of the available memory). A dense HDF5 matrix that does not fit
                  beside the solve's vectors and sketch is streamed in row blocks from the file
                  instead of being loaded; the sketch size is capped to fit (:class:`MemoryPlan`).

The budget is shared out from what the process holds when the job starts (interpreter, libraries,
``baseline`` in the report): A or its row blocks, the vectors of length m, the sketch and its
working memory (:mod:`matcli.methods.sketch.memory`).

A dense, contiguous float64 HDF5 matrix within the budget is memory-mapped rather than copied;
its NaN/Inf check then happens through the sketch (non-finite entries make S A non-finite, and the
kernel reports it), followed by a scan that names the first offending row.

The method is the mode: ``auto`` (``sketch-and-solve`` when ``--eps`` is given and its sketch is
small, see :func:`choose_mode`, else ``precondition``), ``precondition``, ``sketch-and-solve`` or
``refine``.
"""

from __future__ import annotations

import os
import re
from typing import Any

import numpy as np

from matcli.core.errors import InputError, UsageError
from matcli.core.timing import resident_memory_bytes
from matcli.core.registry import get_spec
from matcli.core.result import Callback, Result, Status
from matcli.jobs.base import FamilyJob
from matcli.threads import worker_count
# The kernels (and scipy.linalg under them) load with the job, before the timed phases: module
# imports are start-up, and the setup phase then times only this job's own setup.
from matcli.methods.sketch.memory import max_sketch_rows, sketch_bytes, vector_bytes, work_bytes
from matcli.methods.sketch.regress import MODES, default_sketch_size, smallest_sketch_rows
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


def _mib(nbytes: float) -> str:
    return f"{nbytes / 2**20:.1f} MiB"


#: ``auto`` with ``--eps`` takes sketch-and-solve only while the sketch that eps needs has at most
#: this many rows per column of A (eps >~ 0.007 for n = 200): beyond it the QR of that sketch costs
#: more than the few CGLS passes that a small sketch's preconditioner needs to prove 1 + eps.
SKETCH_AND_SOLVE_MAX_FACTOR = 100


def choose_mode(m: int, n: int, eps: float | None, max_rows: int) -> tuple[str, str]:
    """``(mode, reason)`` for ``--mode auto``; ``max_rows`` is the largest sketch the memory allows."""
    if eps is None:
        return "precondition", ("no --eps: solve to --rtol with CGLS preconditioned by the sketch "
                                "(iterations independent of cond(A))")
    d = default_sketch_size("sketch-and-solve", m, n, eps)
    limits = ((SKETCH_AND_SOLVE_MAX_FACTOR * n, f"more than {SKETCH_AND_SOLVE_MAX_FACTOR} n"),
              (m // 2, "more than half of A's rows"), (max_rows, "more than the memory budget holds"))
    for limit, why in limits:
        if d > limit:
            return "precondition", (f"--eps {eps:g} needs a sketch of {d} rows for sketch-and-solve ({why}); "
                                    "CGLS preconditioned by a smaller sketch stops once the residual is "
                                    "provably within 1 + eps")
    return "sketch-and-solve", (f"--eps asks for a (1+eps)-optimal residual, which sketch-and-solve gives "
                                f"from one sketch of {d} rows")


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


class MemoryPlan:
    """How the memory budget is shared out (bytes; see :mod:`matcli.methods.sketch.memory`).

    ``fixed()`` is what the process held at the start (``baseline``), A in memory (0 when streamed)
    and the vectors of length m; the sketch takes what is left, but at most half of it when
    streaming, so that the row blocks get the other half.
    """

    def __init__(self, budget: int, baseline: int, m: int, n: int, threads: int, matrix_bytes: int,
                 streaming: bool):
        self.budget, self.baseline, self.m, self.n, self.threads = budget, baseline, m, n, threads
        self.matrix_bytes, self.streaming = matrix_bytes, streaming

    def fixed(self) -> int:
        return self.baseline + self.matrix_bytes + vector_bytes(self.m) + self.slack()

    def slack(self) -> int:
        """Held back for what the plan does not count (library buffers, small temporaries)."""
        return 2**21 + self.budget // 50

    def sketch_total(self, d: int, kind: str, zeta: int, sparse: bool) -> int:
        """Bytes of a d-row sketch of kind ``kind``: sums, factorisation and every thread's working memory."""
        return sketch_bytes(d, self.n, self.threads) + self.threads * work_bytes(kind, self.m, d, zeta=zeta,
                                                                                  sparse=sparse)

    def least_budget(self, d: int, kind: str, zeta: int, sparse: bool) -> int:
        """The smallest budget that holds a d-row sketch (streaming: as half of the free memory)."""
        return self.fixed() + self.sketch_total(d, kind, zeta, sparse) * (2 if self.streaming else 1)

    def max_rows(self, kind: str, *, zeta: int, sparse: bool) -> int:
        """The most sketch rows that fit (0 when none do)."""
        free = self.budget - self.fixed()
        if self.streaming:
            free //= 2
        d = max_sketch_rows(free - self.threads * work_bytes(kind, self.m, 1, zeta=zeta, sparse=sparse),
                            self.n, self.threads)
        # a Gaussian sketch's working memory grows with d: step down until it fits
        while d > 0 and self.sketch_total(d, kind, zeta, sparse) > free:
            d = max_sketch_rows(free - self.threads * work_bytes(kind, self.m, d, zeta=zeta, sparse=sparse),
                                self.n, self.threads)
        return min(d, self.m)


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
        self.budget_text = (f"--max-memory {budget_text}" if budget_text else
                            f"the default memory budget (half the available memory, {_mib(self.budget)})")
        self.baseline = resident_memory_bytes()
        self.threads = worker_count()
        self.A = None
        self.stream: tuple[str, str, tuple[int, ...], np.dtype] | None = None
        dense = _hdf5_dense_dataset(a_spec)
        if dense is not None:
            path, name, shape, dtype = dense
            if dtype.kind not in "biuf":
                raise InputError(path, f"dataset {name} has dtype {dtype}; sketch-regress needs real numbers")
            if len(shape) != 2:
                raise InputError(path, f"dataset {name} is {len(shape)}-D, expected 2-D")
            m, n = shape
            # in memory only if A fits beside the vectors and the smallest sketch of the solve
            plan = MemoryPlan(self.budget, self.baseline, m, n, self.threads, 8 * m * n, streaming=False)
            if plan.max_rows("auto", zeta=4, sparse=False) < min(m, smallest_sketch_rows(n)):
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
        sparse = self.A is not None and hasattr(self.A, "nnz")
        plan = MemoryPlan(self.budget, self.baseline, m, n, self.threads, self._matrix_bytes(),
                          self.stream is not None)
        method = self.request.method
        if method == "auto":
            method, self.choice_reason = choose_mode(m, n, eps, plan.max_rows(sketch, zeta=4, sparse=sparse))
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
            raise UsageError(f"--sketch {sketch} needs the whole matrix in memory; the matrix does not fit "
                             f"{self.budget_text}, so use one of {', '.join(STREAMABLE_KINDS)}")
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
        max_rows = plan.max_rows(sketch, zeta=params["nnz_per_column"], sparse=sparse)
        wanted = int(size) if size is not None else default_sketch_size(
            method, m, n, eps_value, sparse=sparse, streaming=self.stream is not None, kind=sketch)
        d = wanted
        if wanted > max_rows:
            smallest = min(m, n + 1 if method == "sketch-and-solve" else smallest_sketch_rows(n))
            zeta = params["nnz_per_column"]
            if size is not None or method == "sketch-and-solve" or max_rows < smallest:
                hint = (f"use --mode precondition{f' --eps {eps:g}' if eps is not None else ''} (a smaller sketch "
                        "suffices) or " if method == "sketch-and-solve" else "")
                held = ("the process so far and the vectors of length m" if self.stream is not None else
                        "the process so far, A and the vectors of length m")
                raise UsageError(f"a sketch of {wanted} rows needs "
                                 f"{_mib(plan.sketch_total(wanted, sketch, params['nnz_per_column'], sparse))} beside "
                                 f"{_mib(plan.fixed())} for {held}, more than {self.budget_text} allows: "
                                 f"{hint}raise --max-memory (to at least {_mib(plan.least_budget(smallest, sketch, zeta, sparse))} "
                                 f"for the smallest sketch, {smallest} rows)")
            d = max_rows
        self.kernel_options: dict[str, Any] = {
            "sketch": sketch,
            "sketch_size": int(d),
            "eps": None if eps is None else float(eps),
            "ridge": ridge,
            "rtol": float(options.get("rtol", 1e-10)),
            "maxiter": options.get("maxiter") or 200 + n // 10,
            **params,
        }
        if method != "refine":
            self.kernel_options.pop("refine_steps", None)
        self.resolved_params = dict(self.kernel_options, max_memory_bytes=self.budget)
        nnz = int(self.A.nnz) if sparse else m * n
        self.problem_info = {"shape": [m, n], "nnz": nnz,
                             "format": "streamed hdf5 rows" if self.stream else ("sparse csr" if sparse else "dense"),
                             "streaming": self.stream is not None}
        sketch_total = plan.sketch_total(d, sketch, params["nnz_per_column"], sparse)
        memory = {"budget_bytes": self.budget, "baseline_bytes": self.baseline, "slack_bytes": plan.slack(),
                  "vectors_bytes": vector_bytes(m), "matrix_bytes": plan.matrix_bytes,
                  "sketch_bytes": sketch_total}
        if d < wanted:
            memory["sketch_capped"] = f"{wanted} rows wanted, {d} fit the budget"
        if self.stream is not None:
            # the rest of the budget goes to the row blocks: each row as float64 plus its NaN mask
            # and (leverage scores) its product with an n x min(n, 32) matrix
            row_bytes = 8 * n + n + 8 * min(n, 32)
            rows = (self.budget - plan.fixed() - sketch_total) // row_bytes
            if rows < 1:
                raise UsageError(f"{self.budget_text} leaves no room for a row block of A beside the sketch "
                                 f"({_mib(sketch_total)}), the vectors of length m ({_mib(vector_bytes(m))}) "
                                 f"and the process so far ({_mib(self.baseline)})")
            self.problem_info["rows_per_block"] = int(min(rows, m))
            memory["block_bytes"] = int(min(rows, m)) * row_bytes
        self.problem_info["memory"] = memory

    def _matrix_bytes(self) -> int:
        """Bytes of A as the kernel holds it (0 when it is streamed; float64 copies counted)."""
        A = self.A
        if A is None:
            return 0
        if hasattr(A, "nnz"):
            return int(A.data.nbytes + A.indices.nbytes + A.indptr.nbytes) + (
                0 if A.dtype == np.float64 else 8 * int(A.nnz))
        return int(A.nbytes) + (0 if A.dtype == np.float64 else 8 * int(A.size))

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
