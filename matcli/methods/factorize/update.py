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
from typing import Callable

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp

from matcli.core.result import Callback, Result, Status, no_callback
from matcli.methods.factorize.metrics import PROBES, column_norms, frobenius_norm, safe_norm
from matcli.methods.factorize.rsvd import orth_against, random_complement
from matcli.methods.factorize.signs import canonical_phases

#: An unscaled norm strictly between these is accurate: no square overflowed (the sum is below 1e280) and
#: the squares that underflowed (entries below ~1e-154) lose at most ``N 2.3e-308`` of a sum above 1e-280.
_SAFE = (1e-140, 1e140)

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


def _mul(M, X: np.ndarray) -> np.ndarray:
    """``M @ X`` as an ndarray, by scipy's one multi-vector product for sparse ``M``."""
    return np.asarray(M @ X)


def _norm(M) -> float:
    """``||M||_F`` (dense or sparse): numpy's unscaled norm when it is safely inside the floating-point
    range (one pass), else :func:`~matcli.methods.factorize.metrics.frobenius_norm`'s scaled one."""
    value = float(np.linalg.norm(M.data if sp.issparse(M) else M))
    return value if _SAFE[0] < value < _SAFE[1] else frobenius_norm(M)


def _column_norms(X: np.ndarray) -> np.ndarray:
    """``||X[:, j]||_2``: numpy's unscaled norms when every one is safely inside the floating-point range
    (or 0), else :func:`~matcli.methods.factorize.metrics.column_norms`' scaled ones."""
    norms = np.linalg.norm(X, axis=0) if X.size else np.zeros(X.shape[1])
    nonzero = norms[norms > 0]
    if nonzero.size == 0 or (_SAFE[0] < nonzero.min() and nonzero.max() < _SAFE[1]):
        return norms
    return column_norms(X)


def _hmul(M, X: np.ndarray) -> np.ndarray:
    """``M^H X`` without copying ``M`` (``M.T`` is a view; one product, no chunking)."""
    if np.iscomplexobj(M) or np.iscomplexobj(X):
        return np.asarray(M.T @ X.conj()).conj()
    return np.asarray(M.T @ X)


def _svd(middle: np.ndarray):
    """Thin SVD of the small middle matrix: gesdd, gesvd if gesdd does not converge."""
    try:
        return sla.svd(middle, full_matrices=False, check_finite=False)
    except np.linalg.LinAlgError:
        return sla.svd(middle, full_matrices=False, check_finite=False, lapack_driver="gesvd")


