"""``sketch-regress --backend dask``: every pass over A is a map over row blocks that the workers read.

:class:`DistributedRowProblem` offers the operations of
:class:`matcli.methods.sketch.regress.InMemoryProblem` (sketch, (A v, A^T A v), residual and
gradient, row norms of A M) with its range-side vectors (length m) left on the workers
(:class:`RowVector`, :class:`WorkerVectors`), so the kernels run unchanged on the client and only
n-vectors and scalars cross the network during CGLS. A task names its blocks of A
(:class:`matcli.io.row_blocks.RowBlock` of a :class:`~matcli.io.row_blocks.RowBlockSource`: a spec and
two row numbers) and receives the small operands by value (the n-vector x, alpha, the sketch's
seed); the worker opens the file or takes the rows it holds, and per block computes

* for the sketch: ``S[:, rows] A_rows`` (d x n; S is a chunked sketch drawn from its seed, so only
  the seed travels; ``S b`` is formed on the client); the d x n sums are added on the workers along
  runs of consecutive blocks (:func:`add_run`), the running sum passed from run to run;
* for a product pass: ``t = A_rows x`` or ``b_rows - A_rows x`` (b's slices kept beside the blocks,
  sent once), ``A_rows^T t`` and ``t . t``; t stays on the worker as the block's slice of ``A p`` or
  of r, and CGLS's update ``r - alpha q`` is a task on the same worker returning ``r . r``.

One task per group and pass: a group is the blocks one worker holds (or a run of the blocks read
from the file), but every block's numbers are its own, and the client adds the blocks' n-vectors
and scalars **in block order**. The blocks are cut from the size of A alone (:func:`plan_blocks`),
never from the number of workers, so the same seed gives the same bits on any cluster. Every kept
vector is a Dask future whose task names its inputs (blocks, the previous vectors, x, alpha), so a
lost worker's blocks are read again and its vectors recomputed from them by Dask, with the same
bits.

Blocks held on the workers: reading a block is what a pass costs (a Zarr chunk is decompressed
again on every read: ~2-3 s a GB on one core, against ~0.1 s a GB for the block's products), so
on a backend that can keep results on its workers (:meth:`matcli.backends.dask.DaskBackend.resident`)
each block is read once, by a :func:`hold_rows` task placed on a worker in turn, and later passes
take the block's future instead of its reference: Dask runs them where the rows are. The workers
keep as many blocks as fit beside a task's working copies and their share of the vectors under the
budget (:func:`holding_plan`); every pass reads the others from the file again. A worker lost
meanwhile takes its blocks with it; Dask runs their :func:`hold_rows` tasks again elsewhere (the
survivors then hold more than their share until the run ends).
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
#: Bytes of a dense block's rows that a product pass multiplies at a time (they stay in cache).
TILE_BYTES = 2**20
#: m-vectors a worker keeps its slices of at once during CGLS (b, r, A p, the next r, a residual).
KEPT_VECTORS = 5
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


def hold_rows(block: RowBlock, *, source: RowBlockSource):
    """Task whose result a worker keeps: the block's rows as :func:`read_rows` gives them."""
    return read_rows(source, block)


def held_bytes(source: RowBlockSource, block: RowBlock) -> int:
    """An upper bound on the bytes of :func:`read_rows`'s result for ``block``: dense rows in double
    precision; CSR values, int64 indices and row pointer, its entries bounded by the sampled
    ``indptr`` at the sample rows around the block."""
    itemsize = 16 if source.dtype.kind == "c" else 8
    if source.layout != "csr":
        return block.n_rows * source.n_cols * itemsize
    nnz = source.nnz
    if source.indptr_sample is not None:
        rows, pointer = (np.asarray(v, dtype=np.int64) for v in source.indptr_sample)
        lo = max(int(np.searchsorted(rows, block.start, side="right")) - 1, 0)
        hi = min(int(np.searchsorted(rows, block.stop, side="left")), rows.size - 1)
        nnz = int(pointer[hi] - pointer[lo])
    return nnz * (itemsize + 8) + 8 * (block.n_rows + 1)


