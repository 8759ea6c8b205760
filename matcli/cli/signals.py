"""Ending a run on SIGINT, SIGTERM or SIGHUP: at once, with one line, and no file left behind.

Python runs signal handlers in the main thread between bytecodes, so a handler alone would wait
for a long LAPACK or HDF5 call to return. Instead, Python's C-level handler writes the signal
number to a wakeup pipe (:func:`signal.set_wakeup_fd`) as soon as the signal arrives, and a watcher
thread blocked on that pipe removes this process's temporary files
(:data:`matcli.io.atomic.LIVE_TEMPS`), prints one line and ends the process with ``128 + signal``
(130, 143, 129), the code a shell reports for a process killed by that signal.

The watcher takes :data:`matcli.io.atomic.TEMP_LOCK`, which publishing an output also holds, so an
output is either published whole before the process ends or not at all; the one line names the
outputs published before the signal (``-o`` may be written while ``--report`` is not yet).
"""

from __future__ import annotations

import os
import shutil
import signal
import threading

from matcli.io.atomic import LIVE_TEMPS, PUBLISHED, TEMP_LOCK

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _ignore(signum: int, frame: object) -> None:
    """The Python-level handler: nothing to do, the watcher thread acts on the wakeup byte."""


def _watch(read_fd: int) -> None:
    while True:
        try:
            data = os.read(read_fd, 1)
        except InterruptedError:
            continue
        if not data:
            return
        signum = data[0]
        if signum in SIGNALS:
            stop(signum)


def stop(signum: int) -> None:
    """Remove live temporary files, print one line (after restoring a terminal the progress display
    was drawing on), and end the process with ``128 + signum``."""
    with TEMP_LOCK:
        for path in list(LIVE_TEMPS):
            try:
                if os.path.isdir(path) and not os.path.islink(path):
                    shutil.rmtree(path)  # a .zarr store's temporary directory
                else:
                    os.unlink(path)
            except OSError:
                pass
        name = signal.Signals(signum).name
        done = (f"after writing {', '.join(PUBLISHED)} (whole); nothing else was published" if PUBLISHED
                else "no output was published")
        # a progress display on a terminal hides the cursor and owns the current line: clear the line
        # and show the cursor again, since the display gets no chance to
        restore = "\r\x1b[2K\x1b[?25h" if _is_terminal(2) else ""
        try:
            os.write(2, f"{restore}matcli: stopped by {name}; {done}\n".encode())
        except OSError:
            pass
        os._exit(128 + signum)


def _is_terminal(fd: int) -> bool:
    try:
        return os.isatty(fd)
    except OSError:
        return False


def exit_process(code: int) -> None:
    """End the console script with ``code`` after flushing standard output and error, without the
    interpreter's finalization: finalization stops the watcher thread and restores the default signal
    actions, so a signal arriving then killed the process with no line. Until ``os._exit`` the watcher
    still acts (exit ``128 + signal``, its line naming the outputs already published whole). A standard
    output closed by then (``| head``) makes a successful run exit 141, as everywhere else."""
    import errno
    import sys

    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except OSError as exc:
            if exc.errno == errno.EPIPE and code == 0:
                code = 141
        except ValueError:  # a stream closed by the program
            pass
    os._exit(code)


def install() -> None:
    """Route SIGINT, SIGTERM and SIGHUP to the watcher thread (main thread of the CLI process only)."""
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
    for signum in SIGNALS:
        signal.signal(signum, _ignore)
    threading.Thread(target=_watch, args=(read_fd,), name="matcli-signals", daemon=True).start()
