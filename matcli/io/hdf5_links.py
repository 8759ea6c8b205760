"""Reaching an object inside an HDF5 file without leaving the file.

HDF5 lets a name in one file stand for data elsewhere: an external link names an object in another
file, a virtual dataset maps other datasets (in this file or others; a missing source reads as the
fill value), and a dataset may keep its raw data in external files. Followed blindly, a crafted
input makes matcli read any file the process can read, or "converge" on zeros. The lookups here
walk a path one link at a time, read each link's kind without following it, and refuse all three
unless the run's policy allows them (``--allow-external-links``). Soft links always name a path in
the file holding them; they are resolved by the same walk, so what they finally reach is checked
like anything else, and a dangling link or a loop is an :class:`InputError`, not a library error.
"""

from __future__ import annotations

import os

import h5py
from h5py import h5l

from matcli.core.errors import InputError
from matcli.io.guard import current_policy
from matcli.io.hdf5_values import h5_error

#: soft links followed in one lookup; HDF5's own limit (H5L_NUM_LINKS), so a chain HDF5 would
#: follow is followed here too, and a loop ends after as many hops
MAX_SOFT_LINKS = 16

_OPT_IN = "pass --allow-external-links to follow it"


def has_member(group: h5py.Group, name: str) -> bool:
    """Whether ``group`` holds a link called ``name`` (a single path component), not following it.

    ``name in group`` would follow the link, opening another file for an external link.
    """
    return group.id.links.exists(name.encode())


def lookup(path: str, fh: h5py.File, internal: str) -> h5py.Dataset | h5py.Group:
    """The object at the absolute path ``internal`` in ``fh`` (the file at ``path``).

    Every link on the way is checked before it is followed (see the module docstring), and a
    dataset reached is checked by :func:`check_storage`. Raises :class:`InputError` naming
    ``path`` when the object is missing, a link is refused, broken or loops, or an intermediate
    object is not a group.
    """
    return _Walk(path).resolve(fh, internal, internal)


def member(path: str, group: h5py.Group, name: str) -> h5py.Dataset | h5py.Group | None:
    """The member ``name`` (a single path component) of ``group``, checked as in :func:`lookup`;
    None when the group has no link of that name."""
    if not has_member(group, name):
        return None
    return _Walk(path).follow(group, name)


def check_storage(path: str, dset: h5py.Dataset) -> None:
    """InputError unless ``dset`` keeps its values in this file: virtual datasets and datasets with
    external raw storage are refused, unless external links are allowed; then every source of a
    virtual dataset must exist, since a missing one would read as the fill value."""
    if dset.is_virtual:
        if not current_policy().allow_external:
            raise InputError(path, f"dataset {dset.name} is a virtual dataset (its values come from other "
                                   f"datasets or files); refused ({_OPT_IN})")
        _check_virtual_sources(path, dset)
    elif dset.external and not current_policy().allow_external:
        files = ", ".join(str(entry[0]) for entry in dset.external[:3])
        raise InputError(path, f"dataset {dset.name} keeps its values in external file(s) {files}; "
                               f"refused ({_OPT_IN})")


def _check_virtual_sources(path: str, dset: h5py.Dataset) -> None:
    """InputError when a source file or dataset of the virtual dataset ``dset`` is missing. A relative
    source file is looked for where HDF5 looks: $HDF5_VDS_PREFIX, the virtual dataset's directory,
    the working directory."""
    here = os.path.dirname(os.path.abspath(path))
    for source in dset.virtual_sources():
        if source.file_name == ".":
            candidates = [path]
        elif os.path.isabs(source.file_name):
            candidates = [source.file_name]
        else:
            prefixes = [os.environ.get("HDF5_VDS_PREFIX"), here, os.getcwd()]
            candidates = [os.path.join(p, source.file_name) for p in prefixes if p]
        if not any(_holds_dataset(c, source.dset_name) for c in candidates):
            raise InputError(path, f"virtual dataset {dset.name}: source {source.file_name}:{source.dset_name} "
                                   "is missing (it would read as the fill value)")


def _holds_dataset(candidate: str, name: str) -> bool:
    if not os.path.isfile(candidate):
        return False
    try:
        with h5py.File(candidate, "r") as fh:
            return isinstance(fh.get(name), h5py.Dataset)
    except (OSError, KeyError, RuntimeError, ValueError):
        return False


class _Walk:
    """One lookup: the file named in messages and the soft links followed so far."""

    def __init__(self, path: str):
        self.path = path
        self.soft_links = 0

    def resolve(self, start: h5py.Group, target: str, asked: str) -> h5py.Dataset | h5py.Group:
        """The object at ``target``, absolute or relative to ``start``; ``asked`` names it in messages."""
        node: h5py.Dataset | h5py.Group = start.file["/"] if target.startswith("/") else start
        for part in (p for p in target.split("/") if p not in ("", ".")):
            if not isinstance(node, h5py.Group):
                raise InputError(self.path, f"{node.name} is a dataset, not a group (looking up {asked})")
            if not has_member(node, part):
                raise InputError(self.path, f"no dataset or group {asked!r} in the file")
            node = self.follow(node, part)
        return node

    def follow(self, group: h5py.Group, name: str) -> h5py.Dataset | h5py.Group:
        """The object the existing link ``name`` of ``group`` leads to, after checking the link."""
        key = name.encode()
        where = f"{group.name.rstrip('/')}/{name}"
        kind = group.id.links.get_info(key).type
        if kind == h5l.TYPE_HARD:
            obj = group[name]
        elif kind == h5l.TYPE_SOFT:
            obj = self._soft(group, where, group.id.links.get_val(key).decode(errors="replace"))
        elif kind == h5l.TYPE_EXTERNAL:
            obj = self._external(group, name, where, *group.id.links.get_val(key))
        else:
            raise InputError(self.path, f"{where} is a user-defined link; refused")
        if isinstance(obj, h5py.Dataset):
            check_storage(self.path, obj)
        elif not isinstance(obj, h5py.Group):
            raise InputError(self.path, f"{where} is a named datatype, not a dataset or group")
        return obj

    def _soft(self, group: h5py.Group, where: str, target: str) -> h5py.Dataset | h5py.Group:
        self.soft_links += 1
        if self.soft_links > MAX_SOFT_LINKS:
            raise InputError(self.path, f"soft link {where} -> {target}: more than {MAX_SOFT_LINKS} soft "
                                        "links in a row (a loop?)")
        try:
            return self.resolve(group, target, where)
        except InputError as exc:
            if exc.defect.startswith("no dataset or group"):
                raise InputError(self.path, f"soft link {where} points to {target}, which does not exist") from None
            raise

    def _external(self, group: h5py.Group, name: str, where: str, file_name: bytes, target: bytes):
        link = f"{file_name.decode(errors='replace')}:{target.decode(errors='replace')}"
        if not current_policy().allow_external:
            raise InputError(self.path, f"{where} is an external link to {link}; refused ({_OPT_IN})")
        try:
            return group[name]
        except (KeyError, OSError, RuntimeError) as exc:
            raise InputError(self.path, f"external link {where} -> {link} cannot be followed ({h5_error(exc)})") from None

