"""Ridge parameter selection by generalised cross-validation (GCV) on the sketched problem.

With the sketch ``S A = U diag(sigma) V^T`` (thin SVD, d x n) and ``z = U^T S b``, the sketched ridge
problem ``min ||S(Ax - b)||^2 + lam ||x||^2`` has, for every lam at O(n) cost,

    residual^2(lam) = ||Sb - U z||^2 + sum_i (lam / (sigma_i^2 + lam))^2 z_i^2
    df(lam)         = sum_i sigma_i^2 / (sigma_i^2 + lam)
    GCV(lam)        = d * residual^2(lam) / (d - df(lam))^2

The sketch is a subspace embedding of [A, b], so the sketched problem is a ridge regression with
d samples and (approximately) the same noise level, and GCV on it estimates the prediction risk
(cf. Patil & LeJeune, "Asymptotically free sketched ridge ensembles", 2024).
"""

from __future__ import annotations

import numpy as np


def gcv_curve(lams: np.ndarray, sigma: np.ndarray, z: np.ndarray, outside: float, d: int) -> np.ndarray:
    """GCV values of the sketched ridge problem at each ``lams`` (shape (L,)).

    Parameters
    ----------
    lams : (L,) non-negative ridge parameters.
    sigma : (k,) singular values of S A.  z : (k,) coordinates ``U^T S b``.
    outside : ``||Sb - U z||^2``, the part of the sketched b outside range(SA).
    d : number of sketch rows.
    """
    lams = np.asarray(lams, dtype=np.float64)[:, None]
    s2 = (sigma**2)[None, :]
    shrink = lams / (s2 + lams)
    residual2 = outside + (shrink**2 * (z**2)[None, :]).sum(axis=1)
    df = (s2 / (s2 + lams)).sum(axis=1)
    return d * residual2 / np.maximum(d - df, 1e-300) ** 2


def choose_lambda(sigma: np.ndarray, z: np.ndarray, outside: float, d: int, *,
                  points: int = 241) -> tuple[float, dict[str, float]]:
    """Minimise sketched GCV over a log grid spanning sigma_max^2 * [1e-12, 1e2].

    Returns ``(lam, facts)`` with the GCV value and effective degrees of freedom at ``lam``, and
    ``facts["curve"]`` = {``lambdas``, ``gcv``}: the whole grid and its values (lists of ``points``).
    """
    top = float(sigma[0]) ** 2 if sigma.size and sigma[0] > 0 else 1.0
    lams = top * np.logspace(-12.0, 2.0, points)
    values = gcv_curve(lams, sigma, z, outside, d)
    best = int(np.argmin(values))
    lam = float(lams[best])
    df = float((sigma**2 / (sigma**2 + lam)).sum())
    return lam, {"gcv": float(values[best]), "effective_dof": df,
                 "grid_low": float(lams[0]), "grid_high": float(lams[-1]),
                 "at_grid_edge": float(best in (0, points - 1)),
                 "curve": {"lambdas": lams.tolist(), "gcv": values.tolist()}}
