"""Row blocks by reference (io/row_blocks.py): every row read exactly once, in order, equal to the
matrix that was written (numpy/scipy arrays are the reference); blocks are balanced, aligned to
storage chunks, picklable, read under the input policy they were planned with."""

from __future__ import annotations

import os
import pickle
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

import h5py
import numpy as np
import pytest
import scipy.sparse as sp

zarr = pytest.importorskip("zarr")

from matcli.core.errors import InputError, ResourceError  # noqa: E402
from matcli.io.guard import InputPolicy, input_policy  # noqa: E402
from matcli.io.hdf5 import write_arrays  # noqa: E402
from matcli.io.mtx import read_mtx  # noqa: E402
from matcli.io.row_blocks import RowBlock, row_source  # noqa: E402
from tests.conftest import data_file  # noqa: E402

M_ROWS, N_COLS = 1003, 7


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """(spec, reference matrix, storage chunk rows) for every readable kind."""
    root = tmp_path_factory.mktemp("rows")
    rng = np.random.default_rng(0)
    A = rng.standard_normal((M_ROWS, N_COLS))
    # rows of very different lengths, some empty: balancing by nonzeros is visible
    S = sp.random(M_ROWS, 40, density=0.05, format="csr", random_state=1)
    S = sp.csr_matrix(sp.vstack([S[:500] * 0, S[500:]]) + sp.random(M_ROWS, 40, density=0.001, random_state=2))
    with h5py.File(root / "chunked.h5", "w") as fh:
        fh.create_dataset("A", data=A, chunks=(64, N_COLS), compression="gzip")
    write_arrays(str(root / "plain.h5"), {"A": A, "S": S})
    np.save(root / "a.npy", A.astype(np.float32))
    dense = zarr.create_array(str(root / "d.zarr"), shape=A.shape, chunks=(100, N_COLS), dtype="f8")
    dense[...] = A
    group = zarr.open_group(str(root / "s.zarr"), mode="w")
    group.attrs.update({"encoding-type": "csr_matrix", "shape": list(S.shape)})
    for name in ("data", "indices", "indptr"):
        group.create_array(name, data=getattr(S, name), chunks=(50,))
    return root, [
        (f"{root / 'chunked.h5'}:/A", A, 64),
        (f"{root / 'plain.h5'}:/A", A, 1),
        (f"{root / 'plain.h5'}:/S", S, 1),
        (str(root / "a.npy"), A.astype(np.float32).astype(np.float64), 1),
        (str(root / "d.zarr"), A, 100),
        (str(root / "s.zarr"), S, 1),
    ]


def assemble(source, blocks):
    parts = [source.read(b) for b in blocks]
    if sp.issparse(parts[0]):
        return sp.vstack(parts).toarray()
    return np.vstack(parts)


def dense(matrix):
    return matrix.toarray() if sp.issparse(matrix) else matrix


@pytest.mark.parametrize("k", [1, 2, 3, 8, 16])
def test_blocks_cover_every_row_once_and_read_back_the_matrix(inputs, k):
    _, cases = inputs
    for spec, reference, chunk in cases:
        source = pickle.loads(pickle.dumps(row_source(spec)))
        assert (source.n_rows, source.n_cols) == reference.shape
        assert source.nnz == (reference.nnz if sp.issparse(reference) else reference.size)
        blocks = source.blocks(k)
        assert 1 <= len(blocks) <= k
        assert blocks[0].start == 0 and blocks[-1].stop == source.n_rows
        assert all(a.stop == b.start for a, b in zip(blocks, blocks[1:]))
        assert all(b.stop > b.start for b in blocks)
        np.testing.assert_array_equal(assemble(source, blocks), dense(reference), err_msg=spec)
        if chunk > 1 and source.n_rows >= k * chunk:
            assert all(b.start % chunk == 0 for b in blocks), spec


