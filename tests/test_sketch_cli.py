"""``matcli sketch-regress`` end to end: exit codes, output file, report fields, streaming from HDF5."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import scipy.io
import scipy.sparse as sp

from matcli.gallery import regression_problem
from matcli.io.hdf5 import write_arrays


@pytest.fixture(scope="module")
def regression(tmp_path_factory):
    """A 4000 x 30 regression problem with cond 1e6 and 3 heavy rows; exact optimum known."""
    path = tmp_path_factory.mktemp("sketch") / "reg.h5"
    arrays = regression_problem(4000, 30, 1e6, 3, 1e-2, np.random.default_rng(0))
    write_arrays(str(path), arrays)
    return path, arrays


@pytest.fixture(autouse=True)
def sketched_auto(monkeypatch):
    """These tests exercise the sketched modes on matrices small enough that auto would solve them
    exactly by LAPACK (tests/test_sketch_exact.py covers that choice): auto here sees them as large."""
    from matcli.jobs import sketch

    monkeypatch.setattr(sketch, "EXACT_MAX_ENTRIES", 0)


def run(cli, tmp_path, regression, *extra, name="x.h5"):
    path, _ = regression
    out, report = tmp_path / name, tmp_path / (name + ".json")
    result = cli(["sketch-regress", f"{path}:/A", f"{path}:/b", "-o", out, "--seed", "1", "--quiet",
                  "--report", report, *extra])
    data = json.loads(report.read_text()) if report.exists() else None
    return result, out, data


#: What the process holds before the job, as the memory plan sees it in these tests (see fixture; a
#: multiple of the plan's 8 MiB step, so the plan charges exactly this)
BASELINE_MIB = 56


@pytest.fixture
def fixed_baseline(monkeypatch):
    """The memory plan charges --max-memory with what the process held when the job started; inside
    pytest that is pytest's own (large, varying) footprint, so these tests pin it."""
    from matcli.jobs import sketch

    monkeypatch.setattr(sketch, "resident_memory_bytes", lambda: BASELINE_MIB * 2**20)


def budget_above_baseline(mib: int) -> str:
    """A --max-memory value ``mib`` MiB above the pinned baseline."""
    return f"{BASELINE_MIB + mib}M"


def read_x(out):
    with h5py.File(out) as fh:
        return fh["x"][()]


def test_default_precondition_reaches_the_optimum(cli, tmp_path, regression):
    result, out, report = run(cli, tmp_path, regression)
    assert result.exit_code == 0, result.stderr
    arrays = regression[1]
    x = read_x(out)
    r = np.linalg.norm(arrays["b"] - arrays["A"] @ x)
    # rounding of ||b - Ax|| for an accurate x: n eps ||A|| ||x|| relative to ||r*|| ~ 1e-10 here
    assert r <= float(arrays["optimal_residual"]) * (1 + 1e-10)
    assert report["method"] == "precondition" and report["method_requested"] == "auto"
    assert "rtol" in report["method_reason"]
    assert report["status"]["converged"] and report["iterations"] > 0
    assert "iterations" not in report["metrics"]  # given once, at the top
    for key in ("residual_norm", "relative_residual", "optimality", "residual_ratio_estimate", "sketch_size",
                "condition_estimate", "preconditioned_condition_estimate", "backward_error_estimate"):
        assert key in report["metrics"], key
    assert report["metrics"]["residual_norm"] == pytest.approx(r, rel=1e-10)
    assert report["params"]["sketch"] == "auto" and report["params"]["nnz_per_column"] == 4
    # auto: CountSketch, vetted by the Ritz values (this matrix has no rows of high leverage)
    assert report["info"]["sketch"] == "countsketch" and "Ritz" in report["info"]["sketch_choice"]
    assert report["problem"]["shape"] == [4000, 30] and not report["problem"]["streaming"]
    assert set(report["phases"]) >= {"read", "setup", "compute", "write"}


