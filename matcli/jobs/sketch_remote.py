"""``sketch-regress --backend dask``: every pass over A is a map over row blocks that the workers read.

:class:`DistributedRowProblem` offers the operations of
:class:`matcli.methods.sketch.regress.InMemoryProblem` (sketch, A v, (A v, A^T A v), residual and
gradient, row norms of A M), so the kernels run unchanged on the client. A task names its block of A
(:class:`matcli.io.row_blocks.RowBlock` of a :class:`~matcli.io.row_blocks.RowBlockSource`: a spec and
two row numbers) and receives the small operands by value (the n-vector x, the sketch's seed); the
worker opens the file, reads its rows under the client's input policy and returns

* for the sketch: ``S[:, rows] A_rows`` (d x n; S is a chunked sketch drawn from its seed, so only
  the seed travels; ``S b`` is formed on the client);
* for a product pass: ``t = A_rows x`` (or ``b_rows - A_rows x``, the block's slice of b sent with
  the task: residual passes are the few that recompute the residual from A, not every iteration)
  and ``A_rows^T t`` (n numbers).

The client holds b and the vectors of length m (as the single-machine streaming mode does), sums the
blocks' n-vectors and d x n sketches **in block order**, and factors the sketch. The blocks are cut
from the size of A alone (:func:`plan_blocks`), never from the number of workers, so the same seed
gives the same bits on any cluster; a lost worker's blocks are read again by another (the task
holds only references).
"""

from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp

from matcli.io.row_blocks import RowBlock, RowBlockSource

#: Largest bytes of A (as float64) per task: large enough that a task's scheduling overhead (~ms) is
#: small beside its read, small enough that a worker holds a block, its conversion and its products.
BLOCK_BYTES = 64 * 2**20
#: Smallest block, whatever the budget.
MIN_BLOCK_BYTES = 2**20
#: Copies of a block a task holds at once (as read, as float64, [A_i b_i] and its QR workspace).
BLOCK_COPIES = 6
#: Fewest blocks when A has the rows for them, so a small problem still spreads over a few workers.
MIN_BLOCKS = 8
#: Most blocks: the client holds one reference (and, for TSQR, one R factor) per block; beyond this
#: a block grows past the size above, and its read is checked against the budget.
MAX_BLOCKS = 4096


