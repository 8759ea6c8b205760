"""Adapter for ``matcli sketch-regress``: randomized least squares ``min ||A x - b||`` (+ ridge).

Inputs: ``request.inputs = (A_spec, b_spec)``. Options (``request.options``, a
:class:`~matcli.jobs.options.SketchOptions`):

``sketch``        auto | countsketch | sparse-sign | srht | gaussian | leverage
``sketch_size``   int or None (rows of the sketch)
``eps``           float or None: target residual ratio 1 + eps. sketch-and-solve: sets the sketch
                  size. precondition / refine: CGLS stops once the a-posteriori bound on the
                  residual ratio is within 1 + eps (instead of ``rtol``'s optimality test).
``ridge``         a non-negative number or ``auto`` (GCV on the sketched problem)
``ensemble``      1, or K >= 2: method ``ridge-ensemble``, the average of K ridge solutions on feature
                  sketches (columns of A, in memory), lambda (``--ridge auto``, 0 included) and
                  ``--sketch-size`` (q per member, or ``auto``) chosen by the ensemble's GCV
                  (:mod:`matcli.methods.sketch.ensemble`); the report's ``info.gcv_curve`` holds the
                  curve. Its status says each member was solved exactly; the ensemble does not solve the
                  full ridge problem, so ``metrics.full_ridge_normal_residual`` is not small in general.
``rtol``          float, CGLS tolerance (LSQR's stopping criteria)
``maxiter``       int or None
``request.max_memory`` (``--max-memory``, shared by every family), e.g. ``500M``: the peak resident
                  memory of the whole process (default: half of the available memory). An HDF5 matrix (dense dataset or CSR
                  group) that does not fit beside the solve's vectors and sketch is streamed in
                  row blocks from the file instead of being loaded; the sketch size is capped to
                  fit (:class:`MemoryPlan`). A CSC group that does not fit is a usage error.

The budget is shared out from what the process holds when the job starts (interpreter, libraries,
``baseline`` in the report): A or its row blocks, the vectors of length m, the sketch and its
working memory (:mod:`matcli.methods.sketch.memory`).

A dense, contiguous float64 HDF5 matrix is memory-mapped rather than copied (whole when it fits,
in row windows when streamed); in memory, its NaN/Inf check happens through the sketch (non-finite
entries make S A non-finite, and the kernel reports it), followed by a scan that names the first
offending row; streamed, the first pass checks each block (:mod:`matcli.io.hdf5_rows`).

The method is the mode: ``auto`` (``sketch-and-solve`` when ``--eps`` is given and its sketch is
small, see :func:`choose_mode`, else ``precondition``), ``precondition``, ``sketch-and-solve`` or
``refine``.
"""

from __future__ import annotations

from typing import Any

import os

import numpy as np

from matcli.core.errors import InputError, UsageError
from matcli.core.memory import mib, resolve_budget
from matcli.core.timing import resident_memory_bytes
from matcli.core.registry import get_spec
from matcli.core.result import Callback, Result, Status
from matcli.io import hdf5_rows
from matcli.jobs.base import FamilyJob
from matcli.threads import worker_count
# The kernels (and scipy.linalg under them) load with the job, before the timed phases: module
# imports are start-up, and the setup phase then times only this job's own setup.
from matcli.methods.sketch.memory import MemoryPlan, scatter_bytes
from matcli.methods.sketch.regress import MODES, default_sketch_size, smallest_sketch_rows
from matcli.methods.sketch.sketches import STREAMABLE_KINDS


#: The process's resident memory at the start is rounded up to a multiple of this before the plan
#: shares out the budget: the row blocks (whose sums end in different last bits when cut elsewhere)
#: and a capped sketch size then stay the same from run to run unless the resident memory crosses
#: a step.
BASELINE_STEP = 8 * 2**20

