"""Ensembles of feature-sketched ridge regressions, tuned by GCV over the ridge and the sketch size.

Follows Patil & LeJeune, "Asymptotically free sketched ridge ensembles: risks, cross-validation, and
tuning" (ICLR 2024): the sketches act on the **features** (columns of A). Member k draws S_k (n x q)
and solves the q-dimensional ridge problem

    w_k = argmin_w ||A S_k w - b||^2 + lam ||w||^2,        x = (1/K) sum_k S_k w_k.

With the thin SVD ``A S_k = U_k diag(s_k) W_k^T`` and ``z_k = U_k^T b``, ``w_k = W_k diag(s/(s^2 + lam)) z_k``
for every lam at O(q) cost; ``lam = 0`` is the ridgeless (minimum-norm) member on the numerical rank.

GCV of the ensemble. The fitted values are ``A x = L b`` with ``L = (1/K) sum_k L_k`` and
``L_k = A S_k (S_k^T A^T A S_k + lam I)^+ S_k^T A^T``, so

    GCV(lam, q) = (||b - A x||^2 / m) / (1 - tr(L) / m)^2,   tr(L) = (1/K) sum_k sum_i s_ki^2 / (s_ki^2 + lam):

the **ensemble's** training error corrected by the **average** of the members' degrees of freedom.
This is the estimator the seed proves consistent for the ensemble's prediction risk for every K
(for asymptotically free sketches). The naive alternatives are biased for the ensemble: the average
of the members' own GCVs estimates the average member risk, which exceeds the ensemble's by the
variance the averaging removes; a single sketch's GCV estimates that one member's risk.
No correction is applied, and none is needed for these members: the finite-ensemble corrected GCV
(Bellec, Du, Koriyama, Patil, Tan, 2023; the observation-side case of the seed's discussion) corrects
ensembles whose members see different **rows** (subsampled or row-sketched observations), where
each member's training residuals mix in- and out-of-sample rows. Every member here fits all m rows
through a feature sketch, the case the seed proves plain ensemble GCV consistent for every K.
Measured (benchmarks/bench_ridge.py's workloads, K = 1, 4, 8): the test error at the lambda GCV
picks is 0.00-0.25% above the best lambda of the grid in hindsight (the naive average picks 1.7-11%
above it), so no estimator could improve the tuning measurably.
Sketch-size tuning: the seed shows that, for large ensembles, tuning q alone (down to lam = 0)
reaches the optimal ridge risk; ``sketch_size="auto"`` minimises GCV jointly over lam (including 0)
and q on :data:`SIZE_FRACTIONS` of n.

Sketches (``E[S^T S] = I_q``, so lam means the same for every kind and size):

srht
    ``S = D C^T R``: random signs D, the orthonormal DCT-II C and q of its rows chosen uniformly
    without replacement; S has orthonormal columns, and with q = n every member is the exact ridge
    solution. S (n x q) is built by inverse DCTs and A S formed by one product: for 20000 x 500,
    q = 125 on one thread the GEMM took 0.35 s, a DCT of every row of A (O(m n log n) flops, but
    strided passes and a copy) 1.4-2.1 s (loaded machine).
countsketch
    Each feature goes to one of q buckets with a random sign, scaled by sqrt(q/n). Sparse A:
    O(nnz(A)); dense A: the same product as srht (0.35 s above, against 0.78 s for scipy's
    dense-times-sparse product).
gaussian
    i.i.d. N(0, 1/n) entries. Cost O(m n q) (O(nnz(A) q) for sparse A).

Ensemble vs the exact ridge. For an orthonormal S (srht) the member is the Galerkin projection of
``(A^T A + lam I) x = A^T b`` on range(S): with ``H = A^T A + lam I`` and P the orthogonal projector on
range(S_k), ``||S_k w_k - x*||_H <= ||(I - P) x*||_H``, hence
``||x - x*|| <= sqrt(cond(H)) max_k ||(I - P_k) x*||``, zero at q = n.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.fft
import scipy.sparse as sp
import scipy.sparse.linalg

from matcli.core.result import Callback, Result, Status, no_callback
from matcli.methods.sketch.exact import numerical_rank, spectral_filter
from matcli.methods.sketch.regress import factor_sketch

FEATURE_SKETCHES = ("srht", "countsketch", "gaussian")
#: Sketch sizes q / n that ``sketch_size="auto"`` tries (the seed's psi = q / n in (0, 1]). The end
#: point q = n is the unsketched ridge (S = I, one member: what every orthonormal sketch of size n
#: gives), so GCV can also answer that no sketch is best; sizes between n / 2 and n would cost more
#: than K / 4 exact solves each.
SIZE_FRACTIONS = (1 / 16, 1 / 8, 1 / 4, 1 / 2, 1.0)
#: Ridge grid: 0 (ridgeless) and ||A||_F^2 * logspace(LAM_DECADES[0], LAM_DECADES[1]) at 8 points a decade.
LAM_DECADES = (-12.0, 0.0)
LAM_PER_DECADE = 8
#: LAPACK TESTING's threshold on residual ratios: a member whose sketched normal equations are off by
#: more than this many ``max(m, q) eps`` was not solved to the accuracy of a backward-stable SVD.
MEMBER_RATIO = 30.0
EPS = float(np.finfo(np.float64).eps)


@dataclass
class FeatureSketch:
    """One feature sketch S (n x q). ``kind`` is one of :data:`FEATURE_SKETCHES`, or ``identity``
    (q = n, S = I: the unsketched ridge, the end point of ``sketch_size="auto"``'s grid)."""

    kind: str
    n: int
    q: int
    signs: np.ndarray | None = None      # srht, countsketch: (n,) +-1
    rows: np.ndarray | None = None       # srht: (q,) DCT rows kept
    buckets: np.ndarray | None = None    # countsketch: (n,) bucket of each feature
    gauss: np.ndarray | None = None      # gaussian: (n, q)

    def dense(self) -> np.ndarray:
        """S as a dense (n, q) array."""
        if self.kind == "identity":
            return np.eye(self.n)
        if self.kind == "gaussian":
            return self.gauss
        return self.lift(np.eye(self.q))

    def apply(self, A) -> np.ndarray:
        """``A S`` as a dense (m, q) float64 array, A dense or scipy.sparse of shape (m, n)."""
        if self.kind == "identity":
            return np.asarray(A.toarray() if sp.issparse(A) else A, dtype=np.float64)
        if self.kind == "countsketch" and sp.issparse(A):
            S = sp.csr_matrix((self.signs * math.sqrt(self.q / self.n), (np.arange(self.n), self.buckets)),
                              shape=(self.n, self.q))
            return (A @ S).toarray()
        # a dense A times the explicit S: one GEMM beats a DCT of every row (module docstring)
        return np.asarray(A @ self.dense(), dtype=np.float64)

    def lift(self, w: np.ndarray) -> np.ndarray:
        """``S w`` for w of shape (q,) or (q, L)."""
        if self.kind == "identity":
            return w
        if self.kind == "gaussian":
            return self.gauss @ w
        if self.kind == "countsketch":
            scale = self.signs * math.sqrt(self.q / self.n)
            return (scale[:, None] * w[self.buckets]) if w.ndim == 2 else scale * w[self.buckets]
        # srht: D C^T places w on the kept DCT rows and transforms back (C^T = C^-1: the inverse DCT)
        placed = np.zeros((self.n,) + w.shape[1:])
        placed[self.rows] = w
        signs = self.signs[:, None] if w.ndim == 2 else self.signs
        return signs * scipy.fft.idct(placed, axis=0, norm="ortho")


def draw_sketch(kind: str, n: int, q: int, rng: np.random.Generator) -> FeatureSketch:
    """A feature sketch of ``kind`` with q columns for n features (1 <= q <= n)."""
    if not 1 <= q <= n:
        raise ValueError(f"sketch size {q} must lie in [1, {n}]")
    if kind == "srht":
        return FeatureSketch(kind, n, q, signs=rng.choice((-1.0, 1.0), size=n),
                             rows=np.sort(rng.choice(n, size=q, replace=False)))
    if kind == "countsketch":
        return FeatureSketch(kind, n, q, signs=rng.choice((-1.0, 1.0), size=n), buckets=rng.integers(0, q, size=n))
    if kind == "gaussian":
        return FeatureSketch(kind, n, q, gauss=rng.standard_normal((n, q)) / math.sqrt(n))
    raise ValueError(f"unknown feature sketch {kind!r}; choose one of {', '.join(FEATURE_SKETCHES)}")


@dataclass
class Member:
    """One fitted member: ``A S = U diag(s) W^T`` kept as (W, s, z = U^T b) and its numerical rank."""

    sketch: FeatureSketch
    W: np.ndarray
    s: np.ndarray
    z: np.ndarray
    rank: int

    def filters(self, lams: np.ndarray) -> np.ndarray:
        """(q, L) spectral factors of w(lam) for every lam (minimum norm at lam = 0)."""
        return np.stack([spectral_filter(self.s, self.rank, float(lam)) for lam in lams], axis=1)

    def dof(self, lams: np.ndarray) -> np.ndarray:
        """(L,) tr(L_k) = sum_i s_i^2 / (s_i^2 + lam) (the filters' own sums); the rank at lam = 0."""
        s2 = (self.s**2)[:, None]
        lams = np.asarray(lams, dtype=np.float64)
        ratio = (s2 / (s2 + np.where(lams > 0, lams, 1.0)[None, :])).sum(axis=0)
        return np.where(lams > 0, ratio, float(self.rank))

    def coefficients(self, lams: np.ndarray) -> np.ndarray:
        """(n, L) ``S w(lam)`` for every lam."""
        return self.sketch.lift(self.W @ (self.filters(lams) * self.z[:, None]))


def fit_member(A, b: np.ndarray, sketch: FeatureSketch) -> Member:
    """SVD of ``A S`` (m x q) and the coordinates of b in its left singular vectors.

    For m > q through the triangle of ``QR([A S, b])`` and the SVD of its q x q corner
    (:func:`~matcli.methods.sketch.regress.factor_sketch`): U (m x q) is never formed.
    """
    AS = sketch.apply(A)
    m, q = AS.shape
    if m > q:
        factor = factor_sketch(AS, b, need_svd=True)
        return Member(sketch, factor.V, factor.sigma, factor.z, numerical_rank(factor.sigma, m, q))
    U, s, Wt = np.linalg.svd(AS, full_matrices=False)
    return Member(sketch, Wt.T.copy(), s, U.T @ b, numerical_rank(s, m, q))


def ensemble_gcv(A, b: np.ndarray, members: list[Member], lams: np.ndarray) -> dict[str, np.ndarray]:
    """GCV of the ensemble of ``members`` at each of ``lams`` (the module docstring's formula).

    Returns arrays of shape (L,): ``gcv``, ``dof`` (tr L), ``train_error`` (||b - A x||^2 / m), and
    ``coefficients`` of shape (n, L) (the ensemble's x for each lam).
    """
    m = A.shape[0]
    X = sum(member.coefficients(lams) for member in members) / len(members)
    fitted = np.asarray(A @ X)
    train = ((b[:, None] - fitted) ** 2).sum(axis=0) / m
    dof = sum(member.dof(lams) for member in members) / len(members)
    left = 1.0 - dof / m
    with np.errstate(divide="ignore"):
        gcv = np.where(left > 0, train / np.where(left > 0, left, 1.0) ** 2, np.inf)
    return {"gcv": gcv, "dof": dof, "train_error": train, "coefficients": X}


def lambda_count() -> int:
    """Length of :func:`lambda_grid` (0 and the logarithmic points)."""
    return int(round((LAM_DECADES[1] - LAM_DECADES[0]) * LAM_PER_DECADE)) + 2


def lambda_grid(A) -> np.ndarray:
    """0 and ``||A||_F^2 * 10^[-12, 0]`` at :data:`LAM_PER_DECADE` points a decade (||A||_F^2 >= sigma_max^2)."""
    frob2 = float(scipy.sparse.linalg.norm(A) ** 2 if sp.issparse(A) else np.linalg.norm(A) ** 2)
    top = frob2 if frob2 > 0 else 1.0
    return np.concatenate([[0.0], top * np.logspace(*LAM_DECADES, lambda_count() - 1)])


def size_grid(n: int, ensemble: int, sketch_size: int | str | None) -> list[int]:
    """Sketch sizes to try: the given one, ``auto``'s :data:`SIZE_FRACTIONS` of n, or by default
    ceil(n / K), as the seed's ensemble trick shares the n features out among K members (K QRs of
    m x n/K cost 1/K of one of m x n)."""
    if sketch_size == "auto":
        return sorted({max(1, int(round(f * n))) for f in SIZE_FRACTIONS})
    if sketch_size is None:
        return [max(1, math.ceil(n / ensemble))]
    return [int(sketch_size)]


def ridge_ensemble(A, b, *, ensemble: int, sketch: str = "srht", sketch_size: int | str | None = None,
                   ridge: float | str = "auto", rng: np.random.Generator,
                   callback: Callback = no_callback, **_ignored: Any) -> Result:
    """Average of ``ensemble`` feature-sketched ridge solutions, lam and q chosen by the ensemble's GCV.

    Parameters
    ----------
    A : (m, n) real ndarray or scipy.sparse matrix. b : (m,) real right-hand side.
    ensemble : K >= 1 members per sketch size.
    sketch : one of :data:`FEATURE_SKETCHES`.
    sketch_size : q in [1, n], ``"auto"`` (GCV over :func:`size_grid`; its q = n point is the
        unsketched ridge, one member with S = I), or None (ceil(n / K)).
    ridge : lam >= 0, or ``"auto"`` (GCV over :func:`lambda_grid`, 0 included).
    rng : generator of the sketches (K per sketch size, drawn in the order of the sizes).
    callback : called once per sketch size with its smallest GCV.

    Returns
    -------
    Result
        ``outputs["x"]`` (n,) float64, the ensemble at the chosen (lam, q); status ``converged_direct``
        when every member's sketched normal equations hold to ``MEMBER_RATIO max(m, q) eps``
        (``diverged_tolerance_unreachable`` otherwise, ``diverged_nan`` for non-finite input).
        Metrics: ``ridge``, ``sketch_size``, ``ensemble``, ``gcv``, ``effective_dof``, ``residual_norm``,
        ``relative_residual``, ``member_normal_residual`` (max_k ||(A S_k)^T r_k - lam w_k|| /
        (||A S_k||_F (||A S_k||_F ||w_k|| + ||b||))), and against the **full** ridge problem at lam
        (which the ensemble does not solve): ``ridge_gradient_norm`` = ||A^T (b - A x) - lam x|| and
        ``full_ridge_normal_residual`` (the same scaled by ||A||_F (||A||_F ||x|| + ||b||)).
        ``info["gcv_curve"]``: ``lambdas`` (L,), ``sketch_sizes`` (Q,), ``gcv`` (Q lists of L), ``dof``,
        ``chosen`` {lambda, sketch_size, gcv}.
    """
    b = np.asarray(b, dtype=np.float64).reshape(-1)
    A = A.tocsr().astype(np.float64) if sp.issparse(A) else np.asarray(A, dtype=np.float64)
    m, n = A.shape
    info: dict[str, Any] = {"mode": "ridge-ensemble", "sketch": sketch, "sketch_side": "features (columns of A)",
                            "ensemble": int(ensemble)}
    values = A.data if sp.issparse(A) else A
    if not (np.isfinite(values).all() and np.isfinite(b).all()):
        return Result(Status.DIVERGED_NAN, message="A or b has NaN/Inf values", info=info)
    if ensemble < 1:
        raise ValueError("ensemble must be >= 1")
    sizes = size_grid(n, ensemble, sketch_size)
    if ridge == "auto":
        lams = lambda_grid(A)
    else:
        lams = np.array([float(ridge)])
        if not lams[0] >= 0.0:
            raise ValueError("ridge must be non-negative")
    curves, dofs, fits = [], [], []
    for index, q in enumerate(sizes):
        if sketch_size == "auto" and q == n:
            members = [fit_member(A, b, FeatureSketch("identity", n, n))]
        else:
            members = [fit_member(A, b, draw_sketch(sketch, n, q, rng)) for _ in range(ensemble)]
        out = ensemble_gcv(A, b, members, lams)
        curves.append(out["gcv"])
        dofs.append(out["dof"])
        fits.append((members, out["coefficients"]))
        callback(index + 1, gcv=float(np.min(out["gcv"])))
    table = np.vstack(curves)
    best_q, best_l = np.unravel_index(int(np.argmin(table)), table.shape)
    lam, q = float(lams[best_l]), sizes[best_q]
    members, coefficients = fits[best_q]
    x = coefficients[:, best_l].copy()
    info["gcv_curve"] = {"lambdas": lams.tolist(), "sketch_sizes": list(sizes), "sketch_side": "features (columns)",
                         "members": [len(fit[0]) for fit in fits],
                         "gcv": [c.tolist() for c in curves], "dof": [d.tolist() for d in dofs],
                         "chosen": {"lambda": lam, "sketch_size": q, "gcv": float(table[best_q, best_l])}}
    if ridge == "auto":
        info["gcv_curve"]["chosen"]["at_grid_edge"] = bool(best_l == lams.size - 1)
    member_ratio = max(_member_normal_residual(A, b, member, lam) for member in members)
    metrics = {"ridge": lam, "sketch_size": float(q), "ensemble": float(ensemble),
               "gcv": float(table[best_q, best_l]), "effective_dof": float(dofs[best_q][best_l]),
               "member_normal_residual": member_ratio, **_full_problem_metrics(A, b, x, lam), "iterations": 0.0}
    status = Status.CONVERGED_DIRECT
    message = (f"ensemble of {ensemble} feature-sketched ridge solutions ({sketch}, q = {q} of {n} features, "
               f"lambda = {lam:.4g} by GCV)" if ridge == "auto" else
               f"ensemble of {ensemble} feature-sketched ridge solutions ({sketch}, q = {q} of {n} features)")
    if not np.isfinite(x).all():
        status = Status.DIVERGED_NAN
    elif not member_ratio <= MEMBER_RATIO * max(m, q) * EPS:
        status = Status.DIVERGED_TOLERANCE_UNREACHABLE
        message += f"; a member's sketched normal equations hold only to {member_ratio:.2g}"
    return Result(status=status, outputs={"x": x}, metrics=metrics, iterations=0, info=info, message=message)


def _member_normal_residual(A, b: np.ndarray, member: Member, lam: float) -> float:
    """``||(A S)^T (b - A S w) - lam w|| / (||A S||_F (||A S||_F ||w|| + ||b||))`` of one member at lam."""
    AS = member.sketch.apply(A)
    w = member.W @ (spectral_filter(member.s, member.rank, lam) * member.z)
    grad = AS.T @ (b - AS @ w) - lam * w
    frob = float(np.linalg.norm(AS))
    scale = frob * (frob * float(np.linalg.norm(w)) + float(np.linalg.norm(b)))
    return float(np.linalg.norm(grad)) / scale if scale > 0 else 0.0


def _full_problem_metrics(A, b: np.ndarray, x: np.ndarray, lam: float) -> dict[str, float]:
    """Residual and ridge-gradient measures of x against the full data at lam."""
    r = b - A @ x
    grad = A.T @ r - lam * x
    rnorm, bnorm = float(np.linalg.norm(r)), float(np.linalg.norm(b))
    frob = float(scipy.sparse.linalg.norm(A) if sp.issparse(A) else np.linalg.norm(A))
    gnorm = float(np.linalg.norm(grad))
    scale = frob * (frob * float(np.linalg.norm(x)) + bnorm)
    return {"residual_norm": rnorm, "relative_residual": rnorm / bnorm if bnorm > 0 else 0.0,
            "ridge_gradient_norm": gnorm, "full_ridge_normal_residual": gnorm / scale if scale > 0 else 0.0}
