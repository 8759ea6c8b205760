"""Hostile numbers on the command line: every numeric option declares its range, and NaN, infinities
and out-of-range values end with exit 2 naming the option (never a run that "converges" on nonsense,
never exit 1), before any input is read; --param values likewise; sizes are checked before
allocating.

The option catalogue is read from the commands themselves, so an option added without a declared
range fails :func:`test_every_numeric_option_declares_a_range`.
"""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import typer

from matcli.cli.app import app
from matcli.cli.options import Number, Pair
from matcli.core.errors import UsageError
from matcli.core.registry import all_specs
from matcli.core.rng import resolve_seed
from tests.conftest import run_cli

#: Positional arguments that let each subcommand reach option parsing (never read: parsing fails first).
POSITIONAL = {"solve": ["A.h5:/A"], "complete": ["obs.h5:/observed"], "sketch-regress": ["A.h5:/A", "A.h5:/b"],
              "factorize": ["A.h5:/A"], "info": ["A.h5:/A"], "generate": ["poisson2d"],
              "predict": ["model.h5", "pairs.tsv"]}
#: Subcommands that draw no random numbers, hence take no --seed.
DETERMINISTIC = {"predict"}


def _numeric_options():
    """``(command, option, parser or click range type)`` of every numeric option of every subcommand."""
    group = typer.main.get_command(app)
    for name, command in sorted(group.commands.items()):
        for param in command.params:
            if not isinstance(param, typer.core.TyperOption):
                continue
            checker = getattr(param.type, "func", None)
            if isinstance(checker, (Number, Pair)) or param.type.name in ("int range", "float range", "integer",
                                                                         "float"):
                yield name, param.opts[0], checker if checker is not None else param.type


def _hostile_values(option_type):
    """Values outside the declared range (NaN and infinities for floats)."""
    number = option_type.number if isinstance(option_type, Pair) else option_type
    if isinstance(number, Number):
        values = ["nan", "inf", "-inf"] if number.kind is float else ["1.5"]
        if number.low is not None:
            values.append(str(number.kind(number.low) - (0 if number.low_open else 1)))
        if number.high is not None:
            values.append(str(number.kind(number.high) + (0 if number.high_open else 1)))
        return [f"{v},{v}" for v in values] if isinstance(option_type, Pair) else values
    values = ["nan", "inf", "-inf"] if option_type.name.startswith("float") else []
    if getattr(option_type, "min", None) is not None:
        values.append(str(option_type.min - 1))
    if getattr(option_type, "max", None) is not None:
        values.append(str(option_type.max + 1))
    return values


CASES = [(command, option, value) for command, option, kind in _numeric_options() for value in _hostile_values(kind)]


def test_every_numeric_option_declares_a_range():
    undeclared = []
    for command, option, kind in _numeric_options():
        if isinstance(kind, (Number, Pair)):
            continue
        bounded = getattr(kind, "min", None) is not None or getattr(kind, "max", None) is not None
        if kind.name.startswith("float") or not bounded:
            undeclared.append(f"{command} {option}")
    assert undeclared == []


@pytest.mark.parametrize("command, option, value", CASES,
                         ids=lambda v: str(v))
def test_out_of_range_option_is_a_usage_error(tmp_path, command, option, value):
    result = run_cli([command, *POSITIONAL[command], option, value, *([] if command in ("info",) else
                                                                      ["-o", tmp_path / "out.h5"])])
    assert result.exit_code == 2, result.stderr
    assert option in result.stderr
    assert not (tmp_path / "out.h5").exists()


def test_generate_refuses_nan(tmp_path):
    assert run_cli(["generate", "spd", "--cond", "nan", "-o", tmp_path / "spd.h5"]).exit_code == 2


def test_the_catalogue_covers_the_options_of_the_issue():
    covered = {(command, option) for command, option, _ in CASES}
    for command in ("solve", "complete", "sketch-regress"):
        assert (command, "--rtol") in covered and (command, "--maxiter") in covered
    assert {("complete", "--reg"), ("complete", "--rank"), ("factorize", "--tol"), ("factorize", "--rank"),
            ("solve", "--nrhs"), ("sketch-regress", "--eps"), ("sketch-regress", "--ridge")} <= covered
    assert {(command, "--seed") for command in set(POSITIONAL) - DETERMINISTIC} <= covered


@pytest.mark.parametrize("seed, accepted", [(2**64, False), (2**64 - 1, True), (-1, False), (0, True)])
def test_seed_is_an_unsigned_64_bit_integer(tmp_path, seed, accepted):
    problem, out = tmp_path / "p.h5", tmp_path / "x.h5"
    assert run_cli(["generate", "poisson2d", "--n", "4", "-o", problem]).exit_code == 0
    result = run_cli(["solve", f"{problem}:/A", "--seed", str(seed), "-o", out, "--quiet"])
    if not accepted:
        assert result.exit_code == 2 and "--seed" in result.stderr
        assert not out.exists()
        return
    assert result.exit_code == 0, result.stderr
    with h5py.File(out) as fh:
        assert int(fh.attrs["seed"]) == seed


@pytest.mark.parametrize("seed", [2**64, -1])
def test_resolve_seed_refuses_what_the_output_cannot_record(seed):
    with pytest.raises(UsageError, match="--seed"):
        resolve_seed(seed)


FLOAT_PARAMS = [(spec.family, spec.name, param) for spec in all_specs() for param in spec.params
                if param.kind == "float"]


@pytest.mark.parametrize("family, method, param", FLOAT_PARAMS, ids=lambda v: getattr(v, "name", str(v)))
def test_float_params_refuse_non_finite_and_out_of_range(family, method, param):
    hostile = ["nan", "inf", "-inf"]
    hostile += [] if param.low is None else [repr(param.low - max(1.0, abs(param.low)))]
    hostile += [] if param.high is None else [repr(param.high + max(1.0, abs(param.high)))]
    for text in hostile:
        with pytest.raises(UsageError, match=f"--param {param.name}={text}: must be"):
            param.parse(text)
    assert param.parse(repr(float(param.default))) == param.default


def test_every_numeric_param_declares_a_range():
    unbounded = [f"{spec.name} {p.name}" for spec in all_specs() for p in spec.params
                 if p.kind in ("int", "float") and p.low is None and p.high is None]
    assert unbounded == []


@pytest.fixture(scope="module")
def poisson(tmp_path_factory):
    path = tmp_path_factory.mktemp("hostile") / "p.h5"
    assert run_cli(["generate", "poisson2d", "--n", "6", "-o", path]).exit_code == 0
    return path


@pytest.mark.parametrize("args, option", [
    (["--method", "gmres", "--param", "ilu_drop_tol=nan", "--precond", "ilu"], "ilu_drop_tol"),
    (["--method", "lsqr", "--param", "atol=inf"], "atol"),
    (["--method", "sor", "--param", "omega=-inf"], "omega"),
    (["--method", "gmres", "--param", "restart=0"], "restart"),
])
def test_hostile_param_ends_with_exit_2_naming_it(tmp_path, poisson, args, option):
    result = run_cli(["solve", f"{poisson}:/A", *args, "-o", tmp_path / "x.h5", "--quiet"])
    assert result.exit_code == 2 and f"--param {option}=" in result.stderr
    assert not (tmp_path / "x.h5").exists()


def test_rtol_nan_no_longer_converges_in_zero_iterations(tmp_path, poisson):
    result = run_cli(["solve", f"{poisson}:/A", "--method", "cg", "--rtol", "nan", "-o", tmp_path / "x.h5"])
    assert result.exit_code == 2 and "--rtol" in result.stderr


def test_library_callers_get_the_same_checks(tmp_path, poisson):
    """Jobs built without the CLI (the API, or the options dataclasses) refuse NaN tolerances too."""
    import matcli

    for call, flag in [
        (lambda: matcli.solve(f"{poisson}:/A", rtol=float("nan")), "--rtol"),
        (lambda: matcli.factorize(f"{poisson}:/A", kind="eig", method="arpack", rank=2, tol=float("nan")), "--tol"),
        (lambda: matcli.sketch_regress(f"{poisson}:/A", f"{poisson}:/b", rtol=float("nan")), "--rtol"),
        (lambda: matcli.sketch_regress(f"{poisson}:/A", f"{poisson}:/b", ridge=-1.0), "--ridge"),
        (lambda: matcli.solve(f"{poisson}:/A", maxiter=2.5), "--maxiter"),
        (lambda: matcli.solve(f"{poisson}:/A", precond="ilu0"), "--precond"),
    ]:
        with pytest.raises(UsageError, match=flag):
            call()