def test_eps_selects_sketch_and_solve(cli, tmp_path, regression):
    result, out, report = run(cli, tmp_path, regression, "--eps", "0.2", "--sketch", "srht")
    assert result.exit_code == 0, result.stderr
    arrays = regression[1]
    assert report["method"] == "sketch-and-solve" and "eps" in report["method_reason"]
    # n = 30, eps = 0.2: mean excess n/(d-n-1) at 1.2^2 - 1 widened by 1 + 3 sigma (default_sketch_size)
    assert report["params"]["sketch_size"] == 158
    ratio = np.linalg.norm(arrays["b"] - arrays["A"] @ read_x(out)) / float(arrays["optimal_residual"])
    assert ratio <= 1 + 0.2
    assert report["iterations"] == 0


def test_auto_sketch_is_sparse_sign_for_sketch_and_solve(cli, tmp_path, regression):
    result, out, report = run(cli, tmp_path, regression, "--eps", "0.1")
    assert result.exit_code == 0, result.stderr
    assert report["params"]["sketch"] == "auto" and report["info"]["sketch"] == "sparse-sign"
    ratio = np.linalg.norm(regression[1]["b"] - regression[1]["A"] @ read_x(out)) / float(
        regression[1]["optimal_residual"])
    assert ratio <= 1 + 0.1


def test_eps_with_precondition_mode_is_the_stopping_target(cli, tmp_path, regression):
    result, out, report = run(cli, tmp_path, regression, "--mode", "precondition", "--eps", "1e-9",
                              "--sketch-size", "300")
    assert result.exit_code == 0, result.stderr
    assert report["method"] == "precondition" and report["params"]["sketch_size"] == 300
    assert report["params"]["eps"] == 1e-9 and report["iterations"] > 0
    ratio = np.linalg.norm(regression[1]["b"] - regression[1]["A"] @ read_x(out)) / float(
        regression[1]["optimal_residual"])
    # rounding of ||b - Ax||: ~1e-10 relative here (see test_default_precondition_reaches_the_optimum)
    assert ratio <= 1 + 1e-9 + 1e-10
    assert report["metrics"]["residual_ratio_estimate"] <= 1 + 1e-9


@pytest.mark.parametrize("sketch", ["countsketch", "gaussian", "leverage"])
def test_refine_mode_with_each_sketch_and_params(cli, tmp_path, regression, sketch):
    result, out, report = run(cli, tmp_path, regression, "--mode", "refine", "--sketch", sketch,
                              "--param", "refine_steps=1", "--rtol", "1e-12")
    assert result.exit_code == 0, result.stderr
    assert report["params"]["refine_steps"] == 1 and len(report["info"]["solves"]) == 2
    np.testing.assert_allclose(read_x(out), regression[1]["x_true"], rtol=1e-4)


def test_ridge_fixed_and_auto(cli, tmp_path, regression):
    result, out, report = run(cli, tmp_path, regression, "--ridge", "1e-3")
    assert result.exit_code == 0, result.stderr
    A, b = regression[1]["A"], regression[1]["b"]
    aug = np.vstack([A, np.sqrt(1e-3) * np.eye(30)])
    x_ref, *_ = np.linalg.lstsq(aug, np.concatenate([b, np.zeros(30)]), rcond=None)
    # forward error of LSQR stopped at rtol = 1e-10 on the preconditioned problem: cond(aug) * rtol
    bound = 10 * np.linalg.cond(aug) * (1e-10 + 30 * np.finfo(float).eps)
    assert np.linalg.norm(read_x(out) - x_ref) <= bound * np.linalg.norm(x_ref)
    result, out, report = run(cli, tmp_path, regression, "--ridge", "auto", name="auto.h5")
    assert result.exit_code == 0, result.stderr
    assert report["params"]["ridge"] > 0  # the value GCV chose, reported once
    assert "ridge" not in report["metrics"] and "ridge" not in report["info"]
    assert "gcv" in report["info"]["ridge_auto"]


