"""What every reader checks before it parses: the file is a regular file, and what it declares
fits the memory budget; HDF5 links leave the file only with the user's opt-in.

The runner installs one :class:`InputPolicy` for the duration of a job (:func:`input_policy`);
readers ask :func:`current_policy` instead of taking the policy as an argument through every layer.
Outside a run (the Python API, tests) the default policy applies: the default budget, no external
links.
"""

from __future__ import annotations

import os
import stat
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Iterator

from matcli.core.errors import InputError, ResourceError
from matcli.core.memory import default_budget, mib


@dataclass(frozen=True)
class InputPolicy:
    """Limits on what inputs may ask of the process.

    ``max_memory``: bytes an input may take once decoded (dense arrays, sparse index arrays,
    decompressed text); ``None`` means the default budget, read when first needed.
    ``allow_external``: follow HDF5 external links, virtual datasets and soft links that leave
    the file (``--allow-external-links``).
    """

    max_memory: int | None = None
    allow_external: bool = False

    @property
    def budget(self) -> int:
        return self.max_memory if self.max_memory is not None else default_budget()


_POLICY: ContextVar[InputPolicy] = ContextVar("matcli_input_policy", default=InputPolicy())


def current_policy() -> InputPolicy:
    """The policy of the run in progress (the default policy outside a run)."""
    return _POLICY.get()


@contextmanager
def input_policy(policy: InputPolicy) -> Iterator[InputPolicy]:
    """Install ``policy`` for the readers called inside the ``with`` block."""
    token = _POLICY.set(policy)
    try:
        yield policy
    finally:
        _POLICY.reset(token)


_KINDS = ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a directory"))


def file_kind(mode: int) -> str | None:
    """A description of a non-regular file's kind from ``st_mode``; None for a regular file."""
    for test, name in _KINDS:
        if test(mode):
            return name
    return None if stat.S_ISREG(mode) else "not a regular file"


def regular_file(path: str) -> os.stat_result:
    """``os.stat`` of ``path`` after checking it is a readable regular file.

    FIFOs, devices (``/dev/zero``), sockets and directories are refused: they can block forever or
    never end. Raises :class:`InputError` (exit 4) naming the file.
    """
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise InputError(path, "file not found") from None
    except OSError as exc:
        raise InputError(path, f"cannot access file ({exc.strerror})") from None
    kind = file_kind(info.st_mode)
    if kind is not None:
        raise InputError(path, f"is {kind}, expected a regular file")
    if not os.access(path, os.R_OK):
        raise InputError(path, "file is not readable (permission denied)")
    return info


def check_allocation(path: str | None, nbytes: float, what: str) -> None:
    """Raise :class:`ResourceError` (exit 7) when ``what`` would take more than the memory budget.

    Call it with the size a file *declares* before allocating for it, so that a tiny file declaring
    a huge matrix fails at once instead of after minutes of swapping. ``path`` names the file to
    blame, or is None for sizes an option asked for.
    """
    budget = current_policy().budget
    if nbytes > budget:
        raise ResourceError(path, f"{what} would need {mib(nbytes)}, more than the memory budget of "
                                  f"{mib(budget)} (raise it with --max-memory or $MATCLI_MAX_MEMORY)")
