"""A matrix as a scipy LinearOperator that counts its products (ARPACK and PROPACK report no iterations)."""

from __future__ import annotations

from scipy.sparse.linalg import LinearOperator

from matcli.core.result import Callback
from matcli.methods.factorize.metrics import adjoint_matmul


class CountingOperator(LinearOperator):
    """``A`` as a LinearOperator that counts products (svds offers no iteration callback)."""

    def __init__(self, A, callback: Callback):
        super().__init__(dtype=A.dtype, shape=A.shape)
        self.A = A
        self.products = 0
        self.callback = callback

    def _tick(self, columns: int) -> None:
        self.products += columns
        self.callback(self.products, products=float(self.products))

    def _matvec(self, x):
        self._tick(1)
        return self.A @ x

    def _matmat(self, X):
        self._tick(X.shape[1])
        return self.A @ X

    def _rmatvec(self, x):
        self._tick(1)
        return adjoint_matmul(self.A, x)

    def _rmatmat(self, X):
        self._tick(X.shape[1])
        return adjoint_matmul(self.A, X)

    def _adjoint(self):
        return LinearOperator(dtype=self.dtype, shape=(self.shape[1], self.shape[0]),
                              matvec=self._rmatvec, rmatvec=self._matvec,
                              matmat=self._rmatmat, rmatmat=self._matmat)
