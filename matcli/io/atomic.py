"""Atomic, exclusive file creation: write a temporary sibling, fsync it, then publish it.

A reader never sees a half-written output, a failed or interrupted run leaves neither output nor
temporary file behind, and two runs writing the same output without ``--force`` cannot both win:
publishing is a hard link (or ``renameat2(RENAME_NOREPLACE)``), which fails when the name exists.

Temporary files are named ``.matcli-<digest>-<pid>-<random>.tmp`` beside the output, where
``<digest>`` identifies the output's name. The name has a fixed length, so any output name the file
system allows has a temporary sibling too. A run that was killed (SIGKILL, power loss) leaves its
temporary file; the next run writing the same output removes it once it sees that the process that
made it is gone (or the machine has rebooted since).
"""

from __future__ import annotations

import ctypes
import errno
import hashlib
import os
import secrets
import threading
from contextlib import contextmanager
from typing import Iterator

from matcli.core.errors import OutputError
from matcli.io.guard import file_kind

TEMP_PREFIX = ".matcli-"
TEMP_SUFFIX = ".tmp"
#: Held while a temporary file is created and registered, and while one is published; the signal
#: watcher (:mod:`matcli.cli.signals`) takes it before removing temporary files, so a signal ends
#: the process either before an output is published (its temporary file removed) or after.
TEMP_LOCK = threading.Lock()
#: Temporary files this process has open, removed by the signal watcher before it exits.
LIVE_TEMPS: set[str] = set()
#: Outputs this process has published, in order (the signal watcher names them in its one line).
PUBLISHED: list[str] = []


def _digest(name: str) -> str:
    return hashlib.sha256(os.fsencode(name)).hexdigest()[:12]


def temp_path(target: str) -> str:
    """A fresh temporary name in the folder of ``target`` (fixed length, marks pid and target)."""
    folder = os.path.dirname(target) or "."
    name = f"{TEMP_PREFIX}{_digest(os.path.basename(target))}-{os.getpid()}-{secrets.token_hex(4)}{TEMP_SUFFIX}"
    return os.path.join(folder, name)


def _boot_time() -> float | None:
    try:
        with open("/proc/stat") as fh:
            for line in fh:
                if line.startswith("btime "):
                    return float(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temps(target: str) -> list[str]:
    """Remove temporary files left for ``target`` by processes that no longer run; return them."""
    folder = os.path.dirname(target) or "."
    prefix = f"{TEMP_PREFIX}{_digest(os.path.basename(target))}-"
    boot = _boot_time()
    removed = []
    try:
        names = [n for n in os.listdir(folder) if n.startswith(prefix) and n.endswith(TEMP_SUFFIX)]
    except OSError:
        return removed
    for name in names:
        try:
            pid = int(name[len(prefix):].split("-", 1)[0])
        except ValueError:
            continue
        path = os.path.join(folder, name)
        try:
            made = os.lstat(path).st_mtime
        except OSError:
            continue
        stale = pid != os.getpid() and not _process_alive(pid)
        if stale or (boot is not None and made < boot):
            try:
                os.unlink(path)
                removed.append(path)
            except OSError:
                pass
    return removed


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _renameat2_noreplace(src: str, dst: str) -> bool:
    """Linux's rename that refuses to replace ``dst``; False where the call is unavailable."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_noreplace = -100, 1
    if renameat2(at_fdcwd, os.fsencode(src), at_fdcwd, os.fsencode(dst), rename_noreplace) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
        return False
    raise OSError(code, os.strerror(code), dst)


def _publish_exclusive(tmp: str, target: str) -> None:
    """Give ``tmp`` the name ``target`` unless that name exists (FileExistsError)."""
    try:
        os.link(tmp, target)
    except FileExistsError:
        raise
    except OSError as exc:
        # File systems without hard links (FAT, some network mounts) refuse with EPERM/ENOTSUP.
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK, errno.ENOSYS):
            raise
        if not _renameat2_noreplace(tmp, target):
            if os.path.lexists(target):
                raise FileExistsError(errno.EEXIST, "exists", target) from None
            os.rename(tmp, target)
        return
    os.unlink(tmp)


def _publish_replacing(tmp: str, target: str) -> None:
    """Rename ``tmp`` onto ``target``; refuse when ``target`` turned into a non-regular file."""
    try:
        kind = file_kind(os.stat(target).st_mode)
    except OSError:
        kind = None
    if kind is not None:
        raise OutputError(target, f"is {kind}; matcli writes only regular files (even with --force)")
    os.replace(tmp, target)


def publish(tmp: str, target: str, *, force: bool) -> None:
    """Move the finished temporary file ``tmp`` to ``target``: exclusively, or replacing with ``force``."""
    with TEMP_LOCK:
        try:
            if force:
                _publish_replacing(tmp, target)
            else:
                _publish_exclusive(tmp, target)
            PUBLISHED.append(target)
        except FileExistsError:
            raise OutputError(target, "was created by someone else while matcli ran; kept it "
                                      "(pass --force to overwrite)") from None
        except OSError as exc:
            raise OutputError(target, f"cannot write ({exc.strerror})") from None
        finally:
            LIVE_TEMPS.discard(tmp)


def _fsync_folder(folder: str) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def atomic_write(path: str, *, force: bool) -> Iterator[str]:
    """Yield a new, empty temporary path beside ``path``; on clean exit publish it as ``path``.

    The writer must write the temporary path in the format of ``path`` without deriving the format
    from the temporary name. Without ``force`` an existing ``path`` (even one created while this
    run worked) is kept and :class:`OutputError` is raised; on any exception, signal or error the
    temporary file is removed and the exception propagates.
    """
    folder = os.path.dirname(path) or "."
    remove_stale_temps(path)
    tmp = temp_path(path)
    with TEMP_LOCK:
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except OSError as exc:
            raise OutputError(path, f"cannot create a temporary file ({exc.strerror})") from None
        os.close(fd)
        LIVE_TEMPS.add(tmp)
    try:
        yield tmp
        try:
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
            os.chmod(tmp, 0o666 & ~_current_umask())
        except OSError as exc:
            raise OutputError(path, f"cannot write ({exc.strerror})") from None
        publish(tmp, path, force=force)
    finally:
        LIVE_TEMPS.discard(tmp)
        if os.path.lexists(tmp):
            os.unlink(tmp)
    _fsync_folder(folder)
