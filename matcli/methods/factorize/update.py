"""Updating a truncated SVD after appending columns or rows, or adding a low-rank term.

With ``A ~ U diag(s) V^H`` (rank k) and appended columns ``C`` (m x p), split ``C`` into its part in
the current left subspace and the rest: ``C = U (U^H C) + (I - U U^H) C``. With ``Q`` an orthonormal
basis orthogonal to ``U`` of (an approximation of) the range of ``(I - U U^H) C``,

    [U diag(s) V^H, C] = [U, Q] [[diag(s), U^H C], [0, Q^H C]] blkdiag(V, I_p)^H

and the SVD of the small ``(k + l) x (k + p)`` middle matrix gives the updated factors (Zha & Simon
1999). Rows are the same update of ``A^H``. A low-rank term, ``A + X Y^H`` (Brand 2006), needs a
complement on both sides: ``[U, P] ([[diag(s), 0], [0, 0]] + [U^H X; P^H X] [V^H Y; Q^H Y]^H) [V, Q]^H``.

The complement (after Vecharynski & Saad 2014 and the sparse updating of Deng et al. 2024,
"Fast Updating Truncated SVD for Representation Learning with Sparse Matrices") is exact (a thin QR
of the dense m x p ``(I - U U^H) C``) only when ``p <= 2 l``, i.e. when that block is of the size
of the factors themselves; otherwise it is a randomized rank-``l`` range finder with power iterations
applied to ``(I - U U^H) C`` as an operator: ``C`` (sparse or dense) enters only through products
with thin blocks, and no intermediate has more than ``max(m, n) x (k + l)`` entries.

The update is exact when ``A`` has rank ``k`` and the complement is exact; otherwise it is an
approximation of the truncated SVD of the new matrix (the discarded part of ``A``, and of the
complement, is lost). The triplet residuals against the new matrix, computed with sparse products,
say how good it is, and the status is earned against ``tol`` from them.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp

from matcli.core.result import Callback, Result, Status, no_callback
from matcli.methods.factorize.metrics import (PROBES, adjoint_matmul, column_norms, frobenius_norm, matmul,
                                              orthogonality_loss, safe_norm)
from matcli.methods.factorize.rsvd import orth_against, random_complement
from matcli.methods.factorize.signs import canonical_phases

#: Residual accepted for an update with ``tol = 0``: half the digits (the certificate's floor).
TRIPLET_FLOOR = math.sqrt(float(np.finfo(np.float64).eps))


def default_complement_rank(p: int, rank: int) -> int:
    """Columns of the complement for ``p`` appended vectors: all ``p`` (exact) while ``p <= 2 l`` with
    ``l = 2 rank + 10``, else the randomized ``l``. Below ``2 l`` the dense block is no larger than twice
    the randomized one, and its one thin QR costs about what the randomized finder's products and two
    orthonormalisations (one power iteration) cost, without its approximation."""
    l = 2 * rank + 10
    return p if p <= 2 * l else l


def _work_dtype(*arrays) -> np.dtype:
    """float64, or complex128 when any operand is complex (float32 input is promoted)."""
    return np.dtype(np.complex128 if any(np.iscomplexobj(a) for a in arrays if a is not None) else np.float64)


def _as_work(M, dtype: np.dtype):
    """``M`` (dense or sparse) in the working dtype; sparse stays sparse (CSR/CSC kept)."""
    if sp.issparse(M):
        return M if M.dtype == dtype else M.astype(dtype)
    return np.asarray(M, dtype=dtype)


def _adjoint(M):
    """``M^H`` of a dense or sparse matrix (sparse: a CSR <-> CSC copy of the ``nnz`` values only)."""
    return M.conj().T if np.iscomplexobj(M) else M.T


def _hmul(M, X: np.ndarray) -> np.ndarray:
    """``M^H X`` without copying ``M`` (the appended block: one product, no chunking)."""
    if np.iscomplexobj(M) or np.iscomplexobj(X):
        return np.asarray(M.T @ X.conj()).conj()
    return np.asarray(M.T @ X)


def _svd(middle: np.ndarray):
    """Thin SVD of the small middle matrix: gesdd, gesvd if gesdd does not converge."""
    try:
        return sla.svd(middle, full_matrices=False, check_finite=False)
    except np.linalg.LinAlgError:
        return sla.svd(middle, full_matrices=False, check_finite=False, lapack_driver="gesvd")


def complement_basis(M, B: np.ndarray, l: int, power_iters: int, rng: np.random.Generator) -> np.ndarray:
    """Orthonormal basis, orthogonal to ``B``, of the range of ``(I - B B^H) M`` or of its top part.

    Parameters
    ----------
    M : (n, p) ndarray or sparse matrix
    B : (n, k) ndarray with orthonormal columns
    l : int
        ``l >= p`` (or 0): exact, a thin QR of the dense ``n x p`` block. ``0 < l < p``: randomized
        range finder with ``l`` Gaussian directions and ``power_iters`` power iterations on the operator
        ``M_perp = (I - B B^H) M``; ``M`` enters only through ``M @ X`` and ``M^H @ X`` with ``X`` of
        ``l`` columns.

    Returns
    -------
    (n, l') ndarray, ``l' <= min(l, p)``: directions whose part outside range(B) is below rounding
    relative to the block before the projection are dropped (:func:`orth_against` projects and deflates).
    """
    p = M.shape[1]
    if l <= 0 or l >= p:
        return orth_against(M.toarray() if sp.issparse(M) else np.array(M), B)
    omega = rng.standard_normal((p, l))
    if np.iscomplexobj(M) or np.iscomplexobj(B):
        omega = omega + 1j * rng.standard_normal((p, l))
    Y = np.asarray(M @ omega)
    for _ in range(power_iters):
        # the intermediate blocks need only keep their span well conditioned (the final orth_against
        # orthonormalises): one projection against B and LU with partial pivoting (half a QR's flops;
        # scikit-learn's power-iteration normaliser)
        Y = Y - B @ (B.conj().T @ Y)
        Y = sla.lu(Y, permute_l=True, overwrite_a=True, check_finite=False)[0]
        Y = np.asarray(M @ _hmul(M, Y))
    return orth_against(Y, B)


def append_cols_update(U: np.ndarray, s: np.ndarray, Vt: np.ndarray, C, *, rank: int, complement_rank: int,
                       power_iters: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Rank-``rank`` SVD of ``[U diag(s) Vt, C]``.

    Parameters
    ----------
    U : (m, k), s : (k,), Vt : (k, n)
        Current truncated SVD (orthonormal U and V), in the working dtype.
    C : (m, p) ndarray or sparse matrix
        Appended columns.
    rank : int
        Triplets kept (fewer when the update spans fewer: ``k + l'``).
    complement_rank, power_iters
        See :func:`complement_basis` (``l``).

    Returns
    -------
    U_new (m, r), s_new (r,), Vt_new (r, n + p), l' (columns of the complement)
    """
    k = s.size
    UhC = _hmul(C, U).conj().T                                                # k x p
    Q = complement_basis(C, U, complement_rank, power_iters, rng)            # m x l'
    QhC = _hmul(C, Q).conj().T                                                # l' x p
    l = Q.shape[1]
    p = C.shape[1]
    middle = np.zeros((k + l, k + p), dtype=np.result_type(U, UhC))
    middle[:k, :k] = np.diag(s)
    middle[:k, k:] = UhC
    middle[k:, k:] = QhC
    F, theta, Gh = _svd(middle)
    r = min(rank, theta.size)
    F, theta, Gh = F[:, :r], theta[:r], Gh[:r]
    U_new = U @ F[:k] + Q @ F[k:]
    Vt_new = np.hstack([Gh[:, :k] @ Vt, Gh[:, k:]])
    return U_new, theta, Vt_new, l


def lowrank_update(U: np.ndarray, s: np.ndarray, Vt: np.ndarray, X, Y, *, rank: int, complement_rank: int,
                   power_iters: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Rank-``rank`` SVD of ``U diag(s) Vt + X Y^H`` (Brand 2006).

    Parameters
    ----------
    U : (m, k), s : (k,), Vt : (k, n)
    X : (m, q), Y : (n, q) ndarrays or sparse matrices
    rank, complement_rank, power_iters
        As in :func:`append_cols_update` (one complement on each side).

    Returns
    -------
    U_new (m, r), s_new (r,), Vt_new (r, n), min(l_left, l_right)
    """
    k = s.size
    V = Vt.conj().T
    UhX = _hmul(X, U).conj().T                                                # k x q
    VhY = _hmul(Y, V).conj().T
    P = complement_basis(X, U, complement_rank, power_iters, rng)
    Q = complement_basis(Y, V, complement_rank, power_iters, rng)
    left = np.vstack([UhX, _hmul(X, P).conj().T])                            # (k + lp) x q
    right = np.vstack([VhY, _hmul(Y, Q).conj().T])                           # (k + lq) x q
    middle = left @ right.conj().T
    middle[:k, :k] += np.diag(s)
    F, theta, Gh = _svd(middle)
    r = min(rank, theta.size)
    F, theta, Gh = F[:, :r], theta[:r], Gh[:r]
    U_new = U @ F[:k] + P @ F[k:]
    Vt_new = Gh[:, :k] @ Vt + Gh[:, k:] @ Q.conj().T
    return U_new, theta, Vt_new, min(P.shape[1], Q.shape[1])


class LowRankModified:
    """``A + X Y^H`` as an operator for the metrics: products, adjoint and (small cases only) dense form.

    ``A`` (m x n) dense or sparse, ``X`` (m x q), ``Y`` (n x q); the m x n sum is formed only by
    ``__array__``, which :meth:`frobenius_norm` calls for small matrices whose norm cancels.
    """

    def __init__(self, A, X, Y):
        self.A, self.X, self.Y = A, X, Y
        self.shape = A.shape
        self.dtype = np.result_type(A.dtype, X.dtype, Y.dtype)

    def __matmul__(self, W: np.ndarray) -> np.ndarray:
        return matmul(self.A, W) + matmul(self.X, adjoint_matmul(self.Y, W))

    @property
    def T(self) -> "LowRankModified":
        # (A + X Y^H)^T = A^T + conj(Y) X^T
        return LowRankModified(self.A.T, self.Y.conj(), self.X.conj())

    def __array__(self, dtype=None, copy=None):
        dense = (self.A.toarray() if sp.issparse(self.A) else np.asarray(self.A)) + _dense(self.X) @ _dense(
            self.Y).conj().T
        return dense if dtype is None else dense.astype(dtype)

    def frobenius_norm(self) -> float:
        """``||A + X Y^H||_F`` from ``||A||^2 + 2 Re tr(X^H A Y) + tr((X^H X)(Y^H Y))`` (one product with A).

        Exact in exact arithmetic; cancellation loses accuracy only when the sum is far smaller than
        ``||A||`` (then the dense form is used when small).
        """
        A, X, Y = self.A, _dense(self.X), _dense(self.Y)
        normA = frobenius_norm(A)
        cross = np.vdot(X, matmul(A, Y)).real
        # tr(P Q) = sum(P * conj(Q)) for Hermitian P, Q: the real part of vdot(P, Q)
        gram = np.vdot(X.conj().T @ X, Y.conj().T @ Y).real
        squared = normA**2 + 2.0 * cross + gram
        if squared <= 1e-12 * max(normA**2, gram) and A.shape[0] * A.shape[1] <= 4_000_000:
            return frobenius_norm(np.asarray(self))
        return float(np.sqrt(max(squared, 0.0)))


def _dense(M) -> np.ndarray:
    return M.toarray() if sp.issparse(M) else np.asarray(M)


def _error(new, X: np.ndarray, Y: np.ndarray, newYh: np.ndarray, norm: float,
           rng: np.random.Generator) -> tuple[float, str]:
    """``||new - X Y||_F / ||new||_F`` without forming ``new - X Y``: the Gram expansion
    ``||new||^2 - 2 Re <X, new Y^H> + tr((X^H X)(Y Y^H))`` (``newYh = new @ Y^H``), or, when it cancels
    (relative error below ~3e-7), the randomized estimate with Gaussian probes. ``new = 0``: absolute."""
    gram = float(np.vdot(X.conj().T @ X, Y @ Y.conj().T).real)
    if norm == 0.0:
        return math.sqrt(max(gram, 0.0)), "absolute ||X Y||_F (A = 0)"
    squared = norm**2 - 2.0 * float(np.vdot(X, newYh).real) + gram
    if squared > 1e-13 * norm**2:
        return math.sqrt(squared) / norm, "exact (Gram expansion)"
    omega = rng.standard_normal((new.shape[1], PROBES))
    residual = matmul(new, omega) - X @ (Y @ omega)
    return safe_norm(residual) / math.sqrt(PROBES) / norm, f"randomized estimate ({PROBES} Gaussian probes)"


def certificate_metrics(new, U: np.ndarray, s: np.ndarray, Vt: np.ndarray, previous: tuple[np.ndarray, np.ndarray],
                        norm: float, rng: np.random.Generator) -> tuple[dict[str, float], dict[str, str]]:
    """The metrics of every SVD (see :func:`~matcli.methods.factorize.metrics.svd_metrics`) against the new
    matrix, from sparse products only (``new @ V``, ``new^H @ U`` and ``new @ V_previous``; never densified,
    whatever its size), plus ``previous_error`` of ``previous = (U_old diag(s_old), Vt_old)`` padded with
    zeros to the new shape."""
    V = Vt.conj().T
    AV = matmul(new, V)
    AhU = adjoint_matmul(new, U)
    error, how = _error(new, U * s, Vt, AV, norm, rng)
    metrics = {"reconstruction_error": error, "orthogonality_loss": max(orthogonality_loss(U), orthogonality_loss(V))}
    info = {"reconstruction_error_method": how}
    if s.size:
        largest = float(np.max(s))
        scale, info["triplet_residual_scale"] = ((largest, "largest computed value") if largest > 0 else
                                                 (norm, "||A||_F (every computed value is 0)") if norm > 0 else
                                                 (1.0, "absolute (A = 0)"))
        worst = np.maximum(column_norms(AV - U * s), column_norms(AhU - V * s))
        metrics["max_triplet_residual"] = float(np.max(worst) / scale)
    metrics["frobenius_norm"] = norm
    X, Y = previous
    metrics["previous_error"] = _error(new, X, Y, matmul(new, Y.conj().T), norm, rng)[0]
    return metrics, info


def update_svd(A, *, U: np.ndarray, s: np.ndarray, Vt: np.ndarray, rows=None, cols=None, lowrank=None,
               rank: int, complement_rank: int = 0, power_iters: int = 1, tol: float = 0.0,
               rng: np.random.Generator, callback: Callback = no_callback) -> Result:
    """Updated rank-``rank`` SVD of ``[A; rows]``, ``[A, cols]`` or ``A + X Y^H`` from the SVD of ``A``.

    Parameters
    ----------
    A : (m, n) ndarray or sparse matrix
        The old matrix, used only to measure the result against the new one (sparse products).
    U : (m, k), s : (k,), Vt : (k, n)
        Its truncated SVD (orthonormal ``U``, ``V``).
    rows : (p, n), cols : (m, p), or lowrank : pair ``(X (m, q), Y (n, q))``
        Exactly one of them; dense or sparse.
    rank : int
        Triplets returned. When it exceeds what the update spans (``k + l'``), the missing triplets are
        completed by orthonormal vectors with value 0 (``info["zero_triplets_completed"]``): exact zero
        singular triplets when the complement was exact and ``A`` had rank ``k``; the residuals say
        otherwise.
    complement_rank : int
        0: exact when ``p <= 2 (2 rank + 10)``, else randomized of rank ``2 rank + 10``
        (:func:`default_complement_rank`);
        ``l > 0``: randomized rank ``l`` (exact when ``l >= p``).
    power_iters : int
        Power iterations of the randomized complement (1: on ml-100k and a 50000 x 5000 power-law matrix,
        at ranks 10 and 50, more changed the updated singular values by less than 1e-5 relative, none
        left them up to 2x further from the fresh SVD's).
    tol : float
        Accepted ``max_triplet_residual`` (relative to ``s_1``, against the new matrix); 0 = the
        floor ``sqrt(eps)`` (an exact update).

    Returns
    -------
    Result
        outputs ``U``, ``s``, ``Vt`` of the new matrix; metrics as for every SVD (against the new
        matrix) plus ``previous_error`` (the old factors, padded with zeros, against the new matrix).
        Status ``converged_direct`` (residuals within ``sqrt(eps)``) or ``converged_rtol`` (within
        ``tol``), else ``diverged_tolerance_unreachable``: the update is approximate and its residuals
        exceed ``tol`` (recompute, or accept a larger ``tol``).
    """
    if sum(x is not None for x in (rows, cols, lowrank)) != 1:
        raise ValueError("give exactly one of rows, cols and lowrank")
    dtype = _work_dtype(A, U, Vt, rows, cols, *(lowrank or ()))
    U, Vt = np.asarray(U, dtype=dtype), np.asarray(Vt, dtype=dtype)
    s = np.asarray(s, dtype=np.float64)
    A = _as_work(A, dtype)
    k = s.size
    if rows is not None:
        E = _as_work(rows, dtype)
        p = E.shape[0]
        l = complement_rank or default_complement_rank(p, rank)
        V_new, s_new, Ut_new, used = append_cols_update(Vt.conj().T, s, U.conj().T, _adjoint(E), rank=rank,
                                                        complement_rank=l, power_iters=power_iters, rng=rng)
        U_new, Vt_new = Ut_new.conj().T, V_new.conj().T
        new = sp.vstack([A, E], format="csr") if sp.issparse(A) or sp.issparse(E) else np.vstack([A, E])
        padded = (np.vstack([U, np.zeros((p, k), dtype=dtype)]), Vt)
        appended = {"appended_rows": int(p)}
        norm_new = None
    elif cols is not None:
        C = _as_work(cols, dtype)
        p = C.shape[1]
        l = complement_rank or default_complement_rank(p, rank)
        U_new, s_new, Vt_new, used = append_cols_update(U, s, Vt, C, rank=rank, complement_rank=l,
                                                        power_iters=power_iters, rng=rng)
        new = sp.hstack([A, C], format="csr") if sp.issparse(A) or sp.issparse(C) else np.hstack([A, C])
        padded = (U, np.hstack([Vt, np.zeros((k, p), dtype=dtype)]))
        appended = {"appended_cols": int(p)}
        norm_new = None
    else:
        X, Y = (_as_work(M, dtype) for M in lowrank)
        if X.ndim != 2 or Y.ndim != 2 or X.shape[0] != A.shape[0] or Y.shape[0] != A.shape[1] \
                or X.shape[1] != Y.shape[1]:
            raise ValueError(f"lowrank needs X (m x q) and Y (n x q) for the {A.shape[0]}x{A.shape[1]} matrix, "
                             f"got {X.shape} and {Y.shape}")
        p = X.shape[1]
        l = complement_rank or default_complement_rank(p, rank)
        U_new, s_new, Vt_new, used = lowrank_update(U, s, Vt, X, Y, rank=rank, complement_rank=l,
                                                    power_iters=power_iters, rng=rng)
        new = LowRankModified(A, X, Y)
        norm_new = new.frobenius_norm()
        padded = (U, Vt)
        appended = {"lowrank_terms": int(p)}
    completed = rank - s_new.size
    if completed > 0:
        U_new = np.hstack([U_new, random_complement(U_new, completed, rng)])
        V_new = Vt_new.conj().T
        Vt_new = np.hstack([V_new, random_complement(V_new, completed, rng)]).conj().T
        s_new = np.concatenate([s_new, np.zeros(completed)])
    callback(1, rank=float(s_new.size))
    U_new, Vt_new = canonical_phases(U_new, Vt_new)
    norm = frobenius_norm(new) if norm_new is None else norm_new
    metrics, how = certificate_metrics(new, U_new, s_new, Vt_new, (padded[0] * s, padded[1]), norm, rng)
    exact = l >= p
    info = {**how, **appended, "previous_rank": int(k), "rank": int(s_new.size),
            "zero_triplets_completed": max(int(completed), 0),
            "complement": "exact thin QR" if exact else
            f"randomized rank {l} ({power_iters} power iteration{'' if power_iters == 1 else 's'}), {used} kept",
            "new_shape": list(new.shape)}
    limit = max(float(tol), TRIPLET_FLOOR)
    residual = metrics.get("max_triplet_residual", 0.0)
    what = f"Zha-Simon update to rank {s_new.size} of the {new.shape[0]}x{new.shape[1]} matrix"
    if residual <= limit:
        status = Status.CONVERGED_DIRECT if tol <= TRIPLET_FLOOR else Status.CONVERGED_RTOL
        message = f"{what}; triplet residuals {residual:.2e} <= {limit:.2e}"
    else:
        status = Status.DIVERGED_TOLERANCE_UNREACHABLE
        message = (f"{what} is approximate: triplet residuals {residual:.2e} against the new matrix exceed "
                   f"{limit:.2e} (the discarded part of the old matrix{'' if exact else ' and of the complement'}"
                   "); recompute (--method lanczos) or accept a larger --tol")
    return Result(status=status, outputs={"U": U_new, "s": s_new, "Vt": Vt_new}, metrics=metrics, iterations=1,
                  info=info, message=message)
