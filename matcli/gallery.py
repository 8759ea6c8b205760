"""Test-problem gallery used by ``matcli generate``, the tests and the benchmarks.

Every generator takes an explicit ``numpy.random.Generator`` and returns a dict of named arrays
(the HDF5 datasets ``generate`` writes). Ground truth is included where known (``x_true``,
``U_true``...), so tests can compare against it.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def poisson(shape: tuple[int, ...]) -> sp.csr_matrix:
    """Standard finite-difference Laplacian with Dirichlet boundary, order prod(shape), SPD.

    1-D stencil [-1, 2, -1] per axis, combined by Kronecker sums (5-point in 2-D, 7-point in 3-D).
    """
    mats = [sp.diags([-np.ones(n - 1), 2 * np.ones(n), -np.ones(n - 1)], [-1, 0, 1], format="csr")
            for n in shape]
    total = sp.csr_matrix((int(np.prod(shape)),) * 2)
    for axis, mat in enumerate(mats):
        left = sp.identity(int(np.prod(shape[:axis])), format="csr")
        right = sp.identity(int(np.prod(shape[axis + 1:])), format="csr")
        total = total + sp.kron(sp.kron(left, mat), right, format="csr")
    return sp.csr_matrix(total)


def poisson_problem(shape: tuple[int, ...], rng: np.random.Generator) -> dict[str, object]:
    """Poisson matrix ``A``, a random exact solution ``x_true`` and ``b = A x_true``."""
    A = poisson(shape)
    x = rng.standard_normal(A.shape[0])
    return {"A": A, "b": A @ x, "x_true": x}


def _orthonormal(rng: np.random.Generator, m: int, k: int) -> np.ndarray:
    q, r = np.linalg.qr(rng.standard_normal((m, k)))
    return q * np.sign(np.diag(r))


def spd_problem(n: int, cond: float, rng: np.random.Generator) -> dict[str, object]:
    """Dense SPD ``A = Q diag(lambda) Q^T`` with eigenvalues log-spaced in [1/cond, 1]."""
    q = _orthonormal(rng, n, n)
    lam = np.logspace(0, -np.log10(cond), n)
    A = (q * lam) @ q.T
    A = (A + A.T) / 2
    x = rng.standard_normal(n)
    return {"A": A, "b": A @ x, "x_true": x, "eigenvalues": lam}


def lowrank_problem(m: int, n: int, rank: int, noise: float, decay: float,
                    rng: np.random.Generator) -> dict[str, object]:
    """Dense ``A = U diag(s) V^T + noise * G / sqrt(max(m, n))`` with s_i = decay^i (known spectrum)."""
    U = _orthonormal(rng, m, rank)
    V = _orthonormal(rng, n, rank)
    s = decay ** np.arange(rank, dtype=float)
    A = (U * s) @ V.T
    if noise > 0:
        A = A + noise * rng.standard_normal((m, n)) / np.sqrt(max(m, n))
    return {"A": A, "U_true": U, "s_true": s, "V_true": V}


def regression_problem(m: int, n: int, cond: float, heavy_rows: int, noise: float,
                       rng: np.random.Generator) -> dict[str, object]:
    """Tall dense ``A = U diag(s) V^T`` (s log-spaced, cond(A) = cond) and ``b = A x_true + noise r``.

    ``heavy_rows`` rows are scaled up by 1e3 to make A coherent (large leverage concentrated on
    few rows, which defeats uniform row sampling). ``r`` is orthogonal to range(A) so the exact
    least-squares solution is ``x_true`` and the optimal residual norm is ``noise * ||r||``.
    """
    G = rng.standard_normal((m, n))
    if heavy_rows:
        rows = rng.choice(m, size=heavy_rows, replace=False)
        G[rows] *= 1e3
    U, _ = np.linalg.qr(G)
    V = _orthonormal(rng, n, n)
    s = np.logspace(0, -np.log10(cond), n)
    A = (U * s) @ V.T
    x = rng.standard_normal(n)
    r = rng.standard_normal(m)
    r -= U @ (U.T @ r)
    r *= noise * np.linalg.norm(A @ x) / max(np.linalg.norm(r), 1e-300)
    return {"A": A, "b": A @ x + r, "x_true": x, "optimal_residual": np.array(np.linalg.norm(r))}


def completion_problem(m: int, n: int, rank: int, rate: float, noise: float, test_fraction: float,
                       rng: np.random.Generator) -> dict[str, object]:
    """Rank-``rank`` ``M = U V^T`` (entries of unit variance), a uniform sample of ``rate * m * n``
    entries (+ Gaussian noise), split into observed and held-out test entries (COO, 0-based).
    Sampling draws positions with replacement and removes duplicates, so memory is O(|Omega|)."""
    U = rng.standard_normal((m, rank)) / rank ** 0.25
    V = rng.standard_normal((n, rank)) / rank ** 0.25
    count = int(round(rate * m * n))
    flat = np.unique(rng.integers(0, m * n, size=count, dtype=np.int64))
    rng.shuffle(flat)
    rows, cols = np.divmod(flat, n)
    values = np.einsum("ij,ij->i", U[rows], V[cols]) + noise * rng.standard_normal(flat.size)
    n_test = int(round(test_fraction * flat.size))
    out: dict[str, object] = {"U_true": U, "V_true": V}
    out["observed/row"], out["observed/col"], out["observed/value"] = rows[n_test:], cols[n_test:], values[n_test:]
    if n_test:
        out["test/row"], out["test/col"], out["test/value"] = rows[:n_test], cols[:n_test], values[:n_test]
    return out


def poisson_batch(shape: tuple[int, ...], count: int, variation: float,
                  rng: np.random.Generator) -> dict[str, object]:
    """``count`` related SPD systems with one sparsity pattern: ``A_t = L + c_t D`` where ``L`` is the
    Poisson matrix, ``D`` a fixed random positive diagonal and ``c_t`` a slowly varying shift
    (a sequence of implicit time steps). Datasets ``systems/sNNN/A`` and ``systems/sNNN/b``."""
    L = poisson(shape)
    d = sp.diags(rng.uniform(0.5, 1.5, L.shape[0]), format="csr")
    out: dict[str, object] = {}
    shifts = 1.0 + variation * np.cumsum(rng.uniform(0.0, 1.0, count))
    for t, shift in enumerate(shifts):
        A = sp.csr_matrix(L + shift * d)
        x = rng.standard_normal(L.shape[0])
        out[f"systems/s{t:03d}/A"] = A
        out[f"systems/s{t:03d}/b"] = A @ x
        out[f"systems/s{t:03d}/x_true"] = x
    return out


def problem_bytes(kind: str, *, n: int, rows: int, cols: int, rank: int, rate: float, count: int) -> float:
    """An upper estimate of the memory ``matcli generate KIND`` needs, from its options alone.

    Counts the arrays written and the temporaries of their construction (about three times the
    stored sparse matrices, twice the dense ones), so that the budget check comes before any of them.
    """
    def sparse(dim: int) -> float:
        unknowns = float(n) ** dim
        return 3 * (2 * dim + 1) * unknowns * 16 + 3 * unknowns * 8

    if kind == "poisson2d":
        return sparse(2)
    if kind == "poisson3d":
        return sparse(3)
    if kind == "spd":
        return 4.0 * n * n * 8
    if kind in ("lowrank", "regression"):
        return 2.0 * rows * cols * 8 + 2.0 * (rows + cols) * max(rank, 1) * 8
    if kind == "completion":
        return 6 * rate * rows * cols * 8 + 2.0 * (rows + cols) * rank * 8
    if kind == "batch":
        return count * sparse(2) / 3 * 2
    raise ValueError(f"unknown problem kind {kind!r}")
