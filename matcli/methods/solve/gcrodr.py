"""GCRO-DR: restarted GMRES with a recycled, deflated subspace carried across a sequence of systems
(Parks, de Sturler, Mackey, Johnson & Maiti, SIAM J. Sci. Comput. 28(5), 2006).

The solver keeps ``U`` (n, k) and ``C = A U`` with orthonormal columns. For each system:

1. ``C`` is recomputed for the current ``A`` (``C R = qr(A U)``, ``U <- U R^{-1}``: k products with
   A, so the identity ``A U = C`` is exact for the new matrix), and the start is projected:
   ``x += U C^H r``, ``r <- (I - C C^H) r``.
2. Each cycle runs ``m - k`` Arnoldi steps of ``(I - C C^H) A M^{-1}`` (classical Gram-Schmidt
   against ``[C, V]``, repeated when it cancels; right preconditioning,
   flexible form: ``Z_j = M^{-1} V_j`` is stored, so ``M`` may change between systems), giving
   ``A [U D, Z] = [C, V] G`` with ``G = [[D, B], [0, Hbar]]`` (``D`` scales ``U`` to unit columns).
   The minimal residual correction over ``span(U, Z)`` has the residual estimate of GMRES on the
   projected operator, tracked by Givens rotations on ``Hbar`` alone (the right-hand side has no
   component along ``C``).
3. After each cycle the recycled space becomes the ``k`` harmonic Ritz vectors of smallest
   magnitude, ``G^H G z = theta G^H [C, V]^H [U D, Z] z`` (for a real problem a real basis of the
   selected pairs), and ``C`` is re-orthonormalised with it (``qr(G P)``).

The first system (no ``U`` yet) starts with one GMRES(m) cycle whose harmonic Ritz vectors seed
``U``. Deflating the eigenvalues of smallest magnitude removes what makes restarted GMRES stagnate
(the indefinite Helmholtz sequences of :mod:`matcli.sequences`); carrying them across systems saves
rebuilding them for every system.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.linalg as sla

from matcli.core.result import Callback, Result, Status, no_callback
from matcli.methods.solve.krylov import TRUE_RESIDUAL, _givens, combine_status, default_maxiter, status_message
from matcli.methods.solve.precond import Preconditioner
from matcli.methods.solve.system import as_block, finish

_EPS = np.finfo(float).eps
#: Second Gram-Schmidt pass when the new vector kept less than this share of its norm (DGKS).
REORTHOGONALIZE = 0.7


@dataclass
class Cost:
    """Work counted over a solve: products with ``A``, preconditioner applications, Arnoldi steps,
    cycles, dense flops on length-n vectors (orthogonalisation, projections, recycling), and per
    cycle its Arnoldi steps and the recycled dimension it deflated."""

    matvecs: int = 0
    precond: int = 0
    steps: int = 0
    cycles: int = 0
    vector_flops: float = 0.0
    per_cycle: list[dict[str, float]] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {"matvecs": self.matvecs, "precond_applications": self.precond, "arnoldi_steps": self.steps,
                "cycles": self.cycles, "vector_flops": self.vector_flops,
                "per_cycle": [[int(c["steps"]), int(c["recycled_dim"])] for c in self.per_cycle]}


def _project(basis: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``basis^H w`` without copying ``basis`` (``conj()`` of an array copies it, even a real one)."""
    if np.iscomplexobj(basis):
        return (w.conj() @ basis).conj()
    return basis.T @ w


