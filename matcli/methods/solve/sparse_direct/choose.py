"""Which sparse direct backends are installed, and which one ``auto`` takes.

Only the presence of a package is checked here (no import of MKL or SuiteSparse): a package that is
present but cannot load fails when it is used, as a usage error naming the extra to install.
"""

from __future__ import annotations

import importlib.util

from matcli.core.errors import UsageError

#: Backend name -> (module it imports, the distribution that ships it, the pip extra that installs
#: it). SuperLU comes with scipy.
BACKENDS: dict[str, tuple[str | None, str | None, str | None]] = {
    "superlu": (None, None, None),
    "pardiso": ("pypardiso", "pypardiso", "pardiso"),
    "cholmod": ("sksparse.cholmod", "scikit-sparse", "cholmod"),
}
#: The kinds each backend factors.
KINDS = {"superlu": ("lu", "cholesky"), "pardiso": ("lu", "cholesky", "ldl"), "cholmod": ("cholesky",)}
#: From this order on a sparse LDL^T beats the dense Bunch-Kaufman, the only other one (dense: 1.3 s
#: at order 1000 and 10-14 s at 4000 against PARDISO's 0.2-0.3 s, kk_Laplace3D10 / bcsstk15).
LDL_SPARSE_ORDER = 1000
#: Below this many unknowns the reference factorization takes well under a second and PARDISO is no
#: faster once its first-call set-up (about 0.14 s more than SuperLU's per process, loading MKL) is
#: counted (benchmarks/bench_direct.py: bcsstk15 / bcsstk16, 3948 and 4884 unknowns, tie).
SMALL_ORDER = 5000
#: Fewer stored entries per row than this: a circuit-, tree- or arrow-like graph that fills little
#: under SuperLU's minimum-degree orderings, where nested dissection buys nothing (arrow, 46500
#: unknowns with 3 per row: SuperLU 2.7x faster than PARDISO; a 2-D 5-point Laplacian with 5 per row
#: and 160000 unknowns: PARDISO 1.2-1.4x faster; 3-D 7-point: 4-9x).
MIN_ROW_DENSITY = 5.0


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
        _, distribution, extra = BACKENDS[name]
        raise UsageError(f"the {name} backend needs the {distribution} package: pip install 'matcli[{extra}]'")


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
    problems PARDISO's nested dissection factors in a fraction of SuperLU's time and memory; below
    :data:`SMALL_ORDER` unknowns, or under :data:`MIN_ROW_DENSITY` entries per row, it is no faster
    (``ldl``: from :data:`LDL_SPARSE_ORDER` on, as the alternative is dense).
    CHOLMOD could not be built here (see :mod:`.cholmod`): it is preferred for positive definite
    Cholesky on the strength of the issue's measurement (0.65 s CPU against SuperLU's 2.93 s on a
    160k-unknown 2-D Poisson matrix), not of one of ours.
    """
    if kind not in ("lu", "cholesky", "ldl"):
        raise ValueError(f"kind must be lu, cholesky or ldl, got {kind!r}")
    size = f"{n} unknowns, {nnz} entries"
    if kind == "ldl":
        if n < LDL_SPARSE_ORDER:
            return "lapack", f"small ({size}): dense LAPACK Bunch-Kaufman is as fast"
        if not complex_values and available("pardiso"):
            return "pardiso", f"{size}: PARDISO's sparse LDL^T, far cheaper than a dense one"
        why = "complex values (pypardiso is real only)" if complex_values else "pip install 'matcli[pardiso]'"
        return "lapack", f"{size}: no sparse LDL^T installed ({why}); dense LAPACK Bunch-Kaufman"
    if n < SMALL_ORDER:
        return "superlu", f"small ({size}): the reference factorization (SuperLU) is as fast"
    if nnz < MIN_ROW_DENSITY * n:
        return "superlu", (f"{size}, under {MIN_ROW_DENSITY:g} per row: little fill, the reference "
                           "factorization (SuperLU) is as fast")
    if kind == "cholesky" and spd and available("cholmod"):
        return "cholmod", f"{size}, positive definite: CHOLMOD's supernodal Cholesky is the fastest installed"
    if not complex_values and available("pardiso"):
        what = "LU" if kind == "lu" else "Cholesky"
        return "pardiso", f"{size}: PARDISO's nested-dissection {what} is the fastest installed"
    why = "complex values (pypardiso is real only)" if complex_values else "PARDISO is not installed"
    return "superlu", f"{size}: SuperLU ({why})"
