"""``matcli solve A [--rhs B] [--method M] [--precond P] -o x.h5``: parse options, delegate to the runner."""

from __future__ import annotations

import enum
from typing import Annotated, Any, Optional

import typer

from matcli.cli.options import (
    AllowExternalOpt,
    Backend,
    BackendOpt,
    ForceOpt,
    MaxMemoryOpt,
    PlotOpt,
    maxiter_option,
    MonitorOpt,
    Number,
    OutOpt,
    ParamOpt,
    QuietOpt,
    ReportOpt,
    SchedulerOpt,
    SeedOpt,
    StrictOpt,
    ThreadsOpt,
)
from matcli.jobs.options import SolveOptions, range_of
from matcli.core.registry import method_names

Method = enum.Enum("Method", {name: name for name in method_names("solve")}, type=str)
Precond = enum.Enum("Precond", {name.replace("-", "_"): name
                                for name in ("auto", "none", "jacobi", "ilu", "ic", "amg-sa", "amg-rs", "chebyshev")},
                    type=str)


def command(
    matrices: Annotated[list[str], typer.Argument(
        help="Matrix A: A.mtx[.gz], A.npy, A.npz, A.h5:/A (dense dataset or sparse group) or store.zarr:/A. With --batch: one "
             "HDF5 group holding one group per system (each with A and b), or several matrix files.")],
    out: OutOpt,
    rhs: Annotated[Optional[str], typer.Option(
        "--rhs", "-b", help="Right-hand side(s): b.h5:/b, b.mtx, b.npy, b.txt (a vector, or a matrix whose k "
                            "columns are solved together), or 'ones' / 'random' (with --nrhs columns). "
                            "Default: each batch group's b, else ones.")] = None,
    nrhs: Annotated[int, typer.Option("--nrhs", min=1, help="Columns of a generated --rhs ones|random.")] = 1,
    method: Annotated[Method, typer.Option(
        "--method", "-m", help="Solver; auto chooses from size, sparsity, symmetry and a definiteness test "
                               "(see `matcli methods solve`).")] = Method.auto,
    precond: Annotated[Precond, typer.Option(
        "--precond", "-P", help="Preconditioner for cg/minres/gmres/bicgstab (auto: from the matrix).")] = Precond.auto,
    rtol: Annotated[float, typer.Option(
        "--rtol", "--tol", parser=Number(range_of(SolveOptions, "rtol")),
        help="Relative tolerance of iterative methods: stop when the true residual ||b - A x|| <= rtol ||b|| "
             "(relative to the right-hand side, for every column). Direct methods are held to LAPACK's "
             "backward-error ratio instead.")] = 1e-8,
    maxiter: maxiter_option("Krylov methods max(10 n, 100), lsqr/lsmr max(4 min(m, n), 100), SOR sweeps "
                            "as Krylov") = None,
    batch: Annotated[bool, typer.Option(
        "--batch", help="Solve a sequence of related systems, reusing setup (ordering, preconditioner) "
                        "and recycling earlier solutions; output x/<system>.")] = False,
    recycle: Annotated[int, typer.Option(
        "--recycle", min=0, help="--batch with a Krylov method: recycled subspace dimension, 0 = off (gmres: "
                                 "GCRO-DR, deflated harmonic Ritz vectors carried across systems; cg: "
                                 "projected starts from Ritz vectors of earlier solves; others: start from "
                                 "the span of earlier solutions). The first systems are solved alternately "
                                 "with and without recycling; it switches itself off when it does not pay "
                                 "in wall time (report: info.recycling).")] = 0,
    reorder: Annotated[bool, typer.Option(
        "--reorder/--no-reorder", help="--batch: solve similar matrices consecutively.")] = True,
    plot: PlotOpt = None,
    backend: BackendOpt = Backend.local,
    scheduler: SchedulerOpt = None,
    max_memory: MaxMemoryOpt = None,
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
    """Solve A X = B; x (n,) or (n, k) is written to the output (x/<system> with --batch)."""
    from matcli import api

    return api.solve(matrices if len(matrices) > 1 else matrices[0], rhs, method=method.value, rtol=rtol, maxiter=maxiter,
              precond=precond.value, nrhs=nrhs, batch=batch, recycle=recycle, reorder=reorder, params=param,
              seed=seed, output=out, report=report, plot=plot, threads=threads, max_memory=max_memory,
              backend=backend.value, scheduler=scheduler, force=force, strict=strict, quiet=quiet, monitor=monitor,
              allow_external_links=allow_external_links)
