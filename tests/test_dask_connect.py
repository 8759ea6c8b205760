"""Connecting to a Dask scheduler, tested as processes: a hard deadline and one line for every
address that is no scheduler (a silent TCP port, an HTTP server, wrong schemes, a refused port),
and the matcli version check on real worker processes (tests/dask_cluster.py)."""

from __future__ import annotations

import http.server
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("distributed")

from tests.dask_cluster import Cluster  # noqa: E402

MATCLI = [sys.executable, "-m", "matcli"]
#: The deadline the backend promises for an address that is no scheduler (CONNECT_DEADLINE_S is
#: 20 s, the handshake 10 s of it); a loaded machine adds interpreter start-up to it.
DEADLINE_S = 30.0


def run_matcli(args: list, cwd: Path, timeout: float = 240.0, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*MATCLI, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env=env)


def one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


# ------------------------------------------------------------------ connecting
@pytest.fixture
def silent_port():
    """A TCP port that accepts connections and never sends a byte."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    server.close()


@pytest.fixture
def http_port():
    """The port of an HTTP server (what a dashboard address points to)."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_addresses_that_are_no_scheduler_fail_within_the_deadline_in_one_line(tmp_path, silent_port, http_port):
    subprocess.run([*MATCLI, "generate", "batch", "--n", "6", "--count", "2", "--seed", "1", "-o", "b.h5"],
                   cwd=tmp_path, check=True, capture_output=True)
    refused = socket.socket()
    refused.bind(("127.0.0.1", 0))
    refused_port = refused.getsockname()[1]  # bound, not listening: connections are refused
    addresses = {
        "silent": (f"tcp://127.0.0.1:{silent_port}", "gave no Dask handshake"),
        "http-port": (f"tcp://127.0.0.1:{http_port}", "gave no Dask handshake"),
        "http-scheme": (f"http://127.0.0.1:{http_port}", "is a web address"),
        "ucx": ("ucx://127.0.0.1:8786", "ucx:// needs UCX support"),
        "nonsense": ("nonsense", "not a Dask scheduler address"),
        "no-port": ("tcp://127.0.0.1", "not a Dask scheduler address"),
        "unknown-scheme": ("ftp://127.0.0.1:21", "unknown scheme ftp://"),
        "refused": (f"tcp://127.0.0.1:{refused_port}", "cannot reach the Dask scheduler"),
    }
    # All at once, the two that wait for a handshake first: each is bounded by the deadline on
    # its own, measured from its own start.
    procs, started = {}, {}
    for name, (address, _) in addresses.items():
        started[name] = time.monotonic()
        procs[name] = subprocess.Popen([*MATCLI, "solve", "b.h5:/systems", "--batch", "--backend", "dask",
                                        "--scheduler", address, "-o", f"x_{name}.h5"],
                                       cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for name, proc in procs.items():
            _, stderr = proc.communicate(timeout=120)
            elapsed = time.monotonic() - started[name]
            address, expected = addresses[name]
            assert proc.returncode == 6, (name, stderr)
            line = one_line(stderr)
            assert line.startswith("matcli: error: ") and expected in line and address in line, (name, line)
            assert elapsed < DEADLINE_S, (name, elapsed)
            assert not (tmp_path / f"x_{name}.h5").exists()
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        refused.close()


# ------------------------------------------------------------------ versions
def _python_without_site(pythonpath: list[Path]) -> tuple[list[str], dict]:
    """A command line and environment that run this interpreter without the ``site`` module
    (``-S``: the editable install's import hook in a .pth file is not loaded, so ``import matcli``
    finds only what ``pythonpath`` offers) but with the installed packages (dask, numpy) on
    PYTHONPATH."""
    import sysconfig

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([*map(str, pythonpath), sysconfig.get_paths()["purelib"]])}
    return [sys.executable, "-S"], env


def test_workers_without_matcli_or_with_another_version_are_one_line_backend_errors(tmp_path):
    """Real worker processes: one started so that it cannot import matcli at all, one whose
    ``import matcli`` finds a stand-in package declaring version 0.0.1 (a different install), one
    whose stand-in raises on import (a broken install)."""
    import matcli

    stub = tmp_path / "other_matcli"
    (stub / "matcli").mkdir(parents=True)
    (stub / "matcli" / "__init__.py").write_text('__version__ = "0.0.1"\n')
    subprocess.run([*MATCLI, "generate", "batch", "--n", "6", "--count", "2", "--seed", "1", "-o", "b.h5"],
                   cwd=tmp_path, check=True, capture_output=True)
    with Cluster(tmp_path / "cluster", workers=0) as cluster:
        python, env = _python_without_site([])
        missing = cluster.add_worker("nomatcli", env=env, python=python)
        cluster.wait_for_workers(1)
        args = ["solve", "b.h5:/systems", "--batch", "-m", "lu", "--backend", "dask", "--scheduler", cluster.address,
                "-o", "x.h5"]
        proc = run_matcli(args, tmp_path)
        line = one_line(proc.stderr)
        assert proc.returncode == 6 and "matcli is not installed on Dask worker tcp://127.0.0.1:" in line, line
        assert f"install matcli {matcli.__version__}" in line

        python, env = _python_without_site([stub])
        cluster.add_worker("oldmatcli", env=env, python=python)
        cluster.wait_for_workers(2)
        os.killpg(missing.pid, signal.SIGTERM)
        missing.wait(timeout=60)
        _wait_until(lambda: cluster.worker_count() == 1)
        proc = run_matcli(args, tmp_path)
        line = one_line(proc.stderr)
        assert proc.returncode == 6, proc.stderr
        assert f"must run matcli {matcli.__version__}" in line and "has 0.0.1" in line, line
        assert not (tmp_path / "x.h5").exists()

        # an install whose import fails with something other than ImportError
        (stub / "matcli" / "__init__.py").write_text('raise RuntimeError("half-installed")\n')
        python, env = _python_without_site([stub])
        cluster.add_worker("brokenmatcli", env=env, python=python)
        cluster.wait_for_workers(2)
        proc = run_matcli(args, tmp_path)
        line = one_line(proc.stderr)
        assert proc.returncode == 6, proc.stderr
        assert "the matcli version check failed on Dask worker" in line and "RuntimeError: half-installed" in line
        assert not (tmp_path / "x.h5").exists()


def _wait_until(condition, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.2)


def test_losing_the_scheduler_mid_run_is_a_one_line_backend_error(tmp_path):
    """The scheduler process is killed (SIGKILL) while a task runs: the run ends with a
    BackendError saying the connection was lost, not a hang and not distributed's traceback."""
    from matcli.backends import get_backend
    from matcli.core.errors import BackendError

    with Cluster(tmp_path / "cluster", workers=1) as cluster:
        scheduler = cluster.procs[0]

        def kill_when_busy() -> None:
            with cluster.client() as client:
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline and not any(client.processing().values()):
                    time.sleep(0.05)
            os.killpg(scheduler.pid, signal.SIGKILL)

        killer = threading.Thread(target=kill_when_busy)
        started = time.monotonic()
        with get_backend("dask", cluster.address) as backend:
            killer.start()
            with pytest.raises(BackendError) as info:
                backend.map(time.sleep, [120])
        killer.join()
        assert time.monotonic() - started < 60
        assert str(info.value) == (f"lost the connection to the Dask scheduler at {cluster.address} while running "
                                   "sleep; check the scheduler, then retry (or use --backend local)")
