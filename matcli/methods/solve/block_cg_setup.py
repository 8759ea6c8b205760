"""Setup of ``--method block-cg``: CG's setup (an HPD preconditioner) with the block CG kernel.

The preconditioner is built exactly as for ``cg`` (:func:`matcli.methods.solve.solvers.prepare_cg`:
the same choices, parameters and fallbacks to a positive definite one); only the kernel differs
(:func:`matcli.methods.solve.block_cg.block_cg`: the columns share one Krylov space).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from matcli.methods.solve import solvers
from matcli.methods.solve.block_cg import block_cg


def prepare_block_cg(A, *, params: dict[str, Any], precond_name: str = "none", symmetric: bool = False,
                     rng: np.random.Generator | None = None) -> solvers.KrylovSolver:
    """Build the preconditioner for block CG; the solver runs :func:`~matcli.methods.solve.block_cg.block_cg`."""
    solver = solvers.prepare_cg(A, params=params, precond_name=precond_name, symmetric=symmetric, rng=rng)
    return dataclasses.replace(solver, method="block-cg", kernel=block_cg)
