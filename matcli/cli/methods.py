"""``matcli methods``: list the registry."""

from __future__ import annotations

from typing import Annotated, Optional

import typer


def command(
    family: Annotated[Optional[str], typer.Argument(help="solve, complete, sketch or factorize.")] = None,
) -> None:
    """Print every registered method with its summary, constraints and --param keys."""
    from matcli.core.errors import UsageError
    from matcli.core.registry import FAMILIES, all_specs

    if family is not None and family not in FAMILIES:
        raise UsageError(f"unknown family {family!r}; choose one of {', '.join(FAMILIES)}")
    for spec in all_specs():
        if family is not None and spec.family != family:
            continue
        constraints = f" [{', '.join(spec.constraints)}]" if spec.constraints else ""
        typer.echo(f"{spec.family:10s} {spec.name:22s} {spec.summary}{constraints}")
        for param in spec.params:
            typer.echo(f"{'':33s}--param {param.name}={param.default!r} ({param.allowed()}): {param.help}")
