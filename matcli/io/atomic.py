"""Atomic file creation: write to a temporary file in the target folder, fsync, then rename.

A reader never sees a half-written output, and a failed run leaves no output behind.
"""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from matcli.core.errors import OutputError


def check_output_path(path: str, inputs: list[str], force: bool) -> None:
    """Refuse to write over an input, or over an existing file unless ``force``.

    Raises :class:`OutputError` (exit 5) before any work is done.
    """
    target = Path(path)
    try:
        resolved = target.resolve()
    except OSError as exc:
        raise OutputError(path, f"cannot resolve output path ({exc.strerror})") from None
    for item in inputs:
        try:
            if Path(item).resolve() == resolved:
                raise OutputError(path, "output would overwrite an input file")
        except OSError:
            continue
    if target.is_dir():
        raise OutputError(path, "output path is a directory")
    if target.exists() and not force:
        raise OutputError(path, "output exists; pass --force to overwrite")
    parent = target.parent if str(target.parent) else Path(".")
    if not parent.is_dir():
        raise OutputError(path, f"folder {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise OutputError(path, f"folder {parent} is not writable")


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_write(path: str) -> Iterator[str]:
    """Yield a temporary path beside ``path``; on clean exit fsync it and rename it onto ``path``.

    The temporary name keeps the final suffix (writers such as ``scipy.io.mmwrite`` look at it).
    On any exception the temporary file is removed and the exception propagates.
    """
    target = Path(path)
    parent = target.parent if str(target.parent) else Path(".")
    suffix = "".join(target.suffixes[-2:]) if target.name.endswith(".gz") else target.suffix
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=f".tmp{suffix}", dir=parent)
    except OSError as exc:
        raise OutputError(path, f"cannot create a temporary file ({exc.strerror})") from None
    os.close(fd)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_current_umask())
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    try:
        dir_fd = os.open(parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass
