"""Krylov kernels: CG (all right-hand sides at once), MINRES, GMRES(m), BiCGSTAB, LSQR, LSMR.

Shared contract (after :func:`matcli.methods.solve.system.as_block`):

* ``A`` is an (m, n) dense array, sparse matrix or LinearOperator; ``B`` is (m,) or (m, k).
* Stopping test: ``||b_j - A x_j||_2 <= rtol * ||b_j||_2`` for every column, checked on the true
  residual before reporting convergence (a recursively updated residual that drifted is replaced
  by the true one and the iteration continues).
* ``maxiter`` bounds the iterations per column (GMRES: inner steps). Without it: ``10 n``.
* ``callback(it, residual=..., residual_kind=...)`` is called once per iteration with a relative
  residual, and once before the first iteration as ``callback(0, initial_residual=...,
  residual_kind=...)``. ``residual_kind`` names what is measured: :data:`TRUE_RESIDUAL`
  (``||b - A x|| / ||b||`` of the unpreconditioned system, as the method's recurrence tracks it;
  CG, GMRES, BiCGSTAB, LSQR, LSMR) or :data:`PRECOND_RESIDUAL` (MINRES:
  ``||r||_{M^-1} / ||r_0||_{M^-1}``, the preconditioned norm it minimises).
* A column that does not converge returns its best iterate (smallest residual seen), and never one
  whose true residual exceeds that of its initial guess; the status is negative and the message
  says why and what to try. ``b = 0`` gives ``x = 0`` (``CONVERGED_ZERO_RHS``) whatever ``x0``.
* GMRES and BiCGSTAB with an ILU preconditioner adapt it: a failed solve is repeated with the
  preconditioner's ``refine()`` (less dropping, more fill) while the iteration budget lasts, each
  attempt recorded in ``info["precond_attempts"]``; an ILU that could not be built at all gives a
  negative status (``DIVERGED_BREAKDOWN``) without iterating.
"""

from __future__ import annotations

import numpy as np

from matcli.core.lazy_sparse import sp
from matcli.core.result import Callback, Result, Status, no_callback
from matcli.methods.solve.precond import Preconditioner, identity
from matcli.methods.solve.system import as_block, col_dots, col_norms, finish, normal_residual

#: Memory budget for the blocks CG keeps per solve (columns beyond it are solved in chunks).
BLOCK_MEMORY_BYTES = 2 * 2**30
#: At most this many columns per CG block. Wider blocks leave the caches: 100 right-hand sides of
#: a 90000-unknown Poisson problem with AMG took 9.0 s of CPU as one block, 5.0 s in blocks of 16
#: and 4.9-5.4 s in blocks of 8 (loaded 2-core machine, 2026-12-06).
BLOCK_COLUMNS = 16
_TINY = np.finfo(float).tiny
_EPS = np.finfo(float).eps

#: ``residual_kind`` of ``||b - A x|| / ||b||`` (the unpreconditioned system).
TRUE_RESIDUAL = "true_rel_residual"
#: ``residual_kind`` of MINRES's ``||r||_{M^-1} / ||r_0||_{M^-1}``.
PRECOND_RESIDUAL = "precond_rel_residual"

_ADVICE = {
    Status.DIVERGED_NOT_SPD: "CG needs a Hermitian positive definite matrix and preconditioner: "
                             "p^H A p <= 0 (or r^H M^-1 r <= 0) was met; use --method minres "
                             "(symmetric indefinite) or gmres/bicgstab (nonsymmetric), or a direct method",
    Status.DIVERGED_MAX_IT: "maximum iterations reached before the tolerance; the best iterate is kept "
                            "(raise --maxiter or use a stronger --precond such as amg-sa or ilu)",
    Status.DIVERGED_BREAKDOWN: "the method broke down (division by a vanishing scalar); the best iterate "
                               "is kept (try gmres or a direct method)",
    Status.DIVERGED_NAN: "NaN or Inf appeared in the iteration; the best iterate is kept",
    Status.DIVERGED_SINGULAR: "the matrix (or the preconditioner) is singular on the Krylov space and b is not "
                              "reached from it; x is the minimal residual iterate found (use --method lsmr for "
                              "the least-squares / minimum-norm solution)",
    Status.DIVERGED_TOLERANCE_UNREACHABLE: "the true residual stalls above the tolerance (the problem is "
                                           "too ill-conditioned for this rtol); the best iterate is kept",
}


def default_maxiter(n: int, maxiter: int | None) -> int:
    return int(maxiter) if maxiter is not None else max(10 * n, 100)


def combine_status(statuses: list[Status]) -> Status:
    """The status of a block: the first failure by severity, else the (common) success reason."""
    failures = [s for s in statuses if not s.converged]
    if failures:
        order = [Status.DIVERGED_NOT_SPD, Status.DIVERGED_NAN, Status.DIVERGED_SINGULAR, Status.DIVERGED_BREAKDOWN,
                 Status.DIVERGED_TOLERANCE_UNREACHABLE, Status.DIVERGED_STAGNATION, Status.DIVERGED_MAX_IT]
        return min(failures, key=lambda s: order.index(s) if s in order else len(order))
    if not statuses:
        return Status.CONVERGED_ZERO_RHS
    return Status.CONVERGED_RTOL if Status.CONVERGED_RTOL in statuses else statuses[0]


def status_message(status: Status, columns: int, failed: int) -> str:
    if status.converged:
        return ""
    where = f" ({failed} of {columns} right-hand sides)" if columns > 1 else ""
    return _ADVICE.get(status, status.reason) + where


