"""CLI contract: exit codes, one-line errors without traceback, no output on failure, info/generate/methods."""

from __future__ import annotations

import json
import subprocess
import sys

import h5py
import numpy as np
import pytest

from matcli.io.hdf5 import write_arrays
from tests.conftest import data_file, shared_data_dir

INVALID = sorted((shared_data_dir() / "format-variants" / "invalid").glob("*.mtx"))
ACCEPTED_OVERFLOW = {"fmm_overflow_index_gt_int8.mtx", "fmm_overflow_value_gt_int32.mtx"}


def assert_one_line_error(result, path, code=4):
    assert result.exit_code == code, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert str(path) in lines[0]


def test_help_lists_subcommands_without_importing_numerics():
    code = ("import sys; from matcli.cli.app import main; rc = main(['--help']); "
            "heavy = [m for m in ('numpy', 'scipy', 'h5py', 'pyamg') if m in sys.modules]; "
            "print('HEAVY', heavy, rc)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    for name in ("solve", "complete", "sketch-regress", "factorize", "info", "generate", "methods"):
        assert name in proc.stdout
    assert "HEAVY [] 0" in proc.stdout


def test_usage_error_exit_code_2(cli, tmp_path):
    result = cli(["info", str(data_file("matrices/494_bus.mtx")), "--no-such-option"])
    assert result.exit_code == 2


def test_info_on_spd_matrix(cli):
    path = data_file("matrices/494_bus.mtx")
    result = cli(["info", str(path), "--json", "--condition"])
    assert result.exit_code == 0, result.stderr
    facts = json.loads(result.stdout)
    assert facts["shape"] == [494, 494] and facts["nnz"] == 1666
    assert facts["symmetry"] == "symmetric" and facts["definiteness"] == "positive definite"
    assert 1e6 < facts["condition_estimate"] < 1e7
    cheap = json.loads(cli(["info", str(path), "--json"]).stdout)
    assert "condition_estimate" not in cheap and cheap["definiteness"] == "positive definite"


def test_info_is_cheap_by_default_on_large_matrices(cli, tmp_path, monkeypatch):
    """A 250000-unknown Poisson matrix: diagonal dominance decides definiteness; neither the condition
    estimate (a sparse LU) nor ARPACK runs unless --condition asks (they took minutes on such inputs)."""
    import scipy.sparse.linalg

    from matcli import gallery
    from matcli.core import properties
    from matcli.io.hdf5 import write_arrays

    def forbidden(*args, **kwargs):
        raise AssertionError("an expensive estimate ran without --condition")

    monkeypatch.setattr(properties, "condition_estimate", forbidden)
    monkeypatch.setattr(scipy.sparse.linalg, "eigsh", forbidden)
    write_arrays(str(tmp_path / "p.h5"), {"A": gallery.poisson((500, 500))})
    result = cli(["info", f"{tmp_path}/p.h5:/A", "--json"])
    assert result.exit_code == 0, result.stderr
    facts = json.loads(result.stdout)
    assert facts["definiteness"] == "positive semidefinite or definite (diagonally dominant)"
    assert "condition_estimate" not in facts


def test_info_on_ratings(cli):
    result = cli(["info", str(data_file("ml-100k/u1.base")), "--json"])
    facts = json.loads(result.stdout)
    assert facts["observed"] == 80000 and facts["value_range"] == [1.0, 5.0]


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.name)
def test_every_invalid_mtx_gives_exit_4_and_no_output(cli, tmp_path, path):
    out = tmp_path / "out.h5"
    result = cli(["factorize", str(path), "--kind", "qr", "-o", str(out)])
    if path.name in ACCEPTED_OVERFLOW:
        assert result.exit_code == 0, result.stderr
        return
    assert_one_line_error(result, path)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "datasets, spec, defect",
    [
        ({}, "missing.h5:/A", "file not found"),
        ({"B": np.eye(3)}, "f.h5:/A", "no dataset"),
        ({"A": np.ones((3, 3, 3))}, "f.h5:/A", "3-D"),
        ({"A": np.array([[b"x"]])}, "f.h5:/A", "non-numeric"),
        ({"A": np.array([[np.nan, 1.0], [1.0, 2.0]])}, "f.h5:/A", "NaN"),
        ({"A": np.array([[1.0, np.inf], [1.0, 2.0]])}, "f.h5:/A", "Inf"),
    ],
    ids=["missing-file", "missing-dataset", "wrong-rank", "non-numeric", "nan", "inf"],
)
def test_hdf5_defects_via_cli(cli, tmp_path, datasets, spec, defect):
    if datasets:
        with h5py.File(tmp_path / "f.h5", "w") as fh:
            for name, value in datasets.items():
                fh.create_dataset(name, data=value)
    out = tmp_path / "x.h5"
    result = cli(["factorize", str(tmp_path / spec), "--kind", "qr", "-o", str(out)])
    assert_one_line_error(result, tmp_path / spec.split(":")[0])
    assert defect in result.stderr
    assert not out.exists()