def holding_plan(source: RowBlockSource, blocks: list[RowBlock], workers: int, worker_bytes: int,
                 budget: int) -> tuple[int, dict]:
    """How many blocks the workers may keep: the most k such that the first k blocks, spread in
    equal runs over the workers (block i on worker ``i * workers // k``, as
    :meth:`DaskBackend.resident`'s spread places them), leave every worker within ``budget`` with
    what the fullest worker already takes (``worker_bytes``) and a task's working copies of the
    largest block (as :func:`plan_blocks` counts them). The other blocks are read on every pass.
    Returns (k, the facts)."""
    sizes = [held_bytes(source, block) for block in blocks]
    workers = max(workers, 1)
    chunk = 8 * source.chunk_rows * max(1, source.nnz // max(1, source.n_rows))
    working = BLOCK_COPIES * max(sizes) + 2 * chunk
    allowance = budget - worker_bytes - working

    def fullest(k: int) -> int:
        shares = [0] * workers
        for index in range(k):
            shares[index * workers // k] += sizes[index]
        return max(shares)

    low, high = 0, len(blocks)  # fullest(low) fits; search the largest k that fits
    while low < high:
        middle = (low + high + 1) // 2
        if fullest(middle) <= allowance:
            low = middle
        else:
            high = middle - 1
    return low, {"workers": workers, "blocks_held": low, "blocks": len(blocks),
                 "held_bytes_per_worker": fullest(low), "worker_baseline_bytes": worker_bytes,
                 "task_bytes": working, "budget_bytes": budget}


def _rows(source: RowBlockSource, block: RowBlock, held):
    """The block's rows: ``held`` (a worker's copy) or read from the file."""
    if held is None:
        return read_rows(source, block)
    if sp.issparse(held):
        return held
    # A block that moved between workers arrives at whatever address its message buffer had, and
    # BLAS kernels round differently at other alignments; a fresh array has a read's alignment.
    fresh = np.empty_like(held)
    if fresh.ctypes.data % 64 == held.ctypes.data % 64:
        return held
    fresh[...] = held
    return fresh


def sketch_group(item: tuple, *, source: RowBlockSource, S) -> tuple[list, None]:
    """``S[:, rows] A_rows`` for each block of a group ``item = (rows held or None, blocks, _)``,
    kept on the worker."""
    held, blocks, _ = item
    return [S.apply_rows(_rows(source, block, rows), block.start) for block, rows in zip(blocks, held)], None


def add_run(item: tuple) -> tuple[np.ndarray, None]:
    """The running sum of the blocks' sketches continued over a run of consecutive blocks of one
    group, ``item = (the group's sketches, the sum so far or None, the run's positions in the
    group)``: ``total += S_i A_i`` in block order, as :meth:`DistributedRowProblem._in_order` adds
    them, so the d x n sum travels once per run instead of every block's sketch once."""
    parts, total, positions = item
    total = parts[positions[0]].copy() if total is None else total.copy()
    for position in positions[1 if item[1] is None else 0:]:
        total += parts[position]
    return total, None


def _aligned(vector: np.ndarray) -> np.ndarray:
    """``vector``, copied to a fresh array's alignment when it arrived at another one (see :func:`_rows`)."""
    fresh = np.empty_like(vector)
    if fresh.ctypes.data % 64 == vector.ctypes.data % 64:
        return vector
    fresh[...] = vector
    return fresh


def _block_products(A, x: np.ndarray, b_rows: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """``(t, A^T t)`` with ``t = A x`` (``b_rows`` None) or ``b_rows - A x``, one read of A's rows."""
    if isinstance(A, np.ndarray) and A.dtype == np.float64:
        return _tiled_products(A, x, b_rows)
    t = np.asarray(A @ x, dtype=np.float64)
    if b_rows is not None:
        t = b_rows - t
    return t, np.asarray(A.T @ t)


def _group_products(item: tuple, source: RowBlockSource, x: np.ndarray) -> tuple[list, list, list]:
    """Per block of a group ``item = (rows held or None per block, blocks, b's slices or None)``:
    ``t``, ``A_rows^T t`` and ``t . t`` (see :func:`_block_products`)."""
    held, blocks, b_parts = item
    ts, gradients, squares = [], [], []
    for index, (block, rows) in enumerate(zip(blocks, held)):
        b_rows = None if b_parts is None else _aligned(b_parts[index])
        t, g = _block_products(_rows(source, block, rows), x, b_rows)
        ts.append(t)
        gradients.append(g)
        squares.append(float(t @ t))
    return ts, gradients, squares


def products_group(item: tuple, *, source: RowBlockSource, x: np.ndarray) -> tuple[list, list]:
    """A worker's pass over its group of blocks: per block ``(A_rows^T t, t . t)`` (see
    :func:`_group_products`); t is dropped."""
    _, gradients, squares = _group_products(item, source, x)
    return gradients, squares


def kept_products_group(item: tuple, *, source: RowBlockSource, x: np.ndarray) -> tuple[list, tuple[list, list]]:
    """:func:`products_group` keeping t: ``(t per block, (A_rows^T t, t . t) per block)``; the
    first stays on the worker (:meth:`DaskBackend.keep`)."""
    ts, gradients, squares = _group_products(item, source, x)
    return ts, (gradients, squares)


def subtract_group(item: tuple, *, alpha: float) -> tuple[list, list]:
    """``r - alpha q`` per block of a group, ``item = (r's slices, q's slices)``, kept on the worker,
    and its ``r . r`` per block."""
    r_parts, q_parts = item
    out = [_aligned(r) - alpha * _aligned(q) for r, q in zip(r_parts, q_parts)]
    return out, [float(v @ v) for v in out]


def keep_slices(item: tuple) -> tuple[list, None]:
    """b's slices of a group, ``item = (rows held, slices)``, kept on the worker."""
    return list(item[1]), None


def _tiled_products(A: np.ndarray, x: np.ndarray, b_rows: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """``(t, A^T t)`` tile by tile of :data:`TILE_BYTES`: each tile of rows is still in cache when
    it multiplies its slice of t, so A is read from memory once per pass instead of twice
    (measured on 86016 x 100: 15 ms against 24 ms with A x and A^T t apart). The tiles depend on
    the number of columns only, so the sum's rounding is the same on every worker."""
    rows = max(1, TILE_BYTES // (8 * A.shape[1]))
    t = np.empty(A.shape[0])
    g = np.zeros(A.shape[1])
    for start in range(0, A.shape[0], rows):
        tile = A[start:start + rows]
        part = tile @ x
        if b_rows is not None:
            part = b_rows[start:start + rows] - part
        t[start:start + rows] = part
        g += tile.T @ part
    return t, g


def r_factor_block(task: tuple[RowBlock, object, np.ndarray], *, source: RowBlockSource) -> np.ndarray:
    """The R factor of ``[A_rows b_rows]`` (TSQR's first level)."""
    from matcli.methods.sketch.tsqr import block_r_factor

    block, held, b_rows = task
    return block_r_factor(_rows(source, block, held), b_rows)


def row_norms_block(task: tuple[RowBlock, object], *, source: RowBlockSource, M: np.ndarray) -> np.ndarray:
    """Squared row norms of ``A_rows M``."""
    block, held = task
    AM = np.asarray(_rows(source, block, held) @ M)
    return np.einsum("ij,ij->i", AM, AM)


class RowVector:
    """A range-side vector (m numbers, ``[v; tail]`` with ridge) of a :class:`DistributedRowProblem`.

    ``parts``: per group of blocks (:meth:`DistributedRowProblem._groups`), the list of its blocks'
    slices, kept where the group's tasks run (a future on Dask, the list itself on a backend
    without ``keep``); ``head2``: the squared norm of those m numbers, the blocks' sums added in
    block order; ``tail``: the n-vector of the ridge rows, or None. Immutable.
    """

    __slots__ = ("parts", "head2", "tail")

    def __init__(self, parts: list, head2: float, tail: np.ndarray | None = None):
        self.parts, self.head2, self.tail = parts, head2, tail

    @property
    def norm2(self) -> float:
        return self.head2 + (float(self.tail @ self.tail) if self.tail is not None else 0.0)


class WorkerVectors:
    """The ``vectors`` of a :class:`DistributedRowProblem` (the operations of
    :class:`matcli.methods.sketch.regress.ArrayVectors` on :class:`RowVector`): an update
    ``r - alpha q`` is one task per group, on the workers holding both; norms come with the
    vectors, so only scalars and n-vectors cross the network."""

    def __init__(self, problem: "DistributedRowProblem"):
        self.problem = problem

    @staticmethod
    def copy(v: RowVector) -> RowVector:
        return v

    @staticmethod
    def norm(v: RowVector) -> float:
        return math.sqrt(v.norm2)

    @staticmethod
    def norm2(v: RowVector) -> float:
        return v.norm2

    def subtract(self, r: RowVector, alpha: float, q: RowVector) -> RowVector:
        """``r - alpha q`` (a new vector; r's parts are released when r is)."""
        parts, squares = self.problem._keep(subtract_group, list(zip(r.parts, q.parts)), alpha=alpha)
        total = 0.0
        for value in self.problem._by_block(squares):
            total += value
        tail = None if r.tail is None else r.tail - alpha * q.tail
        return RowVector(parts, total, tail)

    @staticmethod
    def stack(v: RowVector, tail: np.ndarray) -> RowVector:
        return RowVector(v.parts, v.head2, tail)

    def array(self, v: RowVector) -> np.ndarray:
        """The m numbers of v (without the tail), gathered here."""
        client = getattr(self.problem.backend, "client", None)
        parts = client.gather(v.parts) if hasattr(self.problem.backend, "keep") else v.parts
        return np.concatenate(self.problem._by_block(parts)) if parts else np.empty(0)


class DistributedRowProblem:
    """``min ||A x - b||`` with A (m x n) read by a backend's workers in fixed row blocks.

    Parameters
    ----------
    backend : :class:`matcli.backends.Backend` whose ``map`` runs the passes (and, on Dask,
        ``resident`` / ``keep`` leave blocks and vectors on the workers; on other backends the
        kept parts are values of this process).
    source : the row-block reference to A.
    b : (m,) float64, the right-hand side (its slices go to the workers once).
    blocks : the row blocks of A, in order, covering every row once (:func:`plan_blocks`).
    hold : keep blocks on the workers as far as :func:`holding_plan` allows (a backend with
        ``resident``); False: read them all from the file on every pass.

    ``passes`` counts the passes that read the file (as the streaming mode's, whose every pass
    does), ``passes_over_A`` every pass; :meth:`describe` says where the blocks were.
    """

    streaming = True

    def __init__(self, backend, source: RowBlockSource, b: np.ndarray, blocks: list[RowBlock], *,
                 hold: bool = True):
        self.backend, self.source, self.blocks = backend, source, blocks
        self.shape = (source.n_rows, source.n_cols)
        self.sparse = source.layout == "csr"
        self.b = np.asarray(b, dtype=np.float64).reshape(-1)
        self.b_norm = float(np.linalg.norm(self.b))
        self.passes = 0
        self.passes_over_A = 0
        #: per block, the future of its rows on a worker (None: read from the file)
        self.held: list = [None] * len(blocks)
        self._group_list: list[list[int]] | None = None
        self._b_kept: list | None = None
        self.vectors = WorkerVectors(self)
        self.holding: dict = {"row_blocks_held": "none: every pass reads the file (the backend keeps "
                                                 "nothing between passes)"}
        if hold and hasattr(backend, "resident") and getattr(backend, "client", None) is not None:
            self._hold()

    def _hold(self) -> None:
        """Keep as many blocks on the workers as :func:`holding_plan` allows (one read of them)."""
        from matcli.core.timing import resident_memory_bytes

        client = self.backend.client
        workers = len(client.nthreads())
        # beside its blocks, a worker keeps its share of the CGLS vectors (b, r, A p, the next r, a
        # residual being formed), and during the sketch its blocks' d x n sketches until they are
        # added up (d as the streaming default gives it)
        from matcli.methods.sketch.regress import STREAMING_SKETCH_FACTOR

        share = math.ceil(len(self.blocks) / max(workers, 1))
        n = self.shape[1]
        sketches = 8 * share * min(self.shape[0], STREAMING_SKETCH_FACTOR * n + 8) * n
        vectors = 8 * KEPT_VECTORS * math.ceil(self.shape[0] / max(workers, 1))
        taken = max(client.run(resident_memory_bytes).values(), default=0) + max(vectors, sketches)
        count, facts = holding_plan(self.source, self.blocks, workers, taken, self.source.policy.budget)
        self.holding = {"holding_plan": facts}
        if count == 0:
            self.holding["row_blocks_held"] = (
                f"none: every pass reads the file (one block with what a worker holds and a task's copies "
                f"exceeds the budget of {facts['budget_bytes'] / 2**20:.0f} MiB)")
            return
        held = self.backend.resident(hold_rows, [(block,) for block in self.blocks[:count]], spread=True,
                                     source=self.source)
        self.passes += 1
        # Dask balances its queues: a worker that finished early may have read another's blocks. A
        # block beyond its holder's allowance is dropped (read on every pass instead).
        allowance = facts["budget_bytes"] - facts["worker_baseline_bytes"] - facts["task_bytes"]
        where = client.who_has(held)
        used: dict = {}
        for index, future in enumerate(held):
            holder = next(iter(where.get(future.key, ())), None)
            size = held_bytes(self.source, self.blocks[index])
            if used.get(holder, 0) + size <= allowance:
                used[holder] = used.get(holder, 0) + size
                self.held[index] = future
        count = sum(future is not None for future in self.held)
        facts.update(blocks_held=count, held_bytes_per_worker=max(used.values(), default=0))
        place = f"the memory of {workers} worker{'s' if workers > 1 else ''}"
        self.holding["row_blocks_held"] = (
            f"all {count}: read once, kept in {place}" if count == len(self.blocks) else
            f"{count} of {len(self.blocks)}: read once, kept in {place} "
            f"({facts['held_bytes_per_worker'] / 2**20:.0f} MiB each at most, what the budget of "
            f"{facts['budget_bytes'] / 2**20:.0f} MiB leaves); every pass reads the others")

    def describe(self) -> dict:
        """Facts for the report: passes over A, passes that read the file, where the blocks were."""
        return {"passes_over_A": self.passes_over_A, "passes_over_file": self.passes, **self.holding}

    def _map(self, fn, items, **shared) -> list:
        self.passes_over_A += 1
        if any(held is None for held in self.held):
            self.passes += 1
        return self.backend.map(fn, items, source=self.source, **shared)

    @staticmethod
    def _in_order(parts: list[np.ndarray]) -> np.ndarray:
        total = parts[0].copy()
        for part in parts[1:]:
            total += part
        return total

    def _tasks(self, with_b: bool = False) -> list[tuple]:
        if not with_b:
            return list(zip(self.blocks, self.held))
        return [(block, held, self.b[block.start:block.stop]) for block, held in zip(self.blocks, self.held)]

    def sketch(self, S) -> tuple[np.ndarray, np.ndarray]:
        """``(S A, S b)``: the blocks' sketches summed in block order (on the workers, along the runs
        of consecutive blocks each group holds); ``S b`` here."""
        self._count_pass()
        parts, _ = self._keep(sketch_group, self._items(None), source=self.source, S=S)
        where = {index: (g, position) for g, group in enumerate(self._groups())
                 for position, index in enumerate(group)}
        runs: list[tuple[int, list[int]]] = []
        for index in range(len(self.blocks)):
            g, position = where[index]
            if runs and runs[-1][0] == g:
                runs[-1][1].append(position)
            else:
                runs.append((g, [position]))
        total = None
        for g, positions in runs:
            total = self._keep(add_run, [(parts[g], total, positions)])[0][0]
        client = getattr(self.backend, "client", None)
        SA = client.gather(total) if hasattr(self.backend, "keep") else total
        return SA, S.apply(self.b)

    def _groups(self) -> list[list[int]]:
        """The blocks in groups, one task per group and pass: the blocks a worker holds (one group
        per holder), and the blocks read from the file in equal runs over the workers; each group in
        block order. The grouping follows the cluster, the arithmetic does not: every block's
        results are its own and the client adds them up in block order."""
        if self._group_list is None:
            client = getattr(self.backend, "client", None)
            workers = len(client.nthreads()) if client is not None else 1
            futures = [future for future in self.held if future is not None]
            where = client.who_has(futures) if futures else {}
            read = [index for index, future in enumerate(self.held) if future is None]
            run_of = {index: rank * workers // len(read) for rank, index in enumerate(read)}
            groups: dict = {}
            for index, future in enumerate(self.held):
                # the blocks read from the file are cut into one run per worker among themselves: cut
                # over all blocks, a tail of unheld blocks would be one run, read by one worker
                key = ("held", next(iter(where.get(future.key, ())), None)) if future is not None else \
                    ("read", run_of[index])
                groups.setdefault(key, []).append(index)
            self._group_list = list(groups.values())
        return self._group_list

    def _items(self, b_parts: list | None) -> list[tuple]:
        """Per group: (its held rows, its blocks, b's slices kept beside them or None)."""
        return [(tuple(self.held[i] for i in group), tuple(self.blocks[i] for i in group),
                 None if b_parts is None else b_parts[g]) for g, group in enumerate(self._groups())]

    def _keep(self, fn, items: list, **shared) -> tuple[list, list]:
        """``fn`` over the groups' items, each returning (kept, reported): the kept parts stay where
        they were computed (futures on a backend with ``keep``, values here otherwise)."""
        if hasattr(self.backend, "keep"):
            return self.backend.keep(fn, items, **shared)
        out = self.backend.map(fn, items, **shared)
        return [part[0] for part in out], [part[1] for part in out]

    def _count_pass(self) -> None:
        self.passes_over_A += 1
        if any(held is None for held in self.held):
            self.passes += 1

    def _by_block(self, per_group: list[list]) -> list:
        """The groups' per-block results, in block order."""
        out: list = [None] * len(self.blocks)
        for group, values in zip(self._groups(), per_group):
            for index, value in zip(group, values):
                out[index] = value
        return out

    def _reduce(self, reported: list[tuple[list, list]]) -> tuple[np.ndarray, float]:
        """(sum of the blocks' n-vectors, sum of their squares), both added in block order."""
        gradients = self._by_block([part[0] for part in reported])
        squares = self._by_block([part[1] for part in reported])
        total = 0.0
        for value in squares:
            total += value
        return self._in_order(gradients), total

    def _b_parts(self) -> list:
        """b's slices, per group, kept beside the group's blocks (sent once)."""
        if self._b_kept is None:
            items = [(tuple(self.held[i] for i in group), [self.b[self.blocks[i].start:self.blocks[i].stop]
                                                          for i in group]) for group in self._groups()]
            self._b_kept = self._keep(keep_slices, items)[0]
        return self._b_kept

    def _products(self, x: np.ndarray, residual: bool) -> tuple[RowVector, np.ndarray]:
        self._count_pass()
        items = self._items(self._b_parts() if residual else None)
        parts, reported = self._keep(kept_products_group, items, source=self.source,
                                     x=np.asarray(x, dtype=np.float64))
        gradient, squares = self._reduce(reported)
        return RowVector(parts, squares), gradient

    def normal_product(self, x: np.ndarray) -> tuple[RowVector, np.ndarray]:
        """``(A x, A^T A x)`` in one pass; ``A x`` stays on the workers (a :class:`RowVector`)."""
        return self._products(x, False)

    def residual_vector(self, x: np.ndarray) -> tuple[RowVector, np.ndarray]:
        """``(r, A^T r)`` with ``r = b - A x`` in one pass; r stays on the workers."""
        return self._products(x, True)

    def residual_norm_and_gradient(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        """``(||r||, A^T r)`` with ``r = b - A x`` in one pass (the certificate's); r is not kept."""
        self._count_pass()
        reported = self.backend.map(products_group, self._items(self._b_parts()), source=self.source,
                                    x=np.asarray(x, dtype=np.float64))
        gradient, squares = self._reduce(reported)
        return math.sqrt(squares), gradient

    def residual_and_gradient(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(r, A^T r)`` with ``r = b - A x`` in one pass, r gathered here (m numbers)."""
        r, gradient = self.residual_vector(x)
        return self.vectors.array(r), gradient

    def residual(self, x: np.ndarray) -> np.ndarray:
        return self.residual_and_gradient(x)[0]

    def r_factors(self) -> list[np.ndarray]:
        """The blocks' R factors of ``[A_rows b_rows]``, in block order (one pass)."""
        return self._map(r_factor_block, self._tasks(with_b=True))

    def row_norms2(self, M: np.ndarray) -> np.ndarray:
        return np.concatenate(self._map(row_norms_block, self._tasks(), M=np.asarray(M, dtype=np.float64)))
