"""Flop estimates of a truncated-SVD update and of recomputing the SVD of the new matrix.

``--method auto`` with ``--update`` compares the two (:func:`choose`). The update's estimate is
what :mod:`matcli.methods.factorize.update` does, term by term; the recomputation's is a *lower bound*
(one Lanczos basis, no restart, or the dense SVD for small matrices), so that the update is chosen
only when it is cheaper than the most favourable recomputation. Both include the certificate
(products of the new matrix with the returned vectors), which every SVD pays.
"""

from __future__ import annotations

from dataclasses import dataclass

#: ``--method auto`` computes a fresh SVD densely when the matrix has at most this many entries and
#: ``min(m, n) <= SMALL_SIDE`` (as :mod:`matcli.jobs.factorize` does for a fresh SVD).
SMALL_ENTRIES = 2_000_000
SMALL_SIDE = 1500


@dataclass(frozen=True)
class Problem:
    """Sizes of an update: the new matrix is ``m x n`` with ``nnz`` stored entries (``m n`` when dense),
    of which ``p`` appended vectors of length ``length`` hold ``nnz_appended``; ``k`` old triplets,
    ``rank`` new ones, complement of ``l`` columns (``l >= p``: exact) and ``power_iters`` iterations."""

    m: int
    n: int
    nnz: int
    p: int
    length: int
    nnz_appended: int
    k: int
    rank: int
    l: int
    power_iters: int


def _svd_flops(a: int, b: int) -> float:
    """Dense SVD with vectors of an ``a x b`` matrix (LAPACK gesvd, ~ 4 a b^2 + 22 b^3 with b <= a)."""
    a, b = max(a, b), min(a, b)
    return 4.0 * a * b * b + 22.0 * b**3


def certificate_flops(P: Problem) -> float:
    """Triplet residuals and Gram-expansion error: ``A V``, ``A^H U`` and the previous error's product."""
    return 3 * 2.0 * P.nnz * P.rank + 4.0 * (P.m + P.n) * P.rank**2


def update_flops(P: Problem) -> float:
    """The update of :func:`matcli.methods.factorize.update.update_svd`, certificate included."""
    l = min(P.l, P.p)
    flops = 2.0 * P.nnz_appended * P.k                           # U^H C
    if P.l >= P.p:
        flops += 2 * 4.0 * P.length * P.k * P.p + 4.0 * P.length * P.p**2    # two projections, QR
    else:
        products = 1 + 2 * P.power_iters
        flops += products * 2.0 * P.nnz_appended * l + (1 + P.power_iters) * (
            8.0 * P.length * P.k * l + 4.0 * P.length * l**2)
    flops += 2.0 * P.nnz_appended * l                            # Q^H C
    flops += _svd_flops(P.k + l, P.k + P.p)
    other = P.n if P.length == P.m else P.m                      # the side the appended vectors extend
    flops += 2.0 * P.length * (P.k + l) * P.rank + 2.0 * other * P.k * P.rank
    return flops + certificate_flops(P)


def recompute_flops(P: Problem) -> tuple[float, str]:
    """Least cost of a fresh rank-``rank`` SVD of the new matrix, and which method it assumes."""
    side = min(P.m, P.n)
    basis = min(max(3 * P.rank, P.rank + 30), side)
    # one Lanczos basis: a product with A and one with A^H per step, full reorthogonalisation
    lanczos = 2 * 2.0 * P.nnz * basis + 4.0 * (P.m + P.n) * basis**2 + certificate_flops(P)
    if P.m * P.n <= SMALL_ENTRIES and side <= SMALL_SIDE:
        dense = _svd_flops(P.m, P.n) + certificate_flops(P)
        if dense < lanczos:
            return dense, "dense"
    return lanczos, "lanczos"


def choose(P: Problem) -> tuple[str, str, dict[str, float]]:
    """``("update" | "lanczos" | "dense", reason, estimates)``: the update when its estimate is below
    the recomputation's lower bound."""
    up = update_flops(P)
    fresh, method = recompute_flops(P)
    estimates = {"update_flops": up, "recompute_flops": fresh}
    if up < fresh:
        return "update", (f"--update: updating costs ~{up:.2g} flops, less than recomputing the {P.m}x{P.n} SVD "
                          f"({method}, at least ~{fresh:.2g})"), estimates
    return method, (f"--update: recomputing the {P.m}x{P.n} SVD ({method}, ~{fresh:.2g} flops) costs no more than "
                    f"updating (~{up:.2g}): the SVD of the new matrix was recomputed"), estimates
