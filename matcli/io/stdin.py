"""A MatrixMarket matrix from standard input (``-`` where a file is expected).

The bytes are copied once into a private unlinked temporary file (never visible in the filesystem,
gone when the process ends), decompressed on the way when they start with the gzip magic, and capped
at :data:`TEXT_PER_BUDGET` times the memory budget; the MatrixMarket reader then reads that copy
exactly as it reads a file (its size checks, its error lines), and every error names ``<stdin>``.
Standard input can be read once per process; a terminal is refused instead of waiting for typing.
"""

from __future__ import annotations

import sys
import tempfile
import zlib
from typing import BinaryIO, Callable, TypeVar

from matcli.core.errors import InputError, ResourceError, UsageError
from matcli.core.memory import mib
from matcli.io.guard import current_policy

STDIN = "-"
NAME = "<stdin>"

#: Text bytes accepted per byte of memory budget (MatrixMarket text takes ~2-4 bytes per byte of values).
TEXT_PER_BUDGET = 4
_CHUNK = 2**20
_GZIP_MAGIC = b"\x1f\x8b"

T = TypeVar("T")
_copies: list[BinaryIO] = []


def read_from_stdin(read: Callable[[str], T]) -> T:
    """``read(path)`` on a private copy of standard input; errors name ``<stdin>``."""
    path = _copy_stdin()
    try:
        return read(path)
    except InputError as exc:
        raise InputError(NAME, exc.defect) from None
    except ResourceError as exc:
        raise ResourceError(NAME, exc.defect) from None


def _copy_stdin() -> str:
    """Path of the private copy (``/proc/self/fd/N``) of all of standard input."""
    if _copies:
        raise UsageError("standard input ('-') can be read only once per run")
    source = sys.stdin.buffer if sys.stdin is not None else None
    if source is None:
        raise InputError(NAME, "standard input is closed")
    if source.isatty():
        raise InputError(NAME, "standard input is a terminal; pipe or redirect a MatrixMarket file into it")
    cap = TEXT_PER_BUDGET * current_policy().budget
    copy = tempfile.TemporaryFile()
    _copies.append(copy)
    first = source.read(_CHUNK)
    inflate = zlib.decompressobj(16 + zlib.MAX_WBITS) if first.startswith(_GZIP_MAGIC) else None
    written = 0
    chunk = first
    try:
        while chunk:
            data = inflate.decompress(chunk, cap + 1 - written) if inflate else chunk
            written += len(data)
            if written > cap:
                raise ResourceError(NAME, f"standard input holds more than {mib(cap)} of text, more than a matrix "
                                          f"within the memory budget of {mib(current_policy().budget)} needs "
                                          "(raise it with --max-memory)")
            copy.write(data)
            if inflate and inflate.unconsumed_tail:
                chunk = inflate.unconsumed_tail
                continue
            chunk = source.read(_CHUNK)
        if inflate and not inflate.eof:
            raise InputError(NAME, "gzip stream cut short")
    except zlib.error as exc:
        raise InputError(NAME, f"corrupt gzip stream ({exc})") from None
    if written == 0:
        raise InputError(NAME, "standard input is empty")
    copy.flush()
    return f"/proc/self/fd/{copy.fileno()}"
