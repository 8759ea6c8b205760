"""HDF5 dense/sparse/COO reading and writing, and every HDF5 defect as an InputError naming the file."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import scipy.sparse as sp

from matcli.core.errors import InputError
from matcli.io.hdf5 import write_arrays
from matcli.io.load import list_hdf5_members, read_dense, read_matrix, read_observed
from matcli.io.spec import parse_spec


def test_parse_spec_splits_only_after_hdf5_suffix():
    assert parse_spec("data/a.h5:/grp/A") == parse_spec("data/a.h5:grp/A")
    assert parse_spec("data/a.h5:/grp/A").internal == "/grp/A"
    assert parse_spec("weird:name.mtx").path == "weird:name.mtx"
    assert parse_spec("x.hdf5").internal is None


@pytest.mark.parametrize("fmt", ["csr", "csc"])
def test_sparse_group_round_trip(tmp_path, fmt):
    rng = np.random.default_rng(1)
    A = sp.random(40, 30, density=0.1, random_state=rng, format=fmt)
    path = tmp_path / "s.h5"
    write_arrays(str(path), {"A": A})
    with h5py.File(path) as fh:
        assert fh["A"].attrs["encoding-type"] == f"{fmt}_matrix"
    B = read_matrix(f"{path}:/A")
    assert sp.issparse(B) and B.format == "csr"
    np.testing.assert_array_equal(B.toarray(), A.toarray())


def test_dense_nested_and_single_member_default(tmp_path):
    path = tmp_path / "d.h5"
    A = np.arange(12.0).reshape(3, 4)
    write_arrays(str(path), {"grp/A": A})
    np.testing.assert_array_equal(read_matrix(f"{path}:/grp/A"), A)
    np.testing.assert_array_equal(read_matrix(f"{path}:/grp/A"), read_dense(f"{path}:/grp/A"))
    assert list_hdf5_members(f"{path}:/grp") == ["A"]


def test_10x_style_group_reads_as_csc(tmp_path):
    A = sp.random(5, 7, density=0.4, random_state=np.random.default_rng(2), format="csc")
    path = tmp_path / "tenx.h5"
    with h5py.File(path, "w") as fh:
        g = fh.create_group("matrix")
        for key in ("data", "indices", "indptr"):
            g.create_dataset(key, data=getattr(A, key))
        g.create_dataset("shape", data=np.array(A.shape))
        g.create_dataset("barcodes", data=np.array([b"c%d" % i for i in range(7)]))
    np.testing.assert_array_equal(read_matrix(f"{path}:/matrix").toarray(), A.toarray())


def test_coo_observed_group(tmp_path):
    path = tmp_path / "obs.h5"
    write_arrays(str(path), {"obs/row": np.array([0, 2]), "obs/col": np.array([1, 0]),
                             "obs/value": np.array([3.5, -1.0])}, group_attrs={"obs": {"shape": [3, 2]}})
    obs = read_observed(f"{path}:/obs")
    assert obs.shape == (3, 2)
    np.testing.assert_array_equal(obs.rows, [0, 2])
    np.testing.assert_array_equal(obs.values, [3.5, -1.0])


def _write(path, **datasets):
    with h5py.File(path, "w") as fh:
        for name, value in datasets.items():
            fh.create_dataset(name, data=value)


@pytest.mark.parametrize(
    "make, spec_suffix, defect",
    [
        (None, ":/A", "file not found"),
        (lambda p: _write(p, B=np.eye(2)), ":/A", "no dataset or group '/A'"),
        (lambda p: _write(p, A=np.ones((2, 2, 2))), ":/A", "3-D, expected 2-D"),
        (lambda p: _write(p, A=np.array([[b"a", b"b"]])), ":/A", "non-numeric dtype"),
        (lambda p: _write(p, A=np.array([[1.0, np.nan], [0.0, 1.0]])), ":/A", "NaN or Inf"),
        (lambda p: _write(p, A=np.array([[1.0, np.inf], [0.0, 1.0]])), ":/A", "NaN or Inf"),
        (lambda p: _write(p, A=np.eye(2), B=np.eye(2)), "", "name the dataset"),
        (lambda p: p.write_text("not hdf5"), ":/A", "not a readable HDF5 file"),
    ],
    ids=["missing-file", "missing-dataset", "wrong-rank", "non-numeric", "nan", "inf", "ambiguous", "not-hdf5"],
)
def test_hdf5_defects_name_file_and_defect(tmp_path, make, spec_suffix, defect):
    path = tmp_path / "bad.h5"
    if make is not None:
        make(path)
    with pytest.raises(InputError) as err:
        read_matrix(f"{path}{spec_suffix}")
    assert str(err.value).startswith(str(path))
    assert defect in str(err.value)


def test_corrupt_sparse_group_is_refused(tmp_path):
    path = tmp_path / "bad_sparse.h5"
    with h5py.File(path, "w") as fh:
        g = fh.create_group("A")
        g.attrs["encoding-type"] = "csr_matrix"
        g.attrs["shape"] = [2, 2]
        g.create_dataset("data", data=[1.0, 2.0])
        g.create_dataset("indices", data=[0, 5])
        g.create_dataset("indptr", data=[0, 1, 2])
    with pytest.raises(InputError, match="index out of range"):
        read_matrix(f"{path}:/A")


def test_finite_check_accepts_values_whose_sum_overflows(tmp_path):
    from matcli.io.load import read_matrix

    path = tmp_path / "big.h5"
    A = np.full((3, 4), 1.5e308)          # every entry finite, the sum is +inf
    A[1, 2] = -1.7e308                    # and opposite signs on the way: inf - inf = nan in a naive sum
    _write(path, A=A)
    assert np.array_equal(read_matrix(f"{path}:/A"), A)


def test_finite_check_finds_a_single_nan_in_a_sparse_matrix(tmp_path):
    from matcli.core.errors import InputError
    from matcli.io.hdf5 import write_arrays
    from matcli.io.load import read_matrix

    A = sp.random(200, 100, density=0.05, format="csr", random_state=0)
    A.data[17] = np.nan
    path = tmp_path / "s.h5"
    write_arrays(str(path), {"A": A})
    with pytest.raises(InputError, match="NaN or Inf"):
        read_matrix(f"{path}:/A")


def test_numeric_types_are_read_exactly_as_float64(tmp_path):
    """float16, float32, integers, booleans and big-endian floats become float64 (complex64: complex128)
    with the same values; HDF5 reads float16 and booleans only as themselves, so they convert after."""
    values = np.array([[1.5, 2.25], [-0.125, 6.0e4]])
    path = tmp_path / "t.h5"
    with h5py.File(path, "w") as fh:
        for dtype in ("<f2", "<f4", ">f8", "<i4", "<u8"):
            fh[dtype.replace("<", "le").replace(">", "be")] = np.abs(values).astype(dtype) if "u" in dtype else values.astype(dtype)
        fh["bool"] = np.eye(2, dtype=bool)
        fh["c64"] = (values * (1 + 2j)).astype(np.complex64)
    for name in ("lef2", "lef4", "bef8"):
        got = read_matrix(f"{path}:/{name}")
        assert got.dtype == np.float64 and np.array_equal(got, values), name
    assert np.array_equal(read_matrix(f"{path}:/lei4"), values.astype(np.int32).astype(np.float64))
    assert np.array_equal(read_matrix(f"{path}:/leu8"), np.abs(values).astype(np.uint64).astype(np.float64))
    assert np.array_equal(read_matrix(f"{path}:/bool"), np.eye(2)) and read_matrix(f"{path}:/bool").dtype == np.float64
    assert np.array_equal(read_matrix(f"{path}:/c64"), values * (1 + 2j))


def test_float16_sparse_data_reads_exactly(tmp_path):
    path = tmp_path / "s.h5"
    A = sp.csr_matrix(np.array([[0.0, 1.5], [2.25, 0.0]]))
    A.data = A.data.astype(np.float16)
    write_arrays(str(path), {"A": A})
    got = read_matrix(f"{path}:/A")
    assert got.dtype == np.float64 and np.array_equal(got.toarray(), [[0.0, 1.5], [2.25, 0.0]])


def test_a_sparse_group_read_as_a_dense_array_is_checked_against_the_budget(tmp_path):
    from matcli.core.errors import ResourceError
    from matcli.io.guard import InputPolicy, input_policy

    path = tmp_path / "s.h5"
    write_arrays(str(path), {"b": sp.csr_matrix((1, 2**24))})  # 128 MiB dense, a few bytes sparse
    with input_policy(InputPolicy(max_memory=2**26)), pytest.raises(ResourceError, match="as a dense"):
        read_dense(f"{path}:/b")


def test_only_errors_raised_inside_h5py_become_input_errors(tmp_path):
    """open_file turns the HDF5 library's errors on a corrupt file into InputError; the same
    exception types raised by matcli's own code are bugs and must surface as they are."""
    from matcli.io.hdf5 import open_file

    path = tmp_path / "d.h5"
    _write(path, A=np.eye(2))
    with pytest.raises(KeyError, match="ours"), open_file(str(path)):
        raise KeyError("ours")
    with pytest.raises(InputError, match="corrupt HDF5 file"), open_file(str(path)) as fh:
        fh.id.links.get_info(b"missing")
