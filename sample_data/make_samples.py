"""Regenerate the small sample inputs the README examples use (deterministic, seed 0)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))

from matcli.cli.app import main  # noqa: E402

GENERATE = [
    ["poisson2d", "--n", "32", "-o", "poisson32.h5"],
    ["batch", "--n", "24", "--count", "6", "-o", "batch_poisson24.h5"],
    ["regression", "--rows", "5000", "--cols", "40", "--cond", "1e6", "--heavy-rows", "5",
     "--noise", "0.01", "-o", "regression5000x40.h5"],
    ["lowrank", "--rows", "300", "--cols", "200", "--rank", "10", "--noise", "1e-3", "-o", "lowrank300x200.h5"],
    ["completion", "--rows", "400", "--cols", "300", "--rank", "4", "--rate", "0.15", "--noise", "0.01",
     "--test-fraction", "0.1", "-o", "completion400x300.h5"],
]
#: rank 10 plus 5% gross outliers of 10-50 max|L| (robust PCA's example; matcli generate has no outlier option)
OUTLIERS = "rpca300x200.h5"
COPIED = ["matrices/494_bus.mtx", "matrices/west0479.mtx", "matrices/lp_share1b.mtx", "matrices/ash219.mtx"]


def write_outliers(path: Path) -> None:
    """``A = L + S``: L of rank 10 (300 x 200), S with 5% nonzeros of magnitude 10-50 max|L|."""
    import h5py
    import numpy as np

    rng = np.random.default_rng(0)
    L = rng.standard_normal((300, 10)) @ rng.standard_normal((10, 200))
    S = np.zeros_like(L)
    where = rng.choice(L.size, size=L.size // 20, replace=False)
    S.flat[where] = rng.choice([-1.0, 1.0], where.size) * rng.uniform(10, 50, where.size) * np.abs(L).max()
    with h5py.File(path, "w") as fh:
        fh["A"] = L + S


def run() -> int:
    for args in GENERATE:
        code = main(["generate", *args[:-1], str(HERE / args[-1]), "--seed", "0", "--force"])
        if code:
            return code
    write_outliers(HERE / OUTLIERS)
    data = REPO / "tests" / "data"
    for rel in COPIED:
        shutil.copy(data / rel, HERE / Path(rel).name)
    return 0


if __name__ == "__main__":
    sys.exit(run())
