"""Setup factories registered for ``matcli solve``: ``prepare_<method>(A, ...)`` does the expensive,
once-only work (factorization, AMG hierarchy, ILU, spectrum estimates) and returns a
:class:`Solver` whose ``solve`` runs the cheap part for any right-hand side block.

Every factory and every ``Solver.solve`` / ``update`` first passes the matrix through
:func:`matcli.methods.solve.system.as_matrix`, so all methods accept float32, float64, complex64,
complex128, integer and bool matrices and compute in float64 (complex128 for complex input).

Separating the two is what lets the runner time ``setup`` and ``compute`` as phases, lets many
right-hand sides share one setup, and lets a batch of related matrices reuse it (``update``).
"""

from __future__ import annotations

import abc
import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from matcli.core.errors import UsageError
from matcli.core.result import Callback, Result, Status, no_callback
from matcli.methods.solve import direct, krylov, precond, stationary
from matcli.methods.solve.system import as_block, as_matrix, solution_metrics


@dataclass
class Solver(abc.ABC):
    """A prepared solver for matrices like the one it was set up with.

    ``solve(A, B, x0=, rtol=, maxiter=, callback=)`` returns a :class:`Result`; ``A`` may be a
    different matrix with the same pattern after :meth:`update`. Both convert ``A`` to float64 /
    complex128 (:func:`~matcli.methods.solve.system.as_matrix`) before the subclass sees it.
    """

    method: str
    info: dict[str, Any] = field(default_factory=dict)

    def solve(self, A, B, *, x0=None, rtol: float = 1e-8, maxiter: int | None = None,
              callback: Callback = no_callback) -> Result:
        """Solve ``A X = B`` for (n,) or (n, k) ``B`` with the prepared setup; ``x`` is float64, or
        complex128 when ``A`` or ``B`` is complex.

        A real ``A`` with a complex ``B`` is solved as the real block ``[Re B, Im B]`` of twice the
        columns: the setup (factors, preconditioner) stays real, and each complex column meets
        ``rtol`` when its real and imaginary parts do.
        """
        A = as_matrix(A)
        B = np.asarray(B)
        if x0 is not None and np.iscomplexobj(x0) and not np.iscomplexobj(B):
            B = B.astype(np.complex128)  # a complex start makes the iterates complex: keep its imaginary part
        if not np.iscomplexobj(B) or np.iscomplexobj(A):
            return self._solve(A, B, x0=x0, rtol=rtol, maxiter=maxiter, callback=callback)
        B2, X0, was_vector = as_block(A, B, x0)
        k = B2.shape[1]
        X0 = None if x0 is None else np.hstack([X0.real, X0.imag])
        split = self._solve(A, np.hstack([B2.real, B2.imag]), x0=X0, rtol=rtol, maxiter=maxiter, callback=callback)
        if "x" not in split.outputs:
            return split
        parts = np.asarray(split.outputs["x"])
        X = parts[:, :k] + 1j * parts[:, k:]
        metrics = {**split.metrics, **solution_metrics(A, X, B2)}
        return dataclasses.replace(split, outputs={**split.outputs, "x": X[:, 0] if was_vector else X},
                                   metrics=metrics, info={**split.info, "complex_rhs": "real and imaginary parts"})

    def update(self, A, *, rebuild: bool = False) -> str:
        """Adapt to a new matrix of the same pattern; return what was done (for the report)."""
        return self._update(as_matrix(A), rebuild=rebuild)

    @abc.abstractmethod
    def _solve(self, A, B, *, x0, rtol: float, maxiter: int | None, callback: Callback) -> Result:
        """:meth:`solve` for ``A`` already in the compute dtype."""

    @abc.abstractmethod
    def _update(self, A, *, rebuild: bool) -> str:
        """:meth:`update` for ``A`` already in the compute dtype."""


