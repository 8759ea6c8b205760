"""The Python API: the CLI's jobs, method choice, certificates, phases and report, for arrays or files.

Every function takes numpy arrays, scipy.sparse matrices or file specs (``"A.mtx"``, ``"f.h5:/A"``,
``"ratings.tsv"``) and keyword-only options named like the CLI flags; it builds the same
:class:`~matcli.jobs.base.JobRequest` a subcommand builds (:func:`make_request`) and runs it through
:func:`matcli.runner.run_job`, so the choice of ``auto``, the certificate that decides the status, the
memory budget and the output policy are the CLI's. Nothing is printed and nothing is written unless
``output=`` / ``report=`` name files. Errors raise the :mod:`matcli.core.errors` exceptions (their
``exit_code`` is what the CLI would exit with); a negative status raises only with ``strict=True``.

>>> import numpy as np, scipy.sparse as sp, matcli
>>> A = sp.diags([2.0, 3.0, 4.0]).tocsr()
>>> out = matcli.solve(A, np.ones(3))
>>> out.converged, out.method, np.round(out["x"], 3).tolist()
(True, 'cholesky', [0.5, 0.333, 0.25])
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from matcli.core.errors import UsageError
from matcli.jobs.base import JobRequest


@dataclass(frozen=True)
class Outcome:
    """What a run returns.

    Attributes
    ----------
    arrays : dict[str, ndarray or sparse matrix]
        The result's arrays, as ``-o`` would write them (``x``; ``U``, ``s``, ``Vt``; ``U``, ``V``, biases ...).
    method : str
        The method that ran (``auto`` resolved); ``report["method_reason"]`` says why.
    status : str
        The certified status (``converged_rtol``, ``certificate_residual``, ...).
    converged : bool
        Whether the status is positive (the certificate met what was asked).
    message : str
        One sentence on the outcome.
    metrics : dict[str, float]
        The certificate's evidence (residuals, errors, orthogonality ...).
    report : dict
        The whole JSON report (schema in :mod:`matcli.report`).
    """

    arrays: dict[str, Any]
    method: str
    status: str
    converged: bool
    message: str
    metrics: dict[str, Any] = field(default_factory=dict)
    report: dict[str, Any] = field(default_factory=dict)

    def __getitem__(self, name: str) -> Any:
        return self.arrays[name]


def make_request(family: str, method: str, inputs: Sequence[str], output: str | None, *,
                 options: Any, params: Sequence[str] | None = None, seed: int | None = None,
                 report: str | None = None, plot: str | None = None, force: bool = False, strict: bool = False,
                 quiet: bool = True, monitor: bool = False, threads: int | None = None, backend: str = "local",
                 scheduler: str | None = None, max_memory: str | None = None,
                 allow_external_links: bool = False) -> JobRequest:
    """Freeze a family's options (its :mod:`matcli.jobs.options` dataclass) and the common ones into
    a :class:`JobRequest`."""
    from matcli.jobs.options import OPTIONS

    if not isinstance(options, OPTIONS[family]):
        raise TypeError(f"{family} takes {OPTIONS[family].__name__}, not {type(options).__name__}")
    if scheduler and backend != "dask":
        raise UsageError(f"--scheduler {scheduler} needs --backend dask")
    return JobRequest(
        family=family, method=method, inputs=tuple(inputs), output=output, options=options,
        params=tuple(params or ()), seed=seed, report=report, plot=plot, force=force, strict=strict,
        quiet=quiet, monitor=monitor, threads=threads, backend=backend, scheduler=scheduler or None,
        max_memory=max_memory, allow_external_links=allow_external_links, command_line=tuple(sys.argv),
    )


def _is_array(value: Any) -> bool:
    return value is not None and not isinstance(value, str)


def _run(family: str, method: str, inputs: Sequence[tuple[str, Any]], options_type: type, options: dict[str, Any],
         common: dict[str, Any]) -> Outcome:
    """Run one job and return its Outcome.

    ``inputs`` are ``(name, array or spec)`` in the job's order; option values that are arrays
    (``rhs``, ``test``, ``update`` ...) become specs the same way. The options dataclass checks every
    value (UsageError names the flag) before anything is read.
    """
    from matcli.io.in_memory import arrays_as_inputs
    from matcli.runner import run_job

    held = {name: value for name, value in inputs if _is_array(value)}
    held.update({name: value for name, value in options.items() if _is_array(value) and name in _SPEC_OPTIONS})
    with arrays_as_inputs(held) as specs:
        typed = options_type(**{name: specs.get(name, value) if name in _SPEC_OPTIONS else value
                                for name, value in options.items()})
        request = make_request(family, method, [specs.get(name, value) for name, value in inputs],
                               common.pop("output", None), options=typed, **common)
        outcome = run_job(request)
    result = outcome.result
    return Outcome(arrays=dict(result.outputs), method=outcome.report["method"], status=result.status.reason,
                   converged=result.status.converged, message=result.message, metrics=dict(result.metrics),
                   report=outcome.report)


#: Options that name an input: an array given there is held like the positional inputs.
_SPEC_OPTIONS = frozenset({"rhs", "test", "predict", "update", "append_rows", "append_cols"})


def _common(output, report, plot, seed, params, threads, max_memory, force, strict, quiet, monitor,
            allow_external_links, backend="local", scheduler=None) -> dict[str, Any]:
    return {"output": output, "report": report, "plot": plot, "seed": seed, "params": list(params or ()),
            "threads": threads, "max_memory": max_memory, "force": force, "strict": strict, "quiet": quiet,
            "monitor": monitor, "allow_external_links": allow_external_links, "backend": backend,
            "scheduler": scheduler}


def solve(A, b=None, *, method: str = "auto", rtol: float = 1e-8, maxiter: int | None = None,
          precond: str = "auto", nrhs: int = 1, batch: bool = False, recycle: int = 0, reorder: bool = True,
          params: Sequence[str] | None = None, seed: int | None = None, output: str | None = None,
          report: str | None = None, plot: str | None = None, threads: int | None = None,
          max_memory: str | None = None, backend: str = "local", scheduler: str | None = None, force: bool = False,
          strict: bool = False, quiet: bool = True, monitor: bool = False,
          allow_external_links: bool = False) -> Outcome:
    """Solve ``A x = b`` as ``matcli solve`` does (options: :class:`~matcli.jobs.options.SolveOptions`).

    ``A`` is an array, a spec, or (``batch=True``) a list of them or one HDF5 group of systems; ``b``
    an array, a spec, ``"ones"``/``"random"`` or None (ones, or each batch group's b). Returns the
    Outcome with ``x``."""
    from matcli.jobs.options import SolveOptions

    matrices = list(A) if isinstance(A, (list, tuple)) else [A]
    names = ["A"] if len(matrices) == 1 else [f"A{k}" for k in range(len(matrices))]
    options = {"rhs": b, "nrhs": nrhs, "precond": precond, "rtol": rtol, "maxiter": maxiter, "batch": batch,
               "recycle": recycle, "reorder": reorder}
    return _run("solve", method, list(zip(names, matrices)), SolveOptions, options,
                _common(output, report, plot, seed, params, threads, max_memory, force, strict, quiet, monitor,
                        allow_external_links, backend, scheduler))


def complete(observed, *, method: str = "auto", rank: int | str = "auto", reg: float | str | None = None,
             bias: bool | None = None, validate: float = 0.0, test=None, predict=None,
             predictions_out: str | None = None, clip: tuple[float, float] | None = None,
             shape: tuple[int, int] | None = None, maxiter: int | None = None, rtol: float = 1e-4,
             params: Sequence[str] | None = None, seed: int | None = None, output: str | None = None,
             report: str | None = None, plot: str | None = None, threads: int | None = None,
             max_memory: str | None = None, backend: str = "local", scheduler: str | None = None,
             force: bool = False, strict: bool = False, quiet: bool = True, monitor: bool = False,
             allow_external_links: bool = False) -> Outcome:
    """Low-rank completion as ``matcli complete`` does (options:
    :class:`~matcli.jobs.options.CompleteOptions`). ``observed`` is a scipy.sparse matrix (its stored
    entries are the observed ones) or a spec; ``test`` and ``predict`` likewise (``predict``'s pairs
    are written to ``predictions_out``). Returns U, V, biases, ids."""
    from matcli.jobs.options import CompleteOptions

    options = {"rank": rank, "reg": reg, "bias": bias, "validate": validate, "test": test, "predict": predict,
               "predictions_out": predictions_out, "clip": clip, "shape": shape, "maxiter": maxiter, "rtol": rtol}
    return _run("complete", method, [("observed", observed)], CompleteOptions, options,
                _common(output, report, plot, seed, params, threads, max_memory, force, strict, quiet, monitor,
                        allow_external_links, backend, scheduler))


def sketch_regress(A, b, *, method: str = "auto", sketch: str = "auto", sketch_size: int | str | None = None,
                   eps: float | None = None, ridge: float | str = 0.0, rtol: float = 1e-10,
                   maxiter: int | None = None, params: Sequence[str] | None = None, seed: int | None = None,
                   output: str | None = None, report: str | None = None, plot: str | None = None,
                   threads: int | None = None, max_memory: str | None = None, backend: str = "local",
                   scheduler: str | None = None, force: bool = False, strict: bool = False, quiet: bool = True,
                   monitor: bool = False, allow_external_links: bool = False, ensemble: int = 1) -> Outcome:
    """``min ||A x - b||^2 + ridge ||x||^2`` as ``matcli sketch-regress`` does (options:
    :class:`~matcli.jobs.options.SketchOptions`; ``method`` is the mode). ``backend="dask"``: the
    workers read A in row blocks (a file spec they can reach). ``ensemble=K >= 2``: the average of K
    feature-sketched ridge solutions (:mod:`matcli.methods.sketch.ensemble`). Returns ``x``."""
    from matcli.jobs.options import SketchOptions

    options = {"sketch": sketch, "sketch_size": sketch_size, "eps": eps, "ridge": ridge, "rtol": rtol,
               "maxiter": maxiter, "ensemble": ensemble}
    return _run("sketch", method, [("A", A), ("b", b)], SketchOptions, options,
                _common(output, report, plot, seed, params, threads, max_memory, force, strict, quiet, monitor,
                        allow_external_links, backend, scheduler))


def factorize(A, *, kind: str = "svd", method: str = "auto", rank: int | str | None = None,
              tol: float | None = None, power_iters: int | None = None, oversample: int | None = None,
              maxiter: int | None = None, update=None, append_rows=None, append_cols=None, update_lowrank=None,
              params: Sequence[str] | None = None, seed: int | None = None,
              output: str | None = None, report: str | None = None, plot: str | None = None,
              threads: int | None = None, max_memory: str | None = None, backend: str = "local",
              scheduler: str | None = None, force: bool = False, strict: bool = False, quiet: bool = True,
              monitor: bool = False, allow_external_links: bool = False) -> Outcome:
    """SVD, NMF, CUR, QR, LU, Cholesky, LDL^T or eig as ``matcli factorize`` does (options:
    :class:`~matcli.jobs.options.FactorizeOptions`). ``update`` (a previous SVD's output file) with
    ``append_rows`` or ``append_cols`` updates that SVD; ``method="tsqr"`` or ``backend="dask"`` reads
    a tall A in row blocks (a file spec). ``update_lowrank`` (a pair ``(X, Y)`` of arrays or specs, or
    ``"X_spec,Y_spec"``) with ``update`` updates it to ``A + X Y^H``. Returns the factors."""
    from matcli.io.in_memory import spec_for
    from matcli.jobs.options import FactorizeOptions

    terms = []  # (name, array or spec) of X and Y: inputs of the run like update's
    if isinstance(update_lowrank, (tuple, list)):
        if len(update_lowrank) != 2:
            raise UsageError(f"update_lowrank takes a pair (X, Y), got {len(update_lowrank)} items")
        terms = [(f"update_lowrank_{name}", value) for name, value in zip("XY", update_lowrank)]
        update_lowrank = ",".join(spec_for(name) if _is_array(value) else str(value) for name, value in terms)
    elif update_lowrank is not None:
        terms = [(f"update_lowrank_{name}", value) for name, value in zip("XY", str(update_lowrank).split(","))]
    options = {"kind": kind, "rank": rank, "tol": tol, "power_iters": power_iters, "oversample": oversample,
               "maxiter": maxiter, "update": update, "append_rows": append_rows, "append_cols": append_cols,
               "update_lowrank": update_lowrank}
    extra = [(name, options[name]) for name in ("update", "append_rows", "append_cols") if options[name] is not None]
    extra += terms
    return _run("factorize", method, [("A", A), *extra], FactorizeOptions, options,
                _common(output, report, plot, seed, params, threads, max_memory, force, strict, quiet, monitor,
                        allow_external_links, backend, scheduler))


def predict(model: str, pairs: str, *, clip: tuple[float, float] | None = None, output: str | None = None,
            report: str | None = None, max_memory: str | None = None, force: bool = False, quiet: bool = True,
            allow_external_links: bool = False) -> Outcome:
    """Predictions of a saved completion model (``model.h5`` or ``file.h5:/group``) for the pairs in
    ``pairs`` (a ratings-style file or ``file.h5:/group``), as ``matcli predict`` computes them.
    Returns arrays ``row_ids``, ``col_ids`` (as given) and ``prediction``; ``output=`` also writes the
    tab-separated file (``"-"``: standard output)."""
    from matcli.jobs.options import PredictOptions

    return _run("predict", "factor-model", [("model", model), ("pairs", pairs)], PredictOptions,
                {"out": output, "clip": clip},
                _common(None, report, None, None, None, None, max_memory, force, False, quiet, False,
                        allow_external_links))


def read(spec: str, *, max_memory: str | None = None, allow_external_links: bool = False):
    """A matrix from a file spec (``.mtx[.gz]``, ``.npy``, ``.npz``, ``file.h5:/A``, ``cells.h5ad:/X``),
    with the CLI's checks and memory budget: a float64 / complex128 ndarray or CSR matrix."""
    from matcli.core.memory import resolve_budget
    from matcli.io.guard import InputPolicy, input_policy
    from matcli.io.load import read_matrix

    with input_policy(InputPolicy(max_memory=resolve_budget(max_memory), allow_external=allow_external_links)):
        return read_matrix(spec)


def write(path: str, arrays: Mapping[str, Any], *, force: bool = False) -> None:
    """Write ``arrays`` to ``path`` (HDF5; ``.mtx``/``.mtx.gz`` for one matrix) through the CLI's output
    policy: atomic, exclusive unless ``force``, never over a non-regular file."""
    from matcli.io.atomic import atomic_write
    from matcli.io.output_policy import Target, check_targets
    from matcli.io.writers import write_result

    check_targets([Target("path", path, "MatrixMarket")], [], force)
    with atomic_write(path, force=force) as tmp:
        write_result(tmp, path, dict(arrays), {}, "matcli.write")
