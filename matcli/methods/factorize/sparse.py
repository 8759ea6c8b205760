"""Sparse factorizations: SuperLU LU, Cholesky through a symmetric-mode SuperLU, ARPACK eigenpairs.

Factors are returned as ``scipy.sparse`` CSC matrices (written in the HDF5 sparse encoding) and
permutations as 0-based index vectors.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp
from scipy.sparse.linalg import ArpackError, ArpackNoConvergence, eigs, eigsh

from matcli.core.result import Callback, Result, Status, no_callback
from matcli.core.superlu import splu
from matcli.methods.factorize.counting import CountingOperator
from matcli.methods.factorize.metrics import (PROBES, eigen_metrics, factorization_residual, frobenius_norm,
                                              safe_norm)


#: Multiply-adds of the sparse product ``L U`` up to which the factorization residual is formed
#: exactly; above, it is estimated from Gaussian probes (forming ``L U`` costs as much as the
#: factorization itself).
EXACT_PRODUCT_FLOPS = 50_000_000


def _residual_metrics(diff, A) -> tuple[dict[str, float], dict[str, str]]:
    """``factorization_residual`` = ``||A - product||_F / ||A||_F`` from the sparse difference (exact),
    also under its older name ``reconstruction_error``; info says how it was obtained."""
    err, how = factorization_residual(sp.csr_matrix(diff), A)
    return {"factorization_residual": err, "reconstruction_error": err}, {"reconstruction_error_method": how}


def _product_flops(left, right) -> int:
    """Multiply-adds of the sparse product ``left @ right``: sum over k of nnz(left[:, k]) nnz(right[k, :])."""
    columns = np.diff(sp.csc_matrix(left).indptr).astype(np.int64)
    rows = np.diff(sp.csr_matrix(right).indptr).astype(np.int64)
    return int(columns @ rows)


def _estimated_residual_metrics(permuted, left, right, rng: np.random.Generator | None
                                ) -> tuple[dict[str, float], dict[str, str]]:
    """``||permuted - left right||_F / ||permuted||_F`` from ``PROBES`` Gaussian probes ``Omega``:
    ``E ||X Omega||_F^2 = PROBES ||X||_F^2`` (relative spread about ``sqrt(2 / PROBES)``)."""
    rng = np.random.default_rng(0) if rng is None else rng
    omega = rng.standard_normal((permuted.shape[1], PROBES))
    residual = safe_norm(permuted @ omega - left @ (right @ omega)) / np.sqrt(PROBES)
    norm_A = frobenius_norm(permuted)
    err = residual / norm_A if norm_A else residual
    return ({"factorization_residual": err, "reconstruction_error": err},
            {"reconstruction_error_method": f"randomized estimate ({PROBES} Gaussian probes; L U not formed)"})


def _square_csc(A) -> sp.csc_matrix:
    if A.shape[0] != A.shape[1]:
        raise ValueError(f"needs a square matrix, got {A.shape[0]}x{A.shape[1]}")
    return sp.csc_matrix(A)


def lu_sparse(A, *, ordering: str = "COLAMD", pivot_threshold: float = 1.0,
              rng: np.random.Generator | None = None, callback: Callback = no_callback) -> Result:
    """Sparse LU by SuperLU: ``A[P][:, Q] = L U``.

    Parameters
    ----------
    A : (n, n) sparse matrix or ndarray
    ordering : {"COLAMD", "MMD_AT_PLUS_A", "MMD_ATA", "NATURAL"}
        Fill-reducing column ordering.
    pivot_threshold : float
        Partial pivoting threshold in [0, 1] (1 = classical partial pivoting).

    Returns
    -------
    Result
        outputs ``L`` (unit lower triangular, CSC), ``U`` (upper triangular, CSC), ``P`` (row
        indices), ``Q`` (column indices); status ``DIVERGED_SINGULAR`` and no outputs when SuperLU
        finds an exactly singular matrix; metrics ``factorization_residual`` (exact, sparse, when
        forming ``L U`` costs at most :data:`EXACT_PRODUCT_FLOPS`, else a randomized estimate; info
        says which),
        ``fill_ratio`` = ``(nnz(L) + nnz(U)) / nnz(A)``.
    """
    M = _square_csc(A)
    try:
        factor = splu(M, permc_spec=ordering, diag_pivot_thresh=pivot_threshold)
    except RuntimeError as exc:
        return Result(status=Status.DIVERGED_SINGULAR, message=f"SuperLU failed: {exc}")
    P = np.argsort(factor.perm_r)
    Q = np.argsort(factor.perm_c)
    L, U = factor.L.tocsc(), factor.U.tocsc()
    permuted = sp.csr_matrix(M)[P][:, Q]
    if _product_flops(L, U) <= EXACT_PRODUCT_FLOPS:
        metrics, how = _residual_metrics(permuted - L @ U, permuted)
    else:
        metrics, how = _estimated_residual_metrics(permuted, L, U, rng)
    metrics["fill_ratio"] = float((L.nnz + U.nnz) / max(M.nnz, 1))
    return Result(status=Status.CONVERGED_DIRECT,
                  outputs={"L": L, "U": U, "P": P.astype(np.int64), "Q": Q.astype(np.int64)},
                  metrics=metrics, info={"ordering": ordering, "pivot_threshold": pivot_threshold, **how},
                  message=f"SuperLU with {ordering} ordering")


def cholesky_sparse(A, *, ordering: str = "MMD_AT_PLUS_A", backend: str = "superlu",
                    rng: np.random.Generator | None = None, callback: Callback = no_callback) -> Result:
    """Sparse Cholesky ``A[P][:, P] = L L^H`` of a Hermitian positive definite matrix.

    ``backend="superlu"``: SuperLU runs in symmetric mode (symmetric ``ordering`` of ``A + A^H``,
    diagonal pivots only, no threshold pivoting), which for a Hermitian matrix gives ``U = D L^H``
    with ``D = diag(U)``. The matrix is positive definite exactly when every pivot of ``D`` is real
    and positive, and then ``L diag(sqrt(D))`` is the Cholesky factor. When that factor misses
    LAPACK's backward-error ratio ``||A - L L^H||_1 / (n ||A||_1 eps) <= 30`` (xPOT01) and
    ``n <=`` :data:`DENSE_REFACTOR_ORDER`, the permuted matrix is refactored by dense potrf
    (``info["refactored"]``).

    ``backend="cholmod"`` (scikit-sparse, extra ``matcli[cholmod]``): CHOLMOD's supernodal Cholesky
    with its own ordering (AMD, or METIS where that fills less); ``ordering`` is SuperLU's and is not
    used. ``backend="auto"``: CHOLMOD where installed, else SuperLU (PARDISO does not hand out its
    factors). A named backend that is not installed is a UsageError naming the extra.

    Returns
    -------
    Result
        outputs ``L`` (lower triangular CSC, positive diagonal), ``P`` (symmetric permutation);
        status ``DIVERGED_NOT_SPD`` and no outputs when a pivot is not positive (or SuperLU had to
        leave the diagonal); metrics ``factorization_residual`` (against the full A; exact or
        estimated as for :func:`lu_sparse`),
        ``fill_ratio`` = ``nnz(L) / nnz(tril(A))``, ``pivot_ratio`` = smallest / largest pivot of D
        (the squared diagonal of L).
    """
    from matcli.core.errors import UsageError
    from matcli.methods.solve.sparse_direct import available, require

    M = _square_csc(A)
    if backend == "auto":
        backend = "cholmod" if available("cholmod") else "superlu"
    elif backend == "pardiso":
        raise UsageError("PARDISO does not hand out its factors: factorize --kind cholesky takes backend superlu "
                         "or cholmod (solve --method cholesky can use pardiso)")
    require(backend, "cholesky")
    if backend == "cholmod":
        return _cholesky_cholmod(M, rng)
    not_spd = "matrix is not positive definite; try --kind ldl (dense) or --kind lu --method sparse"
    try:
        factor = splu(M, permc_spec=ordering, diag_pivot_thresh=0.0,
                      options={"SymmetricMode": True})
    except RuntimeError as exc:
        return Result(status=Status.DIVERGED_NOT_SPD, message=f"{not_spd} (SuperLU: {exc})")
    if not np.array_equal(factor.perm_r, factor.perm_c):
        return Result(status=Status.DIVERGED_NOT_SPD, message=f"{not_spd} (a diagonal pivot was rejected)")
    d = factor.U.diagonal()
    n = M.shape[0]
    # a Hermitian matrix's pivots are real in exact arithmetic; rounding leaves imaginary parts of
    # at most ~n eps |a_jj| (the eliminated terms are bounded by a_jj for a definite matrix)
    diag = np.abs(M.diagonal())[factor.perm_c.argsort()] if np.iscomplexobj(d) else None
    complex_pivots = 0 if diag is None else int(np.sum(np.abs(d.imag) > 10 * n * np.finfo(np.float64).eps * diag))
    if complex_pivots or not np.all(np.real(d) > 0):
        negative = int(np.sum(np.real(d) <= 0))
        return Result(status=Status.DIVERGED_NOT_SPD,
                      message=f"{not_spd} ({negative} non-positive pivots, {complex_pivots} not real)")
    L = (factor.L @ sp.diags(np.sqrt(np.real(d)))).tocsc()
    P = np.argsort(factor.perm_c)
    permuted = sp.csr_matrix(M)[P][:, P]
    info = {"ordering": ordering, "backend": "superlu"}
    message = f"sparse Cholesky (SuperLU symmetric mode, {ordering} ordering)"
    if _product_flops(L, L.conj().T) > EXACT_PRODUCT_FLOPS:
        metrics, how = _estimated_residual_metrics(permuted, L, L.conj().T, rng)
        metrics.update(fill_ratio=float(L.nnz / max(sp.tril(M).nnz, 1)),
                       pivot_ratio=float(np.real(d).min() / np.real(d).max()))
        return Result(status=Status.CONVERGED_DIRECT, outputs={"L": L, "P": P.astype(np.int64)},
                      metrics=metrics, info={**info, **how}, message=message)
    diff = permuted - L @ L.conj().T
    if _ratio_1norm(diff, permuted) > POTRF_RATIO and n <= DENSE_REFACTOR_ORDER:
        # SuperLU forms L and U = D L^H by different operation orders; with tiny pivots their mismatch
        # can exceed LAPACK's xPOT01 bound (plat362: ||A - L L^T||_1 = 98 n eps ||A||_1). potrf on
        # the same permuted matrix is backward stable and keeps the symbolic fill: the entries outside
        # it are sums of exact zero products.
        dense_L = sla.cholesky(permuted.toarray(), lower=True, check_finite=False)
        L = sp.csc_matrix(dense_L)
        diff = permuted - L @ L.conj().T
        info["refactored"] = (f"SuperLU's L D L^H missed LAPACK's xPOT01 ratio {POTRF_RATIO:g}; refactored by "
                              "dense potrf on the same ordering")
        message += "; refactored by dense potrf on that ordering (SuperLU's factor was not backward stable)"
    metrics, how = _residual_metrics(diff, permuted)
    metrics.update(fill_ratio=float(L.nnz / max(sp.tril(M).nnz, 1)),
                   pivot_ratio=float(np.real(d).min() / np.real(d).max()))
    return Result(status=Status.CONVERGED_DIRECT, outputs={"L": L, "P": P.astype(np.int64)}, metrics=metrics,
                  info={**info, **how}, message=message)


def _cholesky_cholmod(M, rng: np.random.Generator | None) -> Result:
    """:func:`cholesky_sparse` by CHOLMOD: ``L L^H = M[p][:, p]``."""
    from matcli.methods.solve.sparse_direct.cholmod import factor_with_permutation

    handle, L, P, problem = factor_with_permutation(M)
    if handle is None:
        return Result(status=Status.DIVERGED_NOT_SPD,
                      message=f"matrix is not positive definite; try --kind ldl (dense) or --kind lu "
                              f"(CHOLMOD: {problem})")
    L = sp.csc_matrix(L)
    permuted = sp.csr_matrix(M)[P][:, P]
    if _product_flops(L, L.conj().T) > EXACT_PRODUCT_FLOPS:
        metrics, how = _estimated_residual_metrics(permuted, L, L.conj().T, rng)
    else:
        metrics, how = _residual_metrics(permuted - L @ L.conj().T, permuted)
    pivots = np.abs(L.diagonal()) ** 2
    metrics.update(fill_ratio=float(L.nnz / max(sp.tril(M).nnz, 1)), pivot_ratio=float(pivots.min() / pivots.max()))
    return Result(status=Status.CONVERGED_DIRECT, outputs={"L": L, "P": P.astype(np.int64)}, metrics=metrics,
                  info={"ordering": "CHOLMOD default (AMD, METIS if better)", "backend": "cholmod", **how},
                  message="sparse Cholesky (CHOLMOD, supernodal)")


#: LAPACK TESTING's bound on ``||A - L L^H||_1 / (n ||A||_1 eps)`` (xPOT01, threshold of dtest.in).
POTRF_RATIO = 30.0
#: Largest order refactored densely when SuperLU's Cholesky factor misses :data:`POTRF_RATIO`
#: (a dense 3000 x 3000 array is 72 MB).
DENSE_REFACTOR_ORDER = 3000


def _ratio_1norm(diff, A) -> float:
    """``||diff||_1 / (n ||A||_1 eps)`` for sparse ``diff`` and ``A`` (n x n); inf when ``A = 0 != diff``."""
    norm_A = float(abs(A).sum(axis=0).max()) if A.nnz else 0.0
    err = float(abs(diff).sum(axis=0).max()) if diff.nnz else 0.0
    if norm_A == 0.0:
        return 0.0 if err == 0.0 else float("inf")
    return err / (A.shape[0] * norm_A * np.finfo(np.float64).eps)


def eig_arpack_max_rank(n: int, *, hermitian: bool, complex_values: bool) -> int:
    """Most eigenpairs ARPACK returns for an n x n matrix: ``n - 1`` with the real symmetric
    driver, ``n - 2`` with the non-Hermitian one (also used by scipy for complex Hermitian input)."""
    return n - 1 if hermitian and not complex_values else n - 2


def eig_arpack(A, *, rank: int, hermitian: bool, which: str = "LM", tol: float = 0.0,
               maxiter: int | None = None, rng: np.random.Generator,
               callback: Callback = no_callback) -> Result:
    """``rank`` eigenpairs of a sparse (or dense) square matrix by ARPACK (``eigsh`` / ``eigs``).

    Parameters
    ----------
    rank : int
        Number of eigenpairs, ``1 <= rank < n`` for real symmetric ``A``, ``rank < n - 1``
        otherwise (non-Hermitian, and complex Hermitian, which scipy hands to the non-Hermitian
        driver); ValueError outside.
    hermitian : bool
        Use the symmetric Lanczos solver ``eigsh`` (real ``w``) instead of ``eigs``.
    which : {"LM", "SM", "LA", "SA", "LR", "SR"}
        Which end of the spectrum (LA/SA: Hermitian only; LR/SR: non-Hermitian only).

    Returns
    -------
    Result
        outputs ``w`` (rank), ``V`` (n x rank); metrics of
        :func:`~matcli.methods.factorize.metrics.eigen_metrics` (``max_eigen_residual`` relative to
        ``max |w|``, ``residual`` relative to ``||A||_F``, ``orthogonality_loss`` for Hermitian);
        status ``CONVERGED_HAPPY_BREAKDOWN`` for a zero matrix (``w = 0``, ``V`` the first columns
        of the identity: every vector is an eigenvector of A = 0, and ARPACK stops with error -9 as
        its first product is zero); ``DIVERGED_MAX_IT`` / ``DIVERGED_BREAKDOWN`` (no outputs) when
        ARPACK did not converge or reported an error. ``iterations`` (and ``info["vector_products"]``) is
        the number of products with A (ARPACK reports no iteration count); ``callback(products,
        products=...)`` follows it.
    """
    n = A.shape[0]
    if A.shape[0] != A.shape[1]:
        raise ValueError(f"needs a square matrix, got {A.shape[0]}x{A.shape[1]}")
    limit = eig_arpack_max_rank(n, hermitian=hermitian, complex_values=np.iscomplexobj(A))
    if not 1 <= rank <= limit:
        raise ValueError(f"ARPACK needs 1 <= rank <= {limit} for this {n}x{n} matrix, got {rank}; "
                         "use --method dense")
    if frobenius_norm(A) == 0.0:
        w = np.zeros(rank) if hermitian else np.zeros(rank, dtype=complex)
        V = np.eye(n, rank, dtype=np.result_type(A.dtype, w.dtype))
        metrics, how = eigen_metrics(A, w, V, hermitian=hermitian, norm_A=0.0)
        return Result(status=Status.CONVERGED_HAPPY_BREAKDOWN, outputs={"w": w, "V": V}, metrics=metrics,
                      info={"which": which, "hermitian": hermitian, "zero_matrix": True, **how},
                      message="the matrix is zero: its eigenvalues are 0 and every vector is an eigenvector")
    v0 = rng.standard_normal(n)
    op = CountingOperator(A, callback)
    try:
        if hermitian:
            w, V = eigsh(op, k=rank, which=which, tol=tol, maxiter=maxiter, v0=v0)
        else:
            w, V = eigs(op, k=rank, which=which, tol=tol, maxiter=maxiter, v0=v0)
    except ArpackNoConvergence as exc:
        return Result(status=Status.DIVERGED_MAX_IT, iterations=op.products, info={"vector_products": op.products},
                      message=f"ARPACK did not converge: {exc}")
    except ArpackError as exc:
        return Result(status=Status.DIVERGED_BREAKDOWN, iterations=op.products,
                      info={"vector_products": op.products}, message=f"ARPACK failed: {exc}")
    key = {"LM": -np.abs(w), "SM": np.abs(w), "LA": -np.real(w), "SA": np.real(w),
           "LR": -np.real(w), "SR": np.real(w)}[which]
    order = np.argsort(key, kind="stable")
    w, V = w[order], V[:, order]
    metrics, how = eigen_metrics(A, w, V, hermitian=hermitian)
    return Result(status=Status.CONVERGED_RTOL, outputs={"w": w, "V": V}, metrics=metrics, iterations=op.products,
                  info={"which": which, "hermitian": hermitian, "vector_products": op.products, **how},
                  message=f"ARPACK ({'eigsh' if hermitian else 'eigs'}) found {rank} eigenpairs ({which}) "
                          f"in {op.products} products with A")
