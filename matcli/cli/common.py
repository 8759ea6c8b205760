"""Glue between a Typer command and the runner."""

from __future__ import annotations

import sys
from typing import Any

from matcli.core.errors import UsageError
from matcli.jobs.base import JobRequest


def build_request(family: str, method: str, inputs: list[str], output: str | None, *,
                  options: dict[str, Any], params: list[str] | None, seed: int | None,
                  report: str | None, force: bool, strict: bool, quiet: bool, monitor: bool,
                  threads: int | None, backend: str = "local", scheduler: str | None = None,
                  max_memory: str | None = None, allow_external_links: bool = False) -> JobRequest:
    """Freeze what a subcommand parsed into a :class:`JobRequest`, recording the command line."""
    if scheduler and backend != "dask":
        raise UsageError(f"--scheduler {scheduler} needs --backend dask")
    return JobRequest(
        family=family, method=method, inputs=tuple(inputs), output=output, options=dict(options),
        params=tuple(params or ()), seed=seed, report=report, force=force, strict=strict,
        quiet=quiet, monitor=monitor, threads=threads, backend=backend, scheduler=scheduler or None,
        max_memory=max_memory, allow_external_links=allow_external_links, command_line=tuple(sys.argv),
    )


def execute(request: JobRequest) -> None:
    """Run the job; errors propagate to :func:`matcli.cli.app.main`, which maps them to exit codes."""
    from matcli.runner import run_job

    run_job(request)
