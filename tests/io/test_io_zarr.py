"""Zarr stores as inputs (``store.zarr:/A``): values equal what was written (numpy/scipy are the
reference), and hostile stores end in one line with exit 4 (input) or 7 (budget) before any
large allocation."""

from __future__ import annotations

import json
import os
import sys
import tracemalloc

import numpy as np
import pytest
import scipy.sparse as sp

zarr = pytest.importorskip("zarr")

from matcli.core.errors import InputError, ResourceError  # noqa: E402
from matcli.io.guard import InputPolicy, input_policy  # noqa: E402
from matcli.io.load import read_dense, read_matrix  # noqa: E402


def dense_store(path, values, chunks, zarr_format=3, **kw):
    array = zarr.create_array(str(path), shape=values.shape, chunks=chunks, dtype=values.dtype,
                              zarr_format=zarr_format, **kw)
    array[...] = values
    return array


def sparse_store(path, matrix, encoding="csr_matrix", zarr_format=3, chunks=(7,)):
    group = zarr.open_group(str(path), mode="w", zarr_format=zarr_format)
    group.attrs.update({"encoding-type": encoding, "encoding-version": "0.1.0", "shape": list(matrix.shape)})
    for name in ("data", "indices", "indptr"):
        group.create_array(name, data=getattr(matrix, name), chunks=chunks)
    return group


def chunk_files(root):
    return sorted(os.path.join(d, f) for d, _, files in os.walk(root) for f in files
                  if f not in ("zarr.json", ".zarray", ".zgroup", ".zattrs"))


@pytest.mark.parametrize("zarr_format", [2, 3])
@pytest.mark.parametrize("dtype", ["float64", "float32", "int32", "complex128", "bool"])
def test_dense_round_trip(tmp_path, zarr_format, dtype):
    rng = np.random.default_rng(0)
    values = (rng.standard_normal((23, 9)) * 10).astype(dtype) if dtype != "complex128" else \
        rng.standard_normal((23, 9)) + 1j * rng.standard_normal((23, 9))
    group = zarr.open_group(str(tmp_path / "s.zarr"), mode="w", zarr_format=zarr_format)
    group.create_array("A", data=values, chunks=(5, 4))
    got = read_matrix(f"{tmp_path / 's.zarr'}:/A")
    want_dtype = np.complex128 if dtype == "complex128" else np.float64
    assert got.dtype == want_dtype
    np.testing.assert_array_equal(got, values.astype(want_dtype))
    # the store's only member is found without naming it, as for HDF5 files
    np.testing.assert_array_equal(read_matrix(str(tmp_path / "s.zarr")), got)


def test_sharded_and_nested_key_layouts(tmp_path):
    values = np.arange(600.0).reshape(60, 10)
    sharded = zarr.create_array(str(tmp_path / "sh.zarr"), shape=values.shape, chunks=(5, 5), shards=(20, 10),
                                dtype="f8")
    sharded[...] = values
    np.testing.assert_array_equal(read_matrix(str(tmp_path / "sh.zarr")), values)
    nested = zarr.create_array(str(tmp_path / "v2n.zarr"), shape=values.shape, chunks=(7, 4), dtype="f8",
                               zarr_format=2, chunk_key_encoding={"name": "v2", "separator": "/"})
    nested[...] = values
    assert os.path.isdir(tmp_path / "v2n.zarr" / "0")
    np.testing.assert_array_equal(read_matrix(str(tmp_path / "v2n.zarr")), values)


def test_vector_and_root_array(tmp_path):
    b = np.arange(11.0)
    dense_store(tmp_path / "b.zarr", b, (4,))
    np.testing.assert_array_equal(read_dense(str(tmp_path / "b.zarr")), b)
    with pytest.raises(InputError, match="1-D, expected 2-D"):
        read_matrix(str(tmp_path / "b.zarr"))


