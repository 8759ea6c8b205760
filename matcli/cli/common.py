"""Glue between a Typer command and the runner."""

from __future__ import annotations

from typing import Any

from matcli.jobs.base import JobRequest


def build_request(family: str, method: str, inputs: list[str], output: str | None, **kwargs: Any) -> JobRequest:
    """Freeze what a subcommand parsed into a :class:`JobRequest` (:func:`matcli.api.make_request`,
    the one place the CLI and the Python API build their requests)."""
    from matcli.api import make_request

    return make_request(family, method, inputs, output, **kwargs)


def execute(request: JobRequest) -> None:
    """Run the job; errors propagate to :func:`matcli.cli.app.main`, which maps them to exit codes."""
    from matcli.runner import run_job

    run_job(request)
