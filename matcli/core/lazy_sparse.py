"""``scipy.sparse`` for the modules a small dense run passes through, imported on first use.

``from matcli.core.lazy_sparse import sp`` stands where ``import scipy.sparse as sp`` stood: any
attribute (``sp.csr_matrix``, ``sp.sparray``, ...) imports scipy.sparse and returns its attribute, so
callers are unchanged. The one exception is :meth:`_LazySparse.issparse`, which answers False without
importing scipy.sparse while it is not imported: no object can be a scipy sparse array or matrix
before scipy.sparse exists. Importing scipy.sparse costs about twice numpy's own import (through
``scipy._lib._array_api``, which star-imports numpy and so every numpy submodule, f2py and testing
included), which is most of a tiny dense solve's start-up.
"""

from __future__ import annotations

import sys
from types import ModuleType
from typing import Any


def _scipy_sparse() -> ModuleType:
    # An import statement (not a sys.modules lookup): if another thread is still importing
    # scipy.sparse, this waits for it to finish instead of seeing a half-initialized module.
    import scipy.sparse

    return scipy.sparse


class _LazySparse:
    """Stand-in for the ``scipy.sparse`` module; see the module docstring."""

    def issparse(self, x: Any) -> bool:
        """``scipy.sparse.issparse(x)``, without importing scipy.sparse when it is not imported yet."""
        if "scipy.sparse" not in sys.modules:
            return False
        return _scipy_sparse().issparse(x)

    def __getattr__(self, name: str) -> Any:
        return getattr(_scipy_sparse(), name)

    def __repr__(self) -> str:
        state = "imported" if "scipy.sparse" in sys.modules else "not imported yet"
        return f"<scipy.sparse, imported on first use ({state})>"


#: Use as ``from matcli.core.lazy_sparse import sp``.
sp = _LazySparse()
