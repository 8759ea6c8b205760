"""Robust PCA of a fully observed matrix: ``A = L + S`` with ``L`` low rank and ``S`` sparse.

Two kernels, both dense (the job densifies a sparse ``A`` within its size limit):

* :func:`robust_pca_ialm`, principal component pursuit (Candes, Li, Ma, Wright, "Robust principal
  component analysis?", J. ACM 2011)::

      minimise ||L||_* + lam ||S||_1  subject to  L + S = A,     lam = 1 / sqrt(max(m, n))

  solved by the inexact augmented Lagrange multiplier method (Lin, Chen, Ma, "The augmented Lagrange
  multiplier method for exact recovery of corrupted low-rank matrices", 2010, Algorithm 5): with
  the multiplier ``Y`` and penalty ``mu``, one singular value thresholding step for ``L``, one soft
  thresholding step for ``S``, then ``Y += mu (A - L - S)`` and ``mu *= rho``. No rank is given: the
  thresholding decides it. When ``L0`` is incoherent and of rank ``<= c max(m, n) / log^2``, and the
  support of ``S0`` is random with a small enough fraction, ``(L0, S0)`` is the unique minimiser
  (Candes et al., Theorem 1.1), whatever the sizes of the entries of ``S0``.

* :func:`robust_pca_subgradient`, the l1 factored formulation
  ``minimise ||U V^H - A||_1`` over ``U`` (m x k), ``V`` (n x k) by the sub-gradient method from a
  small random start with geometrically decaying steps (Ma, Fattahi, "Global convergence of
  sub-gradient method for robust matrix recovery: small initialization, noisy measurements, and
  over-parameterization", JMLR 2023; the l1 loss of rSVDdpd's robust SVD). Needs the rank (an upper
  bound: small initialisation keeps the surplus directions small). ``S`` is then the entries of
  ``A - U V^H`` larger than the inliers' spread (``THRESHOLD`` robust scales) and than ``rtol``
  times the root-mean-square entry of ``A``.

Both return ``L`` as factors ``U`` (m x r), ``s`` (r), ``Vt`` (r x n) (one sign convention for every
SVD in matcli: the largest entry of each ``u`` real positive) and ``S`` as a CSR matrix, with the
certificate recomputed from those outputs: ``relative_residual = ||A - U diag(s) Vt - S||_F / ||A||_F``,
``sparse_fraction = nnz(S) / (m n)``, ``rank`` and the iterations. The status is positive
(``converged_rtol``) only when that recomputed residual meets ``rtol``.

A feasible split always exists (``L = A, S = 0``): the residual certifies that the outputs add up
to ``A``, not that ``L`` is the low-rank part; the sparsity of ``S`` and the rank of ``L`` say how
good the split is, and the tests check recovery against exact constructions.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp

from matcli.core.result import Callback, Result, Status, no_callback
from matcli.methods.factorize.metrics import orthogonality_loss, safe_norm
from matcli.methods.factorize.signs import canonical_phases

#: Lin, Chen, Ma's inexact ALM constants: ``mu_0 = 1.25 / ||A||_2``, growth ``rho = 1.5``, cap
#: ``mu_0 * 1e7`` (their ``inexact_alm_rpca.m``).
MU_START = 1.25
RHO = 1.5
MU_CAP = 1e7
#: Sub-gradient method: entries of ``A - L`` beyond this many robust scales (1.4826 MAD of the
#: residual) are outliers, as in robust completion (``matcli.methods.complete.robust``).
THRESHOLD = 5.0
MAD_SCALE = 1.4826
#: Partial SVDs of the inexact ALM: the first predicted rank (Lin et al.'s 10), extra columns, subspace
#: iteration steps, and how much smaller than min(m, n) the block must be for the partial SVD to pay.
PREDICTED_RANK = 10
OVERSAMPLE = 10
POWER_STEPS = 4
PARTIAL_RATIO = 5


def default_lam(shape: tuple[int, int]) -> float:
    """PCP's weight ``1 / sqrt(max(m, n))`` (Candes et al., the value of their Theorem 1.1)."""
    return 1.0 / np.sqrt(max(shape))


