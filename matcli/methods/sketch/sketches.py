"""Random sketching operators S (d x m) for tall matrices, applied in about one pass over the rows.

Every sketch offers

* ``apply(X)``: ``S @ X`` for ``X`` of shape (m,) or (m, k), dense or scipy.sparse; returns a dense
  array of shape (d,) or (d, k).
* ``apply_rows(X_block, start)``: the contribution ``S[:, start:start+len] @ X_block`` of a block of
  consecutive rows, so a sketch can be accumulated while streaming a file (all but SRHT).

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

SKETCH_KINDS = ("countsketch", "sparse-sign", "srht", "gaussian", "leverage")
STREAMABLE_KINDS = ("countsketch", "sparse-sign", "gaussian", "leverage")

#: Rows of a Gaussian sketch generated from one seed; fixing it makes the sketch independent of
#: how the rows are blocked when streaming.
_GAUSSIAN_CHUNK = 8192
#: Columns of a sparse sign sketch generated from one seed.
_SPARSE_CHUNK = 65536
#: Columns transformed together by the SRHT (bounds its temporary memory to m x 64 numbers).
_SRHT_COLUMNS = 64


def _as_dense(Y) -> np.ndarray:
    return Y.toarray() if sp.issparse(Y) else np.asarray(Y)


class SparseEmbedding:
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


class SRHT:
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
        for j0 in range(0, k, _SRHT_COLUMNS):
            j1 = min(k, j0 + _SRHT_COLUMNS)
            out[:, j0:j1] = self._transform(_as_dense(X2[:, j0:j1]).astype(np.float64, copy=False))
        return out[:, 0] if vector else out

    def apply_rows(self, X_block, start: int) -> np.ndarray:
        raise ValueError("the SRHT mixes all rows and cannot be accumulated from row blocks")


class GaussianSketch:
    """Dense Gaussian sketch with N(0, 1/d) entries, regenerated from per-chunk seeds on demand."""

    kind = "gaussian"

    def __init__(self, m: int, d: int, rng: np.random.Generator):
        self.m, self.d = m, d
        self.seed = int(rng.integers(0, 2**63 - 1))
        self.scale = 1.0 / math.sqrt(d)

    def _chunk(self, index: int) -> np.ndarray:
        rows = min(_GAUSSIAN_CHUNK, self.m - index * _GAUSSIAN_CHUNK)
        return np.random.default_rng([self.seed, index]).standard_normal((self.d, rows)) * self.scale

    def apply_rows(self, X_block, start: int) -> np.ndarray:
        stop = start + X_block.shape[0]
        out = np.zeros((self.d,) + X_block.shape[1:])
        first, last = start // _GAUSSIAN_CHUNK, (stop - 1) // _GAUSSIAN_CHUNK
        for index in range(first, last + 1):
            c0 = index * _GAUSSIAN_CHUNK
            lo, hi = max(start, c0), min(stop, c0 + _GAUSSIAN_CHUNK)
            G = self._chunk(index)[:, lo - c0:hi - c0]
            out += _as_dense(G @ X_block[lo - start:hi - start])
        return out

    def apply(self, X) -> np.ndarray:
        return self.apply_rows(X, 0)


class SparseSign:
    """Sparse sign embedding (``zeta = 1``: CountSketch), generated chunk by chunk of columns.

    Columns ``[c * CHUNK, (c + 1) * CHUNK)`` of S come from the seed ``(seed, c)``, so the sketch is
    the same however the rows of A are blocked, and only one chunk of S exists at a time
    (O(CHUNK zeta) memory instead of O(m zeta)).
    """

    def __init__(self, m: int, d: int, zeta: int, rng: np.random.Generator):
        self.m, self.d = m, d
        self.zeta = max(1, min(int(zeta), d))
        self.kind = "countsketch" if self.zeta == 1 else "sparse-sign"
        self.seed = int(rng.integers(0, 2**63 - 1))

    def _chunk(self, index: int) -> sp.csc_matrix:
        start = index * _SPARSE_CHUNK
        cols = min(_SPARSE_CHUNK, self.m - start)
        zeta, band = self.zeta, self.d // self.zeta
        gen = np.random.default_rng([self.seed, index])
        rows = gen.integers(0, band, size=(cols, zeta), dtype=np.int32)
        rows += (np.arange(zeta, dtype=np.int32) * band)[None, :]
        signs = gen.integers(0, 2, size=(cols, zeta)).astype(np.float64)
        signs = (2.0 * signs - 1.0) / math.sqrt(zeta)
        indptr = np.arange(0, cols * zeta + 1, zeta, dtype=np.int64 if cols * zeta >= 2**31 else np.int32)
        return sp.csc_matrix((signs.ravel(), rows.ravel(), indptr), shape=(self.d, cols))

    def apply_rows(self, X_block, start: int) -> np.ndarray:
        stop = start + X_block.shape[0]
        out = np.zeros((self.d,) + X_block.shape[1:])
        for index in range(start // _SPARSE_CHUNK, (stop - 1) // _SPARSE_CHUNK + 1):
            c0 = index * _SPARSE_CHUNK
            lo, hi = max(start, c0), min(stop, c0 + _SPARSE_CHUNK)
            S = self._chunk(index)[:, lo - c0:hi - c0]
            # CSC @ X streams over the columns of S, i.e. once over the rows of X
            out += _as_dense(S @ X_block[lo - start:hi - start])
        return out

    def apply(self, X) -> np.ndarray:
        return self.apply_rows(X, 0)

    @property
    def matrix(self) -> sp.csc_matrix:
        """The whole d x m matrix (for inspection and tests; O(m zeta) memory)."""
        chunks = [self._chunk(i) for i in range((self.m - 1) // _SPARSE_CHUNK + 1)]
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
