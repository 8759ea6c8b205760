"""Inputs by reference (matcli/backends/refs.py): a task carries a file's name and digest, never its
values, and the reader on the other side gets exactly the array the client read or a one-line
input error."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
import scipy.sparse as sp

from matcli.backends import refs
from matcli.core.errors import InputError, ResourceError
from matcli.io.guard import InputPolicy, input_policy
from matcli.io.load import read_dense, read_matrix
from matcli.io.writers import write_result


def _as_float64(A):
    return A.astype(np.float64)


@pytest.fixture(autouse=True)
def empty_cache():
    refs.clear_cache()
    yield
    refs.clear_cache()


@pytest.fixture
def matrix_file(tmp_path):
    rng = np.random.default_rng(0)
    A = sp.random(400, 300, density=0.05, random_state=rng, format="csr")
    path = tmp_path / "m.h5"
    write_result(str(path), str(path), {"A": A, "b": rng.standard_normal(400)}, {}, "test")
    return path, A


def test_a_reference_carries_the_name_not_the_values(matrix_file, tmp_path, monkeypatch):
    path, A = matrix_file
    monkeypatch.chdir(tmp_path)
    value = read_matrix("m.h5:/A")
    ref = refs.reference("m.h5:/A", value, read_matrix)
    assert isinstance(ref, refs.FileInput) and ref.spec == f"{path}:/A" and os.path.isabs(path)
    size = len(pickle.dumps(ref))
    assert size < 1000 < value.data.nbytes, size
    got = pickle.loads(pickle.dumps(ref)).load()
    assert (got != A).nnz == 0 and got.dtype == value.dtype and got.shape == value.shape


def test_the_reader_applies_the_same_conversion_and_is_checked_against_the_digest(matrix_file):
    path, _ = matrix_file
    dense = read_dense(f"{path}:/b").astype(np.complex128)
    ref = refs.reference(f"{path}:/b", dense, read_dense, convert=np.asarray)
    with pytest.raises(InputError, match="read other values"):
        ref.load()  # the client's complex copy is not what the reader returns
    ref = refs.reference(f"{path}:/A", read_matrix(f"{path}:/A").astype(np.float32), read_matrix,
                         convert=_as_float64)
    with pytest.raises(InputError, match="read other values"):
        ref.load()  # float32 values rounded on the client are not the file's float64 values


def test_a_changed_or_missing_file_is_an_input_error_naming_it(matrix_file):
    path, A = matrix_file
    ref = refs.reference(f"{path}:/A", read_matrix(f"{path}:/A"), read_matrix)
    changed = A.copy()
    changed.data[0] += 1e-12
    write_result(str(path), str(path), {"A": changed}, {}, "test")
    with pytest.raises(InputError) as info:
        ref.load()
    assert str(info.value).startswith(f"{path}: ") and "read other values" in str(info.value)
    os.unlink(path)
    with pytest.raises(InputError, match="not found on Dask worker host .* shared filesystem"):
        ref.load()


def test_the_run_policy_travels_with_the_reference(matrix_file):
    path, _ = matrix_file
    value = read_matrix(f"{path}:/A")
    with input_policy(InputPolicy(max_memory=1000)):
        ref = refs.reference(f"{path}:/A", value, read_matrix)
    assert ref.policy.max_memory == 1000
    with pytest.raises(ResourceError):
        ref.load()


def test_arrays_and_standard_input_travel_by_value():
    value = np.arange(3.0)
    for spec in ("<array:A>", "-"):
        ref = refs.reference(spec, value, read_dense)
        assert isinstance(ref, refs.Inline) and ref.load() is value


def test_digest_tells_values_dtypes_shapes_and_formats_apart():
    x = np.arange(6.0)
    digests = {refs.digest(v) for v in (x, x.reshape(2, 3), x.astype(np.float32), x + 1e-15 * (x == 5),
                                         sp.csr_matrix(x.reshape(2, 3)), sp.csc_matrix(x.reshape(2, 3)),
                                         (x, x), (x,))}
    assert len(digests) == 8
    assert refs.digest(np.arange(6.0)) == refs.digest(x.copy())


def test_a_worker_reads_an_input_once_per_job(matrix_file):
    path, _ = matrix_file
    ref = refs.reference(f"{path}:/A", read_matrix(f"{path}:/A"), read_matrix)
    first = ref.load()
    assert ref.load() is first
    assert refs.clear_cache() == 1
    assert ref.load() is not first


def test_another_process_reads_the_reference(matrix_file, tmp_path):
    path, A = matrix_file
    ref = refs.reference(f"{path}:/A", read_matrix(f"{path}:/A"), read_matrix)
    blob = tmp_path / "ref.pickle"
    blob.write_bytes(pickle.dumps(ref))
    code = ("import pickle, sys; ref = pickle.load(open(sys.argv[1], 'rb')); A = ref.load(); "
            "print(A.shape, A.nnz)")
    out = subprocess.run([sys.executable, "-c", code, str(blob)], cwd="/", capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == f"{A.shape} {A.nnz}"
