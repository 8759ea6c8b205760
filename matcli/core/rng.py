"""Seeded random generators. matcli never draws from numpy's global random state."""

from __future__ import annotations

import secrets
from contextlib import contextmanager
from typing import Iterator

import numpy as np

from matcli.core.errors import UsageError

#: Seeds are unsigned 64-bit integers: what the output file's ``seed`` attribute can hold.
SEED_LIMIT = 2**64


def resolve_seed(seed: int | None) -> int:
    """Return ``seed`` or, when None, a fresh one that the report records so the run can be repeated.

    Raises :class:`UsageError` unless ``0 <= seed < 2**64``.
    """
    if seed is None:
        return secrets.randbits(63)
    if not 0 <= seed < SEED_LIMIT:
        raise UsageError(f"--seed {seed}: must be an integer in [0, 2**64)")
    return int(seed)


def make_rng(seed: int) -> np.random.Generator:
    """A PCG64 generator from an explicit integer seed."""
    return np.random.default_rng(seed)


@contextmanager
def seeded_global_state(rng: np.random.Generator) -> Iterator[None]:
    """Seed numpy's legacy global generator from ``rng`` inside the block; restore it after.

    For third-party code that draws from ``np.random`` and takes no generator (pyamg's spectral
    radius estimates start from ``np.random.rand``): the job's seed then fixes its draws too, and
    code outside the block sees the global state it had before. Draws once from ``rng``.
    """
    saved = np.random.get_state()
    np.random.seed(int(rng.integers(2**32)))
    try:
        yield
    finally:
        np.random.set_state(saved)
