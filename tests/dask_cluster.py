"""A real Dask cluster for tests: a ``dask scheduler`` and ``dask worker`` processes on 127.0.0.1.

Every process is started here (each in its own session, so its nanny and worker child end
together) and stopped by its process group id when the test is done. Ports are chosen by the
scheduler (``--port 0``) and read from its scheduler file.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

#: Seconds a loaded machine may take to start a scheduler or a worker.
START_TIMEOUT_S = 90.0
DASK = [sys.executable, "-m", "distributed.cli.dask_scheduler"]
WORKER = [sys.executable, "-m", "distributed.cli.dask_worker"]


class Cluster:
    """``dask scheduler`` + ``workers`` x ``dask worker --nthreads 1`` (each with a nanny)."""

    def __init__(self, root: Path, workers: int = 2):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.procs: list[subprocess.Popen] = []
        self.scheduler_file = self.root / "scheduler.json"
        self.procs.append(self._spawn(DASK + ["--host", "127.0.0.1", "--port", "0", "--dashboard-address",
                                              "127.0.0.1:0", "--scheduler-file", str(self.scheduler_file),
                                              "--no-show"], "scheduler"))
        try:
            self.address = self._wait_for_address()
            for index in range(workers):
                self.add_worker(f"worker{index}")
            if workers:
                self.wait_for_workers(workers)
        except BaseException:
            self.close()  # no process outlives a cluster that failed to start
            raise

    def _spawn(self, argv: list[str], name: str, env: dict | None = None, cwd: Path | None = None,
               python: list[str] | None = None) -> subprocess.Popen:
        log = open(self.root / f"{name}.log", "wb")
        if python is not None:
            argv = python + argv[1:]
        return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                env=env, cwd=cwd or self.root)

    def _wait_for_address(self) -> str:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.scheduler_file.exists():
                try:
                    return json.loads(self.scheduler_file.read_text())["address"]
                except (ValueError, KeyError):
                    pass
            if self.procs[0].poll() is not None:
                break
            time.sleep(0.1)
        raise RuntimeError(f"dask scheduler did not start: {(self.root / 'scheduler.log').read_text()[-2000:]}")

    def add_worker(self, name: str, env: dict | None = None, python: list[str] | None = None) -> subprocess.Popen:
        """Start one ``dask worker`` (``python``: the interpreter command line to run it with)."""
        proc = self._spawn(WORKER + [self.address, "--host", "127.0.0.1", "--nthreads", "1", "--no-dashboard",
                                     "--death-timeout", "120", "--name", name], name, env=env, python=python)
        self.procs.append(proc)
        return proc

    def client(self):
        import distributed

        return distributed.Client(self.address, timeout=START_TIMEOUT_S, set_as_default=False)

    def wait_for_workers(self, count: int) -> None:
        with self.client() as client:
            client.wait_for_workers(count, timeout=START_TIMEOUT_S)

    def worker_count(self) -> int:
        with self.client() as client:
            return len(client.nthreads())

    def worker_pids(self) -> dict[str, int]:
        """Worker address -> pid of the worker process (the nanny's child)."""
        with self.client() as client:
            return client.run(os.getpid)

    def close(self) -> None:
        for proc in reversed(self.procs):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in reversed(self.procs):
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=20)

    def __enter__(self) -> "Cluster":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
