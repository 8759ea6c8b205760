"""``matcli generate KIND -o FILE``: write a test problem from the gallery."""

from __future__ import annotations

import enum
from typing import Annotated

import typer

from matcli.cli.options import ForceOpt, MaxMemoryOpt, Number, OutOpt, QuietOpt, SeedOpt


class Kind(str, enum.Enum):
    poisson2d = "poisson2d"
    poisson3d = "poisson3d"
    spd = "spd"
    lowrank = "lowrank"
    regression = "regression"
    completion = "completion"
    batch = "batch"
    sequence = "sequence"


class Family(str, enum.Enum):
    darcy = "darcy"
    convdiff = "convdiff"
    helmholtz = "helmholtz"


#: kinds built tile by tile (gallery.TiledProblem) and written block by block to HDF5 or Zarr
TILED = (Kind.regression, Kind.lowrank)


def _tiled(kind: Kind, rows: int, cols: int, rank: int, cond: float, heavy_rows: int, noise: float, decay: float,
           rng):
    from matcli import gallery

    if kind is Kind.regression:
        return gallery.RegressionTiles(rows, cols, cond, heavy_rows, noise, rng)
    return gallery.LowrankTiles(rows, cols, rank, noise, decay, rng)


def command(
    kind: Annotated[Kind, typer.Argument(help="Problem kind.")],
    out: OutOpt,
    n: Annotated[int, typer.Option("--n", min=1, help="Grid points per axis (poisson*, batch, sequence) or order (spd).")] = 32,
    rows: Annotated[int, typer.Option("--rows", min=1, help="Rows (lowrank, regression, completion).")] = 1000,
    cols: Annotated[int, typer.Option("--cols", min=1, help="Columns (lowrank, regression, completion).")] = 50,
    rank: Annotated[int, typer.Option("--rank", min=1, help="Rank (lowrank, completion).")] = 5,
    cond: Annotated[float, typer.Option("--cond", parser=Number(float, 1.0), help="Condition number (spd, regression).")] = 1e3,
    rate: Annotated[float, typer.Option("--rate", parser=Number(float, 0.0, 1.0), help="Sampling rate (completion).")] = 0.1,
    noise: Annotated[float, typer.Option("--noise", parser=Number(float, 0.0), help="Noise level (lowrank, regression, completion).")] = 0.0,
    decay: Annotated[float, typer.Option("--decay", parser=Number(float, 0.0, 1.0), help="Singular value ratio s_(i+1)/s_i (lowrank).")] = 0.8,
    heavy_rows: Annotated[int, typer.Option("--heavy-rows", min=0, help="Rows scaled by 1e3 for coherence (regression).")] = 0,
    test_fraction: Annotated[float, typer.Option("--test-fraction", parser=Number(float, 0.0, 0.9), help="Held-out share (completion).")] = 0.0,
    count: Annotated[int, typer.Option("--count", min=1, help="Number of systems (batch, sequence).")] = 8,
    variation: Annotated[float, typer.Option("--variation", parser=Number(float, 0.0), help="Shift change between systems (batch).")] = 0.05,
    family: Annotated[Family, typer.Option("--family", help="PDE family (sequence): darcy (SPD), convdiff "
                                           "(nonsymmetric), helmholtz (complex, indefinite); see matcli.sequences.")] = Family.darcy,
    seed: SeedOpt = 0,
    max_memory: MaxMemoryOpt = None,
    force: ForceOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Write a deterministic test problem (given --seed) to HDF5, or its matrix alone to .mtx.

    regression and lowrank problems are built and written block by block (``gallery.TiledProblem``:
    the same values whatever the block size), to HDF5 or to a Zarr store when the output ends in .zarr.
    A sequence (``--family``, ``--n`` grid points per axis, ``--count`` systems) is written one system
    at a time to HDF5, in the layout ``solve --batch FILE.h5:systems`` reads.
    """
    from matcli import gallery
    from matcli.core.errors import UsageError
    from matcli.core.memory import resolve_budget
    from matcli.core.rng import make_rng, resolve_seed
    from matcli.io.atomic import atomic_write
    from matcli.io.guard import InputPolicy, check_allocation, input_policy
    from matcli.io.output_policy import STDOUT, Target, check_targets
    from matcli.io.writers import output_format, single_matrix, write_mtx_file, write_mtx_stdout

    fmt = "zarr" if out.lower().rstrip("/").endswith(".zarr") else output_format(out)
    if fmt == "zarr":
        from matcli.io.atomic_store import check_store_target

        if kind not in TILED:
            raise UsageError(f"{out}: only regression and lowrank problems are written as Zarr stores; "
                             "use an .h5 output")
        check_store_target("-o", out, force, [])
    else:
        check_targets([Target("-o", out, "MatrixMarket")], [], force)
    if kind in (Kind.lowrank, Kind.completion) and rank > min(rows, cols):
        raise UsageError(f"--rank {rank}: a {kind.value} problem of {rows} x {cols} has rank at most {min(rows, cols)}")
    if kind is Kind.regression and rows < cols:
        raise UsageError("regression needs --rows >= --cols (a tall matrix)")
    if kind is Kind.regression and heavy_rows > rows:
        raise UsageError(f"--heavy-rows {heavy_rows}: a regression problem of {rows} rows has at most "
                         f"{rows} heavy rows")
    if kind is Kind.sequence and fmt != "hdf5":
        raise UsageError(f"{out}: a sequence of systems is written to HDF5; use an .h5 output")
    budget = resolve_budget(max_memory)
    blockwise = kind in TILED and fmt in ("hdf5", "zarr")
    widths = [cols, 1] if kind is Kind.regression else [cols, rank]
    block_rows = gallery.tile_block_rows(cols, budget)
    with input_policy(InputPolicy(max_memory=budget)):
        if kind is Kind.sequence:
            from matcli.sequences import file_bytes, system_bytes

            check_allocation(f"generate sequence --family {family.value}", system_bytes(family.value, n), "one system")
            _check_disk(out, file_bytes(family.value, n, count), f"{count} {family.value} systems on a {n}x{n} grid")
        else:
            # the heavy rows are drawn without replacement: their indices and the sampler's workspace
            needed = (gallery.tiled_bytes(widths, block_rows) + 24.0 * heavy_rows if blockwise else
                      gallery.problem_bytes(kind.value, n=n, rows=rows, cols=cols, rank=rank, rate=rate, count=count))
            check_allocation(f"generate {kind.value}", needed, "the problem")
    rng = make_rng(resolve_seed(seed))
    if kind is Kind.sequence:
        from matcli.sequences import write_sequence

        with atomic_write(out, force=force) as tmp:
            write_sequence(tmp, family.value, n, count, rng, {"generator": kind.value, "seed": seed})
        if not quiet:
            typer.echo(f"wrote {out}: sequence of {count} {family.value} systems (systems)", err=True)
        return
    if blockwise:
        from matcli.io.row_writer import RowArray, write_row_blocks

        plan = _tiled(kind, rows, cols, rank, cond, heavy_rows, noise, decay, rng)
        chunk = gallery.tile_chunk_rows(cols)
        write_row_blocks(out, force=force, rows=rows,
                         arrays={name: RowArray(shape, chunk=chunk) for name, shape in plan.row_arrays.items()},
                         blocks=plan.blocks(block_rows), small=plan.small_arrays(),
                         attrs={"generator": kind.value, "seed": seed})
        if not quiet:
            names = sorted([*plan.row_arrays, *plan.small_arrays()])
            typer.echo(f"wrote {out}: {kind.value} ({', '.join(names)})", err=True)
        return
    group_attrs: dict[str, dict[str, object]] = {}
    if kind is Kind.poisson2d:
        arrays = gallery.poisson_problem((n, n), rng)
    elif kind is Kind.poisson3d:
        arrays = gallery.poisson_problem((n, n, n), rng)
    elif kind is Kind.spd:
        arrays = gallery.spd_problem(n, cond, rng)
    elif kind in TILED:
        arrays = _tiled(kind, rows, cols, rank, cond, heavy_rows, noise, decay, rng).arrays()
    elif kind is Kind.completion:
        arrays = gallery.completion_problem(rows, cols, rank, rate, noise, test_fraction, rng)
        group_attrs = {g: {"shape": [rows, cols]} for g in ("observed", "test") if f"{g}/row" in arrays}
    else:
        arrays = gallery.poisson_batch((n, n), count, variation, rng)
    comment = f"matcli generate {kind.value} seed {seed}"
    if fmt == "hdf5":
        from matcli.io.hdf5 import write_arrays

        with atomic_write(out, force=force) as tmp:
            write_arrays(tmp, arrays, {"generator": kind.value, "seed": seed}, group_attrs)
    else:
        _, matrix = single_matrix(out, arrays, f"generate {kind.value}")
        if out == STDOUT:
            write_mtx_stdout(matrix, comment)
        else:
            with atomic_write(out, force=force) as tmp:
                write_mtx_file(tmp, fmt, matrix, comment, display=out)
    names = sorted({key.split("/")[0] for key in arrays})
    if not quiet:
        typer.echo(f"wrote {out}: {kind.value} ({', '.join(names)})", err=True)


def _check_disk(out: str, nbytes: float, what: str) -> None:
    """ResourceError (exit 7) when the file would not fit the free space of ``out``'s folder."""
    import os
    import shutil

    from matcli.core.errors import ResourceError
    from matcli.core.memory import mib

    free = shutil.disk_usage(os.path.dirname(os.path.abspath(out))).free
    if nbytes > free:
        raise ResourceError(out, f"{what} would take about {mib(nbytes)} on disk, more than the {mib(free)} free "
                                 "there")
