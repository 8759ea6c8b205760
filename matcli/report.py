"""The JSON report (schema below), the human summary table, and the progress display.

The report is a published contract: ``matcli/report.schema.json`` (JSON Schema draft 2020-12,
shipped in the package, :data:`SCHEMA_PATH`) states every top-level key, its type and meaning;
``schema_version`` changes whenever a key changes meaning or disappears. Schema version 2::

    schema_version, matcli_version, command_line, family, method, method_requested, method_reason,
    params, seed, status {reason, converged, message}, certificate {passed, checks: [{check, value,
    limit, passed, meaning}]}, iterations, metrics {...}, problem {...},
    phases {read|validate|setup|compute|write: {wall_s, cpu_s}}, total_wall_s, peak_memory_bytes,
    threads, backend {name, workers, tasks, ...}, versions {python, numpy, scipy, ...},
    outputs {main, extra...}, history {...}, info {...}

Each fact has one place: ``iterations`` only at the top, setup facts of a solve only in
``problem.setup``. The status is named, never numbered (``reason``, PETSc-style, and ``converged``):
a number would be confused with the process's exit codes. The report is strict JSON: a number that
is not finite (inf, NaN) is written as ``null``, in values and inside numeric arrays alike; where
the cause matters a sibling says it (a certificate check's ``meaning``, the status ``message``).

``certificate`` lists the a-posteriori checks that decided the status
(:mod:`matcli.jobs.certificate`); a positive kernel status whose certificate fails becomes the
negative ``certificate_*`` status of the first failed check.

``backend`` describes where independent tasks ran (see :mod:`matcli.backends`): ``local``, or
``dask`` with ``cluster`` (local | scheduler), ``address``, ``workers``, ``threads`` and ``startup_s``
(seconds of the setup phase spent starting or reaching the cluster).
"""

from __future__ import annotations

import json
import math
import platform
import sys
from pathlib import Path
from typing import Any

from matcli.core.result import Result
from matcli.core.timing import PhaseTimer
from matcli.jobs.base import FamilyJob, JobRequest

SCHEMA_VERSION = 2
#: The JSON Schema of the report, shipped as package data.
SCHEMA_PATH = Path(__file__).with_name("report.schema.json")
HISTORY_LIMIT = 10000


def _versions() -> dict[str, str]:
    import h5py
    import numpy
    import scipy

    from matcli import __version__

    versions = {"matcli": __version__, "python": platform.python_version(), "numpy": numpy.__version__,
                "scipy": scipy.__version__, "h5py": h5py.__version__}
    for name in ("pyamg", "threadpoolctl", "dask", "distributed"):
        module = sys.modules.get(name)
        if module is not None:
            versions[name] = getattr(module, "__version__", "unknown")
    return versions


def load_schema() -> dict[str, Any]:
    """The report's JSON Schema (draft 2020-12) as a dictionary."""
    return json.loads(SCHEMA_PATH.read_text())