def default_decay(rtol: float, maxiter: int) -> float:
    """The sub-gradient method's step factor per iteration: the step falls by ``rtol / 10`` (at
    least 1e-17) over ``maxiter`` iterations, so the last steps are below the accuracy asked for."""
    return float(np.exp(np.log(max(rtol, 1e-16) / 10.0) / maxiter))


def robust_pca_ialm(A, *, lam: float = 0.0, rtol: float = 1e-7, maxiter: int = 1000,
                    rng: np.random.Generator, callback: Callback = no_callback) -> Result:
    """Principal component pursuit by the inexact augmented Lagrange multiplier method.

    Parameters
    ----------
    A : (m, n) ndarray (float64 or complex128) or sparse matrix (densified: the caller checks the size)
    lam : float
        Weight of ``||S||_1``; 0 means :func:`default_lam` (``1 / sqrt(max(m, n))``).
    rtol : float
        Stop when ``||A - L - S||_F <= rtol ||A||_F`` (Lin et al.'s criterion; their default 1e-7).
    maxiter : int
        Maximum iterations (one thin SVD each).
    rng : numpy.random.Generator
        Start blocks of the partial SVDs (see :func:`_svt`).

    Returns
    -------
    Result
        outputs ``U`` (m, r), ``s`` (r,), ``Vt`` (r, n), ``S`` (m, n) CSR; metrics
        ``relative_residual``, ``sparse_fraction``, ``rank``, ``orthogonality_loss``, ``objective``
        (``||L||_* + lam ||S||_1``); history ``relative_residual`` per iteration; status
        ``converged_rtol`` when the residual recomputed from the outputs meets ``rtol``, else
        ``diverged_max_it`` (``diverged_nan`` on non-finite values).
    """
    D = A.toarray() if sp.issparse(A) else np.asarray(A)
    m, n = D.shape
    lam = float(lam) or default_lam((m, n))
    norm_D = safe_norm(D)
    if norm_D == 0.0:
        return _finish(D, *_empty_factors(D), sp.csr_matrix(D.shape, dtype=D.dtype), lam=lam, rtol=rtol,
                       iterations=0, history=[], status=None, method="inexact ALM")
    # scaled copy: the iteration is invariant under A -> A / c, and unit scale keeps mu in range
    scale = float(np.max(np.abs(D)))
    X = D / scale
    two_norm = float(sla.svdvals(X, check_finite=False)[0]) if min(m, n) else 0.0
    Y = X / max(two_norm, float(np.max(np.abs(X))) / lam)  # dual start Y_0 = A / J(A)
    mu = MU_START / two_norm
    mu_cap = mu * MU_CAP
    S = np.zeros_like(X)
    norm_X = norm_D / scale
    history: list[float] = []
    status = Status.DIVERGED_MAX_IT
    U, s, Vt = _empty_factors(X)
    predicted = PREDICTED_RANK
    partial_steps = 0
    for it in range(1, maxiter + 1):
        U, s, Vt, partial = _svt(X - S + Y / mu, 1.0 / mu, predicted, rng)
        partial_steps += partial
        # Lin et al.'s rank prediction: one more than found, or 5% more when all predicted were kept
        found = s.size
        predicted = min(found + 1, min(m, n)) if found < predicted else min(found + round(0.05 * min(m, n)),
                                                                                min(m, n))
        L = (U * s) @ Vt
        S = _shrink(X - L + Y / mu, lam / mu)
        R = X - L - S
        relative = safe_norm(R) / norm_X
        history.append(relative)
        callback(it, relative_residual=relative, rank=float(s.size))
        if not np.isfinite(relative):
            status = Status.DIVERGED_NAN
            break
        if relative <= rtol:
            status = None
            break
        Y += mu * R
        mu = min(mu * RHO, mu_cap)
    S_out = sp.csr_matrix(S * scale)
    S_out.eliminate_zeros()
    result = _finish(D, U, s * scale, Vt, S_out, lam=lam, rtol=rtol, iterations=len(history), history=history,
                     status=status, method="inexact ALM")
    result.info["partial_svd_steps"] = partial_steps
    return result


