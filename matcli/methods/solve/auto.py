"""``--method auto`` and ``--precond auto``: pick from cheap properties of the matrix, say why.

Decision order (first match wins):

1. rectangular -> ``lstsq`` (LAPACK, QR with column pivoting) when the dense form is small
   (:func:`dense_lstsq_fits`: at most ``DENSE_LSTSQ_ENTRIES`` entries and ``DENSE_LSTSQ_WORK``
   flops), else ``lsmr`` (least squares / minimum norm).
2. dense, or sparse of order <= ``DIRECT_LIMIT`` (x4 with 8 or more right-hand sides, which
   amortise one factorization): Hermitian with positive diagonal -> ``cholesky`` (the adapter
   falls back to ``lu`` when a pivot is not positive), else ``lu``.
3. large sparse Hermitian: positive definite by the Gershgorin test or by a short Lanczos run
   (a negative Ritz value proves indefiniteness) -> ``cg`` with AMG (Ruge-Stuben for M-matrices,
   smoothed aggregation otherwise); otherwise -> ``gmres`` + ILU. CG is never chosen for a matrix
   shown to be indefinite or nonsymmetric.
4. large sparse nonsymmetric -> ``gmres`` + ILU.

A direct method that finds the matrix singular (an exactly zero pivot, or a refined solution that
is not backward stable or is dominated by near-null directions, :mod:`matcli.methods.solve.direct`)
hands over to a least-squares solve (:func:`least_squares_fallback`): ``lstsq`` when it fits, else
LSMR with an iteration cap proportional to the direct attempt's flops (:func:`fallback_maxiter`).

The ILU chosen here adapts (:func:`matcli.methods.solve.precond.ilu`): a factorization that fails
or a solve that stagnates is retried with 10x less dropping and 2x more fill, a few times at most,
each attempt recorded in the report; if none works the status is negative, never a usage error.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from matcli.core.lazy_sparse import sp
from matcli.methods.solve import csr_facts
from matcli.methods.solve.spectrum import diagonal, gershgorin_positive, lanczos_extremes, symmetry_error

DIRECT_LIMIT = 50_000
#: Least-squares problems whose dense form has at most this many entries (32 MB of float64) ...
DENSE_LSTSQ_ENTRIES = 4_000_000
#: ... and m n min(m, n) at most this (the order of the QR's flops: about a second) go to LAPACK.
DENSE_LSTSQ_WORK = 1e9
#: The LSMR fallback may spend this many times the flops of the direct attempt it replaces ...
FALLBACK_WORK_FACTOR = 10.0
#: ... but at least this many iterations (an exactly singular factorization reports no flops).
FALLBACK_MIN_ITERATIONS = 100
DENSE_JACOBI_LIMIT = 5_000
SYMMETRY_TOL = 1e-12


@dataclass
class Facts:
    """Properties ``auto`` looked at (also reported under ``problem``)."""

    shape: tuple[int, int]
    sparse: bool
    nnz: int
    complex: bool
    hermitian: bool = False
    positive_diagonal: bool = False
    definiteness: str = "not tested"
    m_matrix_like: bool = False
    extra: dict[str, Any] = field(default_factory=dict)
    #: canonical CSR form of a sparse A, its diagonal, and whether its pattern is symmetric (not reported)
    csr: Any = field(default=None, repr=False)
    diagonal: Any = field(default=None, repr=False)
    pattern_symmetric: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {"shape": list(self.shape), "storage": "sparse" if self.sparse else "dense", "nnz": self.nnz,
                "dtype": "complex128" if self.complex else "float64", "hermitian": self.hermitian,
                "positive_diagonal": self.positive_diagonal, "definiteness": self.definiteness,
                **self.extra}

    def release(self) -> None:
        """Drop the arrays kept for the decisions (a canonical copy of a non-canonical A is freed)."""
        self.csr = self.diagonal = None


def inspect(A, choosing: bool = True) -> Facts:
    """Structural facts every decision needs (no eigenvalue work yet).

    A sparse matrix is brought to canonical CSR once (``facts.csr``, reused by :func:`definiteness`)
    and tested exactly on its arrays (:mod:`matcli.methods.solve.csr_facts`).
    ``choosing=False`` (the method and preconditioner are both named) skips ``m_matrix_like``, which
    only :func:`choose_precond` reads.
    """
    m, n = A.shape
    sparse = sp.issparse(A)
    facts = Facts((m, n), sparse, int(A.nnz) if sparse else int(np.count_nonzero(A)), bool(np.iscomplexobj(A)))
    if m != n or n == 0:
        return facts
    if sparse:
        C = csr_facts.canonical(A)
        sym = csr_facts.symmetry(C)
        err, d = sym.error, C.diagonal()
        facts.csr, facts.pattern_symmetric = C, sym.pattern_symmetric
    else:
        err, d = symmetry_error(A), diagonal(A)
    facts.extra["symmetry_error"] = err
    facts.hermitian = err <= SYMMETRY_TOL
    facts.diagonal = d
    facts.positive_diagonal = bool(d.size and np.all(np.abs(np.imag(d)) == 0) and np.all(np.real(d) > 0))
    if choosing and facts.hermitian and facts.positive_diagonal and sparse and not facts.complex:
        # each of the n positive diagonal entries is stored once: no other entry may be positive
        facts.m_matrix_like = int(np.count_nonzero(facts.csr.data > 0)) == n
    return facts


def definiteness(A, facts: Facts, rng: np.random.Generator, steps: int = 30) -> str:
    """``positive definite (Gershgorin)``, ``indefinite (negative Ritz value)``, ``indefinite
    (diagonal)`` or ``probably positive definite (Lanczos)`` for Hermitian ``A``; cached in facts."""
    if not facts.positive_diagonal:
        facts.definiteness = "indefinite or singular (diagonal not positive)"
    elif (csr_facts.gershgorin_positive(facts.csr, facts.diagonal, facts.pattern_symmetric)
          if facts.csr is not None else gershgorin_positive(A)):
        facts.definiteness = "positive definite (diagonally dominant, Gershgorin)"
    else:
        s = 1.0 / np.sqrt(np.real(facts.diagonal if facts.diagonal is not None else diagonal(A)))
        lo, hi = lanczos_extremes(lambda v: s * (A @ (s * v)), A.shape[0], A.dtype, steps, rng)
        facts.extra["scaled_ritz_range"] = [lo, hi]
        if lo < -1e-10 * abs(hi):
            facts.definiteness = "indefinite (negative Ritz value)"
        else:
            facts.definiteness = f"probably positive definite ({steps}-step Lanczos found no negative Ritz value)"
    return facts.definiteness


def choose_method(A, facts: Facts, nrhs: int, rng: np.random.Generator) -> tuple[str, str, str]:
    """(method, preconditioner, reason sentence) for ``--method auto``."""
    m, n = facts.shape
    if min(m, n) == 0:
        return "lstsq", "none", f"A is empty ({m}x{n}): x = 0, the minimum-norm least-squares solution"
    if m != n:
        if dense_lstsq_fits((m, n)):
            return "lstsq", "none", (f"rectangular {m}x{n} matrix, small enough to hold densely "
                                     f"({m * n} entries): LAPACK's QR with column pivoting (gelsy) gives the "
                                     "least-squares solution (minimum norm if rank deficient) to rounding error, "
                                     "where LSQR/LSMR stop at their tolerance")
        return "lsmr", "none", (f"rectangular {m}x{n} matrix, too large to hold densely: LSMR gives the "
                                "least-squares solution (minimum norm if rank deficient)")
    limit = DIRECT_LIMIT * (4 if nrhs >= 8 else 1)
    if not facts.sparse or n <= limit:
        what = "dense" if not facts.sparse else f"sparse of order {n} <= {limit}"
        many = f" and {nrhs} right-hand sides share the factors" if nrhs > 1 else ""
        if facts.hermitian and facts.positive_diagonal:
            return "cholesky", "none", (f"{what}{many}: a direct factorization is fastest and exact to "
                                        "rounding; Hermitian with positive diagonal, so Cholesky "
                                        "(LU if a pivot turns out non-positive)")
        kind = "Hermitian with a non-positive diagonal entry" if facts.hermitian else "nonsymmetric"
        return "lu", "none", f"{what}{many}: a direct factorization is fastest and exact to rounding; {kind}, so LU"
    if facts.hermitian:
        verdict = definiteness(A, facts, rng)
        if "indefinite" not in verdict:
            pc = choose_precond("cg", A, facts)
            shared = (f"; the {nrhs} right-hand sides share the hierarchy and every product (block V-cycle)"
                      if nrhs > 1 and pc.startswith("amg") else "")
            return "cg", pc, (f"large sparse Hermitian ({n} unknowns), {verdict}: CG with "
                              f"{pc} preconditioning (O(nnz) memory, mesh-independent iterations){shared}")
        return "gmres", "ilu", (f"large sparse Hermitian but {verdict}: CG does not apply; GMRES with "
                                "ILU preconditioning")
    return "gmres", "ilu", f"large sparse nonsymmetric ({n} unknowns): GMRES with ILU preconditioning"


def dense_lstsq_fits(shape: tuple[int, int]) -> bool:
    """Whether an (m, n) least-squares problem is solved densely with LAPACK: at most
    ``DENSE_LSTSQ_ENTRIES`` entries and ``m n min(m, n) <= DENSE_LSTSQ_WORK``."""
    m, n = shape
    return m * n <= DENSE_LSTSQ_ENTRIES and m * n * min(m, n) <= DENSE_LSTSQ_WORK


def fallback_maxiter(A, direct_flops: float, requested: int | None) -> tuple[int, str]:
    """Iteration cap of the LSMR fallback and why: ``FALLBACK_WORK_FACTOR`` times the direct
    attempt's flops at ``4 nnz + 12 (m + n)`` flops per LSMR iteration (two products with A and the
    vector updates), at least ``FALLBACK_MIN_ITERATIONS``, at most ``--maxiter`` when given."""
    m, n = A.shape
    nnz = A.nnz if sp.issparse(A) else m * n
    per_iteration = 4.0 * nnz + 12.0 * (m + n)
    cap = max(FALLBACK_MIN_ITERATIONS, int(np.ceil(FALLBACK_WORK_FACTOR * direct_flops / per_iteration)))
    if direct_flops > 0:
        why = (f"{FALLBACK_WORK_FACTOR:g}x the direct attempt's {direct_flops:.3g} flops at {per_iteration:.3g} "
               f"flops per iteration, at least {FALLBACK_MIN_ITERATIONS}")
    else:
        why = f"the factorization stopped before counting its flops, so the minimum of {FALLBACK_MIN_ITERATIONS}"
    if requested is not None and int(requested) < cap:
        return int(requested), f"--maxiter {int(requested)} (below the bound of {cap}: {why})"
    return cap, why


def least_squares_fallback(A) -> tuple[str, str]:
    """(method, reason) for the least-squares solve that replaces a direct method on a singular
    square ``A``: ``lstsq`` when its dense form fits :func:`dense_lstsq_fits`, else ``lsmr``."""
    n = A.shape[0]
    if dense_lstsq_fits(A.shape):
        return "lstsq", (f"LAPACK gelsy for the minimum-norm least-squares solution (order {n} is small enough "
                         "to hold densely)")
    return "lsmr", (f"LSMR for the minimum-norm least-squares solution (order {n} is too large to hold "
                    "densely), its iterations bounded by the cost of the direct attempt")


def choose_precond(method: str, A, facts: Facts) -> str:
    """The preconditioner for ``--precond auto`` given the method: AMG for large sparse SPD (Ruge-Stuben
    for M-matrices), incomplete Cholesky for smaller sparse SPD, ILU for nonsymmetric sparse, Jacobi
    for the rest when the diagonal allows it. The adapter falls back to Jacobi when IC breaks down."""
    if method in ("lu", "cholesky", "ldl", "lsqr", "lsmr", "lstsq", "sor", "ssor"):
        return "none"
    n = facts.shape[0]
    if method == "cg":
        if facts.sparse and n > DENSE_JACOBI_LIMIT:
            return "amg-rs" if facts.m_matrix_like else "amg-sa"
        if facts.sparse and facts.positive_diagonal:
            return "ic"
        return "jacobi" if facts.positive_diagonal else "none"
    if method == "minres":
        return "jacobi" if facts.positive_diagonal else "none"
    return "ilu" if facts.sparse else ("jacobi" if np.all(diagonal(A) != 0) else "none")
