"""String attributes of HDF5 objects (a sparse group's ``encoding-type``), read so that a corrupt
file cannot hang the process.

A variable-length string lives in a global heap collection. The HDF5 library (2.0.0 at least)
loops forever on a collection whose free-space object declares size 0: no error, no way to
interrupt the call. Where the platform can fork, such a string is therefore read in a forked
child (a copy of this process: no start-up cost, the file already open) that writes it back through
a pipe; a child that has not answered within :data:`TIMEOUT` seconds is killed and the file is
reported as corrupt.
"""

from __future__ import annotations

import os
import select
import signal
import time

import h5py

from matcli.core.errors import InputError

#: seconds a string attribute may take to read; a sound one takes microseconds
TIMEOUT = 5.0
#: longest string returned (ample for encoding names; the pipe takes it in one write)
MAX_BYTES = 4096


def string_attribute(path: str, obj: h5py.Group | h5py.Dataset, key: str) -> str:
    """The scalar string attribute ``key`` of ``obj`` (the caller has checked its type and shape),
    decoded as UTF-8 and cut at :data:`MAX_BYTES` bytes. InputError when reading it does not end."""
    info = h5py.check_string_dtype(obj.attrs.get_id(key).dtype)
    if info is None or info.length is not None or not hasattr(os, "fork"):
        return _decoded(obj.attrs[key])
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: read, answer, leave without running the parent's exit handlers
        status = 1
        try:
            os.close(read_end)
            os.write(write_end, _decoded(obj.attrs[key]).encode("utf-8", "replace")[:MAX_BYTES])
            status = 0
        finally:
            os._exit(status)
    os.close(write_end)
    answer = None
    try:
        answer = _answer(read_end, time.monotonic() + TIMEOUT)
    finally:
        os.close(read_end)
        if answer is None:
            os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
    if answer is None:
        raise InputError(path, f"reading attribute {key} of {obj.name} did not end within {TIMEOUT:g} s "
                               "(corrupt HDF5 global heap)")
    if status != 0:  # the read failed in the child: fail the same way here, where it can be reported
        return _decoded(obj.attrs[key])
    return answer.decode("utf-8", "replace")


def _answer(fd: int, deadline: float) -> bytes | None:
    """Everything written to ``fd`` until the writer closes it, or None at ``deadline``."""
    chunks = []
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
            return None
        chunk = os.read(fd, MAX_BYTES)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def _decoded(value: object) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
