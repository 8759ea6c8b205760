"""``matcli generate regression`` written block by block (gallery.RegressionTiles, io/row_writer):
the problem keeps its promises (numpy's lstsq and SVD are the reference), the values do not depend
on the block size, HDF5 and Zarr outputs hold the same numbers, and outputs appear whole or not at
all."""

from __future__ import annotations

import os
import tracemalloc

import h5py
import numpy as np
import pytest

zarr = pytest.importorskip("zarr")

from matcli import gallery  # noqa: E402
from matcli.io.load import read_dense, read_matrix  # noqa: E402
from matcli.io.row_writer import RowArray, write_row_blocks  # noqa: E402

T = gallery.TILE_ROWS


def plan(m=3 * T + 123, n=12, cond=1e6, heavy=3, noise=0.1, seed=1):
    return gallery.RegressionTiles(m, n, cond, heavy, noise, np.random.default_rng(seed))


def write(path, p, block_rows, chunk=T, force=False):
    write_row_blocks(str(path), force=force, rows=p.m,
                     arrays={"A": RowArray((p.n,), chunk=chunk), "b": RowArray((), chunk=chunk)},
                     blocks=p.blocks(block_rows), small=p.small_arrays(),
                     attrs={"generator": "regression", "seed": 1})


def test_tiled_problem_keeps_the_regression_promises():
    p = plan()
    arrays = p.arrays()
    A, b, x_true = arrays["A"], arrays["b"], arrays["x_true"]
    s = np.linalg.svd(A, compute_uv=False)
    # U is orthonormal to eps * cond(G): the singular values are the requested ones to ~1e-12
    np.testing.assert_allclose(s, np.logspace(0, -6, p.n), rtol=1e-10)
    x, *_ = np.linalg.lstsq(A, b, rcond=None)
    # forward error of a least-squares solution: cond * eps + cond^2 * eps * ||r|| / (||A|| ||x||)
    bound = 1e6 * 1e-16 * (1 + 1e6 * 0.1)
    assert np.linalg.norm(x - x_true) / np.linalg.norm(x_true) < 100 * bound
    residual = np.linalg.norm(A @ x - b)
    np.testing.assert_allclose(residual, arrays["optimal_residual"], rtol=1e-10)
    np.testing.assert_allclose(residual, 0.1 * np.linalg.norm(A @ x_true), rtol=1e-10)
    # the heavy rows make A coherent: three rows carry most of the leverage
    q, _ = np.linalg.qr(A)
    leverage = np.sort((q ** 2).sum(axis=1))[::-1]
    assert leverage[:3].min() > 0.5 and leverage[3] < 0.05


def test_no_noise_means_a_consistent_system():
    p = plan(noise=0.0, heavy=0)
    arrays = p.arrays()
    np.testing.assert_allclose(arrays["A"] @ arrays["x_true"], arrays["b"], rtol=0, atol=1e-13)
    assert arrays["optimal_residual"] == 0.0


def test_same_seed_same_problem_other_seed_other_problem():
    a, b = plan(seed=5).arrays(), plan(seed=5).arrays()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    assert not np.array_equal(a["A"], plan(seed=6).arrays()["A"])


def test_tiled_lowrank_has_the_promised_factors_and_spectrum():
    p = gallery.LowrankTiles(2 * T + 50, 30, 4, 0.0, 0.5, np.random.default_rng(3))
    arrays = p.arrays()
    A, U, s, V = arrays["A"], arrays["U_true"], arrays["s_true"], arrays["V_true"]
    np.testing.assert_array_equal(s, 0.5 ** np.arange(4))
    np.testing.assert_allclose(U.T @ U, np.eye(4), atol=1e-14)
    np.testing.assert_allclose(V.T @ V, np.eye(4), atol=1e-14)
    np.testing.assert_allclose(np.linalg.svd(A, compute_uv=False)[:5], [*s, 0.0], atol=1e-13)
    np.testing.assert_allclose(A, (U * s) @ V.T, atol=1e-15)
    noisy = gallery.LowrankTiles(2 * T + 50, 30, 4, 0.3, 0.5, np.random.default_rng(3)).arrays()
    # same key: the same U and V; the noise is E * 0.3 / sqrt(m) with E standard Gaussian
    np.testing.assert_array_equal(noisy["U_true"], U)
    E = (noisy["A"] - A) * np.sqrt(2 * T + 50) / 0.3
    assert abs(E.std() - 1) < 0.02 and abs(E.mean()) < 0.02


