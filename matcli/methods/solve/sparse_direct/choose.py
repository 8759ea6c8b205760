"""Which sparse direct backends are installed, and which one ``auto`` takes.

Only the presence of a package is checked here (no import of MKL or SuiteSparse): a package that is
present but cannot load fails when it is used, as a usage error naming the extra to install.
"""

from __future__ import annotations

import importlib.util

from matcli.core.errors import UsageError

#: Backend name -> (Python package it needs, the pip extra that installs it). SuperLU comes with scipy.
BACKENDS: dict[str, tuple[str | None, str | None]] = {
    "superlu": (None, None),
    "pardiso": ("pypardiso", "pardiso"),
    "cholmod": ("sksparse.cholmod", "cholmod"),
}
#: The kinds each backend factors.
KINDS = {"superlu": ("lu", "cholesky"), "pardiso": ("lu", "cholesky", "ldl"), "cholmod": ("cholesky",)}
#: Below this many unknowns SuperLU's exact partial pivoting costs about as little as PARDISO's setup
#: (measured in benchmarks/bench_direct.py: both well under 10 ms there), so the reference keeps them.
SMALL_ORDER = 2000


def _present(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def available(name: str) -> bool:
    """Whether backend ``name``'s package is installed (SuperLU always is)."""
    if name not in BACKENDS:
        raise ValueError(f"unknown sparse direct backend {name!r}; choose one of {', '.join(BACKENDS)}")
    module = BACKENDS[name][0]
    return module is None or _present(module)


def require(name: str, kind: str) -> None:
    """UsageError (exit 2, one line) unless backend ``name`` is installed and factors ``kind``."""
    if name not in BACKENDS:
        raise UsageError(f"unknown sparse direct backend {name!r}; choose one of {', '.join(BACKENDS)}, or auto")
    if kind not in KINDS[name]:
        raise UsageError(f"the {name} backend factors {' and '.join(KINDS[name])}, not {kind}")
    if not available(name):
        module, extra = BACKENDS[name]
        raise UsageError(f"the {name} backend needs the {module.split('.')[0]} package: "
                         f"pip install 'matcli[{extra}]'")


def best_direct_backend(kind: str, n: int, nnz: int, spd: bool, *,
                        complex_values: bool = False) -> tuple[str, str]:
    """The fastest installed backend for a sparse ``kind`` factorization of an n x n matrix with ``nnz``
    entries, and why (one sentence for the report).

    Parameters
    ----------
    kind : {"lu", "cholesky", "ldl"}
    n, nnz : int
        Order and stored entries of the matrix.
    spd : bool
        The caller found A Hermitian positive definite (e.g. auto's definiteness test). CHOLMOD, which
        does nothing but Cholesky, is taken only then; for a Cholesky of a matrix not known to be
        definite PARDISO or SuperLU run, whose symmetric pivots diagnose it.
    complex_values : bool
        pypardiso is real only: complex matrices go to CHOLMOD (Cholesky) or SuperLU.

    Returns
    -------
    (name, reason)
        ``name`` in :data:`BACKENDS`, or ``"lapack"`` for ``ldl`` without PARDISO (the dense
        Bunch-Kaufman factorization, up to ``direct.LDL_DENSE_LIMIT``).

    Measured on this project's 2-core machine (benchmarks/bench_direct.py): on 3-D Poisson
    problems PARDISO's nested dissection factors in a fraction of SuperLU's time and memory, and
    CHOLMOD's supernodal Cholesky (where it builds) is faster still; on matrices below
    :data:`SMALL_ORDER` unknowns every backend takes milliseconds.
    """
    if kind not in ("lu", "cholesky", "ldl"):
        raise ValueError(f"kind must be lu, cholesky or ldl, got {kind!r}")
    size = f"{n} unknowns, {nnz} entries"
    if n < SMALL_ORDER:
        reference = "lapack" if kind == "ldl" else "superlu"
        return reference, (f"small ({size}): the reference factorization "
                           f"({'LAPACK Bunch-Kaufman' if kind == 'ldl' else 'SuperLU'}) costs milliseconds")
    if kind == "cholesky" and spd and available("cholmod"):
        return "cholmod", f"{size}, positive definite: CHOLMOD's supernodal Cholesky is the fastest installed"
    if not complex_values and available("pardiso"):
        what = {"lu": "LU", "cholesky": "Cholesky", "ldl": "LDL^T"}[kind]
        return "pardiso", f"{size}: PARDISO's nested-dissection {what} is the fastest installed"
    if kind == "ldl":
        return "lapack", (f"{size}: no sparse LDL^T installed (pip install 'matcli[pardiso]'); "
                          "dense LAPACK Bunch-Kaufman")
    why = "complex values (pypardiso is real only)" if complex_values else "PARDISO is not installed"
    return "superlu", f"{size}: SuperLU ({why})"