def complement_basis(M, B: np.ndarray, l: int, power_iters: int, rng: np.random.Generator,
                     BhM: np.ndarray | None = None) -> np.ndarray:
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
    BhM : (k, p) ndarray, optional
        ``B^H M`` when the caller has it: the exact path's first Gram-Schmidt pass (a second one
        follows only when the projected block is ill-conditioned, see :func:`orth_against`), on the
        columns scaled to unit norm.

    Returns
    -------
    (n, l') ndarray, ``l' <= min(l, p)``: directions whose part outside range(B) is below rounding
    relative to the block before the projection are dropped (:func:`orth_against` projects and deflates).
    """
    p = M.shape[1]
    if l <= 0 or l >= p:
        dense = M.toarray() if sp.issparse(M) else np.asarray(M)
        if BhM is None or p == 0:
            return orth_against(dense, B)
        # unit columns (the span is the same): appended vectors of very different norms (power-law
        # rows) made the block look ill-conditioned to Cholesky QR, whose test is relative to the
        # largest column, and sent it to Householder QR (10x the time on 4000 x 160 blocks); a column
        # is now deflated when its part outside range(B) is at rounding level relative to itself
        norms = np.linalg.norm(dense, axis=0)
        keep = norms > 0
        scaled = (dense[:, keep] - B @ BhM[:, keep]) / norms[keep]
        return orth_against(scaled, B, passes=0, scale=1.0)
    omega = rng.standard_normal((p, l))
    if np.iscomplexobj(M) or np.iscomplexobj(B):
        omega = omega + 1j * rng.standard_normal((p, l))
    Y = _mul(M, omega)
    for _ in range(power_iters):
        # the intermediate blocks need only keep their span well conditioned (the final orth_against
        # orthonormalises): one projection against B and LU with partial pivoting (half a QR's flops;
        # scikit-learn's power-iteration normaliser)
        Y = Y - B @ (B.conj().T @ Y)
        Y = sla.lu(Y, permute_l=True, overwrite_a=True, check_finite=False)[0]
        Y = _mul(M, _hmul(M, Y))
    return orth_against(Y, B)


def append_cols_update(U: np.ndarray, s: np.ndarray, Vt: np.ndarray, C, *, rank: int, complement_rank: int,
                       power_iters: int, rng: np.random.Generator
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, np.ndarray]:
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
    U_new (m, r), s_new (r,), Vt_new (r, n + p), l' (columns of the complement), and Gh (r, k + p), the
    middle SVD's right vectors: ``Vt_new = [Gh[:, :k] Vt, Gh[:, k:]]`` (the certificate uses it).
    """
    k = s.size
    UhC = _hmul(C, U).conj().T                                                # k x p
    Q = complement_basis(C, U, complement_rank, power_iters, rng, BhM=UhC)   # m x l'
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
    return U_new, theta, Vt_new, l, Gh


def lowrank_update(U: np.ndarray, s: np.ndarray, Vt: np.ndarray, X, Y, *, rank: int, complement_rank: int,
                   power_iters: int, rng: np.random.Generator
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, np.ndarray, np.ndarray]:
    """Rank-``rank`` SVD of ``U diag(s) Vt + X Y^H`` (Brand 2006).

    Parameters
    ----------
    U : (m, k), s : (k,), Vt : (k, n)
    X : (m, q), Y : (n, q) ndarrays or sparse matrices
    rank, complement_rank, power_iters
        As in :func:`append_cols_update` (one complement on each side).

    Returns
    -------
    U_new (m, r), s_new (r,), Vt_new (r, n), min(l_left, l_right), and Gh (r, k + lq) with the right
    complement Q (n, lq): ``Vt_new = Gh [V, Q]^H`` (the certificate uses them).
    """
    k = s.size
    V = Vt.conj().T
    UhX = _hmul(X, U).conj().T                                                # k x q
    VhY = _hmul(Y, V).conj().T
    P = complement_basis(X, U, complement_rank, power_iters, rng, BhM=UhX)
    Q = complement_basis(Y, V, complement_rank, power_iters, rng, BhM=VhY)
    left = np.vstack([UhX, _hmul(X, P).conj().T])                            # (k + lp) x q
    right = np.vstack([VhY, _hmul(Y, Q).conj().T])                           # (k + lq) x q
    middle = left @ right.conj().T
    middle[:k, :k] += np.diag(s)
    F, theta, Gh = _svd(middle)
    r = min(rank, theta.size)
    F, theta, Gh = F[:, :r], theta[:r], Gh[:r]
    U_new = U @ F[:k] + P @ F[k:]
    Vt_new = Gh[:, :k] @ Vt + Gh[:, k:] @ Q.conj().T
    return U_new, theta, Vt_new, min(P.shape[1], Q.shape[1]), Gh, Q


def lowrank_frobenius_norm(A, X, Y) -> float:
    """``||A + X Y^H||_F`` from ``||A||^2 + 2 Re tr(X^H A Y) + tr((X^H X)(Y^H Y))`` (one product with A).

    Exact in exact arithmetic; cancellation loses accuracy only when the sum is far smaller than
    ``||A||``: then the sum is formed densely when it has at most 4e6 entries.
    """
    X, Y = _dense(X), _dense(Y)
    normA = _norm(A)
    cross = np.vdot(X, _mul(A, Y)).real
    # tr(P Q) = sum(P * conj(Q)) for Hermitian P, Q: the real part of vdot(P, Q)
    gram = np.vdot(X.conj().T @ X, Y.conj().T @ Y).real
    squared = normA**2 + 2.0 * cross + gram
    if squared <= 1e-12 * max(normA**2, gram) and A.shape[0] * A.shape[1] <= 4_000_000:
        return frobenius_norm(_dense(A) + X @ Y.conj().T)
    return float(np.sqrt(max(squared, 0.0)))


def _dense(M) -> np.ndarray:
    return M.toarray() if sp.issparse(M) else np.asarray(M)


def _relative_error(cross: float, gram: float, X: np.ndarray, Yh: np.ndarray, norm: float, apply: Callable,
                    columns: int, rng: np.random.Generator) -> tuple[float, str]:
    """``||B - X Yh^H||_F / ||B||_F`` for the ``? x columns`` matrix ``B`` (``Yh`` has at most ``columns``
    rows: the missing ones are zeros) without forming the difference: the Gram expansion
    ``||B||^2 - 2 cross + gram`` with ``cross = Re <X, B Yh>`` and ``gram = tr((X^H X)(Yh^H Yh))``, or,
    when it cancels (relative error below ~3e-7), the randomized estimate with Gaussian probes
    (``apply(W) = B W``). ``B = 0``: absolute."""
    if norm == 0.0:
        return math.sqrt(max(gram, 0.0)), "absolute ||X Y||_F (A = 0)"
    squared = norm**2 - 2.0 * cross + gram
    if squared > 1e-13 * norm**2:
        return math.sqrt(squared) / norm, "exact (Gram expansion)"
    omega = rng.standard_normal((columns, PROBES))
    residual = apply(omega) - X @ (Yh.conj().T @ omega[:Yh.shape[0]])
    return safe_norm(residual) / math.sqrt(PROBES) / norm, f"randomized estimate ({PROBES} Gaussian probes)"


def _gram(Q: np.ndarray) -> np.ndarray:
    """``Q^H Q`` (Hermitian) by BLAS syrk / herk: half the flops of the product, which on the
    84000 x 50 factors of a 1e5 x 1e4 update dominated the certificate."""
    if Q.shape[1] == 0 or Q.shape[0] == 0:
        return Q.conj().T @ Q
    if np.iscomplexobj(Q):
        upper = sla.blas.zherk(1.0, np.asarray(Q, dtype=np.complex128).conj().T)
    else:
        upper = sla.blas.dsyrk(1.0, np.asarray(Q, dtype=np.float64).T)
    return np.triu(upper) + np.triu(upper, 1).conj().T


def _gram_trace(GX: np.ndarray, GY: np.ndarray, sx: np.ndarray) -> float:
    """``tr((X^H X)(Y^H Y))`` for ``X = Q diag(sx)`` from ``GX = Q^H Q`` and ``GY = Y^H Y`` (Hermitian:
    ``tr(P R) = Re vdot(P, R)``)."""
    return float(np.vdot(GX * np.outer(sx, sx), GY).real)


def _metrics(U: np.ndarray, s: np.ndarray, V: np.ndarray, AV: np.ndarray, AhU: np.ndarray, norm: float,
             previous: tuple[np.ndarray, np.ndarray, np.ndarray, float], apply: Callable,
             rng: np.random.Generator) -> tuple[dict[str, float], dict[str, str]]:
    """The metrics of every SVD (see :func:`~matcli.methods.factorize.metrics.svd_metrics`) of
    ``B ~ U diag(s) V^H`` from ``AV = B V`` and ``AhU = B^H U``, plus ``previous_error`` of
    ``previous = (U_old, s_old, V_old, Re <U_old diag(s_old), B V_old>)`` (``V_old`` padded with zero
    rows). The Gram matrices ``U^H U`` and ``V^H V`` serve both the orthogonality loss and the errors."""
    columns = V.shape[0]
    X = U * s
    GU, GV = _gram(U), _gram(V)
    error, how = _relative_error(float(np.vdot(X, AV).real), _gram_trace(GU, GV, s), X, V, norm, apply, columns,
                                 rng)
    eye = np.eye(s.size)
    metrics = {"reconstruction_error": error,
               "orthogonality_loss": float(max(np.linalg.norm(GU - eye), np.linalg.norm(GV - eye))) if s.size else 0.0}
    info = {"reconstruction_error_method": how}
    if s.size:
        largest = float(np.max(s))
        scale, info["triplet_residual_scale"] = ((largest, "largest computed value") if largest > 0 else
                                                 (norm, "||A||_F (every computed value is 0)") if norm > 0 else
                                                 (1.0, "absolute (A = 0)"))
        worst = np.maximum(_column_norms(AV - X), _column_norms(AhU - V * s))
        metrics["max_triplet_residual"] = float(np.max(worst) / scale)
    metrics["frobenius_norm"] = norm
    U_old, s_old, V_old, cross = previous
    gram = _gram_trace(_gram(U_old), _gram(V_old), s_old)
    metrics["previous_error"] = _relative_error(cross, gram, U_old * s_old, V_old, norm, apply, columns, rng)[0]
    return metrics, info


def appended_certificate(mul_A: Callable, hmul_A: Callable, C, U_old: np.ndarray, s_old: np.ndarray,
                         V_old: np.ndarray, U: np.ndarray, s: np.ndarray, V: np.ndarray, G1: np.ndarray,
                         norm: float, rng: np.random.Generator) -> tuple[dict[str, float], dict[str, str]]:
    """Metrics (:func:`_metrics`) of an update of ``B = [A, C]`` (m x (n + p)), rows appended being columns
    appended to the adjoint (the metrics are the same for ``B^H``).

    ``A`` enters through ``mul_A(W) = A W`` and ``hmul_A(W) = A^H W`` only, in two products:
    ``A V_old`` (k columns) and ``A^H U`` (r columns). The first serves the previous factors' error and,
    because the update's first ``r0 = G1.shape[1]`` right vectors are ``V[:n, :r0] = V_old G1`` (the
    kernel builds them so), ``A V[:n, :r0] = (A V_old) G1``: the same product up to rounding in the
    order of the sums (about ``eps ||A|| ||G1||``, far below any residual the certificate accepts).
    Columns past ``r0`` (completed triplets) get their own product.
    """
    n, r0 = V_old.shape[0], G1.shape[1]
    Z = mul_A(V_old)                                                          # A V_old, m x k
    AV = np.empty((U.shape[0], s.size), dtype=np.result_type(Z, U, V))
    AV[:, :r0] = Z @ G1 + _mul(C, V[n:, :r0])
    if r0 < s.size:
        AV[:, r0:] = mul_A(V[:n, r0:]) + _mul(C, V[n:, r0:])
    AhU = np.vstack([hmul_A(U), _hmul(C, U)])

    def apply(W: np.ndarray) -> np.ndarray:
        return mul_A(W[:n]) + _mul(C, W[n:])

    return _metrics(U, s, V, AV, AhU, norm, (U_old, s_old, V_old, float(np.vdot(U_old * s_old, Z).real)), apply, rng)


def lowrank_certificate(A, X, Y, U_old: np.ndarray, s_old: np.ndarray, V_old: np.ndarray, U: np.ndarray,
                        s: np.ndarray, V: np.ndarray, Gh: np.ndarray, Q: np.ndarray, norm: float,
                        rng: np.random.Generator) -> tuple[dict[str, float], dict[str, str]]:
    """Metrics (:func:`_metrics`) of an update of ``B = A + X Y^H``. The first ``r0 = Gh.shape[0]`` right
    vectors are ``[V_old, Q] Gh^H``; when ``Q`` has at most ``r0`` columns, one product
    ``A [V_old, Q]`` gives both ``A V_old`` (the previous factors' error) and ``A V[:, :r0]`` (up to
    rounding in the order of the sums), else ``A V_old`` and ``A V`` are separate products. Plus
    ``A^H U``: two products with ``A`` in all."""
    k, r0 = s_old.size, Gh.shape[0]
    if Q.shape[1] <= r0:
        AW = _mul(A, np.hstack([V_old, Q]))
        AV_old, AV = AW[:, :k], AW @ Gh.conj().T
        if r0 < s.size:
            AV = np.hstack([AV, _mul(A, V[:, r0:])])
    else:
        AV_old, AV = _mul(A, V_old), _mul(A, V)
    AV = AV + _mul(X, _hmul(Y, V))
    AhU = _hmul(A, U) + _mul(Y, _hmul(X, U))

    def apply(W: np.ndarray) -> np.ndarray:
        return _mul(A, W) + _mul(X, _hmul(Y, W))

    cross = float(np.vdot(U_old * s_old, AV_old + _mul(X, _hmul(Y, V_old))).real)
    return _metrics(U, s, V, AV, AhU, norm, (U_old, s_old, V_old, cross), apply, rng)


def _complete(U: np.ndarray, s: np.ndarray, V: np.ndarray, rank: int,
              rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``rank`` triplets: missing ones are orthonormal vectors (U's first, then V's) with value 0."""
    missing = rank - s.size
    if missing <= 0:
        return U, s, V
    U = np.hstack([U, random_complement(U, missing, rng)])
    V = np.hstack([V, random_complement(V, missing, rng)])
    return U, np.concatenate([s, np.zeros(missing)]), V


def update_svd(A, *, U: np.ndarray, s: np.ndarray, Vt: np.ndarray, rows=None, cols=None, lowrank=None,
               rank: int, complement_rank: int = 0, power_iters: int = 1, tol: float = 0.0,
               rng: np.random.Generator, callback: Callback = no_callback) -> Result:
    """Updated rank-``rank`` SVD of ``[A; rows]``, ``[A, cols]`` or ``A + X Y^H`` from the SVD of ``A``.

    Parameters
    ----------
    A : (m, n) ndarray or sparse matrix
        The old matrix, used only to measure the result against the new one: two products with
        ``k``-column blocks (see :func:`appended_certificate`, :func:`lowrank_certificate`); the new
        matrix is never formed.
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
    V = Vt.conj().T
    k = s.size
    m, n = A.shape
    if lowrank is None:
        adjoint = rows is not None
        E = _as_work(rows if adjoint else cols, dtype)
        # rows appended to A are columns appended to A^H: one update, in the column orientation
        U_k, V_k, C = (V, U, _adjoint(E)) if adjoint else (U, V, E)
        p = C.shape[1]
        l = complement_rank or default_complement_rank(p, rank)
        if l >= p and sp.issparse(C):
            # the exact complement forms the dense block anyway (no larger than the factors): the
            # update's and the certificate's products with it are then BLAS-3, without sparse overhead
            C = C.toarray()
        left, s_new, right_h, used, Gh = append_cols_update(U_k, s, V_k.conj().T, C, rank=rank, complement_rank=l,
                                                            power_iters=power_iters, rng=rng)
        G1 = Gh[:, :k].conj().T
        completed = rank - s_new.size
        U_new, V_new = (right_h.conj().T, left) if adjoint else (left, right_h.conj().T)
        U_new, s_new, V_new = _complete(U_new, s_new, V_new, rank, rng)
        left, right = (V_new, U_new) if adjoint else (U_new, V_new)
        if adjoint:
            mul_A, hmul_A = (lambda W: _hmul(A, W)), (lambda W: _mul(A, W))
        else:
            mul_A, hmul_A = (lambda W: _mul(A, W)), (lambda W: _hmul(A, W))
        norm = math.hypot(_norm(A), _norm(E))
        metrics, how = appended_certificate(mul_A, hmul_A, C, U_k, s, V_k, left, s_new, right, G1, norm, rng)
        new_shape = (m + p, n) if adjoint else (m, n + p)
        appended = {"appended_rows" if adjoint else "appended_cols": int(p)}
    else:
        X, Y = (_as_work(M, dtype) for M in lowrank)
        if X.ndim != 2 or Y.ndim != 2 or X.shape[0] != m or Y.shape[0] != n or X.shape[1] != Y.shape[1]:
            raise ValueError(f"lowrank needs X (m x q) and Y (n x q) for the {m}x{n} matrix, "
                             f"got {X.shape} and {Y.shape}")
        p = X.shape[1]
        l = complement_rank or default_complement_rank(p, rank)
        U_new, s_new, Vt_new, used, Gh, Q = lowrank_update(U, s, Vt, X, Y, rank=rank, complement_rank=l,
                                                           power_iters=power_iters, rng=rng)
        completed = rank - s_new.size
        U_new, s_new, V_new = _complete(U_new, s_new, Vt_new.conj().T, rank, rng)
        norm = lowrank_frobenius_norm(A, X, Y)
        metrics, how = lowrank_certificate(A, X, Y, U, s, V, U_new, s_new, V_new, Gh, Q, norm, rng)
        new_shape = (m, n)
        appended = {"lowrank_terms": int(p)}
    callback(1, rank=float(s_new.size))
    # the metrics do not change under the unit phases (|c_j| = 1) of the vector pairs
    U_new, Vt_new = canonical_phases(U_new, V_new.conj().T)
    exact = l >= p
    info = {**how, **appended, "previous_rank": int(k), "rank": int(s_new.size),
            "zero_triplets_completed": max(int(completed), 0),
            "complement": "exact thin QR" if exact else
            f"randomized rank {l} ({power_iters} power iteration{'' if power_iters == 1 else 's'}), {used} kept",
            "new_shape": list(new_shape)}
    limit = max(float(tol), TRIPLET_FLOOR)
    residual = metrics.get("max_triplet_residual", 0.0)
    what = f"Zha-Simon update to rank {s_new.size} of the {new_shape[0]}x{new_shape[1]} matrix"
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
