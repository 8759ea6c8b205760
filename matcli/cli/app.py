"""Assemble the Typer app and map exceptions to exit codes (the only place that does).

Exit codes: 0 ok; 1 internal bug; 2 usage error; 3 not converged (--strict); 4 input error;
5 output error; 6 backend error; 7 resource limit; 129/130/143 stopped by SIGHUP/SIGINT/SIGTERM;
141 standard output closed (broken pipe).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator, MutableMapping
from typing import Any

import typer
from typer.core import TyperCommand, TyperGroup

#: subcommand -> (its module under matcli.cli, its one-line help). A module is imported only when its
#: command is looked up (run, its --help, the options contract), so a run pays for one command's
#: imports and ``matcli --help`` for none.
COMMANDS: dict[str, tuple[str, str]] = {
    "solve": ("solve", "Solve linear systems A X = B (direct, Krylov, multigrid; batches)."),
    "complete": ("complete", "Low-rank matrix completion from observed entries."),
    "predict": ("predict", "Predict entries from a saved completion model (matcli complete -o)."),
    "sketch-regress": ("sketch_regress", "Randomized least squares min ||Ax - b|| by sketching."),
    "factorize": ("factorize", "SVD, NMF, CUR, QR, LU, Cholesky, LDL^T, eigendecomposition."),
    "info": ("info", "Describe a matrix file: shape, nnz, symmetry, definiteness, condition."),
    "generate": ("generate", "Write test problems (Poisson, SPD, low-rank, regression, completion)."),
    "methods": ("methods", "List registered methods and their --param keys."),
    "run": ("run", "Run a list of matcli command lines (one process, or a Dask cluster)."),
}


def _build_command(name: str) -> Any:
    """The click command of subcommand ``name``: its module's ``command`` as typer registers it."""
    module_name, help_text = COMMANDS[name]
    module = importlib.import_module(f"matcli.cli.{module_name}")
    single = typer.Typer(add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None)
    single.command(name, help=help_text)(module.command)
    command = typer.main.get_command(single)
    command.name = name
    return command


class _LazyCommands(MutableMapping):
    """The group's name -> command mapping, each command built (its module imported) on first access.

    Iteration lists every name without importing anything; ``get`` answers ``default`` only for an
    unknown name, so an error while importing a command's module is never mistaken for a typo.
    """

    def __init__(self) -> None:
        self._built: dict[str, Any] = {}

    def __getitem__(self, name: str) -> Any:
        if name not in self._built:
            if name not in COMMANDS:
                raise KeyError(name)
            self._built[name] = _build_command(name)
        return self._built[name]

    def get(self, name: str, default: Any = None) -> Any:
        return self[name] if name in self else default

    def __contains__(self, name: object) -> bool:
        return name in COMMANDS or name in self._built

    def __setitem__(self, name: str, command: Any) -> None:
        self._built[name] = command

    def __delitem__(self, name: str) -> None:
        del self._built[name]

    def __iter__(self) -> Iterator[str]:
        yield from COMMANDS
        yield from (name for name in self._built if name not in COMMANDS)

    def __len__(self) -> int:
        return len(COMMANDS) + sum(name not in COMMANDS for name in self._built)


