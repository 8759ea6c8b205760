"""Sequences of related linear systems from parametric PDEs, as neural-operator data generation
produces them (one PDE, many random coefficient fields or parameters, one solve each).

Every family discretises a PDE on the unit square with homogeneous Dirichlet boundary conditions
on an ``n x n`` grid of interior nodes (``h = 1 / (n + 1)``, ``n^2`` unknowns, node ``(i, j)`` at
``(i + 1) h, (j + 1) h`` is unknown ``j n + i``) with a 5-point stencil. All systems of a family
share one sparsity pattern (explicit zeros are kept), so :func:`matcli.methods.solve.batch.order_systems`
can compare them value by value. System ``t`` draws its random numbers from the ``t``-th generator
spawned from the sequence's generator: it does not depend on how many systems are generated.

Families (:data:`FAMILIES`):

``darcy``      ``-div(a grad u) = 1``: 2-D Darcy flow as in the FNO benchmark data (Li et al. 2020).
               ``a`` is a Gaussian random field ``g`` (spectral method, covariance
               ``(-Laplace + tau^2)^(-alpha)``, ``tau = 3``, ``alpha = 2``, normalised to unit
               variance) mapped by ``coefficient``: ``threshold`` (``a = 12`` where ``g >= 0``, else
               ``3``, as FNO) or ``lognormal`` (``a = exp(g)``). Finite volumes: face coefficients
               are harmonic means of the two nodes' values (a boundary face takes its node's value).
               SPD, real.
``convdiff``   ``-Laplace u + Pe (cos theta, sin theta) . grad u = 1``: convection-diffusion with a
               constant velocity of random direction ``theta ~ U(0, 2 pi)`` and Peclet number
               ``Pe`` log-uniform on ``[peclet_min, peclet_max]``. Central differences for the
               diffusion, first-order upwind for the convection (an M-matrix for every ``Pe``).
               Nonsymmetric, real, positive definite part.
``helmholtz``  ``-Laplace u - k^2 (1 + c(x))^(-2) (1 + i damping) u = delta``: Helmholtz in a random
               medium with an absorbing (complex) wavenumber; ``k`` uniform on ``[k_min, k_max]``
               (defaults ``2 pi`` to ``3 pi``: 1 to 1.5 wavelengths across the
               square; at higher wavenumbers more eigenvalues lie near zero than a recycled space of
               10-20 vectors deflates: at ``6 pi`` to ``8 pi`` GCRO-DR(40, 10) saved nothing over GMRES(40)), ``c = contrast * g`` with ``g`` the
               field of ``darcy``, source a unit point load at the node nearest the centre (scaled
               by ``1 / h^2``). Indefinite (the real part has eigenvalues of both signs),
               complex symmetric (non-Hermitian).

Each system's own parameters are returned beside it (and written as attributes of its group).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

FAMILIES = ("darcy", "convdiff", "helmholtz")


@dataclass(frozen=True)
class SequenceSystem:
    """One system ``A x = b`` of a sequence: ``A`` (N, N) CSR, ``b`` (N,), ``params`` its own draws."""

    name: str
    A: sp.csr_matrix
    b: np.ndarray
    params: dict[str, float]


def gaussian_field(n: int, rng: np.random.Generator, *, tau: float = 3.0, alpha: float = 2.0) -> np.ndarray:
    """A periodic Gaussian random field on an ``n x n`` grid of the unit square, (n, n), mean 0,
    variance 1: white noise filtered by ``(4 pi^2 |k|^2 + tau^2)^(-alpha / 2)`` in Fourier space."""
    k = np.fft.fftfreq(n, d=1.0 / n)
    k2 = k[:, None] ** 2 + k[None, :] ** 2
    spectrum = (4 * math.pi ** 2 * k2 + tau ** 2) ** (-alpha)
    spectrum[0, 0] = 0.0
    field = np.fft.ifft2(np.fft.fft2(rng.standard_normal((n, n))) * np.sqrt(spectrum)).real
    # The filter is even in k, so the field is real with variance mean(spectrum).
    return field / math.sqrt(spectrum.mean())


def five_point(center: np.ndarray, west: np.ndarray, east: np.ndarray, south: np.ndarray,
               north: np.ndarray) -> sp.csr_matrix:
    """The CSR matrix of a 5-point stencil on an ``n x n`` grid, (n^2, n^2), Dirichlet boundary.

    Each argument is (n, n), indexed ``[j, i]``: the coefficient of the node itself and of its
    neighbour in each direction; neighbours outside the grid are dropped. The pattern depends on
    ``n`` only (zero coefficients stay as explicit entries), with sorted column indices.
    """
    n = center.shape[0]
    N = n * n
    p = np.arange(N).reshape(n, n)
    cols = np.stack([p - n, p - 1, p, p + 1, p + n], axis=-1).reshape(N, 5)
    exists = np.ones((n, n, 5), dtype=bool)
    exists[0, :, 0] = False
    exists[:, 0, 1] = False
    exists[:, -1, 3] = False
    exists[-1, :, 4] = False
    exists = exists.reshape(N, 5)
    values = np.stack([south, west, center, east, north], axis=-1).reshape(N, 5)
    indptr = np.concatenate([[0], np.cumsum(exists.sum(axis=1))])
    return sp.csr_matrix((values[exists], cols[exists].astype(np.int32), indptr.astype(np.int32)), shape=(N, N))


def _faces(a: np.ndarray) -> tuple[np.ndarray, ...]:
    """Face coefficients (west, east, south, north), each (n, n): harmonic means of neighbouring
    nodes' values, a boundary face taking its node's value."""
    harmonic_x = 2 * a[:, 1:] * a[:, :-1] / (a[:, 1:] + a[:, :-1])
    harmonic_y = 2 * a[1:, :] * a[:-1, :] / (a[1:, :] + a[:-1, :])
    west, east, south, north = a.copy(), a.copy(), a.copy(), a.copy()
    west[:, 1:] = harmonic_x
    east[:, :-1] = harmonic_x
    south[1:, :] = harmonic_y
    north[:-1, :] = harmonic_y
    return west, east, south, north


def darcy(n: int, rng: np.random.Generator, *, coefficient: str = "threshold") -> SequenceSystem:
    """One Darcy system (see the module docstring), ``n^2`` unknowns, SPD."""
    g = gaussian_field(n, rng)
    if coefficient == "threshold":
        a = np.where(g >= 0, 12.0, 3.0)
    elif coefficient == "lognormal":
        a = np.exp(g)
    else:
        raise ValueError(f"unknown coefficient {coefficient!r}; choose threshold or lognormal")
    h2 = 1.0 / (n + 1) ** 2
    west, east, south, north = _faces(a)
    A = five_point((west + east + south + north) / h2, -west / h2, -east / h2, -south / h2, -north / h2)
    return SequenceSystem("", A, np.ones(n * n), {"mean_coefficient": float(a.mean())})


def convdiff(n: int, rng: np.random.Generator, *, peclet_min: float = 1.0,
             peclet_max: float = 100.0) -> SequenceSystem:
    """One convection-diffusion system (see the module docstring), ``n^2`` unknowns, nonsymmetric."""
    theta = rng.uniform(0.0, 2 * math.pi)
    peclet = math.exp(rng.uniform(math.log(peclet_min), math.log(peclet_max)))
    h = 1.0 / (n + 1)
    wx, wy = peclet * math.cos(theta), peclet * math.sin(theta)
    full = np.ones((n, n))
    diffusion = 1.0 / h ** 2
    # Upwind: the difference is taken towards where the flow comes from.
    west = -(diffusion + max(wx, 0.0) / h) * full
    east = -(diffusion + max(-wx, 0.0) / h) * full
    south = -(diffusion + max(wy, 0.0) / h) * full
    north = -(diffusion + max(-wy, 0.0) / h) * full
    center = (4 * diffusion + (abs(wx) + abs(wy)) / h) * full
    A = five_point(center, west, east, south, north)
    return SequenceSystem("", A, np.ones(n * n), {"theta": theta, "peclet": peclet})


def helmholtz(n: int, rng: np.random.Generator, *, k_min: float | None = None, k_max: float | None = None,
              damping: float = 0.05, contrast: float = 0.1) -> SequenceSystem:
    """One Helmholtz system (see the module docstring), ``n^2`` unknowns, complex symmetric, indefinite."""
    k_min = 2 * math.pi if k_min is None else k_min
    k_max = 3 * math.pi if k_max is None else k_max
    k = rng.uniform(k_min, k_max)
    c = contrast * gaussian_field(n, rng)
    h2 = 1.0 / (n + 1) ** 2
    full = np.ones((n, n))
    shift = k ** 2 * (1.0 + 1j * damping) / (1.0 + c) ** 2
    A = five_point((4 / h2 - shift).astype(complex), -full / h2 + 0j, -full / h2 + 0j, -full / h2 + 0j,
                   -full / h2 + 0j)
    b = np.zeros(n * n, dtype=complex)
    b[(n // 2) * n + n // 2] = 1.0 / h2
    return SequenceSystem("", A, b, {"k": k})


_BUILDERS = {"darcy": darcy, "convdiff": convdiff, "helmholtz": helmholtz}


def system_name(t: int, count: int) -> str:
    """Group name of system ``t`` of ``count``: ``s`` and the zero-padded index (at least 3 digits)."""
    return f"s{t:0{max(3, len(str(count - 1)))}d}"


def sequence(family: str, n: int, count: int, rng: np.random.Generator, **options: Any) -> Iterator[SequenceSystem]:
    """The ``count`` systems of ``family`` on an ``n x n`` grid, one at a time (named ``s000``...).

    ``options`` go to the family's builder (e.g. ``coefficient="lognormal"`` for darcy). System
    ``t`` uses ``rng.spawn(count)[t]``.
    """
    if family not in _BUILDERS:
        raise ValueError(f"unknown sequence family {family!r}; choose one of {', '.join(FAMILIES)}")
    builder = _BUILDERS[family]
    for t, child in enumerate(_children(rng, count)):
        system = builder(n, child, **options)
        yield SequenceSystem(system_name(t, count), system.A, system.b, system.params)


def _children(rng: np.random.Generator, count: int) -> Iterator[np.random.Generator]:
    """``rng.spawn(count)``, one generator at a time (the same streams; no list of ``count``
    generators, which a huge ``--count`` could not even hold)."""
    bits = rng.bit_generator
    seed = bits.seed_seq
    first = seed.n_children_spawned
    for t in range(count):
        child = np.random.SeedSequence(seed.entropy, spawn_key=(*seed.spawn_key, first + t), pool_size=seed.pool_size)
        yield np.random.Generator(type(bits)(child))


def file_bytes(family: str, n: int, count: int) -> float:
    """An upper estimate of the file of ``count`` systems on an ``n x n`` grid (measured 1.2x the file): per system the
    CSR matrix (5-point stencil: about 5 n^2 values and 64-bit indices, n^2 + 1 pointers) and b."""
    itemsize = 16 if family == "helmholtz" else 8
    return float(count) * float(n) ** 2 * (5 * (itemsize + 8) + 8 + itemsize)


def system_bytes(family: str, n: int) -> float:
    """An upper estimate of the memory one system of ``family`` takes while it is built and written
    (the stencil arrays, index arrays and the CSR matrix, a few times over)."""
    itemsize = 16 if family == "helmholtz" else 8
    return float(n) ** 2 * (5 * (3 * itemsize + 16) + 12 * 8)


def write_sequence(path: str, family: str, n: int, count: int, rng: np.random.Generator,
                   attrs: dict[str, Any] | None = None, **options: Any) -> None:
    """Write the sequence to a new HDF5 file at ``path``, one system at a time, as the batch layout
    ``solve --batch path:systems`` reads: groups ``systems/<name>`` holding ``A`` and ``b``, with the
    system's parameters as group attributes."""
    import h5py

    from matcli.io.hdf5 import write_array

    with h5py.File(path, "w") as fh:
        for key, value in {"family": family, "n": n, "count": count, **(attrs or {})}.items():
            fh.attrs[key] = value
        for system in sequence(family, n, count, rng, **options):
            group = fh.create_group(f"systems/{system.name}")
            write_array(group, "A", system.A)
            write_array(group, "b", system.b)
            for key, value in system.params.items():
                group.attrs[key] = value
