"""``.npy`` inputs: declared shapes checked against the file and the budget before allocating."""

from __future__ import annotations

import io

import numpy as np
import pytest

from matcli.core.errors import InputError, ResourceError
from matcli.io.guard import InputPolicy, input_policy
from matcli.io.npy import read_npy


def header_only(path, shape, descr="<f8", data=b""):
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": descr, "fortran_order": False, "shape": shape})
    path.write_bytes(buf.getvalue() + data)
    return str(path)


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.float16, np.int32, np.uint8, np.complex128])
def test_numeric_arrays_read_back(tmp_path, dtype):
    original = (np.arange(12).reshape(3, 4) - 5).astype(dtype)
    np.save(tmp_path / "a.npy", original)
    array = read_npy(str(tmp_path / "a.npy"))
    np.testing.assert_array_equal(array, original)
    assert array.dtype == (np.complex128 if dtype is np.complex128 else
                           np.float32 if dtype is np.float32 else np.float64)


def test_a_tiny_file_declaring_a_huge_array_is_refused_at_once(tmp_path):
    path = header_only(tmp_path / "huge.npy", (100000, 100000), data=b"\0" * 72)
    with pytest.raises(InputError, match=r"declares shape \(100000, 100000\).*holds 72 bytes"):
        read_npy(path)


def test_a_whole_array_over_the_budget_is_a_resource_error(tmp_path):
    np.save(tmp_path / "a.npy", np.zeros((64, 64)))
    with input_policy(InputPolicy(max_memory=16 * 1024)), pytest.raises(ResourceError, match="64x64 array"):
        read_npy(str(tmp_path / "a.npy"))


@pytest.mark.parametrize("make, needle", [
    (lambda p: np.save(p, np.array([1, "a"], dtype=object), allow_pickle=True), "non-numeric dtype object"),
    (lambda p: np.save(p, np.ones(3, dtype=np.longdouble)), "extended precision"),
    (lambda p: np.save(p, np.array(["a", "b"])), "non-numeric dtype <U1"),
    (lambda p: p.write_bytes(b"\x93NUMPY\x01\x00garbage"), "not a readable .npy"),
    (lambda p: p.write_bytes(b"not numpy at all"), "not a readable .npy"),
])
def test_defective_files_are_input_errors(tmp_path, make, needle):
    path = tmp_path / "bad.npy"
    make(path)
    with pytest.raises(InputError, match=needle):
        read_npy(str(path))


def test_a_truncated_file_is_an_input_error(tmp_path):
    np.save(tmp_path / "a.npy", np.arange(100.0))
    data = (tmp_path / "a.npy").read_bytes()
    (tmp_path / "cut.npy").write_bytes(data[:-8])
    with pytest.raises(InputError, match="holds 792 bytes"):
        read_npy(str(tmp_path / "cut.npy"))
