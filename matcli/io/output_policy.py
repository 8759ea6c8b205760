"""The one policy every path matcli writes goes through, checked before any work is done.

Each written file is a :class:`Target`: the flag that named it (``-o``, ``--report``, ``--plot``,
``--predictions-out``) and its path. :func:`check_targets` refuses, with exit 5 (``OutputError``)
or exit 2 (``UsageError``) and before any input is read:

- a target that is one of the inputs (the same file after symlinks, hard links and ``..``);
- two targets naming the same file;
- an existing target without ``--force``;
- a target that exists and is not a regular file (device, FIFO, socket, directory), even with
  ``--force``: replacing ``/dev/null`` by an HDF5 file is never what was meant;
- a missing, non-directory, read-only or unwritable parent folder; a file name over the file
  system's limit;
- ``-`` (standard output) for a target whose format cannot go there, or for two targets at once.

What is checked here can still change before the write (another process may create the file):
:mod:`matcli.io.atomic` publishes without clobbering, so that race ends in exit 5 too.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterable

from matcli.core.errors import OutputError, UsageError
from matcli.io.guard import file_kind

STDOUT = "-"
#: Set by the console script when descriptor 1 was closed at start (it now points at /dev/null).
stdout_closed = False


@dataclass(frozen=True)
class Target:
    """A file the run will write: the ``flag`` that named it, its ``path``, and whether ``-``
    (standard output) is a valid destination for its format (``stdout_format``, e.g. "JSON")."""

    flag: str
    path: str
    stdout_format: str | None = None


def name_limit(folder: str) -> int:
    """The longest file name (in bytes) the file system of ``folder`` allows (255 if unknown)."""
    try:
        return os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError):
        return 255


def _identity(path: str) -> tuple[int, int] | None:
    """(device, inode) of the file ``path`` finally names, None when it does not exist."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_dev, info.st_ino


def _check_stdout(targets: list[Target]) -> None:
    to_stdout = [t for t in targets if t.path == STDOUT]
    for target in to_stdout:
        if target.stdout_format is None:
            raise UsageError(f"{target.flag} -: this output cannot go to standard output (give a file name)")
    if to_stdout and stdout_closed:
        raise OutputError(STDOUT, f"{to_stdout[0].flag} -: standard output is closed")
    if len(to_stdout) > 1:
        flags = " and ".join(t.flag for t in to_stdout)
        raise UsageError(f"{flags} both name standard output ('-'); give one of them a file name")


def _check_folder(target: Target) -> str:
    """The target's parent folder after checking it exists, is a folder and can take a new file."""
    path = target.path
    if not path or path.endswith(os.sep) or os.path.basename(path) in ("", ".", ".."):
        raise OutputError(path, f"{target.flag} names a folder, expected a file name")
    folder = os.path.dirname(path) or "."
    if not os.path.exists(folder):
        raise OutputError(path, f"folder {folder} does not exist")
    if not os.path.isdir(folder):
        raise OutputError(path, f"{folder} is not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(path, f"folder {folder} is not writable")
    try:
        read_only = bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except (OSError, AttributeError):
        read_only = False
    if read_only:
        raise OutputError(path, f"folder {folder} is on a read-only file system")
    name = os.path.basename(path)
    limit = name_limit(folder)
    if len(os.fsencode(name)) > limit:
        raise OutputError(path, f"file name is {len(os.fsencode(name))} bytes, over this file system's limit of {limit}")
    return folder


def _check_existing(target: Target, force: bool) -> None:
    path = target.path
    try:
        info = os.stat(path)
    except FileNotFoundError:
        if os.path.islink(path) and not force:
            raise OutputError(path, "exists (a dangling symbolic link); pass --force to replace it") from None
        return
    except OSError as exc:
        raise OutputError(path, f"cannot inspect the existing file ({exc.strerror})") from None
    kind = file_kind(info.st_mode)
    if kind is not None:
        raise OutputError(path, f"is {kind}; matcli writes only regular files (even with --force)")
    if not force:
        raise OutputError(path, "output exists; pass --force to overwrite")


def _same_file_key(path: str) -> tuple[int, int] | str:
    """What two names of one file share: (device, inode) when it exists, else its real path."""
    return _identity(path) or os.path.realpath(path)


def check_targets(targets: Iterable[Target], inputs: Iterable[str], force: bool) -> None:
    """Apply the output policy (module docstring) to every target; raise on the first violation.

    ``inputs`` are the file paths the run reads (missing ones are ignored: reading reports them).
    """
    targets = [t for t in targets if t.path is not None]
    _check_stdout(targets)
    files = [t for t in targets if t.path != STDOUT]
    input_keys = {}
    for item in inputs:
        if item and item != STDOUT:
            input_keys.setdefault(_same_file_key(item), item)
    seen: dict[tuple[int, int] | str, Target] = {}
    for target in files:
        _check_folder(target)
        key = _same_file_key(target.path)
        if key in input_keys:
            raise OutputError(target.path, f"{target.flag} would overwrite an input file ({input_keys[key]})")
        if key in seen:
            raise OutputError(target.path, f"{seen[key].flag} and {target.flag} name the same file")
        seen[key] = target
        _check_existing(target, force)