@pytest.mark.parametrize("zarr_format", [2, 3])
@pytest.mark.parametrize("encoding", ["csr_matrix", "csc_matrix"])
def test_sparse_group_round_trip(tmp_path, zarr_format, encoding):
    M = sp.random(31, 17, density=0.2, format="csr" if encoding == "csr_matrix" else "csc", random_state=1)
    sparse_store(tmp_path / "m.zarr", M, encoding, zarr_format)
    got = read_matrix(str(tmp_path / "m.zarr"))
    assert sp.isspmatrix_csr(got)
    np.testing.assert_array_equal(got.toarray(), M.toarray())
    np.testing.assert_array_equal(read_dense(str(tmp_path / "m.zarr")), M.toarray())


def test_anndata_style_nested_group(tmp_path):
    M = sp.random(12, 8, density=0.3, format="csr", random_state=2)
    root = zarr.open_group(str(tmp_path / "cells.zarr"), mode="w")
    X = root.create_group("X")
    X.attrs.update({"encoding-type": "csr_matrix", "shape": [12, 8]})
    for name in ("data", "indices", "indptr"):
        X.create_array(name, data=getattr(M, name))
    root.create_array("obs_names", data=np.arange(12))
    np.testing.assert_array_equal(read_matrix(f"{tmp_path / 'cells.zarr'}:/X").toarray(), M.toarray())
    with pytest.raises(InputError, match=r"name the array as .*:/name \(store holds /X, /obs_names\)"):
        read_matrix(str(tmp_path / "cells.zarr"))


def test_missing_chunks_read_as_fill_value_and_nan_fill_is_refused(tmp_path):
    """The Zarr specification: a chunk absent from the store holds the fill value (zarr itself does
    not write chunks of fill values). zarr's own read is the reference."""
    values = np.arange(40.0).reshape(10, 4) + 1
    dense_store(tmp_path / "z.zarr", values, (3, 4), fill_value=0.0)
    os.remove(chunk_files(tmp_path / "z.zarr")[1])
    reference = zarr.open_array(str(tmp_path / "z.zarr"), mode="r")[...]
    assert (reference == 0).sum() == 12
    np.testing.assert_array_equal(read_matrix(str(tmp_path / "z.zarr")), reference)
    dense_store(tmp_path / "n.zarr", values, (3, 4), fill_value=float("nan"))
    os.remove(chunk_files(tmp_path / "n.zarr")[0])
    with pytest.raises(InputError, match="NaN or Inf"):
        read_matrix(str(tmp_path / "n.zarr"))


def _edit(path, change):
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc))