class _LazyGroup(TyperGroup):
    """typer's group with :class:`_LazyCommands`; its help lists the commands from :data:`COMMANDS`."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.commands = _LazyCommands()

    def format_commands(self, ctx: Any, formatter: Any) -> None:
        limit = formatter.width - 6 - max(len(name) for name in COMMANDS)
        rows = [(name, TyperCommand(name=name, help=help_text).get_short_help_str(limit))
                for name, (_, help_text) in COMMANDS.items()]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


app = typer.Typer(
    cls=_LazyGroup,
    name="matcli",
    help="Batch solvers for matrix problems: linear systems, matrix completion, sketched least "
    "squares, factorizations. Exit codes: 0 ok, 1 internal error, 2 usage, 3 not converged "
    "(--strict), 4 input error, 5 output error, 6 backend error, 7 resource limit, "
    "130/143/129 stopped by SIGINT/SIGTERM/SIGHUP, 141 broken pipe.",
    no_args_is_help=True,
    add_completion=True,
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _print_version(value: bool) -> None:
    if value:
        from matcli import __version__

        print(f"matcli {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", "-V", callback=_print_version, is_eager=True,
                                       help="Print matcli's version and exit.")) -> None:
    """Batch solvers for matrix problems."""


def _usage_line(exc: Exception) -> str:
    """One line for a click/typer parsing error: the command, the message, where help is."""
    ctx = getattr(exc, "ctx", None)
    where = ctx.command_path if ctx is not None else "matcli"
    message = " ".join(exc.format_message().split())
    return f"{where}: usage error: {message} (see {where} --help)"


def _say(line: str) -> None:
    """Print one line on stderr; a closed stderr is not an error worth a traceback."""
    try:
        print(line, file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass


def _is_broken_pipe(exc: BaseException | None) -> bool:
    import errno

    return isinstance(exc, OSError) and exc.errno == errno.EPIPE


def _silence_closed_streams() -> None:
    """After EPIPE, point stdout/stderr at /dev/null so the interpreter's final flush stays silent."""
    import os

    devnull = os.open(os.devnull, os.O_WRONLY)
    for stream in (sys.__stdout__, sys.__stderr__):
        try:
            os.dup2(devnull, stream.fileno())
        except (OSError, ValueError, AttributeError):
            pass


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; return the exit code (see :func:`run_command`)."""
    return run_command(argv)[0]


def run_command(argv: list[str] | None = None) -> tuple[int, Any]:
    """Run one command line; return ``(exit code, what the command returned)`` (the solving
    subcommands return their :class:`matcli.api.Outcome`; None after an error). Errors print one
    line on stderr, never a traceback.

    Exit codes: 0 ok, 1 internal error (a bug), 2 usage, 3 not converged (``--strict``), 4 input,
    5 output, 6 backend, 7 resource (memory budget or out of memory), 130 interrupted (SIGINT,
    in-process; the console script exits 130/143/129 from :mod:`matcli.cli.signals`), 141 a closed
    standard output or error (broken pipe), as a shell reports a process ended by SIGPIPE.
    """
    from matcli.core.errors import MatcliError

    command = typer.main.get_command(app)
    try:
        returned = command.main(args=argv, prog_name="matcli", standalone_mode=False)
    except MatcliError as exc:
        _say(f"matcli: error: {exc}")
        return exc.exit_code, None
    except typer.Exit as exc:
        return int(exc.exit_code), None
    except (typer.Abort, KeyboardInterrupt):
        _say("matcli: interrupted")
        return 130, None
    except MemoryError as exc:
        what = f"out of memory: {exc}" if str(exc) else "out of memory"
        _say(f"matcli: error: {what} (lower the problem size, set --max-memory to have inputs checked "
             "against a budget first, or use a streaming/iterative method)")
        return 7, None
    except SystemExit as exc:
        # typer turns EPIPE into sys.exit(1) with the OSError as context.
        if _is_broken_pipe(exc.__context__):
            _silence_closed_streams()
            return 141, None
        return (exc.code if isinstance(exc.code, int) else 1), None
    except Exception as exc:  # noqa: BLE001 - the one place that turns failures into exit codes
        if _is_broken_pipe(exc):
            _silence_closed_streams()
            return 141, None
        if type(exc).__name__ == "NoArgsIsHelpError":
            _say(exc.format_message())  # `matcli` alone: the help text, as no_args_is_help promises
            return 2, None
        if hasattr(exc, "format_message") and hasattr(exc, "exit_code"):
            _say(_usage_line(exc))  # click's usage errors (typer vendors click in recent releases)
            return int(exc.exit_code), None
        _say(f"matcli: internal error: {type(exc).__name__}: {exc} (please report this bug)")
        return 1, None
    if returned == 130:
        _say("matcli: interrupted")
    if isinstance(returned, int) and not isinstance(returned, bool):
        return returned, None
    return 0, returned
