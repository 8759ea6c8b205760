"""Seeded random generators. matcli never uses numpy's global random state."""

from __future__ import annotations

import secrets

import numpy as np


def resolve_seed(seed: int | None) -> int:
    """Return ``seed`` or, when None, a fresh one that the report records so the run can be repeated."""
    if seed is None:
        return secrets.randbits(63)
    if seed < 0:
        raise ValueError("seed must be non-negative")
    return int(seed)


def make_rng(seed: int) -> np.random.Generator:
    """A PCG64 generator from an explicit integer seed."""
    return np.random.default_rng(seed)