class GCRODR:
    """GCRO-DR(m, k) over a sequence of square nonsingular systems.

    Parameters
    ----------
    m : cycle length (Arnoldi steps plus recycled directions per cycle), ``m > k + 1``.
    k : recycled dimension (for a real problem up to ``k + 1`` when a complex-conjugate pair of
        harmonic Ritz vectors straddles the cut).

    :meth:`solve` may be called on successive systems of one order n; ``U`` (n, k') and ``C``
    follow. ``info`` of each result holds ``recycled_dim`` (the dimension used for that system),
    ``cost`` (:class:`Cost`) and ``ritz_residuals`` of the carried space for that system's matrix.
    """

    def __init__(self, m: int = 50, k: int = 10):
        if k < 1 or m < k + 2:
            raise ValueError(f"GCRO-DR needs k >= 1 and m >= k + 2, got m={m}, k={k}")
        self.m, self.k = int(m), int(k)
        self.U: np.ndarray | None = None
        self.C: np.ndarray | None = None

    def reset(self) -> None:
        """Forget the recycled space."""
        self.U = self.C = None

    def solve(self, A, B, *, M: Preconditioner | None = None, x0=None, rtol: float = 1e-8,
              maxiter: int | None = None, callback: Callback = no_callback) -> Result:
        """Solve ``A X = B`` ((n,) or (n, c)), column by column, each to ``||b - A x|| <= rtol ||b||``
        (true residual). ``maxiter`` bounds the Arnoldi steps per column (default ``10 n``).
        A column that does not converge keeps its best iterate with ``DIVERGED_MAX_IT``."""
        Bb, X, was_vector = as_block(A, B, x0)
        n, ncols = X.shape
        maxiter = default_maxiter(n, maxiter)
        prec = None if M is None or M.name == "none" else (lambda v: M.apply(v.reshape(-1, 1))[:, 0])
        cost = Cost()
        if self.U is not None and (self.U.shape[0] != n or (np.iscomplexobj(self.U) and not np.iscomplexobj(X))):
            self.reset()
        recycled_dim = 0 if self.U is None else self.U.shape[1]
        if self.U is not None:
            self._adapt(A, X.dtype, cost)
        ritz = self.ritz_residuals() if self.U is not None else None
        statuses, col_its = [], np.zeros(ncols, dtype=np.int64)
        for j in range(ncols):
            b = Bb[:, j]
            bnorm = float(np.linalg.norm(b))
            if bnorm == 0:
                X[:, j] = 0
                statuses.append(Status.CONVERGED_ZERO_RHS)
                continue
            offset = int(col_its[:j].sum())
            x, status, its = self._solve1(A, b, X[:, j].copy(), prec, rtol * bnorm, maxiter, bnorm,
                                          lambda i, **v: callback(offset + i, **v) if (j == 0 or "initial_residual" not in v) else None,
                                          cost)
            X[:, j] = x
            col_its[j] = its
            statuses.append(status)
        overall = combine_status(statuses)
        failed = sum(not s.converged for s in statuses)
        info = {"recycled_dim": int(recycled_dim), "cycle_length": self.m, "recycle_target": self.k,
                "cost": cost.as_dict()}
        if ritz is not None:
            info["ritz_residuals"] = [float(v) for v in ritz]
        return finish(A, X, Bb, was_vector, overall, int(col_its.sum()), status_message(overall, ncols, failed),
                      info, col_its)

    # ------------------------------------------------------------------ pieces
    def _adapt(self, A, dtype, cost: Cost) -> None:
        """``C R = qr(A U)``, ``U <- U R^{-1}`` for the current matrix; drops the space when ``A U``
        is numerically rank deficient."""
        U = self.U.astype(np.result_type(self.U.dtype, dtype), copy=False)
        AU = np.asarray(A @ U)
        cost.matvecs += U.shape[1]
        Q, R = np.linalg.qr(AU)
        d = np.abs(np.diag(R))
        cost.vector_flops += 4.0 * U.shape[0] * U.shape[1] ** 2
        if not d.size or d.min() <= 1e-12 * d.max():
            self.reset()
            return
        self.C = Q
        self.U = U @ sla.solve_triangular(R, np.eye(R.shape[0], dtype=R.dtype))

    def ritz_residuals(self) -> np.ndarray:
        """Relative residuals ``||A u - theta u|| / (|theta| ||u||)`` of the harmonic Ritz pairs of
        the current matrix on ``span(U)`` (valid after :meth:`_adapt`, which makes ``C = A U``):
        ``C^H C z = theta C^H U z``, ``u = U z``, ``A u = C z``. Sorted by ``|theta|``."""
        U, C = self.U, self.C
        theta, Z = sla.eig(C.conj().T @ C, C.conj().T @ U)
        keep = np.isfinite(theta) & (np.abs(theta) > 0)
        theta, Z = theta[keep], Z[:, keep]
        order = np.argsort(np.abs(theta))
        theta, Z = theta[order], Z[:, order]
        UZ, CZ = U @ Z, C @ Z
        res = np.linalg.norm(CZ - UZ * theta, axis=0)
        return res / (np.abs(theta) * np.linalg.norm(UZ, axis=0))

    def _solve1(self, A, b, x, prec, tol, maxiter, bnorm, callback, cost: Cost):
        n = b.shape[0]
        real = not np.iscomplexobj(x)
        r = b - A @ x
        cost.matvecs += 1
        callback(0, initial_residual=float(np.linalg.norm(r)) / bnorm, residual_kind=TRUE_RESIDUAL)
        its = 0
        best_x, best_norm = x.copy(), float(np.linalg.norm(r))
        replacements = 0
        while True:
            if self.C is not None:
                y = _project(self.C, r)
                x = x + self.U @ y
                r = r - self.C @ y
                cost.vector_flops += 6.0 * n * self.C.shape[1]
            beta = float(np.linalg.norm(r))
            if beta <= tol:
                r_true = b - A @ x
                cost.matvecs += 1
                true_norm = float(np.linalg.norm(r_true))
                if true_norm <= tol:
                    return x, Status.CONVERGED_RTOL, its
                if replacements >= 5:
                    return (x, Status.DIVERGED_TOLERANCE_UNREACHABLE, its) if true_norm <= best_norm else \
                        (best_x, Status.DIVERGED_TOLERANCE_UNREACHABLE, its)
                replacements += 1
                r, beta = r_true, true_norm
                continue
            if its >= maxiter:
                return (x, Status.DIVERGED_MAX_IT, its) if beta <= best_norm else (best_x, Status.DIVERGED_MAX_IT, its)
            k = 0 if self.C is None else self.C.shape[1]
            steps = min(self.m - k, maxiter - its)
            x, r, done, happy = self._cycle(A, b, x, r, beta, prec, tol, steps, bnorm, callback, its, cost, real)
            its += done
            norm = float(np.linalg.norm(r))
            if norm < best_norm:
                best_x, best_norm = x.copy(), norm
            if happy and norm > tol:
                # The Krylov space became invariant without reaching b: restarting with the same
                # (deflated) operator cannot help.
                return best_x, Status.DIVERGED_TOLERANCE_UNREACHABLE, its

    def _cycle(self, A, b, x, r, beta, prec, tol, steps, bnorm, callback, its0, cost: Cost, real: bool):
        """One cycle of ``steps`` Arnoldi steps against ``[C, V]``; returns the new ``x``, its true
        residual, the steps done and whether the space became invariant. Updates ``U``, ``C``."""
        n = b.shape[0]
        C, U = self.C, self.U
        k = 0 if C is None else C.shape[1]
        dtype = r.dtype
        Q = np.empty((n, k + steps + 1), dtype=dtype, order="F")
        if k:
            Q[:, :k] = C
        Z = None if prec is None else np.empty((n, steps), dtype=dtype, order="F")
        H = np.zeros((k + steps + 1, steps), dtype=dtype)  # rows :k are B, rows k: are Hbar
        R = np.zeros((steps + 1, steps), dtype=dtype)  # Hbar, rotated
        cs, sn = np.zeros(steps), np.zeros(steps, dtype=dtype)
        g = np.zeros(steps + 1, dtype=dtype)
        g[0] = beta
        Q[:, k] = r / beta
        happy = False
        j = -1
        for j in range(steps):
            v = Q[:, k + j]
            if prec is None:
                w = np.asarray(A @ v)
            else:
                Z[:, j] = prec(v)
                cost.precond += 1
                w = np.asarray(A @ Z[:, j])
            cost.matvecs += 1
            basis = Q[:, :k + j + 1]
            before = float(np.linalg.norm(w))
            h = _project(basis, w)
            w = w - basis @ h
            hn = float(np.linalg.norm(w))
            cost.vector_flops += 4.0 * n * (k + j + 1)
            if hn < REORTHOGONALIZE * before:
                # Cancellation: classical Gram-Schmidt lost orthogonality; a second pass restores it
                # ("twice is enough", Daniel, Gragg, Kaufman & Stewart 1976).
                h2 = _project(basis, w)
                w = w - basis @ h2
                h = h + h2
                hn = float(np.linalg.norm(w))
                cost.vector_flops += 4.0 * n * (k + j + 1)
            H[:k + j + 1, j] = h
            H[k + j + 1, j] = hn
            col = np.empty(j + 2, dtype=dtype)
            col[:j + 1] = h[k:]
            col[j + 1] = hn
            for i in range(j):
                a_i, b_i = col[i], col[i + 1]
                col[i] = cs[i] * a_i + sn[i] * b_i
                col[i + 1] = -np.conj(sn[i]) * a_i + cs[i] * b_i
            cs[j], sn[j], col[j] = _givens(col[j], col[j + 1])
            col[j + 1] = 0
            R[:j + 2, j] = col
            g[j + 1] = -np.conj(sn[j]) * g[j]
            g[j] = cs[j] * g[j]
            res = float(abs(g[j + 1]))
            callback(its0 + j + 1, residual=res / bnorm, residual_kind=TRUE_RESIDUAL)
            if hn <= _EPS * beta:
                happy = True
            # The next basis vector is kept even when the cycle stops here: [C, V] (with it) is the
            # range side of A [U D, Z] = [C, V] G that the recycling step uses.
            Q[:, k + j + 1] = w / hn if hn > 0 else 0
            if happy or res <= tol or not np.isfinite(res):
                break
        size = j + 1
        cost.steps += size
        cost.cycles += 1
        diag = np.abs(np.diag(R[:size, :size]))
        if np.any(diag == 0) or not np.all(np.isfinite(R[:size, :size])):
            return x, r, size, True
        yv = sla.solve_triangular(R[:size, :size], g[:size])
        # Correction over span(U, Z): the rows along C require D y_U + B y_V = 0.
        V = Q[:, k:k + size]
        update = (V if prec is None else Z[:, :size]) @ yv
        if k:
            update -= U @ (H[:k, :size] @ yv)
        x = x + update
        r_new = b - A @ x
        cost.matvecs += 1
        cost.vector_flops += 2.0 * n * (size + 2 * k)
        self._recycle(Q, Z, H, k, size, prec is None, real, n, cost)
        cost.per_cycle.append({"steps": size, "recycled_dim": k})
        return x, r_new, size, happy

    def _recycle(self, Q, Z, H, k, size, unpreconditioned, real, n, cost: Cost) -> None:
        """Replace ``U``, ``C`` by the ``self.k`` harmonic Ritz vectors of smallest magnitude over
        ``span([U, Z])`` (see the module notes)."""
        if k + size < self.k + 1:
            return
        U = self.U
        dtype = Q.dtype
        Vhat = Q[:, :k + size + 1]
        if k:
            unorm = np.linalg.norm(U, axis=0)
            D = 1.0 / unorm
            # A (U D) = C D: the first k columns of G are D on the rows of C.
            G = np.zeros((k + size + 1, k + size), dtype=dtype)
            G[:k, :k] = np.diag(D)
            G[:, k:] = H[:k + size + 1, :size]
            What_U = U * D
        else:
            G = H[:size + 1, :size].copy()
            What_U = np.empty((n, 0), dtype=dtype)
        Wz = Q[:, k:k + size] if unpreconditioned else Z[:, :size]
        # S = Vhat^H What, What = [U D, Wz].
        if unpreconditioned:
            S = np.zeros((k + size + 1, k + size), dtype=dtype)
            if k:
                S[:, :k] = Vhat.conj().T @ What_U
            S[k:k + size, k:] = np.eye(size)
            cost.vector_flops += 2.0 * n * (k + size + 1) * k
        else:
            S = np.hstack([Vhat.conj().T @ What_U, Vhat.conj().T @ Wz])
            cost.vector_flops += 2.0 * n * (k + size + 1) * (k + size)
        GH = G.conj().T
        left, right = GH @ G, GH @ S
        try:
            # The standard problem (G^H S)^{-1} G^H G costs a third of the generalized QZ; QZ only
            # when G^H S is too ill-conditioned to invert.
            if np.linalg.cond(right) < 1e8:
                theta, P = sla.eig(np.linalg.solve(right, left), check_finite=False)
            else:
                theta, P = sla.eig(left, right)
        except (np.linalg.LinAlgError, ValueError):
            return
        finite = np.isfinite(theta)
        if finite.sum() < 1:
            return
        order = np.argsort(np.where(finite, np.abs(theta), np.inf))[: min(self.k, int(finite.sum()))]
        P = P[:, order]
        if real:
            # A real basis of the selected pairs (a split complex-conjugate pair adds one vector).
            P = np.hstack([P.real, P.imag])
            Pq, Pr, _ = sla.qr(P, mode="economic", pivoting=True)
            d = np.abs(np.diag(Pr))
            P = Pq[:, d > 1e-10 * d[0]] if d.size and d[0] > 0 else Pq[:, :0]
            if P.shape[1] > self.k + 1:
                P = P[:, : self.k + 1]
        if P.shape[1] == 0 or P.shape[1] >= self.m - 1:
            return
        GP = G @ P
        Qg, Rg = np.linalg.qr(GP)
        dg = np.abs(np.diag(Rg))
        if not dg.size or dg.min() <= 1e-12 * dg.max():
            return
        Rinv = sla.solve_triangular(Rg, np.eye(Rg.shape[0], dtype=Rg.dtype))
        PR = P @ Rinv
        self.U = Wz @ PR[k:] + (What_U @ PR[:k] if k else 0)
        self.C = np.ascontiguousarray(Vhat @ Qg)
        cost.vector_flops += 2.0 * n * (k + size) * P.shape[1] * 2
