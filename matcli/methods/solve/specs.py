"""Registered solve methods (no heavy imports here).

Each ``function`` is a setup factory in :mod:`matcli.methods.solve.solvers`:
``prepare(A, *, params, precond_name, symmetric, rng) -> Solver``; the solver's ``solve`` is the
compute phase. Every method accepts float32, float64, complex64, complex128, integer and bool
matrices and computes in float64, or complex128 when the matrix or the right-hand side is complex
(:func:`matcli.methods.solve.system.as_matrix`); the report's ``problem.compute_dtype`` says which.
"""

from matcli.core.registry import MethodSpec, ParamSpec

_SOLVERS = "matcli.methods.solve.solvers"

PRECOND_PARAMS = (
    ParamSpec("ilu_drop_tol", "float", 1e-4, "drop tolerance (--precond ilu|ic)", low=0.0, high=1.0),
    ParamSpec("ilu_fill_factor", "float", 10.0, "fill limit relative to nnz(A) (--precond ilu|ic)", low=1.0),
    ParamSpec("amg_cycle", "str", "V", "multigrid cycle (--precond amg-sa|amg-rs)", choices=("V", "W", "F")),
    ParamSpec("cheb_degree", "int", 4, "Chebyshev polynomial degree (--precond chebyshev); 0 = auto: the degree "
              "of least modelled cost per solve, from Lanczos Ritz values (reported in the setup facts)",
              low=0, high=64),
)
REFINE = ParamSpec("refine", "int", 0, "most steps of iterative refinement (as LAPACK's xGERFS: stops when the "
                   "backward error stops halving); 0 = LAPACK's 5", low=0, high=10)
BACKEND = ParamSpec("backend", "str", "auto",
                    "sparse direct library: auto (the fastest installed; problem.setup.backend_reason says why), "
                    "superlu, pardiso (pip install 'matcli[pardiso]'), cholmod (cholesky only; 'matcli[cholmod]')",
                    choices=("auto", "superlu", "pardiso", "cholmod"))
ATOL = ParamSpec("atol", "float", 1e-8,
                 "least-squares stop: ||A^H r|| <= atol ||A|| ||r||", low=0.0, high=1.0)
DAMP = ParamSpec("damp", "float", 0.0,
                 "damping: minimise ||b - A x||^2 + damp^2 ||x||^2 (0 = plain least squares)", low=0.0)
OMEGA = ParamSpec("omega", "float", 0.0,
                  "relaxation factor in (0, 2); 0 = estimate (Young's formula, or learned online in --batch)",
                  low=0.0, high=1.999)

SPECS: list[MethodSpec] = [
    MethodSpec("solve", "auto", "matcli.methods.solve.auto:choose_method",
               "choose from size, density, symmetry and a cheap definiteness test (the report says why)",
               params=(REFINE, BACKEND, ParamSpec("restart", "int", 50, "GMRES restart length if chosen", low=1),
                       *PRECOND_PARAMS)),
    MethodSpec("solve", "lu", f"{_SOLVERS}:prepare_lu",
               "LU with partial pivoting: LAPACK (dense) or SuperLU with COLAMD ordering / PARDISO (sparse)",
               params=(REFINE, BACKEND), constraints=("square",)),
    MethodSpec("solve", "cholesky", f"{_SOLVERS}:prepare_cholesky",
               "Cholesky: LAPACK (dense) or SuperLU with symmetric ordering and diagonal pivots / PARDISO / "
               "CHOLMOD (sparse)",
               params=(REFINE, BACKEND), constraints=("square", "hermitian positive definite")),
    MethodSpec("solve", "ldl", f"{_SOLVERS}:prepare_ldl",
               "LDL^T with Bunch-Kaufman pivoting (LAPACK; symmetric indefinite, dense or small sparse; "
               "PARDISO for large sparse)",
               params=(REFINE, BACKEND), constraints=("square", "symmetric/hermitian",
                                                      "order <= 5000 if sparse without PARDISO")),
    MethodSpec("solve", "cg", f"{_SOLVERS}:prepare_cg",
               "preconditioned conjugate gradients, all right-hand sides at once; detects non-SPD input",
               params=PRECOND_PARAMS, constraints=("square", "hermitian positive definite")),
    MethodSpec("solve", "block-cg", "matcli.methods.solve.block_cg_setup:prepare_block_cg",
               "block preconditioned CG (breakdown-free): the right-hand sides share one Krylov space and every "
               "product, 16 columns per block; dependent or converged columns drop out",
               params=PRECOND_PARAMS, constraints=("square", "hermitian positive definite")),
    MethodSpec("solve", "minres", f"{_SOLVERS}:prepare_minres",
               "MINRES for symmetric/Hermitian indefinite systems (SPD preconditioner)",
               params=PRECOND_PARAMS, constraints=("square", "hermitian")),
    MethodSpec("solve", "gmres", f"{_SOLVERS}:prepare_gmres",
               "restarted GMRES(m), right preconditioned, any square nonsingular matrix",
               params=(ParamSpec("restart", "int", 50, "restart length m", low=1), *PRECOND_PARAMS),
               constraints=("square",)),
    MethodSpec("solve", "bicgstab", f"{_SOLVERS}:prepare_bicgstab",
               "BiCGSTAB, right preconditioned, square nonsymmetric systems (short recurrences)",
               params=PRECOND_PARAMS, constraints=("square",)),
    MethodSpec("solve", "lstsq", "matcli.methods.solve.dense_lstsq:prepare_lstsq",
               "dense least squares / minimum norm by LAPACK gelsy (QR with column pivoting), any shape or "
               "rank, up to 25e6 entries",
               params=(ParamSpec("rcond", "float", 0.0, "rank cutoff relative to the largest; 0 = max(m, n) eps",
                                 low=0.0, high=1.0),)),
    MethodSpec("solve", "lsqr", f"{_SOLVERS}:prepare_lsqr",
               "LSQR least squares / minimum-norm solution, any shape or rank",
               params=(ATOL, DAMP)),
    MethodSpec("solve", "lsmr", f"{_SOLVERS}:prepare_lsmr",
               "LSMR least squares / minimum-norm solution (monotone ||A^H r||), any shape or rank",
               params=(ATOL, DAMP)),
    MethodSpec("solve", "sor", f"{_SOLVERS}:prepare_sor",
               "successive over-relaxation sweeps; omega estimated, or learned online across a --batch",
               params=(OMEGA,), constraints=("square", "zero-free diagonal")),
    MethodSpec("solve", "ssor", f"{_SOLVERS}:prepare_ssor",
               "symmetric SOR sweeps (forward then backward); omega as for sor",
               params=(OMEGA,), constraints=("square", "zero-free diagonal")),
]
