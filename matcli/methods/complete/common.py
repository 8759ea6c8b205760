"""Shared pieces of the completion kernels: indexed observed entries, per-entry products,
batched ridge half-steps, biases, spectral initialisation and the factor model.

Notation: the observed set Omega holds ``N`` entries ``(rows[e], cols[e], values[e])`` of an
``m x n`` matrix. Nothing here forms an ``m x n`` array; every operation costs ``O(N d)`` or
``O(N d^2)`` time and ``O(N + (m + n) d^2)`` memory (per-entry gathers are chunked).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from matcli.core.result import Result, Status

#: Entries processed per chunk in gathers, bounding temporary memory to CHUNK * d floats.
CHUNK = 1 << 18
#: Floats allowed in one block of stacked Gram matrices (rows_in_block * d * d).
GRAM_BLOCK_FLOATS = 1 << 23
#: Damping (pseudo-count) of the baseline bias estimates: b_i = sum(residual) / (count + damping).
BASELINE_DAMPING = 5.0


class Entries:
    """Observed entries indexed by row (CSR pattern) and by column (CSR pattern of the transpose).

    Parameters
    ----------
    rows, cols : (N,) int arrays
        0-based coordinates; duplicates count as separate observations.
    values : (N,) float array
    shape : (m, n)

    Attributes
    ----------
    row_counts, col_counts : (m,), (n,) int64
        Observations per row / column.
    """

    def __init__(self, rows: np.ndarray, cols: np.ndarray, values: np.ndarray, shape: tuple[int, int]):
        self.shape = (int(shape[0]), int(shape[1]))
        m, n = self.shape
        index_dtype = np.int32 if max(m, n, rows.size) < 2**31 - 1 else np.int64
        self.rows = np.asarray(rows, dtype=index_dtype)
        self.cols = np.asarray(cols, dtype=index_dtype)
        self.values = np.asarray(values, dtype=np.float64)
        self.nnz = int(self.values.size)
        self.row_counts = np.bincount(self.rows, minlength=m).astype(np.int64)
        self.col_counts = np.bincount(self.cols, minlength=n).astype(np.int64)
        # Stable sorts by row then by column keep each CSR row's columns in input order; scipy
        # products do not need sorted indices.
        self._row_order = np.argsort(self.rows, kind="stable").astype(index_dtype, copy=False)
        self._col_order = np.argsort(self.cols, kind="stable").astype(index_dtype, copy=False)
        self._row_indptr = np.concatenate(([0], np.cumsum(self.row_counts))).astype(index_dtype)
        self._col_indptr = np.concatenate(([0], np.cumsum(self.col_counts))).astype(index_dtype)
        self._row_indices = self.cols[self._row_order]
        self._col_indices = self.rows[self._col_order]

    def by_row(self, data: np.ndarray) -> sp.csr_matrix:
        """``m x n`` CSR matrix holding per-entry ``data`` at the observed positions."""
        return sp.csr_matrix((data[self._row_order], self._row_indices, self._row_indptr),
                             shape=self.shape, copy=False)

    def by_col(self, data: np.ndarray) -> sp.csr_matrix:
        """``n x m`` CSR matrix (the transpose pattern) holding per-entry ``data``."""
        return sp.csr_matrix((data[self._col_order], self._col_indices, self._col_indptr),
                             shape=(self.shape[1], self.shape[0]), copy=False)

    def side(self, axis: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(own index, other index, counts) for solving row factors (axis 0) or column factors (1)."""
        if axis == 0:
            return self.rows, self.cols, self.row_counts
        return self.cols, self.rows, self.col_counts

    def matrix(self, axis: int, data: np.ndarray) -> sp.csr_matrix:
        return self.by_row(data) if axis == 0 else self.by_col(data)


