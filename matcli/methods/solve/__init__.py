"""Linear-system kernels for ``matcli solve``.

Modules: ``system`` (normaliser and residual metrics), ``direct`` (LU / Cholesky / LDL^T),
``krylov`` (CG, MINRES, GMRES, BiCGSTAB, LSQR, LSMR), ``stationary`` (SOR / SSOR), ``precond``
(Jacobi, ILU, IC, AMG, Chebyshev), ``spectrum`` (Lanczos and Gershgorin tests), ``auto`` (method
choice), ``batch`` (ordering, recycling, online omega), ``solvers`` (setup factories registered in
``specs``: setup once, solve many times).
"""
