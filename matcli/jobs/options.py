"""The typed options of each family: what a flag (or an API keyword) means, its range, its default.

One frozen dataclass per family. The CLI parses flags into it, the API builds it from keywords
(:mod:`matcli.api`), and the job reads its attributes (``self.request.options.rtol``), so a flag can be
followed by name from its Typer declaration to the kernel argument it sets. Every numeric field
declares its :class:`~matcli.core.ranges.Range` in the field's metadata; the CLI's parsers take the
same ranges (:func:`range_of`), and :meth:`_Options.__post_init__` checks them again for callers of the
API, raising :class:`~matcli.core.errors.UsageError` (exit 2) with the flag's name.

Options common to every family (``--seed``, ``--threads``, ``--plot``, ``--max-memory`` ...) are
fields of :class:`~matcli.jobs.base.JobRequest` itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from matcli.core.errors import UsageError
from matcli.core.ranges import MAX_DIMENSION, MAX_ITERATIONS, Range

#: Preconditioners of solve's Krylov methods (``auto`` chooses one from the matrix).
PRECONDITIONERS = ("auto", "none", "jacobi", "ilu", "ic", "amg-sa", "amg-rs", "chebyshev")
#: Sketching operators of sketch-regress.
SKETCHES = ("auto", "countsketch", "sparse-sign", "srht", "gaussian", "leverage")
#: Factorizations of factorize.
KINDS = ("svd", "nmf", "cur", "qr", "lu", "cholesky", "ldl", "eig", "rpca")

MAXITER = Range(int, 1, MAX_ITERATIONS)


def option(default: Any, flag: str, *, range: Range | None = None, choices: tuple[str, ...] = (),
           pair: bool = False) -> Any:
    """A dataclass field for the option ``flag``: its range (a pair's range applies to both
    numbers), or its allowed words."""
    return field(default=default, metadata={"flag": flag, "range": range, "choices": choices, "pair": pair})


def range_of(options: type, name: str) -> Range:
    """The declared range of ``options.name`` (for the CLI's parser)."""
    for f in fields(options):
        if f.name == name:
            return f.metadata["range"]
    raise KeyError(name)


@dataclass(frozen=True)
class _Options:
    def __post_init__(self) -> None:
        for f in fields(self):
            value, meta = getattr(self, f.name), f.metadata
            if value is None or not meta:
                continue
            if meta["choices"]:
                if value not in meta["choices"]:
                    raise UsageError(f"{meta['flag']} {value!r}: expected one of {', '.join(meta['choices'])}")
            elif meta["range"] is not None:
                object.__setattr__(self, f.name, self._checked(meta, value))

    @staticmethod
    def _checked(meta: dict, value: Any) -> Any:
        check: Range = meta["range"]
        try:
            if meta["pair"]:
                if isinstance(value, str):
                    value = value.replace("x", ",").split(",")
                parts = tuple(value)
                if len(parts) != 2:
                    raise ValueError(f"{value!r} is not two {check.noun()}s like 'a,b'")
                return tuple(check.parse(part) for part in parts)
            return check.parse(value)
        except (TypeError, ValueError) as exc:
            raise UsageError(f"{meta['flag']}: {exc}") from None


@dataclass(frozen=True)
class SolveOptions(_Options):
    """``matcli solve``: see :mod:`matcli.jobs.solve` for how each is used."""

    #: right-hand side spec (``file.h5:/b``, ``b.mtx``, ``b.npy``, ``b.txt``) or ``ones`` / ``random``;
    #: None = each batch group's ``b``, else ones
    rhs: str | None = option(None, "--rhs")
    #: columns generated for ``ones`` / ``random``
    nrhs: int = option(1, "--nrhs", range=Range(int, 1))
    precond: str = option("auto", "--precond", choices=PRECONDITIONERS)
    #: stop when ||b - A x|| <= rtol ||b|| for every column (iterative methods)
    rtol: float = option(1e-8, "--rtol", range=Range(float, 0.0, 1.0, low_open=True, high_open=True))
    #: None = the method's default (Krylov max(10 n, 100); lsqr/lsmr max(4 min(m, n), 100))
    maxiter: int | None = option(None, "--maxiter", range=MAXITER)
    #: the inputs are a sequence of systems
    batch: bool = option(False, "--batch")
    #: batch: recycled subspace dimension of Krylov methods (0 = off)
    recycle: int = option(0, "--recycle", range=Range(int, 0))
    #: batch: solve similar matrices consecutively
    reorder: bool = option(True, "--reorder")


@dataclass(frozen=True)
class CompleteOptions(_Options):
    """``matcli complete``: see :mod:`matcli.jobs.complete`."""

    rank: int | str = option("auto", "--rank", range=Range(int, 1, auto=True))
    #: None = the method's default ('auto' for most; see the job)
    reg: float | str | None = option(None, "--reg", range=Range(float, 0.0, auto=True))
    #: None = on for ratings, off otherwise
    bias: bool | None = option(None, "--bias")
    #: fraction of observed entries held out for validation
    validate: float = option(0.0, "--validate", range=Range(float, 0.0, 0.9))
    #: spec of test entries (test_rmse, test_mae)
    test: str | None = option(None, "--test")
    #: spec of (row, col) pairs to predict, written to ``predictions_out``
    predict: str | None = option(None, "--predict")
    predictions_out: str | None = option(None, "--predictions-out")
    clip: tuple[float, float] | None = option(None, "--clip", range=Range(float), pair=True)
    #: the declared id space (m, n)
    shape: tuple[int, int] | None = option(None, "--shape", range=Range(int, 1, MAX_DIMENSION), pair=True)
    maxiter: int | None = option(None, "--maxiter", range=MAXITER)
    rtol: float = option(1e-4, "--rtol", range=Range(float, 0.0, 1.0, high_open=True))


@dataclass(frozen=True)
class SketchOptions(_Options):
    """``matcli sketch-regress``: see :mod:`matcli.jobs.sketch`."""

    sketch: str = option("auto", "--sketch", choices=SKETCHES)
    #: rows of the sketch; with --ensemble >= 2 the columns q of each feature sketch, or auto (GCV)
    sketch_size: int | str | None = option(None, "--sketch-size", range=Range(int, 1, auto=True))
    eps: float | None = option(None, "--eps", range=Range(float, 0.0, 1.0, low_open=True, high_open=True))
    ridge: float | str = option(0.0, "--ridge", range=Range(float, 0.0, auto=True))
    rtol: float = option(1e-10, "--rtol", range=Range(float, 0.0, 1.0, high_open=True))
    #: None = 200 + n / 10 CGLS iterations per solve
    maxiter: int | None = option(None, "--maxiter", range=MAXITER)
    #: 1 = no ensemble (today's solve); K >= 2 = average of K feature-sketched ridge solutions
    ensemble: int = option(1, "--ensemble", range=Range(int, 1, 10000))


@dataclass(frozen=True)
class FactorizeOptions(_Options):
    """``matcli factorize``: see :mod:`matcli.jobs.factorize` for which kind takes which."""

    kind: str = option("svd", "--kind", choices=KINDS)
    rank: int | str | None = option(None, "--rank", range=Range(int, 1, auto=True))
    tol: float | None = option(None, "--tol", range=Range(float, 0.0, 1.0, high_open=True))
    power_iters: int | None = option(None, "--power-iters", range=Range(int, 0))
    oversample: int | None = option(None, "--oversample", range=Range(int, 0))
    maxiter: int | None = option(None, "--maxiter", range=MAXITER)
    #: a previous truncated SVD of the matrix to update, and what is appended to it
    update: str | None = option(None, "--update")
    append_rows: str | None = option(None, "--append-rows")
    append_cols: str | None = option(None, "--append-cols")
    #: "X_spec,Y_spec": the low-rank term X Y^H (X m x q, Y n x q) added to the matrix
    update_lowrank: str | None = option(None, "--update-lowrank")


@dataclass(frozen=True)
class PredictOptions(_Options):
    """``matcli predict``: see :mod:`matcli.jobs.predict`."""

    #: the predictions file ('-' for standard output)
    out: str | None = option(None, "--out")
    #: None = the model's own clip
    clip: tuple[float, float] | None = option(None, "--clip", range=Range(float), pair=True)


#: The options class of each family.
OPTIONS: dict[str, type[_Options]] = {"solve": SolveOptions, "complete": CompleteOptions, "sketch": SketchOptions,
                                      "factorize": FactorizeOptions, "predict": PredictOptions}
