"""``matcli predict model.h5 pairs.tsv -o predictions.tsv``: predictions of a saved completion model."""

from __future__ import annotations

from typing import Annotated, Any, Optional

import typer

from matcli.cli.options import AllowExternalOpt, ForceOpt, MaxMemoryOpt, Number, Pair, QuietOpt, ReportOpt
from matcli.jobs.options import PredictOptions, range_of


def command(
    model: Annotated[str, typer.Argument(
        help="Completion model written by 'matcli complete -o model.h5' (U, V, biases, row_ids, col_ids), "
             "or file.h5:/group holding one.")],
    pairs: Annotated[str, typer.Argument(
        help="(row, col) pairs to predict: text lines 'row col' (1-based ids as in the training file), "
             "optionally followed by a value and an integer timestamp (a ratings file works), or "
             "file.h5:/group (row, col 0-based), or a coordinate .mtx.")],
    out: Annotated[str, typer.Option(
        "--out", "-o", help="Write predictions here as tab-separated 'row col value' lines (ids as given); "
                            "'-' for standard output.")],
    clip: Annotated[Optional[str], typer.Option(
        "--clip", parser=Pair(Number(range_of(PredictOptions, "clip"))),
        help="Clip predictions to 'lo,hi' (default: the clip the model was fitted with, its 'clip' "
             "attribute; none when it has none).")] = None,
    max_memory: MaxMemoryOpt = None,
    allow_external_links: AllowExternalOpt = False,
    report: ReportOpt = None,
    force: ForceOpt = False,
    quiet: QuietOpt = False,
) -> Any:
    """Predict mu + row_bias[i] + col_bias[j] + U[i] . V[j] for each pair, mapping ids through the
    model's row_ids/col_ids as complete --predict does (an id the model has no factor row for gets
    the bias-only prediction; the report counts them)."""
    from matcli import api

    return api.predict(model, pairs, clip=clip, output=out, report=report, max_memory=max_memory, force=force, quiet=quiet,
                allow_external_links=allow_external_links)
