"""``matcli info FILE``: describe a matrix or observed-entries file."""

from __future__ import annotations

from typing import Annotated

import typer

from matcli.cli.options import AllowExternalOpt, ForceOpt, MaxMemoryOpt, QuietOpt, ReportOpt, SeedOpt


def command(
    spec: Annotated[str, typer.Argument(help="Matrix file: A.mtx, A.mtx.gz, A.npy, A.npz, file.h5:/A, store.zarr:/A, cells.h5ad:/X, "
                                             "ratings.tsv, or - (MatrixMarket on standard input); a whole "
                                             "file.h5 lists every member and what it is to matcli.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    condition: Annotated[bool, typer.Option(
        "--condition", help="Also estimate the condition number (exact SVD up to order 2000, else a 1-norm "
                            "estimate through a sparse LU) and, for a large symmetric matrix that is not "
                            "diagonally dominant, its definiteness by ARPACK: can take minutes.")] = False,
    report: ReportOpt = None,
    quiet: QuietOpt = False,
    force: ForceOpt = False,
    seed: SeedOpt = 0,
    max_memory: MaxMemoryOpt = None,
    allow_external_links: AllowExternalOpt = False,
) -> None:
    """Shape, dtype, nnz, format, symmetry, a definiteness hint; the condition number with --condition."""
    import json

    from matcli.core.memory import resolve_budget
    from matcli.io.output_policy import Target, check_targets
    from matcli.report import write_json
    from matcli.core.properties import describe
    from matcli.core.rng import make_rng, resolve_seed
    from matcli.io.guard import InputPolicy, input_policy
    from matcli.io.load import read_matrix, read_observed
    from matcli.io.spec import parse_spec

    parsed = parse_spec(spec)
    check_targets([Target("--report", report, "JSON")] if report else [], [parsed.path], force)
    policy = InputPolicy(max_memory=resolve_budget(max_memory), allow_external=allow_external_links)
    with input_policy(policy):
        if parsed.kind in ("hdf5", "h5ad") and not parsed.internal:
            facts = _hdf5_listing(parsed.path)
        elif parsed.kind == "triplets":
            observed = read_observed(spec)
            m, n = observed.shape
            facts = {"shape": [m, n], "id_space": list(observed.id_space),
                     "compacted": [observed.row_ids.compacted, observed.col_ids.compacted],
                     "format": "ratings triplets", "observed": observed.nnz,
                     "sampling_rate": observed.nnz / (float(m) * n),
                     "value_range": [float(observed.values.min()), float(observed.values.max())]}
        else:
            facts = {"format": "mtx (standard input)" if spec == "-" else parsed.kind,
                     **describe(read_matrix(spec), make_rng(resolve_seed(seed)), condition=condition)}
    facts = {"file_spec" if "members" in facts else "file": spec, **facts}
    if report:
        write_json(report, facts, force=force, what="info report")
    if quiet or report == "-":
        return
    if as_json:
        typer.echo(json.dumps(facts, indent=2))
        return
    if "members" in facts:
        _print_listing(facts)
        return
    for key, value in facts.items():
        shown = f"{value:.4g}" if isinstance(value, float) else value
        typer.echo(f"{key:20s} {shown}")


def _hdf5_listing(path: str) -> dict:
    from matcli.io.hdf5 import open_file
    from matcli.io.hdf5_listing import list_hdf5

    with open_file(path) as fh:
        return {"format": "hdf5", **list_hdf5(path, fh)}


def _print_listing(facts: dict) -> None:
    """h5ls-like lines: path, kind with its shape, what matcli can do with it."""
    whole = facts["file"]
    if whole:
        typer.echo(f"{facts['file_spec']}: {whole['kind']} of {whole['family']} {whole.get('method') or ''} "
                   f"({whole.get('status') or 'no status'})" + (f"; {whole['use']}" if whole.get("use") else ""))
    for member in facts["members"]:
        size = member.get("shape") or ([member["systems"]] if "systems" in member else None)
        shape = "x".join(str(v) for v in size) if size else ""
        extra = ", ".join(filter(None, (shape, member.get("dtype"), f"nnz {member['nnz']}" if member.get("nnz")
                                        is not None else "", member.get("target"))))
        typer.echo(f"{member['path']:30s} {member['kind']}" + (f" ({extra})" if extra else "")
                   + (f"  -> {member['use']}" if member.get("use", "-") != "-" else ""))
    if facts.get("members_left_out"):
        typer.echo(f"... and {facts['members_left_out']} more members")
