"""Hostile HDF5 inputs through the real CLI: nothing outside the file is read without the opt-in,
declared sizes are checked against the budget before reading, and every defect ends with exit 4
(input) or 7 (budget), one stderr line naming the file, and no output file."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import h5py
import numpy as np
import pytest

SECRET = 4242.0
BUDGET = "64M"
HUGE = (2**17, 2**17)  # 128 GiB of float64, declared in a few hundred bytes


@pytest.fixture(autouse=True)
def small_budget(monkeypatch):
    # factorize takes the budget from the environment (its --max-memory is not passed on)
    monkeypatch.setenv("MATCLI_MAX_MEMORY", BUDGET)
    monkeypatch.delenv("HDF5_EXT_PREFIX", raising=False)
    monkeypatch.delenv("HDF5_VDS_PREFIX", raising=False)


def _secret(folder: Path) -> Path:
    path = folder / "secret.h5"
    with h5py.File(path, "w") as fh:
        fh["S"] = np.diag([SECRET, 1.0])
    return path


def _h5(path: Path, build) -> str:
    with h5py.File(path, "w") as fh:
        build(fh)
    return str(path)


def _csr(fh, name="A", *, shape=(2, 2), data=(1.0, 2.0), indices=(0, 1), indptr=(0, 1, 2), encoding="csr_matrix"):
    group = fh.create_group(name)
    group.attrs["encoding-type"] = encoding
    group.attrs["shape"] = shape
    for key, value in (("data", data), ("indices", indices), ("indptr", indptr)):
        if value is not None:
            group.create_dataset(key, data=np.asarray(value) if not isinstance(value, np.ndarray) else value)
    return group


def _coo(fh, name="O", n=3):
    group = fh.create_group(name)
    group.attrs["shape"] = (n, n)
    group["row"], group["col"], group["value"] = np.arange(n), np.arange(n), np.ones(n)
    return group


# --- builders: each writes its files into a folder and returns the spec to read -------------------

def external_link(d):
    _secret(d)
    return _h5(d / "l.h5", lambda fh: fh.__setitem__("A", h5py.ExternalLink("secret.h5", "/S"))) + ":/A"


def external_link_only_member(d):
    return external_link(d).removesuffix(":/A")


def external_link_on_the_way(d):
    _secret(d)
    def build(fh):
        fh.create_group("g")["B"] = h5py.ExternalLink("secret.h5", "/")
    return _h5(d / "l.h5", build) + ":/g/B/S"


def soft_link_to_external_link(d):
    _secret(d)
    def build(fh):
        fh["E"] = h5py.ExternalLink("secret.h5", "/S")
        fh["A"] = h5py.SoftLink("/E")
    return _h5(d / "l.h5", build) + ":/A"


def external_sparse_member(d):
    _secret(d)
    with h5py.File(d / "secret.h5", "a") as fh:
        fh["data"] = [SECRET, 1.0]
    def build(fh):
        group = _csr(fh, data=None)
        group["data"] = h5py.ExternalLink("secret.h5", "/data")
    return _h5(d / "l.h5", build) + ":/A"


def external_tenx_shape(d):
    _secret(d)
    with h5py.File(d / "secret.h5", "a") as fh:
        fh["shape"] = [2, 2]
    def build(fh):
        group = fh.create_group("matrix")
        group["data"], group["indices"], group["indptr"] = [1.0, 2.0], [0, 1], [0, 1, 2]
        group["barcodes"] = [b"a", b"b"]
        group["shape"] = h5py.ExternalLink("secret.h5", "/shape")
    return _h5(d / "l.h5", build) + ":/matrix"


def virtual_missing_source(d):
    def build(fh):
        layout = h5py.VirtualLayout(shape=(2, 2), dtype="f8")
        layout[:] = h5py.VirtualSource("missing.h5", "S", shape=(2, 2))
        fh.create_virtual_dataset("A", layout, fillvalue=0)
    return _h5(d / "v.h5", build) + ":/A"


def virtual_present_source(d):
    _secret(d)
    def build(fh):
        layout = h5py.VirtualLayout(shape=(2, 2), dtype="f8")
        layout[:] = h5py.VirtualSource("secret.h5", "S", shape=(2, 2))
        fh.create_virtual_dataset("A", layout, fillvalue=0)
    return _h5(d / "v.h5", build) + ":/A"


def external_raw_storage(d):
    (d / "raw.bin").write_bytes(np.diag([SECRET, 1.0]).tobytes())
    def build(fh):
        fh.create_dataset("A", shape=(2, 2), dtype="<f8", external=[(str(d / "raw.bin"), 0, 32)])
    return _h5(d / "x.h5", build) + ":/A"


def soft_link_loop(d):
    def build(fh):
        fh["A"], fh["B"] = h5py.SoftLink("/B"), h5py.SoftLink("/A")
    return _h5(d / "loop.h5", build) + ":/A"


def soft_link_self_loop_on_the_way(d):
    return _h5(d / "loop.h5", lambda fh: fh.__setitem__("g", h5py.SoftLink("/g"))) + ":/g/A"


def dangling_soft_link(d):
    return _h5(d / "dangling.h5", lambda fh: fh.__setitem__("A", h5py.SoftLink("/nothing"))) + ":/A"


def named_datatype(d):
    return _h5(d / "t.h5", lambda fh: fh.__setitem__("A", np.dtype("f8"))) + ":/A"


def fill_value_dataset(d):
    return _h5(d / "fill.h5", lambda fh: fh.create_dataset("A", shape=HUGE, dtype="f8")) + ":/A"


def unallocated_chunks(d):
    return _h5(d / "chunks.h5", lambda fh: fh.create_dataset("A", shape=HUGE, dtype="f8", chunks=(64, 64))) + ":/A"


def tiny_chunk_bomb(d):
    def build(fh):
        dset = fh.create_dataset("A", shape=HUGE, dtype="f8", chunks=(4, 4), compression="gzip")
        dset[:256, :256] = 1.0  # 4096 allocated compressed chunks
    return _h5(d / "bomb.h5", build) + ":/A"


def sparse_huge_indptr(d):
    def build(fh):
        group = _csr(fh, shape=(2**31, 4), data=[], indices=np.zeros(0, np.int32), indptr=None)
        group.create_dataset("indptr", shape=(2**31 + 1,), dtype="i8", chunks=(2**16,))
    return _h5(d / "s.h5", build) + ":/A"


def csc_huge_columns(d):
    def build(fh):
        group = _csr(fh, shape=(4, 2**31), data=[], indices=np.zeros(0, np.int32), indptr=None, encoding="csc_matrix")
        group.create_dataset("indptr", shape=(2**31 + 1,), dtype="i8", chunks=(2**16,))
    return _h5(d / "s.h5", build) + ":/A"


def sparse_huge_data(d):
    def build(fh):
        group = _csr(fh, shape=(1, 2**31), data=None, indices=None, indptr=[0, 2**31])
        group.create_dataset("data", shape=(2**31,), dtype="f8", chunks=(2**16,))
        group.create_dataset("indices", shape=(2**31,), dtype="i8", chunks=(2**16,))
    return _h5(d / "s.h5", build) + ":/A"


def sparse_shape_without_indptr(d):
    return _h5(d / "s.h5", lambda fh: _csr(fh, shape=(2**40, 2**40))) + ":/A"


def corrupt_chunk(d):
    path = d / "z.h5"
    with h5py.File(path, "w") as fh:
        dset = fh.create_dataset("A", data=np.random.default_rng(0).standard_normal((64, 64)),
                                 chunks=(32, 32), compression="gzip")
        info = dset.id.get_chunk_info(0)
    raw = bytearray(path.read_bytes())
    middle = info.byte_offset + info.size // 2
    raw[middle:middle + 32] = b"\xff" * 32
    path.write_bytes(bytes(raw))
    return f"{path}:/A"


def _dense_file(d, name="d.h5") -> tuple[Path, int]:
    path = d / name
    with h5py.File(path, "w") as fh:
        fh["A"] = np.random.default_rng(0).standard_normal((64, 8))
        fh["b"] = np.ones(64)
        offset = fh["A"].id.get_offset()
    return path, offset


def truncated_file(d):
    path, _ = _dense_file(d)
    path.write_bytes(path.read_bytes()[:3000])
    return f"{path}:/A"


def not_hdf5(d):
    (d / "n.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + os.urandom(500))
    return f"{d / 'n.h5'}:/A"


def superblock_eof_beyond_file(d):
    path, _ = _dense_file(d)
    raw = bytearray(path.read_bytes())
    assert raw[8] == 0  # version 0 superblock: end-of-file address at bytes 40..47
    struct.pack_into("<Q", raw, 40, 2**40)
    path.write_bytes(bytes(raw))
    return f"{path}:/A"


def data_beyond_eof(d):
    """A contiguous dataset whose values would lie past the end of the file (mapping them: SIGBUS).
    HDF5 2.0 refuses it on opening; hdf5_rows checks it again before mapping (test_io_hdf5_rows)."""
    path, offset = _dense_file(d)
    raw = bytearray(path.read_bytes())
    layout = struct.pack("<QQ", offset, 64 * 8 * 8)  # the layout message: address, then size
    assert raw.count(layout) == 1
    struct.pack_into("<Q", raw, raw.index(layout), len(raw) - 100)
    path.write_bytes(bytes(raw))
    return f"{path}:/A"


def _dataset(value, **kw):
    return lambda d: _h5(d / "t.h5", lambda fh: fh.create_dataset("A", data=value, **kw)) + ":/A"


def _enum(d):
    return _h5(d / "t.h5", lambda fh: fh.create_dataset(
        "A", data=np.zeros((2, 2), np.int8), dtype=h5py.enum_dtype({"R": 0, "G": 1}, basetype="i1"))) + ":/A"


def _references(kind):
    def build(fh):
        fh["T"] = np.eye(2)
        ref = fh["T"].ref if kind == "object" else fh["T"].regionref[0:1, 0:1]
        fh.create_dataset("A", data=np.array([[ref, ref]], dtype=object),
                          dtype=h5py.ref_dtype if kind == "object" else h5py.regionref_dtype)
    return lambda d: _h5(d / "t.h5", build) + ":/A"


def _group_shape(shape):
    return lambda d: _h5(d / "s.h5", lambda fh: _csr(fh, shape=shape)) + ":/A"


def encoding_array(d):
    def build(fh):
        _csr(fh).attrs["encoding-type"] = np.array([b"csr_matrix", b"csc_matrix"])
    return _h5(d / "s.h5", build) + ":/A"


def encoding_heap_loop(d):
    """The variable-length ``encoding-type`` string in a global heap whose free space declares size 0:
    HDF5 loops forever reading it."""
    path = d / "s.h5"
    with h5py.File(path, "w") as fh:
        _csr(fh)
    raw = bytearray(path.read_bytes())
    at = raw.index(b"GCOL")
    p = at + 16
    while struct.unpack_from("<H", raw, p)[0] != 0:  # objects up to the free-space object (index 0)
        p += 16 + (struct.unpack_from("<Q", raw, p + 8)[0] + 7) // 8 * 8
    struct.pack_into("<Q", raw, p + 8, 0)
    path.write_bytes(bytes(raw))
    return f"{path}:/A"


def _sparse(**kw):
    return lambda d: _h5(d / "s.h5", lambda fh: _csr(fh, **kw)) + ":/A"


def data_is_a_group(d):
    def build(fh):
        _csr(fh, data=None).create_group("data")
    return _h5(d / "s.h5", build) + ":/A"


def coo_huge(d):
    def build(fh):
        group = fh.create_group("O")
        group.attrs["shape"] = (2**31, 2**31)
        for key in ("row", "col", "value"):
            group.create_dataset(key, shape=(2**31,), dtype="i8" if key != "value" else "f8", chunks=(2**16,))
    return _h5(d / "o.h5", build) + ":/O"


def coo_external_value(d):
    _secret(d)
    with h5py.File(d / "secret.h5", "a") as fh:
        fh["v"] = [SECRET, 1.0, 1.0]
    def build(fh):
        group = _coo(fh)
        del group["value"]
        group["value"] = h5py.ExternalLink("secret.h5", "/v")
    return _h5(d / "o.h5", build) + ":/O"


FACTORIZE = ["factorize", "{spec}", "--kind", "svd", "--rank", "1", "-o", "{out}"]
SKETCH = ["sketch-regress", "{spec}", "{b}", "-o", "{out}"]
COMPLETE = ["complete", "{spec}", "--rank", "1", "-o", "{out}"]

CASES = [
    # links and storage outside the file
    (external_link, FACTORIZE, 4, "external link to secret.h5:/S"),
    (external_link_only_member, FACTORIZE, 4, "external link"),
    (external_link_on_the_way, FACTORIZE, 4, "/g/B is an external link"),
    (soft_link_to_external_link, FACTORIZE, 4, "/E is an external link"),
    (external_sparse_member, FACTORIZE, 4, "/A/data is an external link"),
    (external_tenx_shape, FACTORIZE, 4, "/matrix/shape is an external link"),
    (coo_external_value, COMPLETE, 4, "/O/value is an external link"),
    (virtual_missing_source, FACTORIZE, 4, "virtual dataset"),
    (virtual_present_source, FACTORIZE, 4, "virtual dataset"),
    (external_raw_storage, FACTORIZE, 4, "external file"),
    (soft_link_loop, FACTORIZE, 4, "soft links in a row"),
    (soft_link_self_loop_on_the_way, FACTORIZE, 4, "soft links in a row"),
    (dangling_soft_link, FACTORIZE, 4, "points to /nothing, which does not exist"),
    (named_datatype, FACTORIZE, 4, "named datatype"),
    (external_link, SKETCH, 4, "external link"),
    (virtual_present_source, SKETCH, 4, "virtual dataset"),
    # declared sizes
    (fill_value_dataset, FACTORIZE, 7, "memory budget"),
    (unallocated_chunks, FACTORIZE, 7, "memory budget"),
    (tiny_chunk_bomb, FACTORIZE, 7, "memory budget"),
    (sparse_huge_indptr, FACTORIZE, 7, "memory budget"),
    (csc_huge_columns, FACTORIZE, 7, "memory budget"),
    (sparse_huge_data, FACTORIZE, 7, "memory budget"),
    (sparse_huge_indptr, SKETCH, 7, "memory budget"),
    (sparse_shape_without_indptr, FACTORIZE, 4, "indptr has length 3"),
    (coo_huge, COMPLETE, 7, "memory budget"),
    # corrupt files
    (corrupt_chunk, FACTORIZE, 4, "cannot read dataset /A"),
    (truncated_file, FACTORIZE, 4, "HDF5"),
    (not_hdf5, FACTORIZE, 4, "not a readable HDF5 file"),
    (superblock_eof_beyond_file, FACTORIZE, 4, "not a readable HDF5 file"),
    (data_beyond_eof, FACTORIZE, 4, "corrupt HDF5 file"),
    (data_beyond_eof, SKETCH, 4, "corrupt HDF5 file"),
    (encoding_heap_loop, FACTORIZE, 4, "encoding-type"),
    # types and group defects
    (_dataset(np.eye(2, dtype=np.longdouble)), FACTORIZE, 4, "float128"),
    (_dataset(np.eye(2, dtype=np.clongdouble)), FACTORIZE, 4, "complex256"),
    (_dataset(np.zeros((2, 2), dtype=[("a", "f8"), ("b", "i4")])), FACTORIZE, 4, "compound"),
    (_dataset(np.array([[b"a", b"b"]])), FACTORIZE, 4, "non-numeric"),
    (_dataset(np.zeros((2, 2), dtype="V4")), FACTORIZE, 4, "non-numeric"),
    (_enum, FACTORIZE, 4, "enumerated"),
    (_references("object"), FACTORIZE, 4, "reference"),
    (_references("region"), FACTORIZE, 4, "reference"),
    (_dataset(3.0), FACTORIZE, 4, "0-D"),
    (_dataset(np.zeros((0, 3))), FACTORIZE, 4, "empty"),
    (_group_shape([np.inf, 2]), FACTORIZE, 4, "invalid shape"),
    (_group_shape([np.nan, 2]), FACTORIZE, 4, "invalid shape"),
    (_group_shape([-1, 2]), FACTORIZE, 4, "invalid shape"),
    (_group_shape([2.5, 2]), FACTORIZE, 4, "invalid shape"),
    (_group_shape(np.array([2**63, 2], dtype=np.uint64)), FACTORIZE, 4, "invalid shape"),
    (_group_shape([2**62 + 1, 2]), FACTORIZE, 4, "invalid shape"),
    (_group_shape([2, 2, 2]), FACTORIZE, 4, "must hold two integers"),
    (_group_shape("2x2"), FACTORIZE, 4, "must hold two integers"),
    (_group_shape(h5py.Empty("f8")), FACTORIZE, 4, "must hold two integers"),
    (encoding_array, FACTORIZE, 4, "must be a single string"),
    (_sparse(data=np.ones((2, 1))), FACTORIZE, 4, "data must be a 1-D dataset, is 2-D"),
    (data_is_a_group, FACTORIZE, 4, "data must be a 1-D dataset, is a group"),
    (_sparse(indices=np.array([0.0, 1.0])), FACTORIZE, 4, "indices must hold integers"),
    (_sparse(indices=np.array([0, 1], np.float16)), FACTORIZE, 4, "indices must hold integers"),
    (_sparse(indices=np.array([0, 1], np.longdouble)), FACTORIZE, 4, "indices must hold integers"),
    (_sparse(data=np.array([1, 2], np.longdouble)), FACTORIZE, 4, "float128"),
    (_sparse(indices=[0, 1, 1]), FACTORIZE, 4, "indices has 3 entries, data 2"),
]


@pytest.mark.parametrize("build, argv, code, fragment", CASES,
                         ids=[f"{c[0].__name__ if c[0].__name__ != '<lambda>' else 'case'}-{c[1][0]}-{i}"
                              for i, c in enumerate(CASES)])
def test_hostile_file_ends_with_one_line_and_no_output(cli, tmp_path, monkeypatch, build, argv, code, fragment):
    monkeypatch.chdir(tmp_path)
    spec = build(tmp_path)
    out = tmp_path / "out.h5"
    b = tmp_path / "b.h5"
    with h5py.File(b, "w") as fh:
        fh["b"] = np.ones(64)
    res = cli([a.format(spec=spec, out=out, b=f"{b}:/b") for a in argv])
    lines = res.stderr.strip().splitlines()
    assert (res.exit_code, len(lines)) == (code, 1), res.stderr
    assert lines[0].startswith(f"matcli: error: {spec.split('.h5')[0]}.h5"), lines[0]
    assert fragment in lines[0]
    assert not out.exists()


@pytest.mark.parametrize("where", ["beside the file", "working directory", "HDF5_EXT_PREFIX"])
def test_external_link_is_refused_wherever_hdf5_would_find_the_target(cli, tmp_path, monkeypatch, where):
    """HDF5 looks for a link's target beside the file, then in $HDF5_EXT_PREFIX and the working
    directory: refused in each case, and followed with --allow-external-links."""
    links, targets = tmp_path / "links", tmp_path / "targets"
    links.mkdir(), targets.mkdir()
    _secret(links if where == "beside the file" else targets)
    _h5(links / "l.h5", lambda fh: fh.__setitem__("A", h5py.ExternalLink("secret.h5", "/S")))
    with h5py.File(tmp_path / "b.h5", "w") as fh:
        fh["b"] = [SECRET, 1.0]
    monkeypatch.chdir(targets if where == "working directory" else tmp_path)
    if where == "HDF5_EXT_PREFIX":
        monkeypatch.setenv("HDF5_EXT_PREFIX", str(targets))
    argv = ["solve", f"{links / 'l.h5'}:/A", "-b", f"{tmp_path / 'b.h5'}:/b", "-o", str(tmp_path / "x.h5"), "-q"]
    res = cli(argv)
    assert res.exit_code == 4 and "external link" in res.stderr
    assert not (tmp_path / "x.h5").exists()
    res = cli(argv + ["--allow-external-links"])
    assert res.exit_code == 0, res.stderr
    with h5py.File(tmp_path / "x.h5") as fh:
        np.testing.assert_allclose(fh["x"][()], [1.0, 1.0], rtol=1e-12)


def test_broken_external_link_with_the_opt_in_is_an_input_error(cli, tmp_path):
    _h5(tmp_path / "l.h5", lambda fh: fh.__setitem__("A", h5py.ExternalLink("gone.h5", "/S")))
    res = cli(["info", f"{tmp_path / 'l.h5'}:/A"])
    assert res.exit_code == 4 and "external link" in res.stderr


@pytest.mark.parametrize("present", [True, False])
def test_virtual_dataset_with_the_opt_in_needs_every_source(tmp_path, monkeypatch, present):
    from matcli.core.errors import InputError
    from matcli.io.guard import InputPolicy, input_policy
    from matcli.io.load import read_matrix

    monkeypatch.chdir(tmp_path)
    spec = virtual_present_source(tmp_path) if present else virtual_missing_source(tmp_path)
    with input_policy(InputPolicy(max_memory=2**26, allow_external=True)):
        if present:
            np.testing.assert_array_equal(read_matrix(spec), np.diag([SECRET, 1.0]))
        else:
            with pytest.raises(InputError, match="missing.h5:S is missing"):
                read_matrix(spec)


def test_soft_links_inside_the_file_are_followed(cli, tmp_path):
    def build(fh):
        fh.create_group("g")["M"] = np.diag([3.0, 1.0])
        fh["A"] = h5py.SoftLink("g/M")
    spec = _h5(tmp_path / "s.h5", build) + ":/A"
    res = cli(["factorize", spec, "--kind", "svd", "--rank", "1", "-o", str(tmp_path / "o.h5"), "-q"])
    assert res.exit_code == 0, res.stderr
    with h5py.File(tmp_path / "o.h5") as fh:
        np.testing.assert_allclose(fh["s"][()], [3.0], rtol=1e-12)


@pytest.fixture(scope="module")
def valid_file(tmp_path_factory) -> bytes:
    """A small file with one of each thing the readers read: a contiguous and a gzip-chunked dense
    dataset, a CSR group (variable-length string attribute), an observed-entries group."""
    import scipy.sparse as sp

    from matcli.io.hdf5 import write_arrays

    path = tmp_path_factory.mktemp("fuzz") / "valid.h5"
    rng = np.random.default_rng(0)
    write_arrays(str(path), {"S": sp.random(6, 5, density=0.4, format="csr", random_state=1),
                             "O/row": np.array([0, 2]), "O/col": np.array([1, 0]), "O/value": np.array([3.5, -1.0]),
                             "D": rng.standard_normal((8, 4))}, group_attrs={"O": {"shape": [3, 2]}})
    with h5py.File(path, "a") as fh:
        fh.create_dataset("Z", data=rng.standard_normal((16, 4)), compression="gzip", chunks=(4, 4))
    return path.read_bytes()


def test_mutated_bytes_read_correctly_or_end_as_input_or_budget_errors(valid_file, tmp_path_factory):
    """Any mutation of a valid file: each reader returns a finite 2-D matrix (or observed entries)
    or raises InputError / ResourceError, never another exception, never a hang (see
    matcli.io.hdf5_strings). 2400 random mutations of this file were run this way while writing it."""
    from hypothesis import HealthCheck, given, settings, strategies as st

    from matcli.core.errors import InputError, ResourceError
    from matcli.io.guard import InputPolicy, input_policy
    from matcli.io.load import read_matrix, read_observed

    path = tmp_path_factory.mktemp("mutated") / "m.h5"
    positions = st.integers(0, len(valid_file) - 1)

    @settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
    @given(st.lists(st.tuples(positions, st.integers(0, 255)), min_size=1, max_size=8))
    def check(mutations):
        raw = bytearray(valid_file)
        for position, value in mutations:
            raw[position] = value
        path.write_bytes(bytes(raw))
        with input_policy(InputPolicy(max_memory=2**24)):
            for name in ("D", "Z", "S", "O"):
                try:
                    got = read_observed(f"{path}:/{name}") if name == "O" else read_matrix(f"{path}:/{name}")
                except (InputError, ResourceError):
                    continue
                if name != "O":
                    assert got.ndim == 2 and got.dtype in (np.float64, np.complex128)

    check()
