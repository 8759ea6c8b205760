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

A :class:`Factorization` is computed once (the timed ``setup`` phase) and then solves any number
of right-hand sides (``compute``), all columns in one call. For a batch of matrices with one
sparsity pattern, :meth:`Factorization.refactor` reuses the fill-reducing column ordering.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import scipy.sparse as sp

from matcli.core.errors import UsageError
from matcli.core.result import Callback, Result, Status, no_callback
from matcli.methods.solve import equilibrate
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
_SINGULAR = "the matrix is singular to working precision"
_ADVICE = "use --method lsqr or lsmr (or auto) for a least-squares / minimum-norm solution"


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


def _splu(A_scaled, *, kind: str, perm_c: np.ndarray | None = None):
    """SuperLU of sparse (already equilibrated) ``A``. ``cholesky`` uses a symmetric ordering of
    A + A^T and diagonal pivots only (an LDL^T-like factorization without pivoting, which exists iff
    the leading minors are nonzero; its pivots are all positive iff A is positive definite)."""
    from matcli.core.superlu import splu

    A_csc = sp.csc_matrix(A_scaled)
    if perm_c is not None:
        A_csc = sp.csc_matrix(A_csc[:, perm_c])
        A_csc.sort_indices()
        if kind == "cholesky":
            A_csc = sp.csc_matrix(A_csc[perm_c, :])
        spec = "NATURAL"
    else:
        spec = "MMD_AT_PLUS_A" if kind == "cholesky" else "COLAMD"
    options = {"SymmetricMode": True} if kind == "cholesky" else {}
    pivot = 0.0 if kind == "cholesky" else 1.0
    return splu(A_csc, permc_spec=spec, diag_pivot_thresh=pivot, options=options)


def _lu_flops(L, U) -> float:
    """Flops of the right-looking elimination that produced sparse ``L`` (unit lower) and ``U``:
    column j of L times row j of U updates the Schur complement, 2 |L_:j| |U_j:| flops."""
    lcount = np.diff(sp.csc_matrix(L).indptr) - 1
    ucount = np.diff(sp.csr_matrix(U).indptr) - 1
    return float(2.0 * np.dot(np.maximum(lcount, 0), np.maximum(ucount, 0)) + lcount.sum())


def _scaled_solver(inner: Callable[[np.ndarray], np.ndarray], scaling: equilibrate.Scaling):
    """``B -> C inner(R B)``: the solve of ``A`` from a solve of ``R A C``."""
    if not scaling.applied:
        return inner
    r, c = scaling.row[:, None], scaling.col[:, None]
    return lambda B: c * inner(r * B)


