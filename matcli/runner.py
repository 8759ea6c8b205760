"""The one module that knows every layer: request -> read -> validate -> setup -> compute -> write -> report."""

from __future__ import annotations

import contextlib
import importlib
import sys
from dataclasses import dataclass
from typing import Any

from matcli.backends import get_backend
from matcli.core.errors import NotConvergedError, UsageError
from matcli.core.result import Callback, Result
from matcli.core.rng import make_rng, resolve_seed
from matcli.core.timing import PhaseTimer, peak_memory_bytes
from matcli.io.output_policy import STDOUT, Target, check_targets
from matcli.jobs.base import FamilyJob, JobRequest
from matcli.jobs.certificate import certify

JOB_MODULES = {
    "solve": "matcli.jobs.solve",
    "complete": "matcli.jobs.complete",
    "sketch": "matcli.jobs.sketch",
    "factorize": "matcli.jobs.factorize",
    "predict": "matcli.jobs.predict",
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
    """Callback recording history, printing it under --monitor, and driving a progress display.

    Kernels call ``callback(iteration, name=value, ...)``; numeric values go to ``history[name]``,
    text values (labels) are only printed. A solver also passes ``residual_kind`` (e.g.
    ``true_rel_residual``, ``precond_rel_residual``): the --monitor line prints its ``residual``
    under that name, so the reader knows which residual it sees. A solve's iteration-0 call carries
    ``initial_residual`` (kept apart in the history, whose ``residual`` entry i stays the value after
    iteration i + 1) and is the first line printed, marked ``(initial guess)``; a solver that starts
    again (a stronger preconditioner, the next system of a batch) prints such a line again.
    """
    from matcli.report import Progress

    rtol = getattr(request.options, "rtol", None) if request.family == "solve" else None
    progress = Progress(enabled=not request.quiet and not request.monitor,
                        label=f"{request.family} {request.method}", target=rtol)

    def callback(iteration: int, **values: Any) -> None:
        kind = values.pop("residual_kind", None)
        for key, value in values.items():
            if not isinstance(value, str):
                history.setdefault(key, []).append(float(value))
        if request.monitor:
            named = {(kind if kind and key in ("residual", "initial_residual") else key): value
                     for key, value in values.items()}
            shown = "  ".join(f"{k}={v:.6e}" if isinstance(v, float) else f"{k}={v}" for k, v in named.items())
            start = "  (initial guess)" if "initial_residual" in values else ""
            print(f"iter {iteration:6d}  {shown}{start}", file=sys.stderr, flush=True)
        progress.update(iteration, values)

    return callback, progress


def run_job(request: JobRequest) -> JobOutcome:
    """Run a job through its timed phases, write its output atomically and its report.

    The status written and reported is the one :func:`matcli.jobs.certificate.certify` leaves: the
    kernel's own, unless its a-posteriori certificate misses what was asked. Raises the
    :mod:`matcli.core.errors` exceptions; under ``--strict`` a negative status raises
    :class:`NotConvergedError` after the output and report are written.
    """
    from matcli.core.memory import resolve_budget
    from matcli.io.guard import InputPolicy, input_policy
    from matcli.report import build_report, emit_report, print_summary
    from matcli.threads import thread_limit

    job = load_job(request)
    check_targets(output_targets(request, job), job.input_paths(), request.force)
    if request.plot:
        from matcli.plots import require_matplotlib

        require_matplotlib()
    _check_single_matrix(request, job)
    seed = resolve_seed(request.seed)
    rng = make_rng(seed)
    timer = PhaseTimer()
    history: dict[str, list[float]] = {}
    callback, progress = _make_callback(request, history)
    policy = InputPolicy(max_memory=resolve_budget(request.max_memory),
                         allow_external=request.allow_external_links)
    with progress, thread_limit(request.threads) as threads, contextlib.ExitStack() as resources, \
            input_policy(policy):
        with timer.phase("read"):
            progress.phase("read")
            job.read()
        with timer.phase("validate"):
            progress.phase("validate")
            job.validate()
        with timer.phase("setup"):
            progress.phase("setup")
            # Opened once the options are validated; workers are released when compute ends.
            job.backend = resources.enter_context(get_backend(request.backend, request.scheduler))
            job.backend.progress = progress.tasks
            job.setup(rng)
        progress.relabel(f"{request.family} {job.method}")
        with timer.phase("compute"):
            progress.phase("compute")
            result = certify(job, job.compute(callback))
        for key, series in history.items():
            result.history.setdefault(key, series)
        extra_files: dict[str, str] = {}
        with timer.phase("write"):
            progress.phase("write")
            if request.output:
                write_output(request, result.outputs, _output_attrs(request, job, result, seed),
                             f"{request.family} {job.method}")
            extra_files = job.write_extra(result)
            if request.plot:
                from matcli.plots import write_plot

                extra_files.update(write_plot(request.plot, request.force,
                                              lambda ax: job.draw(ax, result)))
    report = build_report(request, job, result, seed, timer, peak_memory_bytes(), threads, extra_files)
    emit_report(request.report, report, force=request.force)
    if not request.quiet:
        print_summary(report)
    if request.strict and not result.status.converged:
        raise NotConvergedError(f"{request.family} {job.method}: did not converge ({result.status.reason})"
                                + (f": {result.message}" if result.message else ""))
    return JobOutcome(result, report, request.output)


def _output_attrs(request: JobRequest, job: FamilyJob, result: Result, seed: int) -> dict[str, Any]:
    """The deterministic part of the report, as the output file's attributes: the same names and
    values (the status by name only, metrics without ``iterations``, non-finite numbers as null in
    the JSON-encoded ``params`` and ``metrics``), so that a file describes itself as its report does."""
    from matcli import __version__
    from matcli.report import jsonable, reported_metrics

    return {
        "matcli_version": __version__,
        "family": request.family,
        "method": job.method,
        "params": jsonable(job.resolved_params),
        "seed": seed,
        "status": result.status.reason,
        "converged": bool(result.status.converged),
        "iterations": int(result.iterations),
        "metrics": jsonable(reported_metrics(result)),
        **job.output_attributes(result),
    }


def output_targets(request: JobRequest, job: FamilyJob) -> list[Target]:
    """Every file the run will write: ``-o``, ``--report`` and the job's side outputs."""
    targets = [Target("-o", request.output, "MatrixMarket"), Target("--report", request.report, "JSON"),
               Target("--plot", request.plot)]
    formats = job.stdout_formats()
    targets += [Target(flag, path, formats.get(flag)) for flag, path in job.side_outputs().items()]
    return [t for t in targets if t.path]


def _check_single_matrix(request: JobRequest, job: FamilyJob) -> None:
    """Refuse a MatrixMarket ``-o`` before any work when the job knows it writes several arrays."""
    from matcli.io.writers import output_format

    names = job.output_arrays()
    if request.output and names and len(names) > 1 and output_format(request.output) != "hdf5":
        raise UsageError(f"{request.output}: a MatrixMarket file holds one matrix, but {request.family} writes "
                         f"{', '.join(names)}; use an .h5 output")


def write_output(request: JobRequest, outputs: dict[str, Any], attrs: dict[str, Any], what: str) -> None:
    """Write the result's arrays to ``-o``: atomically to a file, or MatrixMarket to standard output."""
    from matcli.io.atomic import atomic_write
    from matcli.io.writers import write_result

    if request.output == STDOUT:
        write_result(STDOUT, STDOUT, outputs, attrs, what)
        return
    with atomic_write(request.output, force=request.force) as tmp:
        write_result(tmp, request.output, outputs, attrs, what)
