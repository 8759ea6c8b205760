"""Updating a truncated SVD when rows or columns are appended (Zha & Simon 1999).

With ``A ~ U diag(s) V^H`` (rank k) and appended rows ``E`` (p x n), split ``E`` into its part in
the current right subspace and the rest, ``E = (E V) V^H + E (I - V V^H)``, and take a thin QR
``(I - V V^H) E^H = Q_E R_E``. Then exactly

    [U diag(s) V^H; E] = blkdiag(U, I_p) [[diag(s), 0], [E V, R_E^H]] [V, Q_E]^H

and the SVD of the small ``(k+p) x (k+p)`` middle matrix gives the updated factors. When many
rows are appended, ``(I - V V^H) E^H`` is replaced by its projection onto a randomized rank-``l``
basis ``Q_E`` (``complement_rank`` l; after Vecharynski & Saad 2014 and the sparse fast-updating
scheme of Deng et al. 2023), making the middle matrix ``(k+p) x (k+l)``: the sparse ``E`` enters
only through ``E V``, ``E Q_E`` and ``E^H`` times thin blocks. Appended columns are the same
update applied to ``A^H``.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp

from matcli.core.result import Callback, Result, Status, no_callback
from matcli.methods.factorize.metrics import adjoint_matmul, low_rank_error, svd_metrics
from matcli.methods.factorize.rsvd import orth_against, random_complement
from matcli.methods.factorize.signs import canonical_phases


#: The exact complement forms the dense n x p matrix ``(I - V V^H) E^H``; above this many entries
#: ``complement_rank=0`` switches to the randomized complement of :func:`default_complement_rank`.
EXACT_COMPLEMENT_ENTRIES = 25_000_000


def default_complement_rank(n: int, p: int, rank: int) -> int:
    """0 (exact) when ``n * p`` is at most :data:`EXACT_COMPLEMENT_ENTRIES`, else ``2 rank + 10``."""
    return 0 if n * p <= EXACT_COMPLEMENT_ENTRIES else min(p, 2 * rank + 10)


def append_rows_update(U: np.ndarray, s: np.ndarray, Vt: np.ndarray, E, *, rank: int, complement_rank: int = 0,
                       rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rank-``rank`` SVD of ``[U diag(s) Vt; E]``.

    Parameters
    ----------
    U : (m, k), s : (k,), Vt : (k, n)
        Current truncated SVD (orthonormal U and V).
    E : (p, n) ndarray or sparse matrix
        Appended rows.
    rank : int
        Rank kept, at most ``k + p`` (or ``k + complement_rank``).
    complement_rank : int
        0 = exact complement (thin QR of the n x p dense ``(I - V V^H) E^H``); l > 0 = randomized
        rank-l approximation of it (``E`` then enters only through products with thin blocks).

    Returns
    -------
    U_new (m + p, rank), s_new (rank,), Vt_new (rank, n)
    """
    m, k = U.shape
    p = E.shape[0]
    V = Vt.conj().T
    EV = E @ V                                                    # p x k
    if complement_rank and complement_rank < p:
        Y = adjoint_matmul(E, rng.standard_normal((p, complement_rank)))
    else:
        Y = adjoint_matmul(E, np.eye(p)) if sp.issparse(E) else np.asarray(E).conj().T.copy()
    Q_E = orth_against(Y, V)
    tail = E @ Q_E                                                # p x l; E (I - V V^H) = E Q_E Q_E^H
    l = Q_E.shape[1]
    middle = np.zeros((k + p, k + l), dtype=np.result_type(U, EV, tail))
    middle[:k, :k] = np.diag(s)
    middle[k:, :k] = EV
    middle[k:, k:] = tail
    F, theta, Gh = sla.svd(middle, full_matrices=False, check_finite=False)
    r = min(rank, theta.size)
    F, theta, Gh = F[:, :r], theta[:r], Gh[:r]
    U_new = np.vstack([U @ F[:k], F[k:]])
    Vt_new = Gh[:, :k] @ Vt + Gh[:, k:] @ Q_E.conj().T
    return U_new, theta, Vt_new


