"""V-cycles over a pyamg hierarchy for blocks of right-hand sides: every column in each product.

pyamg's Gauss-Seidel smoother updates one vector at a time, so k right-hand sides cost k sweeps that
each read the whole matrix. :class:`BlockCycle` instead smooths with l1-scaled Jacobi, which needs
nothing but sparse-matrix-times-block products: the matrix is read once per product for all k
columns (a 90000-unknown Poisson product over 100 columns costs ~4x less than 100 matrix-vector
products on this machine), and the hierarchy is held in single precision, which halves the bytes
every product moves. The outer Krylov method stays in double precision and checks the true residual,
so the precision of the cycle bounds only how much each application can improve the iterate
(about 1e-7 relative), never the accuracy of the answer; a hierarchy whose values would over- or
underflow in single precision is kept in double (:func:`single_precision_fits`).

The cycle is a symmetric operator (the same smoother before and after the coarse correction,
``R = P^H``) and positive definite for Hermitian positive definite ``A``: the smoother
``M = (3/4) diag(sum_j |a_ij|)`` satisfies ``rho(M^{-1} A) <= 4/3 < 2`` by Gershgorin's theorem on
``diag(sum_j |a_ij|)^{-1} A``, so each smoothing step is an A-norm contraction (Baker, Falgout,
Kolev and Yang, SIAM J. Sci. Comput. 33 (2011), l1 smoothers). For the 2-D Poisson matrix this is
Jacobi with the classical weight 2/3.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from matcli.core.lazy_sparse import sp
from matcli.methods.solve.system import abs_row_sums

#: Fraction of the l1 row sum used as the smoother's diagonal (4/3 = 1/0.75 bounds rho(M^-1 A)).
L1_SCALE = 0.75


@dataclass
class _Level:
    A: sp.csr_matrix
    P: sp.csr_matrix | None
    R: sp.csr_matrix | None
    inv_m: np.ndarray  # (n_level, 1): 1 / M_ii of the l1 smoother
    #: (-A, P, R) as MKL block products (:mod:`~matcli.methods.solve.sparse_blas`) when MKL takes all three
    mkl: tuple | None = None


@dataclass
class BlockCycle:
    """One V-cycle from a zero initial guess, applied to an (n, k) block at once.

    ``levels`` are finest first; ``coarse_inverse`` is the (pseudo-)inverse of the coarsest operator
    in double precision (pyamg's default coarse solver, ``pinv``, computed once).
    """

    levels: list[_Level]
    coarse_inverse: np.ndarray
    dtype: np.dtype

    def __call__(self, B: np.ndarray) -> np.ndarray:
        """``Z ~= A^{-1} B`` for an (n, k) block ``B``; ``Z`` has ``B``'s dtype and shape."""
        X = self._cycle(0, B.astype(self.dtype, order="C"))
        return X.astype(B.dtype, copy=False)

    def _cycle(self, index: int, B: np.ndarray) -> np.ndarray:
        if index == len(self.levels):
            return (self.coarse_inverse @ B).astype(self.dtype, copy=False)
        level = self.levels[index]
        if level.mkl is not None:
            return self._cycle_in_place(index, level, B)
        X = level.inv_m * B  # one smoothing step from X = 0
        residual = B - level.A @ X
        X += level.P @ self._cycle(index + 1, level.R @ residual)
        residual = level.A @ X
        np.subtract(B, residual, out=residual)
        residual *= level.inv_m
        X += residual
        return X

    def _cycle_in_place(self, index: int, level: _Level, B: np.ndarray) -> np.ndarray:
        """The same cycle with MKL's ``Y = op X + beta Y`` products: no temporaries for the residuals."""
        neg_A, P, R = level.mkl
        X = level.inv_m * B
        residual = B.copy()
        neg_A(X, out=residual, beta=1.0)  # B - A X
        P(self._cycle(index + 1, R(residual)), out=X, beta=1.0)
        np.copyto(residual, B)
        neg_A(X, out=residual, beta=1.0)
        residual *= level.inv_m
        X += residual
        return X


def block_cycle(ml, dtype=None) -> BlockCycle:
    """The :class:`BlockCycle` of a pyamg multilevel solver ``ml`` (its operators ``A``, ``P``, ``R``).

    Parameters
    ----------
    ml : pyamg ``MultilevelSolver`` with at least one level.
    dtype : precision of the cycle. None: float32 (complex64 for complex hierarchies) when
        :func:`single_precision_fits`, else float64 (complex128).
    """
    complex_levels = np.iscomplexobj(ml.levels[0].A.data)
    if dtype is None:
        single = single_precision_fits(ml)
        dtype = (np.complex64 if single else np.complex128) if complex_levels else (np.float32 if single else np.float64)
    dtype = np.dtype(dtype)
    levels = []
    for level in ml.levels[:-1]:
        A = sp.csr_matrix(level.A, dtype=dtype, copy=True)  # own index arrays: sorting must not touch pyamg's
        A.sort_indices()
        diag = level.A.diagonal()
        phase = np.where(diag == 0, 1.0, diag / np.where(diag == 0, 1.0, np.abs(diag)))
        m = L1_SCALE * abs_row_sums(sp.csr_matrix(level.A)) * phase
        inv_m = np.where(m == 0, 0.0, 1.0 / np.where(m == 0, 1.0, m)).astype(dtype)[:, None]
        P, R = sp.csr_matrix(level.P, dtype=dtype, copy=True), sp.csr_matrix(level.R, dtype=dtype, copy=True)
        levels.append(_Level(A, P, R, inv_m, _mkl_products(A, P, R)))
    return BlockCycle(levels, _coarse_inverse(ml), dtype)


def _mkl_products(A, P, R) -> tuple | None:
    """``(-A, P, R)`` as MKL block products when MKL is installed and takes all three, else None.

    MKL multiplies a CSR matrix by a row-major block about twice as fast per column as scipy (see
    :mod:`~matcli.methods.solve.sparse_blas`); the cycle's products are most of block CG's time.
    """
    from matcli.methods.solve import sparse_blas

    if not sparse_blas.available():
        return None
    neg_A = -A
    neg_A.sort_indices()
    products = tuple(sparse_blas.BlockProduct(M) for M in (neg_A, P, R))
    return products if all(product.backend == "mkl" for product in products) else None


def _coarse_inverse(ml) -> np.ndarray:
    """Pseudo-inverse of the coarsest operator in double precision (pyamg's default coarse solver,
    ``scipy.linalg.pinv``: singular values up to ``max(m, n) eps`` times the largest are cut off, not
    numpy's default ``1e-15`` times; on a nearly singular coarse operator the two differ)."""
    coarse = ml.levels[-1].A
    dense = coarse.toarray() if sp.issparse(coarse) else np.asarray(coarse)
    dense = dense.astype(np.complex128 if np.iscomplexobj(dense) else np.float64)
    return np.linalg.pinv(dense, rcond=max(dense.shape) * np.finfo(np.float64).eps)


def single_precision_fits(ml) -> bool:
    """Whether every operator of the hierarchy survives the cast to single precision: finite, and no
    nonzero below ``2^-100`` or above ``2^100`` in magnitude (far from float32's under- and overflow,
    so the products of the cycle neither overflow nor flush to zero)."""
    lo, hi = 2.0 ** -100, 2.0 ** 100
    for level in ml.levels:
        for M in (level.A, getattr(level, "P", None), getattr(level, "R", None)):
            if M is None:
                continue
            magnitude = np.abs(M.data)
            nonzero = magnitude[magnitude > 0]
            if nonzero.size and not (lo <= nonzero.min() and nonzero.max() <= hi):
                return False
    return True


def gauss_seidel_cycle(hierarchy):
    """One V-cycle from a zero initial guess with one Gauss-Seidel sweep before (forward) and after
    (backward) the coarse correction, as a function ``b (n,) -> x (n,)`` in double precision.

    pyamg's cycle with these smoothers (a symmetric operator, SPD for SPD ``A``, so CG takes it),
    calling its C++ sweep directly: no residual norms around each application, no argument checks
    per sweep, and the coarsest level solved by its pseudo-inverse computed once.

    Parameters
    ----------
    hierarchy : object with ``levels`` (finest first) carrying ``A`` (CSR, sorted indices), and ``P``,
        ``R`` on all but the last (a :class:`~matcli.methods.solve.ruge_stuben.Hierarchy`).
    """
    from matcli.methods.solve.ruge_stuben import amg_core

    sweep = amg_core("relaxation").gauss_seidel
    levels = hierarchy.levels
    coarse_inverse = _coarse_inverse(hierarchy)
    last = len(levels) - 1

    def cycle(index: int, b: np.ndarray) -> np.ndarray:
        if index == last:
            return coarse_inverse @ b
        level = levels[index]
        A, n = level.A, level.A.shape[0]
        x = np.zeros_like(b)
        sweep(A.indptr, A.indices, A.data, x, b, 0, n, 1)
        x += level.P @ cycle(index + 1, level.R @ (b - A @ x))
        sweep(A.indptr, A.indices, A.data, x, b, n - 1, -1, -1)
        return x

    return lambda b: cycle(0, np.ascontiguousarray(b, dtype=np.float64))
