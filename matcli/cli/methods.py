"""``matcli methods``: list the registry, as each method is chosen on the command line."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

#: Subcommand of each registry family (``sketch`` is the family of ``sketch-regress``).
SUBCOMMANDS = {"solve": "solve", "complete": "complete", "sketch": "sketch-regress", "factorize": "factorize"}


def selection(family: str, name: str) -> str:
    """The options that select registered method ``name`` of ``family``, as a user types them."""
    if family == "factorize":
        kind, _, method = name.partition("-")
        return f"--kind {kind} --method {method}"
    return f"--method {name}"


def command(
    family: Annotated[Optional[str], typer.Argument(help="solve, complete, sketch-regress or factorize.")] = None,
) -> None:
    """Print every registered method with the options that select it, its summary, constraints and
    --param keys."""
    from matcli.core.errors import UsageError
    from matcli.core.registry import all_specs

    by_name = {sub: fam for fam, sub in SUBCOMMANDS.items()} | {fam: fam for fam in SUBCOMMANDS}
    if family is not None and family not in by_name:
        raise UsageError(f"unknown subcommand {family!r}; choose one of {', '.join(SUBCOMMANDS.values())}")
    wanted = by_name.get(family) if family else None
    current = None
    for spec in all_specs():
        if wanted is not None and spec.family != wanted:
            continue
        if spec.family != current:
            current = spec.family
            typer.echo(f"matcli {SUBCOMMANDS[current]}")
        constraints = f" [{', '.join(spec.constraints)}]" if spec.constraints else ""
        typer.echo(f"  {selection(spec.family, spec.name):34s} {spec.summary}{constraints}")
        for param in spec.params:
            typer.echo(f"{'':37s}--param {param.name}={param.default!r} ({param.allowed()}): {param.help}")