def plan_blocks(source: RowBlockSource, free_bytes: int | None = None) -> list[RowBlock]:
    """Row blocks of A fixed by its size and the memory a task may use (stored entries as float64
    over the block size, at least :data:`MIN_BLOCKS`), independent of the cluster.

    ``free_bytes``: what the budget leaves a process for a task's blocks (the run's budget minus
    what the process holds); a block then takes at most 1/:data:`BLOCK_COPIES` of it.
    """
    # a block read decodes whole storage chunks: two of them may be held beside the block's copies
    chunk = 8 * source.chunk_rows * max(1, source.nnz // max(1, source.n_rows))
    size = BLOCK_BYTES if free_bytes is None else \
        max(MIN_BLOCK_BYTES, min(BLOCK_BYTES, (free_bytes - 2 * chunk) // BLOCK_COPIES))
    wanted = min(MAX_BLOCKS, max(MIN_BLOCKS, math.ceil(8 * max(source.nnz, 1) / size)))
    return source.blocks(max(1, min(wanted, source.n_rows)))


def read_rows(source: RowBlockSource, block: RowBlock):
    """Rows of a block in double precision (float64, or complex128 for a complex source), dense or
    CSR, read under the source's input policy."""
    A = source.read(block)
    dtype = np.complex128 if source.dtype.kind == "c" else np.float64
    return A.tocsr().astype(dtype, copy=False) if sp.issparse(A) else np.asarray(A, dtype=dtype)


def sketch_block(block: RowBlock, *, source: RowBlockSource, S) -> np.ndarray:
    """``S[:, rows] A_rows`` for one block (a worker's task)."""
    return S.apply_rows(read_rows(source, block), block.start)


def product_block(task: tuple[RowBlock, np.ndarray | None], *, source: RowBlockSource, x: np.ndarray,
                  gradient: bool) -> tuple:
    """``(t, A_rows^T t)`` for ``task = (block, b_rows)``: ``t = A_rows x`` (``b_rows`` None) or
    ``b_rows - A_rows x``; the second is None unless ``gradient``."""
    block, b_rows = task
    A = read_rows(source, block)
    t = np.asarray(A @ x, dtype=np.float64)
    if b_rows is not None:
        t = b_rows - t
    return t, (np.asarray(A.T @ t) if gradient else None)


def r_factor_block(task: tuple[RowBlock, np.ndarray], *, source: RowBlockSource) -> np.ndarray:
    """The R factor of ``[A_rows b_rows]`` (TSQR's first level)."""
    from matcli.methods.sketch.tsqr import block_r_factor

    block, b_rows = task
    return block_r_factor(read_rows(source, block), b_rows)


def row_norms_block(block: RowBlock, *, source: RowBlockSource, M: np.ndarray) -> np.ndarray:
    """Squared row norms of ``A_rows M``."""
    AM = np.asarray(read_rows(source, block) @ M)
    return np.einsum("ij,ij->i", AM, AM)


class DistributedRowProblem:
    """``min ||A x - b||`` with A (m x n) read by a backend's workers in fixed row blocks.

    Parameters
    ----------
    backend : :class:`matcli.backends.Backend` whose ``map`` runs the passes.
    source : the row-block reference to A.
    b : (m,) float64, the right-hand side, held by the client.
    blocks : the row blocks of A, in order, covering every row once (:func:`plan_blocks`).
    """

    streaming = True

    def __init__(self, backend, source: RowBlockSource, b: np.ndarray, blocks: list[RowBlock]):
        self.backend, self.source, self.blocks = backend, source, blocks
        self.shape = (source.n_rows, source.n_cols)
        self.sparse = source.layout == "csr"
        self.b = np.asarray(b, dtype=np.float64).reshape(-1)
        self.b_norm = float(np.linalg.norm(self.b))
        self.passes = 0

    def _map(self, fn, items, **shared) -> list:
        self.passes += 1
        return self.backend.map(fn, items, source=self.source, **shared)

    @staticmethod
    def _in_order(parts: list[np.ndarray]) -> np.ndarray:
        total = parts[0].copy()
        for part in parts[1:]:
            total += part
        return total

    def sketch(self, S) -> tuple[np.ndarray, np.ndarray]:
        """``(S A, S b)``: the blocks' sketches summed in block order; ``S b`` here."""
        return self._in_order(self._map(sketch_block, self.blocks, S=S)), S.apply(self.b)

    def _pass(self, x: np.ndarray, residual: bool, gradient: bool) -> tuple[np.ndarray, np.ndarray | None]:
        tasks = [(block, self.b[block.start:block.stop] if residual else None) for block in self.blocks]
        parts = self._map(product_block, tasks, x=np.asarray(x, dtype=np.float64), gradient=gradient)
        t = np.concatenate([p[0] for p in parts])
        return t, (self._in_order([p[1] for p in parts]) if gradient else None)

    def matvec(self, v: np.ndarray) -> np.ndarray:
        return self._pass(v, False, False)[0]

    def normal_product(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(A x, A^T A x)`` in one pass."""
        return self._pass(x, False, True)

    def residual(self, x: np.ndarray) -> np.ndarray:
        return self._pass(x, True, False)[0]

    def residual_and_gradient(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(r, A^T r)`` with ``r = b - A x`` in one pass."""
        return self._pass(x, True, True)

    def r_factors(self) -> list[np.ndarray]:
        """The blocks' R factors of ``[A_rows b_rows]``, in block order (one pass)."""
        return self._map(r_factor_block, [(block, self.b[block.start:block.stop]) for block in self.blocks])

    def row_norms2(self, M: np.ndarray) -> np.ndarray:
        return np.concatenate(self._map(row_norms_block, self.blocks, M=np.asarray(M, dtype=np.float64)))
