"""The Dask backend (optional extra ``matcli[dask]``): tasks run on a ``dask.distributed`` cluster.

With a scheduler address (``--scheduler tcp://host:8786`` or ``$MATCLI_DASK_SCHEDULER``) the
backend connects to that cluster; without one it starts a :class:`distributed.LocalCluster` on
this machine, one single-threaded worker process per core (worker processes also get one BLAS
thread each from Dask's nanny, so the cores are not oversubscribed). Dask is imported only here,
and only when this backend is chosen.

Connecting has a hard deadline (:data:`CONNECT_DEADLINE_S`): the address is checked first (a
scheme Dask can use here, a port), then one Dask handshake and an ``identity`` request go to it
inside :func:`asyncio.wait_for` (``distributed.Client(timeout=...)`` bounds the TCP connect but
not the handshake, so a port that accepts and never speaks held it for ever), and only then is
the client created, in a thread that is abandoned if the deadline passes. Once connected, every
worker must import the matcli version of this process (:func:`_check_workers`), and every task
checks it again where it runs (:class:`VersionedTask`), so a worker that joins later with another
matcli, or none, fails the run with one line instead of computing with other code.

Tasks travel through the task graph, never ``client.scatter``: each item and each shared value
is an argument of a task the scheduler keeps, so the tasks a lost worker held are recomputed by
Dask from the same arguments and the answer is the one of an undisturbed run. Problem data stay
out of the graph when jobs send references (:mod:`matcli.backends.refs`) that workers read.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import sys
import threading
import time
import warnings
from concurrent.futures import CancelledError
from typing import Any, Callable

from matcli.backends import Backend
from matcli.core.errors import BackendError

#: Seconds from the start of connecting to a scheduler to a checked, usable client.
CONNECT_DEADLINE_S = 20.0
#: Seconds the handshake with the address may take (part of the deadline).
PROBE_TIMEOUT_S = 10.0
#: Seconds to wait for a first worker when the scheduler has none yet.
WORKER_WAIT_S = 5.0
#: Seconds a running map may see a cluster without workers before it fails (Dask itself waits
#: for ever for a worker to come back).
NO_WORKERS_S = 20.0
INSTALL_HINT = "pip install 'matcli[dask]'"
#: Schemes a scheduler address may have (others: a one-line error before any connection).
SCHEMES = ("tcp", "tls", "ws", "wss", "ucx", "inproc")
START_HINT = ("start one (`dask scheduler`, then `dask worker ADDRESS`), fix --scheduler / "
              "$MATCLI_DASK_SCHEDULER, or leave both unset for a local cluster")


def _cores() -> int:
    from matcli.threads import available_cpus

    return available_cpus()


def check_address(address: str) -> str:
    """The scheduler address ``address`` with its scheme (``tcp://`` when none is given).

    Raises :class:`BackendError` for a scheme Dask cannot use (``http://``: a dashboard, not the
    scheduler), ``ucx://`` without its comm package, or an address without a port.
    """
    text = address.strip()
    scheme, sep, rest = text.partition("://")
    if not sep:
        scheme, rest = "tcp", text
    scheme = scheme.lower()
    if scheme in ("http", "https"):
        raise BackendError(f"--scheduler {address}: {scheme}:// is a web address (the dashboard), not a Dask "
                           "scheduler; use the scheduler's tcp://host:port (port 8786 by default)")
    if scheme not in SCHEMES:
        raise BackendError(f"--scheduler {address}: unknown scheme {scheme}://; a Dask scheduler address is "
                           "tcp://host:port (or tls://, ws://, wss://, ucx://)")
    if scheme == "ucx":
        try:
            import distributed_ucxx  # noqa: F401
        except ImportError:
            raise BackendError(f"--scheduler {address}: ucx:// needs UCX support (the distributed-ucxx package), "
                               "which is not installed; use the scheduler's tcp:// address") from None
    if scheme == "inproc":
        return f"{scheme}://{rest}"
    host, colon, port = rest.rpartition(":")
    if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise BackendError(f"--scheduler {address}: not a Dask scheduler address; expected {scheme}://host:port, "
                           "e.g. tcp://127.0.0.1:8786")
    return f"{scheme}://{rest}"


def _reach(address: str, timeout: float) -> None:
    """Fail at once on a TCP address nothing listens on (or whose host does not resolve): Dask's
    connect would retry until its timeout and then say only that it timed out."""
    scheme, _, rest = address.partition("://")
    if scheme not in ("tcp", "tls", "ws", "wss"):
        return
    host, _, port = rest.rpartition(":")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as exc:
        raise BackendError(f"cannot reach the Dask scheduler at {address} ({exc.strerror or exc}); "
                           f"{START_HINT}") from None


def _probe(address: str, timeout: float) -> None:
    """One Dask handshake and ``identity`` request to ``address`` within ``timeout`` seconds.

    Raises :class:`BackendError` when nothing listens, the peer does not speak Dask's protocol
    (an HTTP server, a silent port) or answers as something other than a scheduler.
    """
    from distributed.comm import connect
    from distributed.security import Security

    async def identity() -> Any:
        comm = await connect(address, timeout=timeout, **Security().get_connection_args("client"))
        try:
            await comm.write({"op": "identity", "reply": True})
            return await comm.read()
        finally:
            comm.abort()

    outcome: dict[str, Any] = {}

    def run() -> None:
        # A fresh event loop in a thread of our own: the caller may be inside a running loop.
        try:
            outcome["reply"] = asyncio.run(asyncio.wait_for(identity(), timeout))
        except BaseException as exc:  # reported below as the reason the address is unusable
            outcome["error"] = exc

    thread = threading.Thread(target=run, name="matcli-dask-probe", daemon=True)
    thread.start()
    thread.join(timeout + 2.0)
    if thread.is_alive() or isinstance(outcome.get("error"), (asyncio.TimeoutError, TimeoutError)):
        raise BackendError(f"the address {address} accepted a connection but gave no Dask handshake within "
                           f"{timeout:g} s: it is not a Dask scheduler (or it is stuck); {START_HINT}")
    error = outcome.get("error")
    if error is not None:
        if isinstance(error, OSError) and "Timed out trying to connect" in str(error):
            raise BackendError(f"cannot reach the Dask scheduler at {address} (nothing answered within "
                               f"{timeout:g} s); {START_HINT}")
        reason = " ".join(str(error).split())[:200] or type(error).__name__
        raise BackendError(f"cannot reach a Dask scheduler at {address} ({type(error).__name__}: {reason}); "
                           f"{START_HINT}")
    reply = outcome.get("reply")
    kind = reply.get("type") if isinstance(reply, dict) else None
    if kind != "Scheduler":
        what = f"a Dask {kind.lower()}" if isinstance(kind, str) else "not a Dask scheduler"
        raise BackendError(f"{address} is {what}, not the scheduler; --scheduler takes the address `dask "
                           "scheduler` prints (tcp://host:8786 by default)")


def _client_within(distributed: Any, address: str, seconds: float) -> Any:
    """``distributed.Client(address)`` created within ``seconds`` (in a thread abandoned otherwise)."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            with warnings.catch_warnings():
                # A dask/distributed version mismatch is reported by the client as warnings; the
                # check that matters here (_check_workers) gives its own one-line error.
                warnings.simplefilter("ignore")
                outcome["client"] = distributed.Client(address, timeout=max(seconds, 1.0), set_as_default=False)
        except BaseException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=run, name="matcli-dask-connect", daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        raise BackendError(f"connecting to the Dask scheduler at {address} took more than {CONNECT_DEADLINE_S:g} s; "
                           "check that the scheduler is running and not overloaded")
    error = outcome.get("error")
    if error is not None:
        reason = " ".join(str(error).split())[:200] or type(error).__name__
        raise BackendError(f"cannot connect to the Dask scheduler at {address} ({type(error).__name__}: {reason}); "
                           f"{START_HINT}")
    return outcome["client"]


def _matcli_version_probe() -> Callable[[], tuple[str, str]]:
    """A function for ``client.run`` that imports matcli on the worker and reports its version.

    Built inside this function so that it is pickled by value: a worker without matcli can run it
    (a module-level function would be pickled by reference to this module, which that worker
    cannot import).
    """

    def probe() -> tuple[str, str]:
        try:
            import matcli
        except ImportError as exc:
            return ("missing", str(exc))
        return ("ok", str(getattr(matcli, "__version__", "unknown")))

    return probe


def _check_workers(client: Any, address: str) -> None:
    """Every worker imports this process's matcli version; else :class:`BackendError` naming them."""
    from matcli import __version__

    try:
        found = client.run(_matcli_version_probe(), on_error="return")
    except (OSError, TimeoutError) as exc:
        raise BackendError(f"the Dask workers at {address} did not answer the version check ({exc})") from None
    failed, missing, other = [], [], []
    for worker, answer in sorted(found.items()):
        if isinstance(answer, BaseException):
            failed.append(f"{worker} ({type(answer).__name__}: {' '.join(str(answer).split())[:120]})")
        elif answer[0] == "missing":
            missing.append(worker)
        elif answer[1] != __version__:
            other.append(f"{worker} has {answer[1]}")
    if failed:
        # The check is a function sent by value, which only the client's Python version can run.
        raise BackendError(f"the matcli version check failed on Dask worker{'s' if len(failed) > 1 else ''} "
                           f"{', '.join(failed)} (scheduler {address}); workers need a matcli {__version__} that "
                           f"imports, under this Python version ({sys.version_info.major}.{sys.version_info.minor})")
    if missing:
        raise BackendError(f"matcli is not installed on Dask worker{'s' if len(missing) > 1 else ''} "
                           f"{', '.join(missing)} (scheduler {address}); workers import matcli to run its tasks: "
                           f"install matcli {__version__} in the workers' environment")
    if other:
        raise BackendError(f"the Dask workers at {address} must run matcli {__version__} like this process, but "
                           f"{'; '.join(other)}; install the same version everywhere")


#: Start of the message a :class:`VersionedTask` raises on a worker with another matcli version.
VERSION_MISMATCH = "matcli version mismatch on this Dask worker"


class VersionedTask:
    """``fn`` as sent to the workers: before running, the worker's matcli must be ``version``.

    The connect check sees only the workers present then; a worker that joins afterwards (an
    autoscaling deployment, a restarted node) gets tasks without it. Such a worker without matcli
    cannot even unpickle this wrapper (ImportError); one with another version raises
    :data:`VERSION_MISMATCH`. :meth:`DaskBackend._map` turns both into a :class:`BackendError`.
    """

    def __init__(self, fn: Callable[..., Any], version: str):
        self.fn = fn
        self.version = version
        self.__name__ = getattr(fn, "__name__", type(fn).__name__)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        import matcli

        found = getattr(matcli, "__version__", "unknown")
        if found != self.version:
            raise RuntimeError(f"{VERSION_MISMATCH}: it has {found}, the client {self.version}")
        return self.fn(*args, **kwargs)


def _worker_code_error(error: BaseException, address: str) -> BackendError | None:
    """A :class:`BackendError` when a task failed because its worker lacks this matcli version."""
    from matcli import __version__

    text = " ".join(str(error).split())
    if isinstance(error, ImportError) and "matcli" in text or text.startswith(VERSION_MISMATCH):
        return BackendError(f"a Dask worker of {address} cannot run matcli {__version__} tasks ({text[:160]}); it "
                            f"probably joined after the version check: install matcli {__version__} on every "
                            "worker")
    return None


class DaskBackend(Backend):
    """:meth:`map` through a ``distributed.Client``; ``parallelism`` = worker threads of the cluster.

    Raises :class:`~matcli.core.errors.BackendError` when ``distributed`` is not installed, the
    address is not a usable scheduler address, the scheduler cannot be reached within
    :data:`CONNECT_DEADLINE_S`, it has no workers, a worker lacks this matcli version, or the
    local cluster fails to start.
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
        # Failures reach the user as one BackendError line; distributed's own log records of them
        # (tracebacks of a lost connection) would add lines to standard error.
        self._log_levels = _silence_logs()
        self._cluster = None
        self._client = None
        #: every worker imports this matcli (so it can run matcli functions)
        self._checked = False
        try:
            self._open(distributed, address)
        except BaseException:
            self.close()
            raise
        nthreads = self._client.nthreads()
        self.address = self._client.scheduler.address
        self.workers = len(nthreads)
        self.parallelism = sum(nthreads.values())
        self.startup_s = time.perf_counter() - started

    def _open(self, distributed: Any, address: str | None) -> None:
        """Connect to ``address`` (checked, within the deadline), or start a local cluster."""
        if address:
            address = check_address(address)
            deadline = time.monotonic() + CONNECT_DEADLINE_S
            _reach(address, PROBE_TIMEOUT_S)
            _probe(address, min(PROBE_TIMEOUT_S, deadline - time.monotonic()))
            self._client = _client_within(distributed, address, deadline - time.monotonic())
            self._wait_for_workers(min(WORKER_WAIT_S, max(deadline - time.monotonic(), 0.5)))
            _check_workers(self._client, address)
            self._checked = True
        else:
            try:
                # The scheduler's HTTP server always starts; a free local port avoids clashing with
                # (and warning about) another cluster on the default 8787.
                self._cluster = distributed.LocalCluster(
                    n_workers=_cores(), threads_per_worker=1, processes=True, dashboard_address="127.0.0.1:0",
                    silence_logs=logging.CRITICAL)
            except (OSError, TimeoutError, RuntimeError) as exc:
                raise BackendError(f"cannot start a local Dask cluster ({type(exc).__name__}: {exc}); "
                                   "use --backend local") from None
            self._client = distributed.Client(self._cluster, set_as_default=False)
            self._checked = True

    def _wait_for_workers(self, seconds: float) -> None:
        """Give a scheduler whose workers are still starting ``seconds`` to get one."""
        try:
            self._client.wait_for_workers(1, timeout=seconds)
        except (TimeoutError, OSError):
            raise BackendError(f"the Dask scheduler at {self._client.scheduler.address} has no workers; start some "
                               f"with `dask worker {self._client.scheduler.address}`") from None

    @property
    def client(self) -> Any:
        """The ``distributed.Client`` (for jobs that keep futures on the workers between maps)."""
        return self._client

    def _map(self, fn: Callable[..., Any], items: list[Any], shared: dict[str, Any]) -> list[Any]:
        futures = self._submit(fn, [(item,) for item in items], shared, placement=self._holders(items))
        self._wait(futures, fn, progress=True)
        return self._client.gather(futures)

    def resident(self, fn: Callable[..., Any], items: list[tuple[Any, ...]], *, spread: bool = False,
                 **shared: Any) -> list[Any]:
        """Futures of ``fn(*item, **shared)`` for each item, left on the workers once all are done.

        The tasks are submitted and watched like :meth:`map`'s (version check where they run, the
        no-worker deadline, one-line :class:`BackendError` for cluster failures; a task's own
        exception is raised unchanged), so a job can keep loaded data on the workers between maps
        and pass the futures as items of later :meth:`map` calls. Dask recomputes a lost future
        from the same arguments.

        ``spread``: the items go to the workers present now in consecutive runs of equal count
        (item i to worker ``i * workers // len(items)``), so each holds at most
        ``ceil(len(items) / workers)`` results; the placement is a preference (Dask's loose
        restriction), so the tasks of a worker lost later run on the others.
        """
        items = list(items)
        workers = sorted(self._client.nthreads()) if spread else []
        if len(workers) < 2:
            futures = self._submit(fn, items, shared)
        else:
            owner = [index * len(workers) // len(items) for index in range(len(items))]
            futures = self._submit(fn, items, shared, placement=[workers[k] for k in owner])
        self._wait(futures, fn, progress=False)
        return futures

    def keep(self, fn: Callable[..., Any], items: list[Any], **shared: Any) -> tuple[list[Any], list[Any]]:
        """Run ``fn(item, **shared)`` for each item, each returning ``(kept, reported)``: the futures
        of the ``kept`` parts, left on the workers, and the ``reported`` parts, in item order.

        A job keeps large intermediate results where they were computed (the vectors of an
        iteration beside the row blocks they come from) and receives only the small ones. Each
        task runs on the worker holding the first future inside its item (as :meth:`map`'s); the
        kept parts are ``getitem`` tasks of the results, so Dask recomputes a lost one from the
        task that made it (and that task's own arguments, futures included).
        """
        import operator

        items = list(items)
        if not items:
            return [], []
        placement = self._holders(items)
        futures = self._submit(fn, [(item,) for item in items], shared, placement=placement)

        def part(index: int) -> list[Any]:
            # beside their task (Dask would otherwise move a busy worker's results to an idle one)
            return [self._client.submit(operator.getitem, future, index, pure=False,
                                        **({} if placement is None or placement[i] is None else
                                           {"workers": [placement[i]], "allow_other_workers": True}))
                    for i, future in enumerate(futures)]

        kept, reported = part(0), part(1)
        # a task's exception reaches the getitem tasks that depend on it, unchanged
        self._wait(reported, fn, progress=False)
        self.tasks += len(items)
        return kept, self._client.gather(reported)

    def _holders(self, items: list[Any]) -> list[str | None] | None:
        """Per item, a worker holding the first future among its elements, or among the elements of
        its tuple and list elements (None: no future); None when no item has one.

        Dask would otherwise balance its queues by moving held data: from a busy worker's memory to
        an idle one, a block costs its transfer and a second copy (measured: a third of a pass's
        time on two workers, and workers over their share of the memory budget).
        """
        from distributed import Future

        def parts(item: Any):
            for part in (item if isinstance(item, tuple) else (item,)):
                yield from (part if isinstance(part, (tuple, list)) else (part,))

        first = [next((part for part in parts(item) if isinstance(part, Future)), None) for item in items]
        if all(future is None for future in first):
            return None
        where = self._client.who_has([future for future in first if future is not None])
        return [None if future is None else next(iter(where.get(future.key, ())), None) for future in first]

    def _submit(self, fn: Callable[..., Any], items: list[tuple[Any, ...]], shared: dict[str, Any],
                placement: list[str] | None = None) -> list[Any]:
        """One task per item (its arguments), each shared value one task of the graph; with
        ``placement`` (a worker address or None per item) each task prefers its worker (Dask's loose
        restriction: it runs elsewhere when that worker is gone)."""
        from matcli import __version__

        client = self._client
        # Each shared value is one task of the graph (sent once to each worker that needs it,
        # and recomputed like any task if the worker holding it is lost), unless it is small
        # (then an argument of every task); each item is an argument of its own task.
        with warnings.catch_warnings():
            # Values sent by value (arrays of the Python API) may make a large graph; that is
            # their only way to the workers, not something the user can act on.
            warnings.filterwarnings("ignore", message="Sending large graph")
            sent = {key: value if _small(value) else client.submit(_shared_value, value, pure=False)
                    for key, value in shared.items()}
            if not items:
                return []
            task = VersionedTask(fn, __version__)
            if placement is None:
                # one client.map (one message to the scheduler) for all tasks, an iterable per argument
                columns = [list(column) for column in zip(*items)]
                return client.map(task, *columns, pure=False, **sent)
            futures: list[Any] = [None] * len(items)
            for worker in dict.fromkeys(placement):  # one client.map per worker, in worker order
                indices = [i for i, where in enumerate(placement) if where == worker]
                columns = [list(column) for column in zip(*(items[i] for i in indices))]
                where = {} if worker is None else {"workers": [worker], "allow_other_workers": True}
                for i, future in zip(indices, client.map(task, *columns, pure=False, **where, **sent)):
                    futures[i] = future
            return futures

    def _wait(self, futures: list[Any], fn: Callable[..., Any], progress: bool) -> None:
        """Wait for every future; on a task's failure cancel the rest and raise its exception, on a
        cluster failure (or no workers for :data:`NO_WORKERS_S`) a one-line :class:`BackendError`."""
        from distributed import KilledWorker, as_completed

        client = self._client
        name = getattr(fn, "__name__", type(fn).__name__)
        task_error: BaseException | None = None
        watchdog = _NoWorkerWatch(client, NO_WORKERS_S)
        watchdog.start(futures)
        try:
            done = 0
            for future in as_completed(futures, loop=client.loop):
                if future.status == "cancelled":
                    future.result()  # raises the cancellation with its reason
                if future.status == "error":
                    error = future.exception()
                    if isinstance(error, KilledWorker):
                        raise error
                    task_error = _worker_code_error(error, self.address) or error
                    client.cancel(futures)
                    break
                done += 1
                if progress and self.progress is not None:
                    self.progress(done, len(futures))
        except (KilledWorker, CancelledError, TimeoutError, OSError) as exc:
            if watchdog.fired:
                raise BackendError(f"the Dask cluster at {self.address} had no workers for {NO_WORKERS_S:.0f} s "
                                   f"while running {name} (they were stopped, or the workers that joined "
                                   "cannot run matcli tasks: see their logs); retry, or use --backend local") \
                    from None
            if client.status != "running":
                raise BackendError(f"lost the connection to the Dask scheduler at {self.address} while running "
                                   f"{name}; check the scheduler, then retry (or use --backend local)") from None
            reason = " ".join(str(exc).split())[:200] or "no detail"
            raise BackendError(f"the Dask cluster at {self.address} failed while running {name} "
                               f"({type(exc).__name__}: {reason}); retry, or use --backend local") from None
        finally:
            watchdog.stop()
        if task_error is not None:
            raise task_error  # the task's own exception, unchanged

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "cluster": "local" if self._cluster is not None else "scheduler",
                "address": self.address, "workers": self.workers, "threads": self.parallelism,
                "startup_s": self.startup_s, "tasks": self.tasks}

    def close(self) -> None:
        # A cluster that already failed may not answer the goodbye; the job's outcome stands.
        with contextlib.suppress(OSError, TimeoutError):
            if self._client is not None:
                if self._checked and self._client.status == "running":
                    from matcli.backends.refs import clear_cache

                    # Workers outlive the job: drop the inputs they cached for it (a worker lost
                    # meanwhile took its cache with it).
                    with contextlib.suppress(Exception):
                        self._client.run(clear_cache)
                self._client.close()
            if self._cluster is not None:
                self._cluster.close()
        for name, level in self._log_levels.items():
            logging.getLogger(name).setLevel(level)
        self._log_levels = {}


class _NoWorkerWatch:
    """A thread that cancels ``futures`` once the cluster has had no worker for ``seconds``.

    A task whose workers all left waits in Dask for a new one; so does a task no worker can
    even unpickle (a worker that joined without matcli closes its connection). Cancelling makes
    the waiting map end; :attr:`fired` tells it why.
    """

    def __init__(self, client: Any, seconds: float):
        self.client = client
        self.seconds = seconds
        self.fired = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, futures: list[Any]) -> None:
        self._thread = threading.Thread(target=self._run, args=(futures,), daemon=True, name="matcli-no-workers")
        self._thread.start()

    def _run(self, futures: list[Any]) -> None:
        empty_since = None
        while not self._stop.wait(1.0):
            try:
                workers = len(self.client.nthreads())
            except Exception:  # noqa: BLE001 - a lost scheduler is the map's own error to report
                return
            if workers:
                empty_since = None
                continue
            empty_since = empty_since or time.monotonic()
            if time.monotonic() - empty_since >= self.seconds:
                self.fired = True
                with contextlib.suppress(Exception):
                    self.client.cancel(futures)
                return

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)


def _silence_logs() -> dict[str, int]:
    """Silence the ``distributed`` loggers of this process; return their levels before."""
    names = ["distributed", *(name for name in logging.root.manager.loggerDict if name.startswith("distributed."))]
    levels = {name: logging.getLogger(name).level for name in names}
    for name in names:
        logging.getLogger(name).setLevel(logging.CRITICAL + 1)
    return levels


#: Bytes up to which a shared array travels inside each task rather than as a task of its own.
SMALL_SHARED_BYTES = 2**16


def _small(value: Any) -> bool:
    """Whether a shared value is sent inside every task: a number, a short string, a small array
    (an iteration's n-vector), whose own task would cost each worker a fetch from its holder."""
    if value is None or isinstance(value, (bool, int, float, complex)):
        return True
    if isinstance(value, str):
        return len(value) <= SMALL_SHARED_BYTES
    nbytes = getattr(value, "nbytes", None)
    return type(value).__module__ == "numpy" and isinstance(nbytes, int) and nbytes <= SMALL_SHARED_BYTES


def _shared_value(value: Any) -> Any:
    """The task that holds one shared value of :meth:`DaskBackend._map` (its argument)."""
    return value


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
