"""Deflated CG (def-CG, Saad, Yeung, Erhel & Guyomarc'h, SIAM J. Sci. Comput. 21(5), 2000) across a
sequence of SPD systems, with the deflation space harvested as in :class:`RecyclingCG`.

With ``W`` (n, p) fixed for a system, ``AW = A W`` and the Cholesky factor of ``E = W^H A W`` are
formed once (p products with A). The start is the Galerkin projection ``x0 += W E^{-1} W^H r0``, so
``W^H r0 = 0``, and every search direction is made A-orthogonal to ``W``:
``p_{j+1} = z_{j+1} + beta_j p_j - W E^{-1} (AW)^H z_{j+1}``. The residuals then stay orthogonal to
``W`` and CG runs at the rate of the spectrum of ``M^{-1} A`` without the part ``W`` spans (the
effective condition number ``lambda_max / lambda_{p+1}`` when ``W`` spans the p lowest
eigenvectors), at ``4 n p`` flops per iteration on top of CG's. The Lanczos data of the run
(:class:`LanczosLog`) give new Ritz vectors, and ``W`` becomes the p smallest Ritz pairs of the
pencil ``(A, M)`` over ``span(W, new vectors)`` for the next system (``RecyclingCG._refresh``).
"""

from __future__ import annotations

import numpy as np
import scipy.linalg as sla

from matcli.core.result import Callback, Result, Status, no_callback
from matcli.methods.solve.batch import RecyclingCG
from matcli.methods.solve.krylov import TRUE_RESIDUAL, LanczosLog, _cg, combine_status, default_maxiter, status_message
from matcli.methods.solve.precond import Preconditioner, identity
from matcli.methods.solve.system import as_block, finish


