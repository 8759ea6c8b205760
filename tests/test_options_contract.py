"""One declaration per option: the CLI's flags, the API's keywords and the family's options dataclass
agree on names, ranges and allowed words, so a flag can be followed to its kernel and neither entry
point has an option (or a check) the other lacks."""

from __future__ import annotations

import dataclasses
import inspect

import pytest
import typer

import matcli
from matcli.cli.app import app
from matcli.cli.options import Number, Pair
from matcli.core.errors import UsageError
from matcli.core.ranges import Range
from matcli.jobs.options import OPTIONS, range_of

#: subcommand -> (API function, family)
COMMANDS = {"solve": (matcli.solve, "solve"), "complete": (matcli.complete, "complete"),
            "sketch-regress": (matcli.sketch_regress, "sketch"), "factorize": (matcli.factorize, "factorize"),
            "predict": (matcli.predict, "predict")}
#: CLI parameter names that differ from the API keyword they are passed as
RENAMED = {"out": "output", "param": "params", "matrices": "A", "matrix": "A", "mode": "method"}
#: CLI parameters that are inputs (positional in the API) rather than options
POSITIONAL = {"solve": {"matrices": "A", "rhs": "b"}, "complete": {"observed": "observed"},
              "sketch-regress": {"matrix": "A", "rhs": "b", "rhs_option": "b"}, "factorize": {"matrix": "A"},
              "predict": {"model": "model", "pairs": "pairs"}}
#: the options dataclass field a CLI parameter (or API keyword) fills, where the names differ
FIELD = {("predict", "out"): "out"}


def _click(name: str):
    return typer.main.get_command(app).commands[name]


def _declared_range(param) -> Range | None:
    kind = param.type  # typer's own copy of click's types: known by name
    parser = getattr(kind, "func", None)
    if isinstance(parser, (Number, Pair)):
        return parser.number.range if isinstance(parser, Pair) else parser.range
    if type(kind).__name__ == "IntRange":
        return Range(int, kind.min, kind.max, kind.min_open, kind.max_open)
    return None


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_flag_is_an_api_keyword(command):
    """The CLI calls the API with every flag it parsed: each parameter has a keyword (or an input)."""
    function, _ = COMMANDS[command]
    keywords = set(inspect.signature(function).parameters)
    for param in _click(command).params:
        name = POSITIONAL[command].get(param.name) or RENAMED.get(param.name, param.name)
        assert name in keywords, f"{command} --{param.name} has no keyword in matcli.{function.__name__}"


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_family_option_is_a_flag_and_a_keyword(command):
    function, family = COMMANDS[command]
    keywords = set(inspect.signature(function).parameters)
    flags = {param.name for param in _click(command).params}
    for field in dataclasses.fields(OPTIONS[family]):
        cli_name = {"out": "out", "rhs": "rhs"}.get(field.name, field.name)
        api_name = "output" if (command, field.name) == ("predict", "out") else \
            "b" if (command, field.name) == ("solve", "rhs") else field.name
        assert cli_name in flags, f"{family} option {field.name} has no flag"
        assert api_name in keywords, f"{family} option {field.name} has no keyword"


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_flag_ranges_are_the_options_ranges(command):
    """A numeric flag's parser checks exactly the range its dataclass field declares."""
    _, family = COMMANDS[command]
    fields = {f.name: f for f in dataclasses.fields(OPTIONS[family])}
    checked = 0
    for param in _click(command).params:
        if param.name not in fields or fields[param.name].metadata["range"] is None:
            continue
        declared = range_of(OPTIONS[family], param.name)
        flag = _declared_range(param)
        assert flag is not None, f"{command} --{param.name} parses without a range"
        assert (flag.kind, flag.low, flag.high, flag.low_open, flag.high_open, flag.auto) == \
            (declared.kind, declared.low, declared.high, declared.low_open, declared.high_open, declared.auto), \
            f"{command} --{param.name}: flag {flag} vs options {declared}"
        checked += 1
    assert checked >= 1


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_flag_choices_are_the_options_choices(command):
    _, family = COMMANDS[command]
    for field in dataclasses.fields(OPTIONS[family]):
        if not field.metadata["choices"]:
            continue
        param = next(p for p in _click(command).params if p.name == field.name)
        assert tuple(param.type.choices) == field.metadata["choices"]


def test_preconditioner_words_are_the_kernels():
    from matcli.methods.solve.precond import PRECONDITIONERS

    assert OPTIONS["solve"].__dataclass_fields__["precond"].metadata["choices"] == ("auto", *PRECONDITIONERS)


@pytest.mark.parametrize("family, values, flag", [
    ("solve", {"rtol": 0.0}, "--rtol"), ("solve", {"rtol": float("inf")}, "--rtol"), ("solve", {"nrhs": 0}, "--nrhs"),
    ("solve", {"maxiter": True}, "--maxiter"), ("solve", {"recycle": -1}, "--recycle"),
    ("complete", {"rank": 1.5}, "--rank"), ("complete", {"clip": (1.0,)}, "--clip"),
    ("complete", {"shape": "3,0"}, "--shape"), ("complete", {"reg": "much"}, "--reg"),
    ("sketch", {"eps": 1.0}, "--eps"), ("sketch", {"sketch": "fourier"}, "--sketch"),
    ("sketch", {"sketch_size": 0}, "--sketch-size"), ("factorize", {"kind": "schur"}, "--kind"),
    ("factorize", {"power_iters": -1}, "--power-iters"), ("predict", {"clip": (0.0, float("nan"))}, "--clip"),
])
def test_options_refuse_what_the_flags_refuse(family, values, flag):
    with pytest.raises(UsageError, match=flag):
        OPTIONS[family](**values)


def test_options_normalise_what_the_flags_normalise():
    options = OPTIONS["complete"](rank="AUTO", clip="1,5", shape=(943.0, 1682), reg="0.5")
    assert (options.rank, options.clip, options.shape, options.reg) == ("auto", (1.0, 5.0), (943, 1682), 0.5)
    assert OPTIONS["solve"]().rtol == 1e-8 and OPTIONS["sketch"]().ridge == 0.0


def test_cli_and_api_share_defaults():
    """Each API keyword's default is the flag's default (as the dataclass sees it)."""
    for command, (function, family) in COMMANDS.items():
        signature = inspect.signature(function).parameters
        for param in _click(command).params:
            name = RENAMED.get(param.name, param.name)
            if param.name in POSITIONAL[command] or name not in signature or param.required:
                continue
            api_default = signature[name].default
            flag_default = param.default
            if isinstance(flag_default, str) and isinstance(api_default, (int, float)) and not isinstance(api_default, bool):
                flag_default = type(api_default)(flag_default)
            if name in ("quiet",):  # the CLI prints a summary by default; the API is a library
                continue
            if name == "method" and command == "predict":
                continue
            assert flag_default == api_default or (flag_default in (None, ()) and api_default in (None, ())), \
                f"{command} {param.name}: flag default {flag_default!r}, API default {api_default!r}"
