"""ALS over blocks of the observed entries: the half-steps as maps over user blocks and item blocks.

The observed entries are cut twice: by row into blocks of consecutive rows (user blocks), and by
column into blocks of consecutive columns (item blocks). A row half-step is one task per user
block: the block holds every entry of its rows, so with the column factors (and biases) broadcast
it solves its rows' regularised normal equations alone; the results, concatenated in block order,
are the new row factors. The column half-step is the same over item blocks with the new row
factors broadcast (Spark MLlib's ALS, without its out-blocks: the broadcast factor is small,
(p, k)). The item tasks also return the squared training residual of their entries, so a sweep is
two maps and no further pass.

Each block solves its rows with :func:`matcli.methods.complete.common.ridge_half_step`, the local
kernel's code, on an :class:`~matcli.methods.complete.common.Entries` of its rows whose every row
lists its entries in the order the whole set lists them. Every operation of a half-step acts on one
row at a time (a row's right-hand side, Gram matrix, CG coefficients), so the factors equal
:func:`matcli.methods.complete.als.als`'s bit for bit, for any blocking. Only the training error
is summed across blocks (in block order), so it, the objective and the RMSE differ from the
local kernel's in the last bits.

The start is the local kernel's: the baseline biases (damped means, O(N) on the client) and the
spectral initialisation, whose products with the sampled matrix and its transpose are maps over
the user and the item blocks (each block's rows of the product, concatenated), the small
orthonormalisations and SVD on the client, drawing from the same generator in the same order.
The client holds the entries' coordinates and values (:class:`EntrySet`, no sorted copies) and
(m + n) x (k + 8) blocks. Nothing here knows where the blocks live: a :class:`BlockRunner` runs the
maps (in this process, or on a cluster's workers).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from matcli.core.result import Callback, Result, Status, no_callback
from matcli.methods.complete.als import _lambdas, _message
from matcli.methods.complete.common import (
    BASELINE_DAMPING, Entries, FactorModel, Heldout, SweepMonitor, balanced_factors, finish, fit_biases,
    orthonormal_basis, ridge_half_step,
)

#: Observed entries per block: a half-step task then takes long beside its scheduling (~ms).
BLOCK_ENTRIES = 1 << 18
#: Fewest blocks per side (when there are rows for them), so a small problem spreads over workers.
MIN_BLOCKS = 4
#: Most blocks per side: the client keeps one reference per block.
MAX_BLOCKS = 1024
#: Subspace iterations of the spectral start (``spectral_init``'s default, which the local kernel uses).
SPECTRAL_POWER_ITERS = 4


def plan_ranges(counts: np.ndarray, nnz: int) -> list[tuple[int, int]]:
    """Contiguous ranges ``[start, stop)`` of the indices of one side with about equal entry counts.

    ``counts`` (q,) observations per index, ``nnz`` their sum. The number of blocks depends on
    ``nnz`` and q only (never on a cluster), between :data:`MIN_BLOCKS` and :data:`MAX_BLOCKS`;
    the ranges cover ``[0, q)`` in order and none is empty.
    """
    q = int(counts.size)
    wanted = max(1, min(q, MAX_BLOCKS, max(MIN_BLOCKS, math.ceil(nnz / BLOCK_ENTRIES))))
    cumulative = np.cumsum(counts, dtype=np.float64)
    targets = cumulative[-1] * np.arange(1, wanted) / wanted if q else np.empty(0)
    cuts = np.searchsorted(cumulative, targets, side="left") + 1
    bounds = np.unique(np.concatenate(([0], np.clip(cuts, 1, q), [q])))
    return [(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:])]


@dataclass(frozen=True)
class EntrySet:
    """The training entries as the client keeps them: (N,) ``rows``, ``cols`` (0-based), ``values``
    (float64) of an ``shape`` matrix and the (m,), (n,) observation counts; no sorted copies."""

    rows: np.ndarray
    cols: np.ndarray
    values: np.ndarray
    shape: tuple[int, int]
    row_counts: np.ndarray
    col_counts: np.ndarray

    @property
    def nnz(self) -> int:
        return int(self.values.size)


def entry_set(rows: np.ndarray, cols: np.ndarray, values: np.ndarray, shape: tuple[int, int]) -> EntrySet:
    """:class:`EntrySet` of the (N,) entries."""
    m, n = int(shape[0]), int(shape[1])
    return EntrySet(np.asarray(rows), np.asarray(cols), np.asarray(values, dtype=np.float64), (m, n),
                    np.bincount(rows, minlength=m).astype(np.int64), np.bincount(cols, minlength=n).astype(np.int64))


@dataclass(frozen=True)
class EntryBlock:
    """The observed entries whose index on side ``axis`` (0: row, 1: column) lies in
    ``[start, stop)``: ``entries`` has one row per such index (``own - start``) and the other side's
    indices as columns (shape ``(stop - start, other side's size)``), each row's entries in the
    order of the whole set."""

    axis: int
    start: int
    stop: int
    entries: Entries


def make_block(rows: np.ndarray, cols: np.ndarray, values: np.ndarray, shape: tuple[int, int], axis: int,
               start: int, stop: int) -> EntryBlock:
    """The :class:`EntryBlock` of the (N,) entries ``rows, cols, values`` of an ``shape`` matrix."""
    own, other = (rows, cols) if axis == 0 else (cols, rows)
    keep = (own >= start) & (own < stop)
    return EntryBlock(axis, int(start), int(stop),
                      Entries(own[keep] - start, other[keep], values[keep], (stop - start, int(shape[1 - axis]))))


def half_step(task: tuple[EntryBlock, np.ndarray | None], *, fixed: np.ndarray, other_bias: np.ndarray | None,
              mu: float, reg: float, reg_scaling: str, exact: bool, cg_iters: int,
              residual: bool) -> tuple[np.ndarray, float | None]:
    """One block's share of a half-step (a task).

    Parameters
    ----------
    task : (block, x0) with x0 the block's current (stop - start, d) solution (factor rows, then the
        bias column when biased), the CG warm start; None for exact half-steps.
    fixed : (p, k) factors of the other side; other_bias : (p,) its biases, or None (no biases).
    mu : the global mean (0 without biases).
    residual : also return the block's sum of squared training residuals under the new rows
        (item blocks, after which the sweep's model is complete).

    Returns
    -------
    ((stop - start, d) new solution with d = k (+ 1 with biases), sum of squares or None).
    """
    block, x0 = task
    e = block.entries
    if other_bias is not None:
        features = np.hstack([fixed, np.ones((fixed.shape[0], 1))])
        target = e.values - mu - other_bias[e.cols]
    else:
        features, target = fixed, e.values
    lam = _lambdas(e.row_counts, reg, reg_scaling, features)
    x = ridge_half_step(e, 0, features, target, lam, exact=exact, x0=x0, cg_iters=cg_iters)
    if not residual:
        return x, None
    k = fixed.shape[1]
    own_bias = x[:, k] if other_bias is not None else None
    # The whole model's prediction formula on this block's entries (other side = model rows).
    rows_model = FactorModel(fixed, np.ascontiguousarray(x[:, :k]), mu, other_bias, own_bias)
    r = e.values - rows_model.predict(e.cols, e.rows)
    return x, float(r @ r)


def sampled_product(task: tuple[EntryBlock, None], *, operand: np.ndarray, mu: float, row_bias: np.ndarray | None,
                    col_bias: np.ndarray | None, rate: float) -> np.ndarray:
    """The block's rows of ``P_Omega(residual) / rate @ operand`` (user blocks) or of its transpose
    (item blocks), residual = value - mu - row_bias - col_bias (or the value without biases): a task
    of the spectral initialisation. ``operand`` is (other side's size, w); returns (stop - start, w)."""
    block = task[0]
    e = block.entries
    residual = e.values
    if row_bias is not None:
        own = block.start + e.rows
        rows, cols = (own, e.cols) if block.axis == 0 else (e.cols, own)
        residual = e.values - mu - row_bias[rows] - col_bias[cols]
    return e.by_row(residual / rate) @ operand


class BlockRunner(Protocol):
    """Where the blocks live and how a map runs over them.

    ``ranges[axis]`` are the blocks' index ranges of side ``axis`` (see :func:`plan_ranges`);
    :meth:`run` applies ``fn`` (:func:`half_step`, :func:`sampled_product`) to ``(block, x0[b])``
    for every block of side ``axis`` (x0 None: None for each) with the broadcast ``shared``
    keywords, returning the results in block order.
    """

    ranges: tuple[list[tuple[int, int]], list[tuple[int, int]]]

    def run(self, axis: int, fn: Any, x0: list[np.ndarray] | None, **shared: Any) -> list[Any]:
        ...

    def describe(self) -> dict[str, Any]:
        ...


class InProcessBlocks:
    """A :class:`BlockRunner` holding its blocks in this process (the reference the tests compare with)."""

    def __init__(self, rows: np.ndarray, cols: np.ndarray, values: np.ndarray, shape: tuple[int, int],
                 ranges: tuple[list[tuple[int, int]], list[tuple[int, int]]]):
        self.ranges = ranges
        self.blocks = [[make_block(rows, cols, values, shape, axis, a, b) for a, b in ranges[axis]] for axis in (0, 1)]

    def run(self, axis: int, fn: Any, x0: list[np.ndarray] | None, **shared: Any) -> list[Any]:
        starts = x0 if x0 is not None else [None] * len(self.blocks[axis])
        return [fn((block, start), **shared) for block, start in zip(self.blocks[axis], starts)]

    def describe(self) -> dict[str, Any]:
        return {"row_blocks": len(self.ranges[0]), "col_blocks": len(self.ranges[1]), "where": "in process"}


def als_blocks(runner: BlockRunner, entries: EntrySet | Entries, *, rank: int, reg: float = 0.12, bias: bool = True,
               reg_scaling: str = "count", inner: str = "cg", cg_iters: int = 3, init: str = "svd",
               maxiter: int = 50, rtol: float = 1e-5, atol: float = 0.0, heldout: Heldout | None = None,
               clip: tuple[float, float] | None = None, rng: np.random.Generator,
               callback: Callback = no_callback) -> Result:
    """:func:`matcli.methods.complete.als.als` with its half-steps run by ``runner`` over the blocks
    of ``entries`` (the training entries, whole: the biases, counts and penalty on the client).

    Same parameters, start, stopping rule, outputs and statuses as ``als``; the factors equal its
    factors bit for bit; ``train_rmse`` and the objective are sums over blocks (equal to rounding).
    ``info["blocks"]`` is ``runner.describe()``.
    """
    model = _initial_model(runner, entries, rank=rank, bias=bias, init=init, rng=rng)
    monitor = SweepMonitor(callback, rtol=rtol, atol=atol, heldout=heldout, clip=clip)
    exact = inner == "exact"
    status = Status.DIVERGED_MAX_IT
    sweep = 0
    for sweep in range(1, maxiter + 1):
        fit = _sweep(runner, model, reg=reg, reg_scaling=reg_scaling, exact=exact, cg_iters=cg_iters)
        objective = fit + reg * _penalty(entries, model, reg_scaling)
        stop = monitor.step(sweep, model, _one_entry_residual(math.sqrt(fit / max(entries.nnz, 1))), objective)
        if stop is not None:
            status = stop
            break
    info = {"inner_solver": inner, "cg_iters": cg_iters if inner == "cg" else None, "init": init,
            "observed": entries.nnz, "empty_rows": int(np.sum(entries.row_counts == 0)),
            "empty_cols": int(np.sum(entries.col_counts == 0)), "blocks": runner.describe()}
    return finish(status, model, sweep, monitor.metrics(), info, _message(status, sweep))


def _sweep(runner: BlockRunner, model: FactorModel, *, reg: float, reg_scaling: str, exact: bool,
           cg_iters: int) -> float:
    """One sweep on ``model`` in place (rows, then columns); the training sum of squared residuals."""
    k = model.U.shape[1]
    fit = 0.0
    for axis in (0, 1):
        own, fixed = (model.U, model.V) if axis == 0 else (model.V, model.U)
        own_bias, other_bias = (model.row_bias, model.col_bias) if axis == 0 else (model.col_bias, model.row_bias)
        x0 = None
        if not exact:
            current = np.hstack([own, own_bias[:, None]]) if model.has_bias else own
            x0 = [current[a:b] for a, b in runner.ranges[axis]]
        parts = runner.run(axis, half_step, x0, fixed=fixed, other_bias=other_bias, mu=float(model.mu), reg=reg,
                           reg_scaling=reg_scaling, exact=exact, cg_iters=cg_iters, residual=axis == 1)
        x = np.concatenate([part[0] for part in parts])
        if axis == 0:
            model.U = np.ascontiguousarray(x[:, :k])
        else:
            model.V = np.ascontiguousarray(x[:, :k])
            for part in parts:
                fit += part[1]
        if model.has_bias:
            own_bias[:] = x[:, k]
    return fit


def _initial_model(runner: BlockRunner, entries: EntrySet | Entries, *, rank: int, bias: bool, init: str,
                   rng: np.random.Generator) -> FactorModel:
    """:func:`matcli.methods.complete.als.initial_model` with the spectral initialisation's
    products (:func:`matcli.methods.complete.common.spectral_init`, the same steps and draws) over
    the blocks."""
    m, n = entries.shape
    if bias:
        mu, b, c = fit_biases(entries, entries.values, reg=BASELINE_DAMPING)
    else:
        mu, b, c = 0.0, None, None
    if init != "svd":
        residual = entries.values - mu - b[entries.rows] - c[entries.cols] if bias else entries.values
        scale = float(np.sqrt(np.mean(residual**2))) if entries.nnz else 1.0
        U = rng.standard_normal((m, rank)) * np.sqrt(scale / rank)
        V = rng.standard_normal((n, rank)) * np.sqrt(scale / rank)
        return FactorModel(U, V, mu, b, c)
    rate = max(entries.nnz / (float(m) * n), 1e-300)

    def product(axis: int, operand: np.ndarray) -> np.ndarray:
        parts = runner.run(axis, sampled_product, None, operand=operand, mu=float(mu), row_bias=b, col_bias=c,
                           rate=rate)
        return np.concatenate(parts)

    width = min(rank + 8, m, n)
    Q = orthonormal_basis(product(0, rng.standard_normal((n, width))))
    for _ in range(SPECTRAL_POWER_ITERS):
        Q = orthonormal_basis(product(1, Q))
        Q = orthonormal_basis(product(0, Q))
    U, V = balanced_factors(Q, product(1, Q), rank, rng)
    return FactorModel(U, V, mu, b, c)


def _penalty(entries: Entries, model: FactorModel, reg_scaling: str) -> float:
    """The ridge term of ALS's objective over ``reg`` (as :mod:`matcli.methods.complete.als`)."""
    rs = entries.row_counts if reg_scaling == "count" else np.ones(entries.shape[0])
    cs = entries.col_counts if reg_scaling == "count" else np.ones(entries.shape[1])
    penalty = float(rs @ np.einsum("ij,ij->i", model.U, model.U) + cs @ np.einsum("ij,ij->i", model.V, model.V))
    if model.has_bias:
        penalty += float(rs @ model.row_bias**2 + cs @ model.col_bias**2)
    return penalty


def _one_entry_residual(value: float) -> np.ndarray:
    """A (1,) residual whose RMSE is ``value``: sqrt(x * x) == x exactly in binary floating point
    for x >= 0 (without underflow), so the sweep monitor reports the blocks' RMSE unchanged."""
    return np.array([value])