@pytest.mark.parametrize(
    "extra, code, words",
    [
        (["--eps", "0.1", "--sketch-size", "100"], 2, "either"),
        (["--sketch-size", "10"], 2, "between"),
        (["--ridge", "abc"], 2, "ridge"),
        (["--ridge", "-1"], 2, "ridge"),
        (["--param", "zeta=3"], 2, "no parameter"),
        (["--mode", "precondition", "--param", "refine_steps=2"], 2, "no parameter"),
        (["--max-memory", "lots"], 2, "max-memory"),
        (["--max-memory", "1M", "--sketch", "srht"], 2, "srht"),
        (["--eps", "1.5"], 2, "eps"),
    ],
)
def test_usage_errors(cli, tmp_path, regression, extra, code, words):
    result, out, _ = run(cli, tmp_path, regression, *extra)
    assert result.exit_code == code, result.stderr
    assert words in result.stderr and "Traceback" not in result.stderr
    assert not out.exists()


def test_auto_with_a_tight_eps_iterates_instead_of_sketching_more_rows_than_sketch_and_solve_allows(
        cli, tmp_path, regression):
    """--eps 1e-10 would need a sketch of all 4000 rows for sketch-and-solve: auto preconditions with a
    small sketch and stops once the residual is provably within 1 + eps."""
    result, out, report = run(cli, tmp_path, regression, "--eps", "1e-10")
    assert result.exit_code == 0, result.stderr
    assert report["method"] == "precondition" and "needs a sketch of" in report["method_reason"]
    assert report["metrics"]["sketch_size"] < 4000 and report["iterations"] > 0
    r = np.linalg.norm(regression[1]["b"] - regression[1]["A"] @ read_x(out))
    assert r <= float(regression[1]["optimal_residual"]) * (1 + 1e-10)
    assert report["metrics"]["residual_ratio_estimate"] <= 1 + 1e-10


def test_sketches_beyond_the_memory_budget_are_usage_errors(cli, tmp_path, regression, fixed_baseline):
    budget = budget_above_baseline(8)  # A, the vectors and a 908-row sketch fit; a 4000-row one does not
    result, out, _ = run(cli, tmp_path, regression, "--mode", "sketch-and-solve", "--eps", "0.001",
                         "--max-memory", budget)
    assert result.exit_code == 2 and "--mode precondition --eps 0.001" in result.stderr
    assert f"--max-memory {budget}" in result.stderr and not out.exists()
    result, out, _ = run(cli, tmp_path, regression, "--sketch-size", "4000", "--max-memory", budget)
    assert result.exit_code == 2 and "a sketch of 4000 rows" in result.stderr and not out.exists()
    # the iterative modes' default sketch (30 n + 8 rows) fits beside per-thread sums on 2 threads
    result, out, report = run(cli, tmp_path, regression, "--max-memory", budget, "--threads", "2")
    assert result.exit_code == 0, result.stderr
    memory = report["problem"]["memory"]
    assert report["metrics"]["sketch_size"] == 908 and not report["problem"]["streaming"]
    assert memory["budget_bytes"] >= memory["baseline_bytes"] + memory["slack_bytes"] + memory["vectors_bytes"] \
        + memory["matrix_bytes"] + memory["sketch_bytes"]


def test_input_errors_name_the_file(cli, tmp_path):
    wide = tmp_path / "wide.h5"
    write_arrays(str(wide), {"A": np.ones((5, 8)), "b": np.ones(5), "c": np.ones(7)})
    result = cli(["sketch-regress", f"{wide}:/A", f"{wide}:/b", "-o", tmp_path / "x.h5", "--mode", "precondition"])
    assert result.exit_code == 2 and "wide" in result.stderr and "--mode lapack" in result.stderr
    tall = tmp_path / "tall.h5"
    write_arrays(str(tall), {"A": np.ones((8, 5)), "c": np.ones(7)})
    result = cli(["sketch-regress", f"{tall}:/A", f"{tall}:/c", "-o", tmp_path / "x.h5"])
    assert result.exit_code == 4 and "has 7 rows, but A has 8" in result.stderr and str(tall) in result.stderr
    assert not (tmp_path / "x.h5").exists()