class DeflatedCG(RecyclingCG):
    """def-CG over a sequence of SPD systems; the first system (no ``W`` yet) runs plain PCG.

    ``info`` of each result: ``recycled_dim`` (columns of ``W`` used), ``deflation`` (``"def-cg"``
    or ``"none"``) and ``ritz_residuals`` (relative residuals ``||A w - theta M w||_{M^-1} / theta``
    of the columns of ``W`` for the current matrix, computed from ``A W``, which the solve needs anyway).
    """

    def solve(self, A, B, *, M: Preconditioner | None = None, x0=None, rtol: float = 1e-8,
              maxiter: int | None = None, callback: Callback = no_callback) -> Result:
        n = A.shape[0]
        W = self.W if self.W is not None and self.W.shape[0] == n else None
        forward = (M or identity()).forward
        log = self._lanczos_log(n, forward is None)
        factor = None
        if W is not None:
            AW = np.asarray(A @ W)
            E = W.conj().T @ AW
            E = (E + E.conj().T) / 2
            try:
                factor = sla.cho_factor(E)
            except np.linalg.LinAlgError:
                factor = None
        if factor is None:
            result = _cg(A, B, M, x0, rtol, maxiter, callback, log)
            result.info["deflation"] = "none"
        else:
            result = _def_cg(A, B, M, x0, rtol, maxiter, callback, log, W, AW, factor)
            result.info["deflation"] = "def-cg"
            result.info["ritz_residuals"] = [float(v) for v in self._ritz_residuals(W, AW, np.real(np.diag(E)), M)]
        ritz = log.ritz(self.per_system, forward) if result.iterations >= 4 * self.dim else None
        if ritz is not None:
            self.W, self.MW = self._refresh(A, W, ritz[1], ritz[2])
        result.info["recycled_dim"] = 0 if factor is None else int(W.shape[1])
        return result

    def _lanczos_log(self, n: int, keep_images: bool) -> LanczosLog:
        vectors = max(8, min(int(self.memory_bytes // (16 * n)), self.max_vectors_factor * self.dim))
        if self._log is None or self._log.max_vectors != vectors or self._log.keep_images != keep_images:
            self._log = LanczosLog(vectors, keep_images)
        self._log.reset()
        return self._log


@np.errstate(over="ignore", invalid="ignore")
def _def_cg(A, B, M, x0, rtol, maxiter, callback, log: LanczosLog, W, AW, factor) -> Result:
    """def-CG for each column of ``B`` (the Lanczos data of the first column go to ``log``)."""
    M = M or identity()
    Bb, X, was_vector = as_block(A, B, x0)
    n, ncols = X.shape
    maxiter = default_maxiter(n, maxiter)
    statuses, col_its = [], np.zeros(ncols, dtype=np.int64)
    offset = 0
    for j in range(ncols):
        b = Bb[:, j]
        bnorm = float(np.linalg.norm(b))
        if bnorm == 0:
            X[:, j] = 0
            statuses.append(Status.CONVERGED_ZERO_RHS)
            continue
        first = j == 0
        x, status, its = _def_cg1(A, b, X[:, j].copy(), M, rtol * bnorm, maxiter, bnorm,
                                  lambda i, **v: callback(offset + i, **v) if first or "initial_residual" not in v
                                  else None, log if first else None, W, AW, factor)
        X[:, j] = x
        col_its[j] = its
        offset += its
        statuses.append(status)
    overall = combine_status(statuses)
    failed = sum(not s.converged for s in statuses)
    return finish(A, X, Bb, was_vector, overall, int(col_its.max(initial=0)), status_message(overall, ncols, failed),
                  {}, col_its)


def _def_cg1(A, b, x, M, tol, maxiter, bnorm, callback, log, W, AW, factor):
    AWH = np.ascontiguousarray(AW.conj().T)
    # K = W E^{-1}: the per-iteration correction is then two products with (n, p) blocks.
    K = np.ascontiguousarray(sla.cho_solve(factor, W.conj().T).conj().T)
    precondition = (lambda v: v) if M.name == "none" else (lambda v: M.apply(v.reshape(-1, 1))[:, 0])
    r = b - A @ x
    y = K.conj().T @ r
    x = x + W @ y
    r = r - AW @ y
    start_x, start_norm = x.copy(), float(np.linalg.norm(r))
    callback(0, initial_residual=start_norm / bnorm, residual_kind=TRUE_RESIDUAL)
    if start_norm <= tol and float(np.linalg.norm(b - A @ x)) <= tol:
        return x, Status.CONVERGED_RTOL, 0
    z = precondition(r)
    rho = float(np.real(np.vdot(r, z)))
    p = z - K @ (AWH @ z)
    if log is not None:
        log.vector(z, r, rho)
    best_x, best_norm = x.copy(), start_norm
    replacements = 0
    it = 0
    while it < maxiter:
        if not rho > 0:
            return best_x, Status.DIVERGED_NOT_SPD, it
        q = A @ p
        pq = float(np.real(np.vdot(p, q)))
        if not pq > 0:
            return best_x, (Status.DIVERGED_NAN if not np.isfinite(pq) else Status.DIVERGED_NOT_SPD), it
        it += 1
        alpha = rho / pq
        if log is not None:
            log.alphas.append(alpha)
        x += alpha * p
        r -= alpha * q
        rnorm = float(np.linalg.norm(r))
        callback(it, residual=rnorm / bnorm, residual_kind=TRUE_RESIDUAL)
        if not np.isfinite(rnorm):
            return best_x, Status.DIVERGED_NAN, it
        if rnorm < best_norm:
            best_x, best_norm = x.copy(), rnorm
        if rnorm <= tol:
            true_r = b - A @ x
            true_norm = float(np.linalg.norm(true_r))
            if true_norm <= tol:
                return x, Status.CONVERGED_RTOL, it
            if replacements >= 3:
                return x, Status.DIVERGED_TOLERANCE_UNREACHABLE, it
            replacements += 1
            r = true_r
        z = precondition(r)
        rho_new = float(np.real(np.vdot(r, z)))
        beta = rho_new / rho
        if log is not None:
            log.betas.append(beta)
            log.vector(z, r, rho_new)
        rho = rho_new
        p = z + beta * p - K @ (AWH @ z)
    return (x if float(np.linalg.norm(b - A @ x)) <= start_norm else start_x), Status.DIVERGED_MAX_IT, it
