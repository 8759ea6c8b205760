"""What every sparse direct backend returns, and the messages they share with the dense path."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from matcli.core.lazy_sparse import sp
from matcli.core.result import Status

SINGULAR = "the matrix is singular to working precision"
ADVICE = "use --method lsqr or lsmr (or auto) for a least-squares / minimum-norm solution"
NOT_SPD_ADVICE = "use --method lu or ldl (or minres for large sparse symmetric indefinite)"


@dataclass
class Factors:
    """Factors of a square sparse matrix ``M`` (n x n).

    ``solve(B)`` returns ``M^{-1} B`` for an (n, k) block ``B`` (real or complex; real factors solve a
    complex block as its real and imaginary parts). ``failure`` is set, with ``solve`` None, when the
    factorization broke down; ``message`` says why. ``ordering`` is a column ordering a later matrix
    with the same pattern may reuse (SuperLU only; None otherwise). ``info`` holds what the report
    shows: ``backend``, ``ordering``, ``factor_nnz`` (stored entries of the factors),
    ``fill_ratio`` (``factor_nnz / nnz(M)``), ``factor_flops`` and, where the library reports it,
    ``factor_memory_bytes``.
    """

    solve: Callable[[np.ndarray], np.ndarray] | None
    info: dict[str, Any] = field(default_factory=dict)
    failure: Status | None = None
    message: str = ""
    ordering: np.ndarray | None = None


def failed(info: dict[str, Any], status: Status, message: str) -> Factors:
    """Factors that broke down with ``status``."""
    return Factors(None, info, status, message)


def real_block_solver(solve_real: Callable[[np.ndarray], np.ndarray]) -> Callable[[np.ndarray], np.ndarray]:
    """A solve with real factors that also takes complex blocks: ``[Re B, Im B]`` as one real block of
    twice the columns (the factors stay real)."""

    def solve(B: np.ndarray) -> np.ndarray:
        if np.iscomplexobj(B):
            k = B.shape[1]
            parts = solve_real(np.hstack([B.real, B.imag]))
            return parts[:, :k] + 1j * parts[:, k:]
        return solve_real(B)

    return solve


def empty_lines(M) -> int:
    """Rows plus columns of sparse ``M`` without a nonzero entry: each makes ``M`` exactly singular
    (and PARDISO must not see a row without stored entries)."""
    coo = sp.coo_matrix(M)
    nonzero = coo.data != 0
    rows = np.bincount(coo.row[nonzero], minlength=M.shape[0])
    cols = np.bincount(coo.col[nonzero], minlength=M.shape[1])
    return int(np.count_nonzero(rows == 0) + np.count_nonzero(cols == 0))