def test_strict_exit_3_when_maxiter_is_too_small(cli, tmp_path, regression):
    result, out, report = run(cli, tmp_path, regression, "--maxiter", "1", "--rtol", "1e-14", "--strict")
    assert result.exit_code == 3, result.stderr
    assert report["status"]["reason"] == "diverged_max_it" and out.exists()


def test_sparse_mtx_input(cli, tmp_path, shared_data):
    """lp_share1b (117 x 253, cond ~1e5) transposed is a tall sparse least-squares matrix."""
    A = scipy.io.mmread(shared_data / "matrices" / "lp_share1b.mtx").T.tocsr()
    scipy.io.mmwrite(tmp_path / "At.mtx", A)
    b = np.random.default_rng(2).standard_normal(A.shape[0])
    np.save(tmp_path / "b.npy", b)
    out = tmp_path / "x.h5"
    result = cli(["sketch-regress", tmp_path / "At.mtx", tmp_path / "b.npy", "-o", out, "--seed", "0", "--quiet",
                  "--report", tmp_path / "r.json"])
    assert result.exit_code == 0, result.stderr
    x_ref, *_ = np.linalg.lstsq(A.toarray(), b, rcond=None)
    r_ref = np.linalg.norm(b - A @ x_ref)
    assert np.linalg.norm(b - A @ read_x(out)) <= r_ref * (1 + 1e-12)
    assert json.loads((tmp_path / "r.json").read_text())["problem"]["format"] == "sparse csr"


def test_streaming_from_hdf5_matches_in_memory(cli, tmp_path, fixed_baseline):
    """A 20 MB dense file read in row blocks under a 16 MB budget gives the in-memory answer."""
    m, n = 52000, 48
    arrays = regression_problem(m, n, 1e3, 2, 1e-2, np.random.default_rng(3))
    path = tmp_path / "big.h5"
    write_arrays(str(path), {"A": arrays["A"], "b": arrays["b"]})
    outs = {}
    budget = budget_above_baseline(24)
    for label, extra in (("memory", []), ("stream", ["--max-memory", budget])):
        out, report = tmp_path / f"{label}.h5", tmp_path / f"{label}.json"
        result = cli(["sketch-regress", f"{path}:/A", f"{path}:/b", "-o", out, "--seed", "4", "--quiet",
                      "--report", report, "--sketch", "countsketch", *extra])
        assert result.exit_code == 0, result.stderr
        outs[label] = (read_x(out), json.loads(report.read_text()))
    x_stream, rep = outs["stream"]
    memory = rep["problem"]["memory"]
    assert rep["problem"]["streaming"] and rep["problem"]["rows_per_block"] * n * 8 <= memory["block_bytes"]
    assert (memory["baseline_bytes"] + memory["slack_bytes"] + memory["vectors_bytes"] + memory["sketch_bytes"]
            + memory["block_bytes"] <= memory["budget_bytes"] == int(budget[:-1]) * 2**20)
    assert memory["matrix_bytes"] == 0 and "sketch_capped" in memory
    assert rep["metrics"]["sketch_size"] < 100 * n  # the streaming default, capped by the budget
    assert rep["info"]["passes_over_file"] == rep["iterations"] + 3  # one fused pass per CGLS iteration
    np.testing.assert_allclose(x_stream, outs["memory"][0], rtol=1e3 * 1e-10)
    r = np.linalg.norm(arrays["b"] - arrays["A"] @ x_stream)
    assert r <= float(arrays["optimal_residual"]) * (1 + 1e-10)


