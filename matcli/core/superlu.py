"""SuperLU (``scipy.sparse.linalg.splu`` / ``spilu``) without its messages on our stderr.

When SuperLU cannot allocate it prints a line such as ``Can't expand MemType 0: jcol 29205`` to the
process's file descriptor 2 from C, then scipy raises :class:`MemoryError`. matcli promises one
line per error, so the factorizations run with descriptor 2 pointed at an unnamed temporary file;
what SuperLU wrote becomes part of the exception, which the CLI reports as exit 7 (resource).
"""

from __future__ import annotations

import os
import sys
import tempfile
from contextlib import contextmanager
from typing import Any, Iterator


@contextmanager
def _captured_fd2() -> Iterator[list[str]]:
    """Route descriptor 2 into a temporary file; yields a list that gets its text on exit."""
    captured: list[str] = []
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):
        yield captured
        return
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield captured
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            captured.append(sink.read(4096).decode("utf-8", "replace").strip())


def _run(function, *args: Any, **kwargs: Any):
    result, failed = None, False
    with _captured_fd2() as captured:
        try:
            result = function(*args, **kwargs)
        except MemoryError:
            failed = True
    message = " ".join(captured[0].split()) if captured and captured[0] else ""
    if failed:
        raise MemoryError(f"SuperLU ran out of memory{f' ({message})' if message else ''}")
    if message:  # not SuperLU's to hide: another thread may have written while fd 2 was redirected
        print(message, file=sys.stderr)
    return result


def splu(A, **kwargs: Any):
    """:func:`scipy.sparse.linalg.splu` with SuperLU's C messages folded into a MemoryError."""
    from scipy.sparse.linalg import splu as scipy_splu

    return _run(scipy_splu, A, **kwargs)


def spilu(A, **kwargs: Any):
    """:func:`scipy.sparse.linalg.spilu` with SuperLU's C messages folded into a MemoryError."""
    from scipy.sparse.linalg import spilu as scipy_spilu

    return _run(scipy_spilu, A, **kwargs)
