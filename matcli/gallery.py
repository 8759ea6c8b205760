"""Test-problem gallery used by ``matcli generate``, the tests and the benchmarks.

Every generator takes an explicit ``numpy.random.Generator`` and returns a dict of named arrays
(the HDF5 datasets ``generate`` writes). Ground truth is included where known (``x_true``,
``U_true``...), so tests can compare against it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np
import scipy.sparse as sp


def poisson(shape: tuple[int, ...]) -> sp.csr_matrix:
    """Standard finite-difference Laplacian with Dirichlet boundary, order prod(shape), SPD.

    1-D stencil [-1, 2, -1] per axis, combined by Kronecker sums (5-point in 2-D, 7-point in 3-D).
    """
    mats = [sp.diags([-np.ones(n - 1), 2 * np.ones(n), -np.ones(n - 1)], [-1, 0, 1], format="csr")
            for n in shape]
    total = sp.csr_matrix((int(np.prod(shape)),) * 2)
    for axis, mat in enumerate(mats):
        left = sp.identity(int(np.prod(shape[:axis])), format="csr")
        right = sp.identity(int(np.prod(shape[axis + 1:])), format="csr")
        total = total + sp.kron(sp.kron(left, mat), right, format="csr")
    return sp.csr_matrix(total)


def poisson_problem(shape: tuple[int, ...], rng: np.random.Generator) -> dict[str, object]:
    """Poisson matrix ``A``, a random exact solution ``x_true`` and ``b = A x_true``."""
    A = poisson(shape)
    x = rng.standard_normal(A.shape[0])
    return {"A": A, "b": A @ x, "x_true": x}


def _orthonormal(rng: np.random.Generator, m: int, k: int) -> np.ndarray:
    q, r = np.linalg.qr(rng.standard_normal((m, k)))
    return q * np.sign(np.diag(r))


def spd_problem(n: int, cond: float, rng: np.random.Generator) -> dict[str, object]:
    """Dense SPD ``A = Q diag(lambda) Q^T`` with eigenvalues log-spaced in [1/cond, 1]."""
    q = _orthonormal(rng, n, n)
    lam = np.logspace(0, -np.log10(cond), n)
    A = (q * lam) @ q.T
    A = (A + A.T) / 2
    x = rng.standard_normal(n)
    return {"A": A, "b": A @ x, "x_true": x, "eigenvalues": lam}


def lowrank_problem(m: int, n: int, rank: int, noise: float, decay: float,
                    rng: np.random.Generator) -> dict[str, object]:
    """Dense ``A = U diag(s) V^T + noise * G / sqrt(max(m, n))`` with s_i = decay^i (known spectrum)."""
    U = _orthonormal(rng, m, rank)
    V = _orthonormal(rng, n, rank)
    s = decay ** np.arange(rank, dtype=float)
    A = (U * s) @ V.T
    if noise > 0:
        A = A + noise * rng.standard_normal((m, n)) / np.sqrt(max(m, n))
    return {"A": A, "U_true": U, "s_true": s, "V_true": V}


def regression_problem(m: int, n: int, cond: float, heavy_rows: int, noise: float,
                       rng: np.random.Generator) -> dict[str, object]:
    """Tall dense ``A = U diag(s) V^T`` (s log-spaced, cond(A) = cond) and ``b = A x_true + noise r``.

    ``heavy_rows`` rows are scaled up by 1e3 to make A coherent (large leverage concentrated on
    few rows, which defeats uniform row sampling). ``r`` is orthogonal to range(A) so the exact
    least-squares solution is ``x_true`` and the optimal residual norm is ``noise * ||r||``.
    """
    G = rng.standard_normal((m, n))
    if heavy_rows:
        rows = rng.choice(m, size=heavy_rows, replace=False)
        G[rows] *= 1e3
    U, _ = np.linalg.qr(G)
    V = _orthonormal(rng, n, n)
    s = np.logspace(0, -np.log10(cond), n)
    A = (U * s) @ V.T
    x = rng.standard_normal(n)
    r = rng.standard_normal(m)
    r -= U @ (U.T @ r)
    r *= noise * np.linalg.norm(A @ x) / max(np.linalg.norm(r), 1e-300)
    return {"A": A, "b": A @ x + r, "x_true": x, "optimal_residual": np.array(np.linalg.norm(r))}


def completion_problem(m: int, n: int, rank: int, rate: float, noise: float, test_fraction: float,
                       rng: np.random.Generator) -> dict[str, object]:
    """Rank-``rank`` ``M = U V^T`` (entries of unit variance), a uniform sample of ``rate * m * n``
    entries (+ Gaussian noise), split into observed and held-out test entries (COO, 0-based).
    Sampling draws positions with replacement and removes duplicates, so memory is O(|Omega|)."""
    U = rng.standard_normal((m, rank)) / rank ** 0.25
    V = rng.standard_normal((n, rank)) / rank ** 0.25
    count = int(round(rate * m * n))
    flat = np.unique(rng.integers(0, m * n, size=count, dtype=np.int64))
    rng.shuffle(flat)
    rows, cols = np.divmod(flat, n)
    values = np.einsum("ij,ij->i", U[rows], V[cols]) + noise * rng.standard_normal(flat.size)
    n_test = int(round(test_fraction * flat.size))
    out: dict[str, object] = {"U_true": U, "V_true": V}
    out["observed/row"], out["observed/col"], out["observed/value"] = rows[n_test:], cols[n_test:], values[n_test:]
    if n_test:
        out["test/row"], out["test/col"], out["test/value"] = rows[:n_test], cols[:n_test], values[:n_test]
    return out


def poisson_batch(shape: tuple[int, ...], count: int, variation: float,
                  rng: np.random.Generator) -> dict[str, object]:
    """``count`` related SPD systems with one sparsity pattern: ``A_t = L + c_t D`` where ``L`` is the
    Poisson matrix, ``D`` a fixed random positive diagonal and ``c_t`` a slowly varying shift
    (a sequence of implicit time steps). Datasets ``systems/sNNN/A`` and ``systems/sNNN/b``."""
    L = poisson(shape)
    d = sp.diags(rng.uniform(0.5, 1.5, L.shape[0]), format="csr")
    out: dict[str, object] = {}
    shifts = 1.0 + variation * np.cumsum(rng.uniform(0.0, 1.0, count))
    for t, shift in enumerate(shifts):
        A = sp.csr_matrix(L + shift * d)
        x = rng.standard_normal(L.shape[0])
        out[f"systems/s{t:03d}/A"] = A
        out[f"systems/s{t:03d}/b"] = A @ x
        out[f"systems/s{t:03d}/x_true"] = x
    return out


def problem_bytes(kind: str, *, n: int, rows: int, cols: int, rank: int, rate: float, count: int) -> float:
    """An upper estimate of the memory ``matcli generate KIND`` needs, from its options alone.

    Counts the arrays written and the temporaries of their construction (about three times the
    stored sparse matrices, twice the dense ones), so that the budget check comes before any of them.
    """
    def sparse(dim: int) -> float:
        unknowns = float(n) ** dim
        return 3 * (2 * dim + 1) * unknowns * 16 + 3 * unknowns * 8

    if kind == "poisson2d":
        return sparse(2)
    if kind == "poisson3d":
        return sparse(3)
    if kind == "spd":
        return 4.0 * n * n * 8
    if kind in ("lowrank", "regression"):
        return 2.0 * rows * cols * 8 + 2.0 * (rows + cols) * max(rank, 1) * 8
    if kind == "completion":
        return 6 * rate * rows * cols * 8 + 2.0 * (rows + cols) * rank * 8
    if kind == "batch":
        return count * sparse(2) / 3 * 2
    raise ValueError(f"unknown problem kind {kind!r}")


#: rows drawn from one generator in the tiled constructions: the unit of their per-tile seeds, so a
#: problem's values do not depend on how many rows are written (or read) at a time
TILE_ROWS = 4096


class TiledProblem(ABC):
    """Base of the problems built tile by tile, for problems larger than memory.

    Rows ``[t T, (t+1) T)`` (``T`` = :data:`TILE_ROWS`) draw their random numbers from a generator
    seeded by ``(key, t)``, where ``key`` comes from the problem's ``rng``: any tile-aligned row
    range can be made again, in any order, by any process, and the values never depend on how many
    rows are made at a time. Subclasses set ``m``, ``row_arrays`` (name -> trailing shape) and
    implement :meth:`rows` and :meth:`small_arrays`.
    """

    m: int
    row_arrays: dict[str, tuple[int, ...]]

    def __init__(self, m: int, rng: np.random.Generator):
        self.m = int(m)
        self.key = [int(k) for k in rng.integers(0, 2**63, size=2)]

    @property
    def tiles(self) -> int:
        return -(-self.m // TILE_ROWS)

    def tile_rng(self, t: int) -> np.random.Generator:
        """The generator of tile ``t`` (the same numbers on every call)."""
        return np.random.default_rng(np.random.SeedSequence(self.key, spawn_key=(t,)))

    def tile_span(self, t: int) -> tuple[int, int]:
        return t * TILE_ROWS, min(self.m, (t + 1) * TILE_ROWS)

    def check_range(self, start: int, stop: int) -> None:
        if start % TILE_ROWS or (stop % TILE_ROWS and stop != self.m) or not 0 <= start <= stop <= self.m:
            raise ValueError(f"rows({start}, {stop}) is not a range of whole tiles of {TILE_ROWS} rows")

    @abstractmethod
    def rows(self, start: int, stop: int) -> dict[str, np.ndarray]:
        """Rows ``[start, stop)`` of each row array (``start`` a multiple of :data:`TILE_ROWS`,
        ``stop`` one too or ``m``)."""

    @abstractmethod
    def small_arrays(self) -> dict[str, np.ndarray]:
        """The problem's arrays that are not cut in rows."""

    def arrays(self) -> dict[str, object]:
        """The whole problem in memory."""
        return {**self.rows(0, self.m), **self.small_arrays()}

    def blocks(self, block_rows: int):
        """``(start, rows(start, start + block_rows))`` for consecutive blocks; ``block_rows`` a
        positive multiple of :data:`TILE_ROWS`."""
        if block_rows < 1 or block_rows % TILE_ROWS:
            raise ValueError(f"block_rows must be a positive multiple of {TILE_ROWS}, got {block_rows}")
        for start in range(0, self.m, block_rows):
            yield start, self.rows(start, min(self.m, start + block_rows))


