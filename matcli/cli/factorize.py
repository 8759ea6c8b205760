"""``matcli factorize A --kind K [--method M] -o factors.h5``: parse options and delegate to the runner."""

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
    MonitorOpt,
    Number,
    OutOpt,
    ParamOpt,
    PlotOpt,
    QuietOpt,
    ReportOpt,
    SchedulerOpt,
    SeedOpt,
    StrictOpt,
    ThreadsOpt,
    maxiter_option,
)
from matcli.jobs.options import FactorizeOptions, range_of


class Kind(str, enum.Enum):
    svd = "svd"
    nmf = "nmf"
    cur = "cur"
    qr = "qr"
    lu = "lu"
    cholesky = "cholesky"
    ldl = "ldl"
    eig = "eig"
    rpca = "rpca"


class Method(str, enum.Enum):
    auto = "auto"
    randomized = "randomized"
    block_krylov = "block-krylov"
    lanczos = "lanczos"
    arpack = "arpack"
    propack = "propack"
    dense = "dense"
    tsqr = "tsqr"
    update = "update"
    hals = "hals"
    mu = "mu"
    robust = "robust"
    leverage = "leverage"
    pivoted_qr = "pivoted-qr"
    sparse = "sparse"
    ialm = "ialm"
    subgradient = "subgradient"


def command(
    matrix: Annotated[str, typer.Argument(help="Matrix: A.mtx[.gz], A.npy, A.npz, A.h5:/dataset_or_sparse_group or store.zarr:/A.")],
    out: OutOpt,
    kind: Annotated[Kind, typer.Option("--kind", "-k", help="Factorization.")] = Kind.svd,
    method: Annotated[Method, typer.Option(
        "--method", "-m",
        help="Algorithm within the kind. svd: randomized|block-krylov|lanczos|arpack|propack|dense|tsqr|update; "
             "nmf: hals|mu|robust; cur: leverage|pivoted-qr; qr/ldl: dense; lu/cholesky: dense|sparse; "
             "eig: dense|arpack; rpca: ialm|subgradient. auto picks from the matrix (the report says why).")] = Method.auto,
    rank: Annotated[Optional[str], typer.Option(
        "--rank", "-r", parser=Number(range_of(FactorizeOptions, "rank")), help="Target rank k, or 'auto' (svd, cur) for the smallest rank meeting --tol.")] = None,
    tol: Annotated[Optional[float], typer.Option(
        "--tol", "--rtol", parser=Number(range_of(FactorizeOptions, "tol")), help="The method's relative tolerance: svd/cur --rank auto: relative Frobenius error target (default 1e-2); "
                               "svd lanczos: relative residual of every triplet (default 1e-8); svd arpack/propack: svds tolerance; nmf: relative decrease of the loss to stop; "
                               "rpca: ||A - L - S||_F / ||A||_F (default 1e-7).")] = None,
    power_iters: Annotated[Optional[int], typer.Option(
        "--power-iters", min=0, help="Randomized SVD power iterations / block Krylov depth (default 4; 1 per block with --rank auto).")] = None,
    oversample: Annotated[Optional[int], typer.Option(
        "--oversample", min=0, help="Extra random vectors of the randomized SVD (default 10).")] = None,
    maxiter: maxiter_option("nmf 500 sweeps; lanczos 50 (rank + extra) products; arpack/eig: ARPACK's 10 n; "
                            "rpca 1000") = None,
    update: Annotated[Optional[str], typer.Option(
        "--update", help="Previous truncated SVD (an output of matcli factorize --kind svd) of MATRIX to update.")] = None,
    append_rows: Annotated[Optional[str], typer.Option(
        "--append-rows", help="With --update: rows R appended below MATRIX (spec like R.h5:/R).")] = None,
    append_cols: Annotated[Optional[str], typer.Option(
        "--append-cols", help="With --update: columns C appended right of MATRIX.")] = None,
    update_lowrank: Annotated[Optional[str], typer.Option(
        "--update-lowrank", help="With --update: the low-rank term X Y^H added to MATRIX, as 'X_spec,Y_spec' "
                                 "(X m x q, Y n x q; e.g. XY.h5:/X,XY.h5:/Y).")] = None,
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
    """Factorize a matrix (SVD, NMF, CUR, QR, LU, Cholesky, LDL^T, eig, robust PCA) and write the factors."""
    from matcli import api

    return api.factorize(matrix, kind=kind.value, method=method.value, rank=rank, tol=tol, power_iters=power_iters,
                  oversample=oversample, maxiter=maxiter, update=update, append_rows=append_rows,
                  append_cols=append_cols, update_lowrank=update_lowrank, params=param, seed=seed, output=out, report=report, plot=plot,
                  threads=threads, max_memory=max_memory, backend=backend.value, scheduler=scheduler, force=force,
                  strict=strict, quiet=quiet, monitor=monitor,
                  allow_external_links=allow_external_links)
