"""The default backend: every task runs in this process, in order."""

from __future__ import annotations

from typing import Any, Callable

from matcli.backends import Backend


class LocalBackend(Backend):
    """Sequential, in-process :meth:`~matcli.backends.Backend.map` (nothing is pickled)."""

    name = "local"
    parallelism = 1

    def _map(self, fn: Callable[..., Any], items: list[Any], shared: dict[str, Any]) -> list[Any]:
        results = []
        for item in items:
            results.append(fn(item, **shared))
            if self.progress is not None:
                self.progress(len(results), len(items))
        return results

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "workers": 1, "tasks": self.tasks}
