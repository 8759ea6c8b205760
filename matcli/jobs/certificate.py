"""The one place where a result's a-posteriori certificate decides its status.

Kernels stop on their own tests (recurrence estimates, stagnation, an iteration budget) and report
metrics computed from the answer itself (:mod:`matcli.methods.solve.system`,
:mod:`matcli.methods.factorize.metrics`, the completion and sketch kernels). After every compute the
runner calls :func:`certify`: it derives from the job what was asked (``--rtol``, ``--tol``,
``--rank``, ``--eps``, ...), compares each certificate with it, records every comparison in
``result.info["certificate"]`` and turns a positive status into the negative ``certificate_*`` status
of the first failed check (exit 3 under ``--strict``). A negative status stays as the kernel set it.

The limits, with ``eps`` the unit roundoff of float64 (every method computes in double precision):

* solve, square, iterative: ``relative_residual <= rtol`` (max over the right-hand sides of the true
  ``||b - A x|| / ||b||``); stationary methods alike.
* solve, direct (status ``converged_direct``): ``backward_error <= 30 n eps``, LAPACK TESTING's
  threshold on ``||b - A x|| / (||A|| ||x|| n eps)`` (xGET02).
* solve, least squares (rectangular ``A``, lsqr/lsmr, auto's fallback): ``relative_residual <= rtol``
  (a consistent system) or ``normal_residual <= max(atol, 30 max(m, n) eps)``.
* SVD: exactly ``--rank`` triplets; ``orthogonality_loss <= sqrt(k eps)``-scaled bound (see
  :func:`orthogonality_limit`); methods that claim singular triplets (dense, lanczos, arpack, propack,
  update) ``max_triplet_residual <= max(tol, TRIPLET_FLOOR)`` (``tol`` = ``--tol`` for lanczos, arpack,
  propack and update, whose triplets are approximate by design; 0 for the others); ``--rank auto`` the reconstruction error
  (or its indicator) within ``--tol``.
* rpca: ``||A - L - S||_F / ||A||_F <= --tol`` (recomputed from the written factors and S); L's
  factors orthonormal.
* eig: the requested number of pairs; eigen-residual within ``max(tol, TRIPLET_FLOOR)``; orthonormal
  eigenvectors for Hermitian input.
* QR/LU/Cholesky/LDL^T: ``||A - product||_F / ||A||_F <= 60 max(m, n) eps``; Q orthonormal.
* NMF and CUR: finite reconstruction error, at most 1 (no worse than the zero factorization), within
  ``--tol`` for CUR's ``--rank auto``.
* complete: finite training error; held-out error no worse than the baseline predictor on the same
  entries; robust completion's inlier residual within its tolerance.
* sketch-regress: the exact (LAPACK) mode as a direct least-squares solve; sketch-and-solve (one sketch, a probabilistic promise) a finite residual; with
  ``--eps``, the residual provably within ``1 + eps`` of the optimum (or the system
  consistent to ``rtol``); otherwise least-squares optimality within ``max(100 rtol, 1e-6)``.
* sketch-regress --ensemble K: each member's sketched ridge problem solved to backward error
  ``30 max(m, n) eps`` (the full ridge problem's residual is reported, not required).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from matcli.core.result import Result, Status

EPS = float(np.finfo(np.float64).eps)

#: Largest accepted relative triplet / eigenpair residual for a method whose own tolerance is 0 (=
#: machine precision) or unspecified: half the digits of double precision.
TRIPLET_FLOOR = math.sqrt(EPS)

#: LAPACK TESTING's threshold on its residual ratios (xGET01/02, xQRT01, xPOT01, ...).
LAPACK_RATIO = 30.0

#: Relative slack on tolerances a kernel tested itself on recomputed values (the same floats can round
#: differently when the certificate recomputes them).
SLACK = 1.0 + 1e-6


@dataclass(frozen=True)
class Check:
    """One comparison of a certificate with what was asked.

    ``value`` is None when the metric is missing (the check then fails: a certificate that cannot be
    evaluated does not certify). ``failure`` is the status a positive result gets when it fails.
    """

    name: str
    value: float | None
    limit: float
    failure: Status
    meaning: str

    @property
    def passed(self) -> bool:
        return self.value is not None and math.isfinite(self.value) and self.value <= self.limit

    def as_dict(self) -> dict[str, Any]:
        return {"check": self.name, "value": self.value, "limit": self.limit, "passed": self.passed,
                "meaning": self.meaning}


def certify(job, result: Result) -> Result:
    """Gate ``result.status`` on the certificate checks of ``job``'s family (see the module docstring).

    Returns the same :class:`Result`, with ``info["certificate"]`` holding every check and, when a
    positive status fails one, that check's ``certificate_*`` status and a message naming it.
    """
    rules = _RULES.get(job.family)
    checks = rules(job, result) if rules else []
    result.info["certificate"] = {"passed": all(c.passed for c in checks),
                                  "checks": [c.as_dict() for c in checks]}
    failed = [c for c in checks if not c.passed]
    if failed and result.status.converged:
        first = failed[0]
        shown = "missing" if first.value is None else f"{first.value:.3g}"
        said = result.status.reason
        result.status = first.failure
        result.message = (f"the kernel stopped with {said}, but the certificate fails: {first.name} = {shown} "
                          f"> {first.limit:.3g} ({first.meaning})" + (f". {result.message}" if result.message else ""))
    return result


def _metric(result: Result, *names: str) -> float | None:
    """The first of ``names`` present in ``result.metrics`` (as a float), else None."""
    for name in names:
        value = result.metrics.get(name)
        if value is not None:
            try:
                return float(value)
            except (TypeError, ValueError):
                return float("nan")
    return None


# ----------------------------------------------------------------------------- solve
_DIRECT_SOLVES = {"lu", "cholesky", "ldl"}
_LEAST_SQUARES = {"lsqr", "lsmr", "lstsq"}


def _solve_checks(job, result: Result) -> list[Check]:
    shape = _solve_shape(job)
    if shape is None:
        return []
    m, n = shape
    rtol = float(job.rtol)
    relative = _metric(result, "relative_residual")
    if m != n or job.method in _LEAST_SQUARES or result.status == Status.LEAST_SQUARES_ONLY:
        atol = float(job.resolved_params.get("atol", 0.0) or 0.0)
        limit = max(atol, LAPACK_RATIO * max(m, n) * EPS)
        if relative is not None and relative <= rtol * SLACK:
            return [Check("relative_residual", relative, rtol * SLACK, Status.CERTIFICATE_RESIDUAL,
                          "||b - A x|| / ||b|| <= --rtol: a solution of the consistent system")]
        return [Check("normal_residual", _metric(result, "normal_residual"), limit * SLACK,
                      Status.CERTIFICATE_RESIDUAL,
                      "||A^H r|| / (||A||_F (||A||_F ||x|| + ||b||)) <= max(atol, 30 max(m, n) eps): "
                      "a least-squares solution")]
    if result.status == Status.CONVERGED_DIRECT or job.method in _DIRECT_SOLVES:
        return [Check("backward_error", _metric(result, "backward_error"), LAPACK_RATIO * n * EPS,
                      Status.CERTIFICATE_RESIDUAL,
                      "normwise backward error <= 30 n eps (LAPACK TESTING's xGET02 ratio < 30)")]
    return [Check("relative_residual", relative, rtol * SLACK, Status.CERTIFICATE_RESIDUAL,
                  "true ||b - A x|| / ||b|| <= --rtol, for every right-hand side")]


def _solve_shape(job) -> tuple[int, int] | None:
    systems = getattr(job, "systems", None)
    if not systems:
        return None
    shapes = {tuple(s.A.shape) for s in systems}
    return max(shapes) if len(shapes) > 1 else shapes.pop()


# ----------------------------------------------------------------------------- factorize
#: SVD methods whose triplets are meant to be singular triplets (not a low-rank approximation).
_TRIPLET_METHODS = {"svd-dense", "svd-lanczos", "svd-arpack", "svd-propack", "svd-update", "svd-tsqr"}
_FACTORIZATIONS = {"qr", "lu", "cholesky", "ldl"}


def orthogonality_limit(k: int, n: int) -> float:
    """Largest accepted ``||Q^H Q - I||_F`` for ``k`` computed orthonormal vectors of length ``n``:
    ``max(sqrt(k) sqrt(eps), 60 max(k, n) eps)`` (Householder bases reach the second, Lanczos with
    selective reorthogonalization the first)."""
    return max(math.sqrt(max(k, 1)) * math.sqrt(EPS), 60.0 * max(k, n) * EPS)


def _factorize_checks(job, result: Result) -> list[Check]:
    kind, method = job.kind, job.method
    m, n = job.shape
    params = job.resolved_params
    checks: list[Check] = []
    if kind == "svd":
        s = result.outputs.get("s")
        k = int(np.size(s)) if s is not None else 0
        checks += _count(params.get("rank"), k, "triplets")
        checks.append(Check("orthogonality_loss", _metric(result, "orthogonality_loss"),
                            orthogonality_limit(k, max(m, n)), Status.CERTIFICATE_ORTHOGONALITY,
                            "||U^H U - I||_F and ||V^H V - I||_F"))
        if method in _TRIPLET_METHODS and s is not None and k and float(np.max(s)) > 0:
            tol = (float(params.get("tol") or 0.0)
                   if method in ("svd-lanczos", "svd-arpack", "svd-propack", "svd-update") else 0.0)
            checks.append(Check("max_triplet_residual", _metric(result, "max_triplet_residual"),
                                max(tol, TRIPLET_FLOOR), Status.CERTIFICATE_TRIPLETS,
                                "max_i max(||A v_i - s_i u_i||, ||A^H u_i - s_i v_i||) / s_1"))
        if params.get("rank") in (None, "auto") and params.get("tol") and method != "svd-update":
            checks.append(_error_target(result, float(params["tol"])))
    elif kind == "rpca":
        rtol = float(params.get("rtol", 1e-7))
        checks.append(Check("relative_residual", _metric(result, "relative_residual"), rtol * SLACK,
                            Status.CERTIFICATE_RESIDUAL, "robust PCA: ||A - U diag(s) Vt - S||_F / ||A||_F <= --tol"))
        s = result.outputs.get("s")
        k = int(np.size(s)) if s is not None else 0
        checks.append(Check("orthogonality_loss", _metric(result, "orthogonality_loss"),
                            orthogonality_limit(k, max(m, n)), Status.CERTIFICATE_ORTHOGONALITY,
                            "||U^H U - I||_F and ||V^H V - I||_F of L's factors"))
    elif kind == "eig":
        w = result.outputs.get("w")
        k = int(np.size(w)) if w is not None else 0
        checks += _count(params.get("rank"), k, "eigenpairs")
        tol = float(params.get("tol") or 0.0)
        checks.append(Check("max_eigen_residual", _metric(result, "max_eigen_residual", "residual"),
                            max(tol, TRIPLET_FLOOR), Status.CERTIFICATE_TRIPLETS,
                            "max_i ||A v_i - w_i v_i|| relative to the largest |w| (or ||A||)"))
        if "orthogonality_loss" in result.metrics:
            checks.append(Check("orthogonality_loss", _metric(result, "orthogonality_loss"),
                                orthogonality_limit(k, n), Status.CERTIFICATE_ORTHOGONALITY,
                                "||V^H V - I||_F of a Hermitian matrix's eigenvectors"))
    elif kind in _FACTORIZATIONS:
        checks.append(Check("factorization_residual", _metric(result, "factorization_residual",
                                                              "reconstruction_error"),
                            2 * LAPACK_RATIO * max(m, n) * EPS, Status.CERTIFICATE_RESIDUAL,
                            "||A - product||_F / ||A||_F <= 60 max(m, n) eps"))
        if kind == "qr" and "orthogonality_loss" in result.metrics:
            q = result.outputs.get("Q")
            k = q.shape[1] if q is not None else min(m, n)
            checks.append(Check("orthogonality_loss", _metric(result, "orthogonality_loss"),
                                orthogonality_limit(k, m), Status.CERTIFICATE_ORTHOGONALITY, "||Q^H Q - I||_F"))
    elif kind in ("nmf", "cur"):
        if kind == "cur" and params.get("rank") in (None, "auto") and params.get("tol"):
            checks.append(_error_target(result, float(params["tol"])))
        else:
            checks.append(Check("reconstruction_error", _metric(result, "reconstruction_error"), 1.0,
                                Status.CERTIFICATE_ERROR,
                                "finite, and no worse than the zero factorization (relative error 1)"))
    return checks


def _count(wanted: Any, k: int, what: str) -> list[Check]:
    """For an integer ``--rank``: a check that all ``wanted`` triplets / pairs came back (value: the
    number missing)."""
    if not isinstance(wanted, int) or isinstance(wanted, bool):
        return []
    return [Check(what, float(wanted - k), 0.0, Status.CERTIFICATE_COUNT,
                  f"--rank {wanted} {what} returned (got {k}); the value counts the missing ones")]


def _error_target(result: Result, tol: float) -> Check:
    """``--rank auto``: the relative Frobenius error (or the method's certified indicator) within ``--tol``."""
    return Check("reconstruction_error", _metric(result, "error_indicator", "reconstruction_error"), tol * SLACK,
                 Status.CERTIFICATE_ERROR, "relative Frobenius error ||A - A_k||_F / ||A||_F <= --tol")


# ----------------------------------------------------------------------------- complete
def _complete_checks(job, result: Result) -> list[Check]:
    checks = [Check("train_rmse", _metric(result, "train_rmse"), math.inf, Status.CERTIFICATE_ERROR,
                    "a finite training error")]
    val, base = _metric(result, "val_rmse"), _metric(result, "baseline_val_rmse")
    if val is not None and base is not None:
        checks.append(Check("val_rmse", val, base, Status.CERTIFICATE_ERROR,
                            "held-out RMSE no worse than the baseline predictor's on the same entries"))
    inlier = _metric(result, "inlier_relative_residual")
    if inlier is not None:
        limit = float(result.info.get("inlier_tolerance", job.resolved_params.get("rtol", 1e-3)))
        checks.append(Check("inlier_relative_residual", inlier, limit * SLACK, Status.CERTIFICATE_ERROR,
                            "robust completion: relative residual on the entries it keeps as inliers"))
    return checks


# ----------------------------------------------------------------------------- sketch-regress
#: Least-squares optimality accepted without --eps when --rtol asks for less (sketch kernels' own floor).
SKETCH_OPTIMALITY_FLOOR = 1e-6


def _sketch_checks(job, result: Result) -> list[Check]:
    rtol = float(job.resolved_params.get("rtol", getattr(job, "rtol", 1e-10)) or 1e-10)
    relative = _metric(result, "relative_residual")
    if relative is not None and relative <= rtol * SLACK:
        return [Check("relative_residual", relative, rtol * SLACK, Status.CERTIFICATE_RESIDUAL,
                      "||b - A x|| / ||b|| <= --rtol: the system is consistent")]
    if job.method == "lapack":
        m, n = job.problem_info.get("shape", (0, 0))
        return [Check("normal_residual", _metric(result, "normal_residual"), LAPACK_RATIO * max(m, n, 1) * EPS,
                      Status.CERTIFICATE_RESIDUAL,
                      "exact solve: ||A^H r - lam x|| / (||A||_F (||A||_F ||x|| + ||b||)) <= 30 max(m, n) eps")]
    if job.method == "sketch-and-solve":
        # one sketch, no iterations: 1 + eps holds with high probability by the sketch size; the
        # a-posteriori bound (metrics.residual_ratio_estimate) is often far looser than the truth
        return [Check("relative_residual", relative, math.inf, Status.CERTIFICATE_RESIDUAL,
                      "sketch-and-solve: a finite residual (its 1 + eps is a probabilistic promise)")]
    if job.method == "ridge-ensemble":
        # --ensemble asks for the average of exactly solved sketched ridge problems; it does not
        # solve the full ridge problem (metrics.full_ridge_normal_residual says how far it is)
        m, n = job.problem_info.get("shape", (0, 0))
        return [Check("member_normal_residual", _metric(result, "member_normal_residual"),
                      LAPACK_RATIO * max(m, n, 1) * EPS, Status.CERTIFICATE_RESIDUAL,
                      "ridge ensemble: every member solves its sketched ridge problem, max_k ||(A S_k)^T r_k - "
                      "lam w_k|| / (||A S_k||_F (||A S_k||_F ||w_k|| + ||b||)) <= 30 max(m, n) eps")]
    eps = job.resolved_params.get("eps")
    if eps is not None:
        return [Check("residual_ratio_estimate", _metric(result, "residual_ratio_estimate"),
                      1.0 + float(eps), Status.CERTIFICATE_RESIDUAL,
                      "a-posteriori bound on ||b - A x|| / min ||b - A y|| <= 1 + --eps")]
    return [Check("optimality", _metric(result, "optimality"),
                  max(100.0 * rtol, SKETCH_OPTIMALITY_FLOOR), Status.CERTIFICATE_RESIDUAL,
                  "||A^H r|| / (||A|| ||r||) <= max(100 --rtol, 1e-6)")]


_RULES: dict[str, Callable[[Any, Result], list[Check]]] = {
    "solve": _solve_checks,
    "factorize": _factorize_checks,
    "complete": _complete_checks,
    "sketch": _sketch_checks,
}
