"""Options shared by every subcommand, as ``Annotated`` types, and the parsers that declare the
allowed range of every numeric option (Typer only; no heavy imports).

Every numeric option declares its range where it is defined: integers through Typer's ``min`` /
``max``, floats (and numbers that may also be ``auto``, and pairs) through a :class:`Number` given
as the option's ``parser``. A value outside the range is refused while the command line is parsed,
before any file is read (exit 2, naming the option and the range). :class:`Number` also refuses
NaN and infinities: a range check alone lets NaN through, since every comparison with NaN is false.
"""

from __future__ import annotations

import enum
from typing import Annotated, Any, Optional

import typer

from matcli.backends import BACKENDS
from matcli.core.ranges import MAX_ITERATIONS, MAX_SEED, MAX_THREADS, Range

class Number:
    """Parser of a finite number in a declared :class:`~matcli.core.ranges.Range`, for
    ``typer.Option(parser=...)``: ``Number(range_of(SolveOptions, "rtol"))``, or the range's own
    arguments (``Number(int, 1, auto=True)``) for options outside the families' dataclasses.

    An ``auto`` range also accepts the word ``auto`` (returned as the string ``"auto"``; Typer accepts
    no Union annotation, so such an option keeps ``str`` as its annotation). Raises
    :class:`typer.BadParameter`, which Typer reports with the option's name.
    """

    def __init__(self, kind: type | Range = float, low: float | None = None, high: float | None = None, *,
                 low_open: bool = False, high_open: bool = False, auto: bool = False):
        self.range = kind if isinstance(kind, Range) else Range(kind, low, high, low_open, high_open, auto)
        # Typer shows a parser's __name__ as the option's metavar in --help
        self.__name__ = self.range.describe()

    def __getattr__(self, name: str) -> Any:
        # kind, low, high, noun(), interval() ... are the range's
        if name == "range":
            raise AttributeError(name)
        return getattr(self.range, name)

    def __call__(self, value: Any) -> Any:
        try:
            return self.range.parse(value)
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from None


class Pair:
    """Parser of two numbers ``a,b`` (or ``axb``), each checked by ``number``; returns ``(a, b)``."""

    def __init__(self, number: Number):
        self.number = number
        self.__name__ = " ".join(filter(None, (f"two {number.noun()}s", number.interval(), "a,b")))

    def __call__(self, value: Any) -> tuple:
        if isinstance(value, tuple):
            return value
        parts = str(value).replace("x", ",").split(",")
        if len(parts) != 2:
            raise typer.BadParameter(f"{value!r} is not two {self.number.noun()}s like 'a,b'")
        return tuple(self.number(part) for part in parts)


OutOpt = Annotated[str, typer.Option("--out", "-o", help="Output file (.h5 default, .mtx for one matrix).")]
ReportOpt = Annotated[
    Optional[str], typer.Option("--report", help="Write the JSON report to this file ('-' for stdout).")
]
SeedOpt = Annotated[
    Optional[int], typer.Option("--seed", min=0, max=MAX_SEED,
                                help="Random seed (recorded in the report; random if omitted).")
]
ThreadsOpt = Annotated[
    Optional[int], typer.Option("--threads", min=1, max=MAX_THREADS, envvar="MATCLI_THREADS",
                                help="Threads for BLAS/OpenMP pools (threadpoolctl) and "
                                "matcli's own parallel loops (sparse products, sketches, passes over A); "
                                "default: the CPUs this process may use (affinity mask, cgroup quota).")
]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", envvar="MATCLI_QUIET",
                                         help="No summary table or progress on stderr.")]
StrictOpt = Annotated[
    bool, typer.Option("--strict", help="Exit with code 3 when the method did not converge.")
]
ForceOpt = Annotated[bool, typer.Option("--force", help="Overwrite an existing output file.")]
MonitorOpt = Annotated[bool, typer.Option("--monitor", help="Print per-iteration history to stderr.")]
ParamOpt = Annotated[
    Optional[list[str]],
    typer.Option("--param", "-p", help="Method-specific parameter key=value (repeatable; see `matcli methods`)."),
]
def maxiter_option(default: str) -> Any:
    """``--maxiter`` with the subcommand's default in words (it depends on the method and the size)."""
    return Annotated[Optional[int], typer.Option("--maxiter", min=1, max=MAX_ITERATIONS,
                                                 help=f"Maximum iterations (default: {default}).")]


MaxiterOpt = maxiter_option("per method")
PlotOpt = Annotated[Optional[str], typer.Option(
    "--plot", help="Write a PNG of the run's certificate: residual per iteration (solve, sketch-regress), "
                   "training/validation RMSE per sweep (complete), values and residuals or the objective per "
                   "iteration (factorize); needs matplotlib.")]
Backend = enum.Enum("Backend", {name: name for name in BACKENDS}, type=str)
BackendOpt = Annotated[
    Backend,
    typer.Option("--backend", help="Where the independent tasks run: local (this process, in order) or dask "
                                   "(a Dask cluster: --scheduler, else $MATCLI_DASK_SCHEDULER, else a local "
                                   "cluster of one worker per core; needs pip install 'matcli[dask]')."),
]
SchedulerOpt = Annotated[
    Optional[str],
    typer.Option("--scheduler", help="--backend dask: address of a running Dask scheduler, e.g. tcp://host:8786."),
]
MaxMemoryOpt = Annotated[
    Optional[str],
    typer.Option("--max-memory", help="Memory budget of the run (e.g. 500M, 2G; default: $MATCLI_MAX_MEMORY, else "
                                      "half the available memory). An input whose declared sizes need more is "
                                      "refused before it is read (exit 7)."),
]
AllowExternalOpt = Annotated[
    bool,
    typer.Option("--allow-external-links", help="Follow HDF5 external links, virtual datasets and soft links that "
                                               "leave the input file (refused by default: exit 4)."),
]