def test_every_numeric_option_declares_its_range_once():
    """The CLI's parsers and the options dataclasses share one Range object per option."""
    import dataclasses

    from matcli.jobs.options import OPTIONS

    for options in OPTIONS.values():
        for f in dataclasses.fields(options):
            if f.type in ("int", "float", "int | None", "float | None") or "int" in str(f.type) and "tuple" not in str(f.type):
                if f.name not in ("batch",):
                    assert f.metadata["range"] is not None or f.metadata["choices"], (options.__name__, f.name)


@pytest.mark.parametrize("args, code, fragment", [
    (["--nrhs", str(10**12), "--rhs", "random"], 7, "--nrhs"),
    (["--nrhs", str(10**12), "--rhs", "ones"], 7, "--nrhs"),
    (["--maxiter", "0"], 2, "--maxiter"),
    (["--threads", str(10**6)], 2, "--threads"),
])
def test_sizes_are_refused_before_allocating(tmp_path, poisson, args, code, fragment):
    result = run_cli(["solve", f"{poisson}:/A", *args, "--max-memory", "50M", "-o", tmp_path / "x.h5", "--quiet"])
    assert result.exit_code == code, result.stderr
    assert fragment in result.stderr


def test_recycle_beyond_the_order_is_a_usage_error(tmp_path):
    batch = tmp_path / "batch.h5"
    assert run_cli(["generate", "batch", "--n", "4", "--count", "2", "-o", batch]).exit_code == 0
    result = run_cli(["solve", f"{batch}:/systems", "--batch", "--method", "cg", "--recycle", "17",
                      "-o", tmp_path / "x.h5", "--quiet"])
    assert result.exit_code == 2 and "--recycle 17" in result.stderr


@pytest.mark.parametrize("args, fragment", [
    (["--rank", "-1"], "--rank"), (["--rank", str(10**12)], "--rank"), (["--rank", "nan"], "--rank"),
])
def test_factorize_rank_out_of_range(tmp_path, poisson, args, fragment):
    result = run_cli(["factorize", f"{poisson}:/A", "--kind", "svd", *args, "-o", tmp_path / "f.h5", "--quiet"])
    assert result.exit_code == 2 and fragment in result.stderr


def test_complete_rank_beyond_the_matrix(tmp_path):
    problem = tmp_path / "c.h5"
    assert run_cli(["generate", "completion", "--rows", "20", "--cols", "10", "--rate", "0.5",
                    "-o", problem]).exit_code == 0
    result = run_cli(["complete", f"{problem}:/observed", "--rank", str(10**12), "-o", tmp_path / "m.h5",
                      "--quiet"])
    assert result.exit_code == 2 and "--rank" in result.stderr


def test_integers_beyond_any_float_are_compared_exactly():
    huge = "1" + "0" * 400
    assert Number(int, 1, auto=True)(huge) == 10**400
    with pytest.raises(typer.BadParameter, match="not an integer in"):
        Number(int, 1, 10)(huge)


def test_finite_numbers_inside_the_range_pass():
    assert Number(float, 0.0, 1.0, low_open=True, high_open=True)("1e-8") == 1e-8
    assert Number(int, 1, auto=True)(" AUTO ") == "auto"
    assert Pair(Number(int, 1))("3x4") == (3, 4)
    assert np.isclose(Number(float, 0.0)("1e300"), 1e300)


def test_methods_lists_each_params_range():
    listing = run_cli(["methods", "solve"]).stdout
    assert "--param ilu_drop_tol=0.0001 (in [0, 1])" in listing
    assert "--param amg_cycle='V' (one of V, W, F)" in listing


def test_factorize_honours_max_memory(tmp_path, poisson):
    """factorize parsed --max-memory but did not pass it on: the budget was silently the default."""
    result = run_cli(["factorize", f"{poisson}:/A", "--kind", "svd", "--rank", "2", "--max-memory", "1K",
                      "-o", tmp_path / "f.h5", "--quiet"])
    assert result.exit_code == 7, result.stderr