def _hostile(tmp_path):
    """(name, spec, extra CLI args, exit code, message fragment) of hostile stores."""
    values = np.arange(40.0).reshape(10, 4)
    cases = []

    dense_store(tmp_path / "lying_chunks.zarr", values, (3, 4), compressors=None)
    _edit(tmp_path / "lying_chunks.zarr" / "zarr.json",
          lambda d: d["chunk_grid"]["configuration"].update(chunk_shape=[5, 4]))
    cases.append(("lying_chunks.zarr", 4, "cannot read array"))

    dense_store(tmp_path / "lying_v2.zarr", values, (3, 4), zarr_format=2)
    _edit(tmp_path / "lying_v2.zarr" / ".zarray", lambda d: d.update(chunks=[2, 2]))
    cases.append(("lying_v2.zarr", 4, "cannot read array"))

    dense_store(tmp_path / "corrupt.zarr", values, (3, 4))
    with open(chunk_files(tmp_path / "corrupt.zarr")[2], "wb") as fh:
        fh.write(b"\x00garbage" * 5)
    cases.append(("corrupt.zarr", 4, "cannot read array"))

    zarr.create_array(str(tmp_path / "strings.zarr"), shape=(3, 3), chunks=(3, 3), dtype="<U4")
    cases.append(("strings.zarr", 4, "non-numeric dtype"))

    dense_store(tmp_path / "pickle.zarr", values, (3, 4), zarr_format=2)
    _edit(tmp_path / "pickle.zarr" / ".zarray", lambda d: d.update(dtype="|O", filters=[{"id": "pickle"}]))
    cases.append(("pickle.zarr", 4, "pickle"))

    dense_store(tmp_path / "codec.zarr", values, (3, 4), zarr_format=2)
    _edit(tmp_path / "codec.zarr" / ".zarray", lambda d: d.update(compressor={"id": "no-such-codec"}))
    cases.append(("codec.zarr", 4, "no-such-codec"))

    dense_store(tmp_path / "notjson.zarr", values, (3, 4))
    (tmp_path / "notjson.zarr" / "zarr.json").write_text("{not json")
    cases.append(("notjson.zarr", 4, "not readable JSON"))

    dense_store(tmp_path / "format.zarr", values, (3, 4))
    _edit(tmp_path / "format.zarr" / "zarr.json", lambda d: d.update(zarr_format=7))
    cases.append(("format.zarr", 4, "zarr_format 7"))

    zarr.create_array(str(tmp_path / "huge.zarr"), shape=(10**9, 10**6), chunks=(1000, 1000), dtype="f8")
    cases.append(("huge.zarr", 7, "memory budget"))

    zarr.create_array(str(tmp_path / "huge_chunk.zarr"), shape=(10, 4), chunks=(10**8, 10**5), dtype="f8")
    cases.append(("huge_chunk.zarr", 7, "one chunk"))

    dense_store(tmp_path / "escape.zarr", values, (3, 4))
    outside = tmp_path / "outside.bin"
    outside.write_bytes(b"secret")
    target = chunk_files(tmp_path / "escape.zarr")[0]
    os.remove(target)
    os.symlink(outside, target)
    cases.append(("escape.zarr", 4, "outside the store; refused (pass --allow-external-links"))

    dense_store(tmp_path / "dirlink.zarr", values, (3, 4))
    os.symlink(tmp_path, tmp_path / "dirlink.zarr" / "c" / "up")
    cases.append(("dirlink.zarr", 4, "outside the store"))

    dense_store(tmp_path / "fifo.zarr", values, (3, 4))
    target = chunk_files(tmp_path / "fifo.zarr")[0]
    os.remove(target)
    os.mkfifo(target)
    cases.append(("fifo.zarr", 4, "is a FIFO"))

    dense_store(tmp_path / "bigmeta.zarr", values, (3, 4))
    with open(tmp_path / "bigmeta.zarr" / "zarr.json", "r+b") as fh:
        fh.truncate(17 * 2**20)
    cases.append(("bigmeta.zarr", 4, "more than a Zarr document can need"))

    (tmp_path / "empty.zarr").mkdir()
    cases.append(("empty.zarr", 4, "holds no Zarr metadata"))

    (tmp_path / "file.zarr").write_bytes(b"x")
    cases.append(("file.zarr", 4, "expected a Zarr store (a directory)"))

    cases.append(("missing.zarr", 4, "Zarr store not found"))

    M = sp.random(10, 6, density=0.4, format="csr", random_state=3)
    bad_pointer = M.copy()
    bad_pointer.indptr[3] = 10**6
    sparse_store(tmp_path / "indptr.zarr", bad_pointer)
    cases.append(("indptr.zarr", 4, "indptr is inconsistent"))

    bad_index = M.copy()
    bad_index.indices[0] = 99
    sparse_store(tmp_path / "index.zarr", bad_index)
    cases.append(("index.zarr", 4, "index out of range"))

    group = sparse_store(tmp_path / "shape.zarr", M)
    group.attrs["shape"] = [10, "six"]
    cases.append(("shape.zarr", 4, "invalid shape"))

    group = sparse_store(tmp_path / "encoding.zarr", M)
    group.attrs["encoding-type"] = "coo_matrix"
    cases.append(("encoding.zarr", 4, "needs attribute encoding-type"))

    group = sparse_store(tmp_path / "lengths.zarr", M)
    del group["indices"]
    group.create_array("indices", data=M.indices[:-1])
    cases.append(("lengths.zarr", 4, "indices has"))

    group = sparse_store(tmp_path / "hugenz.zarr", M)
    del group["data"]
    del group["indices"]
    group.create_array("data", shape=(10**11,), chunks=(10**5,), dtype="f8")
    group.create_array("indices", shape=(10**11,), chunks=(10**5,), dtype="i8")
    cases.append(("hugenz.zarr", 7, "memory budget"))
    return cases


