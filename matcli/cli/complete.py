"""``matcli complete OBSERVED --rank k -o model.h5``: low-rank matrix completion."""

from __future__ import annotations

import enum
from typing import Annotated, Any, Optional

import typer

from matcli.cli.options import (
    AllowExternalOpt, Backend, BackendOpt, ForceOpt, MaxMemoryOpt, MonitorOpt, Number, OutOpt, Pair,
    ParamOpt, PlotOpt, QuietOpt, ReportOpt, SchedulerOpt, SeedOpt, StrictOpt, ThreadsOpt, maxiter_option,
)
from matcli.jobs.options import CompleteOptions, range_of


def _method_enum() -> type[enum.Enum]:
    from matcli.core.registry import method_names

    names = ["auto", *method_names("complete")]
    return enum.Enum("Method", {name.replace("-", "_"): name for name in names}, type=str)


Method = _method_enum()


def _reg_help() -> str:
    from matcli.methods.complete.specs import DEFAULT_REG

    defaults = ", ".join(f"{name} {value}" for name, value in DEFAULT_REG.items() if value)
    return ("Regularisation, or 'auto' (the default): chosen after the rank by validation RMSE among the "
            "fits that converge, at multiples 4 .. 1/4096 of the method's base value and 0. "
            "als/als-exact/robust: ridge weight times each row's/column's number of observations; "
            "softimpute: nuclear-norm threshold relative to the top singular value; scaledgd: ridge weight. "
            "Base values: " + defaults +
            "; scaledgd and robust default to 0 (an exact model). Not accepted by bpmf or bpmf-implicit.")


def command(
    observed: Annotated[str, typer.Argument(
        help="Observed entries: ratings.tsv|.csv|u1.base (user item value, 1-based), obs.mtx, file.h5:/obs "
             "(row, col, value, 0-based).")],
    out: OutOpt,
    rank: Annotated[str, typer.Option("--rank", "-r", "-k", parser=Number(range_of(CompleteOptions, "rank")),
                                      help="Rank k, or 'auto' (the default): chosen by validation RMSE "
                                           "(robust: median absolute error); bpmf and bpmf-implicit use min(8, m, n), their posterior "
                                           "averaging keeps a larger rank from overfitting. (-k: the old spelling.)")] = "auto",
    reg: Annotated[Optional[str], typer.Option("--reg", parser=Number(range_of(CompleteOptions, "reg")), help=_reg_help())] = None,
    method: Annotated[Method, typer.Option(
        "--method", "-m", help="Completion method. auto: bpmf-implicit for ratings (values on at most 10 levels, 100 "
                               "entries per level; bpmf when min(m, n) > 5000), otherwise als-exact (als above rank 24).")] = Method.auto,
    bias: Annotated[Optional[bool], typer.Option(
        "--bias/--no-bias", help="Fit global mean, row and column biases. Default: on for ratings (values on at most "
                                 "10 levels, 100 entries per level), off otherwise (mean and offsets are two more "
                                 "rank-one terms the rank search finds when the data has them).")] = None,
    validate: Annotated[float, typer.Option(
        "--validate", parser=Number(range_of(CompleteOptions, "validate")),
        help="Hold out this fraction of the observed entries; report validation RMSE per sweep.")] = 0.0,
    test: Annotated[Optional[str], typer.Option("--test", help="Test entries: report test_rmse and test_mae.")] = None,
    predict: Annotated[Optional[str], typer.Option(
        "--predict", help="(row, col) pairs to predict: text lines 'row col' (1-based ids as in the training "
                         "file), optionally followed by a value and an integer timestamp (a ratings file works; more "
                         "columns are refused), or file.h5:/group (row, col 0-based).")] = None,
    predictions_out: Annotated[Optional[str], typer.Option(
        "--predictions-out", help="Write predictions here as 'row col value' lines (1-based).")] = None,
    clip: Annotated[Optional[str], typer.Option("--clip", parser=Pair(Number(range_of(CompleteOptions, "clip"))),
                                                help="Clip predictions to 'lo,hi', e.g. 1,5.")] = None,
    shape: Annotated[Optional[str], typer.Option("--shape", parser=Pair(Number(range_of(CompleteOptions, "shape"))),
                                                 help="Declares the id space 'm,n': every id must fit in it (default: from the input; "
                                    "ratings files: the largest ids). Sparse or huge ids are compacted to the "
                                    "observed ones; the model keeps row_ids/col_ids.")] = None,
    maxiter: maxiter_option("200 sweeps for als/als-exact/robust, 1000 for softimpute; bpmf: see --param") = None,
    rtol: Annotated[float, typer.Option(
        "--rtol", "--tol", parser=Number(range_of(CompleteOptions, "rtol")), help="Stop when a sweep changes the objective (softimpute: the estimate; bpmf: the "
                         "posterior mean; robust: the inlier residual, which must then be within -p tol) by "
                         "less than this, relatively.")] = 1e-4,
    plot: PlotOpt = None,
    backend: BackendOpt = Backend.local,
    scheduler: SchedulerOpt = None,
    max_memory: MaxMemoryOpt = None,
    allow_external_links: AllowExternalOpt = False,
    param: ParamOpt = None,
    seed: SeedOpt = None,
    report: ReportOpt = None,
    force: ForceOpt = False,
    strict: StrictOpt = False,
    quiet: QuietOpt = False,
    monitor: MonitorOpt = False,
    threads: ThreadsOpt = None,
) -> Any:
    """Fit M ~ mu + b_i + c_j + U_i . V_j from observed entries only (missing entries are unknown,
    never zero) and write U, V and the biases to the output file."""
    from matcli import api

    return api.complete(observed, method=method.value, rank=rank, reg=reg, bias=bias, validate=validate, test=test,
                 predict=predict, predictions_out=predictions_out, clip=clip, shape=shape, maxiter=maxiter,
                 rtol=rtol, params=param, seed=seed, output=out, report=report, plot=plot, threads=threads,
                 max_memory=max_memory, backend=backend.value, scheduler=scheduler, force=force, strict=strict,
                 quiet=quiet, monitor=monitor, allow_external_links=allow_external_links)
