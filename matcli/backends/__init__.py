"""Execution backends: where the independent tasks of a job run.

A :class:`Backend` maps a module-level function over items and returns the results in input
order. ``local`` (:mod:`matcli.backends.local`) runs them one after another in this process;
``dask`` (:mod:`matcli.backends.dask`, optional extra ``matcli[dask]``) sends them to a Dask
cluster. :func:`get_backend` imports a backend's module only when that backend is chosen, so
``local`` runs (and ``matcli --help``) never import Dask.
"""

from __future__ import annotations

import abc
from typing import Any, Callable, Iterable

from matcli.core.errors import UsageError

BACKENDS = ("local", "dask")


class Backend(abc.ABC):
    """Runs ``fn(item, **shared)`` for each item; a context manager that releases its workers on exit.

    ``parallelism`` is the number of tasks that run at once (1 for ``local``); jobs use it to
    decide how finely to split their work. ``progress``, when set, is called as
    ``progress(done, total)`` each time a task of :meth:`map` finishes (in completion order).
    """

    name: str = ""
    parallelism: int = 1

    def __init__(self) -> None:
        self.tasks = 0
        self.progress: Callable[[int, int], None] | None = None

    def map(self, fn: Callable[..., Any], items: Iterable[Any], **shared: Any) -> list[Any]:
        """``[fn(item, **shared) for item in items]``, in input order.

        ``fn`` must be a module-level function and the items, the ``shared`` values and the
        results picklable (a parallel backend sends them to other processes); ``shared`` values
        are sent once per worker rather than once per item. Items and shared values travel as
        task arguments: a parallel backend recomputes the tasks of a lost worker from them, so
        they should be small (names of the data a task reads, see :mod:`matcli.backends.refs`).
        Exceptions raised by ``fn`` propagate unchanged; a failure of the backend itself raises
        :class:`~matcli.core.errors.BackendError`.
        """
        items = list(items)
        if not items:
            return []
        results = self._map(fn, items, shared)
        self.tasks += len(items)
        return results

    @abc.abstractmethod
    def _map(self, fn: Callable[..., Any], items: list[Any], shared: dict[str, Any]) -> list[Any]:
        """Run the non-empty ``items``; results in input order."""

    @abc.abstractmethod
    def describe(self) -> dict[str, Any]:
        """JSON-ready facts for the report: ``name``, ``workers``, ``tasks`` and backend specifics."""

    def close(self) -> None:
        """Release workers and connections (idempotent)."""

    def __enter__(self) -> "Backend":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def get_backend(name: str, address: str | None = None) -> Backend:
    """Open the backend ``name`` (one of :data:`BACKENDS`).

    ``address`` is a Dask scheduler address (``tcp://host:port``) and only applies to ``dask``,
    which otherwise reads ``$MATCLI_DASK_SCHEDULER`` and, when that is unset, starts a local
    cluster. Raises :class:`~matcli.core.errors.UsageError` for an unknown name or an address
    given to ``local``, :class:`~matcli.core.errors.BackendError` when Dask is missing or the
    cluster cannot be reached.
    """
    if name == "local":
        if address:
            raise UsageError(f"--scheduler {address} needs --backend dask")
        from matcli.backends.local import LocalBackend

        return LocalBackend()
    if name == "dask":
        from matcli.backends.dask import DaskBackend

        return DaskBackend(address)
    raise UsageError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
