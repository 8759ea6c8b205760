"""The Python API (matcli.api) mirrors the CLI: the same request, method choice, certificate and arrays.

Each family runs once through ``matcli <subcommand>`` on a file and once through the API on the same
data (as a file spec and as arrays) with the same seed: the results must be bit-identical, with the
same method and status.
"""

from __future__ import annotations

import contextlib
import doctest
import io

import h5py
import numpy as np
import pytest
import scipy.io
import scipy.sparse as sp

import matcli
from matcli.core.errors import InputError, NotConvergedError, OutputError, UsageError
from matcli.io.hdf5 import write_arrays


def cli_arrays(cli, args, out):
    result = cli([*args, "-o", out, "--quiet", "--seed", "7"])
    assert result.exit_code == 0, result.stderr
    with h5py.File(out) as fh:
        return {name: fh[name][()] for name in fh}, dict(fh.attrs)


@pytest.fixture
def poisson(tmp_path):
    from matcli import gallery

    arrays = gallery.poisson_problem((12, 12), np.random.default_rng(0))
    write_arrays(str(tmp_path / "p.h5"), arrays)
    return tmp_path / "p.h5", arrays


def test_module_docstring_example_runs():
    import matcli.api

    failures, tried = doctest.testmod(matcli.api, verbose=False)
    assert tried >= 1 and failures == 0


@pytest.mark.parametrize("method", ["auto", "cg", "gmres", "lu"])
def test_solve_api_equals_cli(cli, tmp_path, poisson, method):
    path, arrays = poisson
    x_cli, attrs = cli_arrays(cli, ["solve", f"{path}:/A", "--rhs", f"{path}:/b", "-m", method], tmp_path / "x.h5")
    from_files = matcli.solve(f"{path}:/A", f"{path}:/b", method=method, seed=7)
    from_arrays = matcli.solve(arrays["A"], arrays["b"], method=method, seed=7)
    for outcome in (from_files, from_arrays):
        assert np.array_equal(outcome["x"], x_cli["x"])
        assert outcome.status == attrs["status"] and outcome.converged
        assert outcome.method == attrs["method"]
        assert outcome.report["certificate"]["passed"]


def test_complete_api_equals_cli(cli, tmp_path):
    rng = np.random.default_rng(1)
    M = rng.standard_normal((40, 3)) @ rng.standard_normal((3, 30))
    mask = rng.random(M.shape) < 0.5
    observed = sp.coo_matrix((M[mask], np.nonzero(mask)), shape=M.shape)
    scipy.io.mmwrite(tmp_path / "obs.mtx", observed)
    model, attrs = cli_arrays(cli, ["complete", tmp_path / "obs.mtx"], tmp_path / "m.h5")
    outcome = matcli.complete(observed, seed=7)
    assert outcome.method == attrs["method"] and outcome.status == attrs["status"]
    for name in ("U", "V"):
        assert np.array_equal(outcome[name], model[name])
    prediction = outcome["U"] @ outcome["V"].T
    assert np.abs(prediction - M).max() <= 1e-6 * np.abs(M).max()


def test_factorize_and_sketch_api_equal_cli(cli, tmp_path):
    rng = np.random.default_rng(2)
    A = rng.standard_normal((300, 20))
    b = A @ np.ones(20) + 1e-3 * rng.standard_normal(300)
    write_arrays(str(tmp_path / "r.h5"), {"A": A, "b": b})
    svd, _ = cli_arrays(cli, ["factorize", f"{tmp_path}/r.h5:/A", "--kind", "svd", "-m", "randomized", "-r", "4"],
                        tmp_path / "f.h5")
    outcome = matcli.factorize(A, kind="svd", method="randomized", rank=4, seed=7)
    assert all(np.array_equal(outcome[k], svd[k]) for k in ("U", "s", "Vt"))
    x, _ = cli_arrays(cli, ["sketch-regress", f"{tmp_path}/r.h5:/A", f"{tmp_path}/r.h5:/b", "-m", "precondition"],
                      tmp_path / "s.h5")
    outcome = matcli.sketch_regress(A, b, method="precondition", seed=7)
    assert np.array_equal(outcome["x"], x["x"]) and outcome.converged