@dataclass
class DirectSolver(Solver):
    kind: str = "lu"
    factorization: direct.Factorization | None = None
    refine: int = 0

    def _solve(self, A, B, *, x0, rtol, maxiter, callback) -> Result:
        return direct.solve_factored(A, self.factorization, B, callback=callback, refine=self.refine)

    def _update(self, A, *, rebuild: bool) -> str:
        old = self.factorization
        reuse = None if rebuild or old is None or old.perm_c is None else old.perm_c
        backend = "auto" if old is None else old.requested_backend
        self.factorization = direct.factorize(A, self.kind, perm_c=reuse, backend=backend)
        if self.factorization.failure is not None and reuse is not None:
            self.factorization = direct.factorize(A, self.kind, backend=backend)
            return "refactored (new ordering)"
        return "refactored (ordering reused)" if reuse is not None else "refactored"


@dataclass
class KrylovSolver(Solver):
    kernel: Callable[..., Result] | None = None
    precond_name: str = "none"
    preconditioner: precond.Preconditioner | None = None
    options: dict[str, Any] = field(default_factory=dict)
    precond_params: dict[str, Any] = field(default_factory=dict)
    symmetric: bool = False
    rng: np.random.Generator | None = None

    def _solve(self, A, B, *, x0, rtol, maxiter, callback) -> Result:
        extra = dict(self.options)
        if self.preconditioner is not None:
            extra["M"] = self.preconditioner
        result = self.kernel(A, B, x0=x0, rtol=rtol, maxiter=maxiter, callback=callback, **extra)
        if self.method == "minres" and result.status == Status.DIVERGED_NOT_SPD and \
                self.precond_name not in ("none", "jacobi"):
            # MINRES handles an indefinite A but needs an HPD preconditioner, and r^H M^-1 r < 0 showed
            # this one is not (an AMG cycle or a Chebyshev polynomial of an indefinite matrix): the
            # |diag(A)| scaling always is, so the solve is repeated with it, for this and later systems
            reason = (f"{self.precond_name} is not positive definite on this matrix (MINRES met "
                      "r^H M^-1 r < 0), so jacobi (|diag(A)|)")
            self.info["preconditioner_requested"] = self.info.get("preconditioner_requested", self.precond_name)
            self.info["preconditioner_fallback"] = reason
            self.preconditioner = precond.jacobi(A, absolute=True)
            self.precond_name = self.info["preconditioner"] = "jacobi"
            self.info["preconditioner_info"] = self.preconditioner.info
            spent = result.iterations
            extra["M"] = self.preconditioner
            budget = None if maxiter is None else max(int(maxiter) - spent, 1)
            result = self.kernel(A, B, x0=x0, rtol=rtol, maxiter=budget,
                                 callback=krylov.shifted_callback(callback, spent), **extra)
            result.iterations += spent
            result.metrics["iterations"] = float(result.iterations)
            result.info["preconditioner_fallback"] = reason
        return result

    def _update(self, A, *, rebuild: bool) -> str:
        if self.preconditioner is None or self.precond_name == "none":
            return "nothing to set up"
        if not rebuild:
            return "preconditioner reused"
        self.preconditioner = precond.build_with_fallback(
            A, self.info.get("preconditioner_requested", self.precond_name), symmetric_matrix=self.symmetric,
            params=self.precond_params, rng=self.rng, spd=self.method in SPD_PRECOND_METHODS)
        self.precond_name = self.preconditioner.name
        return "preconditioner rebuilt" + (f" ({self.preconditioner.info['fallback']})"
                                           if "fallback" in self.preconditioner.info else "")


@dataclass
class SORSolver(Solver):
    omega: float = 1.0
    symmetric_sweep: bool = False

    def _solve(self, A, B, *, x0, rtol, maxiter, callback) -> Result:
        return stationary.sor(A, B, omega=self.omega, symmetric=self.symmetric_sweep, x0=x0, rtol=rtol,
                              maxiter=maxiter, callback=callback)

    def _update(self, A, *, rebuild: bool) -> str:
        stationary.check_sor_matrix(A)
        return "nothing to set up"