def test_cli_lowrank_blockwise_equals_the_plan(tmp_path, cli):
    args = ["generate", "lowrank", "--rows", str(T + 9), "--cols", "12", "--rank", "3", "--noise", "0.1",
            "--seed", "2", "--quiet"]
    assert cli([*args, "-o", tmp_path / "l.zarr"]).exit_code == 0
    assert cli([*args, "-o", tmp_path / "l.h5"]).exit_code == 0
    expected = gallery.LowrankTiles(T + 9, 12, 3, 0.1, 0.8, np.random.default_rng(2)).arrays()
    for out in ("l.h5", "l.zarr"):
        np.testing.assert_array_equal(read_matrix(f"{tmp_path / out}:/A"), expected["A"])
        np.testing.assert_array_equal(read_matrix(f"{tmp_path / out}:/U_true"), expected["U_true"])
        np.testing.assert_array_equal(read_matrix(f"{tmp_path / out}:/V_true"), expected["V_true"])
        np.testing.assert_array_equal(read_dense(f"{tmp_path / out}:/s_true"), expected["s_true"])


@pytest.mark.parametrize("suffix", [".h5", ".zarr"])
def test_the_file_does_not_depend_on_the_block_size(tmp_path, suffix):
    p = plan()
    reference = p.arrays()
    outputs = []
    for block_rows in (T, 2 * T, 8 * T):
        out = tmp_path / f"p{block_rows}{suffix}"
        write(out, p, block_rows)
        outputs.append(out)
        np.testing.assert_array_equal(read_matrix(f"{out}:/A"), reference["A"])
        np.testing.assert_array_equal(read_dense(f"{out}:/b"), reference["b"])
        np.testing.assert_array_equal(read_dense(f"{out}:/x_true"), reference["x_true"])
    if suffix == ".h5":
        assert outputs[0].read_bytes() == outputs[1].read_bytes() == outputs[2].read_bytes()
    else:
        def files(root):
            return {os.path.relpath(os.path.join(d, f), root): open(os.path.join(d, f), "rb").read()
                    for d, _, names in os.walk(root) for f in names}
        assert files(outputs[0]) == files(outputs[1]) == files(outputs[2])


def test_cli_hdf5_and_zarr_outputs_hold_the_same_problem(tmp_path, cli):
    args = ["generate", "regression", "--rows", str(2 * T + 7), "--cols", "9", "--heavy-rows", "2",
            "--noise", "0.01", "--cond", "1e4", "--seed", "11", "--quiet"]
    assert cli([*args, "-o", tmp_path / "p.h5"]).exit_code == 0
    assert cli([*args, "-o", tmp_path / "p.zarr"]).exit_code == 0
    expected = gallery.RegressionTiles(2 * T + 7, 9, 1e4, 2, 0.01, np.random.default_rng(11)).arrays()
    for out in ("p.h5", "p.zarr"):
        for name in ("A", "b", "x_true", "optimal_residual"):
            got = read_matrix(f"{tmp_path / out}:/{name}") if name == "A" else \
                read_dense(f"{tmp_path / out}:/{name}") if name != "optimal_residual" else None
            if got is not None:
                np.testing.assert_array_equal(got, expected[name], err_msg=f"{out}:{name}")
    with h5py.File(tmp_path / "p.h5", "r") as fh:
        assert fh.attrs["generator"] == "regression" and fh.attrs["seed"] == 11
        assert fh["A"].chunks is None  # contiguous: the streaming reader maps it
        np.testing.assert_array_equal(fh["optimal_residual"][()], expected["optimal_residual"])
    root = zarr.open_group(str(tmp_path / "p.zarr"), mode="r")
    # whole tiles per chunk (here the whole matrix is less than one ~8 MiB chunk)
    assert root.attrs["seed"] == 11 and root["A"].chunks[0] == 2 * T + 7
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".matcli-")]