#: ``auto`` with ``--eps`` takes sketch-and-solve only while the sketch that eps needs has at most
#: this many rows per column of A (eps >~ 0.007 for n = 200): beyond it the QR of that sketch costs
#: more than the few CGLS passes that a small sketch's preconditioner needs to prove 1 + eps.
SKETCH_AND_SOLVE_MAX_FACTOR = 100

#: ``auto`` solves a matrix held in memory with at most this many entries exactly by LAPACK (the thin
#: SVD of 2**21 entries, e.g. 20000 x 100, takes ~0.2 s here): full accuracy where a sketch saves nothing.
EXACT_MAX_ENTRIES = 2**21

#: ``auto`` with a backend solves exactly by TSQR over the row blocks up to this many columns: two
#: passes over A (R factor, certificate) at 2 m n^2 flops, against a sketch and one pass per CGLS
#: iteration; the client holds one (n + 1)^2 R factor per block.
TSQR_MAX_COLUMNS = 2000

#: Bytes per entry of A the exact solve holds at once: A densified, its copy inside gesdd and U.
EXACT_BYTES_PER_ENTRY = 3


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


class Job(FamilyJob):
    family = "sketch"

    def output_arrays(self) -> tuple[str, ...] | None:
        return ("x",)

    def read(self) -> None:
        from matcli.io.load import read_dense, read_matrix

        if len(self.request.inputs) != 2:
            raise UsageError("sketch-regress needs two inputs: the matrix A and the right-hand side b")
        a_spec, b_spec = self.request.inputs
        budget_text = self.request.max_memory or os.environ.get("MATCLI_MAX_MEMORY")
        self.budget = resolve_budget(budget_text)
        self.budget_text = (f"--max-memory {budget_text}" if budget_text else
                            f"the default memory budget (half the available memory, {mib(self.budget)})")
        self.baseline = -(-resident_memory_bytes() // BASELINE_STEP) * BASELINE_STEP
        self.threads = worker_count()
        self.A = None
        self.mapped = False
        self.stream: hdf5_rows.DenseDataset | hdf5_rows.SparseGroup | None = None
        #: --backend dask: A as row blocks the workers read (jobs/sketch_remote.py)
        self.remote = None
        self.a_path, self.b_path = a_spec, b_spec
        if self.request.backend != "local":
            from matcli.io.row_blocks import row_source

            self.remote = row_source(a_spec)
            self.a_file = a_spec
            self.b = read_dense(b_spec)
            return
        located = hdf5_rows.locate(a_spec)
        self.a_file = located.path if located is not None else a_spec
        if isinstance(located, hdf5_rows.DenseDataset):
            if located.dtype.kind not in "biufc":
                raise InputError(located.path, f"dataset {located.name} has dtype {located.dtype}; "
                                               "sketch-regress needs numbers")
            if len(located.shape) != 2:
                raise InputError(located.path, f"dataset {located.name} is {len(located.shape)}-D, expected 2-D")
            if located.dtype.kind == "c":
                pass  # complex: solved exactly (--mode lapack), read whole below under the budget
            elif not self._fits(located.shape, located.nbytes_float64, nnz=None):
                self.stream = located
            elif located.offset is not None:
                self.A = hdf5_rows.map_dense(located)
                self.mapped = True
        elif isinstance(located, hdf5_rows.SparseGroup):
            m = located.shape[0]
            # data as float64, indices, the row pointer, and the index conversion while reading
            in_memory = located.nnz * (8 + 4 + located.index_itemsize) + 16 * (m + 1)
            if not self._fits(located.shape, in_memory, nnz=located.nnz):
                if located.encoding != "csr_matrix":
                    raise UsageError(f"{located.path}: {located.encoding} group {located.name} needs about "
                                     f"{mib(in_memory)} in memory, more than {self.budget_text} leaves; only "
                                     "dense datasets and csr_matrix groups can be streamed by rows (store A as "
                                     "csr_matrix) or raise --max-memory")
                self.stream = located
                self.indptr = hdf5_rows.csr_indptr(located)
        if self.stream is None and self.A is None:
            self.A = read_matrix(a_spec)
        self.b = read_dense(b_spec)

    def _fits(self, shape: tuple[int, ...], matrix_bytes: int, *, nnz: int | None) -> bool:
        """Whether A can be held in memory beside the vectors and the smallest sketch of the solve."""
        m, n = int(shape[0]), int(shape[1])
        plan = MemoryPlan(self.budget, self.baseline, m, n, self.threads, matrix_bytes, streaming=False,
                          kind=self.request.options.sketch, nnz=nnz)
        return plan.max_rows(zeta=4) >= min(m, smallest_sketch_rows(n))

    @property
    def streamed(self) -> bool:
        """A is read in row blocks, one pass per operation (from the file here, or by workers)."""
        return self.stream is not None or self.remote is not None

    def _shape(self) -> tuple[int, int]:
        if self.remote is not None:
            return self.remote.n_rows, self.remote.n_cols
        if self.stream is not None:
            return int(self.stream.shape[0]), int(self.stream.shape[1])
        return self.A.shape

    def validate(self) -> None:
        from matcli.io.spec import parse_spec

        a_path, b_path = parse_spec(self.a_path).path, parse_spec(self.b_path).path
        m, n = self._shape()
        b = self.b
        if b.ndim == 2 and b.shape[1] == 1 or b.ndim == 2 and b.shape[0] == 1 and m != 1:
            b = b.reshape(-1)
        if b.ndim not in (1, 2):
            raise InputError(b_path, f"right-hand side has shape {self.b.shape}; expected ({m},) or ({m}, k)")
        if b.shape[0] != m:
            raise InputError(b_path, f"right-hand side has {b.shape[0]} rows, but A has {m}")
        if b.dtype.kind not in "biufc":
            raise InputError(b_path, f"right-hand side has dtype {b.dtype}; expected numbers")
        #: why only the exact solve applies (the sketched modes take a real, tall, non-empty A and one b)
        self.exact_only = next((why for bad, why in (
            (self.A is not None and np.iscomplexobj(self.A)
             or self.remote is not None and self.remote.dtype.kind == "c", "A is complex"),
            (np.iscomplexobj(b), "b is complex"),
            (b.ndim == 2, f"b has {b.shape[1] if b.ndim == 2 else 1} columns"),
            (m == 0 or n == 0, f"A is empty ({m} x {n})"),
            (m < n, f"A is wide ({m} x {n}): the minimum-norm solution"),
        ) if bad), None)
        if self.exact_only and self.remote is not None:
            raise UsageError(f"{a_path}: {self.exact_only}, which only --mode lapack solves, on this machine: "
                             f"drop --backend {self.request.backend}")
        if self.exact_only and self.stream is not None:
            raise UsageError(f"{a_path}: {self.exact_only}, which only --mode lapack solves, and it needs A in "
                             f"memory, more than {self.budget_text} leaves; raise --max-memory")
        self.b = b if np.iscomplexobj(b) else b.astype(np.float64)

    def setup(self, rng: np.random.Generator) -> None:
        self.rng = rng
        options = self.request.options
        m, n = self._shape()
        eps = options.eps
        sketch = options.sketch
        size = options.sketch_size
        if eps is not None and not 0.0 < eps < 1.0:
            raise UsageError(f"--eps {eps}: must lie in (0, 1)")
        if options.ensemble >= 2:
            self._setup_ensemble(m, n, options)
            return
        if size == "auto":
            raise UsageError("--sketch-size auto tunes the feature sketches of an ensemble by GCV: give "
                             "--ensemble K (K >= 2), or a number of sketch rows")
        sparse = (isinstance(self.stream, hdf5_rows.SparseGroup) or hasattr(self.A, "nnz")
                  or self.remote is not None and self.remote.layout == "csr")
        # a sparse A in memory is scattered into the sketch in pieces of bounded size; a streamed one
        # block by block, which the blocks' cost counts (see _plan_blocks)
        scattered_nnz = int(self.A.nnz) if hasattr(self.A, "nnz") else None
        plan = MemoryPlan(self.budget, self.baseline, m, n, self.threads, self._matrix_bytes(),
                          self.streamed, kind=sketch, nnz=scattered_nnz)
        method = self.request.method
        if method == "auto" and self.exact_only:
            method, self.choice_reason = "lapack", f"{self.exact_only}: exact least squares by LAPACK"
        elif (method == "auto" and not self.streamed and sketch == "auto" and size is None
              and m * n <= EXACT_MAX_ENTRIES):
            method, self.choice_reason = "lapack", (f"the {m}x{n} matrix is small: an exact LAPACK solve is "
                                                    "fast and accurate to the backward-error level")
        elif (method == "auto" and self.remote is not None and eps is None and sketch == "auto" and size is None
              and n <= TSQR_MAX_COLUMNS):
            method, self.choice_reason = "lapack", (
                f"A has {n} <= {TSQR_MAX_COLUMNS} columns: the exact solve by TSQR reads each row block twice "
                "(its R factor, then the certificate), fewer passes than CGLS preconditioned by a sketch")
        elif method == "auto":
            method, self.choice_reason = choose_mode(m, n, eps, plan.max_rows(zeta=4))
        elif method == "lapack":
            self.choice_reason = "requested with --mode"
        elif self.exact_only:
            raise UsageError(f"--mode {method} sketches a real tall A against one right-hand side, but "
                             f"{self.exact_only}; use --mode lapack (or auto)")
        elif method not in MODES:
            raise UsageError(f"unknown mode {method!r}; choose one of auto, lapack, {', '.join(MODES)}")
        else:
            self.choice_reason = "requested with --mode"
        self.method = method
        ridge = self._ridge(options)
        if method == "lapack":
            self._setup_exact(m, n, ridge, options)
            return
        if method == "sketch-and-solve" and eps is not None and size is not None:
            raise UsageError("sketch-and-solve: give either --sketch-size or --eps (which sets the sketch size), "
                             "not both")
        spec = get_spec("sketch", method)
        params = spec.resolve_params(list(self.request.params))
        if size is not None and not n <= size <= m:
            raise UsageError(f"--sketch-size {size}: must lie between n = {n} and m = {m}")
        if self.streamed and sketch != "auto" and sketch not in STREAMABLE_KINDS:
            where = (f"--backend {self.request.backend} reads A in row blocks" if self.remote is not None else
                     f"the matrix does not fit {self.budget_text}")
            raise UsageError(f"--sketch {sketch} needs the whole matrix in memory; {where}, so use one of "
                             f"{', '.join(STREAMABLE_KINDS)}")
        eps_value = 0.1 if eps is None else float(eps)
        zeta = params["nnz_per_column"]
        max_rows = plan.max_rows(zeta=zeta)
        wanted = int(size) if size is not None else default_sketch_size(
            method, m, n, eps_value, sparse=sparse, streaming=self.streamed, kind=sketch)
        d = wanted
        if wanted > max_rows:
            # a requested size (or sketch-and-solve's, set by eps) must fit; a default one is capped
            needed = wanted if size is not None or method == "sketch-and-solve" else min(m, smallest_sketch_rows(n))
            if max_rows < needed:
                hint = (f"use --mode precondition{f' --eps {eps:g}' if eps is not None else ''} (a smaller sketch "
                        "suffices) or " if method == "sketch-and-solve" else "")
                held = "the process so far and the vectors of length m" if self.streamed else \
                    "the process so far, A and the vectors of length m"
                rest = " and the row blocks half of the rest" if self.stream is not None else ""
                raise UsageError(f"a sketch of {needed} rows needs {mib(plan.sketch_total(needed, zeta))}, but under "
                                 f"{self.budget_text} {held} take {mib(plan.fixed())}{rest}: {hint}raise "
                                 f"--max-memory to at least {mib(plan.least_budget(needed, zeta))}")
            d = max_rows
        self.kernel_options: dict[str, Any] = {
            "sketch": sketch,
            "sketch_size": int(d),
            "eps": None if eps is None else float(eps),
            "ridge": ridge,
            "rtol": float(options.rtol),
            "maxiter": options.maxiter or 200 + n // 10,
            **params,
        }
        if method != "refine":
            self.kernel_options.pop("refine_steps", None)
        # the budget is a fact of the machine (its default comes from the free memory): the report's
        # problem.memory records it, the output's params hold only what fixes the answer
        self.resolved_params = dict(self.kernel_options)
        if self.remote is not None:
            nnz, layout = self.remote.nnz, self._remote_format()
        elif isinstance(self.stream, hdf5_rows.SparseGroup):
            nnz, layout = self.stream.nnz, "streamed hdf5 csr rows"
        elif self.stream is not None:
            nnz, layout = m * n, "streamed hdf5 rows"
        else:
            nnz, layout = (int(self.A.nnz), "sparse csr") if sparse else (m * n, "dense")
        self.problem_info = {"shape": [m, n], "nnz": nnz, "format": layout, "streaming": self.streamed}
        sketch_total = plan.sketch_total(d, zeta)
        memory = {"budget_bytes": self.budget, "baseline_bytes": self.baseline, "slack_bytes": plan.slack(),
                  "vectors_bytes": plan.vectors(), "matrix_bytes": plan.matrix_bytes,
                  "sketch_bytes": sketch_total}
        if d < wanted:
            memory["sketch_capped"] = f"{wanted} rows wanted, {d} fit the budget"
        self.problem_info["memory"] = memory
        if self.stream is not None:
            memory["block_bytes"] = self._plan_blocks(plan, sketch_total, scatter_bytes(sketch, zeta))
        if self.remote is not None:
            from matcli.jobs.sketch_remote import plan_blocks

            self.blocks = plan_blocks(self.remote, self.budget - self.baseline)
            self.problem_info["row_blocks"] = len(self.blocks)
            self.problem_info["rows_per_block"] = max(block.n_rows for block in self.blocks)

    @staticmethod
    def _ridge(options) -> float | str:
        # SketchOptions checked the range
        return "auto" if options.ridge == "auto" else float(options.ridge)

    def _setup_ensemble(self, m: int, n: int, options) -> None:
        """``--ensemble K >= 2``: the average of K ridge solutions on feature sketches of A held in
        memory (:mod:`matcli.methods.sketch.ensemble`), lambda and q chosen by the ensemble's GCV."""
        from matcli.io.guard import check_allocation
        from matcli.methods.sketch.ensemble import FEATURE_SKETCHES, lambda_count, size_grid

        K = int(options.ensemble)
        refused = next((why for bad, why in (
            (self.request.method != "auto", f"--mode {self.request.method} does not apply (the ensemble is its "
                                            "own estimator: each member is solved exactly by the SVD)"),
            (options.eps is not None, "--eps does not apply (no residual target: GCV chooses the estimator)"),
            (self.streamed, "A must be held in memory (it is read by the workers or streamed from the file)"),
            # a wide A is where feature sketches belong (exact_only lists "A is wide" last, so it hides no other)
            (bool(self.exact_only) and not self.exact_only.startswith("A is wide"),
             f"{self.exact_only}; the ensemble takes a real A and one right-hand side"),
            (bool(self.request.params), "it takes no --param"),
            (options.sketch not in ("auto", *FEATURE_SKETCHES),
             f"--sketch {options.sketch} is not a feature sketch (use {', '.join(FEATURE_SKETCHES)} or auto)"),
            (isinstance(options.sketch_size, int) and options.sketch_size > n,
             f"--sketch-size {options.sketch_size} exceeds the {n} columns of A (q features per member)"),
        ) if bad), None)
        if refused:
            raise UsageError(f"--ensemble {K}: {refused}")
        sparse = hasattr(self.A, "nnz")
        sketch = options.sketch
        if sketch == "auto":
            sketch = "countsketch" if sparse else "srht"
            self.choice_reason = (f"--ensemble {K}: ridge ensemble on feature sketches; --sketch auto: "
                                  + ("countsketch (O(nnz(A)) for sparse A)" if sparse else
                                     "srht (orthonormal columns: q = n gives the exact ridge)"))
        else:
            self.choice_reason = f"--ensemble {K}: ridge ensemble on {sketch} feature sketches"
        q_max = max(size_grid(n, K, options.sketch_size))
        lams = lambda_count() if options.ridge == "auto" else 1
        # A S, the copy [A S, b] its QR works in and a third m x q for slack, and the fitted values of every
        # lambda with their residuals
        check_allocation(None, 8 * m * (EXACT_BYTES_PER_ENTRY * q_max + 2 * lams),
                         f"the ridge ensemble's sketches of the {m}x{n} A (q up to {q_max})")
        self.method = "ridge-ensemble"
        self.kernel_options = {"ensemble": K, "sketch": sketch, "sketch_size": options.sketch_size,
                               "ridge": self._ridge(options)}
        self.resolved_params = dict(self.kernel_options)
        self.problem_info = {"shape": [m, n], "format": "sparse csr" if sparse else "dense", "streaming": False,
                             "sketch_side": "features (columns of A)"}

    def _setup_exact(self, m: int, n: int, ridge: float | str, options) -> None:
        """``--mode lapack``: A in memory and its dense SVD within the memory budget."""
        from matcli.io.guard import check_allocation

        if self.remote is not None:
            self._setup_tsqr(m, n, ridge, options)
            return
        if self.stream is not None:
            raise UsageError(f"--mode lapack needs A in memory, more than {self.budget_text} leaves; use a "
                             "sketched mode (they stream A)")
        for flag, value in (("--sketch", options.sketch != "auto"),
                            ("--sketch-size", options.sketch_size is not None)):
            if value:
                raise UsageError(f"{flag} does not apply to --mode lapack (no sketch)")
        get_spec("sketch", "lapack").resolve_params(list(self.request.params))  # it has none: refuse any
        itemsize = 16 if np.iscomplexobj(self.A) or np.iscomplexobj(self.b) else 8
        check_allocation(None, EXACT_BYTES_PER_ENTRY * itemsize * m * n, f"the exact SVD of the {m}x{n} A")
        self.kernel_options = {"ridge": ridge}
        # --eps sizes a sketch or stops its iterations: the exact solve has neither
        self.resolved_params = {"ridge": ridge, "rtol": float(options.rtol)}
        if options.eps is not None:
            self.choice_reason += "; --eps not used: the exact solve is optimal to rounding (no sketch)"
        self.problem_info = {"shape": [m, n], "format": "sparse csr" if hasattr(self.A, "nnz") else "dense",
                             "streaming": False, "right_hand_sides": 1 if self.b.ndim == 1 else int(self.b.shape[1]),
                             "dtype": str(np.result_type(self.A.dtype, self.b.dtype, np.float64))}

    def _setup_tsqr(self, m: int, n: int, ridge: float | str, options) -> None:
        """``--mode lapack`` with a backend: the exact solve by TSQR over the workers' row blocks
        (:mod:`matcli.methods.sketch.tsqr`); the client holds b and (n + 1)^2 numbers per block."""
        from matcli.jobs.sketch_remote import plan_blocks

        for flag, value in (("--sketch", options.sketch != "auto"),
                            ("--sketch-size", options.sketch_size is not None)):
            if value:
                raise UsageError(f"{flag} does not apply to --mode lapack (no sketch)")
        get_spec("sketch", "lapack").resolve_params(list(self.request.params))
        self.blocks = plan_blocks(self.remote, self.budget - self.baseline)
        self.kernel_options = {"ridge": ridge}
        self.resolved_params = {"ridge": ridge, "rtol": float(options.rtol)}
        self.problem_info = {"shape": [m, n], "nnz": self.remote.nnz, "streaming": True,
                             "format": self._remote_format(),
                             "row_blocks": len(self.blocks), "rows_per_block": max(b.n_rows for b in self.blocks),
                             "right_hand_sides": 1}

    def _remote_format(self) -> str:
        where = "read by the workers" if self.request.backend != "local" else "read here in turn (streamed)"
        return f"{self.remote.layout} row blocks {where}"

    def _publish_ridge(self, result: Result) -> Result:
        """The ridge the kernel used (``--ridge auto``: chosen by GCV, ``info.ridge_auto`` says how)
        goes to the report once, as ``params.ridge``; the kernel's copies in metrics and info go."""
        used = result.info.pop("ridge", result.metrics.get("ridge"))
        result.metrics.pop("ridge", None)
        if used is not None:
            self.resolved_params["ridge"] = float(used)
        facts = result.info.get("ridge_auto")
        if isinstance(facts, dict) and "curve" in facts:
            # one GCV curve, in the ensemble's layout: on the d rows of the sketch, or on all m rows
            curve = facts.pop("curve")
            rows = int(result.metrics.get("sketch_size", self._shape()[0]))
            curve.update(gcv=[curve["gcv"]], sketch_sizes=[rows], members=[1],
                         sketch_side="none (exact GCV on the m rows)" if self.method == "lapack" else
                         "rows (GCV of the sketched problem, d rows)",
                         chosen={"lambda": float(used), "sketch_size": rows, "gcv": facts.get("gcv")})
            result.info["gcv_curve"] = curve
        return result

    def _plan_blocks(self, plan: MemoryPlan, sketch_total: int, scatter: int) -> int:
        """Cut the streamed rows into blocks that fit what the plan leaves beside a sketch of
        ``sketch_total`` bytes (``blocks_held`` of them at a time); returns the largest block's bytes.

        A row costs its values as float64 plus what the passes make of it: the NaN mask (dense) or
        the indices and the sketch's scatter temporaries, ``scatter`` bytes per nonzero (CSR), and
        (leverage scores) its product with an n x min(n, 32) matrix.
        """
        m, n = self._shape()
        free = self.budget - plan.fixed() - sketch_total
        per_row = 8 * min(n, 32) + 8
        if isinstance(self.stream, hdf5_rows.SparseGroup):
            per_nonzero = 8 + 1 + self.stream.index_itemsize + scatter
            cost = self.indptr * per_nonzero + np.arange(m + 1, dtype=np.int64) * per_row
        else:
            # a block read through h5py in another dtype is converted to float64: both exist at once
            read_as = 0 if self.stream.dtype == np.float64 else self.stream.dtype.itemsize
            cost = np.arange(m + 1, dtype=np.int64) * ((9 + read_as) * n + per_row)
        # blocks read into memory (not mapped windows): the consumer still holds the last one while
        # the next is read
        held = 1 if isinstance(self.stream, hdf5_rows.DenseDataset) and self.stream.offset is not None else 2
        free //= held
        self.problem_info["memory"]["blocks_held"] = held
        widest = int(np.diff(cost).max())
        if widest > free:
            raise UsageError(f"{self.budget_text} leaves {mib(max(free, 0))} for row blocks of A beside the "
                             f"sketch ({mib(sketch_total)}), the vectors of length m ({mib(plan.vectors())}) "
                             f"and the process so far ({mib(self.baseline)}); the widest row needs {mib(widest)}")
        self.cuts = hdf5_rows.row_cuts(cost, free)
        self.problem_info["row_blocks"] = int(self.cuts.size - 1)
        self.problem_info["rows_per_block"] = int(np.diff(self.cuts).max())
        return int(np.max(cost[self.cuts[1:]] - cost[self.cuts[:-1]]))

    def _matrix_bytes(self) -> int:
        """Bytes of A as the kernel holds it (0 when it is streamed; float64 copies counted)."""
        A = self.A
        if A is None:
            return 0
        if hasattr(A, "nnz"):
            return int(A.data.nbytes + A.indices.nbytes + A.indptr.nbytes) + (
                0 if A.dtype == np.float64 else 8 * int(A.nnz))
        return int(A.nbytes) + (0 if A.dtype == np.float64 else 8 * int(A.size))

    def draw(self, ax, result: Result) -> str:
        from matcli import plots

        if self.method == "ridge-ensemble":
            m, n = self._shape()
            if not plots.gcv_curves(ax, result.info.get("gcv_curve")):
                plots.no_history(ax, f"no GCV curve ({result.status.reason})")
            return (f"matcli sketch-regress --ensemble {self.kernel_options['ensemble']} ({m} x {n}): "
                    f"{result.status.reason}")
        if not plots.series(ax, result, ("residual", "optimality"), "relative residual / optimality") and \
                not plots.gcv_curves(ax, result.info.get("gcv_curve")):
            plots.no_history(ax, f"{self.method} runs no iterations (relative residual "
                                 f"{result.metrics.get('relative_residual', float('nan')):.3g})")
        m, n = self._shape()
        return f"matcli sketch-regress {self.method} ({m} x {n}): {result.status.reason}"

    def compute(self, callback: Callback) -> Result:
        if self.method == "ridge-ensemble":
            from matcli.methods.sketch.ensemble import ridge_ensemble

            result = self._publish_ridge(ridge_ensemble(self.A, self.b, rng=self.rng, callback=callback,
                                                        **self.kernel_options))
            if "sketch_size" in result.metrics:
                self.resolved_params["sketch_size"] = int(result.metrics["sketch_size"])
            return self._blame_mapped_input(result)
        spec = get_spec("sketch", self.method)
        kernel = spec.load()
        if self.remote is not None:
            from matcli.jobs.sketch_remote import DistributedRowProblem

            problem = DistributedRowProblem(self.backend, self.remote, self.b, self.blocks)
            if self.method == "lapack":
                from matcli.methods.sketch.tsqr import tsqr_lstsq as kernel
            result = kernel(problem, rng=self.rng, callback=callback, **self.kernel_options)
            result.info.update(problem.describe())  # passes over A and over the file, the blocks workers held
            return self._publish_ridge(result)
        if self.stream is not None:
            from matcli.methods.sketch.streaming import RowStreamProblem

            if isinstance(self.stream, hdf5_rows.SparseGroup):
                blocks = hdf5_rows.CsrRows(self.stream, self.indptr, self.cuts)
            else:
                blocks = hdf5_rows.DenseRows(self.stream, int(np.diff(self.cuts).max()))
            problem = RowStreamProblem(blocks, self._shape(), self.b,
                                       sparse=isinstance(self.stream, hdf5_rows.SparseGroup))
            result = kernel(problem, rng=self.rng, callback=callback, **self.kernel_options)
            result.info["passes_over_file"] = problem.passes
            return self._publish_ridge(result)
        result = self._publish_ridge(kernel(self.A, self.b, rng=self.rng, callback=callback, **self.kernel_options))
        return self._blame_mapped_input(result)

    def _blame_mapped_input(self, result: Result) -> Result:
        """A mapped matrix was not scanned when read: when the kernel met NaN/Inf, find out whether
        the input is at fault (InputError naming the row)."""
        if self.mapped and result.status == Status.DIVERGED_NAN:
            row = hdf5_rows.first_nonfinite_row(self.A)
            if row is not None:
                raise InputError(self.a_file, f"matrix row {row + 1} contains NaN or Inf values")
        return result
