"""The ``matcli`` console script: install the signal watcher, then run the CLI.

Kept apart from :mod:`matcli.cli.app` so that the process-wide signal handling is set up only
when matcli is its own process, never when the CLI runs inside another program (tests, notebooks).
"""

from __future__ import annotations

import os
import sys


def _reopen_closed_standard_streams() -> None:
    """Give a closed descriptor 0, 1 or 2 ``/dev/null``, and Python a stream for it.

    Otherwise the next file opened (an output's temporary file) would get that number, and whatever a
    C library prints to "stderr" would land inside the output. A closed standard output is remembered:
    the output policy refuses ``-`` then, instead of writing a result into /dev/null.
    """
    for fd, name, mode in ((0, "stdin", "r"), (1, "stdout", "w"), (2, "stderr", "w")):
        try:
            os.fstat(fd)
            continue
        except OSError:
            pass
        null = os.open(os.devnull, os.O_RDWR)
        if null != fd:
            os.dup2(null, fd)
            os.close(null)
        setattr(sys, name, open(fd, mode, closefd=False))
        if fd == 1:
            from matcli.io import output_policy

            output_policy.stdout_closed = True


#: OpenBLAS's idle threads spin 2^this cycles before sleeping (its default, 28, is ~0.1 s): at start-up
#: its pool's spin cost a tiny run a third of its CPU; 26 (~25 ms) still covers the gaps between the
#: back-to-back BLAS calls of a large job. Read when OpenBLAS loads, so set before numpy is imported;
#: a value the user set wins.
OPENBLAS_THREAD_TIMEOUT = "26"

#: numpy advises the kernel to back its large arrays with transparent huge pages; where the kernel
#: compacts memory synchronously to find them (this 2-core machine), each first touch of a fresh
#: array stalls: 0.4-3 s of system time in a 1e6-unknown Poisson run, 1.31 s of compute against
#: 0.78 s without. "0" turns the advice off; read when numpy loads; a value the user set wins.
NUMPY_MADVISE_HUGEPAGE = "0"


def console_main() -> None:
    """Entry point of the ``matcli`` console script and of ``python -m matcli``."""
    os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", OPENBLAS_THREAD_TIMEOUT)
    os.environ.setdefault("NUMPY_MADVISE_HUGEPAGE", NUMPY_MADVISE_HUGEPAGE)
    from matcli.cli import signals

    _reopen_closed_standard_streams()
    signals.install()
    from matcli.cli.app import main

    signals.exit_process(main())
