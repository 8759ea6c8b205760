"""Random sketching operators S (d x m) for tall matrices, applied in about one pass over the rows.

Every sketch offers

* ``apply(X)``: ``S @ X`` for ``X`` of shape (m,) or (m, k), dense or scipy.sparse; returns a dense
  array of shape (d,) or (d, k).
* ``apply_rows(X_block, start)``: the contribution ``S[:, start:start+len] @ X_block`` of a block of
  consecutive rows, so a sketch can be accumulated while streaming a file (all but SRHT).
* ``apply_pair(A, b)``: ``(S A, S b)``; the sketches generated chunk by chunk make each chunk once.

Constructions
-------------
countsketch
    One +-1 per column of S in a uniformly random row (Clarkson-Woodruff). Cost O(nnz(A)).
sparse-sign
    ``zeta`` nonzeros +-1/sqrt(zeta) per column, one in each of ``zeta`` row bands of S (the block
    OSNAP construction of Kane-Nelson), so the rows of a column are distinct. Cost O(zeta nnz(A)).
srht
    sqrt(m/d) * R * DCT-II * D: random signs D, the orthonormal DCT along the rows (scipy.fft), and
    uniform sampling R of d rows without replacement (fast Johnson-Lindenstrauss transform). Dense
    by nature; applied to blocks of columns so only m x (block) numbers are materialised.
gaussian
    i.i.d. N(0, 1/d) entries, generated chunk by chunk of rows from per-chunk seeds so it never
    exists in full. Cost O(d nnz(A)).
leverage
    Independent row sampling with probabilities mixing approximate leverage scores and the uniform
    distribution;
    the scores are the squared row norms of A R^{-1} G where R comes from a sparse-sign sketch of A
    and G is an n x k Gaussian (Drineas-Magdon-Ismail-Mahoney-Woodruff 2012).
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import scipy.sparse as sp

from matcli.threads import parallel_map, worker_ranges

SKETCH_KINDS = ("countsketch", "sparse-sign", "srht", "gaussian", "leverage")
STREAMABLE_KINDS = ("countsketch", "sparse-sign", "gaussian", "leverage")

#: Numbers of a Gaussian sketch generated from one seed: a chunk holds ``gaussian_chunk_columns(d)``
#: columns of S, fixed by d alone, so the sketch does not depend on how the rows are blocked when
#: streaming, and one chunk takes at most 16 MiB whatever d is.
_GAUSSIAN_CHUNK_NUMBERS = 2**21
#: Columns of a sparse sign sketch generated from one seed.
SPARSE_CHUNK = 65536
#: Bytes of the temporaries of scattering a sparse A into the sketch (16 zeta bytes per nonzero).
SCATTER_BYTES = 2**25
#: Columns transformed together by the SRHT (bounds its temporary memory to m x 64 numbers).
SRHT_COLUMNS = 64


def _as_dense(Y) -> np.ndarray:
    return Y.toarray() if sp.issparse(Y) else np.asarray(Y)


class _Sketch:
    """What every sketch shares; subclasses define ``apply`` and ``apply_rows``."""

    def apply_pair(self, A, b) -> tuple[np.ndarray, np.ndarray]:
        """``(S A, S b)``."""
        return self.apply(A), self.apply(b)


class SparseEmbedding(_Sketch):
    """A sketch stored as a sparse d x m matrix in CSC form (column j = where row j of A goes).

    Used for row sampling (at most d nonzeros).
    """

    def __init__(self, kind: str, matrix: sp.csc_matrix):
        self.kind = kind
        self.matrix = matrix
        self.d, self.m = matrix.shape

    def apply(self, X) -> np.ndarray:
        # CSC @ dense streams over the columns of S, i.e. over the rows of X once.
        return _as_dense(self.matrix @ X)

    def apply_rows(self, X_block, start: int) -> np.ndarray:
        stop = start + X_block.shape[0]
        return _as_dense(self.matrix[:, start:stop] @ X_block)


class SRHT(_Sketch):
    """Subsampled randomized trigonometric transform ``sqrt(m/d) R F D`` with F the orthonormal DCT-II."""

    kind = "srht"

    def __init__(self, m: int, d: int, rng: np.random.Generator):
        self.m, self.d = m, d
        self.signs = rng.choice(np.array([-1.0, 1.0]), size=m)
        self.rows = np.sort(rng.choice(m, size=d, replace=False))
        self.scale = math.sqrt(m / d)

    def _transform(self, block: np.ndarray) -> np.ndarray:
        import scipy.fft

        mixed = scipy.fft.dct(block * self.signs[:, None], type=2, axis=0, norm="ortho")
        return mixed[self.rows] * self.scale

    def apply(self, X) -> np.ndarray:
        vector = X.ndim == 1
        X2 = X.reshape(-1, 1) if vector else X
        if sp.issparse(X2):
            X2 = X2.tocsc()
        k = X2.shape[1]
        out = np.empty((self.d, k))
        for j0 in range(0, k, SRHT_COLUMNS):
            j1 = min(k, j0 + SRHT_COLUMNS)
            out[:, j0:j1] = self._transform(_as_dense(X2[:, j0:j1]).astype(np.float64, copy=False))
        return out[:, 0] if vector else out

    def apply_rows(self, X_block, start: int) -> np.ndarray:
        raise ValueError("the SRHT mixes all rows and cannot be accumulated from row blocks")


class _ChunkedSketch(_Sketch):
    """A sketch whose columns ``[c * chunk_columns, (c + 1) * chunk_columns)`` come from the seed
    ``(seed, c)`` (the subclass's ``_chunk(c)``, a d x columns matrix), so it is the same however the
    rows of A are blocked and only one chunk of S per thread exists at a time.

    Products run chunk by chunk; with several worker threads (:func:`matcli.threads.parallel_map`)
    each thread takes a contiguous range of chunks and accumulates its own d x k partial sum.
    """

    m: int
    d: int
    seed: int
    chunk_columns: int

    def apply_rows(self, X_block, start: int) -> np.ndarray:
        return self._apply_blocks((X_block,), start)[0]

    def apply(self, X) -> np.ndarray:
        return self.apply_rows(X, 0)

    def apply_pair(self, A, b) -> tuple[np.ndarray, np.ndarray]:
        """``(S A, S b)``, generating each chunk of S once for both."""
        SA, Sb = self._apply_blocks((A, b), 0)
        return SA, Sb

    def _apply_blocks(self, blocks: tuple, start: int) -> list[np.ndarray]:
        """``S[:, start:start+r] @ X`` for every X in ``blocks`` (all with the same r rows)."""
        stop = start + blocks[0].shape[0]
        if stop <= start:
            return [np.zeros((self.d,) + X.shape[1:]) for X in blocks]
        C = self.chunk_columns
        first, last = start // C, (stop - 1) // C

        def accumulate(span: tuple[int, int]) -> list[np.ndarray]:
            outs = [np.zeros((self.d,) + X.shape[1:]) for X in blocks]
            for index in range(first + span[0], first + span[1]):
                c0 = index * C
                lo, hi = max(start, c0), min(stop, c0 + C)
                S = self._chunk(index)
                if lo > c0 or hi < c0 + S.shape[1]:
                    S = S[:, lo - c0:hi - c0]
                for out, X in zip(outs, blocks):
                    out += self._product(S, X[lo - start:hi - start])
            return outs

        parts = parallel_map(accumulate, worker_ranges(last - first + 1))
        return [sum(outs[1:], outs[0]) for outs in zip(*parts)]

    @staticmethod
    def _product(S, X) -> np.ndarray:
        """``S @ X`` as a dense array for one chunk ``S`` of the sketch and the matching rows of X."""
        return _as_dense(S @ X)


def gaussian_chunk_columns(d: int) -> int:
    """Columns of a d-row Gaussian sketch generated from one seed (at most 8192, at least 64)."""
    return max(64, min(8192, _GAUSSIAN_CHUNK_NUMBERS // max(d, 1)))


class GaussianSketch(_ChunkedSketch):
    """Dense Gaussian sketch with N(0, 1/d) entries, regenerated from per-chunk seeds on demand."""

    kind = "gaussian"

    def __init__(self, m: int, d: int, rng: np.random.Generator):
        self.m, self.d = m, d
        self.seed = int(rng.integers(0, 2**63 - 1))
        self.scale = 1.0 / math.sqrt(d)
        self.chunk_columns = gaussian_chunk_columns(d)

    def _chunk(self, index: int) -> np.ndarray:
        rows = min(self.chunk_columns, self.m - index * self.chunk_columns)
        return np.random.default_rng([self.seed, index]).standard_normal((self.d, rows)) * self.scale


class SparseSign(_ChunkedSketch):
    """Sparse sign embedding (``zeta = 1``: CountSketch), generated chunk by chunk of columns.

    Only one chunk of S exists at a time per thread (O(chunk_columns zeta) memory instead of O(m zeta)).
    """

    chunk_columns = SPARSE_CHUNK

    def __init__(self, m: int, d: int, zeta: int, rng: np.random.Generator):
        self.m, self.d = m, d
        self.zeta = max(1, min(int(zeta), d))
        self.kind = "countsketch" if self.zeta == 1 else "sparse-sign"
        self.seed = int(rng.integers(0, 2**63 - 1))

    def _chunk(self, index: int) -> sp.csc_matrix:
        start = index * SPARSE_CHUNK
        cols = min(SPARSE_CHUNK, self.m - start)
        zeta, band = self.zeta, self.d // self.zeta
        # one draw per nonzero: its low bit is the sign, the rest the row within its band
        draws = np.random.default_rng([self.seed, index]).integers(0, 2 * band, size=(cols, zeta), dtype=np.int32)
        value = 1.0 / math.sqrt(zeta)
        signs = (draws & 1).astype(np.float64).ravel()  # 0/1 -> -value/+value (np.where: 15x slower)
        signs *= 2.0 * value
        signs -= value
        draws >>= 1
        draws += (np.arange(zeta, dtype=np.int32) * band)[None, :]
        indptr = np.arange(0, cols * zeta + 1, zeta, dtype=np.int64 if cols * zeta >= 2**31 else np.int32)
        return sp.csc_matrix((signs, draws.ravel(), indptr), shape=(self.d, cols))

    @staticmethod
    def _product(S: sp.csc_matrix, X) -> np.ndarray:
        """``S @ X``; for sparse X by scattering ``S[i_k, j] * X[j, l]`` into the dense d x n result.

        Every column j of S has exactly zeta nonzeros, so each nonzero X[j, l] lands in zeta entries
        of the result: zeta nnz(X) additions in one compiled loop (``coo_todense`` sums duplicates),
        where scipy's sparse x sparse product would build and sort a sparse result first (measured
        1.7x slower on a 1e6 x 500 matrix with 1e7 nonzeros, d = 2008).
        """
        if not sp.issparse(X):
            return _as_dense(S @ X)
        X = X.tocsr()
        zeta = int(S.indptr[1] - S.indptr[0])
        out = np.zeros((S.shape[0], X.shape[1]))
        # pieces of rows with about `piece_nnz` nonzeros bound the temporaries (zeta * 16 bytes each)
        piece_nnz = max(1, SCATTER_BYTES // (16 * zeta))
        cuts = np.searchsorted(X.indptr, np.arange(piece_nnz, X.nnz, piece_nnz))
        bounds = np.unique(np.r_[0, cuts, X.shape[0]])
        for lo, hi in zip(bounds[:-1], bounds[1:]):
            piece = X[lo:hi]
            counts = np.diff(piece.indptr)
            # band-major order: all of band 1's additions, then band 2's, ..., so the part of the
            # result being written (d / zeta rows) stays in cache
            rows = np.repeat(S.indices[lo * zeta:hi * zeta].reshape(-1, zeta).T, counts, axis=1)  # (zeta, nnz)
            values = np.repeat(S.data[lo * zeta:hi * zeta].reshape(-1, zeta).T, counts, axis=1) * piece.data[None, :]
            cols = np.broadcast_to(piece.indices[None, :], rows.shape)
            out += sp.coo_matrix((values.ravel(), (rows.ravel(), cols.ravel())), shape=out.shape).toarray()
        return out

    @property
    def matrix(self) -> sp.csc_matrix:
        """The whole d x m matrix (for inspection and tests; O(m zeta) memory)."""
        chunks = [self._chunk(i) for i in range((self.m - 1) // SPARSE_CHUNK + 1)]
        return sp.hstack(chunks, format="csc")


def sparse_sign(m: int, d: int, zeta: int, rng: np.random.Generator) -> SparseSign:
    """Sparse sign embedding with ``zeta`` nonzeros per column, one per band of ``d // zeta`` rows.

    ``zeta = 1`` is CountSketch. ``zeta`` is clipped to [1, d].
    """
    return SparseSign(m, d, zeta, rng)


def sampling_sketch(probabilities: np.ndarray, d: int, rng: np.random.Generator) -> SparseEmbedding:
    """Independent (Bernoulli) row sampling: keep row i with probability q_i = min(1, d p_i), weight 1/sqrt(q_i).

    Then E[S^T S] = I, no row is drawn twice, rows with q_i = 1 (high leverage) are always kept,
    and the expected number of rows is sum(q) <= d. The realised count is ``S.d``. With d >= m every
    row is kept (S = I).
    """
    m = probabilities.size
    q = np.ones(m) if d >= m else np.minimum(1.0, d * probabilities)
    picked = np.flatnonzero(rng.random(m) < q)
    weights = 1.0 / np.sqrt(q[picked])
    matrix = sp.csc_matrix((weights, (np.arange(picked.size), picked)), shape=(picked.size, m))
    return SparseEmbedding("leverage", matrix)


def leverage_probabilities(scores: np.ndarray, uniform_weight: float = 0.1) -> np.ndarray:
    """Mix normalised leverage-score estimates with the uniform distribution (guards against misestimates)."""
    m = scores.size
    total = scores.sum()
    lev = scores / total if total > 0 else np.full(m, 1.0 / m)
    p = (1.0 - uniform_weight) * lev + uniform_weight / m
    return p / p.sum()


def make_sketch(kind: str, m: int, d: int, rng: np.random.Generator, *, zeta: int = 4,
                row_scores: Callable[[SparseSign], np.ndarray] | None = None, min_rows: int = 1):
    """Build a sketch of kind ``kind`` (one of :data:`SKETCH_KINDS`) mapping R^m to R^d.

    ``row_scores`` is needed for ``leverage``: given a sparse-sign pre-sketch it returns approximate
    leverage scores of the m rows (shape (m,), non-negative). Leverage sampling keeps about d rows
    (a random number, at least ``min_rows`` unless m is reached): read the realised size from ``.d``.
    """
    if kind == "countsketch":
        return sparse_sign(m, d, 1, rng)
    if kind == "sparse-sign":
        return sparse_sign(m, d, zeta, rng)
    if kind == "srht":
        return SRHT(m, d, rng)
    if kind == "gaussian":
        return GaussianSketch(m, d, rng)
    if kind == "leverage":
        if row_scores is None:
            raise ValueError("leverage sampling needs a row_scores callable")
        p = leverage_probabilities(row_scores(sparse_sign(m, d, zeta, rng)))
        target = d
        while True:
            S = sampling_sketch(p, target, rng)
            # a sample with fewer rows than requested columns cannot embed; ask for more rows
            if S.d >= min_rows or target >= m:
                return S
            target = min(m, 2 * target)
    raise ValueError(f"unknown sketch {kind!r}; choose one of {', '.join(SKETCH_KINDS)}")