@pytest.mark.filterwarnings("ignore")
def test_hostile_stores_one_line_exit_code(tmp_path, cli):
    for name, code, fragment in _hostile(tmp_path):
        result = cli(["info", str(tmp_path / name), "--max-memory", "256M"])
        assert result.exit_code == code, (name, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"matcli: error: {tmp_path / name}"), (name, result.stderr)
        assert fragment in lines[0], (name, lines[0])
        assert "Traceback" not in result.stderr


def test_declared_sizes_fail_before_allocating(tmp_path):
    zarr.create_array(str(tmp_path / "huge.zarr"), shape=(10**6, 10**5), chunks=(100, 100), dtype="f8")
    tracemalloc.start()
    try:
        with input_policy(InputPolicy(max_memory=64 * 2**20)), pytest.raises(ResourceError):
            read_matrix(str(tmp_path / "huge.zarr"))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 * 2**20


def test_links_inside_the_store_are_followed_and_outside_only_with_the_opt_in(tmp_path):
    values = np.arange(40.0).reshape(10, 4) + 1
    dense_store(tmp_path / "s.zarr", values, (3, 4))
    dense_store(tmp_path / "other.zarr", values * 2, (3, 4))
    first = chunk_files(tmp_path / "s.zarr")[0]
    # a link to a chunk file inside the same store is part of the store
    os.replace(first, str(tmp_path / "s.zarr" / "moved"))
    os.symlink(tmp_path / "s.zarr" / "moved", first)
    np.testing.assert_array_equal(read_matrix(str(tmp_path / "s.zarr")), values)
    # a link to another store's chunk leaves the store: refused unless --allow-external-links
    os.remove(first)
    os.symlink(chunk_files(tmp_path / "other.zarr")[0], first)
    with pytest.raises(InputError, match="outside the store"):
        read_matrix(str(tmp_path / "s.zarr"))
    with input_policy(InputPolicy(allow_external=True)):
        got = read_matrix(str(tmp_path / "s.zarr"))
    np.testing.assert_array_equal(got[:3], values[:3] * 2)
    np.testing.assert_array_equal(got[3:], values[3:])


def test_internal_path_cannot_climb_out(tmp_path):
    dense_store(tmp_path / "a.zarr", np.ones((2, 2)), (2, 2))
    dense_store(tmp_path / "b.zarr", np.ones((2, 2)), (2, 2))
    for internal in ("/../b.zarr", "/./x", "/.zarray"):
        with pytest.raises(InputError, match="invalid path"):
            read_matrix(f"{tmp_path / 'a.zarr'}:{internal}")


def test_info_describes_a_store(tmp_path, cli):
    M = sp.random(20, 10, density=0.25, format="csr", random_state=5)
    sparse_store(tmp_path / "m.zarr", M)
    result = cli(["info", str(tmp_path / "m.zarr"), "--json"])
    assert result.exit_code == 0, result.stderr
    facts = json.loads(result.stdout)
    assert facts["format"] == "zarr" and facts["shape"] == [20, 10] and facts["nnz"] == M.nnz


def test_without_the_zarr_package_one_line(tmp_path, cli, monkeypatch):
    dense_store(tmp_path / "s.zarr", np.ones((3, 3)), (3, 3))
    monkeypatch.setitem(sys.modules, "zarr", None)  # import zarr now raises ImportError
    result = cli(["info", str(tmp_path / "s.zarr")])
    assert result.exit_code == 4 and "need the zarr package (pip install 'matcli[zarr]')" in result.stderr
    result = cli(["generate", "regression", "--rows", "20", "--cols", "2", "-o", tmp_path / "g.zarr"])
    assert result.exit_code == 5 and result.stderr.startswith(f"matcli: error: {tmp_path / 'g.zarr'}: Zarr stores")
    assert sorted(os.listdir(tmp_path)) == ["s.zarr"]
