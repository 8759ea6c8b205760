"""Top singular triplets of a matrix held as row blocks, by thick-restart Lanczos on ``A^H A``.

Over row blocks ``A_i`` the product ``A^H A p = sum_i A_i^H (A_i p)`` is one pass (a map over the
blocks, a sum in block order on the client), where Golub-Kahan's ``A p`` and ``A^H q`` are two, and
the m-long left basis of Golub-Kahan is never needed: the client holds only the n x (basis + 1)
right basis ``P``. The Krylov space ``span{p, (A^H A) p, ...}`` is the right space Golub-Kahan
builds from the same ``p``, so the number of steps is the same.

After ``j`` steps from a unit vector ``p_1`` (full reorthogonalisation, DGKS, as in
:mod:`matcli.methods.factorize.gkl`)

    A^H A P_j = P_j T_j + beta_j p_{j+1} e_j^H,

``T_j`` (j x j) real symmetric: tridiagonal, or after a thick restart (Wu and Simon 2000) the arrow
``[diag(theta_1^2..theta_keep^2), c; c^T, ...]`` with ``c_i = beta y_i[j]``. For an eigenpair
``T_j y = theta^2 y`` and ``v = P_j y``, ``u = A v / theta`` (so ``A v = theta u``):

    ||A^H u - theta v|| = ||A^H A v - theta^2 v|| / theta = beta |y[j]| / theta,

so the stop test ``beta |y[j]| / theta^2 <= tol`` is the one of :func:`~matcli.methods.factorize.gkl.lanczos_svd`
(every triplet's residual at most ``tol`` times its singular value), known without touching A. The
products with ``A^H A`` round at ``eps ||A||^2``, so the attainable relative residual of the i-th
triplet is about ``eps (s_1 / s_i)^2``: a smaller ``tol`` ends at ``maxiter`` (status
``diverged_max_it``, the best triplets returned).

The Ritz vectors ``V`` are then refined by one Rayleigh-Ritz step through TSQR (two passes, the
machinery of :mod:`matcli.methods.factorize.blocked_rsvd`): ``A V = Q R``, ``R = X diag(s) Y^H``,
``U = Q X``, ``V <- V Y``: U orthonormal by Householder whatever ``tol``, ``A v_i = s_i u_i`` to
rounding, and the last pass measures the certificate from A itself. Passes over A: steps + 2.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import scipy.linalg as sla

from matcli.core.result import Callback, Result, Status, no_callback
from matcli.methods.factorize.blocked_rsvd import _tsqr, finish_metrics
from matcli.methods.factorize.gkl import _orthogonalize, _random_unit


def blocked_lanczos_svd(problem, *, rank: int, tol: float = 1e-8, basis: int | None = None,
                        maxiter: int | None = None, rng: np.random.Generator, callback: Callback = no_callback,
                        **_ignored: Any) -> Result:
    """Top ``rank`` singular triplets of a row-block matrix by thick-restart Lanczos on ``A^H A``.

    Parameters
    ----------
    problem : object with ``shape`` (m, n), ``dtype`` (float64 or complex128), ``gram(p)``
        (``A^H A p``, (n,), one pass) and the TSQR passes ``basis_r`` and ``finish`` of
        :func:`~matcli.methods.factorize.blocked_rsvd.blocked_randomized_svd`, e.g.
        :class:`matcli.jobs.factorize_remote.RowBlockMatrix`.
    rank : int
        Triplets returned, ``1 <= rank < min(m, n)``.
    tol : float
        Stop when every one of the top ``rank`` Ritz triplets has ``||A^H u_i - theta_i v_i|| <= tol
        theta_i`` (see the module); ``tol >= 8 eps``.
    basis : int, optional
        Basis vectors before a restart (default ``max(3 rank, rank + 30)``, capped by ``min(m, n)``).
    maxiter : int, optional
        Cap on Lanczos steps, i.e. on passes of ``gram`` (default ``50 * basis``).
    rng : numpy.random.Generator
        Draws the starting vector (and a fresh direction after an invariant subspace) on the client,
        so the answer depends on the seed, not on the blocks or the workers.
    callback : Callback
        ``callback(step, residual=...)`` after every step from the ``rank``-th on, with the largest
        relative Ritz residual.

    Returns
    -------
    Result
        outputs ``U`` (m x rank, orthonormal), ``s`` (rank, descending), ``Vt`` (rank x n), with the
        sign convention of every matcli SVD; status ``converged_rtol``, ``converged_happy_breakdown``
        (an invariant subspace: exact triplets), ``diverged_max_it`` or ``diverged_nan``. Metrics of
        :func:`~matcli.methods.factorize.blocked_rsvd.finish_metrics` (measured from A over the
        blocks) plus ``max_ritz_residual``.
    """
    m, n = problem.shape
    if not 1 <= rank < min(m, n):
        raise ValueError(f"rank must be in 1..min(m, n) - 1 = {min(m, n) - 1} on row blocks, got {rank} "
                         "(the full SVD of a tall matrix: --method tsqr)")
    eps = np.finfo(np.float64).eps
    if not tol >= 8 * eps:
        raise ValueError(f"tol must be at least {8 * eps:.1e}, got {tol}")
    ell = min(basis or max(3 * rank, rank + 30), min(m, n))
    if ell < rank + 1:
        raise ValueError(f"basis must hold at least rank + 1 = {rank + 1} vectors")
    maxiter = maxiter or 50 * ell
    keep = min(rank + max(2, (ell - rank) // 2), ell - 1)
    info: dict[str, Any] = {"driver": "thick-restart Lanczos on A^H A over row blocks (one pass per step), "
                                      "Ritz vectors refined by Rayleigh-Ritz through TSQR",
                            "basis": ell, "kept_at_restart": keep, "tol": tol}
    ranges = [(0, n)]
    P = np.empty((n, ell + 1), dtype=problem.dtype, order="F")
    T = np.zeros((ell, ell))
    P[:, 0] = _random_unit(rng, n, problem.dtype, P[:, :0], ranges)

    j = steps = restarts = 0
    anorm = beta = 0.0
    status = Status.DIVERGED_MAX_IT
    lam = Y = None
    worst = math.inf
    while steps < maxiter:
        w = problem.gram(P[:, j])
        steps += 1
        if not np.all(np.isfinite(w)):
            return Result(Status.DIVERGED_NAN, message="A has NaN/Inf values",
                          info={**info, "lanczos_steps": steps, "passes_over_file": steps})
        # the recurrence's own terms first, so that reorthogonalisation removes only rounding
        coupled = np.flatnonzero(T[:j, j])
        if coupled.size:
            w -= P[:, coupled] @ T[coupled, j]
        alpha = float(np.vdot(P[:, j], w).real)
        w -= alpha * P[:, j]
        T[j, j] = alpha
        w, beta = _orthogonalize(w, P[:, :j + 1], ranges)
        anorm = max(anorm, abs(alpha), beta)
        if beta <= eps * math.sqrt(n) * anorm:
            # A^H A p_j lies in span(P): an invariant subspace; continue with a fresh direction
            beta = 0.0
            fresh = _random_unit(rng, n, problem.dtype, P[:, :j + 1], ranges) if j + 1 < min(m, n) else None
            P[:, j + 1] = 0.0 if fresh is None else fresh
        else:
            P[:, j + 1] = w / beta
        if j + 1 < ell:
            T[j, j + 1] = T[j + 1, j] = beta
        j += 1
        if j < rank:
            continue
        lam, Y = sla.eigh(T[:j, :j], check_finite=False)
        lam, Y = lam[::-1], Y[:, ::-1]
        rho = beta * np.abs(Y[j - 1, :rank])
        scale = np.maximum(lam[:rank], eps * max(lam[0], np.finfo(np.float64).tiny))
        worst = float(np.max(rho / scale))
        callback(steps, residual=worst)
        if worst <= tol:
            status = Status.CONVERGED_RTOL if beta > 0 else Status.CONVERGED_HAPPY_BREAKDOWN
            break
        if j == ell and steps < maxiter:
            # thick restart: the best `keep` Ritz vectors, then p_{ell+1}; the arrow T keeps the relation exact
            restarts += 1
            P[:, :keep] = P[:, :ell] @ Y[:, :keep]
            P[:, keep] = P[:, ell]
            T[:] = 0.0
            T[np.arange(keep), np.arange(keep)] = lam[:keep]
            T[:keep, keep] = T[keep, :keep] = beta * Y[ell - 1, :keep]
            j = keep
    if lam is None:
        # maxiter stopped the run before `rank` steps
        lam, Y = sla.eigh(T[:j, :j], check_finite=False)
        lam, Y = lam[::-1], Y[:, ::-1]
    k = min(rank, j)
    V = P[:, :j] @ Y[:, :k]
    info.update(lanczos_steps=steps, restarts=restarts, passes_over_file=steps + 2)
    Ts, R = _tsqr(problem.basis_r(V))
    if Ts is None:
        return Result(Status.DIVERGED_NAN, message="A has NaN/Inf values", info=info)
    X, s, Yh = sla.svd(R, full_matrices=False, check_finite=False)
    U, right2, AhU, error2, norm2, how = problem.finish(V, [T_i @ X for T_i in Ts], V @ Yh.conj().T, s)
    U, Vt, metrics = finish_metrics(U, s, V @ Yh.conj().T, AhU, right2, error2, norm2)
    metrics["max_ritz_residual"] = worst
    info["reconstruction_error_method"] = how
    info["rank"] = k
    message = (f"Lanczos on A^H A over row blocks: {steps} steps ({steps + 2} passes), {restarts} restarts, "
               f"max relative Ritz residual {worst:.2e} ({status.reason})")
    return Result(status=status, outputs={"U": U, "s": s, "Vt": Vt}, metrics=metrics, iterations=steps,
                  info=info, message=message)
