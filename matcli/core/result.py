"""Result of a kernel and its signed convergence status (positive = converged, negative = failed)."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

#: Iteration callback a kernel calls as ``callback(iteration, **values)``, e.g.
#: ``callback(7, residual=1e-5)`` or ``callback(3, train_rmse=0.9, val_rmse=0.95)``.
#: The runner supplies it (monitor, progress bar); kernels never print or time themselves.
Callback = Callable[..., None]


def no_callback(iteration: int, **values: float) -> None:
    """Default callback: ignore the iteration report."""


class Status(enum.IntEnum):
    """Why a kernel stopped; the sign says whether the result can be trusted."""

    CONVERGED_RTOL = 1          # relative tolerance met
    CONVERGED_ATOL = 2          # absolute tolerance met
    CONVERGED_DIRECT = 3        # direct method finished (factorization / exact solve)
    CONVERGED_ITS = 4           # ran the requested fixed number of iterations / sweeps
    CONVERGED_HAPPY_BREAKDOWN = 5  # Krylov space became invariant: solution exact
    CONVERGED_STEP = 6          # relative change of the iterate below tolerance
    CONVERGED_ZERO_RHS = 7      # b = 0, x = 0 is exact
    DIVERGED_MAX_IT = -3        # maxiter reached before the tolerance
    DIVERGED_BREAKDOWN = -4     # division by (near) zero inside the method
    DIVERGED_NOT_SPD = -5       # method needs SPD and the matrix (or preconditioner) is not
    DIVERGED_SINGULAR = -6      # matrix numerically singular for this method
    DIVERGED_NAN = -7           # NaN or Inf appeared
    DIVERGED_STAGNATION = -8    # no progress over many iterations
    DIVERGED_TOLERANCE_UNREACHABLE = -9  # achieved accuracy limited by conditioning
    LEAST_SQUARES_ONLY = -10    # A x = b has no solution; x is a least-squares one (auto's fallback)
    # The kernel said it converged, but the a-posteriori certificate (matcli.jobs.certificate) misses
    # what was asked; the name says which check failed.
    CERTIFICATE_RESIDUAL = -11      # residual / backward error / least-squares optimality of the answer
    CERTIFICATE_TRIPLETS = -12      # singular-triplet or eigenpair residuals
    CERTIFICATE_ORTHOGONALITY = -13  # computed bases (U, V, Q) are not orthonormal
    CERTIFICATE_COUNT = -14         # fewer triplets / eigenpairs / components than requested
    CERTIFICATE_ERROR = -15         # reconstruction, training or held-out error misses its target

    @property
    def converged(self) -> bool:
        return self.value > 0

    @property
    def reason(self) -> str:
        return self.name.lower()


@dataclass
class Result:
    """What a kernel returns.

    Attributes
    ----------
    status : Status
        Signed reason for stopping.
    outputs : dict[str, array-like]
        Named result arrays (``x``, ``U``, ``s``, ``Vt``, ...) the runner writes to the output file.
        Dense ``numpy.ndarray`` or ``scipy.sparse`` matrices.
    metrics : dict[str, float]
        Evidence of correctness: ``relative_residual``, ``backward_error``, ``val_rmse``,
        ``reconstruction_error``, ``orthogonality_loss`` ... all plain floats.
    iterations : int
        Iterations / sweeps performed (0 for direct methods).
    history : dict[str, list[float]]
        Per-iteration series (e.g. ``residual``), one value per iteration.
    info : dict[str, Any]
        JSON-serialisable extra facts: resolved parameters, auto choices and their reasons,
        per-system figures in batch mode.
    message : str
        One human sentence on the outcome (e.g. why it failed and what to try).
    """

    status: Status
    outputs: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    iterations: int = 0
    history: dict[str, list[float]] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    message: str = ""

    def merged_info(self, extra: Mapping[str, Any]) -> dict[str, Any]:
        out = dict(self.info)
        out.update(extra)
        return out
