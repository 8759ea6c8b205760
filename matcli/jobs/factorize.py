"""Adapter of ``matcli factorize``: read the matrix (and the previous SVD for updates), check it
fits the chosen kind, resolve ``auto``, and call the kernel.

Options (``request.options``, a :class:`~matcli.jobs.options.FactorizeOptions`): ``kind`` (svd|nmf|cur|qr|lu|cholesky|ldl|eig), ``rank`` (an
integer, ``auto``, or None), ``tol``, ``power_iters``, ``oversample``, ``maxiter`` (None = default),
``update`` (previous factors), ``append_rows`` / ``append_cols`` (matrix specs) or ``update_lowrank``
(``"X_spec,Y_spec"``: the term ``X Y^H`` added to the matrix).

Every kind computes in double precision: the matrix (and appended rows/columns) is converted once,
after reading, to float64, or complex128 when complex (:func:`matcli.methods.solve.system.as_matrix`,
the solve family's normaliser); the report gives ``problem.dtype`` (as read) and
``problem.compute_dtype``. Only ``--param precision=float32`` of the randomized SVDs iterates in
single precision, and says so.

Edge cases, decided against the peers:

* Empty matrices (a zero dimension) are an input error (exit 4) for every kind, as in scipy's
  ``svds`` and scikit-learn's NMF / ``randomized_svd`` (``check_array``); LAPACK's quick return has
  nothing to write.
* ``--rank`` for SVDs: exactly that many triplets or a negative status. Randomized, block Krylov,
  dense, PROPACK accept ``rank <= min(m, n)`` (PROPACK's full SVD, as in ``svds``); Lanczos falls back
  to the dense SVD at ``rank = min(m, n)`` (``info.dense_fallback``); ARPACK refuses what ``svds``
  refuses (``rank >= min(m, n)``, complex ``rank > min(m, n) - 2``) with exit 2 naming the limit.
* NMF: ``--rank`` may exceed ``min(m, n)`` (scikit-learn accepts it; ``--param init=auto`` then
  starts from random factors, ``nndsvd``/``nndsvda`` are refused there as in scikit-learn); complex
  input is refused (exit 4): NMF is defined for real nonnegative matrices.
* Complex input: every other kind computes in complex128 (SVDs, CUR, QR, LU, Cholesky/LDL^H of a
  Hermitian matrix, eig).
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import scipy.sparse as sp

from matcli.core.errors import InputError, UsageError
from matcli.core.registry import get_spec
from matcli.core.result import Callback, Result
from matcli.jobs.base import FamilyJob
from matcli.methods.factorize.specs import KINDS, METHODS
from matcli.methods.solve.system import as_matrix

#: Arrays every method of a kind writes (some write more: NMF's weights, sparse LU's Q). Cholesky
#: is missing: its dense method writes L alone, which a MatrixMarket file can hold.
FIRST_ARRAYS = {"svd": ("U", "s", "Vt"), "nmf": ("W", "H"), "cur": ("C", "U", "R", "col_indices", "row_indices"),
                "qr": ("Q", "R", "P"), "lu": ("L", "U", "P"), "ldl": ("L", "D", "P"), "eig": ("w", "V"),
                "rpca": ("U", "s", "Vt", "S")}

#: What the permutation vectors of each kind mean (attribute ``permutation_convention`` of the output
#: file); "PQ" is LU with a column permutation too (sparse LU).
PERMUTATION_CONVENTIONS = {
    "qr": "A[:, P] = Q @ R; P holds 0-based column indices",
    "lu": "A[P] = L @ U; P holds 0-based row indices",
    "lu-PQ": "A[P][:, Q] = L @ U; P holds 0-based row indices, Q 0-based column indices",
    "cholesky": "A[P][:, P] = L @ L^H; P holds 0-based indices (a symmetric permutation)",
    "ldl": "A = L @ D @ L^H; L[P] is unit lower triangular; P holds 0-based row indices",
}

#: Sparse inputs with at most this many entries (m * n) may be densified by dense-by-nature methods.
DENSE_LIMIT = 25_000_000
#: ``auto`` picks the dense SVD when the matrix has at most this many entries and min(m, n) <= 1500.
SMALL_SVD_ENTRIES = 2_000_000
SYMMETRY_TOL = 1e-12

#: SVD methods that run on row blocks.
ROW_BLOCK_METHODS = ("auto", "tsqr", "randomized", "block-krylov", "lanczos")
#: ``auto`` on row blocks picks TSQR (exact) up to this many columns, the randomized SVD beyond:
#: measured on 40000-row HDF5 matrices streamed in one process (rank 10, q = 4, loaded machine),
#: TSQR took 1.0x the randomized SVD's time at 200 columns, 0.8-1.0x at 500, 1.5-2.1x at 1000.
AUTO_TSQR_COLUMNS = 500

#: Typed options each method accepts; any other option given on the command line is an error.
_ACCEPTS: dict[str, set[str]] = {
    "svd-randomized": {"rank", "tol", "power_iters", "oversample"},
    "svd-block-krylov": {"rank", "power_iters", "oversample"},
    "svd-lanczos": {"rank", "tol", "maxiter"},
    "svd-arpack": {"rank", "tol", "maxiter"},
    "svd-propack": {"rank", "tol"},
    "svd-dense": {"rank", "tol"},
    "svd-tsqr": {"rank", "tol"},
    "svd-update": {"rank", "tol", "power_iters", "update", "append_rows", "append_cols", "update_lowrank"},
    "nmf-hals": {"rank", "tol", "maxiter"},
    "nmf-mu": {"rank", "tol", "maxiter"},
    "nmf-robust": {"rank", "tol", "maxiter"},
    "cur-leverage": {"rank", "tol", "power_iters", "oversample"},
    "cur-pivoted-qr": {"rank", "tol", "power_iters", "oversample"},
    "qr-dense": set(),
    "lu-dense": set(),
    "lu-sparse": set(),
    "cholesky-dense": set(),
    "cholesky-sparse": set(),
    "ldl-dense": set(),
    "eig-dense": set(),
    "eig-arpack": {"rank", "tol", "maxiter"},
    "rpca-ialm": {"tol", "maxiter"},
    "rpca-subgradient": {"rank", "tol", "maxiter"},
}
_OPTION_FLAGS = {"rank": "--rank", "tol": "--tol", "power_iters": "--power-iters", "oversample": "--oversample",
                 "maxiter": "--maxiter", "update": "--update", "append_rows": "--append-rows",
                 "append_cols": "--append-cols", "update_lowrank": "--update-lowrank"}


class Job(FamilyJob):
    """``factorize`` job: one matrix in, named factors out."""

    family = "factorize"

    def __init__(self, request):
        super().__init__(request)
        self.A = None
        self.kind: str = request.options.kind
        self.previous: dict[str, np.ndarray] | None = None
        self.appended = None
        #: (X, Y) of --update-lowrank
        self.lowrank: tuple | None = None
        self._kernel: Callable[..., Result] | None = None
        self._kwargs: dict[str, Any] = {}
        self._hermitian: bool | None = None
        self.input_dtype: str | None = None
        #: A as row blocks (--method tsqr, --backend dask, or an SVD input beyond half the memory
        #: budget): jobs/factorize_remote.py; rows of finish's dense residual temporaries
        self.remote = None
        self.chunk_rows = 4096
        self.stream_reason: str | None = None

    # ----------------------------------------------------------------- read
    def output_arrays(self) -> tuple[str, ...] | None:
        return FIRST_ARRAYS.get(self.kind)

    def read(self) -> None:
        from matcli.io.load import read_dense, read_matrix
        from matcli.io.spec import parse_spec

        opts = self.request.options
        changes = [opts.append_rows, opts.append_cols, opts.update_lowrank]
        if sum(change is not None for change in changes) > 1:
            raise UsageError("give only one of --append-rows, --append-cols and --update-lowrank per update")
        if any(changes) and not opts.update:
            raise UsageError("--append-rows/--append-cols/--update-lowrank need --update previous.h5")
        if opts.update and self.kind != "svd":
            raise UsageError("--update applies to --kind svd only")
        if opts.update and not any(changes):
            raise UsageError("--update needs --append-rows R, --append-cols C or --update-lowrank X,Y")
        terms = _lowrank_specs(opts.update_lowrank) if opts.update_lowrank else None
        if self._reads_row_blocks():
            self._read_row_blocks()
            return
        self.A = read_matrix(self.request.inputs[0])
        if opts.update:
            spec = parse_spec(opts.update)
            prefix = (spec.internal or "").rstrip("/")
            self.previous = {name: read_dense(f"{spec.path}:{prefix}/{name}") for name in ("U", "s", "Vt")}
        extra = opts.append_rows or opts.append_cols
        if extra:
            self.appended = read_matrix(extra)
        self.input_dtype = str(self.A.dtype)
        for name, spec_text in (("A", self.request.inputs[0]), ("appended", extra)):
            try:
                if getattr(self, name) is not None:
                    setattr(self, name, as_matrix(getattr(self, name)))
            except ValueError as exc:
                raise InputError(spec_text, str(exc)) from None
        if terms:
            self.lowrank = tuple(_read_term(spec) for spec in terms)

    def _reads_row_blocks(self) -> bool:
        """Row blocks for ``--backend dask`` and ``--method tsqr``, and for an SVD (auto, randomized,
        block Krylov) of an HDF5 / Zarr / .npy input whose entries at double precision take more than
        half of what the memory budget leaves this process: the in-memory path would hold A and a
        working copy, so it streams instead."""
        from matcli.core.memory import mib
        from matcli.core.timing import resident_memory_bytes
        from matcli.io.guard import current_policy
        from matcli.io.row_blocks import row_source
        from matcli.io.spec import parse_spec

        request = self.request
        if request.backend != "local" or request.method == "tsqr":
            return True
        if self.kind != "svd" or request.method not in ROW_BLOCK_METHODS or request.options.update:
            return False
        if parse_spec(request.inputs[0]).kind not in ("npy", "hdf5", "zarr"):
            return False
        try:
            source = row_source(request.inputs[0])
        except InputError:
            return False  # the in-memory reader says what is wrong with it
        itemsize = 16 if source.dtype.kind == "c" else 8
        stored = source.nnz * (itemsize + (8 if source.layout == "csr" else 0))
        free = current_policy().budget - resident_memory_bytes()
        if source.layout == "vector" or 2 * stored <= free:
            return False
        self.stream_reason = (f"A takes {mib(stored)} at double precision, more than half the memory budget "
                              f"leaves this process ({mib(free)}): read in row blocks")
        return True

    def _read_row_blocks(self) -> None:
        """A stays in its file; workers (or this process, in turn) read it in row blocks. Only the SVD
        runs this way (TSQR or the randomized SVD)."""
        from matcli.io.row_blocks import row_source

        what = "--backend " + self.request.backend if self.request.backend != "local" else "--method tsqr"
        if self.kind != "svd" or self.request.method not in ROW_BLOCK_METHODS or self.request.options.update:
            raise UsageError(f"{what} runs --kind svd --method tsqr, randomized, block-krylov or lanczos (the SVD "
                             "of a matrix read in row blocks); other factorizations run in this process "
                             "(drop --backend)")
        self.remote = row_source(self.request.inputs[0])
        if self.remote.layout == "vector":
            raise InputError(self.request.inputs[0], f"{what} factorizes a 2-D matrix, got a vector")
        self.input_dtype = str(self.remote.dtype)

    @property
    def shape(self) -> tuple[int, int]:
        return (self.remote.n_rows, self.remote.n_cols) if self.remote is not None else self.A.shape

    # ------------------------------------------------------------- validate
    def validate(self) -> None:
        if self.remote is not None:
            self._validate_row_blocks()
            return
        opts = self.request.options
        path = self.request.inputs[0]
        A = self.A
        m, n = A.shape
        if m == 0 or n == 0:
            raise InputError(path, f"matrix is empty ({m}x{n})")
        if self.kind not in KINDS:
            raise UsageError(f"unknown --kind {self.kind!r}; choose one of {', '.join(KINDS)}")
        self.problem_info = {"shape": [m, n], "dtype": self.input_dtype or str(A.dtype),
                             "compute_dtype": str(A.dtype),
                             "storage": "sparse" if sp.issparse(A) else "dense",
                             "nnz": int(A.nnz) if sp.issparse(A) else int(np.count_nonzero(A))}
        if self.kind in ("cholesky", "ldl", "eig") and m != n:
            raise InputError(path, f"--kind {self.kind} needs a square matrix, got {m}x{n}")
        if self.kind == "lu" and sp.issparse(A) and m != n and self.request.method == "sparse":
            raise InputError(path, f"sparse LU needs a square matrix, got {m}x{n}")
        if self.kind in ("cholesky", "ldl", "eig"):
            from matcli.core.properties import symmetry_error

            err = symmetry_error(A)
            self.problem_info["symmetry_error"] = err
            self._hermitian = err <= SYMMETRY_TOL
            if self.kind in ("cholesky", "ldl") and not self._hermitian:
                raise InputError(path, f"--kind {self.kind} needs a symmetric/Hermitian matrix "
                                       f"(max|A - A^H| / max|A| = {err:.2e}); try --kind lu")
        if self.kind == "nmf":
            if np.iscomplexobj(A):
                raise InputError(path, "NMF needs a real nonnegative matrix, got complex values")
            values = A.data if sp.issparse(A) else A
            if values.size and values.min() < 0:
                raise InputError(path, f"NMF needs a nonnegative matrix (smallest entry {values.min():.3g})")
        if opts.update:
            self._validate_update()

    def _validate_row_blocks(self) -> None:
        path = self.request.inputs[0]
        m, n = self.shape
        if m == 0 or n == 0:
            raise InputError(path, f"matrix is empty ({m}x{n})")
        compute = "complex128" if self.remote.dtype.kind == "c" else "float64"
        self.problem_info = {"shape": [m, n], "dtype": self.input_dtype, "compute_dtype": compute,
                             "storage": f"{self.remote.layout} row blocks", "nnz": self.remote.nnz}
        if self.stream_reason:
            self.problem_info["streamed"] = self.stream_reason

    def _validate_update(self) -> None:
        opts = self.request.options
        U, s, Vt = (self.previous[k] for k in ("U", "s", "Vt"))
        prev_path = opts.update
        m, n = self.A.shape
        if s.ndim != 1 or U.ndim != 2 or Vt.ndim != 2 or U.shape != (m, s.size) or Vt.shape != (s.size, n):
            raise InputError(prev_path, f"previous SVD has U {U.shape}, s {s.shape}, Vt {Vt.shape}; "
                                        f"expected U (m x k), s (k), Vt (k x n) of the {m}x{n} matrix")
        #: set by --method auto when recomputing the new matrix's SVD costs no more than updating
        self._recompute: str | None = None
        if self.lowrank is not None:
            (X, x_spec), (Y, y_spec) = zip(self.lowrank, _lowrank_specs(opts.update_lowrank))
            if X.shape[0] != m:
                raise InputError(x_spec, f"--update-lowrank X has {X.shape[0]} rows, the matrix has {m} (X: m x q)")
            if Y.shape[0] != n:
                raise InputError(y_spec, f"--update-lowrank Y has {Y.shape[0]} rows, the matrix has {n} columns "
                                         "(Y: n x q)")
            if X.shape[1] != Y.shape[1]:
                raise InputError(y_spec, f"--update-lowrank Y has {Y.shape[1]} columns, X has {X.shape[1]} "
                                         "(X Y^H needs the same q)")
            return
        extra_path = opts.append_rows or opts.append_cols
        p, q = self.appended.shape
        if opts.append_rows and q != n:
            raise InputError(extra_path, f"appended rows have {q} columns, the matrix has {n}")
        if opts.append_cols and p != m:
            raise InputError(extra_path, f"appended columns have {p} rows, the matrix has {m}")

    # ---------------------------------------------------------------- setup
    def setup(self, rng: np.random.Generator) -> None:
        self.rng = rng
        method = self.request.method
        if method == "auto":
            method, self.choice_reason = self._auto()
        else:
            self.choice_reason = "requested with --method"
        name = f"{self.kind}-{method}"
        if method not in METHODS[self.kind]:
            raise UsageError(f"--kind {self.kind} has no method {method!r}; choose one of "
                             f"{', '.join(('auto',) + METHODS[self.kind])}")
        spec = get_spec("factorize", name)
        self.method = name
        self._check_options(name)
        params = spec.resolve_params(list(self.request.params))
        self._kernel = spec.load()
        self._kwargs = getattr(self, "_setup_" + self.kind)(method, params)
        shown = {**self._shown_options(name), **params, **{k: v for k, v in self._kwargs.items() if _jsonable(v)}}
        # an option left None does not apply here (--tol with a fixed rank, ...); rank None is --rank auto
        self.resolved_params = {k: v for k, v in shown.items() if v is not None or k == "rank"}

    def _auto(self) -> tuple[str, str]:
        if self.remote is not None:
            return self._auto_row_blocks()
        A, opts = self.A, self.request.options
        m, n = A.shape
        sparse = sp.issparse(A)
        if self.kind == "svd":
            if opts.update:
                return self._auto_update()
            if m * n <= SMALL_SVD_ENTRIES and min(m, n) <= 1500:
                return "dense", f"the {m}x{n} matrix is small enough for an exact dense SVD"
            if opts.rank == "auto":
                return "randomized", "--rank auto needs the adaptive randomized range finder"
            if sparse:
                return "lanczos", (f"the {m}x{n} sparse matrix is large: Lanczos bidiagonalization needs the "
                                   "fewest products with A and certifies every triplet by its residual")
            return "block-krylov", (f"the {m}x{n} dense matrix is large: randomized block Krylov reaches a given "
                                    "accuracy in the fewest passes over A (each pass serves a whole block)")
        if self.kind == "nmf":
            return "hals", "HALS converges faster than multiplicative updates at the same cost per sweep"
        if self.kind == "cur":
            return "pivoted-qr", "pivoted QR on the singular vectors is deterministic and near-optimal"
        if self.kind in ("lu", "cholesky"):
            if sparse and m == n:
                return "sparse", "the input is sparse: a sparse factorization keeps the fill low"
            if sparse:
                return "dense", "sparse LU needs a square matrix: dense LU of the rectangular matrix"
            return "dense", "the input is dense"
        if self.kind == "rpca":
            return "ialm", ("principal component pursuit by inexact ALM needs no rank and met --rtol on every "
                            "bench_robust.py workload, 1.5-20x faster than the sub-gradient method")
        if self.kind == "eig":
            if opts.rank is not None:
                return "arpack", "--rank k asks for a few eigenpairs: ARPACK"
            return "dense", "no --rank: full dense eigendecomposition"
        return "dense", f"{self.kind} has only a dense method"

    def _check_options(self, name: str) -> None:
        accepted = _ACCEPTS[name]
        for key, flag in _OPTION_FLAGS.items():
            if getattr(self.request.options, key) is not None and key not in accepted:
                raise UsageError(f"{flag} does not apply to --kind {self.kind} --method {name.split('-', 1)[1]}")

    def _shown_options(self, name: str) -> dict[str, Any]:
        return {k: getattr(self.request.options, k) for k in sorted(_ACCEPTS[name])
                if k not in ("update", "append_rows", "append_cols", "update_lowrank")}

    def _rank(self, *, allow_auto: bool, required: bool = True, bounded: bool = True) -> int | str | None:
        """``--rank`` as an integer (or ``auto``); ``bounded``: at most min(m, n) (NMF is not bounded:
        a nonnegative factorization can need more components than the rank, as scikit-learn allows)."""
        value = self.request.options.rank
        m, n = self.shape
        if value is None:
            if required:
                raise UsageError(f"--kind {self.kind} needs --rank k" + (" or --rank auto" if allow_auto else ""))
            return None
        if str(value).strip().lower() == "auto":
            if not allow_auto:
                raise UsageError(f"--rank auto is not available for {self.method}; give an integer rank")
            return "auto"
        try:
            k = int(value)
        except ValueError:
            raise UsageError(f"--rank {value}: expected a positive integer or 'auto'") from None
        if k < 1 or (bounded and k > min(m, n)):
            raise UsageError(f"--rank {k} must be between 1 and min(m, n) = {min(m, n)}")
        return k

    def _densify_check(self) -> None:
        m, n = self.A.shape
        if sp.issparse(self.A) and m * n > DENSE_LIMIT:
            raise UsageError(f"{self.method} densifies the {m}x{n} sparse matrix ({m * n:.2e} entries > "
                             f"{DENSE_LIMIT:.1e}); use a sparse or randomized method")

    def _full_svd_check(self, rank: int) -> None:
        """A Lanczos method asked for more triplets than it computes falls back to the dense SVD
        (its ``U`` and ``Vt`` hold as many numbers as the dense matrix); refuse when that is too big."""
        m, n = self.A.shape
        if sp.issparse(self.A) and m * n > DENSE_LIMIT:
            raise UsageError(f"--rank {rank} of the {m}x{n} matrix is beyond {self.method}'s limit and needs the "
                             f"dense SVD ({m * n:.2e} entries > {DENSE_LIMIT:.1e}); ask for fewer triplets")

    def _forbid_params(self, names: set[str], scope: str) -> None:
        given = {pair.partition("=")[0].strip() for pair in self.request.params}
        for name in sorted(given & names):
            raise UsageError(f"--param {name} applies to {scope} only")

    def _tol(self, default: float) -> float:
        tol = self.request.options.tol
        if tol is None:
            return default
        if not 0.0 <= float(tol) < 1.0:
            raise UsageError(f"--tol {tol}: must be a finite number in [0, 1)")
        return float(tol)

    def _setup_svd(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        opts = self.request.options
        if method == "tsqr":
            return self._setup_tsqr()
        if self.remote is not None:  # read() let only the row-block methods through
            if method == "lanczos":
                return self._setup_blocked_lanczos(params)
            return self._setup_blocked_randomized(method)
        m, n = self.A.shape
        if method == "update":
            return self._setup_update(params)
        if method == "dense":
            self._densify_check()
            rank = self._rank(allow_auto=True, required=False)
            tol = opts.tol
            if rank == "auto":
                return {"rank": None, "tol": self._tol(1e-2)}
            if rank is not None and tol is not None:
                raise UsageError("--tol applies to svd-dense only with --rank auto")
            return {"rank": rank, "tol": tol}
        if method == "lanczos":
            rank = self._rank(allow_auto=False)
            if rank >= min(m, n):
                self._full_svd_check(rank)
            tol = self._tol(1e-8)
            if not 1e-14 <= tol < 1:
                raise UsageError(f"--tol {tol:g}: --method lanczos needs 1e-14 <= tol < 1 (a relative residual)")
            if rank >= min(m, n):  # the full SVD by gesdd: no basis, no iterations
                return {"rank": rank, "tol": tol}
            # the kernel's defaults, resolved here so that the report gives the values used
            basis = min(params["basis"] or max(3 * rank, rank + 30), min(m, n))
            return {"rank": rank, "tol": tol, "basis": basis, "maxiter": opts.maxiter or 50 * basis}
        if method in ("arpack", "propack"):
            rank = self._rank(allow_auto=False)
            from matcli.methods.factorize.tsvd import max_solver_rank

            # what svds itself accepts: ARPACK k < min(m, n) (complex: k <= min(m, n) - 2, the
            # non-Hermitian driver's N - 2), PROPACK k <= min(m, n)
            limit = max_solver_rank(m, n, method, np.iscomplexobj(self.A))
            if rank > limit:
                kind = "a complex" if np.iscomplexobj(self.A) else "this"
                raise UsageError(f"svds ({method.upper()}) on {kind} {m}x{n} matrix needs --rank <= {limit}; "
                                 "use --method propack or dense")
            kwargs = {"rank": rank, "solver": method, "tol": self._tol(0.0)}
            if method == "arpack":
                kwargs["maxiter"] = opts.maxiter or 10 * min(m, n)  # svds' default, resolved
            return kwargs
        rank = self._rank(allow_auto=method == "randomized")
        if rank == "auto":
            if opts.oversample is not None:
                raise UsageError("--oversample does not apply with --rank auto (see --param block_size)")
            tol = self._tol(1e-2)
            if not 1e-7 <= tol < 1:
                raise UsageError(f"--tol {tol:g}: --rank auto needs 1e-7 <= tol < 1 (the error indicator "
                                 "cannot certify smaller errors)")
            self._forbid_params({"precision", "stop_tol"}, "a fixed --rank, not --rank auto")
            self._kernel = _load("rsvd", "adaptive_svd")
            power = opts.power_iters
            return {"tol": tol, "block_size": params["block_size"], "power_iters": 1 if power is None else power,
                    "max_rank": params["max_rank"] or None}
        if opts.tol is not None:
            raise UsageError("--tol applies to the randomized SVD only with --rank auto (see --param stop_tol)")
        self._forbid_params({"block_size", "max_rank"}, "--rank auto")
        power = opts.power_iters
        oversample = opts.oversample
        return {"rank": rank, "oversample": 10 if oversample is None else oversample,
                "power_iters": 4 if power is None else power, "stop_tol": params["stop_tol"],
                "precision": params["precision"]}

    def _update_rank(self) -> int:
        rank = self._rank(allow_auto=False, required=False)
        return self.previous["s"].size if rank is None else rank

    def _auto_update(self) -> tuple[str, str]:
        """``--update`` under ``--method auto``: update, unless recomputing the new matrix's SVD costs
        no more by the flop estimates of :mod:`matcli.methods.factorize.update_cost` (a lower bound
        for the recomputation); the estimates go to the report (``problem.update_cost``)."""
        from matcli.methods.factorize import update_cost
        from matcli.methods.factorize.update import default_complement_rank

        opts = self.request.options
        if self.lowrank is not None:
            return self._auto_lowrank()
        A, E = self.A, self.appended
        m, n = A.shape
        rows = bool(opts.append_rows)
        p = E.shape[0] if rows else E.shape[1]
        rank = self._update_rank()
        params = get_spec("factorize", "svd-update").resolve_params(list(self.request.params))
        complement = params["complement_rank"] or default_complement_rank(p, rank)
        sparse = sp.issparse(A) or sp.issparse(E)
        new_m, new_n = (m + p, n) if rows else (m, n + p)
        nnz_E = int(E.nnz) if sp.issparse(E) else E.size
        nnz = (int(A.nnz) if sp.issparse(A) else A.size) + nnz_E if sparse else new_m * new_n
        problem = update_cost.Problem(m=new_m, n=new_n, nnz=nnz, p=p, length=n if rows else m,
                                      nnz_appended=nnz_E, k=int(self.previous["s"].size), rank=rank, l=complement,
                                      power_iters=1 if opts.power_iters is None else opts.power_iters,
                                      sparse=sparse)
        method, reason, estimates = update_cost.choose(problem)
        self.problem_info["update_cost"] = {**estimates, "chosen": method}
        if method != "update":
            self._recompute = method
            stack = sp.vstack if rows else sp.hstack
            self.A = stack([A, E], format="csr") if sparse else (np.vstack if rows else np.hstack)([A, E])
            self.problem_info.update(shape=list(self.A.shape), nnz=int(nnz_E + self.problem_info["nnz"]))
        return "update", reason

    def _auto_lowrank(self) -> tuple[str, str]:
        """``--update-lowrank`` under ``--method auto``: the same comparison, for ``A + X Y^H``. Recomputing
        needs the sum, which is dense (``X Y^H`` is): its SVD is costed as for a dense matrix, and the sum
        is formed only when that is chosen (and fits the dense limit)."""
        from matcli.methods.factorize import update_cost
        from matcli.methods.factorize.update import default_complement_rank

        opts = self.request.options
        m, n = self.A.shape
        q = self.lowrank[0].shape[1]
        rank = self._update_rank()
        params = get_spec("factorize", "svd-update").resolve_params(list(self.request.params))
        # one complement on each side: counted as q vectors of length m + n
        problem = update_cost.Problem(m=m, n=n, nnz=m * n, p=q, length=m + n, nnz_appended=(m + n) * q,
                                      k=int(self.previous["s"].size), rank=rank,
                                      l=params["complement_rank"] or default_complement_rank(q, rank),
                                      power_iters=1 if opts.power_iters is None else opts.power_iters, sparse=False)
        method, reason, estimates = update_cost.choose(problem)
        self.problem_info["update_cost"] = {**estimates, "chosen": method}
        if method == "update":
            return "update", reason
        if m * n > DENSE_LIMIT:
            self.problem_info["update_cost"]["chosen"] = "update"
            return "update", (f"--update-lowrank: recomputing would form the dense {m}x{n} sum A + X Y^H "
                              f"({m * n:.2e} entries > {DENSE_LIMIT:.1e}): updated")
        X, Y = self.lowrank
        dense = self.A.toarray() if sp.issparse(self.A) else self.A
        self.A = dense + (X.toarray() if sp.issparse(X) else X) @ (Y.toarray() if sp.issparse(Y) else Y).conj().T
        self._recompute = method
        self.problem_info.update(storage="dense", nnz=int(np.count_nonzero(self.A)))
        return "update", reason

    def _setup_update(self, params: dict[str, Any]) -> dict[str, Any]:
        opts = self.request.options
        rank = self._update_rank()
        if self._recompute is not None:
            return self._setup_recompute(rank)
        return {"U": self.previous["U"], "s": self.previous["s"], "Vt": self.previous["Vt"],
                "rows": self.appended if opts.append_rows else None,
                "cols": self.appended if opts.append_cols else None, "lowrank": self.lowrank,
                "rank": rank, "complement_rank": params["complement_rank"],
                "power_iters": 1 if opts.power_iters is None else opts.power_iters, "tol": self._tol(0.0)}

    def _setup_recompute(self, rank: int) -> dict[str, Any]:
        """The fresh SVD of the new matrix (``self.A`` already holds it) that auto chose over the update:
        its own method name (and so its own certificate rules), kernel and resolved options."""
        self.method = f"svd-{self._recompute}"
        self._kernel = get_spec("factorize", self.method).load()
        m, n = self.A.shape
        if self._recompute == "dense" or rank >= min(m, n):
            self._full_svd_check(rank)
            return {"rank": rank, "tol": None} if self._recompute == "dense" else {"rank": rank, "tol": 1e-8}
        # --tol means the same for both: the accepted relative triplet residual (0: the sqrt(eps) floor)
        tol = max(self._tol(0.0) or 1e-8, 1e-14)
        basis = min(max(3 * rank, rank + 30), min(m, n))
        return {"rank": rank, "tol": tol, "basis": basis, "maxiter": self.request.options.maxiter or 50 * basis}

    def _setup_nmf(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        from matcli.methods.factorize.nmf import resolve_init

        rank = self._rank(allow_auto=False, bounded=False)
        maxiter = self.request.options.maxiter
        try:
            init = resolve_init(params["init"], rank, self.A.shape)
        except ValueError as exc:
            raise UsageError(f"--param {exc}") from None
        kwargs = {"rank": rank, "init": init, "tol": self._tol(1e-4),
                  "maxiter": 500 if maxiter is None else maxiter}
        if method == "robust":
            kwargs.update(level=params["level"], sigma_scale=params["sigma_scale"])
            if params["level"] == "entry":
                self._densify_check()
        return kwargs

    def _setup_cur(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        opts = self.request.options
        rank = self._rank(allow_auto=True)
        tol = opts.tol
        if rank != "auto" and tol is not None:
            raise UsageError("--tol applies to cur only with --rank auto")
        kwargs = {"rank": None if rank == "auto" else rank, "tol": self._tol(1e-2) if rank == "auto" else None,
                  "extra": params["extra"],
                  "power_iters": 4 if opts.power_iters is None else opts.power_iters,
                  "oversample": 10 if opts.oversample is None else opts.oversample}
        if method == "leverage":
            kwargs["sampling"] = params["sampling"]
        return kwargs

    def _setup_qr(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        self._densify_check()
        return {"pivoting": params["pivoting"]}

    def _setup_lu(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        if method == "dense":
            self._densify_check()
            return {}
        if self.A.shape[0] != self.A.shape[1]:
            raise InputError(self.request.inputs[0], f"sparse LU needs a square matrix, got {self.A.shape}")
        return {"ordering": params["ordering"], "pivot_threshold": params["pivot_threshold"]}

    def _setup_cholesky(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        if method == "dense":
            self._densify_check()
            return {}
        # the library: CHOLMOD where installed (auto), unless --param ordering configures SuperLU's
        backend = params.get("backend", "auto")
        if "ordering" in {pair.partition("=")[0].strip() for pair in self.request.params}:
            if backend == "cholmod":
                raise UsageError("--param ordering is SuperLU's; CHOLMOD chooses its own ordering")
            backend = "superlu"
        return {"ordering": params["ordering"], "backend": backend}

    def _setup_ldl(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        self._densify_check()
        return {}

    def _setup_eig(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        hermitian = {"auto": self._hermitian, "yes": True, "no": False}[params["hermitian"]]
        if hermitian and not self._hermitian:
            raise UsageError("--param hermitian=yes but the matrix is not symmetric/Hermitian")
        if method == "dense":
            self._densify_check()
            return {"hermitian": hermitian}
        n = self.A.shape[0]
        rank = self._rank(allow_auto=False)
        from matcli.methods.factorize.sparse import eig_arpack_max_rank

        limit = eig_arpack_max_rank(n, hermitian=hermitian, complex_values=np.iscomplexobj(self.A))
        if rank > limit:
            raise UsageError(f"ARPACK needs --rank <= {limit} for this {n}x{n} matrix; use --method dense")
        which = params["which"]
        if hermitian and which in ("LR", "SR"):
            raise UsageError(f"--param which={which} is for non-symmetric matrices; use LA or SA")
        if not hermitian and which in ("LA", "SA"):
            raise UsageError(f"--param which={which} is for symmetric matrices; use LR or SR")
        return {"rank": rank, "hermitian": hermitian, "which": which, "tol": self._tol(0.0),
                "maxiter": self.request.options.maxiter or 10 * n}  # ARPACK's default, resolved

    def _setup_rpca(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        """Robust PCA works on the dense matrix: a sparse input is densified within ``DENSE_LIMIT``
        entries; the iteration holds about six m x n arrays, checked against the memory budget."""
        from matcli.io.guard import check_allocation

        self._densify_check()
        m, n = self.A.shape
        itemsize = 16 if np.iscomplexobj(self.A) else 8
        check_allocation(self.request.inputs[0], 6 * itemsize * m * n, f"robust PCA of the {m}x{n} matrix")
        if sp.issparse(self.A):
            self.problem_info["densified"] = True
        maxiter = self.request.options.maxiter
        kwargs: dict[str, Any] = {"rtol": self._tol(1e-7)}
        if not 1e-14 <= kwargs["rtol"] < 1:
            raise UsageError(f"--tol {kwargs['rtol']:g}: --kind rpca needs 1e-14 <= tol < 1 (||A - L - S||_F / ||A||_F "
                             "cannot fall below rounding)")
        if method == "ialm":
            kwargs.update(lam=params["lam"] or 1.0 / np.sqrt(max(m, n)), maxiter=maxiter or 1000)
        else:
            from matcli.methods.factorize.robust_pca import default_decay

            maxiter = maxiter or 1000
            rank = self._rank(allow_auto=False, required=False)
            kwargs.update(rank=min(m, n) if rank is None else rank, maxiter=maxiter, init_scale=params["init_scale"],
                          step=params["step"], decay=params["decay"] or default_decay(kwargs["rtol"], maxiter))
        return kwargs

    # ------------------------------------------------------------------ plot
    def draw(self, ax, result: Result) -> str:
        from matcli import plots

        m, n = self.shape
        values = _figure_values(result)
        drawn = plots.spectrum(ax, result, values) if values else plots.series(
            ax, result, ("relative_error", "correntropy_loss"), "objective")
        if not drawn:
            error = result.metrics.get("factorization_residual", result.metrics.get("reconstruction_error"))
            plots.no_history(ax, f"{self.method} is a direct factorization: no iterations to plot"
                             + (f" (relative residual {error:.1e})" if isinstance(error, float) else ""))
        return f"matcli factorize {self.method} ({m} x {n}): {result.status.reason}"

    # -------------------------------------------------------------- compute
    def _setup_tsqr(self) -> dict[str, Any]:
        import os

        from matcli.core.memory import resolve_budget
        from matcli.core.timing import resident_memory_bytes
        from matcli.jobs.sketch_remote import plan_blocks

        from matcli.methods.factorize.tsqr_svd import MAX_COLUMNS

        m, n = self.shape
        if m < n or n > MAX_COLUMNS:
            raise UsageError(f"--method tsqr factorizes a tall matrix of at most {MAX_COLUMNS} columns (m >= n), "
                             f"got {m}x{n}" + ("; factorize the transpose" if m < n else "; use --method randomized"))
        rank = self._rank(allow_auto=True)
        tol = self.request.options.tol
        if rank != "auto" and tol is not None:
            raise UsageError("--tol applies to --method tsqr only with --rank auto")
        from matcli.io.guard import check_allocation

        budget = resolve_budget(self.request.max_memory or os.environ.get("MATCLI_MAX_MEMORY"))
        m, n = self.shape
        k = n if rank == "auto" else int(rank)
        itemsize = 16 if self.remote.dtype.kind == "c" else 8
        self.blocks = plan_blocks(self.remote, budget - resident_memory_bytes())
        # the client holds U (m x k, and a copy while it is assembled), the stacked R factors
        # (up to n x n per block), their Q (as many) and its product with U_R
        stacked = sum(min(block.n_rows, n) for block in self.blocks)
        check_allocation(self.request.inputs[0], itemsize * (2 * m * k + stacked * (2 * n + k)),
                         f"the TSQR factors of the {m}x{n} matrix at rank {k} (U is assembled here)")
        self.problem_info["row_blocks"] = len(self.blocks)
        return {"rank": None, "tol": self._tol(1e-2)} if rank == "auto" else {"rank": rank, "tol": None}

    def _auto_row_blocks(self) -> tuple[str, str]:
        """TSQR (exact, 3 passes) for a tall A of at most :data:`AUTO_TSQR_COLUMNS` columns or with
        ``--rank auto``; the randomized SVD (2 q + 3 passes of thin products) otherwise."""
        from matcli.methods.factorize.tsqr_svd import MAX_COLUMNS

        m, n = self.shape
        where = self.stream_reason or (f"--backend {self.request.backend}: row blocks the workers read"
                                       if self.request.backend != "local" else "row blocks")
        auto_rank = str(self.request.options.rank).strip().lower() == "auto"
        if m >= n and n <= MAX_COLUMNS and (n <= AUTO_TSQR_COLUMNS or auto_rank):
            return "tsqr", f"{where}; the exact SVD of the tall {m}x{n} matrix by TSQR (3 passes)"
        return "randomized", (f"{where}; the {m}x{n} matrix is " + ("wide" if m < n else f"over {AUTO_TSQR_COLUMNS} "
                              "columns") + ": randomized SVD with TSQR bases (2 q + 3 passes of thin products)")

    def _setup_blocked_randomized(self, method: str) -> dict[str, Any]:
        """``--rank k`` by :mod:`matcli.methods.factorize.blocked_rsvd` (randomized or block Krylov):
        blocks planned from what the budget leaves beside the client's factors (exit 7 when even one
        block with its working copies does not fit)."""
        from matcli.core.memory import mib
        from matcli.core.timing import resident_memory_bytes
        from matcli.io.guard import check_allocation, current_policy
        from matcli.jobs.sketch_remote import plan_blocks

        opts = self.request.options
        if str(opts.rank).strip().lower() == "auto":
            raise UsageError("--rank auto on row blocks needs --method tsqr (the exact SVD; m >= n, n <= 2000)")
        if opts.tol is not None:
            raise UsageError("--tol does not apply to the randomized SVD over row blocks (it computes --rank k)")
        self._forbid_params({"precision", "stop_tol", "block_size", "max_rank"}, "the in-memory randomized SVD")
        rank = self._rank(allow_auto=False)
        oversample = 10 if opts.oversample is None else opts.oversample
        power = 4 if opts.power_iters is None else opts.power_iters
        m, n = self.shape
        l = min(rank + oversample, m, n)
        # block Krylov keeps every iterate: tasks work on (q + 1) l columns, the client holds q + 1 Z's
        c = l * (min(power, m // l - 1) + 1) if method == "block-krylov" else l
        itemsize = 16 if self.remote.dtype.kind == "c" else 8
        path = self.request.inputs[0]
        resident = resident_memory_bytes()
        # the client: U while assembled (two m x k), and the Z's, W, its QR, V, A^H U (n x c each)
        client = itemsize * (2 * m * rank + 6 * n * c)
        check_allocation(path, resident + client, f"U ({m}x{rank}) and the n x l bases of the randomized SVD "
                         f"({mib(client)}) beside the {mib(resident)} this process holds")
        self.blocks = plan_blocks(self.remote, current_policy().budget - resident - client)
        rows = max(block.n_rows for block in self.blocks)
        per_row = itemsize * n if self.remote.layout != "csr" else (itemsize + 4) * -(-self.remote.nnz // m)
        # a task holds its block as read and converted, the residual rows (at most a block's bytes),
        # two storage chunks, and its rows of the basis, their Q and R workspace, Q T (r x c each);
        # the client one R factor, its Q_s slice (and the Krylov slices) and an n x c share of A^H Q
        # per block
        chunks = 2 * self.remote.chunk_rows * per_row
        task = 3 * rows * per_row + chunks + 4 * rows * c * itemsize
        partials = itemsize * len(self.blocks) * (n * c + 2 * c * (c + l))
        check_allocation(path, resident + client + partials + task,
                         f"one row block ({rows} rows, {mib(rows * per_row)}) with its working copies beside the "
                         f"randomized SVD's factors and the {mib(resident)} this process holds")
        self.chunk_rows = max(1, min(rows, (rows * per_row) // (itemsize * n)))
        self.problem_info["row_blocks"] = len(self.blocks)
        self._kernel = _load("blocked_rsvd", "blocked_block_krylov_svd" if method == "block-krylov"
                             else "blocked_randomized_svd")
        if self.stream_reason and self.request.method != "auto":
            self.choice_reason = f"{self.choice_reason}; {self.stream_reason}"
        return {"rank": rank, "oversample": oversample, "power_iters": power}

    def _setup_blocked_lanczos(self, params: dict[str, Any]) -> dict[str, Any]:
        """``--method lanczos`` on row blocks: thick-restart Lanczos on A^H A
        (:mod:`matcli.methods.factorize.blocked_lanczos`), one pass per step; blocks planned from
        what the budget leaves beside the client's n x (basis + 1) basis and U."""
        from matcli.core.memory import mib
        from matcli.core.timing import resident_memory_bytes
        from matcli.io.guard import check_allocation, current_policy
        from matcli.jobs.sketch_remote import plan_blocks

        opts = self.request.options
        rank = self._rank(allow_auto=False)
        m, n = self.shape
        if rank >= min(m, n):
            raise UsageError(f"--method lanczos on row blocks computes at most min(m, n) - 1 = {min(m, n) - 1} "
                             "triplets; the full SVD of a tall matrix: --method tsqr")
        tol = self._tol(1e-8)
        if not 1e-14 <= tol < 1:
            raise UsageError(f"--tol {tol:g}: --method lanczos needs 1e-14 <= tol < 1 (a relative residual)")
        basis = min(params["basis"] or max(3 * rank, rank + 30), min(m, n))
        if basis < rank + 1:
            raise UsageError(f"--param basis={basis}: the basis must hold at least --rank + 1 = {rank + 1} vectors")
        itemsize = 16 if self.remote.dtype.kind == "c" else 8
        path = self.request.inputs[0]
        resident = resident_memory_bytes()
        # the client: P (n x (basis + 1)) and its restart product, V, V Y, A^H U (n x rank), U twice (m x rank)
        client = itemsize * (n * (2 * basis + 4 * rank) + 2 * m * rank)
        check_allocation(path, resident + client, f"U ({m}x{rank}) and the n x {basis + 1} Lanczos basis "
                         f"({mib(client)}) beside the {mib(resident)} this process holds")
        self.blocks = plan_blocks(self.remote, current_policy().budget - resident - client)
        rows = max(block.n_rows for block in self.blocks)
        per_row = itemsize * n if self.remote.layout != "csr" else (itemsize + 4) * -(-self.remote.nnz // m)
        # a task: its block as read and converted, the residual rows, two storage chunks, its rows of
        # A V, their Q and R workspace, Q T (r x rank each); the client an n x rank share per block
        chunks = 2 * self.remote.chunk_rows * per_row
        task = 3 * rows * per_row + chunks + 4 * rows * rank * itemsize
        partials = itemsize * len(self.blocks) * (n * rank + 3 * rank * rank)
        check_allocation(path, resident + client + partials + task,
                         f"one row block ({rows} rows, {mib(rows * per_row)}) with its working copies beside the "
                         f"Lanczos basis and the {mib(resident)} this process holds")
        self.chunk_rows = max(1, min(rows, (rows * per_row) // (itemsize * n)))
        self.problem_info["row_blocks"] = len(self.blocks)
        self._kernel = _load("blocked_lanczos", "blocked_lanczos_svd")
        if self.stream_reason and self.request.method != "auto":
            self.choice_reason = f"{self.choice_reason}; {self.stream_reason}"
        return {"rank": rank, "tol": tol, "basis": basis, "maxiter": opts.maxiter or 50 * basis}

    def compute(self, callback: Callback) -> Result:
        if self.remote is not None:
            from matcli.jobs.factorize_remote import RowBlockMatrix

            problem = RowBlockMatrix(self.backend, self.remote, self.blocks, self.chunk_rows)
            try:
                result = self._kernel(problem, **self._kwargs, rng=self.rng, callback=callback)
            except ValueError as exc:
                raise UsageError(f"{self.method}: {exc}") from None
            result.info.setdefault("kind", self.kind)
            return result
        try:
            result = self._kernel(self.A, **self._kwargs, rng=self.rng, callback=callback)
        except ValueError as exc:
            raise UsageError(f"{self.method}: {exc}") from None
        result.info.setdefault("kind", self.kind)
        return result

    def output_attributes(self, result: Result) -> dict[str, Any]:
        """``permutation_convention`` when the factors come with permutation vectors P (and Q)."""
        if "P" not in result.outputs:
            return {}
        key = f"{self.kind}-PQ" if "Q" in result.outputs and self.kind == "lu" else self.kind
        return {"permutation_convention": PERMUTATION_CONVENTIONS[key]}


def _lowrank_specs(text: str) -> list[str]:
    """The two specs of ``--update-lowrank X_spec,Y_spec``."""
    specs = [part.strip() for part in str(text).split(",")]
    if len(specs) != 2 or not all(specs):
        raise UsageError(f"--update-lowrank {text}: expected two specs 'X_spec,Y_spec' (X m x q, Y n x q)")
    return specs


def _read_term(spec: str):
    """X or Y of ``--update-lowrank``: a 2-D matrix, in the computing dtype."""
    from matcli.io.load import read_matrix

    try:
        return as_matrix(read_matrix(spec))
    except ValueError as exc:
        raise InputError(spec, str(exc)) from None


def _figure_values(result: Result) -> str | None:
    """The output holding singular values (``s``) or eigenvalues (``w``), if any."""
    return next((key for key in ("s", "w") if key in result.outputs), None)


def _load(module: str, name: str) -> Callable[..., Result]:
    import importlib

    return getattr(importlib.import_module(f"matcli.methods.factorize.{module}"), name)


def _jsonable(value: Any) -> bool:
    return value is None or isinstance(value, (bool, int, float, str))
