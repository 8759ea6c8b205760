"""Direct solvers: dense LU / Cholesky / LDL^T (LAPACK via scipy.linalg) and sparse LU / Cholesky
(SuperLU via scipy.sparse.linalg.splu), each as LAPACK's expert drivers (xGESVX, xPOSVX) work:

1. **equilibrate** (:mod:`matcli.methods.solve.equilibrate`): factor ``R A C`` instead of ``A``;
2. **factor**: the factorization fails only on an exactly zero pivot (or, for Cholesky, a
   non-positive one), never on a small pivot;
3. **refine** iteratively against the original ``A`` (as xGERFS: at most ``REFINE_STEPS`` steps,
   stopping when the componentwise backward error no longer halves or reaches eps);
4. **decide** from the computed solution, per column: LAPACK's test ratio
   ``||b - A x||_1 / (||A||_1 ||x||_1 eps n)`` (xGET02, scaled by n) below ``RATIO_THRESHOLD`` = 30
   says x solves a system within a few n eps of ``A`` (backward stable). That statement carries
   information about b only while the perturbation it allows is smaller than b:
   ``n eps ||A|| ||x|| < ||b||``, measured in the equilibrated norms (``||R A C||_1 ||C^{-1} x||_1``
   against ``||R b||_1``, the norms in which LAPACK judges singularity). When it fails, x is dominated
   by a direction A maps to (almost) nothing: A is singular to working precision (its condition number
   is at least ``||A|| ||x|| / ||b|| >= 1 / (n eps)``) and b is not in its range to working precision.
   Both checks pass: ``converged_direct``; either fails after refinement: ``diverged_singular`` (the
   refined x and its metrics are still returned).

A pivot-ratio threshold is not a singularity test: a badly scaled nonsingular matrix has tiny relative
pivots and a backward-stable solution, and a singular matrix with a consistent right-hand side (b in
the range of A) has a solution LU finds to backward-error accuracy, which is reported as solved.

Sparse matrices are factored by a backend of :mod:`matcli.methods.solve.sparse_direct` (SuperLU,
PARDISO, CHOLMOD; ``backend="auto"`` takes the fastest installed one); steps 1, 3 and 4 are the same
for all of them, so every backend's solution passes the same backward-error test.

A :class:`Factorization` is computed once (the timed ``setup`` phase) and then solves any number
of right-hand sides (``compute``), all columns in one call. For a batch of matrices with one
sparsity pattern, :meth:`Factorization.refactor` reuses the fill-reducing column ordering.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from matcli.core.errors import UsageError
from matcli.core.lazy_sparse import sp
from matcli.core.result import Callback, Result, Status, no_callback
from matcli.methods.solve import equilibrate
from matcli.methods.solve.sparse_direct import best_direct_backend, require
from matcli.methods.solve.sparse_direct.common import ADVICE, SINGULAR, Factors
from matcli.methods.solve.spectrum import symmetry_error
from matcli.methods.solve.system import as_block, finish

#: Largest order for which ``ldl`` densifies a sparse matrix (LDL^T with Bunch-Kaufman pivoting
#: exists only as a dense LAPACK routine in scipy).
LDL_DENSE_LIMIT = 5000
#: LAPACK TESTING's threshold for the solve ratio of xGET02 (dchkge: THRESH = 30).
RATIO_THRESHOLD = 30.0
#: xGERFS's ITMAX: most refinement steps by default.
REFINE_STEPS = 5

EPS = np.finfo(float).eps
_SINGULAR = SINGULAR
_ADVICE = ADVICE


@dataclass
class Factorization:
    """A computed factorization of square ``A``: ``solve(B)`` returns ``A^{-1} B`` for (n, k) ``B``
    (undoing the equilibration and permutations).

    ``failure`` is set (with ``solve`` None) when the factorization broke down (an exactly zero pivot,
    or a non-positive one for Cholesky); the status says why.
    """

    kind: str
    solve: Callable[[np.ndarray], np.ndarray] | None
    info: dict[str, Any] = field(default_factory=dict)
    failure: Status | None = None
    message: str = ""
    perm_c: np.ndarray | None = None
    #: the equilibration ``R A C`` that was factored (None: none) and ``||R A C||_1``
    scaling: equilibrate.Scaling | None = None
    norm1_scaled: float = 0.0
    #: the library that factored: ``superlu``, ``pardiso``, ``cholmod`` or ``lapack`` (dense)
    backend: str = "lapack"
    #: the ``backend`` argument it was asked with (None, ``auto`` or a name): a refactorization of a
    #: matrix with the same pattern passes it again
    requested_backend: str | None = None


def _scaled_solver(inner: Callable[[np.ndarray], np.ndarray], scaling: equilibrate.Scaling):
    """``B -> C inner(R B)``: the solve of ``A`` from a solve of ``R A C``."""
    if not scaling.applied:
        return inner
    r, c = scaling.row[:, None], scaling.col[:, None]
    return lambda B: c * inner(r * B)


def factorize(A, kind: str, *, perm_c: np.ndarray | None = None, backend: str | None = "auto",
              spd: bool | None = None) -> Factorization:
    """Equilibrate and factor square ``A`` (dense or sparse) as ``kind`` in ``lu``, ``cholesky``, ``ldl``.

    Parameters
    ----------
    A : (n, n) ndarray or sparse matrix, float64 or complex128
    kind : {"lu", "cholesky", "ldl"}
    perm_c : (n,) int array, optional
        SuperLU only: reuse the column ordering of an earlier factorization of a matrix with the same
        pattern (``Factorization.perm_c``); other backends compute their own ordering.
    backend : {None, "superlu", "pardiso", "cholmod", "auto"}
        Library for a sparse ``A`` (:mod:`~matcli.methods.solve.sparse_direct`). None is the reference:
        LAPACK for dense ``A`` and for ``ldl``, SuperLU for sparse ``lu`` / ``cholesky``; ``auto`` takes
        :func:`~matcli.methods.solve.sparse_direct.best_direct_backend`'s choice (the reason is
        ``info["backend_reason"]``). Dense ``A`` is factored by LAPACK under ``auto``; a named
        sparse backend factors it as a sparse matrix. A named backend that is not installed, or
        does not factor ``kind``, is a UsageError naming the extra to install. ``ldl`` without
        PARDISO is LAPACK's dense Bunch-Kaufman (sparse input up to ``LDL_DENSE_LIMIT``).
    spd : bool, optional
        The caller found A Hermitian positive definite (only ``auto`` reads it); None: as ``kind``
        says (a Cholesky is asked for on a matrix believed definite).

    An exactly zero pivot gives ``failure = DIVERGED_SINGULAR``; a matrix that is not Hermitian
    positive definite given to ``cholesky`` gives ``DIVERGED_NOT_SPD``, whichever the backend. PARDISO
    factors in which it perturbed pivots (factors of a nearby matrix) are replaced by SuperLU's
    (``lu``) or LAPACK's (``ldl`` up to ``LDL_DENSE_LIMIT``) exact pivoting, said in
    ``info["backend_fallback"]``. Small pivots are not failures: :func:`solve_factored` judges the
    solution by its backward error.
    """
    n = A.shape[0]
    if A.shape[0] != A.shape[1]:
        raise UsageError(f"{kind} needs a square matrix, got {A.shape[0]}x{A.shape[1]}; use --method lsqr or lsmr")
    reason, requested = "", backend
    if backend is None:
        backend = "superlu" if sp.issparse(A) and kind != "ldl" else "lapack"
    elif backend == "auto":
        if not sp.issparse(A):
            backend, reason = "lapack", "dense input: LAPACK"
        else:
            definite = kind == "cholesky" if spd is None else spd
            backend, reason = best_direct_backend(kind, n, int(A.nnz), definite, complex_values=np.iscomplexobj(A))
    else:
        require(backend, kind)
        A = sp.csr_matrix(A) if not sp.issparse(A) else A
    fact = _factorize(A, kind, perm_c=perm_c, backend=backend)
    fact.requested_backend = requested
    if reason:
        fact.info["backend_reason"] = reason
    return fact


def _factorize(A, kind: str, *, perm_c: np.ndarray | None, backend: str) -> Factorization:
    n = A.shape[0]
    if kind == "ldl" and backend != "pardiso":
        if sp.issparse(A):
            if n > LDL_DENSE_LIMIT:
                raise UsageError(f"ldl is a dense factorization here (order {n} > {LDL_DENSE_LIMIT}; a sparse "
                                 "LDL^T needs pip install 'matcli[pardiso]'); "
                                 "use --method lu, minres or gmres for large sparse matrices")
            A = A.toarray()
        return _ldl(np.asarray(A))
    if kind == "cholesky" and symmetry_error(A) > 1e-12:
        return Factorization(kind, None, {}, Status.DIVERGED_NOT_SPD,
                             "the matrix is not symmetric (Hermitian), so it has no Cholesky factorization; "
                             "use --method lu")
    if not sp.issparse(A):
        return _dense(np.asarray(A), kind)
    if kind == "cholesky":
        scaling = equilibrate.positive_diagonal(A)
    elif kind == "ldl":
        scaling = equilibrate.symmetric(A)
    else:
        scaling = equilibrate.general(A)
    A_scaled = scaling.apply(A)
    factors = _sparse_factors(A_scaled, kind, perm_c=perm_c, backend=backend)
    fallback = None
    if factors.info.get("perturbed_pivots", 0) and kind in ("lu", "ldl"):
        fallback = (f"PARDISO perturbed {factors.info['perturbed_pivots']} pivots (its factors are of a nearby "
                    "matrix)")
        if kind == "lu":
            fallback += ", so SuperLU refactored with partial pivoting"
            factors = _sparse_factors(A_scaled, kind, perm_c=None, backend="superlu")
        elif n <= LDL_DENSE_LIMIT:
            dense = _ldl(A.toarray())
            dense.info["backend_fallback"] = fallback + ", so LAPACK refactored with Bunch-Kaufman pivoting"
            return dense
        else:
            fallback += f"; kept (order {n} > {LDL_DENSE_LIMIT} for a dense Bunch-Kaufman): refinement and the " \
                        "backward-error test decide"
    info = {**factors.info, "equilibration": scaling.as_dict()}
    if fallback:
        info["backend_fallback"] = fallback
    if factors.failure is not None:
        return Factorization(kind, None, info, factors.failure, factors.message, backend=info["backend"])
    return Factorization(kind, _scaled_solver(factors.solve, scaling), info, perm_c=factors.ordering,
                         scaling=scaling, norm1_scaled=norm1(A_scaled), backend=info["backend"])


def _sparse_factors(A_scaled, kind: str, *, perm_c: np.ndarray | None, backend: str) -> Factors:
    """The factors of the equilibrated sparse matrix by ``backend``."""
    if backend == "pardiso":
        from matcli.methods.solve.sparse_direct import pardiso

        return pardiso.factor(A_scaled, kind)
    if backend == "cholmod":
        from matcli.methods.solve.sparse_direct import cholmod

        return cholmod.factor(A_scaled, kind)
    from matcli.methods.solve.sparse_direct import superlu

    return superlu.factor(A_scaled, kind, perm_c=perm_c)


_NOT_SPD = "the matrix is not positive definite (Cholesky failed); use --method lu or ldl"

#: Up to these orders a dense factorization goes through numpy's LAPACK (potrf; getrf inside gesv):
#: importing scipy.linalg costs a process 0.06-0.18 s of CPU (more when nothing else of scipy is
#: loaded), more than the extra work of the numpy route below these orders. Its Cholesky solves by
#: block substitution (O(n^2) per column); numpy has no getrs, so each LU solve refactors (2/3 n^3).
#: Measured in process CPU, factor + solve + one refinement step, 2 BLAS threads on a loaded 2-core
#: machine: Cholesky of order 961 0.09 s (scipy 0.07 s); LU of order 400 0.03 s, of order 484 0.30 s.
NUMPY_CHOLESKY_MAX = 1000
NUMPY_LU_MAX = 400
#: order of the diagonal blocks of the block triangular substitution
TRIANGULAR_BLOCK = 64


def triangular_solve(T: np.ndarray, B: np.ndarray, *, lower: bool) -> np.ndarray:
    """``T^{-1} B`` for (n, n) triangular ``T`` (nonzero diagonal) and (n, k) ``B``, by block
    substitution as a blocked xTRSM: each diagonal block of order ``TRIANGULAR_BLOCK`` by gesv, the
    rest by matrix products. Normwise backward stable (Higham, Accuracy and Stability of Numerical
    Algorithms, 2nd ed., sec. 13.1); gesv on a triangular block is as stable as trsv on it."""
    n = T.shape[0]
    X = np.array(B, dtype=np.result_type(T, B), copy=True)
    starts = range(0, n, TRIANGULAR_BLOCK) if lower else reversed(range(0, n, TRIANGULAR_BLOCK))
    for start in starts:
        block = slice(start, min(start + TRIANGULAR_BLOCK, n))
        X[block] = np.linalg.solve(T[block, block], X[block])
        rest = slice(block.stop, n) if lower else slice(0, start)
        X[rest] -= T[rest, block] @ X[block]
    return X


def _numpy_cholesky(As: np.ndarray, info: dict[str, Any], scaling) -> Factorization:
    try:
        L = np.linalg.cholesky(As)
    except np.linalg.LinAlgError:
        return Factorization("cholesky", None, info, Status.DIVERGED_NOT_SPD, _NOT_SPD)
    LH = np.ascontiguousarray(L.conj().T)

    def solve(B: np.ndarray) -> np.ndarray:
        return triangular_solve(LH, triangular_solve(L, B, lower=True), lower=False)

    info["backend"] = "lapack potrf (numpy)"
    return Factorization("cholesky", _scaled_solver(solve, scaling), info, scaling=scaling, norm1_scaled=norm1(As))


def _numpy_lu(As: np.ndarray, info: dict[str, Any], scaling) -> Factorization:
    n = As.shape[0]
    info["backend"] = "lapack getrf (numpy gesv)"
    # slogdet runs getrf and answers sign 0 exactly when getrf met an exactly zero pivot (info > 0),
    # the condition scipy's path tests on the diagonal of U
    sign, _ = np.linalg.slogdet(As)
    if n and sign == 0:
        return Factorization("lu", None, info, Status.DIVERGED_SINGULAR,
                             f"{_SINGULAR}: an exactly zero pivot; {_ADVICE}")

    def solve(B: np.ndarray) -> np.ndarray:
        try:
            return np.linalg.solve(As, B)
        except np.linalg.LinAlgError:  # the same getrf as slogdet's: not reached; judged as an overflow
            return np.full(B.shape, np.inf, dtype=np.result_type(As, B))

    return Factorization("lu", _scaled_solver(solve, scaling), info, scaling=scaling, norm1_scaled=norm1(As))


def _dense(A: np.ndarray, kind: str) -> Factorization:
    n = A.shape[0]
    if kind == "cholesky":
        scaling = equilibrate.positive_diagonal(A)
        info = {"backend": "lapack potrf", "equilibration": scaling.as_dict(), "factor_flops": n ** 3 / 3}
        As = scaling.apply(A)
        if n <= NUMPY_CHOLESKY_MAX:
            return _numpy_cholesky(As, info, scaling)
        import scipy.linalg as sla

        try:
            c = sla.cho_factor(As, lower=True, check_finite=False)
        except np.linalg.LinAlgError:
            return Factorization(kind, None, info, Status.DIVERGED_NOT_SPD, _NOT_SPD)
        return Factorization(kind, _scaled_solver(lambda B: sla.cho_solve(c, B, check_finite=False), scaling), info,
                             scaling=scaling, norm1_scaled=norm1(As))
    scaling = equilibrate.general(A)
    As = scaling.apply(A)
    info: dict[str, Any] = {"backend": "lapack getrf", "equilibration": scaling.as_dict(),
                            "factor_flops": 2 * n ** 3 / 3}
    if n <= NUMPY_LU_MAX:
        return _numpy_lu(As, info, scaling)
    import scipy.linalg as sla

    with warnings.catch_warnings():
        # An exactly singular matrix is reported through the status below, not a warning.
        warnings.simplefilter("ignore", sla.LinAlgWarning)
        lu, piv = sla.lu_factor(As, check_finite=False)
    diag = np.abs(np.diag(lu))
    info["min_pivot_ratio"] = float(diag.min() / diag.max()) if n and diag.max() > 0 else 0.0
    if n and (not np.all(np.isfinite(diag)) or np.any(diag == 0)):
        return Factorization(kind, None, info, Status.DIVERGED_SINGULAR,
                             f"{_SINGULAR}: an exactly zero pivot; {_ADVICE}")
    gecon = sla.get_lapack_funcs("gecon", (lu,))
    rcond, _ = gecon(lu, np.abs(As).sum(axis=0).max(), norm="1")
    info["rcond_1norm_equilibrated"] = float(rcond)
    return Factorization(kind, _scaled_solver(lambda B: sla.lu_solve((lu, piv), B, check_finite=False), scaling),
                         info, scaling=scaling, norm1_scaled=norm1(As))


def _block_diagonal(d: np.ndarray) -> tuple[list[float], bool]:
    """Eigenvalues of the 1x1 and 2x2 blocks of Bunch-Kaufman's block diagonal ``D`` and whether a
    block is exactly singular (O(n), so the inertia of every order is reported)."""
    n = d.shape[0]
    eigs: list[float] = []
    zero_block = False
    i = 0
    while i < n:
        if i + 1 < n and d[i + 1, i] != 0:
            block = d[i:i + 2, i:i + 2]
            eigs.extend(np.linalg.eigvalsh(block).tolist())
            zero_block |= bool(np.linalg.det(block) == 0)
            i += 2
        else:
            eigs.append(float(np.real(d[i, i])))
            zero_block |= bool(d[i, i] == 0)
            i += 1
    return eigs, zero_block


def _ldl(A: np.ndarray) -> Factorization:
    """Bunch-Kaufman LDL^T (LDL^H for complex Hermitian) of the symmetrically equilibrated matrix:
    P (S A S) P^T = L D L^T with 1x1/2x2 blocks."""
    import scipy.linalg as sla

    hermitian = np.iscomplexobj(A)
    n = A.shape[0]
    scaling = equilibrate.symmetric(A)
    As = scaling.apply(A)
    lu, d, perm = sla.ldl(As, lower=True, hermitian=hermitian, check_finite=False)
    L = lu[perm]
    eigs, zero_block = _block_diagonal(d)
    eigs_arr = np.asarray(eigs)
    info: dict[str, Any] = {"backend": "lapack sytrf", "equilibration": scaling.as_dict(), "factor_flops": n ** 3 / 3,
                            "inertia": {"positive": int(np.sum(eigs_arr > 0)), "negative": int(np.sum(eigs_arr < 0)),
                                        "zero": int(np.sum(eigs_arr == 0))}}
    if n and (zero_block or not np.all(np.isfinite(eigs_arr))):
        return Factorization("ldl", None, info, Status.DIVERGED_SINGULAR,
                             f"{_SINGULAR}: an exactly singular pivot block; {_ADVICE}")
    # D is block diagonal with 1x1 and 2x2 blocks: tridiagonal, solved in banded form.
    ab = np.zeros((3, n), dtype=d.dtype)
    ab[0, 1:] = np.diagonal(d, 1)
    ab[1] = np.diagonal(d)
    ab[2, :-1] = np.diagonal(d, -1)
    LH = L.conj().T if hermitian else L.T

    def solve(B: np.ndarray) -> np.ndarray:
        Y = sla.solve_triangular(L, B[perm], lower=True, unit_diagonal=True, check_finite=False)
        Z = sla.solve_banded((1, 1), ab, Y, check_finite=False)
        W = sla.solve_triangular(LH, Z, lower=False, unit_diagonal=True, check_finite=False)
        X = np.empty_like(W)
        X[perm] = W
        return X

    return Factorization("ldl", _scaled_solver(solve, scaling), info, scaling=scaling, norm1_scaled=norm1(As))


def norm1(A) -> float:
    """``||A||_1``, the largest absolute column sum (dense or sparse)."""
    if A.shape[1] == 0:
        return 0.0
    if sp.issparse(A):
        return float(np.asarray(abs(A).sum(axis=0)).max())
    return float(np.abs(A).sum(axis=0).max())


def lapack_ratio(A, X: np.ndarray, B: np.ndarray, norm_A: float | None = None) -> np.ndarray:
    """LAPACK TESTING's solve ratio per column (xGET02 scaled by n), shape (k,):
    ``||b_j - A x_j||_1 / (||A||_1 ||x_j||_1 eps n)``; 0 for an exact x_j (b_j = 0, x_j = 0) and
    inf when the residual is nonzero with x_j = 0 or ``A = 0``. Below 30 x_j solves a system within a
    small multiple of eps of ``A`` exactly: the solve is backward stable."""
    n = max(A.shape[1], 1)
    norm_A = norm1(A) if norm_A is None else norm_A
    R = B - A @ X
    rnorm = np.abs(R).sum(axis=0)
    xnorm = np.abs(X).sum(axis=0)
    denom = norm_A * xnorm * EPS * n
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(rnorm == 0, 0.0, np.where(denom > 0, rnorm / np.where(denom > 0, denom, 1.0), np.inf))


#: bytes of one column chunk of the refinement's temporaries (about half this machine's L2 cache)
_CACHE_BYTES = 2 << 20


def componentwise_backward_error(absA, A, X: np.ndarray, B: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Oettli-Prager backward error per column, as xGERFS's BERR: ``max_i |r_i| / (|A| |x| + |b|)_i``
    (rows where both are zero count as exact), shape (k,); and the residual block ``B - A X``."""
    n, k = X.shape
    R = np.empty((n, k), dtype=np.result_type(A.dtype, X, B))
    berr = np.empty(k)
    # by column chunks that stay in cache: on a whole (n, k) block every temporary is a trip to memory
    # (100 columns of a 90000-unknown system: 2x the per-column cost of one column at a time)
    width = max(1, _CACHE_BYTES // max(1, n * R.itemsize))
    for j in range(0, k, width):
        cols = slice(j, min(j + width, k))
        Xj, Bj = X[:, cols], B[:, cols]
        Rj = Bj - A @ Xj
        denom = absA @ np.abs(Xj) + np.abs(Bj)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(denom > 0, np.abs(Rj) / np.where(denom > 0, denom, 1.0), np.where(Rj != 0, np.inf, 0.0))
        R[:, cols] = Rj
        berr[cols] = ratio.max(axis=0, initial=0.0)
    return berr, R


def refine_solution(A, solve: Callable[[np.ndarray], np.ndarray], B: np.ndarray, X: np.ndarray, *,
                    max_steps: int = REFINE_STEPS,
                    callback: Callback = no_callback) -> tuple[np.ndarray, int, list[float]]:
    """Iterative refinement as xGERFS: ``x <- x + solve(b - A x)`` per column while its componentwise
    backward error exceeds eps and at least halves, at most ``max_steps`` steps.

    Returns ``(X, steps, berr)``: the refined (n, k) block (each column the iterate with the smallest
    backward error seen), the number of steps taken and the largest backward error of the kept
    iterates before refinement (``berr[0]``) and after each step. ``callback(step, residual=...,
    backward_error=...)`` reports the true relative residual ``max_j ||b_j - A x_j|| / ||b_j||`` and
    that backward error of the kept iterates, from step 0 (the unrefined solve).
    """
    absA = abs(A) if sp.issparse(A) else np.abs(A)
    berr, R = componentwise_backward_error(absA, A, X, B)
    bnorm = np.maximum(np.linalg.norm(B, axis=0), np.finfo(float).tiny)
    rel = np.linalg.norm(R, axis=0) / bnorm
    history = [float(berr.max(initial=0.0))]
    callback(0, residual=float(rel.max(initial=0.0)), backward_error=history[-1])
    active = (berr > EPS) & np.isfinite(berr)
    steps = 0
    while steps < max_steps and np.any(active):
        cols = np.flatnonzero(active)
        trial = X[:, cols] + solve(np.ascontiguousarray(R[:, cols]))
        new, R_new = componentwise_backward_error(absA, A, trial, B[:, cols])
        better = new < berr[cols]
        kept = cols[better]
        X[:, kept] = trial[:, better]
        R[:, kept] = R_new[:, better]
        rel[kept] = np.linalg.norm(R_new[:, better], axis=0) / bnorm[kept]
        # xGERFS goes on only while the backward error at least halves
        active[cols] = better & (2 * new <= berr[cols]) & (new > EPS)
        berr[cols] = np.minimum(new, berr[cols])
        steps += 1
        history.append(float(berr.max(initial=0.0)))
        callback(steps, residual=float(rel.max(initial=0.0)), backward_error=history[-1])
    return X, steps, history


def dominated_by_null_directions(fact: Factorization, X: np.ndarray, B: np.ndarray) -> np.ndarray:
    """Per column, whether ``n eps ||R A C||_1 ||C^{-1} x_j||_1 >= ||R b_j||_1``: the perturbation of A a
    backward-stable solve may make is as large as b_j, so x_j says nothing about b_j (A singular to
    working precision, b_j outside its range to working precision). Shape (k,); False for b_j = 0."""
    n = X.shape[0]
    row = fact.scaling.row[:, None] if fact.scaling is not None else 1.0
    col = fact.scaling.col[:, None] if fact.scaling is not None else 1.0
    allowed = n * EPS * fact.norm1_scaled * np.abs(X / col).sum(axis=0)
    return (allowed >= np.abs(row * B).sum(axis=0)) & (np.abs(B).sum(axis=0) > 0)


def solve_factored(A, fact: Factorization, B, *, callback: Callback = no_callback, refine: int = 0) -> Result:
    """Solve ``A X = B`` with a computed factorization, refine and judge the solution.

    ``refine`` (``--param refine``) caps the refinement steps; 0 means xGERFS's default of
    ``REFINE_STEPS``. Status ``CONVERGED_DIRECT`` when every column's LAPACK ratio
    (:func:`lapack_ratio`) is below ``RATIO_THRESHOLD`` and no column is dominated by near-null
    directions (:func:`dominated_by_null_directions`); ``DIVERGED_SINGULAR`` (with the refined x and
    its metrics) otherwise, or with no output when the factorization failed.
    ``metrics["lapack_ratio"]`` is the largest ratio over the columns.
    """
    Bb, _, was_vector = as_block(A, B)
    if fact.failure is not None:
        return Result(status=fact.failure, message=fact.message, info=dict(fact.info))
    cap = int(refine) if refine else REFINE_STEPS
    X = fact.solve(Bb)
    info = dict(fact.info)
    if not np.all(np.isfinite(X)):
        return Result(status=Status.DIVERGED_SINGULAR, info=info,
                      message=f"{_SINGULAR}: the solve overflowed (a pivot too small for this b); {_ADVICE}")
    X = np.array(X, dtype=np.result_type(X, Bb), copy=True)
    X, steps, history = refine_solution(A, fact.solve, Bb, X, max_steps=cap, callback=callback)
    ratio = lapack_ratio(A, X, Bb)
    worst = float(ratio.max(initial=0.0))
    info["refinement"] = {"steps": steps, "max_steps": cap, "componentwise_backward_error": history}
    null = dominated_by_null_directions(fact, X, Bb)
    status, message = Status.CONVERGED_DIRECT, ""
    if worst >= RATIO_THRESHOLD:
        status = Status.DIVERGED_SINGULAR
        message = (f"{_SINGULAR}: after {steps} refinement steps the LAPACK ratio ||b - A x||_1 / "
                   f"(||A||_1 ||x||_1 eps n) is {worst:.3g} >= {RATIO_THRESHOLD:g}, so x solves no nearby system; "
                   f"{_ADVICE}")
    elif np.any(null):
        status = Status.DIVERGED_SINGULAR
        message = (f"{_SINGULAR} and b is not in its range: n eps ||A|| ||x|| >= ||b|| (equilibrated 1-norms) for "
                   f"{int(null.sum())} of {null.size} right-hand sides, so x is dominated by directions A maps "
                   f"to almost nothing; {_ADVICE}")
    result = finish(A, X, Bb, was_vector, status, 0, message, info)
    result.metrics["lapack_ratio"] = worst
    return result
