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
import math
from typing import Annotated, Any, Optional

import typer

from matcli.backends import BACKENDS

#: Largest iteration cap: ARPACK and the other compiled kernels take a C int.
MAX_ITERATIONS = 2**31 - 1
#: Largest --threads: more is a typo, not a machine (BLAS builds cap their pools far lower).
MAX_THREADS = 1024
#: Seeds are unsigned 64-bit integers (the output file's ``seed`` attribute).
MAX_SEED = 2**64 - 1
#: Largest matrix dimension: shapes and indices are int64.
MAX_DIMENSION = 2**63 - 1


class Number:
    """Parser of a finite number in a declared range, for ``typer.Option(parser=...)``.

    ``kind`` is ``int`` or ``float``; ``low`` / ``high`` bound the value (None = unbounded),
    ``low_open`` / ``high_open`` exclude the bound itself; ``auto`` also accepts the word ``auto``
    (returned as the string ``"auto"``; Typer accepts no Union annotation, so such an option keeps
    ``str`` as its annotation). Raises :class:`typer.BadParameter`, which Typer reports with the
    option's name.
    """

    def __init__(self, kind: type = float, low: float | None = None, high: float | None = None, *,
                 low_open: bool = False, high_open: bool = False, auto: bool = False):
        self.kind, self.low, self.high = kind, low, high
        self.low_open, self.high_open, self.auto = low_open, high_open, auto
        # Typer shows a parser's __name__ as the option's metavar in --help
        self.__name__ = " ".join(filter(None, (self.noun(), self.interval()))) + (" or auto" if auto else "")

    def noun(self) -> str:
        return "integer" if self.kind is int else "number"

    def interval(self) -> str:
        """The range: ``(0, 1)``, ``[0, 1)``, ``>= 1``, or empty when unbounded."""
        low, high = (None if b is None else str(b) if self.kind is int else f"{b:g}" for b in (self.low, self.high))
        if low is not None and high is not None:
            return f"{'(' if self.low_open else '['}{low}, {high}{')' if self.high_open else ']'}"
        if low is not None:
            return f">{'' if self.low_open else '='} {low}"
        if high is not None:
            return f"<{'' if self.high_open else '='} {high}"
        return ""

    def phrase(self) -> str:
        """The range, to follow "a finite number": ``in (0, 1)``, ``>= 1``, or empty."""
        interval = self.interval()
        return f"in {interval}" if interval[:1] in "([" and interval else interval

    def contains(self, value: float) -> bool:
        if self.kind is float and not math.isfinite(value):
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or (value < self.high if self.high_open else value <= self.high)

    def __call__(self, value: Any) -> Any:
        text = str(value).strip()
        if self.auto and text.lower() == "auto":
            return "auto"
        try:
            number = self.kind(value if isinstance(value, (int, float)) else text)
        except (TypeError, ValueError):
            raise typer.BadParameter(f"{text!r} is not {'an' if self.kind is int else 'a'} {self.noun()}"
                                     + (" or 'auto'" if self.auto else "")) from None
        if not self.contains(number):
            what = "a finite number" if self.kind is float else "an integer"
            raise typer.BadParameter(" ".join(filter(None, (f"{text} is not {what}", self.phrase()))))
        return number


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
