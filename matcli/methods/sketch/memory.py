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


def work_bytes(kind: str, m: int, d: int, *, zeta: int = 4, nnz: int | None = None) -> int:
    """Working memory of one thread applying a sketch of kind ``kind`` (``auto``: the larger of
    CountSketch and sparse sign) with d rows to an m-row matrix (``nnz``: a sparse one's nonzeros)."""
    if kind == "gaussian":
        return 8 * d * min(m, sketches.gaussian_chunk_columns(d))
    if kind == "srht":
        return 3 * 8 * m * sketches.SRHT_COLUMNS  # the signed block, its DCT and the sampled rows
    # sparse sign (also auto, countsketch, and the pre-sketch of leverage sampling): one generated
    # chunk (an int32 draw, a float64 value and an index per nonzero), plus the scatter of sparse rows
    if kind == "countsketch":
        zeta = 1
    work = 24 * zeta * min(m, sketches.SPARSE_CHUNK)
    if nnz is not None:
        work += 16 * zeta * min(int(nnz), sketches.SCATTER_BYTES // (16 * zeta))
    return work


def sketch_bytes(d: int, n: int, threads: int) -> int:
    """Peak bytes of the d x n sketch's sums and factorisation on ``threads`` worker threads."""
    return int(d) * 8 * (int(n) + 1) * (2 + 3 * max(1, int(threads)))


def max_sketch_rows(free: int, n: int, threads: int) -> int:
    """Most sketch rows d with ``sketch_bytes(d, n, threads) <= free`` (0 when none fit)."""
    return max(0, int(free) // sketch_bytes(1, n, threads))