def factorize(A, kind: str, *, perm_c: np.ndarray | None = None) -> Factorization:
    """Equilibrate and factor square ``A`` (dense or sparse) as ``kind`` in ``lu``, ``cholesky``, ``ldl``.

    ``perm_c`` (sparse only) reuses a column ordering from an earlier factorization of a matrix
    with the same pattern. An exactly zero pivot gives ``failure = DIVERGED_SINGULAR``; a matrix that
    is not Hermitian positive definite given to ``cholesky`` gives ``DIVERGED_NOT_SPD``. Small pivots
    are not failures: :func:`solve_factored` judges the solution by its backward error.
    """
    n = A.shape[0]
    if A.shape[0] != A.shape[1]:
        raise UsageError(f"{kind} needs a square matrix, got {A.shape[0]}x{A.shape[1]}; use --method lsqr or lsmr")
    if kind == "ldl":
        if sp.issparse(A):
            if n > LDL_DENSE_LIMIT:
                raise UsageError(f"ldl is a dense factorization (order {n} > {LDL_DENSE_LIMIT}); "
                                 "use --method lu, minres or gmres for large sparse matrices")
            A = A.toarray()
        return _ldl(np.asarray(A))
    if kind == "cholesky" and symmetry_error(A) > 1e-12:
        return Factorization(kind, None, {}, Status.DIVERGED_NOT_SPD,
                             "the matrix is not symmetric (Hermitian), so it has no Cholesky factorization; "
                             "use --method lu")
    if not sp.issparse(A):
        return _dense(np.asarray(A), kind)
    scaling = equilibrate.positive_diagonal(A) if kind == "cholesky" else equilibrate.general(A)
    ordering_name = "reused" if perm_c is not None else ("MMD_AT_PLUS_A" if kind == "cholesky" else "COLAMD")
    info: dict[str, Any] = {"backend": "superlu", "ordering": ordering_name, "equilibration": scaling.as_dict()}
    A_scaled = scaling.apply(A)
    try:
        lu = _splu(A_scaled, kind=kind, perm_c=perm_c)
    except RuntimeError as exc:
        # SuperLU stops only on an exactly zero pivot ("Factor is exactly singular").
        detail = " ".join(str(exc).split())
        return Factorization(kind, None, info, Status.DIVERGED_SINGULAR,
                             f"{_SINGULAR}: an exactly zero pivot (SuperLU: {detail}); {_ADVICE}")
    diag_u = lu.U.diagonal()
    info.update({"factor_nnz": int(lu.L.nnz + lu.U.nnz),
                 "fill_ratio": float((lu.L.nnz + lu.U.nnz) / max(A.nnz, 1)),
                 "factor_flops": _lu_flops(lu.L, lu.U)})
    if kind == "cholesky":
        if np.iscomplexobj(diag_u) and np.any(np.abs(diag_u.imag) > 1e-8 * np.abs(diag_u)):
            return Factorization(kind, None, info, Status.DIVERGED_NOT_SPD,
                                 "the matrix is not Hermitian positive definite (complex pivots); use --method lu")
        negative = int(np.sum(np.real(diag_u) <= 0))
        if negative or not np.array_equal(lu.perm_r, lu.perm_c):
            return Factorization(kind, None, info, Status.DIVERGED_NOT_SPD,
                                 f"the matrix is not positive definite ({negative} non-positive pivots); "
                                 "use --method lu or ldl (or minres for large sparse symmetric indefinite)")
    magnitude = np.abs(diag_u)
    info["min_pivot_ratio"] = float(magnitude.min() / magnitude.max()) if magnitude.max(initial=0.0) > 0 else 0.0
    if not np.all(np.isfinite(diag_u)) or np.any(magnitude == 0):
        return Factorization(kind, None, info, Status.DIVERGED_SINGULAR,
                             f"{_SINGULAR}: an exactly zero pivot; {_ADVICE}")
    order = perm_c

    def solve_scaled(B: np.ndarray) -> np.ndarray:
        if np.iscomplexobj(B) and not np.iscomplexobj(lu.L):
            # SuperLU solves only in its factors' dtype: real factors take the real and imaginary
            # parts as one real block of twice the columns.
            k = B.shape[1]
            parts = solve_scaled(np.ascontiguousarray(np.hstack([B.real, B.imag])))
            return parts[:, :k] + 1j * parts[:, k:]
        B = np.ascontiguousarray(B, dtype=lu.L.dtype)
        if order is None:
            return lu.solve(B)
        # The factored matrix was A[:, p] (and A[p][:, p] for cholesky); undo the permutations.
        rhs = B[order] if kind == "cholesky" else B
        Y = lu.solve(np.ascontiguousarray(rhs))
        X = np.empty_like(Y)
        X[order] = Y
        return X

    # SuperLU factors A Pc with column j of A moved to position perm_c[j]; the ordering is its inverse.
    ordering = perm_c if perm_c is not None else np.argsort(lu.perm_c)
    return Factorization(kind, _scaled_solver(solve_scaled, scaling), info, perm_c=ordering, scaling=scaling,
                         norm1_scaled=norm1(A_scaled))


def _dense(A: np.ndarray, kind: str) -> Factorization:
    import scipy.linalg as sla

    n = A.shape[0]
    if kind == "cholesky":
        scaling = equilibrate.positive_diagonal(A)
        info = {"backend": "lapack potrf", "equilibration": scaling.as_dict(), "factor_flops": n ** 3 / 3}
        As = scaling.apply(A)
        try:
            c = sla.cho_factor(As, lower=True, check_finite=False)
        except np.linalg.LinAlgError:
            return Factorization(kind, None, info, Status.DIVERGED_NOT_SPD,
                                 "the matrix is not positive definite (Cholesky failed); use --method lu or ldl")
        return Factorization(kind, _scaled_solver(lambda B: sla.cho_solve(c, B, check_finite=False), scaling), info,
                             scaling=scaling, norm1_scaled=norm1(As))
    scaling = equilibrate.general(A)
    As = scaling.apply(A)
    with warnings.catch_warnings():
        # An exactly singular matrix is reported through the status below, not a warning.
        warnings.simplefilter("ignore", sla.LinAlgWarning)
        lu, piv = sla.lu_factor(As, check_finite=False)
    diag = np.abs(np.diag(lu))
    info: dict[str, Any] = {"backend": "lapack getrf", "equilibration": scaling.as_dict(),
                            "factor_flops": 2 * n ** 3 / 3,
                            "min_pivot_ratio": float(diag.min() / diag.max()) if n and diag.max() > 0 else 0.0}
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


def componentwise_backward_error(absA, A, X: np.ndarray, B: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Oettli-Prager backward error per column, as xGERFS's BERR: ``max_i |r_i| / (|A| |x| + |b|)_i``
    (rows where both are zero count as exact), shape (k,); and the residual block ``B - A X``."""
    R = B - A @ X
    denom = absA @ np.abs(X) + np.abs(B)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(denom > 0, np.abs(R) / np.where(denom > 0, denom, 1.0), np.where(R != 0, np.inf, 0.0))
    return ratio.max(axis=0, initial=0.0), R


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
