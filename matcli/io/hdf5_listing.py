"""``matcli info file.h5``: every member of an HDF5 file, like ``h5ls -r``, with what it is to matcli.

The walk reads link kinds and object metadata only (shapes, dtypes, attributes; never values). It
does not follow soft or external links, nor read virtual or externally stored datasets: they are
listed as such, with what reading them would need. Each member gets a ``kind`` and the ``use`` a
subcommand can make of it:

dense matrix      a 2-D numeric dataset                        A of solve, factorize, sketch-regress
vector            a 1-D numeric dataset                        --rhs / b
sparse matrix     a group with data/indices/indptr (CSR/CSC)   A (CSR groups stream by rows)
observed entries  a group with row/col/value (0-based)         complete's input, --test, predict's pairs
batch             a group of groups that each hold A           solve --batch
matcli output     a file matcli wrote (family, method, status) its arrays, e.g. predict's model, a robust PCA
"""

from __future__ import annotations

from typing import Any

import h5py
import numpy as np

from matcli.io.hdf5_links import has_member
from matcli.io.hdf5_strings import string_attribute

#: members listed at most (a file with more says how many were left out)
MAX_MEMBERS = 10000


def _string_attr(path: str, obj, key: str) -> str | None:
    if key not in obj.attrs:
        return None
    kind = obj.attrs.get_id(key).dtype
    if h5py.check_string_dtype(kind) is None or obj.attrs.get_id(key).shape not in ((), None):
        return None
    return string_attribute(path, obj, key)


def _shape_attr(group: h5py.Group) -> list[int] | None:
    if "shape" not in group.attrs:
        return None
    value = np.asarray(group.attrs["shape"]).ravel()
    return [int(v) for v in value] if value.size == 2 and value.dtype.kind in "iuf" else None


def _dataset(path: str, dset: h5py.Dataset) -> dict[str, Any]:
    entry: dict[str, Any] = {"shape": list(dset.shape or ()), "dtype": str(dset.dtype)}
    numeric = dset.dtype.kind in "biufc"
    if dset.is_virtual:
        entry.update(kind="virtual dataset", use="read only with --allow-external-links (it maps other data)")
    elif dset.external:
        entry.update(kind="externally stored dataset", use="read only with --allow-external-links")
    elif numeric and dset.ndim == 2:
        entry.update(kind="dense matrix", use="A of solve, factorize, sketch-regress (file.h5:/name)")
    elif numeric and dset.ndim == 1:
        entry.update(kind="vector", use="a right-hand side: --rhs / b")
    elif numeric and dset.ndim == 0:
        entry.update(kind="scalar", use="-")
    else:
        entry.update(kind="dataset", use="not a matrix input")
    if dset.chunks:
        entry["chunks"] = list(dset.chunks)
    return entry


def _group(path: str, group: h5py.Group) -> dict[str, Any]:
    if all(has_member(group, k) for k in ("data", "indices", "indptr")):
        encoding = _string_attr(path, group, "encoding-type") or _string_attr(path, group, "h5sparse_format") or "?"
        shape = _shape_attr(group)
        nnz = group["data"].shape[0] if isinstance(group.get("data", getlink=True), h5py.HardLink) else None
        return {"kind": f"sparse matrix ({encoding})", "shape": shape, "nnz": nnz,
                "use": "A of solve, factorize, sketch-regress" + (" (streams by rows)" if "csr" in encoding else "")}
    if all(has_member(group, k) for k in ("row", "col", "value")):
        entries = group["value"].shape[0] if isinstance(group.get("value", getlink=True), h5py.HardLink) else None
        return {"kind": "observed entries", "shape": _shape_attr(group), "nnz": entries,
                "use": "complete's input, --test, or predict's pairs (0-based row, col)"}
    members = list(group.keys())
    systems = [name for name in members
               if isinstance(group.get(name, getlink=True), h5py.HardLink) and isinstance(group[name], h5py.Group)
               and has_member(group[name], "A")]
    if systems and len(systems) == len(members):
        return {"kind": "batch", "systems": len(systems), "use": "solve --batch (one system per member: A, b)"}
    return {"kind": "group", "members": len(members), "use": "-"}


def list_hdf5(path: str, fh: h5py.File) -> dict[str, Any]:
    """``{"file": {...what the file is...}, "members": [{"path", "kind", "use", ...}, ...]}`` in
    depth-first name order; a sparse or observed-entries group is listed as one member (its
    datasets are its parts), a batch with the systems below it."""
    whole: dict[str, Any] = {}
    family = _string_attr(path, fh, "family")
    if family is not None:
        whole = {"kind": "matcli output", "family": family, "method": _string_attr(path, fh, "method"),
                 "status": _string_attr(path, fh, "status"), "matcli_version": _string_attr(path, fh, "matcli_version")}
        if family == "complete":
            whole["use"] = "a completion model: matcli predict FILE PAIRS"
        elif family == "factorize" and (whole["method"] or "").startswith("rpca-"):
            whole["use"] = "a robust PCA A = L + S: L = U diag(s) Vt (low rank), S the sparse part (CSR group)"
        elif family == "factorize" and has_member(fh, "U") and has_member(fh, "Vt"):
            whole["use"] = "a truncated SVD: factorize --update FILE"
    members: list[dict[str, Any]] = []
    left_out = 0

    def walk(group: h5py.Group, prefix: str) -> None:
        nonlocal left_out
        for name in sorted(group.keys()):
            where = f"{prefix}/{name}"
            if len(members) >= MAX_MEMBERS:
                left_out += 1
                continue
            link = group.get(name, getlink=True)
            if isinstance(link, h5py.SoftLink):
                members.append({"path": where, "kind": "soft link", "target": link.path,
                                "use": "read through its target"})
                continue
            if isinstance(link, h5py.ExternalLink):
                members.append({"path": where, "kind": "external link", "target": f"{link.filename}:{link.path}",
                                "use": "read only with --allow-external-links"})
                continue
            obj = group[name]
            if isinstance(obj, h5py.Dataset):
                members.append({"path": where, **_dataset(path, obj)})
            else:
                entry = _group(path, obj)
                members.append({"path": where, **entry})
                if entry["kind"] in ("group", "batch"):  # a sparse or observed-entries group is one matrix
                    walk(obj, where)

    walk(fh, "")
    listing: dict[str, Any] = {"file": whole, "members": members}
    if left_out:
        listing["members_left_out"] = left_out
    return listing
