"""Preconditioners: built once (the timed ``setup`` phase), applied to blocks of vectors many times.

Every preconditioner maps an (n, k) block ``R`` to an (n, k) block ``Z ~= A^{-1} R`` and records
facts about itself in ``info``. ``symmetric`` says whether the operator is Hermitian positive
definite whenever ``A`` is (required by CG and MINRES).

A preconditioner that cannot be built for the matrix at hand (incomplete Cholesky on an indefinite
or singular matrix, Chebyshev without a positive diagonal, AMG with zeros on the diagonal) is a
property of the data, not a mistake on the command line: :func:`build_with_fallback` (what the
solvers use) then builds the weaker one :func:`fallback_for` names and says so in ``info``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from matcli.core.errors import UsageError
from matcli.core.lazy_sparse import sp
from matcli.methods.solve.multigrid import block_cycle, gauss_seidel_cycle
from matcli.methods.solve.ruge_stuben import hierarchy as rs_hierarchy
from matcli.methods.solve.ruge_stuben import ruge_stuben
from matcli.methods.solve.spectrum import diagonal, lanczos_extremes

PRECONDITIONERS = ("none", "jacobi", "ilu", "ic", "amg-sa", "amg-rs", "chebyshev")


class PreconditionerError(UsageError):
    """The preconditioner cannot be built for this matrix (its values, not the request, are the cause).

    A UsageError when :func:`build` is called directly; :func:`build_with_fallback` catches it and
    falls back to a weaker preconditioner.
    """


@dataclass
class Preconditioner:
    """A linear operator ``Z = M^{-1} R`` on (n, k) blocks."""

    name: str
    apply: Callable[[np.ndarray], np.ndarray]
    symmetric: bool
    info: dict[str, Any] = field(default_factory=dict)
    #: ``R = M Z`` when M itself is cheap to apply (identity, diagonal), else None.
    forward: Callable[[np.ndarray], np.ndarray] | None = None
    #: A stronger preconditioner of the same kind (ILU with less dropping), built on demand; None
    #: when there is none left to try. Krylov kernels call it when a solve fails with this one.
    refine: Callable[[], "Preconditioner | None"] | None = None
    #: Why the preconditioner could not be built (``apply`` is then the identity and a kernel
    #: given it reports a negative status instead of iterating); None when it was built.
    failure: str | None = None
    #: A variant for solving several columns at once (cheaper per column on blocks, e.g. an AMG cycle
    #: whose every product takes the whole block), built on demand; None when ``apply`` is already it.
    #: A kernel that uses it keeps it for the whole solve, however few columns remain active.
    block: Callable[[], "Preconditioner"] | None = None


def identity() -> Preconditioner:
    return Preconditioner("none", lambda R: R.copy(), True, forward=lambda Z: Z.copy())


def jacobi(A, *, absolute: bool = False) -> Preconditioner:
    """``M = diag(A)``, or ``|diag(A)|`` when ``absolute`` (always Hermitian positive definite, the
    diagonal scaling MINRES can use on an indefinite matrix).

    Zero diagonal entries are replaced by 1 (as PETSc's PCJACOBI does), so this never fails;
    ``info["zero_diagonal_entries"]`` counts them.
    """
    d = diagonal(A)
    if absolute:
        d = np.abs(d).astype(np.result_type(d.dtype, np.float64))
    zeros = d == 0
    d = np.where(zeros, 1.0, d)
    inv = (1.0 / d)[:, None]
    info = {"scaling": "|diag(A)|" if absolute else "diag(A)", "zero_diagonal_entries": int(zeros.sum())}
    return Preconditioner("jacobi", lambda R: inv * R, bool(np.all(np.real(d) > 0) and np.all(np.imag(d) == 0)),
                          info, forward=lambda Z: d[:, None] * Z)


#: How many threshold-ILU factorizations one preconditioner may try: the requested parameters,
#: then each step 10x less dropping and 2x more fill (e.g. 1e-4/10, 1e-5/20, 1e-6/40, 1e-7/80).
ILU_ATTEMPTS = 4


def ilu_schedule(drop_tol: float, fill_factor: float, attempts: int = ILU_ATTEMPTS) -> list[tuple[float, float]]:
    """The (drop_tol, fill_factor) pairs tried in order, starting from the requested ones."""
    return [(drop_tol / 10.0 ** i, fill_factor * 2.0 ** i) for i in range(attempts)]


def ilu(A, drop_tol: float = 1e-4, fill_factor: float = 10.0, *, attempts: int = ILU_ATTEMPTS) -> Preconditioner:
    """Threshold incomplete LU (SuperLU ``spilu``) that adapts its parameters.

    Parameters
    ----------
    A : (n, n) sparse or dense matrix.
    drop_tol, fill_factor : the first attempt's parameters; later attempts follow
        :func:`ilu_schedule` (less dropping, more fill).
    attempts : at most this many factorizations are tried, here and through ``refine``.

    Returns
    -------
    Preconditioner named ``ilu``. ``info`` holds the parameters in use and ``info["attempts"]``
    every factorization tried so far, each ``{"drop_tol", "fill_factor", "outcome"}``.
    A factorization that fails (a singular pivot: singular ``A``, a zero row, or dropping that
    destroyed a pivot) is retried with the next parameters. When every attempt fails, the result
    has ``failure`` set and ``apply`` is the identity: this never raises for a singular matrix,
    and the Krylov kernels report a negative status for it. ``refine()`` builds the next stronger
    ILU of the schedule (None when it is exhausted) for a solve that failed with this one.
    """
    A_csc = sp.csc_matrix(A)
    schedule = ilu_schedule(drop_tol, fill_factor, attempts)
    tried: list[dict[str, Any]] = []
    M = _first_ilu(A_csc, schedule, tried)
    if M is not None:
        return M
    last = tried[-1]["outcome"].removeprefix("factorization failed: ")
    failure = (f"ILU failed at every drop tolerance tried ({', '.join(f'{dt:g}' for dt, _ in schedule)}; "
               f"last: {last}): the matrix is singular or nearly so")
    return Preconditioner("ilu", lambda R: R.copy(), False, {"attempts": tried}, failure=failure)


def _first_ilu(A_csc, schedule: list[tuple[float, float]], tried: list[dict[str, Any]]) -> Preconditioner | None:
    """The first ILU of ``schedule`` that factors, with every attempt appended to ``tried``; None if none does."""
    from matcli.core.superlu import spilu

    for step, (dt, ff) in enumerate(schedule):
        try:
            factor = spilu(A_csc, drop_tol=dt, fill_factor=ff)
        except RuntimeError as exc:
            reason = str(exc).split(" at line ")[0].strip()  # SuperLU appends its C source location
            tried.append({"drop_tol": dt, "fill_factor": ff, "outcome": f"factorization failed: {reason}"})
            continue
        except MemoryError as exc:
            if not tried:  # the requested parameters themselves do not fit: a resource error (exit 7)
                raise
            # more fill only needs more memory: stop strengthening, keep what was built before
            tried.append({"drop_tol": dt, "fill_factor": ff, "outcome": f"out of memory: {exc}"})
            break
        nnz = int(factor.L.nnz + factor.U.nnz)
        tried.append({"drop_tol": dt, "fill_factor": ff, "outcome": "built"})
        info = {"drop_tol": dt, "fill_factor": ff, "factor_nnz": nnz, "fill_ratio": nnz / max(A_csc.nnz, 1),
                "attempts": list(tried)}
        rest = schedule[step + 1:]
        refine = (lambda: _first_ilu(A_csc, rest, list(tried))) if rest else None
        return Preconditioner("ilu", factor.solve, False, info, refine=refine)
    return None


def incomplete_cholesky(A, drop_tol: float = 1e-4, fill_factor: float = 10.0) -> Preconditioner:
    """Incomplete LDL^H for Hermitian ``A``, symmetric by construction (for CG and MINRES).

    SuperLU's threshold ILU in symmetric mode (symmetric fill-reducing ordering, diagonal pivots
    only) gives ``P A P^T ~= L U`` with ``U ~= D L^H`` up to dropping; keeping only ``L`` and
    ``D = diag(U)`` defines ``M = P^T L D L^H P``, which is Hermitian, and positive definite iff
    every pivot is positive (checked).
    """
    from scipy.sparse.linalg import spsolve_triangular

    from matcli.core.superlu import spilu

    A_csc = sp.csc_matrix(A)
    try:
        factor = spilu(A_csc, drop_tol=drop_tol, fill_factor=fill_factor, permc_spec="MMD_AT_PLUS_A",
                       diag_pivot_thresh=0.0, options={"SymmetricMode": True})
    except RuntimeError as exc:
        reason = str(exc).split(" at line ")[0].strip()  # SuperLU appends its C source location
        raise PreconditionerError(f"ic preconditioner failed ({reason}): the matrix is singular or nearly so; "
                                  "try --precond amg-sa or jacobi") from None
    d = factor.U.diagonal()
    if not np.array_equal(factor.perm_r, factor.perm_c) or np.any(np.real(d) <= 0) or (
            np.iscomplexobj(d) and np.any(np.abs(d.imag) > 1e-8 * np.abs(d))):
        raise PreconditionerError("ic preconditioner: a non-positive pivot (the matrix is not positive definite, "
                                  "or the drop tolerance is too coarse); try a smaller --param ilu_drop_tol, "
                                  "--precond amg-sa, or jacobi")
    L = sp.csr_matrix(factor.L)
    LH = sp.csr_matrix(L.conj().T)
    order = np.argsort(factor.perm_c)
    inv_d = 1.0 / np.real(d)

    def apply(R: np.ndarray) -> np.ndarray:
        Y = spsolve_triangular(L, R[order], lower=True, unit_diagonal=True)
        Y *= inv_d[:, None]
        Z = spsolve_triangular(LH, Y, lower=False, unit_diagonal=True)
        out = np.empty_like(Z)
        out[order] = Z
        return out

    info = {"drop_tol": drop_tol, "fill_factor": fill_factor, "factor_nnz": int(L.nnz),
            "fill_ratio": L.nnz / max(A_csc.nnz, 1)}
    return Preconditioner("ic", apply, True, info)


def amg(A, kind: str, symmetric_matrix: bool, rng: np.random.Generator, cycle: str = "V") -> Preconditioner:
    """pyamg hierarchy (smoothed aggregation ``sa`` or Ruge-Stuben ``rs``) as one cycle per apply.

    Gauss-Seidel forward before and backward after the coarse correction, so the cycle is a
    symmetric operator (SPD for SPD ``A``) and serves CG. For nonsymmetric ``A`` smoothed
    aggregation is built in its nonsymmetric mode. The setup's random draws (pyamg's spectral
    radius estimates use numpy's global generator) come from ``rng``. Ruge-Stuben hierarchies come
    from :func:`~matcli.methods.solve.ruge_stuben.hierarchy` (pyamg's, with a leaner setup; its
    V-cycle is :func:`~matcli.methods.solve.multigrid.gauss_seidel_cycle`, pyamg's package never
    imported; other cycles go through pyamg's solver object).

    For a V-cycle, ``block()`` gives the variant CG uses on several right-hand sides at once
    (:func:`~matcli.methods.solve.multigrid.block_cycle`: l1-Jacobi smoothing over the whole block,
    the same hierarchy), built on first use; ``info["block_cycle_precision"]`` records its precision.

    Raises :class:`PreconditionerError` for a zero on the diagonal (Gauss-Seidel divides by it)
    and when the setup breaks down (non-finite values in the hierarchy).
    """
    import warnings

    from matcli.core.rng import seeded_global_state

    smoothers = {"presmoother": ("gauss_seidel", {"sweep": "forward"}),
                 "postsmoother": ("gauss_seidel", {"sweep": "backward"})}
    A_csr = sp.csr_matrix(A)
    zero_diagonal = int(np.sum(diagonal(A_csr) == 0))
    if zero_diagonal:
        raise PreconditionerError(f"amg-{kind} preconditioner: the diagonal has {zero_diagonal} zero entries "
                                  "(its Gauss-Seidel smoother divides by them)")
    try:
        with seeded_global_state(rng), warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore", RuntimeWarning)
            if kind == "sa":
                import pyamg

                symmetry = "hermitian" if symmetric_matrix else "nonsymmetric"
                if symmetric_matrix and not np.iscomplexobj(A_csr):
                    symmetry = "symmetric"
                ml = pyamg.smoothed_aggregation_solver(A_csr, symmetry=symmetry, **smoothers)
            elif cycle == "V":
                ml = rs_hierarchy(A_csr)  # pyamg's kernels without its package (see ruge_stuben.amg_core)
            else:
                ml = ruge_stuben(A_csr, **smoothers)
    except (ValueError, ArithmeticError, np.linalg.LinAlgError) as exc:
        raise PreconditionerError(f"amg-{kind} setup broke down on this matrix ({exc})") from None
    if not all(np.all(np.isfinite(level.A.data)) for level in ml.levels):
        raise PreconditionerError(f"amg-{kind} setup broke down on this matrix (non-finite coarse operators)")
    if cycle != "V":
        one_cycle = ml.aspreconditioner(cycle=cycle).matvec
    elif kind == "rs":
        one_cycle = gauss_seidel_cycle(ml)
    else:
        one_cycle = _v_cycle(ml)

    def apply(R: np.ndarray) -> np.ndarray:
        if R.shape[1] == 1:
            return one_cycle(np.ascontiguousarray(R[:, 0])).reshape(-1, 1)
        return np.column_stack([one_cycle(np.ascontiguousarray(R[:, j])) for j in range(R.shape[1])])

    info = {"levels": len(ml.levels), "operator_complexity": float(ml.operator_complexity()),
            "grid_complexity": float(ml.grid_complexity()), "cycle": cycle,
            "coarse_unknowns": int(ml.levels[-1].A.shape[0])}
    built: list[Preconditioner] = []

    def block() -> Preconditioner:
        if not built:
            blocked = block_cycle(ml)
            built.append(Preconditioner(f"amg-{kind}", blocked, True, {
                **info, "smoother": "l1-Jacobi (block cycle)", "cycle_precision": blocked.dtype.name}))
            info["block_cycle_precision"] = blocked.dtype.name
        return built[0]

    info["smoother"] = "Gauss-Seidel"
    if cycle == "V":
        info["block_smoother"] = ("l1-Jacobi, every column per product (CG with several right-hand sides; "
                                  "single precision when the hierarchy's values fit)")
    return Preconditioner(f"amg-{kind}", apply, True, info, block=block if cycle == "V" else None)


def _v_cycle(ml):
    """One V-cycle of a pyamg hierarchy from a zero initial guess, as a function of the right-hand side.

    Same recursion as pyamg's own cycle, but without the residual norms that pyamg's
    ``aspreconditioner`` computes around every cycle (two extra fine-grid products per application).
    """
    levels = ml.levels
    last = len(levels) - 1

    def cycle(level_index: int, b: np.ndarray) -> np.ndarray:
        level = levels[level_index]
        if level_index == last:
            return np.asarray(ml.coarse_solver(level.A, b)).reshape(b.shape)
        x = np.zeros_like(b)
        level.presmoother(level.A, x, b)
        coarse_x = cycle(level_index + 1, level.R @ (b - level.A @ x))
        x += level.P @ coarse_x
        level.postsmoother(level.A, x, b)
        return x

    return lambda b: cycle(0, b)


#: Largest degree the automatic choice considers (the ``cheb_degree`` parameter's upper bound).
MAX_CHEBYSHEV_DEGREE = 64


def chebyshev_interval(lo: float, hi: float) -> tuple[float, float]:
    """The interval ``[a, b]`` the polynomial is built for, from Ritz values ``lo <= hi`` of ``D^{-1} A``.

    ``b = 1.1 * hi`` over-estimates lambda_max (Ritz values lie inside the spectrum), which keeps the
    polynomial positive on the whole spectrum; ``a`` is the smallest Ritz value, kept within
    ``[b / 1e4, b / 2]`` (an over-estimated lower end only damps the smallest eigenvalues less).
    """
    b = 1.1 * hi
    return min(max(lo, b / 1e4), b / 2), b


def chebyshev_pcg_cost(degree: int, a: float, b: float, nnz: int, n: int, rtol: float = 1e-8) -> tuple[int, float]:
    """Modelled (PCG iterations, flops) of a solve to ``rtol`` with the degree-``degree`` preconditioner.

    The preconditioned matrix ``p(D^-1 A) D^-1 A = I - r(D^-1 A)`` has its eigenvalues in
    ``[1 - eps, 1 + eps]`` with ``eps = 1 / T_m((b + a) / (b - a))`` (the Chebyshev residual bound on
    ``[a, b]``), so its condition number is ``kappa = (1 + eps) / (1 - eps)`` and PCG needs about
    ``k = sqrt(kappa) ln(2 / rtol) / 2`` iterations. One PCG iteration costs a product (``2 nnz``),
    two inner products and three vector updates (``10 n``); one apply costs ``2 n`` plus, per degree
    beyond the first, a product and six vector passes (``2 nnz + 6 n``).
    """
    ratio = (b + a) / (b - a)
    eps = 1.0 / math.cosh(degree * math.acosh(ratio))
    kappa = (1 + eps) / (1 - eps) if eps < 1 else math.inf
    iterations = max(1, math.ceil(0.5 * math.sqrt(kappa) * math.log(2.0 / rtol)))
    per_iteration = 2 * nnz + 12 * n + (degree - 1) * (2 * nnz + 6 * n)
    return iterations, float(iterations * per_iteration)


def choose_chebyshev_degree(a: float, b: float, nnz: int, n: int, rtol: float = 1e-8,
                            max_degree: int = MAX_CHEBYSHEV_DEGREE) -> tuple[int, dict[str, Any]]:
    """The degree in ``1..max_degree`` of least modelled flops per solve (:func:`chebyshev_pcg_cost`;
    the smallest such degree on ties) and the facts behind it."""
    costs = [chebyshev_pcg_cost(m, a, b, nnz, n, rtol) for m in range(1, max_degree + 1)]
    best = min(range(max_degree), key=lambda i: (costs[i][1], i))
    facts = {"model_condition_number": b / a, "model_pcg_iterations": costs[best][0],
             "model_flops": costs[best][1], "model_flops_degree_1": costs[0][1]}
    return best + 1, facts


def chebyshev(A, degree: int, rng: np.random.Generator, lanczos_steps: int = 20) -> Preconditioner:
    """Chebyshev polynomial preconditioner ``p(D^{-1} A) D^{-1}``: ``degree`` steps of the Chebyshev
    iteration on ``D^{-1} A z = D^{-1} r`` from ``z = 0``.

    The spectrum of ``D^{-1} A`` (similar to the Hermitian ``D^{-1/2} A D^{-1/2}``) is bracketed by
    Lanczos Ritz values (:func:`chebyshev_interval`). ``degree = 0`` chooses the degree from those
    Ritz values: the one of least modelled cost per PCG solve (:func:`choose_chebyshev_degree`;
    higher degrees cut PCG iterations and inner products but cost a product each). ``info`` holds
    the degree in use, ``degree_choice`` (``given`` or ``auto`` with the model's numbers), the
    interval and the Lanczos steps. Symmetric positive definite for SPD ``A`` as long as ``b``
    exceeds lambda_max (then ``1 - lambda p(lambda)`` stays below 1 on ``(0, b]``).
    """
    d = np.real(diagonal(A))
    if np.any(d <= 0):
        raise PreconditionerError("chebyshev preconditioner needs a positive diagonal (an SPD-like matrix); "
                                  "use --precond ilu or jacobi")
    inv_sqrt = 1.0 / np.sqrt(d)
    n = A.shape[0]
    lo, hi = lanczos_extremes(lambda v: inv_sqrt * (A @ (inv_sqrt * v)), n, A.dtype, lanczos_steps, rng)
    if not hi > 0:
        raise PreconditionerError("chebyshev preconditioner: the scaled matrix has no positive spectrum")
    a, b = chebyshev_interval(lo, hi)
    choice: dict[str, Any] = {"degree_choice": "given"}
    if degree == 0:
        nnz = A.nnz if sp.issparse(A) else int(np.count_nonzero(A))
        degree, facts = choose_chebyshev_degree(a, b, nnz, n)
        choice = {"degree_choice": "auto", **facts}
    theta, delta = (b + a) / 2, (b - a) / 2
    inv_d = (1.0 / d)[:, None]

    def apply(R: np.ndarray) -> np.ndarray:
        # Saad, Iterative Methods, Alg. 12.1 on the Jacobi-scaled system, zero initial guess.
        res = inv_d * R
        sigma = theta / delta
        rho = 1.0 / sigma
        step = res / theta
        Z = step.copy()
        for _ in range(degree - 1):
            res = res - inv_d * (A @ step)
            rho_next = 1.0 / (2 * sigma - rho)
            step = rho_next * rho * step + (2 * rho_next / delta) * res
            Z += step
            rho = rho_next
        return Z

    info = {"degree": degree, **choice, "interval": [a, b], "lanczos_steps": lanczos_steps}
    return Preconditioner("chebyshev", apply, True, info)


def build(A, name: str, *, symmetric_matrix: bool, params: dict[str, Any],
          rng: np.random.Generator, spd: bool = False) -> Preconditioner:
    """Build the preconditioner ``name`` (one of :data:`PRECONDITIONERS`) for square ``A``.

    ``params`` may hold ``ilu_drop_tol``, ``ilu_fill_factor``, ``amg_cycle``, ``cheb_degree``
    (for ``ilu``, the first of the parameters :func:`ilu` tries; ``cheb_degree = 0``: chosen from
    Ritz values, see :func:`chebyshev`). ``spd``: the method needs a
    Hermitian positive definite preconditioner (CG, MINRES), so Jacobi scales by ``|diag(A)|``.
    Raises :class:`PreconditionerError` when ``A`` does not admit it (see :func:`build_with_fallback`).
    """
    if name == "none":
        return identity()
    if name == "jacobi":
        return jacobi(A, absolute=spd)
    if not sp.issparse(A) and name in ("ilu", "ic", "amg-sa", "amg-rs"):
        A = sp.csr_matrix(A)
    if name == "ilu":
        return ilu(A, params.get("ilu_drop_tol", 1e-4), params.get("ilu_fill_factor", 10.0))
    if name == "ic":
        return incomplete_cholesky(A, params.get("ilu_drop_tol", 1e-4), params.get("ilu_fill_factor", 10.0))
    if name in ("amg-sa", "amg-rs"):
        return amg(A, name[4:], symmetric_matrix, rng, params.get("amg_cycle", "V"))
    if name == "chebyshev":
        return chebyshev(A, int(params.get("cheb_degree", 4)), rng)
    raise UsageError(f"unknown preconditioner {name!r}; choose one of {', '.join(PRECONDITIONERS)}")


def fallback_for(name: str, spd: bool) -> str:
    """The weaker preconditioner tried when ``name`` cannot be built: ILU for incomplete Cholesky
    when the method takes a nonsymmetric one (GMRES, BiCGSTAB), else Jacobi (which always builds)."""
    if name == "ic" and not spd:
        return "ilu"
    return "jacobi"


def build_with_fallback(A, name: str, *, symmetric_matrix: bool, params: dict[str, Any],
                        rng: np.random.Generator, spd: bool = False) -> Preconditioner:
    """:func:`build`, falling back to :func:`fallback_for` when ``A`` does not admit ``name``.

    The preconditioner returned is the one in use (its ``name``); after a fallback its ``info``
    holds ``requested`` (the name asked for) and ``fallback`` (why, and what is used instead).
    ILU does not fall back: an ILU that no drop tolerance can factor is returned with ``failure``
    set and the Krylov kernels end with a negative status (see :func:`ilu`).
    """
    try:
        return build(A, name, symmetric_matrix=symmetric_matrix, params=params, rng=rng, spd=spd)
    except PreconditionerError as exc:
        weaker = fallback_for(name, spd)
        M = build(A, weaker, symmetric_matrix=symmetric_matrix, params=params, rng=rng, spd=spd)
        reason = str(exc).split("; try")[0].split("; use")[0]
        M.info = {**M.info, "requested": name,
                  "fallback": f"{_LONG_NAMES.get(name, name)} broke down ({reason}), so {weaker}"}
        return M


_LONG_NAMES = {"ic": "incomplete Cholesky", "chebyshev": "the Chebyshev preconditioner",
               "amg-sa": "smoothed-aggregation AMG", "amg-rs": "Ruge-Stuben AMG"}