def test_shape_mismatch_between_a_and_b(cli, tmp_path):
    write_arrays(str(tmp_path / "p.h5"), {"A": np.eye(4) * 2.0, "b": np.ones(5)})
    out = tmp_path / "x.h5"
    result = cli(["solve", f"{tmp_path}/p.h5:/A", "--rhs", f"{tmp_path}/p.h5:/b", "-o", str(out)])
    assert result.exit_code == 4, result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not out.exists()


def test_output_rules_via_cli(cli, tmp_path):
    src = data_file("matrices/494_bus.mtx")
    out = tmp_path / "f.h5"
    assert cli(["factorize", str(src), "--kind", "cholesky", "-o", str(out), "--quiet"]).exit_code == 0
    again = cli(["factorize", str(src), "--kind", "cholesky", "-o", str(out), "--quiet"])
    assert_one_line_error(again, out, code=5)
    assert cli(["factorize", str(src), "--kind", "cholesky", "-o", str(out), "--quiet", "--force"]).exit_code == 0
    into_input = cli(["factorize", str(src), "--kind", "cholesky", "-o", str(src), "--force", "--quiet"])
    assert into_input.exit_code == 5 and "overwrite an input" in into_input.stderr


def test_report_to_stdout_is_json(cli, tmp_path):
    src = data_file("matrices/494_bus.mtx")
    result = cli(["factorize", str(src), "--kind", "cholesky", "-o", str(tmp_path / "c.h5"), "--quiet",
                  "--report", "-"])
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["schema_version"] == 2 and report["family"] == "factorize"
    assert list(report["phases"]) == ["read", "validate", "setup", "compute", "write"]
    assert report["status"]["converged"] and report["versions"]["numpy"]
    assert result.stderr == ""


@pytest.mark.parametrize(
    "args, datasets",
    [
        (["poisson2d", "--n", "6"], {"A", "b", "x_true"}),
        (["poisson3d", "--n", "4"], {"A", "b", "x_true"}),
        (["spd", "--n", "20", "--cond", "100"], {"A", "b", "x_true", "eigenvalues"}),
        (["lowrank", "--rows", "30", "--cols", "20", "--rank", "3"], {"A", "U_true", "s_true", "V_true"}),
        (["regression", "--rows", "100", "--cols", "5", "--heavy-rows", "2"], {"A", "b", "x_true", "optimal_residual"}),
        (["completion", "--rows", "30", "--cols", "20", "--rate", "0.3", "--test-fraction", "0.2"],
         {"observed", "test", "U_true", "V_true"}),
        (["batch", "--n", "4", "--count", "2"], {"systems"}),
    ],
)
def test_generate_kinds(cli, tmp_path, args, datasets):
    out = tmp_path / "g.h5"
    result = cli(["generate", *args, "-o", str(out), "--seed", "3"])
    assert result.exit_code == 0, result.stderr
    with h5py.File(out) as fh:
        assert set(fh.keys()) == datasets
        assert fh.attrs["seed"] == 3


def test_generate_is_deterministic_and_refuses_mtx_for_several_arrays(cli, tmp_path):
    for name in ("a.h5", "b.h5"):
        assert cli(["generate", "spd", "--n", "10", "-o", str(tmp_path / name)]).exit_code == 0
    with h5py.File(tmp_path / "a.h5") as fa, h5py.File(tmp_path / "b.h5") as fb:
        np.testing.assert_array_equal(fa["A"][()], fb["A"][()])
    # generate writes A, b and x_true: a .mtx output (one matrix) would drop two of them
    refused = cli(["generate", "poisson2d", "--n", "5", "-o", str(tmp_path / "p.mtx")])
    assert refused.exit_code == 2 and "A, b, x_true" in refused.stderr and not (tmp_path / "p.mtx").exists()
    assert cli(["generate", "batch", "-o", str(tmp_path / "b.mtx")]).exit_code == 2


def test_methods_lists_every_family(cli):
    result = cli(["methods"])
    assert result.exit_code == 0
    headers = {line for line in result.stdout.splitlines() if line and not line.startswith(" ")}
    assert headers == {"matcli solve", "matcli complete", "matcli sketch-regress", "matcli factorize"}
    # the subcommand's name selects its family (the registry calls sketch-regress's family 'sketch')
    for name in ("sketch-regress", "sketch"):
        listing = cli(["methods", name])
        assert listing.exit_code == 0 and "--method precondition" in listing.stdout
        assert "matcli solve" not in listing.stdout


def test_info_reads_under_the_memory_budget(cli, tmp_path):
    """A 100-byte file declaring a 1e8 x 1e8 matrix: refused at once under --max-memory, not read."""
    path = tmp_path / "huge.mtx"
    path.write_text("%%MatrixMarket matrix coordinate real general\n100000000 100000000 3\n1 1 1\n2 2 2\n3 3 3\n")
    result = cli(["info", path, "--max-memory", "500M"])
    assert result.exit_code == 7 and "more than the memory budget of 500.0 MiB" in result.stderr