def test_zarr_output_policy(tmp_path, cli):
    args = ["generate", "regression", "--rows", "100", "--cols", "3", "--quiet"]
    out = tmp_path / "p.zarr"
    assert cli([*args, "-o", out]).exit_code == 0
    before = read_matrix(f"{out}:/A")
    refused = cli([*args, "-o", out, "--seed", "4"])
    assert refused.exit_code == 5 and "output exists; pass --force" in refused.stderr
    assert cli([*args, "-o", out, "--seed", "4", "--force"]).exit_code == 0
    assert not np.array_equal(read_matrix(f"{out}:/A"), before)
    (tmp_path / "folder.zarr").mkdir()
    (tmp_path / "folder.zarr" / "keep.txt").write_text("mine")
    kept = cli([*args, "-o", tmp_path / "folder.zarr", "--force"])
    assert kept.exit_code == 5 and "not a Zarr store" in kept.stderr
    assert (tmp_path / "folder.zarr" / "keep.txt").read_text() == "mine"
    other = cli(["generate", "spd", "--n", "5", "-o", tmp_path / "spd.zarr"])
    assert other.exit_code == 2 and not (tmp_path / "spd.zarr").exists()
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".matcli-")]


@pytest.mark.parametrize("suffix", [".h5", ".zarr"])
def test_a_failure_midway_leaves_nothing(tmp_path, suffix):
    p = plan(m=4 * T, n=4)

    def failing():
        for i, block in enumerate(p.blocks(T)):
            if i == 2:
                raise RuntimeError("disk on fire")
            yield block

    out = tmp_path / f"p{suffix}"
    with pytest.raises(RuntimeError):
        write_row_blocks(str(out), force=False, rows=p.m, arrays={"A": RowArray((4,)), "b": RowArray(())},
                         blocks=failing(), small={}, attrs={})
    assert os.listdir(tmp_path) == []
    short = ((0, {"A": np.zeros((T, 4))}),)
    with pytest.raises(ValueError, match=f"{T} of {4 * T} rows were written"):
        write_row_blocks(str(out), force=False, rows=p.m, arrays={"A": RowArray((4,))}, blocks=short,
                         small={}, attrs={})
    assert os.listdir(tmp_path) == []


def test_stale_temporary_store_of_a_dead_process_is_removed(tmp_path):
    from matcli.io.atomic_store import TEMP_SUFFIX, _temp_prefix

    out = tmp_path / "p.zarr"
    stale = tmp_path / f"{_temp_prefix(str(out))}999999999-abcd{TEMP_SUFFIX}"
    (stale / "A").mkdir(parents=True)
    write(out, plan(m=T, n=3), T)
    assert not stale.exists() and out.is_dir()


def test_peak_memory_is_one_block_not_the_matrix(tmp_path):
    """Writing 4x more rows in blocks of the same size takes the same peak (Python allocations,
    which is where numpy's arrays live), below the model gallery.tiled_bytes."""
    peaks = []
    for tiles in (4, 16):
        p = plan(m=tiles * T, n=20, heavy=0)
        tracemalloc.start()
        try:
            write(tmp_path / f"p{tiles}.h5", p, 2 * T)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        peaks.append(peak)
    predicted = gallery.tiled_bytes([20, 1], 2 * T)
    matrix_bytes = 8 * 16 * T * 20
    assert peaks[1] < 1.1 * peaks[0]
    assert peaks[1] < predicted < matrix_bytes / 1.5


def test_impossible_or_oversized_requests_fail_before_any_work(tmp_path, cli):
    heavy = cli(["generate", "regression", "--rows", "10", "--cols", "2", "--heavy-rows", "20",
                 "-o", tmp_path / "h.h5"])
    assert heavy.exit_code == 2 and "at most 10 heavy rows" in heavy.stderr
    wide = cli(["generate", "regression", "--rows", "1000000000", "--cols", "20000", "--max-memory", "1G",
                "-o", tmp_path / "w.zarr"])
    assert wide.exit_code == 7 and "memory budget" in wide.stderr
    assert os.listdir(tmp_path) == []