def update_svd(A, *, U: np.ndarray, s: np.ndarray, Vt: np.ndarray, rows=None, cols=None, rank: int,
               complement_rank: int = 0, rng: np.random.Generator, callback: Callback = no_callback) -> Result:
    """Updated rank-``rank`` SVD of ``[A; rows]`` or ``[A, cols]`` from the SVD ``U diag(s) Vt`` of ``A``.

    ``A`` itself is used only to measure the result (reconstruction error of the new matrix);
    the update needs the old factors and the new rows/columns. ``complement_rank=0`` means exact
    unless the complement would exceed :data:`EXACT_COMPLEMENT_ENTRIES` dense entries (then
    randomized, see :func:`default_complement_rank`; ``info["complement"]`` says which).

    ``rank`` may exceed what the update spans (``k + p`` for p appended vectors, fewer when they lie
    in the current subspace, up to ``min`` of the new shape): the missing triplets are the new
    matrix's zero singular values, completed with orthonormal vectors (``info["zero_triplets_completed"]``).

    Returns
    -------
    Result
        outputs ``U``, ``s``, ``Vt`` of the enlarged matrix; metrics as for every SVD
        (``reconstruction_error`` against the full new matrix, ``orthogonality_loss``,
        ``max_triplet_residual``) plus ``previous_error`` (the old factors padded with zeros,
        i.e. no update, against the new matrix).
    """
    if (rows is None) == (cols is None):
        raise ValueError("give exactly one of rows and cols")
    if complement_rank == 0:
        n_side, p = (Vt.shape[1], rows.shape[0]) if rows is not None else (U.shape[0], cols.shape[1])
        complement_rank = default_complement_rank(n_side, p, rank)
    if rows is not None:
        U_new, s_new, Vt_new = append_rows_update(U, s, Vt, rows, rank=rank, complement_rank=complement_rank,
                                                  rng=rng)
        new = sp.vstack([A, rows], format="csr") if sp.issparse(A) or sp.issparse(rows) else np.vstack([A, rows])
        padded = (np.vstack([U, np.zeros((rows.shape[0], U.shape[1]))]), Vt)
        appended = {"appended_rows": int(rows.shape[0])}
    else:
        Ct = cols.conj().T if not sp.issparse(cols) else sp.csr_matrix(cols.conj().T)
        V_new, s_new, Ut_new = append_rows_update(Vt.conj().T, s, U.conj().T, Ct, rank=rank,
                                                  complement_rank=complement_rank, rng=rng)
        U_new, Vt_new = Ut_new.conj().T, V_new.conj().T
        new = sp.hstack([A, cols], format="csr") if sp.issparse(A) or sp.issparse(cols) else np.hstack([A, cols])
        padded = (U, np.hstack([Vt, np.zeros((Vt.shape[0], cols.shape[1]))]))
        appended = {"appended_cols": int(cols.shape[1])}
    completed = rank - s_new.size
    if completed > 0:
        # the middle matrix holds every nonzero singular value of the new matrix (exactly, with the
        # exact complement): the missing triplets are zero ones with any orthonormal completion
        U_new = np.hstack([U_new, random_complement(U_new, completed, rng)])
        V_new = Vt_new.conj().T
        Vt_new = np.hstack([V_new, random_complement(V_new, completed, rng)]).conj().T
        s_new = np.concatenate([s_new, np.zeros(completed)])
    callback(1, rank=float(s_new.size))
    U_new, Vt_new = canonical_phases(U_new, Vt_new)
    metrics, how = svd_metrics(new, U_new, s_new, Vt_new, rng)
    metrics["previous_error"] = low_rank_error(new, padded[0] * s, padded[1], rng, metrics["frobenius_norm"])[0]
    info = {**how, **appended, "previous_rank": int(s.size), "rank": int(s_new.size),
            "zero_triplets_completed": max(int(completed), 0),
            "complement": f"randomized rank {complement_rank}" if complement_rank else "exact thin QR",
            "new_shape": list(new.shape)}
    return Result(status=Status.CONVERGED_DIRECT, outputs={"U": U_new, "s": s_new, "Vt": Vt_new},
                  metrics=metrics, iterations=1, info=info,
                  message=f"Zha-Simon update to rank {s_new.size} of the {new.shape[0]}x{new.shape[1]} matrix")
