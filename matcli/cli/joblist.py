"""``matcli run jobs.txt``: many matcli command lines in one process, or spread over a Dask cluster.

A job file holds one matcli command line per line (``solve A.mtx -o x.h5 --rtol 1e-10``; a leading
``matcli`` is allowed), with ``#`` comments, blank lines and ``\\`` continuations, in shell syntax
(:func:`shlex.split`). Every line is parsed before any job runs: an unknown subcommand, a bad flag,
``run`` inside a job list, or two jobs that write the same file is a usage error (exit 2) naming the
line, and nothing runs; so is (exit 5) a job output that exists without that job's ``--force``, or
that is one of its inputs. Each job then runs as that command line would (:func:`matcli.cli.app.run_command`):
the same output policy, report and exit code; its stderr is captured, and its one error line kept.

Locally the jobs run in order in this process (imports and start-up paid once); with
``--backend dask`` each job is a task (:func:`run_line`) on the cluster, whose workers must reach the
same files from the same working folder. Output files a job names are its own; a later job may read
what an earlier one wrote only locally (on a cluster the jobs run at the same time).
"""

from __future__ import annotations

import contextlib
import io
import os
import shlex
import time
from dataclasses import dataclass, field
from typing import Any

from matcli.core.errors import OutputError, UsageError

#: Subcommands a job may run (``run`` itself may not nest).
JOB_SUBCOMMANDS = ("solve", "complete", "predict", "sketch-regress", "factorize", "info", "generate", "methods")
#: Parameters through which a subcommand writes files.
_WRITTEN = ("out", "report", "plot", "predictions_out")


@dataclass(frozen=True)
class Job:
    """One command line of the job file: its first line number and its arguments (without ``matcli``)."""

    line: int
    argv: tuple[str, ...]

    @property
    def text(self) -> str:
        return shlex.join(self.argv)


@dataclass
class JobOutcome:
    """What one job did: its exit code, its certified status (solving subcommands), the one error
    line it printed, its seconds, and its report (as ``--report`` would write it)."""

    line: int
    command: str
    exit_code: int
    seconds: float
    status: str | None = None
    message: str = ""
    error: str = ""
    report: dict[str, Any] | None = field(default=None, repr=False)

    def as_json(self) -> dict[str, Any]:
        return {"line": self.line, "command": self.command, "exit_code": self.exit_code, "seconds": self.seconds,
                "status": self.status, "message": self.message, "error": self.error or None, "report": self.report}


def read_jobs(path: str) -> list[Job]:
    """The jobs of the file at ``path`` (see the module docstring); UsageError for an empty list or
    a line that is not a command line, InputError for an unreadable file."""
    from matcli.core.errors import InputError
    from matcli.io.guard import regular_file

    regular_file(path)
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(path, f"cannot read the job list ({exc})") from None
    jobs, pending, first = [], "", 0
    for number, raw in enumerate(text.splitlines(), start=1):
        if not pending:
            first = number
        pending += raw
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        try:
            argv = shlex.split(pending, comments=True)
        except ValueError as exc:
            raise UsageError(f"{path}: line {first}: {exc}") from None
        pending = ""
        if argv and argv[0] == "matcli":
            argv = argv[1:]
        if argv:
            jobs.append(Job(first, tuple(argv)))
    if pending:
        raise UsageError(f"{path}: line {first}: the last line ends with a continuation '\\'")
    if not jobs:
        raise UsageError(f"{path}: no command lines")
    return jobs


def check_jobs(path: str, jobs: list[Job], extra_outputs: list[str]) -> None:
    """Parse every job's flags without running it; refuse (UsageError naming the line) an unknown or
    nested subcommand, a flag its subcommand refuses, and two jobs (or the run's own report) writing
    the same file; and apply each job's output policy (an existing output without that job's
    ``--force``, an output that is one of its inputs: OutputError, exit 5), so that no job runs when
    one of them could only fail on its outputs."""
    import typer

    from matcli.cli.app import app

    group = typer.main.get_command(app)
    written: dict[str, str] = {os.path.realpath(p): "the run's --report" for p in extra_outputs if p and p != "-"}
    for job in jobs:
        name = job.argv[0]
        where = f"{path}: line {job.line}"
        if name not in JOB_SUBCOMMANDS:
            known = ", ".join(JOB_SUBCOMMANDS)
            raise UsageError(f"{where}: {name!r} is not a subcommand a job can run ({known})")
        command = group.commands[name]
        try:
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                context = command.make_context(f"matcli {name}", list(job.argv[1:]))
        except Exception as exc:  # click's usage errors (typer vendors click): one line naming the job
            text = exc.format_message() if hasattr(exc, "format_message") else str(exc)
            message = " ".join(text.split())
            raise UsageError(f"{where}: {message}") from None
        for key in _WRITTEN:
            target = context.params.get(key)
            if not target or target == "-":
                continue
            real = os.path.realpath(target)
            if real in written:
                raise UsageError(f"{where} writes {target}, which {written[real]} also writes")
            written[real] = f"line {job.line}"
        try:
            _check_outputs(context.params)
        except OutputError as exc:
            raise OutputError(path, f"line {job.line}: {exc}") from None


def _check_outputs(params: dict) -> None:
    """The output policy of one job, as its own run would apply it before any work (job outputs
    written by an earlier job of the list do not exist yet: only files present now count)."""
    from matcli.io.output_policy import Target, check_targets
    from matcli.io.spec import parse_spec

    targets = [Target(f"--{key.replace('_', '-')}" if key != "out" else "-o", params[key], "any")
               for key in _WRITTEN if params.get(key)]
    values = [v for key, value in params.items() if key not in _WRITTEN
              for v in (value if isinstance(value, (list, tuple)) else [value]) if isinstance(v, str)]
    inputs = [parse_spec(v).path for v in values if v and v != "-"]
    check_targets(targets, inputs, bool(params.get("force")))


@contextlib.contextmanager
def _working_folder(path: str):
    before = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(before)


def run_line(job: Job, *, cwd: str | None = None) -> JobOutcome:
    """Run one job as its command line would run (a task of a parallel backend, or in order here)."""
    from matcli.cli.app import run_command

    captured = io.StringIO()
    started = time.perf_counter()
    with contextlib.ExitStack() as stack:
        if cwd is not None and os.getcwd() != cwd:
            stack.enter_context(_working_folder(cwd))
        stack.enter_context(contextlib.redirect_stderr(captured))
        code, returned = run_command(list(job.argv))
    seconds = time.perf_counter() - started
    lines = [line for line in captured.getvalue().splitlines() if line.startswith("matcli")]
    outcome = JobOutcome(job.line, job.text, code, seconds, error=lines[-1] if code and lines else "")
    if returned is not None and hasattr(returned, "report"):
        outcome.status, outcome.message, outcome.report = returned.status, returned.message, returned.report
    return outcome
