"""Shared test fixtures: where the real data lives, small generated problems, a CLI runner."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LOCAL_DATA = Path(__file__).resolve().parent / "data"


def shared_data_dir() -> Path | None:
    """The real-data folder: $MATCLI_SHARED_DATA, else ../shared/data beside the checkout."""
    candidates = [os.environ.get("MATCLI_SHARED_DATA"), REPO.parent / "shared" / "data"]
    for candidate in candidates:
        if candidate and Path(candidate, "MANIFEST.tsv").is_file():
            return Path(candidate)
    return None


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path to ../shared/data; tests that need it skip when it is absent."""
    path = shared_data_dir()
    if path is None:
        pytest.skip("shared data folder not available (set MATCLI_SHARED_DATA)")
    return path


@pytest.fixture(scope="session")
def local_data() -> Path:
    """Small real files copied into the repository so the suite stands alone."""
    return LOCAL_DATA
