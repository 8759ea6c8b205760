"""``complete`` on a parallel backend's workers: the entries by reference, the split as a bit mask.

Two modes. **Distributed ALS** (als, als-exact): :class:`DaskBlocks` keeps the user blocks and
item blocks of the training entries on the workers (futures of :func:`load_block` tasks that read
the input themselves) and runs the half-steps of :mod:`matcli.methods.complete.als_blocks` over
them. **Parallel validation fits** (the other methods under ``--rank auto`` / ``--reg auto``):
:class:`FitSource` is :class:`matcli.jobs.complete.FitTask` with the data replaced by what a worker
needs to rebuild it: a reference to the observed-entries input (read by the worker, once per
worker and job, see :mod:`matcli.backends.refs`; the digest covers the entries and the shape), the
training split packed into one bit per entry, and the kernel's settings. The worker's
:meth:`FitSource.load` gives the client's ``FitTask`` exactly: the same entries in the same order,
the same held-out entries.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from matcli.backends.refs import FileInput, Inline, reference


def observed_content(observed: Any) -> tuple[Any, ...]:
    """What a fit reads of the observed entries: (rows, cols, values, shape)."""
    return observed.rows, observed.cols, observed.values, tuple(int(s) for s in observed.shape)


@dataclass(frozen=True)
class FitSource:
    """A ``FitTask`` by reference: ``observed`` (the input), ``train_bits`` (``np.packbits`` of the
    (N,) training mask; the other entries are held out), ``entries`` = N, and the kernel's
    ``clip``, ``with_reg`` and ``settings``."""

    kernel: Callable[..., Any]
    observed: FileInput | Inline
    train_bits: np.ndarray
    entries: int
    clip: tuple[float, float] | None
    with_reg: bool
    settings: dict[str, Any]

    def load(self):
        """The :class:`~matcli.jobs.complete.FitTask` the client would have sent."""
        from matcli.jobs.complete import FitTask
        from matcli.methods.complete.common import Heldout

        rows, cols, values, shape = observed_content(self.observed.load())
        train = np.unpackbits(self.train_bits, count=self.entries).astype(bool)
        heldout = None
        if not train.all():
            held = ~train
            heldout = Heldout(rows[held], cols[held], values[held])
        return FitTask(self.kernel, rows[train], cols[train], values[train], shape, heldout, self.clip,
                       self.with_reg, self.settings)


def fit_source(task: Any, observed: Any, spec: str, shape_option: tuple[int, int] | None,
               train: np.ndarray | None) -> FitSource:
    """``task`` (the client's ``FitTask`` on the entries ``train`` of ``observed``, read from
    ``spec`` with ``--shape`` ``shape_option``) by reference."""
    from matcli.io.load import read_observed

    mask = np.ones(observed.nnz, dtype=bool)
    if train is not None:
        mask[:] = False
        mask[train] = True
    ref = reference(spec, observed, read_observed, options=(shape_option,), content=observed_content)
    return FitSource(task.kernel, ref, np.packbits(mask), observed.nnz, task.clip, task.with_reg, task.settings)


def load_block(axis: int, start: int, stop: int, *, source: FileInput | Inline, train: np.ndarray | None,
               entries: int):
    """Task: the :class:`~matcli.methods.complete.als_blocks.EntryBlock` of side ``axis``, indices
    ``[start, stop)``, of the training entries (``train``: packed (N,) mask, None: all N = ``entries``)
    of the observed set ``source`` names; read by the worker, kept there as the block's future."""
    from matcli.methods.complete.als_blocks import make_block

    rows, cols, values, shape = observed_content(source.load())
    if train is not None:
        keep = np.unpackbits(train, count=entries).astype(bool)
        rows, cols, values = rows[keep], cols[keep], values[keep]
    return make_block(rows, cols, values, shape, axis, start, stop)


class DaskBlocks:
    """A :class:`~matcli.methods.complete.als_blocks.BlockRunner` whose blocks live on the Dask
    workers: each block is the future of a :func:`load_block` task, whose arguments are a reference
    to the input, the training mask (one shared task) and the block's range. A half-step maps
    :func:`~matcli.methods.complete.als_blocks.half_step` over the block futures through the
    backend, so each block's task runs where the block is and the broadcast factor is one shared
    task. A lost worker's blocks are loaded again by Dask from those arguments.

    The workers read the whole input once each to cut their blocks; once every block is loaded they
    drop that copy (:func:`matcli.backends.refs.clear_cache`) and keep only their blocks.
    """

    def __init__(self, backend: Any, source: FileInput | Inline, train_bits: np.ndarray | None, entries: int,
                 ranges: tuple[list[tuple[int, int]], list[tuple[int, int]]]):
        from matcli.backends.refs import clear_cache

        self.backend, self.ranges = backend, ranges
        # The blocks stay on the workers as futures between half-steps; the reference (arrays of
        # the Python API travel inside it) and the mask are one shared task each.
        items = [(axis, a, b) for axis in (0, 1) for a, b in ranges[axis]]
        self._client = client = backend.client
        self.blocks = [[], []]
        try:
            futures = backend.resident(load_block, items, source=source, train=train_bits, entries=entries)
        except BaseException:
            self.close()
            raise
        self.blocks = [futures[:len(ranges[0])], futures[len(ranges[0]):]]
        with contextlib.suppress(Exception):
            client.run(clear_cache)

    def run(self, axis: int, fn: Callable[..., Any], x0: list[np.ndarray] | None, **shared: Any) -> list[Any]:
        starts = x0 if x0 is not None else [None] * len(self.blocks[axis])
        return self.backend.map(fn, list(zip(self.blocks[axis], starts)), **shared)

    def describe(self) -> dict[str, Any]:
        return {"row_blocks": len(self.ranges[0]), "col_blocks": len(self.ranges[1]), "where": "dask workers",
                "workers": int(getattr(self.backend, "workers", 0))}

    def close(self) -> None:
        """Release the blocks on the workers."""
        with contextlib.suppress(Exception):
            self._client.cancel([future for side in self.blocks for future in side])
        self.blocks = [[], []]
