"""Memory a sketched solve allocates besides A, so that a budget (``--max-memory``) can bound it.

Sizes in bytes, counted from what :mod:`matcli.methods.sketch.regress` keeps alive at its peak:

* float64 vectors of length m (:func:`vector_bytes`): b, the right-hand side of the current solve,
  the CGLS residual, and the product being formed beside the previous one; for leverage sampling,
  b and the row scores, their normalisations, probabilities and draws;
* the sketch (:func:`sketch_bytes`): the d x n sum ``S A``, per worker thread a d x n partial sum,
  a d x n product and (sparse A) the dense d x n piece being scattered, and the d x (n + 1) copy
  that the QR factorises;
* per worker thread, the working memory of applying the sketch (:func:`work_bytes`): a generated
  chunk of S, the scatter temporaries of a sparse A, or the SRHT's transformed column block.
"""

from __future__ import annotations

from matcli.methods.sketch import sketches

#: Length-m float64 vectors alive at once: in CGLS, and while sampling rows by leverage.
VECTORS_OF_M = {"cgls": 5, "leverage": 8}


def vector_bytes(m: int, kind: str = "auto") -> int:
    """Bytes of the length-m vectors a solve with a sketch of kind ``kind`` keeps (see above)."""
    return 8 * VECTORS_OF_M["leverage" if kind == "leverage" else "cgls"] * int(m)


def _nonzeros_per_column(kind: str, zeta: int) -> int:
    """Nonzeros per column of a sparse sign sketch of kind ``kind`` (auto: sparse sign's, the larger)."""
    return 1 if kind == "countsketch" else zeta


def scatter_bytes(kind: str, zeta: int = 4) -> int:
    """Bytes of temporaries per nonzero of a sparse A scattered into the sketch (0: no scatter)."""
    return 0 if kind in ("gaussian", "srht") else 16 * _nonzeros_per_column(kind, zeta)


def work_bytes(kind: str, m: int, d: int, *, zeta: int = 4, nnz: int | None = None) -> int:
    """Working memory of one thread applying a sketch of kind ``kind`` (``auto``: the larger of
    CountSketch and sparse sign) with d rows to an m-row matrix (``nnz``: a sparse one's nonzeros)."""
    if kind == "gaussian":
        return 8 * d * min(m, sketches.gaussian_chunk_columns(d))
    if kind == "srht":
        return 3 * 8 * m * sketches.SRHT_COLUMNS  # the signed block, its DCT and the sampled rows
    # sparse sign (also auto, countsketch, and the pre-sketch of leverage sampling): one generated
    # chunk (an int32 draw, a float64 value and an index per nonzero), plus the scatter of sparse rows
    work = 24 * _nonzeros_per_column(kind, zeta) * min(m, sketches.SPARSE_CHUNK)
    if nnz is not None:
        per_nonzero = scatter_bytes(kind, zeta)
        work += per_nonzero * min(int(nnz), sketches.SCATTER_BYTES // per_nonzero)
    return work


def sketch_bytes(d: int, n: int, threads: int) -> int:
    """Peak bytes of the d x n sketch's sums and factorisation on ``threads`` worker threads."""
    return int(d) * 8 * (int(n) + 1) * (2 + 3 * max(1, int(threads)))


def max_sketch_rows(free: int, n: int, threads: int) -> int:
    """Most sketch rows d with ``sketch_bytes(d, n, threads) <= free`` (0 when none fit)."""
    return max(0, int(free) // sketch_bytes(1, n, threads))


class MemoryPlan:
    """How a memory budget (bytes) is shared out for a solve with a sketch of kind ``kind``.

    ``fixed()`` is what the process held at the start (``baseline``), A in memory (``matrix_bytes``,
    0 when streamed), the vectors of length m and a slack; the sketch takes what is left, but at
    most half of it when streaming, so that the row blocks get the other half. ``nnz``: the
    nonzeros of a sparse A held in memory (their scatter into the sketch needs working memory).
    """

    def __init__(self, budget: int, baseline: int, m: int, n: int, threads: int, matrix_bytes: int,
                 streaming: bool, *, kind: str, nnz: int | None = None):
        self.budget, self.baseline, self.m, self.n, self.threads = budget, baseline, m, n, threads
        self.matrix_bytes, self.streaming, self.kind, self.nnz = matrix_bytes, streaming, kind, nnz

    def vectors(self) -> int:
        return vector_bytes(self.m, self.kind)

    def fixed(self) -> int:
        return self.baseline + self.matrix_bytes + self.vectors() + self.slack()

    def slack(self) -> int:
        """Held back for what the plan does not count (library buffers, small temporaries)."""
        return 2**21 + self.budget // 50

    def sketch_total(self, d: int, zeta: int) -> int:
        """Bytes of a d-row sketch: sums, factorisation and every thread's working memory."""
        # the SRHT transforms its column blocks one after the other, a streamed sketch runs on one
        # thread (RowStreamProblem.sketch); the others keep per-thread sums and working memory
        workers = 1 if self.kind == "srht" or self.streaming else self.threads
        return sketch_bytes(d, self.n, workers) + workers * work_bytes(self.kind, self.m, d, zeta=zeta,
                                                                       nnz=self.nnz)

    def least_budget(self, d: int, zeta: int) -> int:
        """The smallest budget that holds a d-row sketch (streaming: as half of the free memory)."""
        return self.fixed() + self.sketch_total(d, zeta) * (2 if self.streaming else 1)

    def max_rows(self, *, zeta: int) -> int:
        """The most sketch rows that fit (0 when none do)."""
        free = self.budget - self.fixed()
        if self.streaming:
            free //= 2
        # the working memory depends on d (a Gaussian sketch's chunks): bisect on what fits
        low, high = 0, min(self.m, max_sketch_rows(free, self.n, 1))
        while low < high:
            mid = (low + high + 1) // 2
            if self.sketch_total(mid, zeta) <= free:
                low = mid
            else:
                high = mid - 1
        return low
