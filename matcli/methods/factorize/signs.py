"""Deterministic signs (phases) of singular vector pairs.

A singular triplet ``(s, u, v)`` is defined up to a common unit factor ``c`` (a sign for real
matrices, a phase for complex ones): ``(s, u c, v c)`` is the same triplet. Fixing ``c`` so that the
entry of largest modulus of each ``u`` is real and positive (scikit-learn's ``svd_flip``, u-based)
makes the output independent of the random start of an iterative method and of the algorithm.
"""

from __future__ import annotations

import numpy as np


def canonical_phases(U: np.ndarray, Vt: np.ndarray,
                     *images: np.ndarray | None) -> tuple[np.ndarray, ...]:
    """``U c``, ``conj(c) Vt`` (row-wise) and every ``image * c``, with ``|c_j| = 1`` chosen so that the
    largest-modulus entry of each column of ``U c`` is real and positive (the first such entry on ties).

    Parameters
    ----------
    U : (m, k) ndarray
    Vt : (k, n) ndarray
    images : (., k) ndarrays or None
        Products that scale with the columns of ``U`` or ``V`` (``A^H U``, ``A V``), kept consistent.

    Returns
    -------
    tuple
        ``(U, Vt, *images)`` with the same products ``U diag(s) Vt`` for every ``s``.
    """
    k = U.shape[1]
    if k == 0:
        return (U, Vt, *images)
    pivot = U[np.argmax(np.abs(U), axis=0), np.arange(k)]
    modulus = np.abs(pivot)
    c = np.where(modulus > 0, modulus / np.where(modulus > 0, pivot, 1), 1).astype(U.dtype)
    scaled = tuple(None if image is None else image * c for image in images)
    return (U * c, Vt * c.conj()[:, None], *scaled)