def test_more_blocks_than_rows_gives_one_row_each(inputs):
    _, cases = inputs
    for spec, reference, _ in cases:
        source = row_source(spec)
        blocks = source.blocks(5000)
        if sp.issparse(reference):  # cut where indptr crosses k-quantiles: empty rows merge
            assert sum(b.n_rows for b in blocks) == M_ROWS and len(blocks) <= M_ROWS
        else:
            assert [(b.start, b.stop) for b in blocks] == [(i, i + 1) for i in range(M_ROWS)]
        for block in blocks[::97]:
            np.testing.assert_array_equal(dense(source.read(block)), dense(reference)[block.start:block.stop])


def test_sharded_zarr_blocks_align_to_shards(tmp_path):
    values = np.arange(1200.0).reshape(200, 6)
    array = zarr.create_array(str(tmp_path / "sh.zarr"), shape=values.shape, chunks=(10, 6), shards=(40, 6),
                              dtype="f8")
    array[...] = values
    source = row_source(str(tmp_path / "sh.zarr"))
    assert source.chunk_rows == 40
    blocks = source.blocks(3)
    assert all(b.start % 40 == 0 for b in blocks)
    np.testing.assert_array_equal(assemble(source, blocks), values)


def test_csr_blocks_are_balanced_by_nonzeros(inputs):
    _, cases = inputs
    spec, S, _ = cases[2]
    source = row_source(spec)
    blocks = source.blocks(4)
    counts = [S[b.start:b.stop].nnz for b in blocks]
    assert len(blocks) == 4
    # the sample holds every row here (m < INDPTR_SAMPLES): each block is within one row of nnz / k
    widest = int(np.diff(S.indptr).max())
    assert max(abs(c - S.nnz / 4) for c in counts) <= widest
    # rows are not balanced: the first half of the matrix is nearly empty
    assert blocks[0].stop > S.shape[0] / 2


def test_a_block_read_in_another_process(inputs):
    """What a Dask worker does: gets the pickled reference and a block, opens the file itself."""
    _, cases = inputs
    spec, reference, _ = cases[5]
    source = row_source(spec)
    block = source.blocks(3)[1]
    with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
        got = pool.submit(source.read, block).result(timeout=120)
    np.testing.assert_array_equal(got.toarray(), dense(reference)[block.start:block.stop])


def test_reads_apply_the_budget_the_source_was_planned_with(inputs):
    _, cases = inputs
    spec, _, _ = cases[0]
    with input_policy(InputPolicy(max_memory=4096)):
        source = row_source(spec)
    assert source.read(RowBlock(spec, 0, 10)).shape == (10, N_COLS)
    with pytest.raises(ResourceError, match="rows 1..1003"):
        source.read(RowBlock(spec, 0, M_ROWS))


def test_external_links_need_the_opt_in_at_planning_and_at_reading(tmp_path):
    values = np.arange(40.0).reshape(10, 4)
    store = zarr.create_array(str(tmp_path / "s.zarr"), shape=values.shape, chunks=(5, 4), dtype="f8")
    store[...] = values
    os.rename(tmp_path / "s.zarr" / "c", tmp_path / "chunks")
    os.symlink(tmp_path / "chunks", tmp_path / "s.zarr" / "c")
    with pytest.raises(InputError, match="outside the store"):
        row_source(str(tmp_path / "s.zarr"))
    with input_policy(InputPolicy(allow_external=True)):
        source = row_source(str(tmp_path / "s.zarr"))
    # the policy travels with the reference: a worker (default policy) follows the link too
    np.testing.assert_array_equal(source.read(source.blocks(2)[1]), values[5:])


def test_bad_values_and_indices_are_named_by_row(tmp_path):
    A = np.ones((20, 3))
    A[13, 1] = np.nan
    write_arrays(str(tmp_path / "a.h5"), {"A": A})
    source = row_source(f"{tmp_path / 'a.h5'}:/A")
    source.read(RowBlock(source.spec, 0, 10))
    with pytest.raises(InputError, match="matrix row 14 contains NaN"):
        source.read(RowBlock(source.spec, 10, 20))
    S = sp.csr_matrix(np.eye(6))
    S.indices[4] = 9
    write_arrays(str(tmp_path / "s.h5"), {"S": S})
    source = row_source(f"{tmp_path / 's.h5'}:/S")
    with pytest.raises(InputError, match="row 5 has column index 9 outside 0..5"):
        source.read(RowBlock(source.spec, 3, 6))


