"""The one module that knows every layer: request -> read -> validate -> setup -> compute -> write -> report."""

from __future__ import annotations

import contextlib
import importlib
import sys
from dataclasses import dataclass
from typing import Any

from matcli.backends import get_backend
from matcli.core.errors import NotConvergedError, OutputError, UsageError
from matcli.core.result import Callback, Result
from matcli.core.rng import make_rng, resolve_seed
from matcli.core.timing import PhaseTimer, peak_memory_bytes
from matcli.jobs.base import FamilyJob, JobRequest

JOB_MODULES = {
    "solve": "matcli.jobs.solve",
    "complete": "matcli.jobs.complete",
    "sketch": "matcli.jobs.sketch",
    "factorize": "matcli.jobs.factorize",
}


@dataclass
class JobOutcome:
    """What :func:`run_job` hands back: the kernel's result, the report dict and where output went."""

    result: Result
    report: dict[str, Any]
    output: str | None


def load_job(request: JobRequest) -> FamilyJob:
    """Instantiate the adapter ``matcli.jobs.<family>.Job`` for the request."""
    try:
        module = importlib.import_module(JOB_MODULES[request.family])
    except KeyError:
        raise UsageError(f"unknown job family {request.family!r}") from None
    return module.Job(request)


def _make_callback(request: JobRequest, history: dict[str, list[float]]) -> tuple[Callback, Any]:
    """Callback recording history, printing it under --monitor, and driving a progress display."""
    from matcli.report import Progress

    progress = Progress(enabled=not request.quiet and not request.monitor,
                        label=f"{request.family} {request.method}")

    def callback(iteration: int, **values: float) -> None:
        for key, value in values.items():
            history.setdefault(key, []).append(float(value))
        if request.monitor:
            shown = "  ".join(f"{k}={v:.6e}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items())
            print(f"iter {iteration:6d}  {shown}", file=sys.stderr, flush=True)
        progress.update(iteration, values)

    return callback, progress


def run_job(request: JobRequest) -> JobOutcome:
    """Run a job through its timed phases, write its output atomically and its report.

    Raises the :mod:`matcli.core.errors` exceptions; under ``--strict`` a negative status raises
    :class:`NotConvergedError` after the output and report are written.
    """
    from matcli.core.memory import resolve_budget
    from matcli.io.atomic import atomic_write, check_output_path
    from matcli.io.guard import InputPolicy, input_policy
    from matcli.report import build_report, emit_report, print_summary
    from matcli.threads import thread_limit

    job = load_job(request)
    if request.output:
        check_output_path(request.output, job.input_paths(), request.force)
    seed = resolve_seed(request.seed)
    rng = make_rng(seed)
    timer = PhaseTimer()
    history: dict[str, list[float]] = {}
    callback, progress = _make_callback(request, history)
    policy = InputPolicy(max_memory=resolve_budget(request.max_memory),
                         allow_external=request.allow_external_links)
    with thread_limit(request.threads) as threads, contextlib.ExitStack() as resources, input_policy(policy):
        with timer.phase("read"):
            job.read()
        with timer.phase("validate"):
            job.validate()
        with timer.phase("setup"):
            # Opened once the options are validated; workers are released when compute ends.
            job.backend = resources.enter_context(get_backend(request.backend, request.scheduler))
            job.setup(rng)
        with timer.phase("compute"), progress:
            result = job.compute(callback)
    for key, series in history.items():
        result.history.setdefault(key, series)
    extra_files: dict[str, str] = {}
    with timer.phase("write"):
        if request.output:
            attrs = _output_attrs(request, job, result, seed)
            with atomic_write(request.output) as tmp:
                write_output(tmp, request.output, result.outputs, attrs)
        extra_files = job.write_extra(result)
    report = build_report(request, job, result, seed, timer, peak_memory_bytes(), threads, extra_files)
    emit_report(request.report, report)
    if not request.quiet:
        print_summary(report)
    if request.strict and not result.status.converged:
        raise NotConvergedError(f"{request.family} {job.method}: did not converge ({result.status.reason})"
                                + (f": {result.message}" if result.message else ""))
    return JobOutcome(result, report, request.output)


def _output_attrs(request: JobRequest, job: FamilyJob, result: Result, seed: int) -> dict[str, Any]:
    from matcli import __version__

    return {
        "matcli_version": __version__,
        "family": request.family,
        "method": job.method,
        "params": job.resolved_params,
        "seed": seed,
        "status": result.status.reason,
        "status_code": int(result.status),
        "metrics": result.metrics,
    }


def write_output(tmp: str, final: str, outputs: dict[str, Any], attrs: dict[str, Any]) -> None:
    """Write ``outputs`` to ``tmp`` in the format implied by the final name (.mtx or HDF5)."""
    lowered = final.lower()
    if lowered.endswith((".mtx", ".mtx.gz")):
        if not outputs:
            raise OutputError(final, "this job produced no matrix to write")
        from matcli.io.mtx import write_mtx

        name, value = next(iter(outputs.items()))
        comment = f"matcli {attrs['family']} {attrs['method']} output '{name}' status {attrs['status']}"
        write_mtx(tmp, value, comment=comment)
        return
    from matcli.io.hdf5 import write_arrays

    write_arrays(tmp, outputs, attrs)