def entry_dots(rows: np.ndarray, cols: np.ndarray, A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """``out[e] = A[rows[e]] . B[cols[e]]`` for every entry, in chunks (sampled dense-dense product).

    A is (m, d), B is (n, d); returns (N,) float64. Temporary memory is ``O(CHUNK d)``.
    """
    out = np.empty(rows.size, dtype=np.float64)
    if A.shape[1] == 0:
        out[:] = 0.0
        return out
    for start in range(0, rows.size, CHUNK):
        stop = start + CHUNK
        out[start:stop] = np.einsum("ij,ij->i", A.take(rows[start:stop], axis=0), B.take(cols[start:stop], axis=0))
    return out


@dataclass
class FactorModel:
    """``M[i, j] ~ mu + row_bias[i] + col_bias[j] + U[i] . V[j]``.

    U is (m, k), V is (n, k); biases are None (and mu 0) when not used.
    """

    #: The prediction formula, as the model files state it (attribute ``prediction_formula``).
    FORMULA = "prediction = mu + row_bias[i] + col_bias[j] + U[i] . V[j], clipped to clip when given"

    U: np.ndarray
    V: np.ndarray
    mu: float = 0.0
    row_bias: np.ndarray | None = None
    col_bias: np.ndarray | None = None

    @property
    def has_bias(self) -> bool:
        return self.row_bias is not None

    def predict(self, rows: np.ndarray, cols: np.ndarray, clip: tuple[float, float] | None = None) -> np.ndarray:
        """Predictions at (rows[e], cols[e]) (0-based, in range), optionally clipped to [lo, hi]."""
        pred = entry_dots(rows, cols, self.U, self.V)
        if self.has_bias:
            pred += self.mu + self.row_bias[rows] + self.col_bias[cols]
        if clip is not None:
            np.clip(pred, clip[0], clip[1], out=pred)
        return pred

    def predict_mapped(self, rows: np.ndarray, cols: np.ndarray,
                       clip: tuple[float, float] | None = None) -> np.ndarray:
        """Predictions at factor ``rows``/``cols`` (N,) int64 where -1 marks an id without a factor
        row: such an entry gets the bias-only prediction, ``mu`` plus the bias of the side that is
        known (0 for a model without biases), then the clipping. Returns (N,) float64; entries with
        both factor rows equal :meth:`predict`'s bit for bit."""
        known = (rows >= 0) & (cols >= 0)
        if known.all():
            return self.predict(rows, cols, clip)
        pred = np.zeros(rows.size)
        pred[known] = self.predict(rows[known], cols[known])
        if self.has_bias:
            pred[~known] = self.mu
            for side, bias in ((rows, self.row_bias), (cols, self.col_bias)):
                only = (side >= 0) & ~known
                pred[only] += bias[side[only]]
        if clip is not None:
            np.clip(pred, clip[0], clip[1], out=pred)
        return pred

    def outputs(self) -> dict[str, np.ndarray]:
        out: dict[str, object] = {"U": self.U, "V": self.V}
        if self.has_bias:
            out.update(mu=np.float64(self.mu), row_bias=self.row_bias, col_bias=self.col_bias)
        return out

    @classmethod
    def from_outputs(cls, outputs: dict) -> "FactorModel":
        if "row_bias" in outputs:
            return cls(outputs["U"], outputs["V"], float(outputs["mu"]), outputs["row_bias"], outputs["col_bias"])
        return cls(outputs["U"], outputs["V"])


def rmse(residual: np.ndarray) -> float:
    return float(np.sqrt(np.mean(residual * residual))) if residual.size else float("nan")


@dataclass(frozen=True)
class Heldout:
    """Entries held out for validation: (rows, cols, values), 0-based, inside the training shape."""

    rows: np.ndarray
    cols: np.ndarray
    values: np.ndarray


def ridge_half_step(entries: Entries, axis: int, features: np.ndarray, target: np.ndarray,
                    lam: np.ndarray, *, weights: np.ndarray | None = None, exact: bool = True,
                    x0: np.ndarray | None = None, cg_iters: int = 3) -> np.ndarray:
    """Solve the independent ridge problems of one ALS half-step, all rows at once.

    For each own index ``i`` (rows when ``axis == 0``, columns when ``axis == 1``)::

        x_i = argmin  sum_{e: own(e) = i} w_e (target_e - x . F[other(e)])^2 + lam_i ||x||^2

    Parameters
    ----------
    features : (p, d) array F of the fixed side.
    target : (N,) per-entry targets; weights : (N,) non-negative, default 1.
    lam : (q,) per-index ridge weights (> 0 keeps every system definite).
    exact : stacked ``numpy.linalg.solve`` of the (q, d, d) normal equations built
        from one sparse product with the symmetric Kronecker features (cost O(N d^2 + q d^3));
        otherwise ``cg_iters`` Jacobi-preconditioned CG iterations run on all systems
        simultaneously from ``x0`` (cost O(N d) each).

    Returns
    -------
    (q, d) array of solutions (exact up to rounding when ``exact``).
    """
    own, other, _ = entries.side(axis)
    q, d = (entries.shape[axis], features.shape[1])
    rhs = entries.matrix(axis, target if weights is None else weights * target) @ features
    w = np.ones(entries.nnz) if weights is None else weights
    if exact:
        return _exact_solve(entries, axis, features, w, lam, rhs)
    x = np.zeros((q, d)) if x0 is None else x0.copy()

    def apply(block: np.ndarray) -> np.ndarray:
        s = entry_dots(own, other, block, features)
        if weights is not None:
            s *= weights
        return entries.matrix(axis, s) @ features + lam[:, None] * block

    diag = entries.matrix(axis, w) @ (features * features) + lam[:, None]
    del w
    r = rhs - apply(x)
    z = r / diag
    p = z.copy()
    rz = np.einsum("ij,ij->i", r, z)
    for _ in range(cg_iters):
        ap = apply(p)
        pap = np.einsum("ij,ij->i", p, ap)
        alpha = np.divide(rz, pap, out=np.zeros_like(rz), where=pap > 0)
        x += alpha[:, None] * p
        r -= alpha[:, None] * ap
        z = r / diag
        rz_new = np.einsum("ij,ij->i", r, z)
        beta = np.divide(rz_new, rz, out=np.zeros_like(rz), where=rz > 0)
        p = z + beta[:, None] * p
        rz = rz_new
    return x


def _exact_solve(entries: Entries, axis: int, features: np.ndarray, w: np.ndarray, lam: np.ndarray,
                 rhs: np.ndarray) -> np.ndarray:
    q, d = rhs.shape
    iu, ju = np.triu_indices(d)
    # Row i of P_w @ K is the upper triangle of sum_e w_e F_e F_e^T, where K[j] = triu(F_j F_j^T).
    kron = features[:, iu] * features[:, ju]
    weighted = entries.matrix(axis, w)
    out = np.zeros((q, d))
    # Indices without observations have a zero right-hand side, hence a zero solution.
    active = np.flatnonzero(entries.side(axis)[2] > 0)
    block = max(1, GRAM_BLOCK_FLOATS // (d * d))
    eye = np.eye(d)
    for start in range(0, active.size, block):
        idx = active[start:start + block]
        tri = weighted[idx] @ kron
        gram = np.empty((idx.size, d, d))
        gram[:, iu, ju] = tri
        gram[:, ju, iu] = tri
        gram += lam[idx, None, None] * eye
        out[idx] = np.linalg.solve(gram, rhs[idx, :, None])[:, :, 0]
    return out


def orthonormal_basis(A: np.ndarray) -> np.ndarray:
    """Orthonormal basis of the columns of a tall (p, w) block by CholeskyQR2 (two Gram
    Cholesky passes: BLAS-3 and far faster than Householder QR for p >> w), falling back to
    Householder QR when the Gram matrix is numerically singular."""
    Q = A
    try:
        for _ in range(2):
            R = np.linalg.cholesky(Q.T @ Q).T
            Q = Q @ np.linalg.inv(R)
    except np.linalg.LinAlgError:
        return np.linalg.qr(A)[0]
    if not np.isfinite(Q).all():
        return np.linalg.qr(A)[0]
    return Q


def fit_biases(entries: Entries, values: np.ndarray, reg: float, sweeps: int = 10,
               weights: np.ndarray | None = None) -> tuple[float, np.ndarray, np.ndarray]:
    """Ridge-regularised baseline ``mu + b_i + c_j`` by alternating closed-form updates.

    ``mu`` is the (weighted) mean; each bias update is ``sum(residual) / (count + reg)``
    (a damped mean, as in Koren's baseline predictors). Returns (mu, row_bias (m,), col_bias (n,)).
    """
    m, n = entries.shape
    w = np.ones(entries.nnz) if weights is None else weights
    mu = float(np.sum(w * values) / max(np.sum(w), 1e-300))
    b = np.zeros(m)
    c = np.zeros(n)
    wr = np.bincount(entries.rows, weights=w, minlength=m) + reg
    wc = np.bincount(entries.cols, weights=w, minlength=n) + reg
    for _ in range(sweeps):
        b = np.bincount(entries.rows, weights=w * (values - mu - c[entries.cols]), minlength=m) / np.maximum(wr, 1e-300)
        c = np.bincount(entries.cols, weights=w * (values - mu - b[entries.rows]), minlength=n) / np.maximum(wc, 1e-300)
    return mu, b, c


def spectral_init(entries: Entries, residual: np.ndarray, rank: int, rng: np.random.Generator,
                  power_iters: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Balanced factors ``U sqrt(S)``, ``V sqrt(S)`` of the rank-``rank`` truncated SVD of
    ``P_Omega(residual) / p`` (p = sampling rate), computed by randomized subspace iteration.

    This is the standard spectral initialisation of alternating minimisation; it never forms a
    dense m x n matrix (only (m + n) x (rank + 8) blocks).
    """
    m, n = entries.shape
    p = max(entries.nnz / (float(m) * n), 1e-300)
    A = entries.by_row(residual / p)
    At = entries.by_col(residual / p)
    width = min(rank + 8, m, n)
    Q = orthonormal_basis(A @ rng.standard_normal((n, width)))
    for _ in range(power_iters):
        Q = orthonormal_basis(At @ Q)
        Q = orthonormal_basis(A @ Q)
    return balanced_factors(Q, At @ Q, rank, rng)


def balanced_factors(Q: np.ndarray, Bt: np.ndarray, rank: int,
                     rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``U sqrt(S)``, ``V sqrt(S)`` (m x rank, n x rank) of ``A ~ Q B`` from the orthonormal range
    basis ``Q`` (m x w) and ``Bt = A^T Q`` (n x w); columns beyond w are zero in U and small random in
    V, so ALS can grow them."""
    # B^T = At Q = Qb Rb, Rb = X diag(s) Y^T  =>  A ~ Q B = (Q Y) diag(s) (Qb X)^T.
    m, n = Q.shape[0], Bt.shape[0]
    Qb = orthonormal_basis(Bt)
    X, s, Yt = np.linalg.svd(Qb.T @ Bt)
    root = np.sqrt(s[:rank])
    U = (Q @ Yt.T[:, :rank]) * root
    V = (Qb @ X[:, :rank]) * root
    if U.shape[1] < rank:
        pad = rank - U.shape[1]
        U = np.hstack([U, np.zeros((m, pad))])
        V = np.hstack([V, 1e-3 * rng.standard_normal((n, pad))])
    return U, V


def finish(status: Status, model: FactorModel, iterations: int, metrics: dict[str, float],
           info: dict, message: str) -> Result:
    """Package a fitted model as a :class:`~matcli.core.result.Result`."""
    return Result(status=status, outputs=model.outputs(), metrics=metrics, iterations=iterations,
                  info=info, message=message)


class SweepMonitor:
    """Tracks training/validation RMSE per sweep, reports it through the callback and decides stopping.

    Stops with ``CONVERGED_ATOL`` when the training RMSE falls below ``atol``, with
    ``CONVERGED_RTOL`` when the relative decrease of the objective over one sweep is below
    ``rtol``, and with ``DIVERGED_NAN`` on non-finite values.
    """

    def __init__(self, callback, *, rtol: float, atol: float, heldout: Heldout | None,
                 clip: tuple[float, float] | None):
        self.callback = callback
        self.rtol = rtol
        self.atol = atol
        self.heldout = heldout
        self.clip = clip
        self.previous = np.inf
        self.train_rmse = np.nan
        self.val_rmse = np.nan

    def step(self, it: int, model: FactorModel, train_residual: np.ndarray, objective: float) -> Status | None:
        self.train_rmse = rmse(train_residual)
        values = {"train_rmse": self.train_rmse}
        if self.heldout is not None and self.heldout.values.size:
            pred = model.predict(self.heldout.rows, self.heldout.cols, self.clip)
            self.val_rmse = rmse(pred - self.heldout.values)
            values["val_rmse"] = self.val_rmse
        values["objective"] = objective
        self.callback(it, **values)
        if not np.isfinite(objective) or not np.isfinite(self.train_rmse):
            return Status.DIVERGED_NAN
        if self.train_rmse <= self.atol:
            return Status.CONVERGED_ATOL
        change = (self.previous - objective) / max(abs(objective), 1e-300)
        self.previous = objective
        if 0 <= change < self.rtol:
            return Status.CONVERGED_RTOL
        return None

    def metrics(self) -> dict[str, float]:
        out = {"train_rmse": float(self.train_rmse)}
        if self.heldout is not None and self.heldout.values.size:
            out["val_rmse"] = float(self.val_rmse)
        return out
