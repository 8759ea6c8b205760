"""``matcli sketch-regress A b -o x.h5``: randomized least squares min ||Ax - b|| (+ ridge)."""

from __future__ import annotations

import enum
from typing import Annotated, Any, Optional

import typer

from matcli.cli.options import (AllowExternalOpt, Backend, BackendOpt, ForceOpt, MonitorOpt, Number, OutOpt, ParamOpt,
                                PlotOpt, QuietOpt, ReportOpt, SchedulerOpt, SeedOpt, StrictOpt, ThreadsOpt,
                                maxiter_option)
from matcli.jobs.options import SketchOptions, range_of


class Mode(str, enum.Enum):
    auto = "auto"
    precondition = "precondition"
    sketch_and_solve = "sketch-and-solve"
    refine = "refine"
    lapack = "lapack"


class SketchKind(str, enum.Enum):
    auto = "auto"
    countsketch = "countsketch"
    sparse_sign = "sparse-sign"
    srht = "srht"
    gaussian = "gaussian"
    leverage = "leverage"


def command(
    matrix: Annotated[str, typer.Argument(help="Matrix A (tall for the sketched modes): A.mtx, A.npy, file.h5:/A (dense dataset or sparse group), store.zarr:/A.")],
    out: OutOpt,
    rhs: Annotated[Optional[str], typer.Argument(help="Right-hand side b (m,), or (m, k) for --mode lapack: b.h5:/b, b.npy, b.txt, b.mtx "
                                                     "(or give it with --rhs, as solve does).")] = None,
    rhs_option: Annotated[Optional[str], typer.Option("--rhs", "-b", help="Right-hand side b, as in solve (instead of "
                                                                        "the second argument).")] = None,
    mode: Annotated[Mode, typer.Option("--mode", "--method", "-m", help="auto: lapack (exact, no sketch) for a matrix of at "
                                       "most 2**21 entries, a complex or wide A or several right-hand sides; else "
                                       "sketch-and-solve if --eps is given, else precondition. refine adds "
                                       "iterative refinement (backward stable).")] = Mode.auto,
    sketch: Annotated[SketchKind, typer.Option("--sketch", help="Sketching operator. auto: CountSketch for the "
                                               "iterative modes, vetted by CGLS's Ritz values (re-sketched with "
                                               "sparse-sign if rows of high leverage collided); sparse-sign for "
                                               "sketch-and-solve.")] = SketchKind.auto,
    sketch_size: Annotated[Optional[str], typer.Option(
        "--sketch-size", parser=Number(range_of(SketchOptions, "sketch_size")),
        help="Rows of the sketch (n <= d <= m). With --ensemble K >= 2: columns q of each feature sketch "
             "(1 <= q <= n; default ceil(n / K)), or auto (GCV over q).")] = None,
    ensemble: Annotated[int, typer.Option(
        "--ensemble", parser=Number(range_of(SketchOptions, "ensemble")),
        help="1: no ensemble. K >= 2: average K ridge solutions on feature sketches of A (columns), "
             "lambda (--ridge auto, 0 included) and --sketch-size auto tuned by the ensemble's GCV; "
             "the report's info.gcv_curve holds the curve, --plot draws it.")] = 1,
    eps: Annotated[Optional[float], typer.Option(
        "--eps", parser=Number(range_of(SketchOptions, "eps")), help="Target residual ratio 1+eps (0 < eps < 1). sketch-and-solve: sets the sketch size. "
                      "precondition, refine: iterate until the a-posteriori bound on the residual ratio is within "
                      "1+eps (replaces --rtol's optimality test).")] = None,
    ridge: Annotated[str, typer.Option("--ridge", parser=Number(range_of(SketchOptions, "ridge")),
                                       help="Ridge parameter lambda >= 0, or 'auto' (GCV on the sketch).")] = "0",
    rtol: Annotated[float, typer.Option(
        "--rtol", "--tol", parser=Number(range_of(SketchOptions, "rtol")),
        help="Stopping tolerance of the preconditioned CGLS (LSQR's criteria; precondition, refine; "
             "with --eps only its test for consistent systems, ||r|| <= rtol ||b||).")] = 1e-10,
    maxiter: maxiter_option("200 + n / 10 CGLS iterations per solve") = None,
    plot: PlotOpt = None,
    backend: BackendOpt = Backend.local,
    scheduler: SchedulerOpt = None,
    max_memory: Annotated[Optional[str], typer.Option(
        "--max-memory", help="Peak memory of the whole process (e.g. 500M, 2G; default: $MATCLI_MAX_MEMORY, "
                             "else half the available memory). An HDF5 matrix (dense dataset or csr_matrix group) that does not fit "
                             "beside the solve is streamed in row blocks, one pass over the file per "
                             "iteration; the sketch is capped to fit. The report's problem.memory gives "
                             "the plan.")] = None,
    allow_external_links: AllowExternalOpt = False,
    param: ParamOpt = None,
    seed: SeedOpt = None,
    report: ReportOpt = None,
    threads: ThreadsOpt = None,
    quiet: QuietOpt = False,
    strict: StrictOpt = False,
    force: ForceOpt = False,
    monitor: MonitorOpt = False,
) -> Any:
    """Solve min ||Ax - b||^2 + lambda ||x||^2 by randomized sketching (tall A), or exactly; writes x (n,)."""
    from matcli import api
    from matcli.core.errors import UsageError

    if (rhs is None) == (rhs_option is None):
        raise UsageError("sketch-regress needs the right-hand side b once: as the second argument or with --rhs")
    return api.sketch_regress(matrix, rhs or rhs_option, method=mode.value, sketch=sketch.value, sketch_size=sketch_size,
                       eps=eps, ridge=ridge, rtol=rtol, maxiter=maxiter, params=param, seed=seed, output=out,
                       report=report, plot=plot, threads=threads, max_memory=max_memory, backend=backend.value,
                       scheduler=scheduler, force=force,
                       strict=strict, quiet=quiet, monitor=monitor, allow_external_links=allow_external_links,
                       ensemble=ensemble)