def robust_pca_subgradient(A, *, rank: int | None = None, rtol: float = 1e-7, maxiter: int = 1000,
                           init_scale: float = 1e-3,
                           step: float = 0.5, decay: float = 0.0, rng: np.random.Generator,
                           callback: Callback = no_callback) -> Result:
    """``minimise ||U V^H - A||_1`` by the sub-gradient method from a small random start.

    Each step moves ``U`` and ``V`` along ``-G V`` and ``-G^H U`` with ``G = sign(U V^H - A)``
    (the complex sign ``z / |z|`` for complex data), the step normalised by ``||G||_2`` and decaying
    geometrically: ``eta_t = step decay^t / ||G||_2`` (Ma and Fattahi's schedule; the sub-gradient of
    the l1 loss does not shrink near the solution, so only a decaying step converges). With balanced
    factors ``||V||_2^2 ~ ||L||_2``, a step changes ``L`` by about ``2 step decay^t ||L||_2``: ``step``
    is a relative change, independent of the scale of ``A``. A direction of ``L`` with singular value
    ``s_i`` grows from the small start at a rate about ``step s_i / s_1`` per step, so weak
    directions (``s_i << s_1``) need more iterations: the status says when ``maxiter`` was too few.
    ``decay = 0`` chooses :func:`default_decay`.

    Parameters
    ----------
    A : (m, n) ndarray or sparse matrix (densified)
    rank : int, optional
        Columns of ``U`` and ``V``, an upper bound on the rank of ``L``; None: ``min(m, n)`` (Ma and
        Fattahi's over-parameterised case: the small start keeps the surplus directions small, but
        they grow slowly, so a tight bound is both faster and more accurate).
    rtol, maxiter : as :func:`robust_pca_ialm`; the run stops early once the certificate's residual
        (checked every 10 steps) meets ``rtol``.
    init_scale : float
        Entries of the start ``U_0``, ``V_0`` are ``N(0, 1)`` times ``init_scale sqrt(||A||_2 / k)``
        divided by ``sqrt(m)``, ``sqrt(n)`` (small initialisation).
    step : float
        ``eta_0 ||G||_2``: the first step's relative change of ``L``.

    Returns
    -------
    Result as :func:`robust_pca_ialm` (``objective`` is ``||A - L||_1 / (m n)`` here).
    """
    D = A.toarray() if sp.issparse(A) else np.asarray(A)
    m, n = D.shape
    rank = min(m, n) if rank is None else rank
    norm_D = safe_norm(D)
    if norm_D == 0.0:
        return _finish(D, *_empty_factors(D), sp.csr_matrix(D.shape, dtype=D.dtype), lam=None, rtol=rtol,
                       iterations=0, history=[], status=None, method="sub-gradient")
    scale = float(np.max(np.abs(D)))
    X = D / scale
    norm_X = norm_D / scale
    # a residual within rtol of the root-mean-square entry is as accurate as asked: never an outlier
    floor = rtol * norm_X / np.sqrt(m * n)
    two_norm = float(sla.svdvals(X, check_finite=False)[0])
    decay = decay or default_decay(rtol, maxiter)
    size = init_scale * np.sqrt(two_norm / rank)
    U = _gaussian(rng, (m, rank), X.dtype) * size / np.sqrt(m)
    V = _gaussian(rng, (n, rank), X.dtype) * size / np.sqrt(n)
    history: list[float] = []
    status = Status.DIVERGED_MAX_IT
    eta = step
    g_norm = 1.0
    for it in range(1, maxiter + 1):
        R = U @ V.conj().T - X
        G = _sign(R)
        if it % 50 == 1:  # ||G||_2 moves slowly (G's signs settle early); a full svdvals per step would dominate
            g_norm = float(sla.svdvals(G, check_finite=False)[0])
        t = eta / max(g_norm, 1e-300)
        GV, GhU = G @ V, G.conj().T @ U
        U -= t * GV
        V -= t * GhU
        eta *= decay
        if it % 10 == 0 or it == maxiter:
            relative = _split_residual(X, U @ V.conj().T, floor)[1] / norm_X
            history.append(relative)
            callback(it, relative_residual=relative)
            if not np.isfinite(relative):
                status = Status.DIVERGED_NAN
                break
            if relative <= rtol:
                status = None
                break
    L = U @ V.conj().T
    S, _ = _split_residual(X, L, floor)
    Uk, s, Vt = sla.svd(L, full_matrices=False, check_finite=False)
    keep = s > s[0] * max(m, n) * np.finfo(float).eps if s.size and s[0] > 0 else np.zeros(s.size, dtype=bool)
    S_out = sp.csr_matrix(S * scale)
    S_out.eliminate_zeros()
    return _finish(D, Uk[:, keep], s[keep] * scale, Vt[keep], S_out, lam=None, rtol=rtol, iterations=it,
                   history=history, status=status, method="sub-gradient")