def jsonable(value: Any) -> Any:
    """``value`` with numpy scalars/arrays as Python values and every non-finite float as None, so
    that ``json.dumps(..., allow_nan=False)`` accepts it (strict JSON: no ``Infinity``/``NaN``)."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
        return jsonable(value.tolist())
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (str, int, bool)) or value is None:
        return value
    return str(value)


def build_report(request: JobRequest, job: FamilyJob, result: Result, seed: int, timer: PhaseTimer,
                 peak_bytes: int, threads: int, extra_files: dict[str, str]) -> dict[str, Any]:
    """Assemble the report dictionary (strict JSON types only; see :data:`SCHEMA_PATH`)."""
    history = {k: v[-HISTORY_LIMIT:] for k, v in result.history.items()}
    report = {
        "schema_version": SCHEMA_VERSION,
        "matcli_version": _versions()["matcli"],
        "command_line": list(request.command_line),
        "family": request.family,
        "method": job.method,
        "method_requested": request.method,
        "method_reason": job.choice_reason,
        "params": job.resolved_params,
        "seed": seed,
        "status": {"reason": result.status.reason, "converged": result.status.converged,
                   "message": result.message},
        "certificate": result.info.get("certificate", {"passed": None, "checks": []}),
        "iterations": result.iterations,
        "metrics": reported_metrics(result),
        "problem": job.problem_info,
        "phases": timer.phases,
        "total_wall_s": timer.total_wall(),
        "peak_memory_bytes": peak_bytes,
        "threads": threads,
        "backend": job.backend.describe(),
        "versions": _versions(),
        "outputs": {"main": request.output, **extra_files},
        "history": history,
        "info": {k: v for k, v in result.info.items() if k != "certificate"},
    }
    return jsonable(report)


def reported_metrics(result: Result) -> dict[str, Any]:
    """The result's metrics without ``iterations``, which the report and the output's attributes
    give once, as the integer :attr:`Result.iterations` (kernels also keep it among their metrics)."""
    return {key: value for key, value in result.metrics.items() if key != "iterations"}


def emit_report(destination: str | None, report: dict[str, Any], *, force: bool) -> None:
    """Write a run's report (the contract of ``report.schema.json``) to ``destination`` atomically
    (replacing a file only with ``force``), or to stdout when it is ``-``."""
    write_json(destination, report, force=force)


def write_json(destination: str | None, document: dict[str, Any], *, force: bool, what: str = "report") -> None:
    """Write any JSON document (a run's report, ``info``'s facts, ``run``'s summary) to ``destination``
    atomically and exclusively unless ``force``, or to stdout for ``-``; numpy values as Python
    values, non-finite numbers as null (:func:`jsonable`)."""
    if destination is None:
        return
    text = json.dumps(jsonable(document), indent=2, sort_keys=False, allow_nan=False) + "\n"
    if destination == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    from matcli.core.errors import OutputError
    from matcli.io.atomic import atomic_write

    with atomic_write(destination, force=force) as tmp:
        try:
            with open(tmp, "w") as fh:
                fh.write(text)
        except OSError as exc:
            raise OutputError(destination, f"cannot write {what} ({exc.strerror})") from None


def _fmt(value: Any, key: str = "") -> str:
    """A metric for the summary table; ratios close to 1 as ``1 + 2.3e-11`` (4 digits would show 1)."""
    if value is None:
        return "not finite"
    if isinstance(value, float):
        if "ratio" in key and value != 1.0 and abs(value - 1.0) < 1e-3:
            return f"1 {'+' if value > 1.0 else '-'} {abs(value - 1.0):.2g}"
        return f"{value:.4g}"
    return str(value)


def print_summary(report: dict[str, Any]) -> None:
    """Rich table on stderr: method, status, iterations, metrics, phase times, memory."""
    from rich.console import Console
    from rich.table import Table

    console = Console(stderr=True)
    table = Table(title=f"matcli {report['family']}", show_header=False, box=None)
    table.add_column(style="bold")
    table.add_column()
    method = report["method"]
    if report["method_requested"] != method:
        method = f"{method} (from {report['method_requested']})"
    table.add_row("method", method)
    if report["method_reason"]:
        table.add_row("why", report["method_reason"])
    status = report["status"]
    color = "green" if status["converged"] else "red"
    table.add_row("status", f"[{color}]{status['reason']}[/{color}]")
    if status["message"]:
        table.add_row("message", status["message"])
    table.add_row("iterations", str(report["iterations"]))
    for key, value in report["metrics"].items():
        table.add_row(key, _fmt(value, key))
    for phase, times in report["phases"].items():
        table.add_row(f"{phase} time", f"{times['wall_s']:.3f} s wall, {times['cpu_s']:.3f} s cpu")
    backend = report["backend"]
    if backend["name"] != "local":
        table.add_row("backend", f"{backend['name']} {backend['address']}: {backend['workers']} workers, "
                                 f"{backend['tasks']} tasks")
    table.add_row("peak memory", f"{report['peak_memory_bytes'] / 2**20:.1f} MiB")
    if report["outputs"]["main"]:
        table.add_row("output", report["outputs"]["main"])
    console.print(table)


class Progress:
    """A transient rich.progress line on stderr: the phase, the elapsed time and, for iterative
    methods, the residual against its target on a log scale. Silent unless stderr is a TTY.

    ``phase(name)`` names the phase in progress, ``relabel(label)`` the resolved method (after setup),
    ``update(iteration, values)`` the latest iteration; with a ``target`` the bar shows how far the
    residual has come from its first value towards the target, in orders of magnitude.
    """

    def __init__(self, enabled: bool, label: str, target: float | None = None):
        self.enabled = enabled and sys.stderr.isatty()
        self.label = label
        self.target = target
        self._phase = ""
        self._first: float | None = None
        self._display = None
        self._task = None

    def __enter__(self) -> "Progress":
        if self.enabled:
            from rich.console import Console
            from rich.progress import BarColumn, Progress as RichProgress, SpinnerColumn, TextColumn, TimeElapsedColumn

            self._display = RichProgress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                                         TimeElapsedColumn(), TextColumn("{task.fields[detail]}"),
                                         console=Console(stderr=True), transient=True)
            self._display.__enter__()
            self._task = self._display.add_task(self.label, total=None, detail="")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._display is not None:
            self._display.__exit__(*exc)
            self._display = None

    def _refresh(self, **fields: Any) -> None:
        if self._display is not None:
            self._display.update(self._task, description=f"{self.label}: {self._phase}", **fields)

    def phase(self, name: str) -> None:
        self._phase = name
        self._refresh(detail="")

    def relabel(self, label: str) -> None:
        self.label = label
        self._refresh()

    def tasks(self, done: int, total: int) -> None:
        """A parallel backend's progress: ``done`` of ``total`` tasks finished."""
        if self._display is not None:
            self._refresh(total=float(total), completed=float(done), detail=f"{done}/{total} tasks")

    def update(self, iteration: int, values: dict[str, Any]) -> None:
        if self._display is None:
            return
        residual = values.get("residual", values.get("initial_residual"))
        shown = "  ".join(f"{k}={v:.3e}" for k, v in values.items() if isinstance(v, (int, float)))
        fields: dict[str, Any] = {"detail": f"iteration {iteration}  {shown}"}
        if isinstance(residual, (int, float)) and residual > 0 and self.target:
            self._first = self._first or float(residual)
            span = math.log10(self._first / self.target) if self._first > self.target else 1.0
            done = math.log10(self._first / residual) if residual < self._first else 0.0
            fields.update(total=1.0, completed=min(max(done / span, 0.0), 1.0),
                          detail=f"iteration {iteration}  residual {residual:.2e} -> {self.target:.0e}")
        self._refresh(**fields)
