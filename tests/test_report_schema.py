"""The report is a published contract: matcli/report.schema.json (JSON Schema draft 2020-12) holds for
the report of every family, and each fact has one place (issue #18).

Every run here writes its report and output and checks both against the schema; the one-place
tests each fail on the layout of schema_version 1 (iterations also in metrics, a status code,
"inf" strings, maxiter null, every preconditioner's keys, setup facts three times).
"""

from __future__ import annotations

import json
import math
import re
from importlib import resources
from pathlib import Path

import h5py
import jsonschema
import numpy as np
import pytest
import scipy.sparse as sp

from matcli.core.result import Status
from matcli.io.hdf5 import write_arrays
from matcli.report import SCHEMA_PATH, SCHEMA_VERSION, jsonable, load_schema

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "sample_data"
VALIDATOR = jsonschema.Draft202012Validator(load_schema())


def assert_valid_report(report: dict) -> None:
    """``report`` satisfies the shipped schema (every violation listed)."""
    errors = sorted(VALIDATOR.iter_errors(report), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message[:200]}" for e in errors)


def run(cli, tmp_path: Path, args: list, *, exit_code: int = 0, name: str = "r") -> tuple[dict, Path]:
    """``matcli <args> -o <name>.h5 --report <name>.json``; the report, checked against the schema and
    as strict JSON (no Infinity/NaN), and the output path."""
    out, rep = tmp_path / f"{name}.h5", tmp_path / f"{name}.json"
    result = cli([*args, "-o", out, "--report", rep, "--quiet", "--seed", "7"])
    assert result.exit_code == exit_code, result.stderr
    text = rep.read_text()
    report = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-strict JSON constant {c}"))
    assert_valid_report(report)
    return report, out


def attrs_of(path: Path) -> dict:
    with h5py.File(path, "r") as fh:
        return {k: (v.decode() if isinstance(v, bytes) else v) for k, v in fh.attrs.items()}


@pytest.fixture
def poisson() -> str:
    return f"{SAMPLES / 'poisson32.h5'}:/A"


@pytest.fixture
def square_nonneg(tmp_path) -> str:
    """A 40x40 symmetric nonnegative matrix of rank 3 plus a small diagonal (eig, nmf, cur apply)."""
    rng = np.random.default_rng(3)
    W = rng.random((40, 3))
    path = tmp_path / "sq.h5"
    write_arrays(str(path), {"A": W @ W.T + 0.01 * np.eye(40)})
    return f"{path}:/A"


# ------------------------------------------------------------------------------------------ schema
def test_schema_is_draft_2020_12_and_shipped_in_the_package():
    schema = load_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["properties"]["schema_version"]["const"] == SCHEMA_VERSION == 2
    shipped = resources.files("matcli") / "report.schema.json"
    assert shipped.is_file() and json.loads(shipped.read_text()) == schema
    assert SCHEMA_PATH.name == "report.schema.json"
    pyproject = (REPO / "pyproject.toml").read_text()
    assert re.search(r'\[tool\.setuptools\.package-data\]\s*\nmatcli = \[[^\]]*"report\.schema\.json"', pyproject)


def test_status_names_in_the_schema_are_the_status_enum():
    assert set(load_schema()["$defs"]["reason"]["enum"]) == {s.reason for s in Status}


def test_every_top_level_key_is_documented_in_the_readme():
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("### The report"):]
    section = section[:section.index("\n## ")]
    assert "matcli/report.schema.json" in section
    for key in load_schema()["required"]:
        assert f"`{key}`" in section, key


def test_a_report_missing_a_key_or_with_an_old_field_is_rejected(cli, tmp_path, poisson):
    report, _ = run(cli, tmp_path, ["solve", poisson, "-m", "cg"])
    for broken in ({**report, "status": {**report["status"], "code": 1}},
                   {**report, "metrics": {**report["metrics"], "iterations": 3.0}},
                   {**report, "metrics": {**report["metrics"], "relative_residual": "inf"}},
                   {**report, "info": {**report["info"], "setup": {}}},
                   {k: v for k, v in report.items() if k != "history"}):
        assert not VALIDATOR.is_valid(broken)