def _split_residual(X: np.ndarray, L: np.ndarray, floor: float) -> tuple[np.ndarray, float]:
    """``S`` = the entries of ``X - L`` beyond ``THRESHOLD`` robust scales (MAD) of that residual and
    beyond ``floor``, and ``||X - L - S||_F`` (the inliers' misfit)."""
    R = X - L
    magnitude = np.abs(R)
    cut = max(THRESHOLD * MAD_SCALE * float(np.median(magnitude)), floor)
    outlier = magnitude > cut
    S = np.where(outlier, R, 0)
    return S, safe_norm(np.where(outlier, 0, R))


def _gaussian(rng: np.random.Generator, shape: tuple[int, int], dtype) -> np.ndarray:
    if np.dtype(dtype).kind == "c":
        return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)) / np.sqrt(2.0)
    return rng.standard_normal(shape)


def _sign(R: np.ndarray) -> np.ndarray:
    """Entrywise ``R / |R|`` (0 where ``R = 0``): a sub-gradient of ``||R||_1`` (real or complex)."""
    if np.iscomplexobj(R):
        magnitude = np.abs(R)
        return np.where(magnitude > 0, R / np.where(magnitude > 0, magnitude, 1.0), 0)
    return np.sign(R)


def _svt(X: np.ndarray, tau: float, predicted: int,
         rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
    """Singular value thresholding: the factors of ``argmin tau ||L||_* + ||L - X||_F^2 / 2``, i.e. the
    SVD of ``X`` with every singular value reduced by ``tau`` and the non-positive ones dropped.

    When ``predicted + OVERSAMPLE`` is at most ``min(m, n) / PARTIAL_RATIO``, the top singular
    triplets come from a randomized subspace iteration (``POWER_STEPS`` re-orthonormalised steps,
    Halko-Martinsson-Tropp) instead of the full SVD, as Lin et al. use a partial Lanczos SVD of the
    predicted rank; it is kept only when its last singular value is below ``tau`` (every value above
    the threshold was found), else the full SVD runs. Returns the factors and whether the partial
    SVD was kept."""
    m, n = X.shape
    width = predicted + OVERSAMPLE
    if width * PARTIAL_RATIO <= min(m, n):
        Q = np.linalg.qr(X @ _gaussian(rng, (n, width), X.dtype))[0]
        for _ in range(POWER_STEPS):
            Q = np.linalg.qr(X @ np.linalg.qr(X.conj().T @ Q)[0])[0]
        W, s, Vt = sla.svd(Q.conj().T @ X, full_matrices=False, check_finite=False)
        if s[-1] <= tau:
            r = int(np.count_nonzero(s > tau))
            return Q @ W[:, :r], s[:r] - tau, Vt[:r], True
    try:
        U, s, Vt = sla.svd(X, full_matrices=False, lapack_driver="gesdd", check_finite=False)
    except np.linalg.LinAlgError:  # gesdd's rare non-convergence: the slower QR-iteration driver
        U, s, Vt = sla.svd(X, full_matrices=False, lapack_driver="gesvd", check_finite=False)
    r = int(np.count_nonzero(s > tau))
    return U[:, :r], s[:r] - tau, Vt[:r], False


def _shrink(X: np.ndarray, tau: float) -> np.ndarray:
    """Entrywise soft thresholding ``X max(|X| - tau, 0) / |X|``: ``argmin tau ||S||_1 + ||S - X||_F^2 / 2``
    (the modulus is shrunk, the phase kept, for complex entries)."""
    if np.iscomplexobj(X):
        magnitude = np.abs(X)
        factor = np.maximum(magnitude - tau, 0.0) / np.where(magnitude > 0, magnitude, 1.0)
        return X * factor
    return np.sign(X) * np.maximum(np.abs(X) - tau, 0.0)


def _empty_factors(X: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    m, n = X.shape
    return np.zeros((m, 0), dtype=X.dtype), np.zeros(0), np.zeros((0, n), dtype=X.dtype)


def _finish(D: np.ndarray, U: np.ndarray, s: np.ndarray, Vt: np.ndarray, S: sp.csr_matrix, *, lam: float | None,
            rtol: float, iterations: int, history: list[float], status: Status | None, method: str) -> Result:
    """The outputs in matcli's sign convention and the certificate recomputed from them; ``status``
    None means the kernel met its stopping test, and the recomputed residual decides."""
    m, n = D.shape
    U, Vt = canonical_phases(U, Vt)
    norm_D = safe_norm(D)
    misfit = safe_norm(D - (U * s) @ Vt - S.toarray())
    relative = misfit / norm_D if norm_D > 0 else misfit
    if status is None or (status == Status.DIVERGED_MAX_IT and relative <= rtol):
        status = Status.CONVERGED_RTOL if relative <= rtol else Status.DIVERGED_MAX_IT
    fraction = S.nnz / (m * n)
    metrics = {"relative_residual": float(relative), "sparse_fraction": float(fraction), "rank": float(s.size),
               "orthogonality_loss": max(orthogonality_loss(U), orthogonality_loss(Vt.conj().T)),
               "objective": (float(np.sum(s)) + lam * float(np.sum(np.abs(S.data))) if lam is not None
                             else float(np.sum(np.abs(D - (U * s) @ Vt))) / (m * n))}
    info = {"rank": int(s.size), "nnz_S": int(S.nnz), "rtol": rtol, "algorithm": method}
    if lam is not None:
        info["lam"] = lam
    said = (f"||A - L - S||_F / ||A||_F = {relative:.2e} (rtol {rtol:g}), rank(L) = {s.size}, "
            f"{100 * fraction:.2f}% of the entries in S")
    if status == Status.CONVERGED_RTOL:
        message = f"robust PCA ({method}) after {iterations} iterations: {said}"
    elif status == Status.DIVERGED_NAN:
        message = f"robust PCA ({method}): non-finite values after {iterations} iterations"
    else:
        message = f"robust PCA ({method}) stopped at --maxiter {iterations} before --rtol: {said}; raise --maxiter"
    return Result(status=status, outputs={"U": U, "s": s, "Vt": Vt, "S": S}, metrics=metrics, iterations=iterations,
                  history={"relative_residual": history}, info=info, message=message)
