"""Adapter for ``matcli solve``: read A (and B), choose the method, set up once, solve.

Options (``request.options``, a :class:`~matcli.jobs.options.SolveOptions`):

``rhs``      right-hand side spec (``file.h5:/b``, ``b.mtx``, ``b.npy``, ``b.txt``) or ``ones`` /
             ``random``; None = the ``b`` dataset of each batch group, else ``ones``.
``nrhs``     columns generated for ``ones`` / ``random`` (default 1).
``precond``  ``auto`` or one of :data:`matcli.methods.solve.precond.PRECONDITIONERS`.
``rtol``, ``maxiter``  stopping rule (relative residual) and iteration cap.
``batch``    inputs are several systems: one HDF5 group whose members are groups holding ``A``
             (and ``b``), or several matrix files sharing ``--rhs``.
``recycle``  batch: dimension of the recycled subspace for Krylov methods (0 = off): CG starts (and
             restarts once) from the Galerkin projection onto Ritz vectors of M^{-1} A harvested from
             the Lanczos process of the earlier solves; the other methods start from the
             minimum-residual point of the span of earlier solutions.
``reorder``  batch: solve similar matrices consecutively (greedy nearest neighbour).

Every method computes in double precision: the matrices and right-hand sides are converted once,
here after reading (:func:`matcli.methods.solve.system.as_matrix`), to float64, or complex128 when
the matrix or the right-hand side is complex; the report says which as ``problem.compute_dtype``
beside ``problem.dtype`` (the dtype the matrix was read as).

With ``--backend dask`` a batch is solved in contiguous chunks of the order, one per worker
(:mod:`matcli.jobs.solve_batch`).

Setup (factorization, AMG hierarchy, ILU, omega estimate) happens in :meth:`Job.setup`; the
solves in :meth:`Job.compute`, so the report times them separately.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from matcli.core.errors import InputError, UsageError
from matcli.core.registry import get_spec, method_names
from matcli.core.result import Callback, Result, Status
from matcli.jobs.base import FamilyJob
from matcli.methods.solve import auto
from matcli.methods.solve.precond import PRECONDITIONERS
from matcli.methods.solve.system import as_matrix, compute_dtype

GENERATED_RHS = ("ones", "random")
DIRECT = ("lu", "cholesky", "ldl")
LEAST_SQUARES = ("lsqr", "lsmr", "lstsq")
STATIONARY = ("sor", "ssor")
KRYLOV = ("cg", "block-cg", "minres", "gmres", "bicgstab")
#: methods that need a Hermitian positive definite matrix and preconditioner
CG_FAMILY = ("cg", "block-cg")
#: auto's reason for block CG on several right-hand sides (benchmarks/bench_solve.py, 100 RHS rows)
BLOCK_CG_REASON = ("the {nrhs} right-hand sides share one Krylov space (block CG: fewer iterations, every product "
                   "on 16 columns at once; 100 columns took 0.65x the CPU of column-wise CG on a 90000-unknown "
                   "Poisson problem with AMG-RS, 0.39x on bcsstk16 with AMG-SA)")
#: the --param keys each preconditioner reads (the report's params show only those of the one used)
PRECOND_PARAMS = {"ilu": ("ilu_drop_tol", "ilu_fill_factor"), "ic": ("ilu_drop_tol", "ilu_fill_factor"),
                  "amg-sa": ("amg_cycle",), "amg-rs": ("amg_cycle",), "chebyshev": ("cheb_degree",)}
ALL_PRECOND_PARAMS = frozenset(key for keys in PRECOND_PARAMS.values() for key in keys)


def resolved_maxiter(method: str, shapes: list[tuple[int, int]], maxiter: int | None) -> int | None:
    """The iteration cap ``method`` runs with: ``--maxiter`` when given, else the kernels' default
    (Krylov and SOR: ``max(10 n, 100)``; LSQR/LSMR: ``max(4 min(m, n), 100)``, the largest over a
    batch's shapes); None for the direct and LAPACK methods, which do not iterate."""
    if method in (*DIRECT, "lstsq"):
        return None
    if maxiter is not None:
        return int(maxiter)
    if method in ("lsqr", "lsmr"):
        return max(max(4 * min(m, n), 100) for m, n in shapes)
    from matcli.methods.solve.krylov import default_maxiter

    return max(default_maxiter(n, None) for _, n in shapes)


def _same(a: Any, b: Any) -> bool:
    """``a`` and ``b`` are the same fact (False where ``==`` is elementwise, as for arrays)."""
    try:
        return bool(a is b or a == b)
    except ValueError:
        return False


@dataclass
class System:
    """One linear system of the job: ``A`` (m, n) and ``B`` (m,) or (m, k) (None until generated)."""

    name: str
    source: str
    A: Any
    B: np.ndarray | None = None


def prepare_solver(method: str, A, *, params: dict[str, Any], precond: str, symmetric: bool,
                   rng: np.random.Generator):
    """The registered setup of ``method`` for matrix ``A`` (factorization, preconditioner, ...)."""
    prepare = get_spec("solve", method).load()
    return prepare(A, params=params, precond_name=precond, symmetric=symmetric, rng=rng)


class Job(FamilyJob):
    family = "solve"

    def __init__(self, request):
        super().__init__(request)
        opts = request.options
        self.rtol = opts.rtol
        self.maxiter = opts.maxiter
        self.rhs_spec = opts.rhs
        self.nrhs = opts.nrhs
        self.precond = opts.precond
        self.batch = opts.batch
        #: auto fell back to least squares because the direct method found A singular
        self.least_squares_fallback = False
        #: iteration cap of an LSMR fallback (bounded by the direct attempt's cost)
        self.fallback_maxiter: int | None = None
        #: what auto tried, in order: method, timings, flops, outcome
        self.attempts: list[dict[str, Any]] = []
        self.recycle = opts.recycle
        self.reorder = opts.reorder
        self.systems: list[System] = []
        self.order: list[int] = []
        self.solver = None
        self.facts: auto.Facts | None = None
        self.params: dict[str, Any] = {}
        self.precheck: tuple[Status, str] | None = None
        self.learn_omega = False
        self.rng: np.random.Generator | None = None
        self.unused_params: list[str] = []
        self.rhs_label = "ones"
        self.input_dtypes: list[str] = []
        #: what a small sparse input read as a dense array was ("" when none was: see _densify_order)
        self.densified = ""
        #: the preconditioner in use (after fallbacks) and the right-hand sides per system
        self.precond_used = "none"
        self.nrhs_used = 1

    # ----------------------------------------------------------------- read
    def input_paths(self) -> list[str]:
        from matcli.io.spec import parse_spec

        paths = [parse_spec(s).path for s in self.request.inputs]
        if self.rhs_spec and self.rhs_spec not in GENERATED_RHS:
            paths.append(parse_spec(self.rhs_spec).path)
        return paths

    def output_arrays(self) -> tuple[str, ...] | None:
        return None if self.batch else ("x",)

    def read(self) -> None:
        from matcli.io.load import read_dense, read_matrix_densified

        inputs = list(self.request.inputs)
        if not inputs:
            raise UsageError("solve needs a matrix: matcli solve A.mtx --rhs b.h5:/b -o x.h5")
        if not self.batch:
            if len(inputs) > 1:
                raise UsageError(f"solve takes one matrix, got {len(inputs)}; use --batch for several systems")
            matrix, self.densified = read_matrix_densified(inputs[0], self._densify_order())
            self.systems = [System("x", inputs[0], matrix)]
        else:
            self.systems = self._read_batch(inputs)
        from_groups = any(system.B is not None for system in self.systems) and self.rhs_spec is None
        self.rhs_label = self.rhs_spec or ("b of each batch group" if from_groups else "ones")
        shared = None
        if self.rhs_spec and self.rhs_spec not in GENERATED_RHS:
            shared = read_dense(self.rhs_spec)
        else:
            self._check_generated_rhs()
        for system in self.systems:
            if system.B is not None and self.rhs_spec is None:
                continue
            if shared is not None:
                system.B = shared
            elif (self.rhs_spec or "ones") == "ones":
                m = system.A.shape[0]
                system.B = np.ones(m) if self.nrhs == 1 else np.ones((m, self.nrhs))
        self._normalise_dtypes()

    def _densify_order(self) -> int | None:
        """The largest order of a square sparse input read as a dense array (None: none is). A single
        system that auto, LU or Cholesky solves: up to the orders numpy's LAPACK factors
        (:data:`~matcli.methods.solve.direct.NUMPY_LU_MAX`), the dense factorization costs less CPU
        than importing scipy.sparse and its solvers (most of a tiny sparse run), and the answer is the
        same to rounding. ``--param backend`` naming a sparse library keeps the input sparse."""
        backend = [p.partition("=")[2].strip() for p in self.request.params if p.partition("=")[0].strip() == "backend"]
        if self.batch or self.request.method not in ("auto", "lu", "cholesky") or \
                any(value != "auto" for value in backend):
            return None
        from matcli.methods.solve.direct import NUMPY_CHOLESKY_MAX, NUMPY_LU_MAX

        return min(NUMPY_LU_MAX, NUMPY_CHOLESKY_MAX)

    def _normalise_dtypes(self) -> None:
        """Convert every matrix and right-hand side to the compute dtype, once, remembering the dtype
        each matrix was read as (a one-line InputError for values double precision cannot hold).

        A batch shares one compute dtype: its setup (a real ILU, say) and its recycled vectors serve
        every later system, so one complex matrix or right-hand side makes every matrix of the batch
        complex128. A single real matrix stays real for a complex right-hand side
        (:meth:`~matcli.methods.solve.solvers.Solver.solve` solves its real and imaginary parts)."""
        self.input_dtypes = sorted({str(s.A.dtype) for s in self.systems})
        dtypes = []
        for system in self.systems:
            try:
                dtypes.append(compute_dtype(system.A, system.B))
            except ValueError as exc:
                raise InputError(system.source, str(exc)) from None
        if self.batch:
            dtypes = [compute_dtype(*[np.empty(0, d) for d in dtypes])] * len(dtypes)
        for system, dtype in zip(self.systems, dtypes):
            system.A = as_matrix(system.A)
            if self.batch and system.A.dtype != dtype:
                system.A = system.A.astype(dtype)
            if system.B is not None:
                system.B = np.asarray(system.B, dtype=dtype)

    def _check_generated_rhs(self) -> None:
        """Refuse ``--nrhs`` columns of ones/random whose right-hand sides and solutions (same shape)
        would exceed the memory budget, before generating them (exit 7)."""
        from matcli.io.guard import check_allocation

        generated = [s for s in self.systems if s.B is None or self.rhs_spec is not None]
        entries = self.nrhs * sum(s.A.shape[0] for s in generated)
        itemsize = 16 if any(np.iscomplexobj(s.A) for s in generated) else 8
        check_allocation(None, 2 * itemsize * entries, f"--nrhs {self.nrhs}: the right-hand sides and solutions")

    def _read_batch(self, inputs: list[str]) -> list[System]:
        from matcli.io.in_memory import PREFIX as ARRAY_PREFIX, is_array_spec
        from matcli.io.load import list_hdf5_members, read_dense, read_matrix
        from matcli.io.spec import parse_spec

        systems = []
        if len(inputs) == 1 and parse_spec(inputs[0]).kind == "hdf5":
            spec = parse_spec(inputs[0])
            base = spec.internal.rstrip("/") if spec.internal else ""
            members = list_hdf5_members(inputs[0])
            if not members:
                raise InputError(spec.path, f"batch group {base or '/'} is empty")
            for name in members:
                group = f"{spec.path}:{base}/{name}"
                content = list_hdf5_members(group)
                if "A" not in content:
                    raise InputError(spec.path, f"batch member {base}/{name} has no matrix 'A' "
                                                "(expected one group per system holding A and b)")
                system = System(name, group, read_matrix(f"{group}/A"))
                if "b" in content and self.rhs_spec is None:
                    system.B = read_dense(f"{group}/b")
                systems.append(system)
        else:
            names = set()
            for spec_text in inputs:
                spec = parse_spec(spec_text)
                if is_array_spec(spec_text):  # an API array: x/<its name>, not x/<array:A0>
                    name = spec_text[len(ARRAY_PREFIX):-1]
                elif spec.internal:
                    name = spec.internal.strip("/").replace("/", "_")
                else:
                    name = Path(spec.path).name.split(".")[0]
                while name in names:
                    name += "_"
                names.add(name)
                systems.append(System(name, spec_text, read_matrix(spec_text)))
        return systems

    # ------------------------------------------------------------- validate
    def validate(self) -> None:
        if self.precond not in ("auto", *PRECONDITIONERS):
            raise UsageError(f"unknown --precond {self.precond!r}; choose auto or one of {', '.join(PRECONDITIONERS)}")
        method = self.request.method
        get_spec("solve", method)
        if self.precond not in ("auto", "none") and method in (*DIRECT, *LEAST_SQUARES, *STATIONARY):
            raise UsageError(f"--method {method} takes no preconditioner (got --precond {self.precond})")
        if self.precond == "ilu" and method in (*CG_FAMILY, "minres"):
            raise UsageError(f"--method {method} needs a symmetric preconditioner and ILU is not; use --precond ic "
                             "(incomplete Cholesky), amg-sa, amg-rs, chebyshev or jacobi")
        if not 0 < self.rtol < 1:
            raise UsageError(f"--rtol {self.rtol}: must be a finite number in (0, 1)")
        if self.nrhs < 1:
            raise UsageError(f"--nrhs {self.nrhs}: must be >= 1")
        if self.recycle < 0:
            raise UsageError(f"--recycle {self.recycle}: must be >= 0")
        first_shape = self.systems[0].A.shape
        for system in self.systems:
            A, B = system.A, system.B
            m, n = A.shape
            if min(m, n) == 0 and (self.batch or method not in ("auto", "lstsq")):
                raise InputError(system.source, f"matrix is empty ({m}x{n}); only --method lstsq (or auto) "
                                                "solves an empty system (x = 0)")
            if self.batch and self.recycle > n:
                raise UsageError(f"--recycle {self.recycle}: a recycled subspace of {system.source} has at most "
                                 f"n = {n} dimensions")
            if m != n and method not in ("auto", *LEAST_SQUARES):
                raise UsageError(f"{system.source}: matrix is {m}x{n} (not square); --method {method} needs a "
                                 "square matrix; use --method lsqr or lsmr (or auto)")
            if B is not None:
                if B.ndim not in (1, 2) or B.shape[0] != m:
                    where = self.rhs_spec if self.rhs_spec not in (None, *GENERATED_RHS) else system.source
                    raise InputError(where, f"right-hand side has shape {B.shape}; the matrix has {m} rows, "
                                            f"so expected ({m},) or ({m}, k)")
                if B.ndim == 2 and B.shape[1] == 0:
                    raise InputError(self.rhs_spec or system.source, "right-hand side has no columns")
            if self.batch and A.shape != first_shape and not self.batch_allows_mixed(method):
                raise InputError(system.source, f"batch systems must share one shape: {A.shape} vs {first_shape}")
        if self.request.backend != "local" and not self.batch:
            raise UsageError(f"--backend {self.request.backend} distributes the systems of --batch; a single "
                             "system is solved in this process (drop --backend)")

    @staticmethod
    def batch_allows_mixed(method: str) -> bool:
        return method in (*DIRECT, *LEAST_SQUARES)

    # ---------------------------------------------------------------- setup
    def setup(self, rng: np.random.Generator) -> None:
        self.rng = rng
        for system in self.systems:
            if system.B is None:
                m = system.A.shape[0]
                system.B = rng.standard_normal(m) if self.nrhs == 1 else rng.standard_normal((m, self.nrhs))
                if np.iscomplexobj(system.A):
                    system.B = system.B.astype(complex)
        self.order = list(range(len(self.systems)))
        if self.batch and self.reorder:
            from matcli.methods.solve.batch import order_systems

            self.order = order_systems([s.A for s in self.systems])
        first = self.systems[self.order[0]]
        A = first.A
        nrhs = 1 if first.B.ndim == 1 else first.B.shape[1]
        requested = self.request.method
        self.facts = facts = auto.inspect(A, choosing="auto" in (requested, self.precond))
        reasons = []
        if self.densified:
            reasons.append(f"{self.densified} of {A.shape[0]}x{A.shape[1]} read as a dense array (orders <= "
                           f"{self._densify_order()}): numpy's LAPACK solves it in less CPU than loading "
                           "scipy.sparse and its solvers takes")
        if requested == "auto":
            method, precond, reason = auto.choose_method(A, facts, nrhs, rng)
            reasons.append(reason)
            if method == "cg" and nrhs > 1:
                method = "block-cg"
                reasons.append(BLOCK_CG_REASON.format(nrhs=nrhs))
            if self.precond != "auto":
                if method in KRYLOV:
                    precond = self.precond
                elif self.precond != "none":
                    reasons.append(f"--precond {self.precond} not used: {method} takes no preconditioner")
        else:
            method = requested
            precond = self.precond
            if precond == "auto":
                precond = auto.choose_precond("cg" if method in CG_FAMILY else method, A, facts)
                if precond != "none":
                    reasons.append(f"--precond auto chose {precond} for {method}")
        self.method = method
        self.params = self._resolve_params(requested, method)
        self._precheck(method, facts)
        facts.release()
        self.solver = None
        # A parallel batch sets up on the workers, each chunk from its first matrix: with a fixed
        # method there is nothing to set up here (auto sets up here to choose).
        remote_setup = self.batch and self.backend.name != "local" and requested != "auto"
        if self.precheck is None and not remote_setup:
            self.solver = self._prepare(method, precond, A, rng)
            if "preconditioner_fallback" in self.solver.info:
                # a preconditioner the matrix does not admit is replaced by a weaker one (never exit 2)
                reasons.append(self.solver.info["preconditioner_fallback"])
            if requested == "auto":
                self._auto_fallbacks(A, rng, reasons)
        self.choice_reason = "; ".join(reasons)
        if self.unused_params:
            self.choice_reason += (("; " if self.choice_reason else "")
                                   + f"--param {', '.join(self.unused_params)} not used by {self.method}")
        self.precond_used = getattr(self.solver, "precond_name", "none") if self.solver is not None else precond
        self.nrhs_used = nrhs
        self.problem_info = {**facts.as_dict(), "nrhs": nrhs, "systems": len(self.systems),
                             **({"input_storage": f"{self.densified}, read densely"} if self.densified else {}),
                             "dtype": ", ".join(self.input_dtypes),
                             "compute_dtype": ", ".join(sorted({str(compute_dtype(s.A, s.B)) for s in self.systems}))}
        self._publish_params()
        self.learn_omega = self.batch and self.method in STATIONARY and float(self.params.get("omega", 0.0)) == 0.0

    def _resolve_params(self, requested: str, method: str) -> dict[str, Any]:
        # auto's dense LAPACK least squares takes no parameters (and needs no registry entry to be chosen)
        spec_params = get_spec("solve", method).params if method in method_names("solve") else ()
        if requested != "auto":
            return get_spec("solve", method).resolve_params(list(self.request.params))
        given = get_spec("solve", "auto").resolve_params(list(self.request.params))
        explicit = {p.partition("=")[0].strip() for p in self.request.params}
        known = {p.name for p in spec_params}
        self.unused_params = sorted(explicit - known)
        values = {p.name: p.default for p in spec_params}
        values.update({k: v for k, v in given.items() if k in known and k in explicit})
        return values

    def _publish_params(self) -> None:
        """``resolved_params`` (the report's ``params``) and ``problem_info["setup"]`` for the method,
        preconditioner and solver in use now: only the keys that apply to them (a preconditioner's
        --param keys only with that preconditioner, ``maxiter`` only for iterative methods, as the
        value the method runs with). Called after setup and again after a fallback in compute."""
        precond = self.precond_used if self.method in KRYLOV else "none"
        applies = set(PRECOND_PARAMS.get(precond, ()))
        params = {k: v for k, v in self.params.items() if k not in ALL_PRECOND_PARAMS or k in applies}
        explicit = {p.partition("=")[0].strip() for p in self.request.params}
        ignored = sorted((explicit & ALL_PRECOND_PARAMS) - applies)
        note = f"--param {', '.join(ignored)} not used by --precond {precond}"
        if ignored and note not in self.choice_reason:
            self.choice_reason += ("; " if self.choice_reason else "") + note
        self.resolved_params = {**params, "precond": precond, "rtol": self.rtol}
        maxiter = self._maxiter()
        if maxiter is not None:
            self.resolved_params["maxiter"] = maxiter
        self.resolved_params.update({"rhs": self.rhs_label, "nrhs": self.nrhs_used})
        if self.batch:
            self.resolved_params.update({"recycle": self.recycle, "reorder": self.reorder})
        if self.solver is not None:
            self.problem_info["setup"] = self.solver.info

    def _maxiter(self) -> int | None:
        """The iteration cap the current method runs with (None: it does not iterate)."""
        if self.least_squares_fallback and self.fallback_maxiter:
            return self.fallback_maxiter
        return resolved_maxiter(self.method, [s.A.shape for s in self.systems], self.maxiter)

    def _precheck(self, method: str, facts: auto.Facts) -> None:
        """Methods that need a Hermitian matrix: a nonsymmetric one fails before any work."""
        if method in (*CG_FAMILY, "cholesky") and not facts.hermitian and facts.shape[0] == facts.shape[1]:
            what = "Cholesky" if method == "cholesky" else "CG"
            self.precheck = (Status.DIVERGED_NOT_SPD,
                             f"{what} needs a symmetric (Hermitian) positive definite matrix, and this one is "
                             f"not symmetric (max|A - A^H|/max|A| = {facts.extra.get('symmetry_error', 0):.2g}); "
                             "use --method gmres or bicgstab (iterative) or lu (direct)")
        elif method in ("minres", "ldl") and not facts.hermitian:
            raise UsageError(f"--method {method} needs a symmetric/Hermitian matrix "
                             f"(max|A - A^H|/max|A| = {facts.extra.get('symmetry_error', 0):.2g}); "
                             "use gmres, bicgstab or lu")

    def _prepare(self, method: str, precond: str, A, rng):
        """The setup of ``method``, timed and recorded as an attempt (``info.attempts`` when auto tried
        more than one method)."""
        start = time.perf_counter()
        if method == "lstsq":
            from matcli.methods.solve.dense_lstsq import prepare_lstsq

            solver = prepare_lstsq(A, params=self.params)
        else:
            solver = prepare_solver(method, A, params=self.params, precond=precond, symmetric=self.facts.hermitian,
                                    rng=rng)
        attempt: dict[str, Any] = {"method": method, "setup_wall_s": time.perf_counter() - start}
        if "factor_flops" in solver.info:
            attempt["factor_flops"] = solver.info["factor_flops"]
        self.attempts.append(attempt)
        return solver

    def _auto_fallbacks(self, A, rng, reasons: list[str]) -> None:
        """Auto's safety nets for a factorization that failed, decided inside setup so their cost is
        timed there: Cholesky that fails (a non-positive or zero pivot) -> LU; LU with an exactly zero
        pivot -> least squares (:meth:`_switch_to_least_squares`). Small pivots are not failures: the
        solve judges its refined solution (:func:`matcli.methods.solve.direct.solve_factored`)."""
        fact = getattr(self.solver, "factorization", None)
        if fact is not None and self.method == "cholesky" and fact.failure is not None:
            self._record_outcome(fact.failure.reason, fact.message)
            what = ("a non-positive pivot (not positive definite)" if fact.failure == Status.DIVERGED_NOT_SPD
                    else "a zero pivot")
            reasons.append(f"Cholesky met {what}, so LU instead")
            self.method = "lu"
            self.params = self._resolve_params("auto", "lu")
            self.solver = self._prepare("lu", "none", A, rng)
            fact = self.solver.factorization
        if fact is not None and fact.failure == Status.DIVERGED_SINGULAR:
            self._record_outcome(fact.failure.reason, fact.message)
            reasons.append("LU met an exactly zero pivot (the matrix is singular), so "
                           + self._switch_to_least_squares(A, rng))

    def _switch_to_least_squares(self, A, rng) -> str:
        """Replace the direct solver by auto's least-squares fallback; return the reason (what and how
        it is bounded). LSMR's iteration cap is proportional to the flops the direct attempts spent."""
        method, why = auto.least_squares_fallback(A)
        self.least_squares_fallback = True
        self.method = method
        self.params = self._resolve_params("auto", method)
        if method == "lsmr":
            flops = float(sum(a.get("factor_flops", 0.0) for a in self.attempts))
            self.fallback_maxiter, bound = auto.fallback_maxiter(A, flops, self.maxiter)
            why += f" (at most {self.fallback_maxiter} iterations: {bound})"
        self.solver = self._prepare(method, "none", A, rng)
        return why

    def _record_outcome(self, outcome: str, message: str = "", **facts: Any) -> None:
        """Note how the latest attempt of ``auto`` ended (``info.attempts`` in the report)."""
        if self.attempts:
            self.attempts[-1].update({"outcome": outcome, **({"message": message} if message else {}), **facts})

    def _judge_least_squares(self, result: Result, A, B) -> Result:
        """Status of auto's least-squares fallback on a singular square system: a solution of A x = b
        (consistent b) keeps its positive status; a least-squares answer that is not one is
        ``least_squares_only`` (exit 3 under --strict)."""
        if self.method == "lstsq" and result.status == Status.CONVERGED_DIRECT:
            from matcli.methods.solve.direct import RATIO_THRESHOLD, lapack_ratio

            X = np.asarray(result.outputs["x"]).reshape(A.shape[1], -1)
            ratio = float(lapack_ratio(A, X, np.asarray(B).reshape(A.shape[0], -1)).max(initial=0.0))
            result.metrics["lapack_ratio"] = ratio
            if ratio < RATIO_THRESHOLD:
                result.message = ("A is singular and b is in its range: x is the minimum-norm solution "
                                  f"(LAPACK ratio {ratio:.3g} < {RATIO_THRESHOLD:g})")
                return result
        elif result.status != Status.CONVERGED_ATOL:
            return result
        # LSMR met its least-squares test, or the LAPACK least-squares solution leaves a residual no
        # rounding explains, not ||b - A x|| <= rtol ||b||: the system asked for has no solution, which
        # a caller reading only "converged" must be able to tell (--strict: exit 3)
        test = "LAPACK least squares" if self.method == "lstsq" else "||A^H r|| test met"
        result.status = Status.LEAST_SQUARES_ONLY
        result.message = (f"A is singular and A x = b has no solution: x is the minimum-norm least-squares "
                          f"solution (relative residual {result.metrics['relative_residual']:.3g}, {test})")
        return result

    def _timed_solve(self, system: System, callback: Callback) -> Result:
        maxiter = self._maxiter()
        start = time.perf_counter()
        result = self.solver.solve(system.A, system.B, rtol=self.rtol, maxiter=maxiter, callback=callback)
        facts = {"solve_wall_s": time.perf_counter() - start}
        if self.method not in DIRECT and self.method != "lstsq":
            facts["iterations"] = result.iterations
            if maxiter is not None:
                facts["maxiter"] = int(maxiter)
        self._record_outcome(result.status.reason, result.message, **facts)
        return result

    # -------------------------------------------------------------- compute
    def compute(self, callback: Callback) -> Result:
        if self.precheck is not None:
            status, message = self.precheck
            return Result(status=status, message=message, info={"checked": "symmetry before iterating"})
        if self.batch:
            return self._compute_batch(callback)
        system = self.systems[0]
        result = self._timed_solve(system, callback)
        if "preconditioner_fallback" in result.info:  # replaced during the solve (MINRES: found indefinite)
            self.precond_used = self.solver.precond_name
            self.choice_reason += ("; " if self.choice_reason else "") + result.info["preconditioner_fallback"]
        if (self.request.method == "auto" and self.method in CG_FAMILY
                and result.status == Status.DIVERGED_NOT_SPD):
            # The Lanczos test can miss indefiniteness; CG's curvature check cannot.
            self.choice_reason += "; CG met negative curvature (indefinite), so GMRES with ILU instead"
            self.method = "gmres"
            self.params = self._resolve_params("auto", "gmres")
            self.solver = self._prepare("gmres", "ilu", system.A, self.rng)
            self.precond_used = self.solver.precond_name
            result = self._timed_solve(system, callback)
        if (self.request.method == "auto" and self.method in DIRECT
                and result.status == Status.DIVERGED_SINGULAR):
            # the factors exist but the refined solution is no solution of A x = b (not backward stable,
            # or dominated by near-null directions): A is singular to working precision for this b
            direct_method = self.method
            why = self._switch_to_least_squares(system.A, self.rng)
            self.choice_reason += (f"; {direct_method.upper() if direct_method == 'lu' else direct_method.title()} "
                                   f"found A singular to working precision for this right-hand side, so {why}")
            result = self._timed_solve(system, callback)
        if self.least_squares_fallback:
            result = self._judge_least_squares(result, system.A, system.B)
        if self.request.method == "auto" and len(self.attempts) > 1:
            result.info["attempts"] = self.attempts
        # the setup facts (factorization, preconditioner) are reported once, in problem.setup
        for key, value in self.solver.info.items():
            if key in result.info and _same(result.info[key], value):
                del result.info[key]
        self._publish_params()
        return result

    def _compute_batch(self, callback: Callback) -> Result:
        from matcli.jobs.solve_batch import SequencePlan, batch_result, solve_sequence

        plan = SequencePlan(self.method, self.resolved_params["precond"], self.params, self.facts.hermitian,
                            self.rtol, self._maxiter(), self.recycle, self.learn_omega)
        ordered = [self.systems[i] for i in self.order]
        if self.backend.name == "local":
            sequences = [solve_sequence(plan, ordered, self.solver, callback)]
        else:
            from matcli.jobs.solve_remote import chunk_inputs, solve_chunk_input

            # The tasks name their systems (the workers read them) and carry the plan and the
            # chunks' generators: a lost worker's chunks are recomputed with the same answer.
            chunks = chunk_inputs(ordered, list(self.request.inputs), self.rhs_spec, self.backend.parallelism,
                                  self.rng)
            sequences = self.backend.map(solve_chunk_input, chunks, plan=plan)
            if self.solver is None:
                # Nothing was set up here (each chunk set up on its worker): the report's setup
                # is the first chunk's, which set up from the batch's first matrix.
                self.precond_used = sequences[0].precond
                self._publish_params()
                self.problem_info["setup"] = sequences[0].setup
        return batch_result(sequences, callback)

    # ------------------------------------------------------------------ plot
    def draw(self, ax, result: Result) -> str:
        from matcli import plots

        n = self.systems[0].A.shape[1]
        precond = self.resolved_params.get("precond", "none")
        where = f"{len(self.systems)} systems, " if self.batch else ""
        ylabel, target = "true relative residual ||b - Ax|| / ||b||", f"--rtol {self.rtol:g}"
        drawn = self.batch and plots.per_system(ax, result, "residual", ylabel, target=self.rtol,
                                                target_label=target)
        if not drawn and not plots.series(ax, result, ("residual",), ylabel, target=self.rtol,
                                          target_label=target):
            plots.no_history(ax, f"{self.method} is a direct method: no iterations to plot "
                                 f"(backward error {result.metrics.get('backward_error', float('nan')):.1e})")
        return f"matcli solve {self.method} (precond {precond}, {where}n = {n}): {result.status.reason}"