def test_a_file_changed_after_planning_is_refused(tmp_path):
    write_arrays(str(tmp_path / "a.h5"), {"A": np.ones((20, 3))})
    source = row_source(f"{tmp_path / 'a.h5'}:/A")
    os.remove(tmp_path / "a.h5")
    write_arrays(str(tmp_path / "a.h5"), {"A": np.ones((21, 3))})
    with pytest.raises(InputError, match="changed since the blocks were planned"):
        source.read(source.blocks(1)[0])


def test_inputs_without_rows_to_seek_are_refused_in_one_line(tmp_path):
    path = data_file("matrices/494_bus.mtx")
    with pytest.raises(InputError, match="MatrixMarket file cannot be read in row blocks"):
        row_source(str(path))
    write_arrays(str(tmp_path / "c.h5"), {"C": sp.csc_matrix(read_mtx(str(path)))})
    with pytest.raises(InputError, match="CSC, which has no rows to cut"):
        row_source(f"{tmp_path / 'c.h5'}:/C")
    write_arrays(str(tmp_path / "t.h5"), {"t": np.ones((2, 2, 2))})
    with pytest.raises(InputError, match="3-D, expected 1-D or 2-D"):
        row_source(f"{tmp_path / 't.h5'}:/t")


def test_vectors_are_read_in_the_same_blocks_as_their_matrix(tmp_path):
    """A right-hand side b (1-D) cut like A: the distributed least-squares pairs their blocks."""
    rng = np.random.default_rng(4)
    A, b = rng.standard_normal((300, 4)), rng.standard_normal(300)
    write_arrays(str(tmp_path / "p.h5"), {"A": A, "b": b})
    vector = zarr.create_array(str(tmp_path / "b.zarr"), shape=b.shape, chunks=(64,), dtype="f8")
    vector[...] = b
    np.save(tmp_path / "b.npy", b)
    matrix = row_source(f"{tmp_path / 'p.h5'}:/A")
    for spec in (f"{tmp_path / 'p.h5'}:/b", str(tmp_path / "b.zarr"), str(tmp_path / "b.npy")):
        source = row_source(spec)
        assert (source.layout, source.n_rows, source.n_cols) == ("vector", 300, 1)
        for block in matrix.blocks(7):
            got = source.read(RowBlock(spec, block.start, block.stop))
            assert got.shape == (block.n_rows,)
            np.testing.assert_array_equal(got, b[block.start:block.stop])


def test_empty_matrix_has_no_blocks_and_k_must_be_positive(tmp_path):
    write_arrays(str(tmp_path / "e.h5"), {"E": np.zeros((0, 4))})
    source = row_source(f"{tmp_path / 'e.h5'}:/E")
    assert source.blocks(3) == []
    with pytest.raises(ValueError):
        source.blocks(0)


def test_a_corrupt_chunk_fails_only_the_blocks_that_read_it(tmp_path):
    values = np.arange(120.0).reshape(30, 4)
    array = zarr.create_array(str(tmp_path / "c.zarr"), shape=values.shape, chunks=(10, 4), dtype="f8")
    array[...] = values
    source = row_source(str(tmp_path / "c.zarr"))
    (tmp_path / "c.zarr" / "c" / "1" / "0").write_bytes(b"\x00not zstd" * 4)
    first, middle, last = source.blocks(3)
    np.testing.assert_array_equal(source.read(first), values[:10])
    np.testing.assert_array_equal(source.read(last), values[20:])
    with pytest.raises(InputError, match=r"c.zarr: cannot read array /: .*"):
        source.read(middle)
