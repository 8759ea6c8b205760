"""Randomized least squares ``min ||A x - b||^2 + lam ||x||^2`` for tall A (m >= n).

Three modes share one sketch ``S A`` (d x n) and one factorisation of it: ``S A = U diag(sigma) V^T``
from the R of a Householder QR and an SVD of R (n <= 1000, ridge, rank-deficient sketches), or for
larger n just a triangle R, from CholeskyQR of the Gram matrix when the sketch is well conditioned
(a third of the cost) and from Householder QR otherwise. ``P`` below is ``V diag(1/sigma)`` or R^{-1}.

sketch-and-solve
    ``x = argmin ||S(Ax - b)||^2 + lam ||x||^2``; residual within about ``1 + n / (2 (d - n))`` of
    the optimum (Gaussian-embedding expectation; sparse embeddings behave alike in practice); the
    default size keeps it within ``1 + eps`` with a margin of three standard deviations.
precondition
    CGLS (LSQR's iterates, one fused pass over A per iteration instead of two; see :func:`cgls`) on
    ``min ||[A; sqrt(lam) I] P y - [b; 0]||`` (with ridge, ``P = V diag(1/sqrt(sigma^2 + lam))``),
    warm-started from the sketch-and-solve solution (Rokhlin-Tygert / Blendenpik / LSRN). The
    preconditioned operator has singular values in [1/(1+delta), 1/(1-delta)] when S embeds
    range(A) with distortion delta, so CGLS converges at a rate independent of cond(A).
refine
    sketch-and-precondition with iterative refinement (SPIR, Epperly-Meier-Nakatsukasa 2024): after
    the warm-started solve, ``refine_steps`` more preconditioned CGLS solves of the residual
    problem ``min ||A dx - (b - A x)||`` from zero, each with the residual recomputed from A. This
    removes the instability of warm-started sketch-and-precondition on ill-conditioned problems.

The sketch (``sketch="auto"``, the default): the iterative modes start from CountSketch, a quarter
of the work of the 4-nonzero sparse sign sketch and as good an embedding unless rows of high leverage
collide in one bucket. Collisions leave directions that the preconditioner does not scale, i.e.
outlying singular values of ``A P``, which the extreme Ritz values of CGLS's Lanczos matrix find
within a few iterations: after 3 iterations, a Ritz estimate of cond(A P) above twice what a
Gaussian embedding of that size gives rejects the sketch, and the solve continues from the current
iterate with a sparse sign sketch. sketch-and-solve has no such check and uses the sparse sign sketch.

The kernels accept a dense array, a scipy.sparse matrix, or a row-streaming problem from
:mod:`matcli.methods.sketch.streaming` as ``A``. A problem's range-side vectors (length m: A p, the
residual) are of its own ``vectors`` kind (:class:`ArrayVectors` in this process; kept on the workers
by :class:`matcli.jobs.sketch_remote.DistributedRowProblem`), so :func:`cgls` forms only n-vectors
and scalars itself, and the certificate takes ``(||b - A x||, A^T (b - A x))`` from one pass.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.linalg
import scipy.sparse as sp

from matcli.core.result import Callback, Result, Status, no_callback
from matcli.methods.sketch.ridge import choose_lambda
from matcli.methods.sketch.sketches import SKETCH_KINDS, STREAMABLE_KINDS, make_sketch
from matcli.threads import blas_on_all_threads, own_threads_only, parallel_map, worker_ranges

MODES = ("sketch-and-solve", "precondition", "refine")
EPS = np.finfo(np.float64).eps
#: Standard deviations of the residual excess that the sketch-and-solve size leaves below eps.
_EXCESS_SIGMAS = 3.0
#: Row block of a fused residual-and-gradient pass over dense A (fits in L2 cache).
_FUSED_BLOCK_BYTES = 2**20
#: Rows of A whose product with the leverage-score test matrix is formed at a time.
_ROW_NORM_BLOCK = 65536
#: Recomputed ||A^T r|| / (||A|| ||r||) above which a "converged" CGLS result is reported as failed.
UNREACHABLE_OPTIMALITY = 1e-4


class ArrayVectors:
    """CGLS's range-side vectors (length m, or m + n with ridge) as numpy arrays of this process.

    The problems keep their range-side vectors where their rows are: in memory and streaming
    problems here, :class:`matcli.jobs.sketch_remote.DistributedRowProblem` on its workers (only
    n-vectors and scalars reach the solver there). Each problem names its kind as ``vectors``; the
    solvers touch range-side vectors only through it.
    """

    @staticmethod
    def copy(v: np.ndarray) -> np.ndarray:
        return v.copy()

    @staticmethod
    def norm(v: np.ndarray) -> float:
        return float(np.linalg.norm(v))

    @staticmethod
    def norm2(v: np.ndarray) -> float:
        """``v . v``."""
        return float(v @ v)

    @staticmethod
    def subtract(r: np.ndarray, alpha: float, q: np.ndarray) -> np.ndarray:
        """``r - alpha q`` (r updated in place and returned)."""
        r -= alpha * q
        return r

    @staticmethod
    def stack(v: np.ndarray, tail: np.ndarray) -> np.ndarray:
        """``[v; tail]`` for an n-vector tail (the ridge rows of the operator)."""
        return np.concatenate([v, tail])


ARRAY_VECTORS = ArrayVectors()


class InMemoryProblem:
    """A (m x n, dense or scipy.sparse) and b (m,) held in memory; the operations the solvers need.

    ``normal_product``, ``residual_vector`` return range-side vectors of ``vectors`` (here arrays);
    ``residual_and_gradient`` arrays, ``residual_norm_and_gradient`` only ``||b - A x||``.
    """

    streaming = False
    vectors = ARRAY_VECTORS

    def __init__(self, A, b: np.ndarray):
        self.A = A.tocsr() if sp.issparse(A) else np.asarray(A, dtype=np.float64)
        self.sparse = sp.issparse(self.A)
        self.b = np.asarray(b, dtype=np.float64).reshape(-1)
        self.shape = self.A.shape
        self.b_norm = float(np.linalg.norm(self.b))

    def sketch(self, S) -> tuple[np.ndarray, np.ndarray]:
        """``(S A, S b)`` as dense arrays of shapes (d, n) and (d,)."""
        return S.apply_pair(self.A, self.b)

    def normal_product(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(A x, A^T A x)``; dense A is read once, in cache-sized row blocks."""
        return self._fused(x, None)

    def residual(self, x: np.ndarray) -> np.ndarray:
        return self.b - self.A @ x

    def residual_and_gradient(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(r, A^T r)`` with ``r = b - A x``; dense A is read once, in cache-sized row blocks."""
        return self._fused(x, self.b)

    residual_vector = residual_and_gradient

    def residual_norm_and_gradient(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        """``(||r||, A^T r)`` with ``r = b - A x``: the certificate's pass."""
        r, g = self.residual_and_gradient(x)
        return float(np.linalg.norm(r)), g

    def _fused(self, x: np.ndarray, b: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """``(t, A^T t)`` with ``t = A x`` (b None) or ``t = b - A x``, each row block of dense A used
        for both products while it is in cache."""
        if sp.issparse(self.A):
            t = self.A @ x if b is None else b - self.A @ x
            return t, self.A.T @ t
        m, n = self.shape
        rows = max(1, _FUSED_BLOCK_BYTES // (8 * n))
        t = np.empty(m)

        def part(span: tuple[int, int]) -> np.ndarray:
            g = np.zeros(n)
            for start in range(span[0], span[1], rows):
                stop = min(span[1], start + rows)
                block, tb = self.A[start:stop], t[start:stop]
                np.dot(block, x, out=tb)
                if b is not None:
                    np.subtract(b[start:stop], tb, out=tb)
                g += tb @ block
            return g

        parts = parallel_map(part, worker_ranges(m, rows))
        return t, sum(parts[1:], parts[0])

    def row_norms2(self, M: np.ndarray) -> np.ndarray:
        """Squared row norms of ``A @ M`` (shape (m,)) for a small dense n x k matrix M, in row blocks
        of ``_ROW_NORM_BLOCK`` so that no m x k product is held."""
        m = self.shape[0]
        out = np.empty(m)
        for start in range(0, m, _ROW_NORM_BLOCK):
            AM = np.asarray(self.A[start:start + _ROW_NORM_BLOCK] @ M)
            out[start:start + AM.shape[0]] = np.einsum("ij,ij->i", AM, AM)
        return out


def as_problem(A, b):
    """Wrap ``(A, b)`` unless A already is a problem object (e.g. a streaming one)."""
    if hasattr(A, "residual") and hasattr(A, "sketch"):
        return A
    return InMemoryProblem(A, b)


#: Numbers d * n of the sketch S A the iterative modes allow: a dense A adds whole rows into S A
#: (streams of n numbers), a sparse A single entries (one cache line each), so for sparse A the
#: sketch must stay cache-resident (8 MB) or its scattered additions miss the cache.
_SKETCH_NUMBERS = {False: 4.0e6, True: 1.0e6}
#: Sketch rows per column of A when the rows are streamed from a file (see default_sketch_size).
STREAMING_SKETCH_FACTOR = 100
#: Sketch rows per column of A for a Gaussian sketch in the iterative modes (see default_sketch_size).
GAUSSIAN_SKETCH_FACTOR = 4


def default_sketch_size(mode: str, m: int, n: int, eps: float, *, sparse: bool = False,
                        streaming: bool = False, kind: str = "auto") -> int:
    """Rows d of the sketch.

    sketch-and-solve: for a Gaussian sketch the squared residual excess
    ``||A(x_s - x*)||^2 / ||r*||^2`` is distributed like ``chi2_n / chi2_(d-n+1)``: mean
    ``mu = n / (d - n - 1)``, relative spread ``sigma ~ sqrt(2/n + 2/(d-n))``. d is chosen so that
    ``mu (1 + 3 sigma) <= (1 + eps)^2 - 1``, i.e. the residual ratio stays within ``1 + eps`` three
    standard deviations out, not only on average (sparse sketches behave alike in practice, except
    CountSketch on matrices with heavy rows). For n = 200, eps = 0.1: d = 1461 (median ratio ~1.076).

    Iterative modes: a larger sketch costs a larger QR of d x n but lowers the preconditioned
    condition number (about (1+delta)/(1-delta), delta = sqrt(n/d), which is also CGLS's
    convergence factor per iteration). In memory, where a pass over A is cheap, use up to 30 n while
    the sketch stays small (d n <= 4e6 numbers; 1e6 for sparse A, see ``_SKETCH_NUMBERS``), and at
    least 2 n. Streaming from a file, where every iteration reads the whole file again, use
    ``STREAMING_SKETCH_FACTOR`` n (delta = 0.1): the QR of the larger sketch costs far less than the
    passes it saves. A Gaussian sketch is the exception: it costs 2 d nnz(A) flops, about d / 10 passes
    over a dense A, so the iterative modes give it ``GAUSSIAN_SKETCH_FACTOR`` n rows (the sum of that
    cost and of the iterations' is least near 3 n to 4 n for n = 200). The caller caps d by its memory
    budget.
    Measured on dense 400000 x 200 (cond 1e6, single thread, median of 8): eps 1e-10 0.69 / 0.64 /
    0.67 s (7 / 6 / 6 iterations) at d = 20 n / 30 n / 40 n; rtol 1e-10 1.13 / 1.04 / 1.00 s (14 / 12 / 11).
    Measured (rtol 1e-10, single thread): sparse 3e5 x 1000 with 3e6 nonzeros 1.87 s at d = 2 n (the
    cap) vs 2.02 s at 4 n (the dense rule) and 2.17 s at 8 n; 5e5 x 350 with 5e6 nonzeros 0.94 s at
    8 n (the cap) vs 0.97 s at 11 n; 1e6 x 500 with 1e7 nonzeros 2.4 s for any d from 4 n to 16 n.
    Streamed 1.25e6 x 200 (2 GB file, 500M budget, rtol 1e-10): 9.1 s, 15 passes at d = 30 n;
    7.5 s, 12 passes at 100 n; 5.7 s, 11 passes at 200 n.
    """
    if mode == "sketch-and-solve":
        tau = (1.0 + eps) ** 2 - 1.0
        d = n + 1 + math.ceil(n / tau)  # the mean alone at the limit; then widen for the spread
        for _ in range(3):  # sigma depends (weakly) on d itself
            sigma = math.sqrt(2.0 / max(n, 1) + 2.0 / max(d - n, 1))
            d = n + 1 + math.ceil(n * (1.0 + _EXCESS_SIGMAS * sigma) / tau)
    elif kind == "gaussian":
        d = GAUSSIAN_SKETCH_FACTOR * n + 8
    elif streaming:
        d = STREAMING_SKETCH_FACTOR * n + 8
    else:
        factor = min(30.0, max(2.0, _SKETCH_NUMBERS[bool(sparse)] / max(n, 1) ** 2))
        d = math.ceil(factor * n) + 8
    return int(min(m, max(d, n)))


def smallest_sketch_rows(n: int) -> int:
    """The fewest rows an iterative mode's sketch should have (2 n + 8: delta ~ 0.7)."""
    return 2 * n + 8


class SketchFactor:
    """Factorisation of the d x n sketch ``S A`` and the pieces of ``S b`` the solvers need.

    Built by :func:`factor_sketch` from the triangle of ``QR([S A, S b])``. Two forms:

    * SVD form (``V``, ``sigma`` set): ``S A = U diag(sigma) V^T``, ``z = U^T S b``. Needed for ridge,
      GCV and rank-deficient sketches; cheap when n is moderate.
    * triangular form (``R`` set, ``V`` None): ``S A = Q R`` with ``qb = Q^T S b`` (Q never formed);
      used for large n when R is well conditioned, saving the O(n^3) SVD.

    ``rank`` counts singular values above ``max(d, n) * eps * sigma_max``; the preconditioner raises
    the smaller ones to the smallest retained one so it stays invertible without amplifying the
    directions the sketch missed, and sketch-and-solve drops them.
    """

    def __init__(self, *, d: int, n: int, outside: float, R: np.ndarray | None = None,
                 qb: np.ndarray | None = None, V: np.ndarray | None = None, sigma: np.ndarray | None = None,
                 z: np.ndarray | None = None, rcond: float | None = None):
        self.d, self.n, self.outside = d, n, outside
        self.R, self.qb, self.V, self.sigma, self.z = R, qb, V, sigma, z
        if sigma is not None:
            cut = max(d, n) * EPS * (sigma[0] if sigma.size else 0.0)
            self.rank = int(np.count_nonzero(sigma > cut))
            # Directions the sketch missed get the scale of the weakest captured one: if A is rank
            # deficient they stay null for CGLS; if the sketch failed they are not blown up by 1/eps.
            self.floor = float(sigma[self.rank - 1]) if self.rank else 1.0
            self.sigma_max = float(sigma[0]) if sigma.size else 0.0
            self.cond = float(sigma[0] / sigma[self.rank - 1]) if self.rank else float("inf")
        else:
            self.rank = n
            self.sigma_max = _norm2_triangular(R)
            self.cond = 1.0 / rcond

    @property
    def has_svd(self) -> bool:
        return self.V is not None

    def precond(self, lam: float) -> "Preconditioner":
        """``P`` with ``[S A; sqrt(lam) I] P`` orthonormal (up to the clamped singular values)."""
        if self.has_svd:
            return Preconditioner(dense=self.V / np.sqrt(np.maximum(self.sigma, self.floor) ** 2 + lam)[None, :])
        if lam != 0.0:
            raise ValueError("the triangular form serves lam = 0 only")
        return Preconditioner(triangle=self.R)

    def solve(self, lam: float) -> np.ndarray:
        """Sketch-and-solve solution ``argmin ||S(Ax - b)||^2 + lam ||x||^2`` (pseudo-inverse when lam = 0)."""
        if not self.has_svd:
            return scipy.linalg.solve_triangular(self.R, self.qb, check_finite=False)
        k = self.rank if lam == 0.0 else self.sigma.size
        s, z, V = self.sigma[:k], self.z[:k], self.V[:, :k]
        return V @ (s / (s**2 + lam) * z)

    def gcv_inputs(self) -> tuple[np.ndarray, np.ndarray, float]:
        return self.sigma, self.z, self.outside


class Preconditioner:
    """Right preconditioner P (n x n): a dense matrix, or the inverse of an upper triangle R."""

    def __init__(self, dense: np.ndarray | None = None, triangle: np.ndarray | None = None):
        self.dense, self.triangle = dense, triangle

    def dot(self, y: np.ndarray) -> np.ndarray:
        if self.dense is not None:
            return self.dense @ y
        return scipy.linalg.solve_triangular(self.triangle, y, check_finite=False)

    def tdot(self, g: np.ndarray) -> np.ndarray:
        if self.dense is not None:
            return self.dense.T @ g
        return scipy.linalg.solve_triangular(self.triangle, g, trans="T", check_finite=False)


def _norm2_triangular(R: np.ndarray, steps: int = 30) -> float:
    """Spectral norm of R by power iteration on R^T R (a lower estimate, accurate to a few digits)."""
    v = np.ones(R.shape[1]) / math.sqrt(R.shape[1])
    value = 0.0
    for _ in range(steps):
        w = R.T @ (R @ v)
        value = float(np.linalg.norm(w))
        if value == 0.0:
            return 0.0
        v = w / value
    return math.sqrt(value)


#: CGLS iteration after which ``--sketch auto`` vets CountSketch by the Ritz values.
_VET_ITERATION = 3


def embedding_distortion(d: int, n: int) -> float:
    """Distortion delta ~ sqrt(n/d) of a Gaussian-like embedding with d rows of an n-dimensional
    range (capped at 0.9): the singular values of A P lie in about [1/(1+delta), 1/(1-delta)]."""
    return min(math.sqrt(n / d), 0.9) if d > 0 else 0.9


def expected_condition(d: int, n: int) -> float:
    """cond(A P) to expect from such an embedding: ``(1 + delta) / (1 - delta)``."""
    delta = embedding_distortion(d, n)
    return (1.0 + delta) / (1.0 - delta)


#: Above this many columns the O(n^3) SVD of R is skipped when it is not needed.
SVD_MAX_COLUMNS = 1000


def factor_sketch(SA: np.ndarray, Sb: np.ndarray, *, need_svd: bool = False) -> SketchFactor:
    """Factor the d x n sketch: R of ``QR([SA, Sb])`` (Q never formed), then SVD of R when needed.

    The last column of the (n+1) x (n+1) triangle holds ``Q^T S b`` and, in its corner, the norm of
    the part of ``S b`` outside range(SA).
    """
    d, n = SA.shape
    if not need_svd and n > SVD_MAX_COLUMNS:
        factor = _cholesky_factor(SA, Sb)
        if factor is not None:
            return factor
    aug = np.empty((d, n + 1), order="F")
    aug[:, :n] = SA
    aug[:, n] = Sb
    Raug = scipy.linalg.qr(aug, mode="r", overwrite_a=True, check_finite=False)[0]
    R = np.triu(Raug[:n, :n])
    qb = Raug[:n, n].copy()
    outside = float(Raug[n, n] ** 2) if d > n else 0.0
    if not need_svd and n > SVD_MAX_COLUMNS:
        rcond = float(scipy.linalg.lapack.dtrcon(R, norm="1", uplo="U", diag="N")[0])
        if rcond > max(d, n) * EPS * 10:
            return SketchFactor(d=d, n=n, outside=outside, R=R, qb=qb, rcond=rcond)
    Ur, sigma, Vt = scipy.linalg.svd(R, full_matrices=False, check_finite=False, lapack_driver="gesdd")
    return SketchFactor(d=d, n=n, outside=outside, V=Vt.T.copy(), sigma=sigma, z=Ur.T @ qb)


#: CholeskyQR is accepted when cond(R) <= 1/CHOLESKY_MIN_RCOND: the Gram matrix then loses about
#: cond^2 * eps = 2e-6 relative accuracy, which leaves A R^{-1} within 1e-5 of orthonormal-by-sketch.
CHOLESKY_MIN_RCOND = 1e-5


def _cholesky_factor(SA: np.ndarray, Sb: np.ndarray) -> SketchFactor | None:
    """R from the Cholesky factor of the Gram matrix (SA)^T SA (CholeskyQR): about a third of the cost
    of Householder QR for large n. Returns None when SA is too ill-conditioned for it."""
    d, n = SA.shape
    gram = SA.T @ SA
    try:
        R = scipy.linalg.cholesky(gram, lower=False, check_finite=False)
    except np.linalg.LinAlgError:
        return None
    rcond = float(scipy.linalg.lapack.dtrcon(R, norm="1", uplo="U", diag="N")[0])
    if not rcond >= CHOLESKY_MIN_RCOND:
        return None
    qb = scipy.linalg.solve_triangular(R, SA.T @ Sb, trans="T", check_finite=False)
    outside = float(max(Sb @ Sb - qb @ qb, 0.0))
    return SketchFactor(d=d, n=n, outside=outside, R=R, qb=qb, rcond=rcond)


@dataclass
class KrylovOutcome:
    """What :func:`cgls` hands back: the solution ``y`` of ``min ||M y - rhs||`` and how it got there.

    ``singular_range`` holds the largest and smallest Ritz estimates of the singular values of M.
    """

    y: np.ndarray
    iterations: int
    status: Status
    rnorm: float
    arnorm: float
    singular_range: tuple[float, float] | None = None
    #: set when ``check`` stopped the iteration: the Ritz estimate of cond(M) that exceeded its limit
    poor_conditioning: float | None = None


def cgls(normal, rhs, rhs_gradient: np.ndarray, ncols: int, *, rtol: float, maxiter: int,
         bnorm: float, callback: Callback, it0: int = 0,
         check: tuple[int, float] | None = None,
         target: tuple[float, float] | None = None, vectors=ARRAY_VECTORS) -> KrylovOutcome:
    """Conjugate gradients on the normal equations of ``min ||M y - rhs||`` from y = 0 (CGLS).

    ``normal(p)`` returns ``(M p, M^T M p)``, both from one pass over the data (the block of rows
    that gives ``M p`` is still in cache when its contribution to ``M^T (M p)`` is added), so an
    iteration reads A once, where LSQR reads it twice (``A v`` then ``A^T u``); the iterates are
    LSQR's in exact arithmetic. ``rhs_gradient`` is ``M^T rhs``. The residual ``r = rhs - M y`` is
    updated explicitly; ``s = M^T r`` by its recurrence, which stays accurate because the
    preconditioned M is well conditioned (refinement recomputes both from A).

    Stops when ``||r|| <= rtol * bnorm`` (consistent systems) or ``||M^T r|| <= rtol ||M||_F ||r||``,
    with ``||M||_F`` estimated as in LSQR (here ``trace`` of the Lanczos matrix ``T_k = B_k^T B_k``
    built from the CG coefficients), as scipy's lsqr with atol = btol = rtol.
    Calls ``callback(it0 + k, residual=||r||/bnorm, optimality=||M^T r||/(||M|| ||r||))``.
    ``check = (k, limit)``: after iteration k, stop early (``poor_conditioning`` set) when the Ritz
    estimate of cond(M) exceeds ``limit`` -- the extreme Ritz values find outlying singular values
    within a few iterations, so a poor preconditioner shows before its cost does.
    ``target = (eps, sigma_floor)``: instead of the optimality test, stop once the residual is provably
    within ``1 + eps`` of the optimum: ``||r||^2 - ||r*||^2 = ||M (y - y*)||^2 <= ||M^T r||^2 / sigma_min(M)^2``, with
    sigma_min(M) taken as the smaller of ``sigma_floor`` (the embedding's lower bound) and the
    smallest Ritz value (which approaches sigma_min from above).
    ``vectors``: the kind of ``rhs`` and of ``M p`` (:class:`ArrayVectors` or a problem's own, whose
    vectors stay where its rows are); only n-vectors and scalars are formed here.
    """
    y = np.zeros(ncols)
    r = vectors.copy(rhs)
    rnorm = vectors.norm(r)
    if rnorm == 0.0:
        return KrylovOutcome(y, 0, Status.CONVERGED_ZERO_RHS, 0.0, 0.0)
    s_vec = rhs_gradient.copy()
    gamma = float(s_vec @ s_vec)
    if gamma == 0.0:
        return KrylovOutcome(y, 0, Status.CONVERGED_HAPPY_BREAKDOWN, rnorm, 0.0)
    bnorm = bnorm if bnorm > 0 else rnorm
    p = s_vec.copy()
    diag: list[float] = []
    off: list[float] = []
    trace = 0.0
    previous = None  # (alpha, beta) of the last iteration
    status = Status.DIVERGED_MAX_IT
    k = 0
    while k < maxiter:
        k += 1
        q, Mtq = normal(p)
        delta = vectors.norm2(q)
        if not math.isfinite(delta):
            status = Status.DIVERGED_NAN
            break
        if delta == 0.0:
            status = Status.CONVERGED_HAPPY_BREAKDOWN
            break
        alpha = gamma / delta
        y += alpha * p
        r = vectors.subtract(r, alpha, q)
        s_vec -= alpha * Mtq
        gamma_next = float(s_vec @ s_vec)
        beta = gamma_next / gamma
        # Lanczos matrix of M^T M from the CG coefficients (Saad, Iterative Methods, sec. 6.7.3).
        diag.append(1.0 / alpha + (previous[1] / previous[0] if previous else 0.0))
        trace += diag[-1]
        off.append(math.sqrt(beta) / alpha)
        previous = (alpha, beta)
        gamma = gamma_next
        rnorm = vectors.norm(r)
        arnorm = math.sqrt(gamma)
        if not (math.isfinite(rnorm) and math.isfinite(arnorm)):
            status = Status.DIVERGED_NAN
            break
        optimality = arnorm / (math.sqrt(trace) * rnorm) if rnorm > 0 else 0.0
        callback(it0 + k, residual=rnorm / bnorm, optimality=optimality)
        if rnorm <= rtol * bnorm:
            status = Status.CONVERGED_ATOL
            break
        if target is None and optimality <= rtol or target is not None and _within_ratio(rnorm, arnorm, target,
                                                                                          diag, off):
            status = Status.CONVERGED_RTOL
            break
        if gamma == 0.0:
            status = Status.CONVERGED_HAPPY_BREAKDOWN
            break
        if check is not None and k == check[0]:
            estimate = _ritz_range(diag, off)
            if estimate is not None and estimate[0] > check[1] * estimate[1]:
                return KrylovOutcome(y, k, Status.DIVERGED_MAX_IT, rnorm, arnorm, estimate,
                                     poor_conditioning=estimate[0] / estimate[1])
        p = s_vec + beta * p
    arnorm = math.sqrt(max(gamma, 0.0))
    return KrylovOutcome(y, k, status, rnorm, arnorm, _ritz_range(diag, off))


def _within_ratio(rnorm: float, arnorm: float, target: tuple[float, float], diag: list[float],
                  off: list[float]) -> bool:
    """Whether ``||r|| <= (1 + eps) ||r*||`` follows from ``||M^T r|| / sigma_min(M)`` (see :func:`cgls`)."""
    eps, floor = target
    allowed = rnorm**2 * (1.0 - 1.0 / (1.0 + eps) ** 2)  # largest ||r||^2 - ||r*||^2 within the ratio
    if (arnorm / floor) ** 2 > allowed:
        return False
    ritz = _ritz_range(diag, off)
    smin = floor if ritz is None else min(floor, ritz[1])
    return smin > 0.0 and (arnorm / smin) ** 2 <= allowed


def _ritz_range(diag: list[float], off: list[float]) -> tuple[float, float] | None:
    """Largest and smallest singular-value estimates of M: square roots of the extreme eigenvalues
    of the Lanczos matrix of ``M^T M`` (diagonal ``diag``, off-diagonal ``off[:-1]``)."""
    k = len(diag)
    if k < 2:
        return None
    theta = scipy.linalg.eigvalsh_tridiagonal(np.asarray(diag), np.asarray(off[: k - 1]))
    return float(math.sqrt(max(theta[-1], 0.0))), float(math.sqrt(max(theta[0], 0.0)))


class _PreconditionedOperator:
    """``M = [A; sqrt(lam) I] P`` for a :class:`Preconditioner` P; M's range vectors have m (+ n) entries."""

    def __init__(self, problem, P: "Preconditioner", lam: float):
        self.problem, self.P, self.lam = problem, P, lam
        self.root = math.sqrt(lam)
        self.m = problem.shape[0]
        self.vectors = problem.vectors

    def normal(self, y: np.ndarray) -> tuple[Any, np.ndarray]:
        """``(M y, M^T M y)`` in one pass over A."""
        x = self.P.dot(y)
        Ax, AtAx = self.problem.normal_product(x)
        My = self.vectors.stack(Ax, self.root * x) if self.lam > 0 else Ax
        return My, self.P.tdot(AtAx + self.lam * x)

    def rhs(self, x: np.ndarray) -> tuple[Any, np.ndarray]:
        """Residual ``[b - A x; -sqrt(lam) x]`` of the current iterate (recomputed from A) and M^T of it."""
        r, g = self.problem.residual_vector(x)
        g = self.P.tdot(g - self.lam * x)
        return (self.vectors.stack(r, -self.root * x) if self.lam > 0 else r), g


def _check_options(problem, mode: str, sketch: str, d: int | None, eps: float | None, rtol: float) -> None:
    m, n = problem.shape
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
    if sketch != "auto" and sketch not in SKETCH_KINDS:
        raise ValueError(f"unknown sketch {sketch!r}; choose one of auto, {', '.join(SKETCH_KINDS)}")
    if problem.streaming and sketch != "auto" and sketch not in STREAMABLE_KINDS:
        raise ValueError(f"sketch {sketch!r} cannot be applied while streaming rows; "
                         f"use one of {', '.join(STREAMABLE_KINDS)}")
    if m < n:
        raise ValueError(f"A is {m} x {n}: sketched least squares needs a tall matrix (m >= n)")
    if d is not None and not n <= d <= m:
        raise ValueError(f"sketch size {d} must lie between n = {n} and m = {m}")
    if eps is not None and not 0.0 < eps < 1.0:
        raise ValueError("eps must lie in (0, 1)")
    if rtol < 0.0:
        raise ValueError("rtol must be non-negative")


def solve_sketched(A, b=None, *, mode: str = "precondition", sketch: str = "auto",
                   sketch_size: int | None = None, eps: float | None = None, ridge: float | str = 0.0,
                   rtol: float = 1e-10, maxiter: int | None = None, nnz_per_column: int = 4,
                   refine_steps: int = 2, rng: np.random.Generator,
                   callback: Callback = no_callback) -> Result:
    """Solve ``min ||A x - b||^2 + lam ||x||^2`` by sketching (see the module docstring for modes).

    Parameters
    ----------
    A : (m, n) ndarray, scipy.sparse matrix, or a problem object (streaming), m >= n.
    b : (m,) right-hand side (ignored when A is a problem object, which carries b).
    mode : ``sketch-and-solve``, ``precondition`` or ``refine``.
    sketch : ``auto`` or one of :data:`~matcli.methods.sketch.sketches.SKETCH_KINDS`. ``auto``: the
        iterative modes start with CountSketch and switch to sparse-sign (keeping the progress) when the
        Ritz values after a few CGLS iterations show cond(A P) above twice what an embedding of that size
        gives (rows of high leverage collided); sketch-and-solve uses sparse-sign.
    sketch_size : rows d of the sketch (n <= d <= m); default from :func:`default_sketch_size`.
    eps : target residual ratio ``1 + eps``. sketch-and-solve: sets the default sketch size (default
        0.1). Iterative modes: CGLS also stops as soon as ``||M^T r|| / sigma_min(M)`` bounds the
        residual within ``1 + eps`` of the optimum (see :func:`cgls`), and the recomputed bound is
        checked after the solve (up to two restarts from the recomputed residual when it is missed).
    ridge : lam >= 0, or ``"auto"`` to choose it by GCV on the sketched problem.
    rtol : CGLS stopping tolerance (iterative modes; LSQR's criteria, see :func:`cgls`).
    maxiter : CGLS iteration limit per solve (default 200 + n // 10).
    nnz_per_column : nonzeros per column of the sparse sign sketch.
    refine_steps : refinement solves after the first one (``refine`` mode).
    rng : random generator for the sketch.
    callback : called per CGLS iteration with ``residual`` and ``optimality``.

    Returns
    -------
    Result
        ``outputs["x"]`` of shape (n,); metrics ``residual_norm``, ``relative_residual``,
        ``optimality`` (``||A^T r - lam x|| / (||A||_2 ||[r; sqrt(lam) x]||)``, ||A||_2 from the
        sketch), ``residual_ratio_estimate`` (estimated ratio of the objective's root to its optimum),
        ``backward_error_estimate`` (Karlson-Walden with A^T A ~ (SA)^T SA, lam = 0),
        ``sketch_size``, ``condition_estimate`` (of A, from the sketch) and, after iterations,
        ``preconditioned_condition_estimate`` (Ritz values of the Lanczos matrix of CGLS).
    """
    # matcli's threads (parallel_map) run the passes over A; BLAS stays on one thread throughout, so
    # its workers do not spin between the small calls and compete with them for the cores
    with own_threads_only():
        return _solve_sketched(A, b, mode=mode, sketch=sketch, sketch_size=sketch_size, eps=eps, ridge=ridge,
                               rtol=rtol, maxiter=maxiter, nnz_per_column=nnz_per_column,
                               refine_steps=refine_steps, rng=rng, callback=callback)


def _solve_sketched(A, b, *, mode: str, sketch: str, sketch_size: int | None, eps: float | None, ridge: float | str,
                    rtol: float, maxiter: int | None, nnz_per_column: int, refine_steps: int,
                    rng: np.random.Generator, callback: Callback) -> Result:
    problem = as_problem(A, b)
    m, n = problem.shape
    _check_options(problem, mode, sketch, sketch_size, eps, rtol)
    d = sketch_size or default_sketch_size(mode, m, n, 0.1 if eps is None else eps, sparse=problem.sparse,
                                           streaming=problem.streaming, kind=sketch)
    maxiter = maxiter or 200 + n // 10

    def row_scores(pre_sketch) -> np.ndarray:
        SA0, _ = problem.sketch(pre_sketch)
        if not np.isfinite(SA0).all():
            raise FloatingPointError
        with blas_on_all_threads():
            pre = factor_sketch(SA0, np.zeros(SA0.shape[0])).precond(0.0)
        k = min(n, 32)
        G = rng.standard_normal((n, k)) / math.sqrt(k)
        scores = problem.row_norms2(pre.dot(G))
        if not np.isfinite(scores).all():
            raise FloatingPointError
        return scores

    not_finite = Result(Status.DIVERGED_NAN, message="the sketch of A or b is not finite (NaN/Inf in the input "
                                                     "or overflow)")

    def sketch_and_factor(kind: str) -> tuple[int, SketchFactor] | None:
        """Rows and factorisation of the sketch of kind ``kind`` (None when it is not finite)."""
        try:
            S = make_sketch(kind, m, d, rng, zeta=nnz_per_column, row_scores=row_scores, min_rows=n + 1)
        except FloatingPointError:
            return None
        SA, Sb = problem.sketch(S)
        if not (np.isfinite(SA).all() and np.isfinite(Sb).all()):
            return None
        with blas_on_all_threads():
            return S.d, factor_sketch(SA, Sb, need_svd=ridge != 0.0)

    # auto: the iterative modes try CountSketch (a quarter of the sparse-sign sketch's work, as good an
    # embedding unless rows of high leverage collide) and CGLS's Ritz values vet it; sketch-and-solve,
    # which has no such check, takes the sparse sign sketch.
    verify = sketch == "auto" and mode != "sketch-and-solve"
    kind = ("countsketch" if verify else "sparse-sign") if sketch == "auto" else sketch
    built = sketch_and_factor(kind)
    if built is None:
        return not_finite
    d, factor = built
    info: dict[str, Any] = {"mode": mode, "streaming": bool(problem.streaming)}

    def record_sketch() -> None:
        """The sketch in use (kind, d, factor) in ``info``."""
        info.update(sketch=kind, sketch_size=d, sketch_rank=factor.rank)
        if kind == "sparse-sign":
            info["nnz_per_column"] = min(nnz_per_column, d)
        info.pop("rank_deficient", None)
        if 0 < factor.rank < n:  # rank 0 ends the solve as x = 0 (A numerically zero)
            info["rank_deficient"] = True

    record_sketch()
    if factor.rank == 0:
        x = np.zeros(n)
        return _finish(problem, factor, x, 0.0, Status.CONVERGED_ZERO_RHS, 0, None, d, info,
                       "A is numerically zero; x = 0")

    if ridge == "auto":
        lam, gcv = choose_lambda(*factor.gcv_inputs(), d)
        info["ridge_auto"] = gcv
    else:
        lam = float(ridge)
        if lam < 0:
            raise ValueError("ridge must be non-negative")
    info["ridge"] = lam

    x = factor.solve(lam)
    if mode == "sketch-and-solve":
        status = Status.CONVERGED_DIRECT if np.isfinite(x).all() else Status.DIVERGED_NAN
        return _finish(problem, factor, x, lam, status, 0, None, d, info,
                       f"sketch-and-solve with {d} sketch rows")

    op = _PreconditionedOperator(problem, factor.precond(lam), lam)
    bnorm = problem.b_norm
    solves = 1 + (refine_steps if mode == "refine" else 0)
    restarts = 2 if eps is not None else 0  # when the recomputed residual misses the target
    total = 0
    ritz = None
    status = Status.CONVERGED_RTOL
    steps: list[dict[str, Any]] = []
    step = 0
    while step < solves:
        rhs, rhs_gradient = op.rhs(x)
        check = (_VET_ITERATION, 2.0 * expected_condition(d, factor.rank)) if verify else None
        target = None if eps is None else (eps, 1.0 / (1.0 + embedding_distortion(d, factor.rank)))
        out = cgls(op.normal, rhs, rhs_gradient, n, rtol=rtol, maxiter=maxiter, bnorm=bnorm,
                   callback=callback, it0=total, check=check, target=target, vectors=problem.vectors)
        total += out.iterations
        dx = op.P.dot(out.y)
        x = x + dx
        steps.append({"iterations": out.iterations, "status": out.status.reason,
                      "correction_norm": float(np.linalg.norm(dx))})
        if verify:
            verify = False
            if out.poor_conditioning is not None:
                # keep the progress, re-sketch with the robust sparse sign embedding
                steps[-1]["status"] = "poorly_preconditioned"
                info["sketch_choice"] = (f"countsketch gave cond(A P) ~ {out.poor_conditioning:.3g} after "
                                         f"{out.iterations} CGLS iterations; re-sketched with sparse-sign")
                kind = "sparse-sign"
                built = sketch_and_factor(kind)
                if built is None:
                    return not_finite
                d, factor = built
                record_sketch()
                op = _PreconditionedOperator(problem, factor.precond(lam), lam)
                continue
            vetted = out.singular_range
            info["sketch_choice"] = ("countsketch" + (f": cond(A P) ~ {vetted[0] / vetted[1]:.3g} by CGLS's Ritz values"
                                                      if vetted else " (CGLS converged before any check)"))
        status = out.status
        estimate = out.singular_range
        if estimate is not None and (ritz is None or estimate[0] / estimate[1] > ritz[0] / ritz[1]):
            ritz = estimate
        step += 1
        if not status.converged:
            break
        if step == solves:
            result = _finish(problem, factor, x, lam, status, total, ritz, d, info,
                             f"{mode} with {d} sketch rows: {total} CGLS iterations ({status.reason})")
            if restarts and not _meets_target(result, eps, rtol):
                # the recurrences drifted from the recomputed residual: go on from it
                restarts -= 1
                solves += 1
                steps[-1]["status"] = "target_missed_on_recomputation"
    info["solves"] = steps
    if not status.converged:
        result = _finish(problem, factor, x, lam, status, total, ritz, d, info,
                         f"{mode} with {d} sketch rows: {total} CGLS iterations ({status.reason})")
    if eps is not None:
        if result.status.converged and not _meets_target(result, eps, rtol):
            result.status = Status.DIVERGED_TOLERANCE_UNREACHABLE
            result.message = (f"CGLS reported convergence but the recomputed residual is not provably within "
                              f"1 + {eps:g} of the optimum (estimate "
                              f"{result.metrics.get('residual_ratio_estimate', math.inf):.12g}); try --mode refine, "
                              f"sparse-sign or a larger --sketch-size")
        return result
    # The stopping test uses recurrence estimates and ||M||_F; a poor sketch (outlying singular values of
    # the preconditioned operator) can satisfy it early. Check the recomputed optimality, unless the
    # system is consistent (then r is rounding noise and only its size matters).
    limit = max(100.0 * rtol, UNREACHABLE_OPTIMALITY)
    if result.status.converged and result.metrics["optimality"] > limit and result.metrics["relative_residual"] > limit:
        result.status = Status.DIVERGED_TOLERANCE_UNREACHABLE
        result.message = (f"CGLS reported convergence but the recomputed optimality "
                          f"{result.metrics['optimality']:.2e} is far above --rtol; the sketch preconditions A "
                          f"poorly (try --mode refine, sparse-sign or a larger --sketch-size)")
    return result


def _meets_target(result: Result, eps: float, rtol: float) -> bool:
    """Whether the recomputed residual is within ``1 + eps`` of the optimum by the a-posteriori bound, or
    small enough (``<= rtol ||b||``) that the system counts as consistent."""
    ratio = result.metrics.get("residual_ratio_estimate", math.inf)
    return ratio <= 1.0 + eps or result.metrics["relative_residual"] <= rtol


def _finish(problem, factor: SketchFactor, x: np.ndarray, lam: float, status: Status, iterations: int,
            ritz: tuple[float, float] | None, d: int, info: dict[str, Any], message: str) -> Result:
    """Evaluate the a-posteriori metrics of ``x`` with one residual and one transposed product."""
    m, n = problem.shape
    rnorm, grad = problem.residual_norm_and_gradient(x)
    bnorm = problem.b_norm
    grad = grad - lam * x
    xnorm = float(np.linalg.norm(x))
    objective = math.sqrt(rnorm**2 + lam * xnorm**2)
    sigma_max = factor.sigma_max
    anorm = math.sqrt(sigma_max**2 + lam)
    metrics: dict[str, float] = {
        "residual_norm": rnorm,
        "relative_residual": rnorm / bnorm if bnorm > 0 else 0.0,
        "optimality": float(np.linalg.norm(grad)) / (anorm * objective) if anorm * objective > 0 else 0.0,
        "sketch_size": float(d),
        "iterations": float(iterations),
        "ridge": lam,
    }
    if factor.rank:
        metrics["condition_estimate"] = factor.cond
        # M = [A; sqrt(lam) I] P: ||M(y - y*)||^2 = f(x) - f(x*) <= ||P^T grad||^2 / sigma_min(M)^2,
        # with sigma_min(M) >= 1/(1 + delta) for an embedding of distortion delta ~ sqrt(n/d).
        pgrad = float(np.linalg.norm(factor.precond(lam).tdot(grad)))
        smin = 1.0 / (1.0 + embedding_distortion(d, factor.rank))
        if ritz is not None:
            smin = min(smin, ritz[1])
        excess = (pgrad / smin) ** 2
        if objective == 0.0:
            metrics["residual_ratio_estimate"] = 1.0
        elif objective**2 > excess:
            metrics["residual_ratio_estimate"] = objective / math.sqrt(objective**2 - excess)
        if lam == 0.0 and xnorm > 0 and factor.has_svd:
            # Karlson-Walden: ||(A^T A + mu I)^{-1/2} A^T r|| / ||x||, mu = ||r||^2/||x||^2.
            mu = (rnorm / xnorm) ** 2
            coords = factor.V.T @ grad
            kw = float(np.linalg.norm(coords / np.sqrt(factor.sigma**2 + mu))) / xnorm
            metrics["backward_error_estimate"] = kw / sigma_max if sigma_max > 0 else 0.0
    if ritz is not None:
        metrics["preconditioned_condition_estimate"] = ritz[0] / ritz[1]
    if not (np.isfinite(x).all() and math.isfinite(rnorm)):
        status = Status.DIVERGED_NAN
    return Result(status=status, outputs={"x": x}, metrics=metrics, iterations=iterations,
                  info=info, message=message)


def sketch_and_solve(A, b=None, **options) -> Result:
    """Sketch-and-solve mode of :func:`solve_sketched` (one sketch, no iterations)."""
    return solve_sketched(A, b, mode="sketch-and-solve", **options)


def precondition(A, b=None, **options) -> Result:
    """Sketch-and-precondition mode of :func:`solve_sketched` (warm-started preconditioned CGLS)."""
    return solve_sketched(A, b, mode="precondition", **options)


def refine(A, b=None, **options) -> Result:
    """Sketch-and-precondition with iterative refinement (SPIR) mode of :func:`solve_sketched`."""
    return solve_sketched(A, b, mode="refine", **options)