def test_api_prints_nothing_and_writes_only_what_it_is_asked(tmp_path, poisson):
    path, arrays = poisson
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        matcli.solve(arrays["A"], arrays["b"])
    assert out.getvalue() == "" and err.getvalue() == ""
    outcome = matcli.solve(arrays["A"], arrays["b"], output=str(tmp_path / "x.h5"), report=str(tmp_path / "r.json"))
    with h5py.File(tmp_path / "x.h5") as fh:
        assert np.array_equal(fh["x"][()], outcome["x"])
    assert (tmp_path / "r.json").exists()
    with pytest.raises(OutputError) as info:
        matcli.solve(arrays["A"], arrays["b"], output=str(tmp_path / "x.h5"))
    assert info.value.exit_code == 5


def test_api_errors_are_the_cli_exceptions(tmp_path):
    bad = np.ones((3, 3))
    bad[1, 1] = np.nan
    with pytest.raises(InputError, match="NaN or Inf") as info:
        matcli.solve(bad, np.ones(3))
    assert info.value.exit_code == 4
    with pytest.raises(UsageError):
        matcli.solve(np.eye(3), np.ones(3), method="no-such-method")
    with pytest.raises(InputError, match="scipy.sparse"):
        matcli.complete(np.ones((3, 3)))
    singular = np.diag([1.0, 1.0, 0.0])
    outcome = matcli.solve(singular, np.ones(3), method="minres")
    assert not outcome.converged and outcome.status.startswith(("diverged", "certificate"))
    with pytest.raises(NotConvergedError):
        matcli.solve(singular, np.ones(3), method="minres", strict=True)


def test_read_and_write_go_through_the_file_contract(tmp_path):
    A = sp.random(20, 10, density=0.3, format="csr", random_state=np.random.default_rng(3))
    matcli.write(str(tmp_path / "a.mtx"), {"A": A})
    back = matcli.read(str(tmp_path / "a.mtx"))
    assert sp.issparse(back) and (back != A).nnz == 0
    with pytest.raises(OutputError, match="exists"):
        matcli.write(str(tmp_path / "a.mtx"), {"A": A})
    matcli.write(str(tmp_path / "a.mtx"), {"A": 2 * A}, force=True)
    assert np.allclose(matcli.read(str(tmp_path / "a.mtx")).toarray(), 2 * A.toarray())
    with pytest.raises(UsageError):
        matcli.write(str(tmp_path / "two.mtx"), {"A": A, "B": A})


def test_predict_api_equals_the_cli_file(cli, tmp_path):
    """matcli.predict returns the predictions matcli predict writes (10 significant digits in the file)."""
    from tests.conftest import data_file

    base, test = data_file("ml-100k/u1.base"), data_file("ml-100k/u1.test")
    model = tmp_path / "m.h5"
    assert cli(["complete", base, "-m", "als-exact", "-r", "5", "--reg", "0.1", "--clip", "1,5", "-o", model,
                "--quiet"]).exit_code == 0
    result = cli(["predict", model, test, "-o", tmp_path / "p.tsv", "--quiet"])
    assert result.exit_code == 0, result.stderr
    written = np.loadtxt(tmp_path / "p.tsv")
    outcome = matcli.predict(str(model), str(test))
    assert outcome.converged and outcome["prediction"].shape == (written.shape[0],)
    assert np.array_equal(outcome["row_ids"], written[:, 0]) and np.array_equal(outcome["col_ids"], written[:, 1])
    np.testing.assert_allclose(outcome["prediction"], written[:, 2], rtol=1e-9)
    assert outcome["prediction"].min() >= 1 and outcome["prediction"].max() <= 5  # the model's own clip
    outcome = matcli.predict(str(model), str(test), output=str(tmp_path / "q.tsv"))
    assert (tmp_path / "q.tsv").read_bytes() == (tmp_path / "p.tsv").read_bytes()
