"""``matcli run jobs.txt [--backend dask] [--report all.json]``: run a list of matcli command lines."""

from __future__ import annotations

import sys
import time
from typing import Annotated

import typer

from matcli.cli.options import Backend, BackendOpt, ForceOpt, QuietOpt, ReportOpt, SchedulerOpt

#: The first failed job's exit code is the run's (so a job list under --strict keeps its 3).
SCHEMA_VERSION = 1


def command(
    jobs: Annotated[str, typer.Argument(help="Job file: one matcli command line per line (e.g. 'solve A.mtx -o "
                                              "x.h5'), '#' comments, '\\' continuations.")],
    report: ReportOpt = None,
    backend: BackendOpt = Backend.local,
    scheduler: SchedulerOpt = None,
    force: ForceOpt = False,
    quiet: QuietOpt = False,
) -> int:
    """Run every job (in this process, in order; or as tasks on a Dask cluster); print one line per
    job and a summary; exit 0 when every job exited 0, else with the first failed job's exit code."""
    from matcli.backends import get_backend
    from matcli.cli.joblist import check_jobs, read_jobs, run_line
    from matcli.report import write_json
    from matcli.io.output_policy import Target, check_targets

    listed = read_jobs(jobs)
    check_jobs(jobs, listed, [report] if report else [])
    check_targets([Target("--report", report)], [jobs], force)
    started = time.perf_counter()
    total = len(listed)

    def say(line: str) -> None:
        if not quiet:
            print(line, file=sys.stderr, flush=True)

    def show(outcome) -> None:
        what = outcome.status or ("ok" if outcome.exit_code == 0 else "failed")
        say(f"[line {outcome.line}] exit {outcome.exit_code} {what} {outcome.seconds:.2f} s: {outcome.command}")
        if outcome.error:
            say(f"    {outcome.error}")

    outcomes = []
    with get_backend(backend.value, scheduler) as runner:
        if backend.value == "local":
            for job in listed:
                outcomes.append(run_line(job))
                show(outcomes[-1])
                if outcomes[-1].exit_code in (129, 130, 143):
                    break  # stopped by a signal: the rest does not run
        else:
            import os

            outcomes = runner.map(run_line, listed, cwd=os.getcwd())
            for outcome in outcomes:
                show(outcome)
    failed = [o for o in outcomes if o.exit_code != 0]
    seconds = time.perf_counter() - started
    say(f"matcli run: {len(outcomes) - len(failed)} of {total} jobs exited 0 in {seconds:.2f} s"
        + (f"; failed: lines {', '.join(str(o.line) for o in failed)}" if failed else ""))
    if report:
        document = {"schema_version": SCHEMA_VERSION, "job_file": jobs, "backend": backend.value, "jobs_total": total,
                    "jobs_run": len(outcomes), "jobs_failed": len(failed), "seconds": seconds,
                    "jobs": [o.as_json() for o in outcomes]}
        write_json(report, document, force=force, what="run summary")
    return failed[0].exit_code if failed else (0 if len(outcomes) == total else 130)
