"""Options shared by every subcommand, as ``Annotated`` types (Typer only; no heavy imports)."""

from __future__ import annotations

import enum
from typing import Annotated, Optional

import typer

from matcli.backends import BACKENDS

OutOpt = Annotated[str, typer.Option("--out", "-o", help="Output file (.h5 default, .mtx for one matrix).")]
ReportOpt = Annotated[
    Optional[str], typer.Option("--report", help="Write the JSON report to this file ('-' for stdout).")
]
SeedOpt = Annotated[
    Optional[int], typer.Option("--seed", min=0, help="Random seed (recorded in the report; random if omitted).")
]
ThreadsOpt = Annotated[
    Optional[int], typer.Option("--threads", min=1, help="Threads for BLAS/OpenMP pools (threadpoolctl) and "
                                "matcli's own parallel loops (sparse products, sketches, passes over A); "
                                "default: all cores.")
]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No summary table or progress on stderr.")]
StrictOpt = Annotated[
    bool, typer.Option("--strict", help="Exit with code 3 when the method did not converge.")
]
ForceOpt = Annotated[bool, typer.Option("--force", help="Overwrite an existing output file.")]
MonitorOpt = Annotated[bool, typer.Option("--monitor", help="Print per-iteration history to stderr.")]
ParamOpt = Annotated[
    Optional[list[str]],
    typer.Option("--param", "-p", help="Method-specific parameter key=value (repeatable; see `matcli methods`)."),
]
RtolOpt = Annotated[float, typer.Option("--rtol", min=0.0, help="Relative tolerance.")]
MaxiterOpt = Annotated[Optional[int], typer.Option("--maxiter", min=1, help="Maximum iterations.")]
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
