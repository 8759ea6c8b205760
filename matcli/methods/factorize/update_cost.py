"""Cost estimates of a truncated-SVD update and of recomputing the SVD of the new matrix.

``--method auto`` with ``--update`` compares the two (:func:`choose`). The update's estimate is
what :mod:`matcli.methods.factorize.update` does, term by term; the recomputation's is a *lower bound*
(one Lanczos basis, no restart, or the dense SVD for small matrices), so that the update is chosen
only when it is cheaper than the most favourable recomputation. Both include the certificate
(products of the new matrix with the returned vectors), which every SVD pays.

Costs are flops weighted by how fast each kind of operation runs, relative to dense matrix-matrix
products (BLAS-3): measured on a 2-core x86 machine (20000 x 40 blocks, a 20000 x 3000 CSR matrix with
3e5 entries), matrix-vector products (BLAS-2) ran at 1/4 of the BLAS-3 rate and sparse products,
with one vector or a block, at 1/20; a small LAPACK SVD is counted at the BLAS-2 rate, a large one
at 1/2. Lanczos works one vector at a time (sparse and BLAS-2); the update in blocks (BLAS-3).
"""

from __future__ import annotations

from dataclasses import dataclass

#: ``--method auto`` computes a fresh SVD densely when the matrix has at most this many entries and
#: ``min(m, n) <= SMALL_SIDE`` (as :mod:`matcli.jobs.factorize` does for a fresh SVD).
SMALL_ENTRIES = 2_000_000
SMALL_SIDE = 1500

#: Relative cost per flop (BLAS-3 = 1), measured as described above.
BLAS2, SPARSE, SMALL_SVD, LARGE_SVD = 4.0, 20.0, 4.0, 2.0


@dataclass(frozen=True)
class Problem:
    """Sizes of an update: the new matrix is ``m x n`` with ``nnz`` stored entries (``m n`` when dense),
    of which ``p`` appended vectors of length ``length`` hold ``nnz_appended``; ``k`` old triplets,
    ``rank`` new ones, complement of ``l`` columns (``l >= p``: exact) and ``power_iters`` iterations;
    ``sparse``: the new matrix is stored sparse (products at the sparse rate, else BLAS-2/BLAS-3)."""

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
    sparse: bool = True


def _svd_flops(a: int, b: int) -> float:
    """Flops of a dense SVD with vectors of an ``a x b`` matrix (LAPACK gesvd, ~ 4 a b^2 + 22 b^3 with b <= a)."""
    a, b = max(a, b), min(a, b)
    return 4.0 * a * b * b + 22.0 * b**3


def _rates(P: Problem) -> tuple[float, float]:
    """Cost per flop of products with the matrix: one vector at a time, and a block."""
    return (SPARSE, SPARSE) if P.sparse else (BLAS2, 1.0)


def certificate_cost(P: Problem) -> float:
    """Triplet residuals and Gram-expansion errors: two products with the matrix (``A V`` and ``A^H U``;
    the update's ``A V_old`` serves both its new vectors and the previous factors' error)."""
    return 2 * 2.0 * P.nnz * P.rank * _rates(P)[1] + 4.0 * (P.m + P.n) * P.rank**2


def update_cost(P: Problem) -> float:
    """The update of :func:`matcli.methods.factorize.update.update_svd`, certificate included."""
    l = min(P.l, P.p, P.length)
    block = SPARSE if P.sparse else 1.0
    cost = 2.0 * P.nnz_appended * P.k * block                                   # U^H C
    if P.l >= P.p:
        cost += 2 * 4.0 * P.length * P.k * P.p + 6.0 * P.length * P.p**2          # two projections, QR
    else:
        products = 1 + 2 * P.power_iters
        # per power iteration one projection and an LU; at the end orth_against (two projections, CholQR2)
        cost += products * 2.0 * P.nnz_appended * l * block + P.power_iters * (
            4.0 * P.length * P.k * l + 2.0 * P.length * l**2) + 8.0 * P.length * P.k * l + 6.0 * P.length * l**2
    cost += 2.0 * P.nnz_appended * l * block                                    # Q^H C
    a, b = P.k + l, P.k + P.p
    cost += _svd_flops(a, b) * (SMALL_SVD if min(a, b) < 500 else LARGE_SVD)
    other = P.n if P.length == P.m else P.m                      # the side the appended vectors extend
    cost += 2.0 * P.length * (P.k + l) * P.rank + 2.0 * other * P.k * P.rank
    return cost + certificate_cost(P)


def recompute_cost(P: Problem) -> tuple[float, str]:
    """Least cost of a fresh rank-``rank`` SVD of the new matrix, and which method it assumes."""
    side = min(P.m, P.n)
    basis = min(max(3 * P.rank, P.rank + 30), side)
    # one Lanczos basis: a product with A and one with A^H per step, full reorthogonalisation (BLAS-2)
    lanczos = 2 * 2.0 * P.nnz * basis * _rates(P)[0] + 4.0 * (P.m + P.n) * basis**2 * BLAS2 + certificate_cost(P)
    if P.m * P.n <= SMALL_ENTRIES and side <= SMALL_SIDE:
        dense = _svd_flops(P.m, P.n) * LARGE_SVD + certificate_cost(P)
        if dense < lanczos:
            return dense, "dense"
    return lanczos, "lanczos"


def choose(P: Problem) -> tuple[str, str, dict[str, float]]:
    """``("update" | "lanczos" | "dense", reason, estimates)``: the update when its estimate is below
    the recomputation's lower bound."""
    up = update_cost(P)
    fresh, method = recompute_cost(P)
    estimates = {"update_cost": up, "recompute_cost": fresh}
    if up < fresh:
        return "update", (f"--update: updating costs ~{up:.2g} (BLAS-3 flop equivalents), less than "
                          f"recomputing the {P.m}x{P.n} SVD ({method}, at least ~{fresh:.2g})"), estimates
    return method, (f"--update: recomputing the {P.m}x{P.n} SVD ({method}, ~{fresh:.2g} BLAS-3 flop equivalents) "
                    f"costs no more than updating (~{up:.2g}): the SVD of the new matrix was recomputed"), estimates