@pytest.mark.parametrize("dtype", ["<f8", "<f4"])  # mapped windows, or blocks read through h5py
def test_streaming_reports_nan_rows_as_input_error(cli, tmp_path, fixed_baseline, dtype):
    A = np.random.default_rng(5).standard_normal((20000, 100)).astype(dtype)
    A[15000, 3] = np.nan
    path = tmp_path / "nan.h5"
    with h5py.File(path, "w") as fh:
        fh["A"] = A
        fh["b"] = np.ones(20000)
    out, report = tmp_path / "x.h5", tmp_path / "r.json"
    result = cli(["sketch-regress", f"{path}:/A", f"{path}:/b", "-o", out, "--threads", "1",
                  "--max-memory", budget_above_baseline(16)])
    assert result.exit_code == 4 and "row 15001" in result.stderr and str(path) in result.stderr
    assert not out.exists()
    A[15000, 3] = 0.0  # the same file without the NaN streams in several blocks
    with h5py.File(path, "w") as fh:
        fh["A"] = A
        fh["b"] = np.ones(20000)
    result = cli(["sketch-regress", f"{path}:/A", f"{path}:/b", "-o", out, "--threads", "1", "--quiet",
                  "--report", report, "--max-memory", budget_above_baseline(16)])
    assert result.exit_code == 0, result.stderr
    problem = json.loads(report.read_text())["problem"]
    assert problem["streaming"] and problem["row_blocks"] > 2


@pytest.mark.parametrize("sketch", ["sparse-sign", "leverage", "srht"])
def test_mapped_hdf5_matrix_with_nan_is_an_input_error(cli, tmp_path, sketch):
    """Contiguous float64 datasets are memory-mapped, not scanned on reading; NaN must still give exit 4."""
    A = np.random.default_rng(6).standard_normal((3000, 10))
    A[1234, 5] = np.nan
    path = tmp_path / "nan.h5"
    with h5py.File(path, "w") as fh:
        fh["A"] = A
        fh["b"] = np.ones(3000)
    out = tmp_path / "x.h5"
    result = cli(["sketch-regress", f"{path}:/A", f"{path}:/b", "-o", out, "--sketch", sketch, "--quiet"])
    assert result.exit_code == 4, result.stderr
    assert "row 1235" in result.stderr and str(path) in result.stderr
    assert not out.exists()


def test_chunked_and_float32_datasets_are_read_normally(cli, tmp_path):
    rng = np.random.default_rng(7)
    A = rng.standard_normal((2000, 8))
    b = rng.standard_normal(2000)
    path = tmp_path / "chunked.h5"
    with h5py.File(path, "w") as fh:
        fh.create_dataset("A", data=A, chunks=(100, 8), compression="gzip")
        fh["A32"] = A.astype(np.float32)
        fh["b"] = b
    for name, ref in (("A", A), ("A32", A.astype(np.float32).astype(np.float64))):
        out = tmp_path / f"{name}.h5"
        result = cli(["sketch-regress", f"{path}:/{name}", f"{path}:/b", "-o", out, "--quiet", "--rtol", "1e-12"])
        assert result.exit_code == 0, result.stderr
        x_ref, *_ = np.linalg.lstsq(ref, b, rcond=None)
        np.testing.assert_allclose(read_x(out), x_ref, rtol=1e-9)


@pytest.fixture(scope="module")
def sparse_regression():
    """120000 x 40, 10 nonzeros per row (some rows empty, one row full), columns over 3 decades."""
    rng = np.random.default_rng(9)
    m, n = 120_000, 40
    A = sp.random(m, n, density=0.25, format="csr", random_state=rng, data_rvs=rng.standard_normal)
    A = (A @ sp.diags(np.logspace(0, -3, n))).tolil()
    A[77] = 0.0
    A[5] = rng.standard_normal(n)
    A = A.tocsr()
    b = A @ rng.standard_normal(n) + 1e-2 * rng.standard_normal(m)
    return A, b


