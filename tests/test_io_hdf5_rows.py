"""Row sources over large HDF5 matrices: blocks tile the rows, checks name the row, memory stays one window."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import scipy.sparse as sp

from matcli.core.errors import InputError
from matcli.io import hdf5_rows
from matcli.io.hdf5 import write_arrays


@pytest.fixture
def dense_file(tmp_path):
    A = np.random.default_rng(0).standard_normal((40_000, 200))
    path = tmp_path / "dense.h5"
    with h5py.File(path, "w") as fh:
        fh["A"] = A
        fh.create_dataset("A32", data=A.astype(np.float32), chunks=(1000, 200))
    return path, A


@pytest.mark.parametrize("name", ["A", "A32"])  # mapped windows, or blocks read through h5py
def test_dense_rows_tile_the_matrix(dense_file, name):
    path, A = dense_file
    dataset = hdf5_rows.locate(f"{path}:/{name}")
    assert (dataset.offset is not None) == (name == "A")
    source = hdf5_rows.DenseRows(dataset, 7000)
    for _ in range(2):  # the second pass skips the checks and reads the same rows
        blocks = list(np.array(block) for block in source())
        assert [b.shape[0] for b in blocks] == [7000] * 5 + [5000]
        np.testing.assert_array_equal(np.vstack(blocks), A.astype(dataset.dtype))
    assert source.checked


def _reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")  # resets VmHWM to the current resident size
        return True
    except OSError:
        return False


def test_a_pass_over_mapped_windows_holds_one_window(dense_file):
    """A consumer holds the last block while asking for the next: the source must release a window's
    pages itself, or two windows are resident at once."""
    from matcli.core.timing import peak_memory_bytes, resident_memory_bytes
    from matcli.methods.sketch.streaming import RowStreamProblem

    path, A = dense_file
    dataset = hdf5_rows.locate(f"{path}:/A")
    window = 5000 * 200 * 8  # 8 MB of a 64 MB matrix
    problem = RowStreamProblem(hdf5_rows.DenseRows(dataset, 5000), A.shape, np.ones(A.shape[0]))
    x = np.ones(200)
    problem.residual_and_gradient(x)  # first pass: checks, allocations, library buffers
    if not _reset_peak_rss():
        pytest.skip("no /proc/self/clear_refs to reset the peak resident size")
    before = resident_memory_bytes()
    r, g = problem.residual_and_gradient(x)
    assert peak_memory_bytes() - before < 1.75 * window  # two windows when the source does not release
    np.testing.assert_allclose(g, A.T @ (1.0 - A @ x), rtol=1e-10)


def test_row_cuts_respect_the_budget_except_for_a_single_wide_row():
    cost = np.cumsum(np.r_[0, [3, 3, 3, 10, 1, 1, 1, 1]])
    cuts = hdf5_rows.row_cuts(cost, 6)
    assert cuts.tolist() == [0, 2, 3, 4, 8]
    spans = np.diff(cost[cuts])
    assert all(s <= 6 or n == 1 for s, n in zip(spans, np.diff(cuts)))


def test_csr_rows_tile_the_matrix_with_empty_rows(tmp_path):
    A = sp.random(5000, 30, density=0.1, format="csr", random_state=np.random.default_rng(1))
    A = sp.diags((np.arange(5000) % 3 != 0).astype(float)) @ A  # every third row empty
    A = sp.csr_matrix(A)
    path = tmp_path / "csr.h5"
    write_arrays(str(path), {"A": A})
    group = hdf5_rows.locate(f"{path}:/A")
    assert group.encoding == "csr_matrix" and group.nnz == A.nnz
    indptr = hdf5_rows.csr_indptr(group)
    cuts = hdf5_rows.row_cuts(indptr * 12, 12 * 1000)
    blocks = list(hdf5_rows.CsrRows(group, indptr, cuts)())
    assert len(blocks) == len(cuts) - 1 > 2
    assert abs(sp.vstack(blocks) - A).max() == 0


def test_csr_indptr_inconsistent_with_the_data_is_an_input_error(tmp_path):
    A = sp.random(100, 10, density=0.2, format="csr", random_state=np.random.default_rng(2))
    path = tmp_path / "bad.h5"
    write_arrays(str(path), {"A": A})
    with h5py.File(path, "r+") as fh:
        fh["A/indptr"][...] = np.r_[A.indptr[:50], A.indptr[50:] - 1]
    with pytest.raises(InputError, match="indptr"):
        hdf5_rows.csr_indptr(hdf5_rows.locate(f"{path}:/A"))


def test_a_dataset_reaching_beyond_the_end_of_the_file_is_not_mapped(tmp_path, monkeypatch):
    """Mapping bytes past the end of a file kills the process (SIGBUS) when they are touched. HDF5
    itself refuses such a file on opening when the end it records is past the real end; the check
    before mapping covers a file that shrinks after it is opened (simulated here)."""
    path = tmp_path / "d.h5"
    with h5py.File(path, "w") as fh:
        fh["A"] = np.ones((100, 4))
    real_size = path.stat().st_size
    monkeypatch.setattr(hdf5_rows.os.path, "getsize", lambda p: real_size - 8)
    with pytest.raises(InputError, match="beyond the end of the file"):
        hdf5_rows.locate(f"{path}:/A")


def test_streamed_sources_refuse_what_the_readers_refuse(tmp_path):
    """locate reaches the object as the readers do: no external link, no virtual dataset, no
    extended-precision values, and a CSR group's sizes checked before anything is read."""
    with h5py.File(tmp_path / "secret.h5", "w") as fh:
        fh["S"] = np.eye(3)
    with h5py.File(tmp_path / "f.h5", "w") as fh:
        fh["E"] = h5py.ExternalLink(str(tmp_path / "secret.h5"), "/S")
        fh["L"] = np.eye(3, dtype=np.longdouble)
        group = fh.create_group("C")
        group.attrs["encoding-type"] = "csr_matrix"
        group.attrs["shape"] = (3, 3)
        group["data"], group["indices"] = [1.0], [0]
        group["indptr"] = [0, 1]
    for name, defect in (("E", "external link"), ("L", "float128"), ("C", "indptr has length 2, expected 4")):
        with pytest.raises(InputError, match=defect):
            hdf5_rows.locate(f"{tmp_path / 'f.h5'}:/{name}")


def test_csr_indptr_is_checked_against_the_budget_before_it_is_read(tmp_path):
    from matcli.core.errors import ResourceError
    from matcli.io.guard import InputPolicy, input_policy

    path = tmp_path / "s.h5"
    with h5py.File(path, "w") as fh:
        g = fh.create_group("A")
        g.attrs["encoding-type"], g.attrs["shape"] = "csr_matrix", (2**28, 4)
        g["data"], g["indices"] = np.zeros(0), np.zeros(0, np.int32)
        g.create_dataset("indptr", shape=(2**28 + 1,), dtype="i8", chunks=(2**16,))
    with input_policy(InputPolicy(max_memory=2**26)):
        group = hdf5_rows.locate(f"{path}:/A")
        with pytest.raises(ResourceError, match="row pointer"):
            hdf5_rows.csr_indptr(group)
