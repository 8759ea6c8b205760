"""Opening a Zarr directory store (format 2 or 3) read-only, after checking what it holds on disk.

A store is a directory tree; nothing in it is trusted. Before the ``zarr`` package reads anything,
the node named by ``store.zarr:/inner/path`` and everything below it are walked:

- every entry is a directory or a regular file (a FIFO or device chunk would block or never end);
- a symbolic link may only lead to a place inside the store, unless ``--allow-external-links``
  (the counterpart of HDF5 external links: a store must not read ``/etc/passwd`` as a chunk);
- metadata documents (``zarr.json``, ``.zarray``, ``.zgroup``, ``.zattrs``) are at most
  :data:`MAX_METADATA_BYTES`, read by us to learn the node's kind before ``zarr`` opens it.

An exception the ``zarr`` or ``numcodecs`` packages raise while opening or reading (unknown codec,
corrupt or wrongly sized chunk, malformed metadata) becomes one :class:`InputError` naming the
store. Consolidated metadata (``.zmetadata``) is ignored: each node's own document is what counts.
"""

from __future__ import annotations

import json
import os
import stat
import traceback
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator

from matcli.core.errors import InputError, MatcliError
from matcli.io.guard import current_policy, file_kind

#: largest metadata document read (a real one is a few kilobytes)
MAX_METADATA_BYTES = 16 * 2**20
_OPT_IN = "pass --allow-external-links to follow it"
_PACKAGES = ("zarr", "numcodecs", "google_crc32c", "donfig")


@dataclass(frozen=True)
class Node:
    """A checked node of a store: ``store`` as given, ``name`` its path inside (``/`` for the root),
    ``kind`` ``array`` or ``group``, ``zarr_format`` 2 or 3."""

    store: str
    name: str
    kind: str
    zarr_format: int

    @property
    def key(self) -> str:
        """The path ``zarr`` takes (no leading slash, empty for the root)."""
        return self.name.strip("/")


def _raised_in_zarr(exc: BaseException) -> bool:
    """Whether a frame of ``exc``'s traceback (or of the exceptions it chains) belongs to zarr or
    its codecs: errors of the store's content, not of matcli's own code."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        for frame in traceback.extract_tb(exc.__traceback__):
            parts = frame.filename.replace("\\", "/").split("/")
            if any(p in parts for p in _PACKAGES):
                return True
        exc = exc.__cause__ or exc.__context__
    return False


@contextmanager
def zarr_errors(store: str, doing: str) -> Iterator[None]:
    """Turn an error the zarr packages raise inside the block into one InputError naming ``store``
    and what was being done (``doing``); matcli's own errors and MemoryError pass unchanged. The
    packages' warnings (e.g. about data types without a Zarr 3 specification) are silenced: the
    store's defects are reported as errors, and the run prints nothing else."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    except (MatcliError, MemoryError, KeyboardInterrupt):
        raise
    except Exception as exc:
        if not _raised_in_zarr(exc):
            raise
        message = " ".join(str(exc).split()) or type(exc).__name__
        raise InputError(store, f"{doing}: {message[:300]}") from None


def _inside(target: str, root: str) -> bool:
    return target == root or target.startswith(root.rstrip(os.sep) + os.sep)


def _check_entry(store: str, real_root: str, path: str, metadata: bool = False) -> os.stat_result:
    """Check one entry of the store (see the module docstring); return its ``os.stat``."""
    relative = os.path.relpath(path, store)
    try:
        info = os.lstat(path)
    except OSError as exc:
        raise InputError(store, f"cannot access {relative} ({exc.strerror})") from None
    if stat.S_ISLNK(info.st_mode):
        target = os.path.realpath(path)
        if not current_policy().allow_external and not _inside(target, real_root):
            raise InputError(store, f"{relative} is a symbolic link to {target}, outside the store; "
                                    f"refused ({_OPT_IN})")
        try:
            info = os.stat(path)
        except OSError:
            raise InputError(store, f"{relative} is a symbolic link to {target}, which does not exist") from None
    kind = file_kind(info.st_mode)
    if kind is not None and not stat.S_ISDIR(info.st_mode):
        raise InputError(store, f"{relative} is {kind}, expected a regular file or a directory")
    if metadata and stat.S_ISREG(info.st_mode) and info.st_size > MAX_METADATA_BYTES:
        raise InputError(store, f"metadata {relative} is {info.st_size} bytes, more than a Zarr document can need")
    return info


def check_subtree(store: str, top: str) -> None:
    """Walk ``top`` (a directory of ``store``) and every directory below it, following the links
    :func:`_check_entry` allows (each real directory once, so link loops end); InputError on the
    first entry that breaks the rules."""
    real_root = os.path.realpath(store)
    seen: set[str] = set()
    pending = [top]
    while pending:
        folder = pending.pop()
        real = os.path.realpath(folder)
        if real in seen:
            continue
        seen.add(real)
        try:
            entries = list(os.scandir(folder))
        except OSError as exc:
            raise InputError(store, f"cannot list {os.path.relpath(folder, store)} ({exc.strerror})") from None
        for entry in entries:
            info = _check_entry(store, real_root, entry.path, metadata=entry.name in _METADATA)
            if stat.S_ISDIR(info.st_mode):
                pending.append(entry.path)


_METADATA = ("zarr.json", ".zarray", ".zgroup", ".zattrs")


