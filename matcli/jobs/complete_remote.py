"""The validation fits of ``complete --rank auto`` / ``--reg auto`` as a parallel backend's workers
get them: the observed entries by reference, the split as a bit mask.

:class:`FitSource` is :class:`matcli.jobs.complete.FitTask` with the data replaced by what a worker
needs to rebuild it: a reference to the observed-entries input (read by the worker, once per
worker and job, see :mod:`matcli.backends.refs`; the digest covers the entries and the shape), the
training split packed into one bit per entry, and the kernel's settings. The worker's
:meth:`FitSource.load` gives the client's ``FitTask`` exactly: the same entries in the same order,
the same held-out entries.
"""

from __future__ import annotations

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