# ------------------------------------------------------------------------ every family validates
@pytest.mark.parametrize("args", [
    ["solve", "{poisson}", "-m", "lu"],
    ["solve", "{poisson}", "-m", "cg", "--precond", "jacobi"],
    ["solve", "{poisson}", "-m", "minres", "--precond", "amg-sa"],
    ["solve", "{poisson}"],
    ["solve", f"{SAMPLES / 'batch_poisson24.h5'}:/systems", "--batch", "-m", "cg"],
    ["complete", f"{SAMPLES / 'completion400x300.h5'}:/observed", "--rank", "5", "--reg", "0.1"],
    ["sketch-regress", f"{SAMPLES / 'regression5000x40.h5'}:/A", f"{SAMPLES / 'regression5000x40.h5'}:/b"],
    ["sketch-regress", f"{SAMPLES / 'regression5000x40.h5'}:/A", f"{SAMPLES / 'regression5000x40.h5'}:/b",
     "--method", "precondition"],
    ["factorize", "{square}", "--kind", "svd", "--rank", "3"],
    ["factorize", "{square}", "--kind", "eig", "--rank", "3"],
    ["factorize", "{square}", "--kind", "nmf", "--rank", "3"],
    ["factorize", "{square}", "--kind", "cur", "--rank", "3"],
], ids=["lu", "cg", "minres-amg", "auto", "batch", "complete", "sketch-auto", "sketch-precond", "svd", "eig",
        "nmf", "cur"])
def test_every_family_writes_a_valid_report(cli, tmp_path, poisson, square_nonneg, args):
    args = [a.format(poisson=poisson, square=square_nonneg) for a in args]
    report, out = run(cli, tmp_path, args)
    assert report["schema_version"] == 2 and report["status"]["converged"], report["status"]
    attrs = attrs_of(out)
    assert attrs["status"] == report["status"]["reason"] and bool(attrs["converged"])
    assert int(attrs["iterations"]) == report["iterations"]
    assert json.loads(attrs["metrics"]) == report["metrics"]


def test_a_failed_strict_run_writes_a_valid_report(cli, tmp_path):
    report, out = run(cli, tmp_path, ["solve", SAMPLES / "west0479.mtx", "-m", "gmres", "--precond", "jacobi",
                                      "--maxiter", "5", "--strict"], exit_code=3)
    assert report["status"] == {**report["status"], "reason": "diverged_max_it", "converged": False}
    assert report["status"]["message"]
    assert not bool(attrs_of(out)["converged"])


# ---------------------------------------------------------------------------- one place per fact
def test_iterations_only_at_the_top_as_an_integer(cli, tmp_path, poisson):
    report, out = run(cli, tmp_path, ["solve", poisson, "-m", "cg", "--precond", "jacobi"])
    assert isinstance(report["iterations"], int) and report["iterations"] > 0
    assert "iterations" not in report["metrics"]
    attrs = attrs_of(out)
    assert "iterations" not in json.loads(attrs["metrics"]) and int(attrs["iterations"]) == report["iterations"]
    batch, _ = run(cli, tmp_path, ["solve", f"{SAMPLES / 'batch_poisson24.h5'}:/systems", "--batch", "-m", "cg"],
                   name="batch")
    assert batch["iterations"] == sum(s["iterations"] for s in batch["info"]["systems"]) > 0
    assert "iterations" not in batch["metrics"] and "total_iterations" not in batch["info"]


def test_status_is_named_not_numbered(cli, tmp_path, poisson):
    report, out = run(cli, tmp_path, ["solve", poisson, "-m", "lu"])
    assert report["status"] == {"reason": "converged_direct", "converged": True, "message": report["status"]["message"]}
    attrs = attrs_of(out)
    assert "status_code" not in attrs and attrs["status"] == "converged_direct"


def test_non_finite_numbers_are_null():
    value = {"a": [1.0, math.inf, -math.inf, math.nan], "b": np.float64("inf"), "c": np.array([2.0, np.nan]),
             "d": {"e": float("nan")}, "f": 3}
    assert jsonable(value) == {"a": [1.0, None, None, None], "b": None, "c": [2.0, None], "d": {"e": None}, "f": 3}
    json.dumps(jsonable(value), allow_nan=False)


def test_an_infinite_limit_is_null_in_a_real_report(cli, tmp_path):
    # complete's training-error check is held to "finite", an infinite limit (schema 1 wrote "inf")
    report, out = run(cli, tmp_path, ["complete", f"{SAMPLES / 'completion400x300.h5'}:/observed", "--rank", "5",
                                      "--reg", "0.1"])
    limits = {c["check"]: c["limit"] for c in report["certificate"]["checks"]}
    assert limits["train_rmse"] is None
    assert '"inf"' not in (tmp_path / "r.json").read_text()
    json.loads(attrs_of(out)["metrics"], parse_constant=lambda c: pytest.fail(f"non-strict JSON constant {c}"))


def test_maxiter_is_the_cap_actually_used(cli, tmp_path, poisson):
    n = 1024  # poisson32: 32^2 unknowns
    cg, _ = run(cli, tmp_path, ["solve", poisson, "-m", "cg", "--precond", "jacobi"], name="cg")
    assert cg["params"]["maxiter"] == max(10 * n, 100)  # the documented Krylov default (krylov.default_maxiter)
    lsqr, _ = run(cli, tmp_path, ["solve", poisson, "-m", "lsqr", "--rtol", "1e-6"], name="lsqr")
    assert lsqr["params"]["maxiter"] == max(4 * n, 100)
    capped, _ = run(cli, tmp_path, ["solve", poisson, "-m", "cg", "--precond", "none", "--maxiter", "7"],
                    name="capped")
    assert capped["params"]["maxiter"] == 7 == capped["iterations"]
    assert capped["status"]["reason"] == "diverged_max_it"
    lu, _ = run(cli, tmp_path, ["solve", poisson, "-m", "lu"], name="lu")
    assert "maxiter" not in lu["params"]  # a direct method does not iterate