def _document(store: str, folder: str, name: str) -> dict[str, Any] | None:
    """The JSON object in ``folder/name`` (checked by :func:`_check_entry`), or None if absent."""
    path = os.path.join(folder, name)
    if not os.path.lexists(path):
        return None
    size = _check_entry(store, os.path.realpath(store), path, metadata=True).st_size
    relative = os.path.relpath(path, store)
    try:
        with open(path, "rb") as fh:
            # read(n) allocates n bytes up front: ask for what the file holds, not for the cap
            document = json.loads(fh.read(min(size, MAX_METADATA_BYTES) + 1))
    except (OSError, ValueError) as exc:
        reason = " ".join(str(exc).split())[:200]
        raise InputError(store, f"metadata {relative} is not readable JSON ({reason})") from None
    if not isinstance(document, dict):
        raise InputError(store, f"metadata {relative} is not a JSON object")
    return document


def node_kind(store: str, folder: str, name: str) -> tuple[str, int] | None:
    """(``array`` or ``group``, zarr format) of the node stored in ``folder``; None when ``folder``
    holds no node metadata."""
    v3 = _document(store, folder, "zarr.json")
    if v3 is not None:
        kind = v3.get("node_type")
        if v3.get("zarr_format") != 3 or kind not in ("array", "group"):
            raise InputError(store, f"{name}: zarr.json declares zarr_format {v3.get('zarr_format')!r}, "
                                    f"node_type {kind!r} (expected 3 and array or group)")
        return kind, 3
    for kind, doc in (("array", ".zarray"), ("group", ".zgroup")):
        document = _document(store, folder, doc)
        if document is not None:
            if document.get("zarr_format") != 2:
                raise InputError(store, f"{name}: {doc} declares zarr_format {document.get('zarr_format')!r}, "
                                        "expected 2")
            return kind, 2
    return None


def check_store(store: str) -> str:
    """The store's real path after checking that ``store`` is a readable directory."""
    try:
        info = os.stat(store)
    except FileNotFoundError:
        raise InputError(store, "Zarr store not found") from None
    except OSError as exc:
        raise InputError(store, f"cannot access the store ({exc.strerror})") from None
    if not stat.S_ISDIR(info.st_mode):
        kind = file_kind(info.st_mode) or "a regular file"
        raise InputError(store, f"is {kind}, expected a Zarr store (a directory)")
    if not os.access(store, os.R_OK | os.X_OK):
        raise InputError(store, "the store is not readable (permission denied)")
    return os.path.realpath(store)


def _parts(store: str, internal: str | None) -> list[str]:
    parts = [p for p in (internal or "/").split("/") if p]
    for part in parts:
        if part in (".", "..") or part.startswith(".z") or part == "zarr.json":
            raise InputError(store, f"invalid path {internal!r} inside the store (no '.', '..' or metadata names)")
    return parts


def members(store: str, folder: str) -> list[str]:
    """Names of the child nodes (arrays and groups) stored in the group directory ``folder``."""
    found = []
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError as exc:
        raise InputError(store, f"cannot list {os.path.relpath(folder, store)} ({exc.strerror})") from None
    for entry in entries:
        if entry.name.startswith(".") or not entry.is_dir():
            continue
        if any(os.path.lexists(os.path.join(entry.path, m)) for m in ("zarr.json", ".zarray", ".zgroup")):
            found.append(entry.name)
    return found


def locate(store: str, internal: str | None, *, sparse_ok: bool = True) -> Node:
    """The node ``store:internal`` after the checks of the module docstring, nothing opened by zarr.

    ``internal`` None names the root when it is an array (or, with ``sparse_ok``, a sparse group),
    else the root group's only member, as for HDF5 files.
    """
    check_store(store)
    real_root = os.path.realpath(store)
    folder, parts = store, _parts(store, internal)
    for part in parts:
        folder = os.path.join(folder, part)
        if not os.path.lexists(folder):
            raise InputError(store, f"no array or group {'/' + '/'.join(parts)!r} in the store")
        _check_entry(store, real_root, folder)
    name = "/" + "/".join(parts)
    found = node_kind(store, folder, name)
    if found is None:
        raise InputError(store, f"{name} holds no Zarr metadata (zarr.json, .zarray or .zgroup): not an array or group")
    kind, fmt = found
    if internal is None and kind == "group" and not (sparse_ok and _looks_sparse(store, folder)):
        children = members(store, folder)
        if len(children) != 1:
            listing = ", ".join("/" + c for c in children[:10]) or "nothing"
            raise InputError(store, f"name the array as {store}:/name (store holds {listing})")
        return locate(store, "/" + children[0], sparse_ok=sparse_ok)
    check_subtree(store, folder)
    return Node(store, name, kind, fmt)


def _looks_sparse(store: str, folder: str) -> bool:
    return all(os.path.isdir(os.path.join(folder, k)) for k in ("data", "indices", "indptr"))


def zarr_package(path: str, error=InputError):
    """The ``zarr`` module; ``error`` (InputError for inputs, OutputError for outputs) naming
    ``path`` when the optional dependency is not installed."""
    try:
        import zarr
    except ImportError:
        raise error(path, "Zarr stores need the zarr package (pip install 'matcli[zarr]')") from None
    return zarr


def open_node(node: Node):
    """The ``zarr.Array`` or ``zarr.Group`` of a located node, opened read-only."""
    zarr = zarr_package(node.store)
    with zarr_errors(node.store, f"cannot open {node.name}"):
        store = zarr.storage.LocalStore(node.store, read_only=True)
        if node.kind == "array":
            return zarr.open_array(store=store, path=node.key, mode="r", zarr_format=node.zarr_format)
        return zarr.open_group(store=store, path=node.key, mode="r", zarr_format=node.zarr_format,
                               use_consolidated=False)
