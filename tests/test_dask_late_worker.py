"""Workers that join after the connect-time version check, and a cluster that loses every worker.

Real processes (tests/dask_cluster.py): the backend connects while only a good worker is there;
then a worker with another matcli joins and the good worker is stopped, so every task lands on the
newcomer. A copy of this matcli declaring version 0.0.1 runs the task wrapper and refuses (one
BackendError naming the cause); a stand-in without ``matcli.backends`` cannot unpickle the task,
its worker closes, and the map fails once the cluster has had no worker for NO_WORKERS_S instead of
waiting for ever as Dask would.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import sysconfig
import time
from pathlib import Path

import pytest

pytest.importorskip("distributed")

import matcli  # noqa: E402
from matcli.backends import dask as dask_backend  # noqa: E402
from matcli.backends.dask import VERSION_MISMATCH, DaskBackend, VersionedTask, _shared_value  # noqa: E402
from matcli.core.errors import BackendError  # noqa: E402
from tests.dask_cluster import Cluster  # noqa: E402


def _double(x: int) -> int:
    return 2 * x


def test_versioned_task_runs_with_the_same_version_and_refuses_another():
    assert VersionedTask(_double, matcli.__version__)(21) == 42
    with pytest.raises(RuntimeError, match=VERSION_MISMATCH):
        VersionedTask(_double, "0.0.0-other")(21)


def _other_matcli(root: Path, whole_copy: bool) -> Path:
    """A directory whose ``matcli`` is this one declaring 0.0.1 (``whole_copy``), or a bare stand-in."""
    target = root / "matcli"
    if whole_copy:
        shutil.copytree(Path(matcli.__file__).parent, target, ignore=shutil.ignore_patterns("__pycache__"))
        init = target / "__init__.py"
        init.write_text(init.read_text().replace(f'__version__ = "{matcli.__version__}"', '__version__ = "0.0.1"'))
    else:
        target.mkdir(parents=True)
        (target / "__init__.py").write_text('__version__ = "0.0.1"\n')
    return root


def _swap_in_late_worker(cluster: Cluster, backend: DaskBackend, other: Path) -> None:
    """Check the backend works, add a worker importing ``other``'s matcli, stop the good worker."""
    good = cluster.procs[-1]
    assert backend.map(_shared_value, [1, 2, 3]) == [1, 2, 3]  # a function the scheduler can import
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(other), sysconfig.get_paths()["purelib"]])}
    cluster.add_worker("late", env=env, python=[sys.executable, "-S"])  # -S: no editable-install hook
    cluster.wait_for_workers(2)
    os.killpg(good.pid, signal.SIGTERM)
    good.wait(timeout=60)
    deadline = time.monotonic() + 60
    while cluster.worker_count() != 1:
        assert time.monotonic() < deadline, "the good worker did not leave"
        time.sleep(0.2)


@pytest.mark.parametrize("whole_copy", [True, False], ids=["other-version", "no-matcli-backends"])
def test_a_worker_joining_after_the_check_fails_the_run_in_one_line(tmp_path, monkeypatch, whole_copy):
    monkeypatch.setattr(dask_backend, "NO_WORKERS_S", 3.0)
    other = _other_matcli(tmp_path / "other", whole_copy)
    with Cluster(tmp_path / "cluster", workers=1) as cluster:
        backend = DaskBackend(cluster.address)
        try:
            _swap_in_late_worker(cluster, backend, other)
            started = time.monotonic()
            with pytest.raises(BackendError) as caught:
                backend.map(_shared_value, [1, 2, 3])
            waited = time.monotonic() - started
        finally:
            backend.close()
    message = str(caught.value)
    assert "\n" not in message and cluster.address in message, message
    if whole_copy:
        assert "probably joined after the version check" in message and "it has 0.0.1" in message, message
    else:
        assert "had no workers for 3 s" in message, message
        assert waited < 60, waited
