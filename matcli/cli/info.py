"""``matcli info FILE``: describe a matrix or observed-entries file."""

from __future__ import annotations

from typing import Annotated

import typer

from matcli.cli.options import AllowExternalOpt, ForceOpt, MaxMemoryOpt, QuietOpt, ReportOpt, SeedOpt


def command(
    spec: Annotated[str, typer.Argument(help="Matrix file: A.mtx, A.mtx.gz, A.npy, A.npz, file.h5:/A, cells.h5ad:/X, "
                                             "ratings.tsv, or - (MatrixMarket on standard input).")],
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
    from matcli.report import emit_report
    from matcli.core.properties import describe
    from matcli.core.rng import make_rng, resolve_seed
    from matcli.io.guard import InputPolicy, input_policy
    from matcli.io.load import read_matrix, read_observed
    from matcli.io.spec import parse_spec

    parsed = parse_spec(spec)
    check_targets([Target("--report", report, "JSON")] if report else [], [parsed.path], force)
    policy = InputPolicy(max_memory=resolve_budget(max_memory), allow_external=allow_external_links)
    with input_policy(policy):
        if parsed.kind == "triplets":
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
    facts = {"file": spec, **facts}
    if report:
        emit_report(report, facts, force=force)
    if quiet or report == "-":
        return
    if as_json:
        typer.echo(json.dumps(facts, indent=2))
        return
    for key, value in facts.items():
        shown = f"{value:.4g}" if isinstance(value, float) else value
        typer.echo(f"{key:20s} {shown}")
