"""The update's certificate against the new matrix formed densely.

``update_svd`` measures its result with two products of the old matrix (``A V_old`` or ``A^H U_old``,
reused for the new vectors through the update's own coefficients, and ``A^H U_new`` or ``A V_new``),
never forming the new matrix. Every metric is checked here against the dense new matrix and the
returned factors (numpy, independent of the kernel), on matrices that are not of low rank, so that the
residuals and errors are far above rounding and a wrong product would show.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from matcli.methods.factorize.update import update_svd


def _random(rng, shape, complex_):
    X = rng.standard_normal(shape)
    return X + 1j * rng.standard_normal(shape) if complex_ else X


def _sparse(rng, shape, complex_, seed):
    M = sp.random(*shape, density=0.3, random_state=seed, format="csr")
    if complex_:
        M = M + 1j * sp.random(*shape, density=0.3, random_state=seed + 1, format="csr")
    return M


def _reference(new, U, s, Vt, previous):
    """Dense metrics: reconstruction and previous errors, max triplet residual over s_1, ||new||_F."""
    V = Vt.conj().T
    norm = np.linalg.norm(new)
    residual = np.maximum(np.linalg.norm(new @ V - U * s, axis=0), np.linalg.norm(new.conj().T @ U - V * s, axis=0))
    return {"reconstruction_error": np.linalg.norm(new - (U * s) @ Vt) / norm,
            "previous_error": np.linalg.norm(new - previous) / norm,
            "max_triplet_residual": float(np.max(residual) / np.max(s)), "frobenius_norm": norm}


# (modification, old rank k, rank asked, appended vectors / low-rank terms q): "completed" asks for more
# triplets than the update spans (k + q), so zero triplets are added; "deficient" appends q / 2 distinct
# vectors twice and asks for k + q triplets (q / 2 completed, whose vectors reach into the appended
# part); "lowrank-wide" has a right complement wider than the rank (the certificate's unstructured branch)
CASES = {"rows": ("rows", 5, 5, 7), "cols": ("cols", 5, 6, 7), "rows-completed": ("rows", 3, 8, 2),
         "cols-completed": ("cols", 3, 8, 2), "lowrank": ("lowrank", 5, 5, 2), "lowrank-wide": ("lowrank", 4, 4, 12),
         "lowrank-completed": ("lowrank", 2, 7, 2), "rows-deficient": ("rows", 3, 7, 4),
         "cols-deficient": ("cols", 3, 7, 4)}


@pytest.mark.parametrize("complex_", [False, True], ids=["real", "complex"])
@pytest.mark.parametrize("storage", ["dense", "sparse"])
@pytest.mark.parametrize("case", list(CASES))
def test_every_metric_matches_the_dense_new_matrix(case, storage, complex_):
    rng = np.random.default_rng(list(CASES).index(case))
    side, k, rank, q = CASES[case]
    m, n = 60, 45
    A = _sparse(rng, (m, n), complex_, 10)
    U, s, Vt = np.linalg.svd(A.toarray(), full_matrices=False)
    U, s, Vt = U[:, :k], s[:k], Vt[:k]
    if side == "lowrank":
        X, Y = _random(rng, (m, q), complex_), _random(rng, (n, q), complex_)
        new, kwargs, previous = A.toarray() + X @ Y.conj().T, {"lowrank": (X, Y)}, (U * s) @ Vt
    else:
        shape = (q, n) if side == "rows" else (m, q)
        extra = _sparse(rng, shape, complex_, 20)
        if case.endswith("deficient"):  # each appended vector twice: the complement deflates to q / 2
            half = _sparse(rng, (q // 2, n) if side == "rows" else (m, q // 2), complex_, 30)
            extra = sp.vstack([half, half]).tocsr() if side == "rows" else sp.hstack([half, half]).tocsr()
        stack = np.vstack if side == "rows" else np.hstack
        new = stack([A.toarray(), extra.toarray()])
        previous = stack([(U * s) @ Vt, np.zeros(shape)])
        kwargs = {side: extra if storage == "sparse" else extra.toarray()}
    old = A if storage == "sparse" else A.toarray()
    result = update_svd(old, U=U, s=s, Vt=Vt, rank=rank, rng=rng, **kwargs)
    U_new, s_new, Vt_new = (result.outputs[key] for key in ("U", "s", "Vt"))
    assert s_new.size == rank
    completed = {"completed": rank - k - q, "deficient": q // 2}.get(case.rpartition("-")[2], 0)
    assert result.info["zero_triplets_completed"] == completed
    reference = _reference(new, U_new, s_new, Vt_new, previous)
    # errors of 0.1-1 and residuals of 1e-3-1 (A is far from rank k): the Gram expansion and the
    # reused products agree with the dense values to ~1e-14 relative; 1e-9 leaves room for cancellation
    assert min(reference.values()) > 1e-3
    for name, value in reference.items():
        assert result.metrics[name] == pytest.approx(value, rel=1e-9), name
    assert result.metrics["orthogonality_loss"] == pytest.approx(max(
        np.linalg.norm(U_new.conj().T @ U_new - np.eye(rank)), np.linalg.norm(Vt_new @ Vt_new.conj().T - np.eye(rank))),
        abs=1e-14)