@pytest.mark.parametrize("precond, keys", [
    ("jacobi", set()), ("ic", {"ilu_drop_tol", "ilu_fill_factor"}), ("amg-sa", {"amg_cycle"}),
    ("chebyshev", {"cheb_degree"}), ("none", set())])
def test_params_list_only_the_preconditioner_in_use(cli, tmp_path, poisson, precond, keys):
    report, _ = run(cli, tmp_path, ["solve", poisson, "-m", "cg", "--precond", precond])
    assert report["params"]["precond"] == precond
    assert {"ilu_drop_tol", "ilu_fill_factor", "amg_cycle", "cheb_degree"} & set(report["params"]) == keys


def test_a_preconditioner_param_that_does_not_apply_is_named_not_listed(cli, tmp_path, poisson):
    report, _ = run(cli, tmp_path, ["solve", poisson, "-m", "cg", "--precond", "jacobi", "--param", "cheb_degree=8"])
    assert "cheb_degree" not in report["params"]
    assert "--param cheb_degree not used by --precond jacobi" in report["method_reason"]


def test_direct_setup_facts_once_in_problem_setup(cli, tmp_path, poisson):
    report, _ = run(cli, tmp_path, ["solve", poisson, "-m", "lu"])
    setup = report["problem"]["setup"]
    assert setup["factor_nnz"] > 0 and setup["ordering"]
    assert "setup" not in report["info"]
    assert not set(setup) & set(report["info"]), set(setup) & set(report["info"])
    assert report["info"]["refinement"]["steps"] >= 0


# ---------------------------------------------------------------------------------------- history
def test_history_residual_per_iteration_and_initial_residual_at_iteration_0(cli, tmp_path, poisson):
    report, _ = run(cli, tmp_path, ["solve", poisson, "-m", "cg", "--precond", "none"])
    history = report["history"]
    assert len(history["residual"]) == report["iterations"]
    assert history["initial_residual"] == [1.0]  # x0 = 0: ||b - A x0|| / ||b|| = 1
    assert history["residual"][-1] <= report["params"]["rtol"] * (1 + 1e-6)
    lu, _ = run(cli, tmp_path, ["solve", poisson, "-m", "lu"], name="lu")
    steps = lu["info"]["refinement"]["steps"]
    assert len(lu["history"]["residual"]) == len(lu["history"]["backward_error"]) == steps + 1  # from step 0


def test_sketch_ridge_once_as_the_value_used_and_no_eps_for_the_exact_solve(cli, tmp_path):
    A, b = f"{SAMPLES / 'regression5000x40.h5'}:/A", f"{SAMPLES / 'regression5000x40.h5'}:/b"
    report, _ = run(cli, tmp_path, ["sketch-regress", A, b, "--ridge", "auto", "--eps", "0.5"])
    assert report["method"] == "lapack"
    assert isinstance(report["params"]["ridge"], float) and report["params"]["ridge"] > 0  # GCV's choice, not "auto"
    assert "ridge" not in report["metrics"] and "ridge" not in report["info"] and report["info"]["ridge_auto"]
    assert "eps" not in report["params"] and "--eps not used" in report["method_reason"]


def test_factorize_params_are_resolved_and_only_those_that_apply(cli, tmp_path):
    rng = np.random.default_rng(5)
    path = tmp_path / "sp.h5"
    write_arrays(str(path), {"A": sp.random(120, 80, density=0.1, random_state=rng, format="csr")})
    lanczos, _ = run(cli, tmp_path, ["factorize", f"{path}:/A", "--kind", "svd", "-m", "lanczos", "--rank", "3"],
                     name="lanczos")
    basis = max(3 * 3, 3 + 30)  # the documented default basis of the restarted bidiagonalization
    assert lanczos["params"]["basis"] == basis and lanczos["params"]["maxiter"] == 50 * basis
    arpack, _ = run(cli, tmp_path, ["factorize", f"{path}:/A", "--kind", "svd", "-m", "arpack", "--rank", "3"],
                    name="arpack")
    assert arpack["params"]["maxiter"] == 10 * 80  # scipy svds' default, min(m, n) * 10
    dense, _ = run(cli, tmp_path, ["factorize", f"{path}:/A", "--kind", "svd", "-m", "dense", "--rank", "3"],
                   name="dense")
    assert "tol" not in dense["params"]  # --tol applies to the dense SVD only with --rank auto