def _direct(kind: str):
    def prepare(A, *, params: dict[str, Any], precond_name: str = "none", symmetric: bool = False,
                rng: np.random.Generator | None = None) -> DirectSolver:
        A = as_matrix(A)
        fact = direct.factorize(A, kind, backend=params.get("backend", "auto"))
        return DirectSolver(kind, dict(fact.info), kind=kind, factorization=fact, refine=int(params.get("refine", 0)))

    prepare.__doc__ = f"Factor ``A`` ({kind}); the solver solves all right-hand sides with the factors."
    return prepare


prepare_lu = _direct("lu")
prepare_cholesky = _direct("cholesky")
prepare_ldl = _direct("ldl")

_PRECOND_KEYS = ("ilu_drop_tol", "ilu_fill_factor", "amg_cycle", "cheb_degree")
#: Methods whose preconditioner must be Hermitian positive definite.
SPD_PRECOND_METHODS = ("cg", "minres")


def _krylov(name: str, kernel, uses_precond: bool, option_keys: tuple[str, ...] = ()):
    def prepare(A, *, params: dict[str, Any], precond_name: str = "none", symmetric: bool = False,
                rng: np.random.Generator | None = None) -> KrylovSolver:
        A = as_matrix(A)
        if uses_precond and precond_name == "amg-rs" and np.iscomplexobj(A):
            raise UsageError("--precond amg-rs (Ruge-Stuben, pyamg) takes real matrices only; "
                             "use amg-sa, ilu, ic, chebyshev or jacobi for complex ones")
        rng = rng if rng is not None else np.random.default_rng(0)
        pparams = {k: params[k] for k in _PRECOND_KEYS if k in params}
        M = precond.build_with_fallback(A, precond_name, symmetric_matrix=symmetric, params=pparams, rng=rng,
                                        spd=name in SPD_PRECOND_METHODS) if uses_precond else None
        options = {k: params[k] for k in option_keys if k in params}
        info = {"preconditioner": M.name if M is not None else "none"}
        if M is not None:
            info["preconditioner_info"] = M.info
            if "fallback" in M.info:
                info["preconditioner_requested"] = precond_name
                info["preconditioner_fallback"] = M.info["fallback"]
        solver = KrylovSolver(name, info, kernel=kernel, precond_name=M.name if M is not None else "none",
                              preconditioner=M, options=options, precond_params=pparams, symmetric=symmetric,
                              rng=rng)
        return solver

    prepare.__doc__ = f"Build the preconditioner for {name}; the solver runs the iteration."
    return prepare


prepare_cg = _krylov("cg", krylov.cg, True)
prepare_minres = _krylov("minres", krylov.minres, True)
prepare_gmres = _krylov("gmres", krylov.gmres, True, ("restart",))
prepare_bicgstab = _krylov("bicgstab", krylov.bicgstab, True)
prepare_lsqr = _krylov("lsqr", krylov.lsqr, False, ("atol", "damp"))
prepare_lsmr = _krylov("lsmr", krylov.lsmr, False, ("atol", "damp"))


def _sor(symmetric_sweep: bool):
    def prepare(A, *, params: dict[str, Any], precond_name: str = "none", symmetric: bool = False,
                rng: np.random.Generator | None = None) -> SORSolver:
        A = as_matrix(A)
        stationary.check_sor_matrix(A)
        omega = float(params.get("omega", 0.0))
        how = "given"
        if omega == 0.0:
            omega = stationary.estimate_omega(A, rng if rng is not None else np.random.default_rng(0)) \
                if symmetric else 1.0
            how = "Young's formula from a Lanczos estimate of the Jacobi spectral radius" if symmetric \
                else "Gauss-Seidel (omega = 1) since the matrix is not symmetric"
            if symmetric and omega == 1.0:
                how = ("Gauss-Seidel (omega = 1): the diagonal is not positive or the Jacobi spectral radius "
                       "estimate is >= 1, where Young's formula does not apply")
        name = "ssor" if symmetric_sweep else "sor"
        return SORSolver(name, {"omega": omega, "omega_source": how}, omega=omega, symmetric_sweep=symmetric_sweep)

    return prepare


prepare_sor = _sor(False)
prepare_ssor = _sor(True)