def _positive_r(R: np.ndarray) -> np.ndarray:
    """``R`` with rows negated so that its diagonal is non-negative (the unique R of a QR)."""
    return R * np.where(np.diag(R) < 0, -1.0, 1.0)[:, None]


def _tsqr_step(R: np.ndarray, G: np.ndarray) -> np.ndarray:
    """The triangular factor of ``[R; G]`` (one step of the sequential TSQR reduction)."""
    return np.linalg.qr(np.vstack([R, G]), mode="r")


def _basis_rows(R: np.ndarray, G: np.ndarray) -> np.ndarray:
    """``G R^{-1}``: rows of the orthonormal basis whose Gaussian draw is ``G``."""
    return _solve_upper(R, G.T, transpose=True).T


class RegressionTiles(TiledProblem):
    """A tall dense least-squares problem built tile by tile (see :class:`TiledProblem`).

    The same guarantees as :func:`regression_problem` (``A = U diag(s) V^T`` with ``s``
    log-spaced from 1 to ``1/cond``, ``heavy_rows`` rows of the Gaussian basis scaled by 1e3,
    ``b = A x_true + r`` with ``r`` orthogonal to range(A), ``||r|| = noise ||A x_true||``), with a
    different random construction: tile ``t`` draws its rows of the Gaussian matrix ``G``, then of
    the residual's draw ``r0``; ``key``, ``V``, ``x_true`` and the heavy rows come from ``rng``.
    ``U = G R^{-1}`` where ``R`` is the triangular factor of ``G`` (positive diagonal) reduced over
    the tiles in order (TSQR), so ``U^T U = I`` up to ``eps cond(G)``; ``r = r0 - U (U^T r0)``, with
    ``U^T r0 = R^{-T} G^T r0`` summed in the same pass.

    The constructor draws every tile once, keeping O(n^2) numbers. Memory of :meth:`rows`: a few
    copies of the requested rows, plus ``n x n``.
    """

    def __init__(self, m: int, n: int, cond: float, heavy_rows: int, noise: float, rng: np.random.Generator):
        if m < n:
            raise ValueError(f"a regression problem needs m >= n, got {m} x {n}")
        super().__init__(m, rng)
        self.n = int(n)
        self.row_arrays = {"A": (self.n,), "b": ()}
        self.heavy = np.sort(rng.choice(m, size=heavy_rows, replace=False)) if heavy_rows else np.zeros(0, np.int64)
        self.V = _orthonormal(rng, n, n)
        self.x = rng.standard_normal(n)
        self.s = np.logspace(0, -np.log10(cond), n)
        R = np.zeros((0, n))
        gram_r0 = np.zeros(n)
        r0_squared = 0.0
        for t in range(self.tiles):
            G, r0 = self._draw(t)
            R = _tsqr_step(R, G)
            gram_r0 += G.T @ r0
            r0_squared += float(r0 @ r0)
        self.R = _positive_r(R)
        self.c = _solve_upper(self.R, gram_r0, transpose=True)
        r_norm = np.sqrt(max(r0_squared - float(self.c @ self.c), 0.0))
        ax_norm = float(np.linalg.norm(self.s * (self.V.T @ self.x)))
        self.scale = noise * ax_norm / max(r_norm, 1e-300) if noise > 0 else 0.0
        self.optimal_residual = self.scale * r_norm

    def _draw(self, t: int) -> tuple[np.ndarray, np.ndarray]:
        """Tile ``t`` of ``G`` (heavy rows scaled) and of ``r0``."""
        start, stop = self.tile_span(t)
        rng = self.tile_rng(t)
        G = rng.standard_normal((stop - start, self.n))
        r0 = rng.standard_normal(stop - start)
        lo, hi = np.searchsorted(self.heavy, [start, stop])
        G[self.heavy[lo:hi] - start] *= 1e3
        return G, r0

    def rows(self, start: int, stop: int) -> dict[str, np.ndarray]:
        """Rows ``[start, stop)`` of ``A`` ((rows, n) float64) and ``b`` ((rows,))."""
        self.check_range(start, stop)
        A, b = np.empty((stop - start, self.n)), np.empty(stop - start)
        for t in range(start // TILE_ROWS, -(-stop // TILE_ROWS)):
            G, r0 = self._draw(t)
            U = _basis_rows(self.R, G)
            At = (U * self.s) @ self.V.T
            lo = t * TILE_ROWS - start
            A[lo:lo + G.shape[0]] = At
            b[lo:lo + G.shape[0]] = At @ self.x + self.scale * (r0 - U @ self.c)
        return {"A": A, "b": b}

    def small_arrays(self) -> dict[str, np.ndarray]:
        """``x_true`` (n,) and ``optimal_residual`` (a scalar)."""
        return {"x_true": self.x, "optimal_residual": np.array(self.optimal_residual)}


class LowrankTiles(TiledProblem):
    """A dense low-rank matrix built tile by tile (see :class:`TiledProblem`).

    The same guarantees as :func:`lowrank_problem`: ``A = U diag(s) V^T + noise E / sqrt(max(m, n))``
    with ``s_i = decay^i``, ``U`` (m x rank) and ``V`` (n x rank) orthonormal, ``E`` standard
    Gaussian. Tile ``t`` draws its rows of a Gaussian ``G`` (m x rank), then of ``E``; ``V`` and
    ``key`` come from ``rng``. ``U = G R^{-1}`` with ``R`` reduced over the tiles (TSQR, positive
    diagonal), orthonormal up to ``eps cond(G)``.
    """

    def __init__(self, m: int, n: int, rank: int, noise: float, decay: float, rng: np.random.Generator):
        if rank > min(m, n):
            raise ValueError(f"rank {rank} exceeds min({m}, {n})")
        super().__init__(m, rng)
        self.n, self.rank, self.noise = int(n), int(rank), float(noise)
        self.row_arrays = {"A": (self.n,), "U_true": (self.rank,)}
        self.V = _orthonormal(rng, n, rank)
        self.s = decay ** np.arange(rank, dtype=float)
        R = np.zeros((0, rank))
        for t in range(self.tiles):
            start, stop = self.tile_span(t)
            R = _tsqr_step(R, self.tile_rng(t).standard_normal((stop - start, self.rank)))
        self.R = _positive_r(R)

    def rows(self, start: int, stop: int) -> dict[str, np.ndarray]:
        """Rows ``[start, stop)`` of ``A`` ((rows, n)) and ``U_true`` ((rows, rank))."""
        self.check_range(start, stop)
        A, U = np.empty((stop - start, self.n)), np.empty((stop - start, self.rank))
        for t in range(start // TILE_ROWS, -(-stop // TILE_ROWS)):
            first, last = self.tile_span(t)
            rng = self.tile_rng(t)
            Ut = _basis_rows(self.R, rng.standard_normal((last - first, self.rank)))
            lo, hi = first - start, last - start
            U[lo:hi] = Ut
            A[lo:hi] = (Ut * self.s) @ self.V.T
            if self.noise > 0:
                A[lo:hi] += self.noise * rng.standard_normal((last - first, self.n)) / np.sqrt(max(self.m, self.n))
        return {"A": A, "U_true": U}

    def small_arrays(self) -> dict[str, np.ndarray]:
        """``s_true`` (rank,) and ``V_true`` (n, rank)."""
        return {"s_true": self.s, "V_true": self.V}


def _solve_upper(R: np.ndarray, rhs: np.ndarray, *, transpose: bool) -> np.ndarray:
    """``R^{-T} rhs`` (``transpose``) or ``R^{-1} rhs`` for the upper triangular ``R``."""
    from scipy.linalg import solve_triangular

    return solve_triangular(R, rhs, trans="T" if transpose else "N", lower=False, check_finite=False)


def tile_chunk_rows(width: int) -> int:
    """Rows of one storage chunk of a tiled problem's widest array (``width`` float64 columns):
    whole tiles, about 8 MiB."""
    return TILE_ROWS * max(1, round(8 * 2**20 / (8 * width * TILE_ROWS)))


def tile_block_rows(width: int, budget: float) -> int:
    """Rows made and written at a time: whole chunks (:func:`tile_chunk_rows`), about 64 MiB of
    the widest array and at most an eighth of ``budget``, never less than one chunk."""
    chunk = tile_chunk_rows(width)
    return chunk * max(1, int(min(64 * 2**20, budget / 8) // (8 * width * chunk)))


def tiled_bytes(widths: list[int], block_rows: int) -> float:
    """Memory of making and writing a tiled problem ``block_rows`` rows at a time, from the widths
    (float64 columns) of its row arrays: two copies of a block of each (the block and the writer's
    buffer), six tile-sized temporaries of the widest (the Gaussian draws, the basis and its
    transpose, scaled copies, the stacked TSQR input) and the O(width^2) plan."""
    width = max(widths)
    return (16.0 * sum(max(w, 1) for w in widths) * block_rows + 6 * 8.0 * width * (TILE_ROWS + width)
            + 8.0 * width * width * 6)
