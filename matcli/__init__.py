"""matcli: batch solvers for matrix problems, from the command line or from Python.

``import matcli`` exposes :func:`solve`, :func:`complete`, :func:`sketch_regress`, :func:`factorize`,
:func:`predict`, :func:`read` and :func:`write` (see :mod:`matcli.api`); they load on first use, so
the command line does not pay for them.
"""

__version__ = "0.1.0"

_API = ("solve", "complete", "sketch_regress", "factorize", "predict", "read", "write", "Outcome")
__all__ = ["__version__", *_API]


def __getattr__(name: str):
    if name in _API:
        from matcli import api

        return getattr(api, name)
    raise AttributeError(f"module 'matcli' has no attribute {name!r}")
