"""Assemble the Typer app and map exceptions to exit codes (the only place that does).

Exit codes: 0 ok; 1 internal bug; 2 usage error; 3 not converged (--strict); 4 input error;
5 output error; 6 backend error; 7 resource limit; 129/130/143 stopped by SIGHUP/SIGINT/SIGTERM;
141 standard output closed (broken pipe).
"""

from __future__ import annotations

import sys
from typing import Any

import typer

from matcli.cli import complete, factorize, generate, info, methods, predict, run, sketch_regress, solve

app = typer.Typer(
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


app.command("solve", help="Solve linear systems A X = B (direct, Krylov, multigrid; batches).")(solve.command)
app.command("complete", help="Low-rank matrix completion from observed entries.")(complete.command)
app.command("predict", help="Predict entries from a saved completion model (matcli complete -o).")(predict.command)
app.command("sketch-regress", help="Randomized least squares min ||Ax - b|| by sketching.")(sketch_regress.command)
app.command("factorize", help="SVD, NMF, CUR, QR, LU, Cholesky, LDL^T, eigendecomposition.")(factorize.command)
app.command("info", help="Describe a matrix file: shape, nnz, symmetry, definiteness, condition.")(info.command)
app.command("generate", help="Write test problems (Poisson, SPD, low-rank, regression, completion).")(generate.command)
app.command("methods", help="List registered methods and their --param keys.")(methods.command)
app.command("run", help="Run a list of matcli command lines (one process, or a Dask cluster).")(run.command)


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
