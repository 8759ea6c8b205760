"""Atomic, exclusive creation of a Zarr directory store: write a temporary sibling directory, then
rename it into place.

The counterpart of :mod:`matcli.io.atomic` for outputs that are directories. The temporary
directory is ``.matcli-<digest>-<pid>-<random>.tmpdir`` beside the output; publishing is
``renameat2(RENAME_NOREPLACE)`` (a plain ``rename`` would replace an empty directory), so two runs
cannot both win. With ``--force`` an existing *Zarr store* is replaced (moved aside, the new one
renamed in, the old one removed); anything else at that name is never replaced. Temporary
directories of processes that no longer run are removed by the next run writing the same output.
"""

from __future__ import annotations

import os
import secrets
import shutil
import stat
from contextlib import contextmanager
from typing import Iterator

from matcli.core.errors import OutputError
from matcli.io.atomic import LIVE_TEMPS, PUBLISHED, TEMP_LOCK, _digest, _process_alive, _renameat2_noreplace
from matcli.io.output_policy import Target, check_targets

TEMP_SUFFIX = ".tmpdir"
_STORE_MARKERS = ("zarr.json", ".zgroup", ".zarray")


def is_store(path: str) -> bool:
    """Whether ``path`` is a real directory (not a link) holding Zarr root metadata."""
    try:
        info = os.lstat(path)
    except OSError:
        return False
    return stat.S_ISDIR(info.st_mode) and any(os.path.isfile(os.path.join(path, m)) for m in _STORE_MARKERS)


def check_store_target(flag: str, path: str, force: bool, inputs: list[str]) -> None:
    """The output policy for a store ``path``: as :func:`matcli.io.output_policy.check_targets` for a
    new name; an existing Zarr store only with ``force``; anything else existing never."""
    path = os.path.normpath(path)
    if not os.path.lexists(path):
        check_targets([Target(flag, path)], inputs, force)
        return
    if not is_store(path):
        raise OutputError(path, "exists and is not a Zarr store; matcli does not replace it (even with --force)")
    if not force:
        raise OutputError(path, "output exists; pass --force to overwrite")
    real = os.path.realpath(path)
    for item in inputs:
        if item and os.path.realpath(item) == real:
            raise OutputError(path, f"{flag} would overwrite an input ({item})")
    folder = os.path.dirname(path) or "."
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(path, f"folder {folder} is not writable")


def _temp_prefix(target: str) -> str:
    return f".matcli-{_digest(os.path.basename(os.path.normpath(target)))}-"


def remove_stale(target: str) -> None:
    """Remove temporary directories left for ``target`` by processes that no longer run."""
    folder = os.path.dirname(os.path.normpath(target)) or "."
    prefix = _temp_prefix(target)
    try:
        names = [n for n in os.listdir(folder) if n.startswith(prefix) and n.endswith(TEMP_SUFFIX)]
    except OSError:
        return
    for name in names:
        try:
            pid = int(name[len(prefix):].split("-", 1)[0])
        except ValueError:
            continue
        if pid != os.getpid() and not _process_alive(pid):
            shutil.rmtree(os.path.join(folder, name), ignore_errors=True)


def _publish(tmp: str, target: str, force: bool) -> None:
    folder = os.path.dirname(target) or "."
    with TEMP_LOCK:
        try:
            if force and is_store(target):
                aside = os.path.join(folder, f"{_temp_prefix(target)}{os.getpid()}-{secrets.token_hex(4)}{TEMP_SUFFIX}")
                os.rename(target, aside)
                LIVE_TEMPS.add(aside)
                os.rename(tmp, target)
                shutil.rmtree(aside, ignore_errors=True)
                LIVE_TEMPS.discard(aside)
            elif not _renameat2_noreplace(tmp, target):
                if os.path.lexists(target):
                    raise FileExistsError(target)
                os.rename(tmp, target)
            PUBLISHED.append(target)
        except FileExistsError:
            raise OutputError(target, "was created by someone else while matcli ran; kept it "
                                      "(pass --force to overwrite a Zarr store)") from None
        except OSError as exc:
            raise OutputError(target, f"cannot write ({exc.strerror})") from None
        finally:
            LIVE_TEMPS.discard(tmp)


@contextmanager
def atomic_store(path: str, *, force: bool) -> Iterator[str]:
    """Yield the path of a new temporary directory beside ``path`` (not yet created: the store
    writer creates it); on clean exit publish it as ``path`` (see the module docstring). On any
    exception the temporary directory is removed and the exception propagates."""
    path = os.path.normpath(path)
    remove_stale(path)
    folder = os.path.dirname(path) or "."
    tmp = os.path.join(folder, f"{_temp_prefix(path)}{os.getpid()}-{secrets.token_hex(4)}{TEMP_SUFFIX}")
    with TEMP_LOCK:
        LIVE_TEMPS.add(tmp)
    try:
        yield tmp
        _publish(tmp, path, force)
    finally:
        LIVE_TEMPS.discard(tmp)
        if os.path.lexists(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
