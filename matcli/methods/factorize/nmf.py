"""Nonnegative matrix factorization ``A ~ W H`` (W, H >= 0): HALS, multiplicative updates, and a
robust correntropy-loss variant.

``A`` may be dense or sparse; it is touched only through ``A @ X`` and ``A^T @ X`` with thin
dense blocks (sparse never densified), except the entry-level robust variant, which weights
every entry and therefore needs a dense (small) matrix.

References: Cichocki & Phan (2009), IEICE Trans. 92-A (HALS); Gillis & Glineur (2012), Neural
Comput. 24 (accelerated HALS); Lee & Seung (2001), NIPS (MU); Du, Li & Shen (2012), ICDM
("Robust nonnegative matrix factorization via half-quadratic minimization", correntropy loss).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from matcli.core.result import Callback, Result, Status, no_callback
from matcli.methods.factorize.metrics import EXACT_ENTRIES, frobenius_norm, low_rank_error

#: Floor of the factors' entries in HALS (keeps a column from dying and dividing by zero later).
_FLOOR = 1e-16
_TINY = np.finfo(float).tiny


def _AT(A, X: np.ndarray) -> np.ndarray:
    return A.T @ X


def resolve_init(init: str, rank: int, shape: tuple[int, int]) -> str:
    """The initialisation actually used: ``auto`` is ``nndsvda`` when ``rank <= min(m, n)``, else
    ``random`` (scikit-learn's rule: the SVD has only ``min(m, n)`` triplets to split).

    ``nndsvd``/``nndsvda`` with ``rank > min(m, n)`` raise ValueError, as in scikit-learn.
    """
    m, n = shape
    if init == "auto":
        return "nndsvda" if rank <= min(m, n) else "random"
    if init in ("nndsvd", "nndsvda") and rank > min(m, n):
        raise ValueError(f"init={init} needs rank <= min(m, n) = {min(m, n)} (one singular triplet per "
                         f"component), got {rank}; use init=random or auto")
    return init


def initial_factors(A, rank: int, init: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Initial ``W`` (m x rank) and ``H`` (rank x n).

    ``nndsvd`` (Boutsidis & Gallopoulos 2008): from the top ``rank`` singular triplets, each pair
    of singular vectors is split into positive and negative parts and the dominant pair kept;
    ``nndsvda`` also fills its zeros with the mean of A (helps HALS/MU escape them);
    ``random``: uniform entries scaled to the mean of A.
    """
    m, n = A.shape
    mean = float(A.sum() / (m * n))
    if init == "random":
        scale = np.sqrt(max(mean, _TINY) / rank)
        return scale * rng.random((m, rank)), scale * rng.random((rank, n))
    from matcli.methods.factorize.rsvd import top_triplets

    if m * n <= EXACT_ENTRIES:
        dense = A.toarray() if sp.issparse(A) else np.asarray(A)
        U, s, Vt = np.linalg.svd(dense, full_matrices=False)
        U, s, Vt = U[:, :rank], s[:rank], Vt[:rank]
    else:
        U, s, Vt = top_triplets(A, rank, rng, power_iters=2)
    V = Vt.T
    up, un = np.maximum(U, 0), np.maximum(-U, 0)
    vp, vn = np.maximum(V, 0), np.maximum(-V, 0)
    nup, nun = np.linalg.norm(up, axis=0), np.linalg.norm(un, axis=0)
    nvp, nvn = np.linalg.norm(vp, axis=0), np.linalg.norm(vn, axis=0)
    positive = nup * nvp >= nun * nvn
    sigma = np.where(positive, nup * nvp, nun * nvn)
    u = np.where(positive, up / np.maximum(nup, _TINY), un / np.maximum(nun, _TINY))
    v = np.where(positive, vp / np.maximum(nvp, _TINY), vn / np.maximum(nvn, _TINY))
    scale = np.sqrt(s * sigma)
    W = u * scale
    H = (v * scale).T
    if init == "nndsvda":
        W[W == 0] = mean
        H[H == 0] = mean
    return W, H


def _loss_sq(norm_A2: float, W: np.ndarray, AHt: np.ndarray, WtW: np.ndarray, HHt: np.ndarray) -> float:
    """``||A - W H||_F^2 = ||A||^2 - 2 <W, A H^T> + <W^T W, H H^T>`` from the products already at hand."""
    return max(norm_A2 - 2.0 * float(np.vdot(W, AHt)) + float(np.vdot(WtW, HHt)), 0.0)


def _hals_rows(H: np.ndarray, AtW_T: np.ndarray, WtW: np.ndarray) -> None:
    """One HALS sweep over the rows of ``H`` in place: exact nonnegative minimisation of each row."""
    for j in range(H.shape[0]):
        step = (AtW_T[j] - WtW[j] @ H) / max(WtW[j, j], _TINY)
        H[j] = np.maximum(H[j] + step, _FLOOR)


def _hals_cols(W: np.ndarray, AHt: np.ndarray, HHt: np.ndarray) -> None:
    """One HALS sweep over the columns of ``W`` in place."""
    for j in range(W.shape[1]):
        step = (AHt[:, j] - W @ HHt[:, j]) / max(HHt[j, j], _TINY)
        W[:, j] = np.maximum(W[:, j] + step, _FLOOR)


def _finish(A, W, H, rng, *, status, it, history_err, info, message, norm_A) -> Result:
    err, how = low_rank_error(A, W, H, rng, norm_A)
    metrics = {"reconstruction_error": err, "final_change": history_err}
    return Result(status=status, outputs={"W": W, "H": H}, metrics=metrics, iterations=it,
                  info={**info, "reconstruction_error_method": how, "rank": int(W.shape[1])}, message=message)


def _converged_status(change: float, tol: float) -> Status:
    return Status.CONVERGED_STEP if change <= tol else Status.DIVERGED_MAX_IT


def nmf_hals(A, *, rank: int, init: str = "auto", tol: float = 1e-4, maxiter: int = 500,
             rng: np.random.Generator, callback: Callback = no_callback) -> Result:
    """NMF by hierarchical alternating least squares.

    Each sweep updates the rows of ``H`` one at a time, then the columns of ``W``, each by its exact
    nonnegative least-squares minimiser given the others (two products with ``A`` per sweep).

    Parameters
    ----------
    A : (m, n) nonnegative ndarray or sparse matrix
    rank : int
        Number of components, any positive integer (``rank > min(m, n)`` is allowed, as in
        scikit-learn; it starts from ``random`` factors, see :func:`resolve_init`).
    init : {"auto", "nndsvda", "nndsvd", "random"}
    tol : float
        Stop when the relative error decreases by less than ``tol`` (relative) in a sweep.
    maxiter : int
        Maximum sweeps.

    Returns
    -------
    Result
        outputs ``W`` (m x rank), ``H`` (rank x n), both >= 0; ``callback(it, relative_error=...)``;
        status ``CONVERGED_STEP`` or ``DIVERGED_MAX_IT``.
    """
    norm_A = frobenius_norm(A)
    norm_A2 = norm_A**2
    init = resolve_init(init, rank, A.shape)
    W, H = initial_factors(A, rank, init, rng)
    previous, change, it = np.inf, np.inf, 0
    for it in range(1, maxiter + 1):
        _hals_rows(H, _AT(A, W).T, W.T @ W)
        AHt, HHt = A @ H.T, H @ H.T
        _hals_cols(W, AHt, HHt)
        err = np.sqrt(_loss_sq(norm_A2, W, AHt, W.T @ W, HHt)) / norm_A if norm_A else 0.0
        callback(it, relative_error=err)
        change = (previous - err) / max(previous, _TINY) if np.isfinite(previous) else np.inf
        previous = err
        if abs(change) <= tol:
            break
    W, H = _balance(W, H)
    status = _converged_status(abs(change), tol)
    return _finish(A, W, H, rng, status=status, it=it, history_err=float(abs(change)),
                   info={"init": init, "tol": tol}, message=f"HALS: {it} sweeps", norm_A=norm_A)


def nmf_mu(A, *, rank: int, init: str = "auto", tol: float = 1e-4, maxiter: int = 500,
           rng: np.random.Generator, callback: Callback = no_callback) -> Result:
    """NMF by Lee-Seung multiplicative updates for the Frobenius loss.

    ``H <- H * (W^T A) / (W^T W H)``, ``W <- W * (A H^T) / (W H H^T)``: monotone, nonnegative by
    construction, slower than HALS; kept as the classical fallback. Parameters and returns as
    :func:`nmf_hals`.
    """
    norm_A = frobenius_norm(A)
    norm_A2 = norm_A**2
    init = resolve_init(init, rank, A.shape)
    W, H = initial_factors(A, rank, init, rng)
    eps = np.finfo(float).eps * max(norm_A, 1.0)
    previous, change, it = np.inf, np.inf, 0
    for it in range(1, maxiter + 1):
        WtW = W.T @ W
        H *= _AT(A, W).T / np.maximum(WtW @ H, eps)
        AHt, HHt = A @ H.T, H @ H.T
        W *= AHt / np.maximum(W @ HHt, eps)
        err = np.sqrt(_loss_sq(norm_A2, W, AHt, W.T @ W, HHt)) / norm_A if norm_A else 0.0
        callback(it, relative_error=err)
        change = (previous - err) / max(previous, _TINY) if np.isfinite(previous) else np.inf
        previous = err
        if abs(change) <= tol:
            break
    W, H = _balance(W, H)
    status = _converged_status(abs(change), tol)
    return _finish(A, W, H, rng, status=status, it=it, history_err=float(abs(change)),
                   info={"init": init, "tol": tol}, message=f"multiplicative updates: {it} sweeps", norm_A=norm_A)


def nmf_robust(A, *, rank: int, init: str = "auto", tol: float = 1e-4, maxiter: int = 500,
               level: str = "column", sigma_scale: float = 1.0, rng: np.random.Generator,
               callback: Callback = no_callback) -> Result:
    """Robust NMF with the correntropy (Welsch) loss ``sum 1 - exp(-r^2 / (2 sigma^2))``.

    Half-quadratic minimisation: each sweep sets weights ``w = exp(-r^2 / (2 sigma^2))`` from the
    current residuals ``r``, then decreases the weighted least-squares loss ``sum w r^2``. Outliers
    get weights near 0 and stop pulling the factors. ``sigma^2 = sigma_scale^2 * mean(r^2)`` is
    re-estimated every sweep (the usual kernel-width rule).

    ``level="column"``: ``r_j = ||a_j - W h_j||`` per column (sample); with weights ``d`` the
    weighted problem is ``||(A - W H) diag(d)^(1/2)||_F^2``: rows of ``H`` are unaffected (each
    column is scaled as a whole), ``W`` uses ``A diag(d) H^T`` and ``H diag(d) H^T`` (HALS sweep);
    sparse A stays sparse. ``level="entry"``: per-entry weights, weighted multiplicative updates
    on a dense A.

    Returns
    -------
    Result
        outputs ``W``, ``H`` and ``weights`` (n for columns, m x n for entries); metrics
        ``reconstruction_error`` (plain, unweighted), ``weighted_error``
        (``||(A - WH) * sqrt(w)||_F / ||A * sqrt(w)||_F``), ``outliers`` (weights < 0.5).
    """
    if level == "entry":
        return _robust_entry(A, rank=rank, init=init, tol=tol, maxiter=maxiter, sigma_scale=sigma_scale,
                             rng=rng, callback=callback)
    norm_A = frobenius_norm(A)
    col_norm2 = (np.asarray(A.multiply(A).sum(axis=0)).ravel() if sp.issparse(A)
                 else np.einsum("ij,ij->j", A, A))
    init = resolve_init(init, rank, A.shape)
    W, H = initial_factors(A, rank, init, rng)
    d = np.ones(A.shape[1])
    previous, change, it = np.inf, np.inf, 0
    for it in range(1, maxiter + 1):
        AtW = _AT(A, W)
        WtW = W.T @ W
        residual2 = np.maximum(col_norm2 - 2.0 * np.einsum("jk,kj->j", AtW, H)
                               + np.einsum("kj,kj->j", H, WtW @ H), 0.0)
        sigma2 = sigma_scale**2 * max(float(residual2.mean()), _TINY)
        d = np.exp(-residual2 / (2.0 * sigma2))
        _hals_rows(H, AtW.T, WtW)
        Hd = H * d
        _hals_cols(W, A @ Hd.T, Hd @ H.T)
        loss = float(np.mean(1.0 - d))
        callback(it, correntropy_loss=loss)
        change = (previous - loss) / max(previous, _TINY) if np.isfinite(previous) else np.inf
        previous = loss
        if abs(change) <= tol:
            break
    W, H = _balance(W, H)
    AtW = _AT(A, W)
    residual2 = np.maximum(col_norm2 - 2.0 * np.einsum("jk,kj->j", AtW, H)
                           + np.einsum("kj,kj->j", H, (W.T @ W) @ H), 0.0)
    weighted = _weighted_relative(float(np.sum(d * residual2)), float(np.sum(d * col_norm2)))
    result = _finish(A, W, H, rng, status=_converged_status(abs(change), tol), it=it,
                     history_err=float(abs(change)), info={"init": init, "tol": tol, "level": level},
                     message=f"robust (correntropy, column weights) NMF: {it} sweeps", norm_A=norm_A)
    result.outputs["weights"] = d
    result.metrics.update(weighted_error=weighted, outliers=float(np.sum(d < 0.5)))
    return result


def _robust_entry(A, *, rank, init, tol, maxiter, sigma_scale, rng, callback) -> Result:
    dense = A.toarray() if sp.issparse(A) else np.asarray(A, dtype=float)
    norm_A = float(np.linalg.norm(dense))
    init = resolve_init(init, rank, dense.shape)
    W, H = initial_factors(dense, rank, init, rng)
    eps = np.finfo(float).eps * max(norm_A, 1.0)
    weights = np.ones_like(dense)
    previous, change, it = np.inf, np.inf, 0
    for it in range(1, maxiter + 1):
        R = dense - W @ H
        sigma2 = sigma_scale**2 * max(float(np.mean(R * R)), _TINY)
        weights = np.exp(-(R * R) / (2.0 * sigma2))
        WA = weights * dense
        H *= (W.T @ WA) / np.maximum(W.T @ (weights * (W @ H)), eps)
        W *= (WA @ H.T) / np.maximum((weights * (W @ H)) @ H.T, eps)
        loss = float(np.mean(1.0 - weights))
        callback(it, correntropy_loss=loss)
        change = (previous - loss) / max(previous, _TINY) if np.isfinite(previous) else np.inf
        previous = loss
        if abs(change) <= tol:
            break
    W, H = _balance(W, H)
    R = dense - W @ H
    weighted = _weighted_relative(float(np.sum(weights * R * R)), float(np.sum(weights * dense * dense)))
    result = _finish(dense, W, H, rng, status=_converged_status(abs(change), tol), it=it,
                     history_err=float(abs(change)), info={"init": init, "tol": tol, "level": "entry"},
                     message=f"robust (correntropy, entry weights) NMF: {it} sweeps", norm_A=norm_A)
    result.outputs["weights"] = weights
    result.metrics.update(weighted_error=weighted, outliers=float(np.sum(weights < 0.5)))
    return result


def _weighted_relative(residual2: float, norm2: float) -> float:
    """``sqrt(residual2 / norm2)``; the absolute ``sqrt(residual2)`` when the weighted ``A`` is 0
    (as :func:`~matcli.methods.factorize.metrics.low_rank_error` does for ``A = 0``)."""
    return float(np.sqrt(max(residual2, 0.0) / norm2)) if norm2 > 0 else float(np.sqrt(max(residual2, 0.0)))


def _balance(W: np.ndarray, H: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rescale ``W[:, j]`` and ``H[j]`` to equal norms (same product ``W H``)."""
    nw = np.linalg.norm(W, axis=0)
    nh = np.linalg.norm(H, axis=1)
    scale = np.sqrt(np.where((nw > 0) & (nh > 0), nh / np.where(nw > 0, nw, 1.0), 1.0))
    return W * scale, H / scale[:, None]
