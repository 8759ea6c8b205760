"""Completion model files: what ``matcli complete -o model.h5`` writes about the model, and reading
the model back for ``matcli predict``.

Layout (root of the HDF5 file; the runner adds ``family``, ``method``, ``params``, ``status`` ...)::

    U (m, k), V (n, k)                    float64 factors
    mu (), row_bias (m,), col_bias (n,)   float64 biases (all three, or none)
    row_ids (m,), col_ids (n,)            uint64, ascending: the 1-based id of each factor row
    attrs: prediction_formula, clip (when given), rank, factor_columns (k; with
           factor_columns_meaning when k is not the rank), reg (when the method takes one), bias,
           row_ids_meaning, col_ids_meaning, unknown_ids, id_space, id_space_declared

Reading checks everything a prediction relies on before it is used, each failure an InputError
naming the file (exit 4): the datasets exist, are numeric (real), finite and of matching shapes, the
ids are ascending integers >= 1 inside a declared id space, and a file written by another family
(``family`` attribute) is refused. Every read goes through :mod:`matcli.io.hdf5` (link checks,
memory budget).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import h5py
import numpy as np

from matcli.core.errors import InputError
from matcli.io import hdf5, hdf5_values
from matcli.io.guard import check_allocation
from matcli.io.ids import IdAxis

ROW_IDS_MEANING = ("row_ids[i] is the id of factor row i (U[i], row_bias[i]): 1-based, as in the ratings file "
                   "(a MatrixMarket row number, an HDF5 COO group's row index + 1), ascending")
COL_IDS_MEANING = ("col_ids[j] is the id of factor row j of the columns (V[j], col_bias[j]): 1-based, as in the "
                   "ratings file (a MatrixMarket column number, an HDF5 COO group's col index + 1), ascending")
UNKNOWN_IDS = ("an id missing from row_ids (col_ids) has no factor row: its side contributes neither U . V nor "
               "its own bias, so the prediction is mu plus the known side's bias (0 without biases), then clipped; "
               "when id_space_declared, ids beyond id_space are an error")


def model_attributes(formula: str, *, rank: int, columns: int, columns_meaning: str | None, reg: float | None,
                     bias: bool, clip: tuple[float, float] | None, id_space: tuple[int, int],
                     declared: bool) -> dict[str, Any]:
    """The attributes a completion model file states about itself (see the module docstring).

    ``rank`` is the fitted rank, ``columns`` the number of columns of U and V (they differ when
    the factors stack several rank-``rank`` factors, said by ``columns_meaning``); ``reg`` is None
    for a method that learns its regularisation (bpmf); ``clip`` None when the predictions are not
    clipped; ``id_space`` the extent of the ids (declared shape, or the largest
    ids of a ratings file), ``declared`` whether it was declared (then it bounds the ids to predict).
    """
    attrs: dict[str, Any] = {"prediction_formula": formula, "rank": int(rank), "factor_columns": int(columns),
                             "bias": bool(bias),
                             "row_ids_meaning": ROW_IDS_MEANING, "col_ids_meaning": COL_IDS_MEANING,
                             "unknown_ids": UNKNOWN_IDS,
                             "id_space": np.asarray(id_space, dtype=np.uint64), "id_space_declared": bool(declared)}
    if columns_meaning is not None:
        attrs["factor_columns_meaning"] = columns_meaning
    if reg is not None:
        attrs["reg"] = float(reg)
    if clip is not None:
        attrs["clip"] = np.asarray(clip, dtype=np.float64)
    return attrs


@dataclass(frozen=True)
class StoredModel:
    """A completion model as read: factors ``U`` (m, k) and ``V`` (n, k), biases ``mu``,
    ``row_bias`` (m,), ``col_bias`` (n,) (None without biases), the id maps ``row_ids`` /
    ``col_ids`` (:class:`~matcli.io.ids.IdAxis`, sizes m and n), the ``clip`` it was fitted with
    (or None), its ``method`` (None when the file does not say) and ``rank`` (the ``rank``
    attribute: bpmf's factors stack samples of this rank; else the columns of U)."""

    U: np.ndarray
    V: np.ndarray
    mu: float
    row_bias: np.ndarray | None
    col_bias: np.ndarray | None
    row_ids: IdAxis
    col_ids: IdAxis
    clip: tuple[float, float] | None
    method: str | None
    rank: int


def read_model(path: str, group: str | None = None) -> StoredModel:
    """The completion model at the root of ``path`` (or in its ``group``); InputError (exit 4)
    naming the file for anything a prediction could not rely on (see the module docstring)."""
    with hdf5.open_file(path) as fh:
        root = hdf5.lookup(path, fh, group) if group else fh
        if not isinstance(root, h5py.Group):
            raise InputError(path, f"{group} is a dataset, expected the group of a completion model")
        family = _string_attr(path, root, "family")
        if family is not None and family != "complete":
            raise InputError(path, f"not a completion model: written by matcli {family} "
                                   "(a model comes from matcli complete -o model.h5)")
        missing = [name for name in ("U", "V", "row_ids", "col_ids") if not hdf5.has_member(root, name)]
        if missing:
            raise InputError(path, f"not a completion model: missing dataset{'s' * (len(missing) > 1)} "
                                   f"{', '.join(missing)} (a model holds U, V, row_ids, col_ids)")
        U = _floats(path, root, "U", 2)
        V = _floats(path, root, "V", 2)
        if U.shape[1] != V.shape[1]:
            raise InputError(path, f"U is {U.shape[0]} x {U.shape[1]} but V is {V.shape[0]} x {V.shape[1]}: "
                                   "the factors need the same rank")
        biases = [name for name in ("mu", "row_bias", "col_bias") if hdf5.has_member(root, name)]
        if biases and len(biases) != 3:
            raise InputError(path, f"a model has all of mu, row_bias, col_bias or none, found only {', '.join(biases)}")
        mu, row_bias, col_bias = 0.0, None, None
        if biases:
            mu = float(_floats(path, root, "mu", 0))
            row_bias, col_bias = _floats(path, root, "row_bias", 1), _floats(path, root, "col_bias", 1)
            for name, bias, factor in (("row_bias", row_bias, "U"), ("col_bias", col_bias, "V")):
                rows = (U if factor == "U" else V).shape[0]
                if bias.shape[0] != rows:
                    raise InputError(path, f"{name} has {bias.shape[0]} entries but {factor} has {rows} rows")
        extent, declared = _id_space(path, root)
        row_ids = _axis(path, root, "row_ids", U.shape[0], "U", extent[0], declared)
        col_ids = _axis(path, root, "col_ids", V.shape[0], "V", extent[1], declared)
        clip = _clip(path, root)
        method = _string_attr(path, root, "method")
        rank = _rank(path, root, U.shape[1])
    return StoredModel(U, V, mu, row_bias, col_bias, row_ids, col_ids, clip, method, rank)


def _rank(path: str, root: h5py.Group, columns: int) -> int:
    """The ``rank`` attribute (an integer in 0..columns), or ``columns`` when absent."""
    if "rank" not in root.attrs:
        return columns
    attr = root.attrs.get_id("rank")
    if attr.dtype.kind not in "iu" or (attr.shape or ()) != ():
        raise InputError(path, "attribute rank must be one integer")
    rank = int(root.attrs["rank"])
    if not 0 <= rank <= columns:
        raise InputError(path, f"attribute rank {rank} is not within 0..{columns} (the columns of U)")
    return rank


def _floats(path: str, root: h5py.Group, name: str, ndim: int) -> np.ndarray:
    """Dataset ``name``: a real ``ndim``-D array of finite float64 values."""
    dset = hdf5.member(path, root, name)
    if not isinstance(dset, h5py.Dataset):
        raise InputError(path, f"{name} must be a dataset, is a group")
    array = hdf5.read_dense_dataset(path, dset, (ndim,))
    if np.iscomplexobj(array):
        raise InputError(path, f"dataset {name} is complex; a completion model is real")
    if not np.isfinite(array).all():
        raise InputError(path, f"dataset {name} contains NaN or Inf values")
    return array


def _axis(path: str, root: h5py.Group, name: str, size: int, factor: str, extent: int | None,
          declared: bool) -> IdAxis:
    """The id map of one side: ``size`` ascending ids >= 1, within a declared ``extent``."""
    dset = hdf5.member(path, root, name)
    if not isinstance(dset, h5py.Dataset) or dset.ndim != 1:
        raise InputError(path, f"{name} must be a 1-D dataset of ids")
    hdf5_values.index_dtype(path, f"dataset {name}", dset.dtype)
    if dset.shape[0] != size:
        raise InputError(path, f"{name} has {dset.shape[0]} ids but {factor} has {size} rows")
    check_allocation(path, float(size) * 16, f"dataset {name} ({size} ids)")
    raw = hdf5_values.read(path, dset, dset.dtype)
    if raw.dtype.kind == "i" and raw.size and raw.min() < 1:
        raise InputError(path, f"{name} holds id {int(raw.min())}; ids are 1-based")
    ids = raw.astype(np.uint64)
    if ids.size and ids.min() < 1:
        raise InputError(path, f"{name} holds id 0; ids are 1-based")
    if np.any(ids[1:] <= ids[:-1]):
        raise InputError(path, f"{name} must be strictly ascending (one factor row per id)")
    keys = ids - np.uint64(1)
    largest = int(keys[-1]) + 1 if keys.size else 0
    if extent is None:
        extent = largest
    elif largest > extent:
        raise InputError(path, f"{name} holds id {largest}, beyond the id space {extent} (attribute id_space)")
    if keys.size == extent:
        return IdAxis(size, None, extent, declared)  # ascending, distinct and below extent: 0..extent-1
    return IdAxis(size, keys, extent, declared)


def _id_space(path: str, root: h5py.Group) -> tuple[tuple[int | None, int | None], bool]:
    """``id_space`` and ``id_space_declared`` attributes; (None, None), False when absent (an open id space)."""
    if "id_space" not in root.attrs:
        return (None, None), False
    attr = root.attrs.get_id("id_space")
    if attr.dtype.kind not in "iu" or tuple(attr.shape or ()) != (2,):
        raise InputError(path, "attribute id_space must hold two integers")
    extent = [int(v) for v in np.asarray(root.attrs["id_space"]).tolist()]
    if min(extent) < 0:
        raise InputError(path, f"attribute id_space {extent} holds a negative size")
    declared = False
    if "id_space_declared" in root.attrs:
        flag = root.attrs.get_id("id_space_declared")
        if flag.dtype.kind not in "biu" or (flag.shape or ()) != ():
            raise InputError(path, "attribute id_space_declared must be a boolean")
        declared = bool(root.attrs["id_space_declared"])
    return (extent[0], extent[1]), declared


def _clip(path: str, root: h5py.Group) -> tuple[float, float] | None:
    """The ``clip`` attribute: two finite floats lo < hi, or None when absent."""
    if "clip" not in root.attrs:
        return None
    attr = root.attrs.get_id("clip")
    if attr.dtype.kind not in "iuf" or tuple(attr.shape or ()) != (2,):
        raise InputError(path, "attribute clip must hold two numbers lo, hi")
    lo, hi = (float(v) for v in np.asarray(root.attrs["clip"], dtype=np.float64))
    if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
        raise InputError(path, f"attribute clip {lo:g}, {hi:g} needs finite lo < hi")
    return lo, hi


def _string_attr(path: str, root: h5py.Group, key: str) -> str | None:
    """A scalar string attribute (read by :func:`matcli.io.hdf5_strings.string_attribute`), None when absent."""
    from matcli.io.hdf5_strings import string_attribute

    if key not in root.attrs:
        return None
    attr = root.attrs.get_id(key)
    if (attr.shape or ()) != () or h5py.check_string_dtype(attr.dtype) is None:
        raise InputError(path, f"attribute {key} must be a single string")
    return string_attribute(path, root, key)
