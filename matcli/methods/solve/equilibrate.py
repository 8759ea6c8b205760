"""Diagonal equilibration before a direct factorization, as LAPACK's xGEEQUB/xLAQGE (general) and
xPOEQU/xLAQSY (Hermitian positive definite) and SuperLU's ``equil`` do.

A factorization of ``R A C`` (``R``, ``C`` positive diagonal) solves ``A x = b`` as
``x = C (R A C)^{-1} R b``. Scaling changes which pivots partial pivoting picks and how small the
pivots of a badly scaled matrix look, not the solution: a matrix whose rows and columns span 1e-8..1e8
has raw relative pivots near 1e-16 and pivots of order 1 once equilibrated.

The scale factors are powers of two (as xGEEQUB chooses them), so applying them is exact: the scaled
matrix carries no rounding error of its own and the backward error of the scaled solve is the
backward error of the original one.

Every function takes a dense array or a ``scipy.sparse`` matrix of shape (m, n) and returns float64
factors; complex entries are measured by their modulus.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from matcli.core.lazy_sparse import sp

#: LAPACK's xLAQGE / xLAQSY threshold: scale only when the ratio of the smallest to the largest row
#: (column) norm is below it, or when the largest entry is close to under- or overflow.
THRESH = 0.1
_SMALL = np.finfo(float).tiny / np.finfo(float).eps
_LARGE = 1.0 / _SMALL


@dataclass
class Scaling:
    """Diagonal scaling ``R A C`` chosen for a factorization.

    Attributes
    ----------
    row, col : ndarray of float64, shapes (m,) and (n,)
        Positive factors (powers of two); all ones where no scaling was applied.
    equed : str
        LAPACK's EQUED: ``"N"`` none, ``"R"`` rows, ``"C"`` columns, ``"B"`` both (for a symmetric
        scaling ``S A S``, ``"Y"``).
    info : dict
        ``rowcnd``, ``colcnd`` (or ``scond``) and ``amax`` as LAPACK reports them.
    """

    row: np.ndarray
    col: np.ndarray
    equed: str = "N"
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def applied(self) -> bool:
        return self.equed != "N"

    def apply(self, A):
        """``R A C`` in the storage of ``A`` (CSC for sparse input)."""
        if not self.applied:
            return sp.csc_matrix(A) if sp.issparse(A) else A
        if sp.issparse(A):
            return sp.csc_matrix(sp.diags(self.row) @ A @ sp.diags(self.col))
        return (self.row[:, None] * A) * self.col[None, :]

    def as_dict(self) -> dict[str, Any]:
        return {"equed": self.equed, **self.info}


def _pow2(values: np.ndarray) -> np.ndarray:
    """The power of two nearest (in log scale) to each positive value."""
    return np.exp2(np.round(np.log2(values)))


def _abs(A):
    return abs(A) if sp.issparse(A) else np.abs(A)


def _max_along(absA, axis: int) -> np.ndarray:
    if sp.issparse(absA):
        return np.asarray(absA.max(axis=axis).toarray()).ravel()
    return absA.max(axis=axis, initial=0.0)


def _reciprocal(v: np.ndarray) -> np.ndarray:
    """1 / v where v > 0, else 1 (a zero row or column is left alone: the factorization finds it)."""
    safe = np.where(v > 0, v, 1.0)
    return np.where(v > 0, _pow2(1.0 / safe), 1.0)


def general(A) -> Scaling:
    """Row then column scaling of (m, n) ``A`` as xGEEQUB + xLAQGE.

    ``r_i = 1 / max_j |a_ij|`` and ``c_j = 1 / max_i r_i |a_ij|`` (rounded to powers of two), so every
    row and column of ``R A C`` has its largest entry in [0.5, 2). Rows are scaled only when
    ``rowcnd = min_i max_j |a_ij| / max_i max_j |a_ij| < 0.1`` or ``amax`` is near under/overflow;
    columns only when ``colcnd < 0.1`` (measured after the row scaling), as xLAQGE decides.
    """
    absA = _abs(A)
    rmax = _max_along(absA, 1)
    amax = float(rmax.max(initial=0.0))
    nonzero = rmax[rmax > 0]
    rowcnd = float(nonzero.min() / amax) if nonzero.size == rmax.size and amax > 0 else 0.0
    r = _reciprocal(rmax)
    scale_rows = rowcnd < THRESH or amax < _SMALL or amax > _LARGE
    if not scale_rows:
        r = np.ones_like(r)
    scaled = sp.diags(r) @ absA if sp.issparse(absA) else r[:, None] * absA
    cmax = _max_along(scaled, 0)
    cnonzero = cmax[cmax > 0]
    colcnd = float(cnonzero.min() / cmax.max()) if cnonzero.size == cmax.size and cmax.size else 0.0
    c = _reciprocal(cmax)
    scale_cols = colcnd < THRESH
    if not scale_cols:
        c = np.ones_like(c)
    equed = {(False, False): "N", (True, False): "R", (False, True): "C", (True, True): "B"}[(scale_rows, scale_cols)]
    return Scaling(r, c, equed, {"rowcnd": rowcnd, "colcnd": colcnd, "amax": amax})


def positive_diagonal(A) -> Scaling:
    """Symmetric scaling ``S A S`` with ``s_i = 1 / sqrt(a_ii)`` as xPOEQU + xLAQSY (for Cholesky).

    Applied only when ``scond = min_i s_i / max_i s_i < 0.1`` or ``amax`` is near under/overflow.
    A diagonal with a non-positive (or complex) entry gets no scaling: such a matrix is not positive
    definite and the factorization reports it.
    """
    n = A.shape[0]
    d = np.asarray(A.diagonal())
    ones = np.ones(n)
    real = np.real(d)
    if n == 0 or np.any(np.imag(d) != 0) or np.any(real <= 0):
        return Scaling(ones, ones, "N", {"scond": 0.0, "amax": float(np.abs(d).max(initial=0.0))})
    smin, amax = float(real.min()), float(real.max())
    scond = float(np.sqrt(smin / amax))
    if scond >= THRESH and _SMALL <= amax <= _LARGE:
        return Scaling(ones, ones, "N", {"scond": scond, "amax": amax})
    s = _pow2(1.0 / np.sqrt(real))
    return Scaling(s, s, "Y", {"scond": scond, "amax": amax})


def symmetric(A, sweeps: int = 3) -> Scaling:
    """Symmetric scaling ``S A S`` for a symmetric indefinite ``A`` (LDL^T): a few Ruiz sweeps
    ``s_i <- s_i / sqrt(max_j |s_i a_ij s_j|)``, which drive every row maximum of ``S A S`` towards 1
    while keeping the matrix symmetric (the goal of xSYEQUB). Applied on the same xLAQSY rule:
    ``scond = min_i max_j |a_ij| / max_i max_j |a_ij| < 0.1`` or ``amax`` near under/overflow."""
    n = A.shape[0]
    absA = _abs(A)
    rmax = _max_along(absA, 1)
    amax = float(rmax.max(initial=0.0))
    ones = np.ones(n)
    scond = float(rmax.min() / amax) if n and amax > 0 else 0.0
    if scond >= THRESH and _SMALL <= amax <= _LARGE:
        return Scaling(ones, ones, "N", {"scond": scond, "amax": amax})
    s = ones.copy()
    for _ in range(sweeps):
        scaled = (sp.diags(s) @ absA @ sp.diags(s)) if sp.issparse(absA) else (s[:, None] * absA) * s[None, :]
        row = _max_along(scaled, 1)
        s = s * np.where(row > 0, _pow2(1.0 / np.sqrt(np.where(row > 0, row, 1.0))), 1.0)
    return Scaling(s, s, "Y", {"scond": scond, "amax": amax})