def test_csr_group_streams_in_row_blocks_and_matches_lstsq(cli, tmp_path, fixed_baseline, sparse_regression):
    A, b = sparse_regression
    path = tmp_path / "sparse.h5"
    write_arrays(str(path), {"A": A, "b": b})  # A: an anndata csr_matrix group
    out, report = tmp_path / "x.h5", tmp_path / "r.json"
    budget = budget_above_baseline(24)  # A alone takes ~16 MiB as CSR
    result = cli(["sketch-regress", f"{path}:/A", f"{path}:/b", "-o", out, "--threads", "1", "--quiet",
                  "--report", report, "--max-memory", budget, "--rtol", "1e-12", "--seed", "3"])
    assert result.exit_code == 0, result.stderr
    rep = json.loads(report.read_text())
    problem, memory = rep["problem"], rep["problem"]["memory"]
    assert problem["format"] == "streamed hdf5 csr rows" and problem["nnz"] == A.nnz
    assert problem["row_blocks"] > 2 and rep["info"]["passes_over_file"] == rep["iterations"] + 3
    assert memory["blocks_held"] == 2  # read into memory: the last block is held while the next is read
    assert (memory["baseline_bytes"] + memory["slack_bytes"] + memory["vectors_bytes"] + memory["sketch_bytes"]
            + 2 * memory["block_bytes"] <= memory["budget_bytes"])
    x_ref, *_ = np.linalg.lstsq(A.toarray(), b, rcond=None)
    r_ref = np.linalg.norm(b - A @ x_ref)
    # n eps ||A|| ||x|| / ||r|| of rounding in evaluating two accurate residuals, and rtol
    assert np.linalg.norm(b - A @ read_x(out)) <= r_ref * (1 + 1e-10)
    # the same file, in memory (default budget): the same answer
    result = cli(["sketch-regress", f"{path}:/A", f"{path}:/b", "-o", tmp_path / "m.h5", "--quiet",
                  "--rtol", "1e-12", "--seed", "3"])
    assert result.exit_code == 0, result.stderr
    np.testing.assert_allclose(read_x(out), read_x(tmp_path / "m.h5"), rtol=1e-7, atol=1e-7 * np.abs(x_ref).max())


@pytest.mark.parametrize("defect, words", [("nan", "row 100501 contains NaN"),
                                           ("index", "row 90001 has column index 40 outside 0..39"),
                                           ("indptr", "indptr is inconsistent"),
                                           ("short indices", "indptr is inconsistent with data/indices")])
def test_streamed_csr_defects_are_input_errors(cli, tmp_path, fixed_baseline, sparse_regression, defect, words):
    A, b = sparse_regression
    A = A.copy()
    if defect == "nan":
        A.data[A.indptr[100_500]] = np.nan
    path = tmp_path / "bad.h5"
    write_arrays(str(path), {"A": A, "b": b})  # A: an anndata csr_matrix group
    with h5py.File(path, "r+") as fh:
        if defect == "index":
            indices = fh["A/indices"][()]
            indices[A.indptr[90_000]] = 40
            fh["A/indices"][...] = indices
        if defect == "indptr":
            indptr = fh["A/indptr"][()]
            indptr[-1] -= 1
            fh["A/indptr"][...] = indptr
        if defect == "short indices":  # one index fewer than values: caught before any block is read
            indices = fh["A/indices"][:-1]
            del fh["A/indices"]
            fh["A/indices"] = indices
    out = tmp_path / "x.h5"
    result = cli(["sketch-regress", f"{path}:/A", f"{path}:/b", "-o", out, "--threads", "1",
                  "--max-memory", budget_above_baseline(24)])
    assert result.exit_code == 4, result.stderr
    assert words in result.stderr and str(path) in result.stderr and not out.exists()


def test_a_csc_group_beyond_the_budget_is_a_usage_error(cli, tmp_path, fixed_baseline, sparse_regression):
    A, b = sparse_regression
    path = tmp_path / "csc.h5"
    write_arrays(str(path), {"A": A.tocsc(), "b": b})  # a csc_matrix group
    out = tmp_path / "x.h5"
    result = cli(["sketch-regress", f"{path}:/A", f"{path}:/b", "-o", out, "--threads", "1",
                  "--max-memory", budget_above_baseline(24)])
    assert result.exit_code == 2 and "csr_matrix" in result.stderr and not out.exists()
