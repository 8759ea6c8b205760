"""Assemble the Typer app and map exceptions to exit codes (the only place that does).

Exit codes: 0 ok; 1 internal bug; 2 usage error; 3 not converged (--strict); 4 input error;
5 output error; 6 backend error.
"""

from __future__ import annotations

import sys

import typer

from matcli.cli import complete, factorize, generate, info, methods, sketch_regress, solve

app = typer.Typer(
    name="matcli",
    help="Batch solvers for matrix problems: linear systems, matrix completion, sketched least "
    "squares, factorizations. Exit codes: 0 ok, 1 internal error, 2 usage, 3 not converged "
    "(--strict), 4 input error, 5 output error, 6 backend error.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
app.command("solve", help="Solve linear systems A X = B (direct, Krylov, multigrid; batches).")(solve.command)
app.command("complete", help="Low-rank matrix completion from observed entries.")(complete.command)
app.command("sketch-regress", help="Randomized least squares min ||Ax - b|| by sketching.")(sketch_regress.command)
app.command("factorize", help="SVD, NMF, CUR, QR, LU, Cholesky, LDL^T, eigendecomposition.")(factorize.command)
app.command("info", help="Describe a matrix file: shape, nnz, symmetry, definiteness, condition.")(info.command)
app.command("generate", help="Write test problems (Poisson, SPD, low-rank, regression, completion).")(generate.command)
app.command("methods", help="List registered methods and their --param keys.")(methods.command)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; return the exit code. Errors print one line on stderr, never a traceback."""
    from matcli.core.errors import MatcliError

    command = typer.main.get_command(app)
    try:
        command.main(args=argv, prog_name="matcli", standalone_mode=False)
    except MatcliError as exc:
        print(f"matcli: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except typer.Exit as exc:
        return int(exc.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        print("matcli: interrupted", file=sys.stderr)
        return 130
    except MemoryError:
        print("matcli: error: out of memory (try a smaller problem or a streaming/iterative method)",
              file=sys.stderr)
        return 1
    except Exception as exc:  # noqa: BLE001 - the one place that turns failures into exit codes
        if hasattr(exc, "show") and hasattr(exc, "exit_code"):
            exc.show()  # click-style usage error (typer vendors click in recent releases)
            return int(exc.exit_code)
        print(f"matcli: internal error: {type(exc).__name__}: {exc} (please report this bug)", file=sys.stderr)
        return 1
    return 0


def console_main() -> None:
    """Entry point of the ``matcli`` console script."""
    sys.exit(main())