def cg(A, B, *, M: Preconditioner | None = None, x0=None, rtol: float = 1e-8, maxiter: int | None = None,
       callback: Callback = no_callback) -> Result:
    """Preconditioned conjugate gradients on every column of ``B`` simultaneously.

    Each column runs its own CG recurrence (own step lengths), but products with ``A`` and the
    preconditioner act on the whole block of still-active columns, so k right-hand sides cost one
    sparse matrix times dense block product per iteration instead of k matrix-vector products.

    Parameters
    ----------
    A : (n, n) Hermitian positive definite matrix (dense, sparse or LinearOperator).
    B : (n,) or (n, k) right-hand side.
    M : Preconditioner, Hermitian positive definite; identity when None.

    Returns
    -------
    Result with ``x`` shaped like ``B``. Negative curvature ``p^H A p <= 0`` (A not positive
    definite) or ``r^H M^{-1} r <= 0`` (preconditioner not positive definite) stops that column
    with status ``DIVERGED_NOT_SPD`` and a message suggesting MINRES/GMRES.
    """
    Bb, X0, was_vector = as_block(A, B, x0)
    n, k = X0.shape
    chunk = min(BLOCK_COLUMNS, max(1, int(BLOCK_MEMORY_BYTES // (8 * X0.itemsize * max(n, 1)))))
    if k <= chunk:
        return _cg(A, B, M, x0, rtol, maxiter, callback)
    # Bound memory: CG holds ~8 blocks of the active columns, so solve them in column chunks.
    X = np.empty_like(X0)
    statuses, col_its, replacements, offset = [], np.zeros(k, dtype=np.int64), 0, 0
    for start in range(0, k, chunk):
        cols = slice(start, min(start + chunk, k))
        part = _cg(A, Bb[:, cols], M, X0[:, cols] if x0 is not None else None, rtol, maxiter,
                   _first_initial(callback, offset, first=start == 0))
        X[:, cols] = part.outputs["x"]
        statuses.append(part.status)
        its = part.info.get("column_iterations", [part.iterations])
        col_its[cols] = its
        replacements += part.info.get("residual_replacements", 0)
        offset += part.iterations
    overall = combine_status(statuses)
    failed = sum(1 for s in statuses if not s.converged)
    return finish(A, X, Bb, was_vector, overall, int(col_its.max(initial=0)),
                  status_message(overall, k, failed), {"residual_replacements": replacements,
                                                       "column_chunks": -(-k // chunk)}, col_its)


class LanczosLog:
    """The Lanczos process hidden in PCG, for the first right-hand side (Saad, Iterative Methods 6.7.3).

    ``v_j = z_j / sqrt(rho_j)`` (``z_j = M^{-1} r_j``, ``rho_j = r_j^H z_j``) are M-orthonormal with
    ``M v_j = r_j / sqrt(rho_j)``, and ``T = V^H A V`` is tridiagonal with ``T_jj = 1/alpha_j +
    beta_{j-1}/alpha_{j-1}`` and ``T_{j,j+1} = -sqrt(beta_j)/alpha_j`` from the CG coefficients: its
    eigenpairs give Ritz pairs of ``M^{-1} A`` without extra products with A or M. At most
    ``max_vectors`` vectors are kept (the leading part of T still gives valid Ritz pairs), in single
    precision: Ritz values come from the float64 coefficients, Ritz vectors are accurate to ~1e-7,
    plenty for a recycled space. :meth:`reset` reuses the buffers for the next solve.
    """

    def __init__(self, max_vectors: int, keep_images: bool = True):
        self.max_vectors = max_vectors
        # Without images (M cheap to apply), ``ritz`` needs ``forward`` to form M U from U.
        self.keep_images = keep_images
        self.count = 0
        # Row-major buffers, allocated on the first vector; rows never written are never touched.
        self._V: np.ndarray | None = None
        self._MV: np.ndarray | None = None
        self.alphas: list[float] = []
        self.betas: list[float] = []

    def reset(self) -> None:
        """Forget the recorded process but keep the buffers (already paged in) for the next solve."""
        self.count = 0
        self.alphas = []
        self.betas = []

    def vector(self, z: np.ndarray, r: np.ndarray, rho: float) -> None:
        if self.count >= self.max_vectors or not rho > 0:
            return
        # Single precision halves the bytes copied per iteration; the recycled space only needs to
        # hold the extreme eigenvectors to a few digits (its projections are exact for whatever it spans).
        dtype = np.complex64 if np.iscomplexobj(z) else np.float32
        if self._V is None or self._V.shape[1] != z.size or self._V.dtype != dtype:
            self._V = np.empty((self.max_vectors, z.size), dtype=dtype)
            self._MV = np.empty((self.max_vectors, r.size), dtype=dtype) if self.keep_images else None
        scale = 1.0 / np.sqrt(rho)
        np.multiply(z, scale, out=self._V[self.count])
        if self.keep_images:
            np.multiply(r, scale, out=self._MV[self.count])
        self.count += 1

    def ritz(self, count: int, forward=None) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """``(theta, U, M U)`` for the ``count`` smallest Ritz values, or None with too few steps.

        ``forward(U)`` gives ``M U`` when the images were not kept.
        """
        from scipy.linalg import eigh_tridiagonal

        k = min(len(self.alphas), self.count)
        if k < 2:
            return None
        alpha, beta = np.asarray(self.alphas[:k]), np.asarray(self.betas[:k - 1])
        diag = 1.0 / alpha
        diag[1:] += beta / alpha[:-1]
        off = -np.sqrt(beta) / alpha[:-1]
        count = min(count, k)
        theta, Y = eigh_tridiagonal(diag, off, select="i", select_range=(0, count - 1))
        Yt = Y.T.astype(self._V.dtype)
        wide = np.complex128 if np.iscomplexobj(self._V) else np.float64
        U = (Yt @ self._V[:k]).T.astype(wide)
        MU = (Yt @ self._MV[:k]).T.astype(wide) if self.keep_images else forward(U)
        return theta, U, MU


@np.errstate(over="ignore", invalid="ignore")  # a diverging column is detected (NaN/Inf) and reported
def _cg(A, B, M, x0, rtol, maxiter, callback, log: LanczosLog | None = None) -> Result:
    """CG engine behind :func:`cg`; records the Lanczos data of the first right-hand side in ``log``."""
    M = M or identity()
    Bb, X, was_vector = as_block(A, B, x0)
    n, k = X.shape
    if k > 1 and M.block is not None:
        M = M.block()
    maxiter = default_maxiter(n, maxiter)
    bnorm = col_norms(Bb)
    target = rtol * bnorm
    X[:, bnorm == 0] = 0  # b = 0: x = 0 is the exact solution, whatever the initial guess
    R = Bb - A @ X if x0 is not None else Bb.copy()
    status = np.full(k, Status.CONVERGED_RTOL, dtype=object)
    col_its = np.zeros(k, dtype=np.int64)
    replacements = np.zeros(k, dtype=np.int64)
    best_X = X.copy()
    best_r = col_norms(R)
    start_r = best_r.copy()
    for j in np.flatnonzero(bnorm == 0):
        if best_r[j] == 0:
            status[j] = Status.CONVERGED_ZERO_RHS
    safe_bnorm = np.where(bnorm > 0, bnorm, 1.0)
    callback(0, initial_residual=float((best_r / safe_bnorm).max(initial=0.0)), residual_kind=TRUE_RESIDUAL)
    active = np.flatnonzero(best_r > target)

    # best_X[:, j] is stale while best_current[j]: column j's best iterate is then the active one. A
    # column that stops improving gets its previous iterate back as X - alpha P (exact up to rounding),
    # so a block of k columns is not copied on every iteration that improves it (almost all of them).
    best_current = np.zeros(k, dtype=bool)
    Xa, Ra = X[:, active], R[:, active]
    Za = M.apply(Ra)
    rz = np.real(col_dots(Ra, Za))
    Pa = Za.copy()
    scratch = np.empty_like(Pa)
    if log is not None and active.size and active[0] == 0:
        log.vector(Za[:, 0], Ra[:, 0], float(rz[0]))
    it = 0
    while active.size and it < maxiter:
        bad = rz <= 0
        if bad.any():
            status[active[bad]] = Status.DIVERGED_NOT_SPD
        Q = A @ Pa
        pq = col_dots(Pa, Q)
        bad |= ~(np.real(pq) > 0)
        if bad.any():
            status[active[bad & ~np.isfinite(np.real(pq))]] = Status.DIVERGED_NAN
            status[active[bad & (status[active] == Status.CONVERGED_RTOL)]] = Status.DIVERGED_NOT_SPD
        it += 1
        alpha = np.where(bad, 0.0, rz / np.where(bad, 1.0, np.real(pq)))
        if log is not None and active[0] == 0 and not bad[0]:
            log.alphas.append(float(alpha[0]))
        Xa += np.multiply(Pa, alpha, out=scratch)
        Ra -= np.multiply(Q, alpha, out=Q)
        rnorm = col_norms(Ra)
        col_its[active] = it
        improved = (rnorm < best_r[active]) & ~bad
        lost = best_current[active] & ~improved
        if lost.any():
            local = np.flatnonzero(lost)
            best_X[:, active[local]] = Xa[:, local] - alpha[local] * Pa[:, local]
            best_current[active[local]] = False
        best_r[active[improved]] = rnorm[improved]
        best_current[active[improved]] = True
        rel = rnorm / safe_bnorm[active]
        callback(it, residual=float(rel.max()), residual_kind=TRUE_RESIDUAL)
        done = bad | (rnorm <= target[active]) | ~np.isfinite(rnorm)
        if done.any():
            # Verify apparent convergence on the true residual; replace a drifted one and go on.
            check = np.flatnonzero(done & ~bad & np.isfinite(rnorm))
            if check.size:
                true_R = Bb[:, active[check]] - A @ Xa[:, check]  # one product for all of them
                true_norms = col_norms(true_R)
            for i, local in enumerate(check):
                j = active[local]
                true_norm = float(true_norms[i])
                best_X[:, j] = Xa[:, local]
                best_r[j] = true_norm
                best_current[j] = False
                if true_norm > target[j]:
                    if replacements[j] < 3:
                        replacements[j] += 1
                        Ra[:, local] = true_R[:, i]
                        done[local] = False
                    else:
                        status[j] = Status.DIVERGED_TOLERANCE_UNREACHABLE
            for local in np.flatnonzero(done & ~np.isfinite(rnorm) & ~bad):
                status[active[local]] = Status.DIVERGED_NAN
        keep = ~done
        if not keep.all():
            leaving = np.flatnonzero(done & best_current[active])
            best_X[:, active[leaving]] = Xa[:, leaving]
            best_current[active[leaving]] = False
            active, Xa, Ra, Pa = active[keep], Xa[:, keep], Ra[:, keep], Pa[:, keep]
            scratch = np.empty_like(Pa)
            if not active.size:
                break
        Za = M.apply(Ra)
        rz_new = np.real(col_dots(Ra, Za))
        beta = rz_new / np.where(rz[keep] != 0, rz[keep], 1.0)
        if log is not None and active[0] == 0:
            log.betas.append(float(beta[0]))
            log.vector(Za[:, 0], Ra[:, 0], float(rz_new[0]))
        rz = rz_new
        Pa *= beta
        Pa += Za
    if active.size:
        still = np.flatnonzero(best_current[active])
        best_X[:, active[still]] = Xa[:, still]
    status[active] = Status.DIVERGED_MAX_IT
    failed_cols = np.flatnonzero([not Status(int(s)).converged for s in status])
    if failed_cols.size:
        # "best" was judged by the recursive residual, which on a singular or indefinite A can fall
        # while the true one grows: a failed column never hands back more than it was given
        true_r = col_norms(Bb[:, failed_cols] - A @ best_X[:, failed_cols])
        worse = failed_cols[~(true_r <= start_r[failed_cols])]
        best_X[:, worse] = X[:, worse]
    statuses = [Status(int(s)) for s in status]
    overall = combine_status(statuses)
    failed = sum(not s.converged for s in statuses)
    info = {"residual_replacements": int(replacements.sum())}
    return finish(A, best_X, Bb, was_vector, overall, it, status_message(overall, k, failed), info, col_its)


def _per_column(kernel, A, B, M, x0, rtol, maxiter, callback, info_name: str) -> Result:
    """Run a single-vector kernel on every column, restarting from the returned iterate (up to 3
    times) when its internal residual estimate met the tolerance but the true residual does not."""
    Bb, X, was_vector = as_block(A, B, x0)
    n, k = X.shape
    maxiter = default_maxiter(n, maxiter)
    statuses, col_its = [], np.zeros(k, dtype=np.int64)
    restarts = 0
    for j in range(k):
        b = Bb[:, j]
        bnorm = float(np.linalg.norm(b))
        if bnorm == 0:  # x = 0 is the exact solution, whatever the initial guess
            X[:, j] = 0
            statuses.append(Status.CONVERGED_ZERO_RHS)
            continue
        x = X[:, j].copy()
        start_x, start_norm = x.copy(), float(np.linalg.norm(b - A @ x))
        target = rtol * bnorm
        used, inner_rtol, status = 0, rtol, Status.DIVERGED_MAX_IT
        offset = int(col_its[:j].max(initial=0)) if k > 1 else 0
        attempt_norm = start_norm
        for attempt in range(4):
            # a breakdown may produce Inf/NaN; the kernels detect it and report DIVERGED_NAN
            with np.errstate(all="ignore"):
                x, status, its = kernel(A, b, x, M, inner_rtol * bnorm, maxiter - used, bnorm,
                                        _first_initial(callback, offset + used, first=j == 0 and used == 0))
            used += its
            true_norm = float(np.linalg.norm(b - A @ x))
            if true_norm <= target or not status.converged or used >= maxiter:
                break
            if not true_norm <= max(0.5, (1 + rtol) / 2) * attempt_norm:
                # a claim of a reduction by rtol that did not even halve the true residual is no
                # drift of a recurrence but a process gone wrong (b numerically in the null space of
                # a singular A: MINRES's first step divides by ~eps); restarting from that iterate
                # ran to maxiter (78160 steps, 18 s, on amg_anisotropic3d7816 with b = ones)
                break
            attempt_norm = true_norm
            restarts += 1
            inner_rtol = inner_rtol * target / true_norm
        if status.converged and true_norm > target:
            # the kernel's own test passed (its recurrence, or an invariant Krylov space of a singular
            # A), the true residual does not: a positive status is earned by the latter only
            status = Status.DIVERGED_TOLERANCE_UNREACHABLE
        if not true_norm <= start_norm:
            # a failed solve never hands back more than it was given (e.g. GMRES with a singular
            # preconditioner ending far from b): the initial guess is the better answer
            x = start_x
        X[:, j] = x
        col_its[j] = used
        statuses.append(status)
    overall = combine_status(statuses)
    failed = sum(not s.converged for s in statuses)
    return finish(A, X, Bb, was_vector, overall, int(col_its.max(initial=0)),
                  status_message(overall, k, failed), {f"{info_name}_restarts": restarts}, col_its)


def _first_initial(callback: Callback, offset: int, first: bool) -> Callback:
    """``callback`` with iterations shifted by ``offset``; the initial residual passes only when ``first``
    (a restart or a later column would otherwise print a second iteration 0 mid-run)."""
    def shifted(i: int, **values) -> None:
        if "initial_residual" in values and not first:
            return
        callback(offset + i, **values)

    return shifted


def shifted_callback(callback: Callback, offset: int) -> Callback:
    """``callback`` for a solve that starts again after ``offset`` iterations: its iteration numbers
    continue from there, and its initial residual is reported again (the monitor shows the restart)."""
    return _first_initial(callback, offset, first=True)


def _vec_apply(M: Preconditioner):
    return lambda v: M.apply(v.reshape(-1, 1))[:, 0]


def _minres1(A, b, x, M, tol, maxiter, bnorm, callback):
    """Preconditioned MINRES (Paige-Saunders) for one column; stops when the M^-1-norm residual
    estimate phibar <= tol * beta1 / ||b||. Returns (x, status, iterations)."""
    prec = _vec_apply(M)
    r1 = b - A @ x
    y = prec(r1)
    beta1 = float(np.real(np.vdot(r1, y)))
    if beta1 < 0:
        return x, Status.DIVERGED_NOT_SPD, 0
    beta1 = np.sqrt(beta1)
    callback(0, initial_residual=1.0 if beta1 > 0 else 0.0, residual_kind=PRECOND_RESIDUAL)
    if beta1 == 0:
        return x, Status.CONVERGED_RTOL, 0
    rel_target = tol / bnorm
    oldb, beta, dbar, epsln, phibar = 0.0, beta1, 0.0, 0.0, beta1
    cs, sn = -1.0, 0.0
    w = np.zeros_like(x)
    w2 = np.zeros_like(x)
    r2 = r1
    best_x, best_phi = x.copy(), beta1
    for it in range(1, maxiter + 1):
        v = y / beta
        y = A @ v
        if it >= 2:
            y = y - (beta / oldb) * r1
        alfa = float(np.real(np.vdot(v, y)))
        y = y - (alfa / beta) * r2
        r1, r2 = r2, y
        y = prec(r2)
        oldb = beta
        beta_sq = float(np.real(np.vdot(r2, y)))
        if beta_sq < 0:
            return best_x, Status.DIVERGED_NOT_SPD, it
        beta = np.sqrt(beta_sq)
        oldeps = epsln
        delta = cs * dbar + sn * alfa
        gbar = sn * dbar - cs * alfa
        epsln = sn * beta
        dbar = -cs * beta
        gamma = max(np.hypot(gbar, beta), _EPS)
        cs, sn = gbar / gamma, beta / gamma
        phi = cs * phibar
        phibar = sn * phibar
        w1, w2 = w2, w
        w = (v - oldeps * w1 - delta * w2) / gamma
        x = x + phi * w
        if not np.isfinite(phibar):
            return best_x, Status.DIVERGED_NAN, it
        if phibar < best_phi:
            best_x, best_phi = x, phibar
        callback(it, residual=float(phibar / beta1), residual_kind=PRECOND_RESIDUAL)
        if phibar <= rel_target * beta1:
            return x, Status.CONVERGED_RTOL, it
        if beta <= _EPS * beta1:
            return x, Status.CONVERGED_HAPPY_BREAKDOWN, it
    return best_x, Status.DIVERGED_MAX_IT, maxiter


def minres(A, B, *, M: Preconditioner | None = None, x0=None, rtol: float = 1e-8,
           maxiter: int | None = None, callback: Callback = no_callback) -> Result:
    """MINRES for Hermitian (possibly indefinite) ``A`` with a Hermitian positive definite ``M``.

    ``B`` (n,) or (n, k); columns are solved one after another. Returns the best iterate.
    """
    M = M or identity()
    result = _per_column(_minres1, A, B, M, x0, rtol, maxiter, callback, "minres")
    if result.status == Status.DIVERGED_NOT_SPD:
        result.message = (f"MINRES needs a Hermitian positive definite preconditioner, and r^H M^-1 r < 0 was met: "
                          f"--precond {M.name} is indefinite on this matrix; use --precond jacobi (scaling by "
                          "|diag(A)|) or none")
    return result


def _givens(a: complex, b: complex) -> tuple[float, complex, complex]:
    """(c, s, r) with c real, [[c, s], [-conj(s), c]] @ [a, b] = [r, 0]."""
    rho = float(np.hypot(abs(a), abs(b)))
    if rho == 0:
        return 1.0, 0.0, 0.0
    if a == 0:
        return 0.0, np.conj(b) / abs(b), abs(b)
    c = abs(a) / rho
    s = (a / abs(a)) * np.conj(b) / rho
    return c, s, (a / abs(a)) * rho


def _make_gmres1(restart: int):
    def gmres1(A, b, x, M, tol, maxiter, bnorm, callback):
        """Restarted GMRES(m) with right preconditioning for one column: the minimised residual is
        the true (unpreconditioned) one. Arnoldi by classical Gram-Schmidt applied twice."""
        prec = _vec_apply(M)
        n = b.shape[0]
        m = max(1, min(restart, n))
        dtype = np.result_type(b.dtype, x.dtype)
        its = 0
        r = b - A @ x
        beta = float(np.linalg.norm(r))
        callback(0, initial_residual=beta / bnorm, residual_kind=TRUE_RESIDUAL)
        while True:
            if beta <= tol:
                return x, Status.CONVERGED_RTOL, its
            if its >= maxiter:
                return x, Status.DIVERGED_MAX_IT, its
            V = np.empty((n, m + 1), dtype=dtype, order="F")
            H = np.zeros((m + 1, m), dtype=dtype)
            cs = np.zeros(m)
            sn = np.zeros(m, dtype=dtype)
            g = np.zeros(m + 1, dtype=dtype)
            g[0] = beta
            V[:, 0] = r / beta
            happy = False
            j = -1
            for j in range(m):
                its += 1
                w = A @ prec(V[:, j])
                basis = V[:, :j + 1]
                h = basis.conj().T @ w
                w = w - basis @ h
                h2 = basis.conj().T @ w
                w = w - basis @ h2
                h = h + h2
                hn = float(np.linalg.norm(w))
                H[:j + 1, j] = h
                H[j + 1, j] = hn
                for i in range(j):
                    a_i, b_i = H[i, j], H[i + 1, j]
                    H[i, j] = cs[i] * a_i + sn[i] * b_i
                    H[i + 1, j] = -np.conj(sn[i]) * a_i + cs[i] * b_i
                cs[j], sn[j], H[j, j] = _givens(H[j, j], H[j + 1, j])
                H[j + 1, j] = 0
                g[j + 1] = -np.conj(sn[j]) * g[j]
                g[j] = cs[j] * g[j]
                res = float(abs(g[j + 1]))
                if not np.isfinite(res):
                    return x, Status.DIVERGED_NAN, its
                callback(its, residual=res / bnorm, residual_kind=TRUE_RESIDUAL)
                if hn <= _EPS * beta:
                    happy = True
                if happy or res <= tol or its >= maxiter:
                    break
                V[:, j + 1] = w / hn
            size = j + 1
            from scipy.linalg import solve_triangular

            # A singular A (or M) can make the Krylov space invariant before it holds a solution:
            # a diagonal entry of the triangular factor vanishes and the residual estimate after it
            # (often 0) is false, the update through it garbage. The leading block before that
            # entry still gives the minimal residual iterate of the smaller space (later Givens
            # rotations leave R[:k, :k] and g[:k] untouched): the better of the two, by true
            # residual, is kept. (A merely badly scaled A also has tiny diagonal entries, and its
            # full update is the better one.)
            diag = np.abs(np.diag(H[:size, :size]))
            vanished = np.flatnonzero(diag <= _EPS * size * max(float(diag.max()), _TINY)) if happy else []
            sizes = [size] + ([int(vanished[0])] if len(vanished) else [])
            best = None
            for k in sizes:
                if np.any(diag[:k] == 0):
                    continue
                x_k = x + prec(V[:, :k] @ solve_triangular(H[:k, :k], g[:k])) if k else x
                r_k = b - A @ x_k
                norm_k = float(np.linalg.norm(r_k))
                if np.isfinite(norm_k) and (best is None or norm_k < best[2]):
                    best = (x_k, r_k, norm_k)
                if norm_k <= tol:
                    break
            if best is None:
                return x, Status.DIVERGED_BREAKDOWN, its
            x, r, new_beta = best
            if len(vanished) and new_beta > tol:
                # the space is invariant and the operator singular on it: restarting cannot help
                return x, Status.DIVERGED_SINGULAR, its
            if happy and new_beta > tol:
                return x, Status.DIVERGED_TOLERANCE_UNREACHABLE, its
            if new_beta >= beta * (1 - 1e-12) and size == m and new_beta > tol:
                return x, Status.DIVERGED_STAGNATION, its
            beta = new_beta

    return gmres1


def gmres(A, B, *, M: Preconditioner | None = None, x0=None, rtol: float = 1e-8, maxiter: int | None = None,
          restart: int = 50, callback: Callback = no_callback) -> Result:
    """Restarted GMRES(``restart``) with right preconditioning, any square nonsingular ``A``.

    ``maxiter`` counts inner (Arnoldi) steps, over all preconditioner attempts. The residual is
    non-increasing, so the final iterate is the best one; stagnation across a whole restart cycle
    stops with ``DIVERGED_STAGNATION``, after which an adaptable preconditioner (ILU) is
    strengthened and the solve repeated (see the module notes).
    """
    def run(M_try, budget, cb):
        return _per_column(_make_gmres1(restart), A, B, M_try, x0, rtol, budget, cb, "gmres")

    result = _adapting(run, A, B, M or identity(), x0, maxiter, callback, "GMRES")
    result.info["restart"] = restart
    if result.status == Status.DIVERGED_STAGNATION:
        if len(result.info.get("precond_attempts", [])) > 1:
            advice = "ILU did not help at any drop tolerance tried; use a direct method (--method lu)"
        elif M is None or M.name == "none":
            advice = "use --precond ilu, raise --param restart, or a direct method"
        else:
            advice = f"raise --param restart, try another --precond than {M.name}, or a direct method"
        result.message = (f"GMRES({restart}) stagnated: a whole restart cycle did not reduce the residual; "
                          + advice)
    return result


def _adapting(run, A, B, M: Preconditioner, x0, maxiter: int | None, callback: Callback, name: str) -> Result:
    """``run(M, maxiter, callback) -> Result`` with ``M``, then with ``M.refine()`` after each failure.

    Stops at the first converged attempt, when ``M`` has nothing stronger to offer, or when the
    ``maxiter`` budget (shared by all attempts) is spent. The returned result is the last
    attempt's, with ``iterations`` summed over attempts and, for ILU, ``info["precond_attempts"]``
    (each attempt's drop tolerance and fill factor, status, iterations and relative residual) and
    ``info["preconditioner_info"]`` (the last ILU's facts). Each later attempt starts again from
    ``x0``: the callback gets ``initial_residual`` again, with ``preconditioner`` naming the new
    ILU, at the iteration count reached so far. An ``M`` whose construction failed gives
    ``DIVERGED_BREAKDOWN`` at the initial guess without iterating.
    """
    if M.failure is not None:
        Bb, X, was_vector = as_block(A, B, x0)
        return finish(A, X, Bb, was_vector, Status.DIVERGED_BREAKDOWN, 0,
                      f"{M.failure}; {name} was not run. Use --method lsmr (least squares / minimum norm) "
                      "or lu", {"preconditioner_failure": M.failure, "preconditioner_info": M.info})
    budget = default_maxiter(as_block(A, B, x0)[1].shape[0], maxiter)
    used, attempts, initial = 0, [], {}

    def first_attempt(i: int, **values) -> None:
        if "initial_residual" in values:
            initial.setdefault("value", values["initial_residual"])
        callback(i, **values)

    while True:
        if used and "value" in initial:  # the monitor shows that the iteration starts again, and with what
            callback(used, initial_residual=initial["value"], residual_kind=TRUE_RESIDUAL,
                     preconditioner=f"ilu(drop_tol={M.info['drop_tol']:g}, fill_factor={M.info['fill_factor']:g})")
        result = run(M, budget - used, first_attempt if not used else _first_initial(callback, used, first=False))
        used += result.iterations
        attempts.append({**{k: M.info[k] for k in ("drop_tol", "fill_factor") if k in M.info},
                         "status": result.status.reason, "iterations": result.iterations,
                         "relative_residual": result.metrics["relative_residual"]})
        if result.status.converged or M.refine is None or used >= budget:
            break
        stronger = M.refine()
        if stronger is None:
            break
        M = stronger
    result.iterations = used
    result.metrics["iterations"] = float(used)
    if M.name == "ilu":
        result.info["precond_attempts"] = attempts
        result.info["preconditioner_info"] = M.info
        if result.status == Status.DIVERGED_MAX_IT:
            tried = ", ".join(f"{a['drop_tol']:g}" for a in M.info.get("attempts", attempts))
            result.message = (f"maximum iterations reached with ILU (drop tolerances tried: {tried}); the best "
                              "iterate is kept (raise --maxiter, or use a direct method: --method lu)")
    return result


def _bicgstab1(A, b, x, M, tol, maxiter, bnorm, callback):
    """Right-preconditioned BiCGSTAB (van der Vorst) for one column; ``r`` is the true residual
    recurrence. On rho breakdown the shadow vector is reset to the current residual once."""
    prec = _vec_apply(M)
    r = b - A @ x
    rnorm = float(np.linalg.norm(r))
    callback(0, initial_residual=rnorm / bnorm, residual_kind=TRUE_RESIDUAL)
    if rnorm <= tol:
        return x, Status.CONVERGED_RTOL, 0
    rhat = r.copy()
    rho = alpha = omega = 1.0
    v = np.zeros_like(r)
    p = np.zeros_like(r)
    best_x, best_r = x.copy(), rnorm
    resets = 0
    for it in range(1, maxiter + 1):
        rho_new = np.vdot(rhat, r)
        if abs(rho_new) <= _EPS * float(np.linalg.norm(rhat)) * rnorm:
            if resets >= 3:
                return best_x, Status.DIVERGED_BREAKDOWN, it
            resets += 1
            rhat = r.copy()
            rho_new = np.vdot(rhat, r)
            p = np.zeros_like(r)
            v = np.zeros_like(r)
            rho = alpha = omega = 1.0
        beta = (rho_new / rho) * (alpha / omega)
        rho = rho_new
        p = r + beta * (p - omega * v)
        phat = prec(p)
        v = A @ phat
        denom = np.vdot(rhat, v)
        if denom == 0:
            return best_x, Status.DIVERGED_BREAKDOWN, it
        alpha = rho / denom
        s = r - alpha * v
        snorm = float(np.linalg.norm(s))
        if snorm <= tol:
            x = x + alpha * phat
            callback(it, residual=snorm / bnorm, residual_kind=TRUE_RESIDUAL)
            return x, Status.CONVERGED_RTOL, it
        shat = prec(s)
        t = A @ shat
        tt = float(np.real(np.vdot(t, t)))
        if tt == 0:
            return best_x, Status.DIVERGED_BREAKDOWN, it
        omega = np.vdot(t, s) / tt
        x = x + alpha * phat + omega * shat
        r = s - omega * t
        rnorm = float(np.linalg.norm(r))
        if not np.isfinite(rnorm):
            return best_x, Status.DIVERGED_NAN, it
        if rnorm < best_r:
            best_x, best_r = x, rnorm
        callback(it, residual=rnorm / bnorm, residual_kind=TRUE_RESIDUAL)
        if rnorm <= tol:
            return x, Status.CONVERGED_RTOL, it
        if omega == 0:
            return best_x, Status.DIVERGED_BREAKDOWN, it
    return best_x, Status.DIVERGED_MAX_IT, maxiter


def bicgstab(A, B, *, M: Preconditioner | None = None, x0=None, rtol: float = 1e-8,
             maxiter: int | None = None, callback: Callback = no_callback) -> Result:
    """BiCGSTAB for square nonsymmetric ``A`` (two products with A per iteration); best iterate kept.

    ``maxiter`` counts iterations over all preconditioner attempts; a failed solve with an ILU
    preconditioner is repeated with a stronger one (see the module notes).
    """
    def run(M_try, budget, cb):
        return _per_column(_bicgstab1, A, B, M_try, x0, rtol, budget, cb, "bicgstab")

    return _adapting(run, A, B, M or identity(), x0, maxiter, callback, "BiCGSTAB")


def _adjoint(A):
    return A.conj().T if np.iscomplexobj(A) else A.T


def _sym_ortho(a: float, b: float) -> tuple[float, float, float]:
    """Stable (c, s, r) with c a + s b = r, -s a + c b = 0 (real)."""
    r = float(np.hypot(a, b))
    if r == 0:
        return 1.0, 0.0, 0.0
    return a / r, b / r, r


def _lsqr1(A, b, x, atol, btol, maxiter, callback):
    """Paige-Saunders LSQR for one column from the initial guess ``x``. Stops when
    ||r|| <= btol ||b|| (compatible system) or ||A^H r|| <= atol ||A|| ||r||
    (least-squares solution). Returns (x, status, iterations)."""
    AH = _adjoint(A)
    bnorm = float(np.linalg.norm(b))
    u = b - A @ x
    beta = float(np.linalg.norm(u))
    callback(0, initial_residual=beta / max(bnorm, _TINY) if bnorm else beta, residual_kind=TRUE_RESIDUAL)
    if beta == 0:
        return x, Status.CONVERGED_RTOL, 0
    u = u / beta
    v = AH @ u
    alpha = float(np.linalg.norm(v))
    if alpha == 0:
        return x, Status.CONVERGED_ATOL, 0
    v = v / alpha
    w = v.copy()
    phibar, rhobar = beta, alpha
    anorm_sq = 0.0
    for it in range(1, maxiter + 1):
        u = A @ v - alpha * u
        beta = float(np.linalg.norm(u))
        if beta > 0:
            u = u / beta
        anorm_sq += alpha ** 2 + beta ** 2
        v = AH @ u - beta * v
        alpha = float(np.linalg.norm(v))
        if alpha > 0:
            v = v / alpha
        c, s, rho = _sym_ortho(rhobar, beta)
        theta = s * alpha
        rhobar = -c * alpha
        phi = c * phibar
        phibar = s * phibar
        x = x + (phi / rho) * w
        w = v - (theta / rho) * w
        rnorm = phibar
        arnorm = alpha * abs(c) * phibar
        anorm = np.sqrt(anorm_sq)
        callback(it, residual=rnorm / bnorm, normal_residual=arnorm / max(anorm * rnorm, _TINY),
                 residual_kind=TRUE_RESIDUAL)
        if not np.isfinite(rnorm):
            return x, Status.DIVERGED_NAN, it
        if rnorm <= btol * bnorm:
            return x, Status.CONVERGED_RTOL, it
        if arnorm <= atol * anorm * rnorm:
            return x, Status.CONVERGED_ATOL, it
    return x, Status.DIVERGED_MAX_IT, maxiter


def _lsmr1(A, b, x, atol, btol, maxiter, callback):
    """Fong-Saunders LSMR for one column (no damping) from ``x``: minimises ||A^H r|| over the
    Krylov space, so ||A^H r|| decreases monotonically. Same stopping rules as :func:`_lsqr1`."""
    AH = _adjoint(A)
    bnorm = float(np.linalg.norm(b))
    x0 = x
    u = b - A @ x
    beta = float(np.linalg.norm(u))
    callback(0, initial_residual=beta / max(bnorm, _TINY) if bnorm else beta, residual_kind=TRUE_RESIDUAL)
    if beta == 0:
        return x, Status.CONVERGED_RTOL, 0
    u = u / beta
    v = AH @ u
    alpha = float(np.linalg.norm(v))
    if alpha == 0:
        return x, Status.CONVERGED_ATOL, 0
    v = v / alpha
    zetabar, alphabar = alpha * beta, alpha
    rho, rhobar, cbar, sbar = 1.0, 1.0, 1.0, 0.0
    h = v.copy()
    hbar = np.zeros_like(v)
    dx = np.zeros_like(v)
    betadd, betad, rhodold, tautildeold, thetatilde, zeta, d = beta, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0
    norm_a2 = alpha ** 2
    for it in range(1, maxiter + 1):
        u = A @ v - alpha * u
        beta = float(np.linalg.norm(u))
        if beta > 0:
            u = u / beta
            v = AH @ u - beta * v
            alpha = float(np.linalg.norm(v))
            if alpha > 0:
                v = v / alpha
        rhoold = rho
        c, s, rho = _sym_ortho(alphabar, beta)
        thetanew = s * alpha
        alphabar = c * alpha
        rhobarold, zetaold = rhobar, zeta
        thetabar = sbar * rho
        cbar, sbar, rhobar = _sym_ortho(cbar * rho, thetanew)
        zeta = cbar * zetabar
        zetabar = -sbar * zetabar
        hbar = h - (thetabar * rho / (rhoold * rhobarold)) * hbar
        dx = dx + (zeta / (rho * rhobar)) * hbar
        h = v - (thetanew / rho) * h
        # Estimate ||r|| by the recurrences of Fong & Saunders (2011), section 5.
        betaacute = betadd
        betahat = c * betaacute
        betadd = -s * betaacute
        thetatildeold = thetatilde
        ctildeold, stildeold, rhotildeold = _sym_ortho(rhodold, thetabar)
        thetatilde = stildeold * rhobar
        rhodold = ctildeold * rhobar
        betad = -stildeold * betad + ctildeold * betahat
        tautildeold = (zetaold - thetatildeold * tautildeold) / rhotildeold
        taud = (zeta - thetatilde * tautildeold) / rhodold
        normr = float(np.sqrt(d + (betad - taud) ** 2 + betadd ** 2))
        norm_a2 += beta ** 2
        norm_a = np.sqrt(norm_a2)
        norm_a2 += alpha ** 2
        normar = abs(zetabar)
        x = x0 + dx
        callback(it, residual=normr / bnorm, normal_residual=normar / max(norm_a * normr, _TINY),
                 residual_kind=TRUE_RESIDUAL)
        if not np.isfinite(normr):
            return x, Status.DIVERGED_NAN, it
        if normr <= btol * bnorm:
            return x, Status.CONVERGED_RTOL, it
        if normar <= atol * norm_a * normr:
            return x, Status.CONVERGED_ATOL, it
    return x, Status.DIVERGED_MAX_IT, maxiter


def damped_system(A, B: np.ndarray, damp: float):
    """``([A; damp I], [B; 0])``: min ||b - A x||^2 + damp^2 ||x||^2 is the least-squares problem of
    this stacked system, so LSQR/LSMR run on it give the damped (ridge) solution."""
    n = A.shape[1]
    if sp.issparse(A):
        stacked = sp.vstack([A, damp * sp.identity(n, dtype=A.dtype, format="csr")], format="csr")
    else:
        stacked = np.vstack([np.asarray(A), damp * np.eye(n, dtype=A.dtype)])
    return stacked, np.vstack([B, np.zeros((n, B.shape[1]), dtype=B.dtype)])


def _least_squares(kernel, name, A, B, x0, rtol, atol, maxiter, callback, damp: float = 0.0) -> Result:
    Bb, X, was_vector = as_block(A, B, x0)
    m, n = A.shape
    maxiter = int(maxiter) if maxiter is not None else max(4 * min(m, n), 100)
    atol = rtol if atol is None else atol
    if damp < 0 or not np.isfinite(damp):
        raise ValueError(f"damp must be a finite number >= 0, got {damp}")
    op, rhs = damped_system(A, Bb, damp) if damp > 0 else (A, Bb)
    statuses, col_its = [], np.zeros(X.shape[1], dtype=np.int64)
    for j in range(X.shape[1]):
        if not Bb[:, j].any():  # x = 0 is the exact (and minimum-norm) solution, whatever the initial guess
            X[:, j] = 0
            statuses.append(Status.CONVERGED_ZERO_RHS)
            continue
        offset = int(col_its[:j].max(initial=0))
        X[:, j], status, col_its[j] = kernel(op, rhs[:, j], X[:, j].copy(), atol, rtol, maxiter,
                                             _first_initial(callback, offset, first=j == 0))
        statuses.append(status)
    overall = combine_status(statuses)
    failed = sum(not s.converged for s in statuses)
    message = status_message(overall, X.shape[1], failed)
    info = {"atol": atol, "btol": rtol}
    if overall == Status.CONVERGED_ATOL:
        message = (f"least-squares solution: ||A^H r|| <= {atol:g} ||A|| ||r|| (the system is inconsistent "
                   "or singular; from a zero start this is the minimum-norm solution)")
    if damp > 0:
        info["damp"] = damp
        if overall == Status.CONVERGED_ATOL:
            message = (f"damped least-squares solution of min ||b - A x||^2 + {damp:g}^2 ||x||^2 (the normal "
                       f"residual is that of [A; {damp:g} I] x = [b; 0])")
    result = finish(A, X, Bb, was_vector, overall, int(col_its.max(initial=0)), message, info, col_its)
    if damp > 0:
        # the answer is the least-squares solution of the stacked system, so its optimality test is
        # ||[A; damp I]^H [b - A x; -damp x]|| = ||A^H r - damp^2 x||, not ||A^H r||
        R = rhs - op @ X
        result.metrics["normal_residual"] = normal_residual(op, X, rhs, R, col_norms(rhs))
    return result


def lsqr(A, B, *, x0=None, rtol: float = 1e-8, atol: float | None = None, maxiter: int | None = None,
         damp: float = 0.0, callback: Callback = no_callback) -> Result:
    """LSQR: least-squares / minimum-norm solution of any (m, n) ``A``; ``B`` (m,) or (m, k).

    Status ``CONVERGED_RTOL`` when ``||r|| <= rtol ||b||`` (compatible system),
    ``CONVERGED_ATOL`` when ``||A^H r|| <= atol ||A|| ||r||`` (least-squares solution). From a zero
    start the iterates stay in range(A^H), so the limit is the minimum-norm solution. With
    ``damp > 0`` the problem is min ||b - A x||^2 + damp^2 ||x||^2 (solved as the stacked system of
    :func:`damped_system`; ``normal_residual`` is that system's).
    """
    return _least_squares(_lsqr1, "lsqr", A, B, x0, rtol, atol, maxiter, callback, damp)


def lsmr(A, B, *, x0=None, rtol: float = 1e-8, atol: float | None = None, maxiter: int | None = None,
         damp: float = 0.0, callback: Callback = no_callback) -> Result:
    """LSMR: like :func:`lsqr` (same stopping rules, damping and guarantees) but ``||A^H r||``
    decreases monotonically, so it is safer to stop early on inconsistent systems."""
    return _least_squares(_lsmr1, "lsmr", A, B, x0, rtol, atol, maxiter, callback, damp)
