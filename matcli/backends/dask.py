"""The Dask backend (optional extra ``matcli[dask]``): tasks run on a ``dask.distributed`` cluster.

With a scheduler address (``--scheduler tcp://host:8786`` or ``$MATCLI_DASK_SCHEDULER``) the
backend connects to that cluster; without one it starts a :class:`distributed.LocalCluster` on
this machine, one single-threaded worker process per core (worker processes also get one BLAS
thread each from Dask's nanny, so the cores are not oversubscribed). Dask is imported only here,
and only when this backend is chosen.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import sys
import time
from concurrent.futures import CancelledError
from typing import Any, Callable

from matcli.backends import Backend
from matcli.core.errors import BackendError

#: Seconds to wait for a scheduler that accepts the TCP connection to answer.
CONNECT_TIMEOUT_S = 10
#: Seconds to wait for the TCP probe of a scheduler address (a refused port fails at once).
PROBE_TIMEOUT_S = 5
INSTALL_HINT = "pip install 'matcli[dask]'"


def _cores() -> int:
    from matcli.threads import available_cpus

    return available_cpus()


def _probe(address: str) -> None:
    """Fail fast on a TCP scheduler that refuses connections: the Dask client would retry until
    its timeout, and then report only that it timed out."""
    from distributed.comm.addressing import get_address_host_port, parse_address

    try:
        scheme, _ = parse_address(address)
        if scheme not in ("tcp", "tls"):
            return
        host, port = get_address_host_port(address)
    except ValueError as exc:
        raise BackendError(f"--scheduler {address}: not a Dask scheduler address ({exc}); "
                           "expected tcp://host:port") from None
    try:
        socket.create_connection((host, port), timeout=PROBE_TIMEOUT_S).close()
    except OSError as exc:
        raise BackendError(f"cannot reach the Dask scheduler at {address} ({exc.strerror or exc}); "
                           "start one (`dask scheduler`, then `dask worker ADDRESS`), fix --scheduler / "
                           "$MATCLI_DASK_SCHEDULER, or leave both unset for a local cluster") from None


class DaskBackend(Backend):
    """:meth:`map` through a ``distributed.Client``; ``parallelism`` = worker threads of the cluster.

    Raises :class:`~matcli.core.errors.BackendError` when ``distributed`` is not installed, the
    scheduler cannot be reached, it has no workers, or the local cluster fails to start.
    """

    name = "dask"

    def __init__(self, address: str | None = None):
        super().__init__()
        address = address or os.environ.get("MATCLI_DASK_SCHEDULER") or None
        if not address:
            _start_resource_tracker_quietly()  # before distributed's import, which may start it
        try:
            import distributed
        except ImportError:
            raise BackendError(f"--backend dask needs dask.distributed, which is not installed: {INSTALL_HINT}") \
                from None
        started = time.perf_counter()
        self._cluster = None
        if address:
            _probe(address)
            try:
                self._client = distributed.Client(address, timeout=CONNECT_TIMEOUT_S, set_as_default=False)
            except (OSError, TimeoutError, ValueError) as exc:
                raise BackendError(f"cannot connect to the Dask scheduler at {address} ({type(exc).__name__}: "
                                   f"{exc}); check the address and that the scheduler is running") from None
        else:
            try:
                # The scheduler's HTTP server always starts; a free local port avoids clashing with
                # (and warning about) another cluster on the default 8787.
                self._cluster = distributed.LocalCluster(
                    n_workers=_cores(), threads_per_worker=1, processes=True, dashboard_address="127.0.0.1:0",
                    silence_logs=logging.ERROR)
            except (OSError, TimeoutError, RuntimeError) as exc:
                raise BackendError(f"cannot start a local Dask cluster ({type(exc).__name__}: {exc}); "
                                   "use --backend local") from None
            self._client = distributed.Client(self._cluster, set_as_default=False)
        nthreads = self._client.nthreads()
        self.address = self._client.scheduler.address
        self.workers = len(nthreads)
        self.parallelism = sum(nthreads.values())
        self.startup_s = time.perf_counter() - started
        if self.workers == 0:
            self.close()
            raise BackendError(f"the Dask scheduler at {self.address} has no workers; start some with "
                               f"`dask worker {self.address}`")

    def _map(self, fn: Callable[..., Any], items: list[Any], shared: dict[str, Any]) -> list[Any]:
        from distributed import KilledWorker

        client = self._client
        try:
            # Shared values go to every worker once; each item goes to one worker, where its task runs.
            sent = {key: client.scatter([value], broadcast=True, hash=False)[0] for key, value in shared.items()}
            futures = client.map(fn, client.scatter(items, hash=False), pure=False, **sent)
            return client.gather(futures)
        except (KilledWorker, CancelledError, TimeoutError, OSError) as exc:
            reason = str(exc).splitlines()[0] if str(exc) else "no detail"
            raise BackendError(f"the Dask cluster at {self.address} failed while running {fn.__name__} "
                               f"({type(exc).__name__}: {reason}); retry, or use --backend local") from None

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "cluster": "local" if self._cluster is not None else "scheduler",
                "address": self.address, "workers": self.workers, "threads": self.parallelism,
                "startup_s": self.startup_s, "tasks": self.tasks}

    def close(self) -> None:
        # A cluster that already failed may not answer the goodbye; the job's outcome stands.
        with contextlib.suppress(OSError, TimeoutError):
            self._client.close()
            if self._cluster is not None:
                self._cluster.close()


def _start_resource_tracker_quietly() -> None:
    """Start multiprocessing's resource tracker with /dev/null as its stderr (descriptor 2).

    The tracker inherits descriptor 2 of the process that starts it; when matcli is stopped by a
    signal (:mod:`matcli.cli.signals` ends the process at once) it removes the local cluster's
    semaphores and warns about each there, after matcli's one line.
    """
    from multiprocessing import resource_tracker

    sys.stderr.flush()
    saved = os.dup(2)
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 2)
        resource_tracker.ensure_running()
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)
