"""``factorize --kind svd --method tsqr``: A read in row blocks, by a backend's workers or here in turn.

:class:`RowBlockMatrix` gives :func:`matcli.methods.factorize.tsqr_svd.tsqr_svd` its three passes as
maps over the row blocks of :mod:`matcli.io.row_blocks`; each task names its block (a spec and two
row numbers) and receives only small operands (the block's slice of ``Q_s U_R``, of U for the
certificate). Blocks are cut from A's size and the memory budget alone
(:func:`matcli.jobs.sketch_remote.plan_blocks`), and every sum runs in block order on the client, so
the factors are the same bits on any number of workers.
"""

from __future__ import annotations

import numpy as np

from matcli.io.row_blocks import RowBlock, RowBlockSource
from matcli.jobs.sketch_remote import read_rows


def r_block(block: RowBlock, *, source: RowBlockSource) -> np.ndarray:
    from matcli.methods.factorize.tsqr_svd import block_r

    return block_r(read_rows(source, block))


def q_block(task: tuple[RowBlock, np.ndarray], *, source: RowBlockSource) -> np.ndarray:
    from matcli.methods.factorize.tsqr_svd import block_q_times

    block, W = task
    return block_q_times(read_rows(source, block), W)


def certify_block(task: tuple[RowBlock, np.ndarray], *, source: RowBlockSource, V: np.ndarray,
                  s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(||A_i v_j - s_j U_i[:, j]||^2 per column, A_i^H U_i)``."""
    block, U = task
    A = read_rows(source, block)
    right = np.asarray(A @ V) - U * s
    return np.einsum("ij,ij->j", right.conj(), right).real, np.asarray(A.conj().T @ U)


class RowBlockMatrix:
    """A (m x n) as row ``blocks`` of ``source``, its passes run by ``backend.map`` (see the module)."""

    def __init__(self, backend, source: RowBlockSource, blocks: list[RowBlock]):
        self.backend, self.source, self.blocks = backend, source, blocks
        self.shape = (source.n_rows, source.n_cols)
        self.passes = 0

    def _map(self, fn, items, **shared) -> list:
        self.passes += 1
        return self.backend.map(fn, items, source=self.source, **shared)

    def r_factors(self) -> list[np.ndarray]:
        return self._map(r_block, self.blocks)

    def q_times(self, parts: list[np.ndarray]) -> np.ndarray:
        return np.vstack(self._map(q_block, list(zip(self.blocks, parts))))

    def certify(self, U: np.ndarray, V: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        tasks = [(block, U[block.start:block.stop]) for block in self.blocks]
        parts = self._map(certify_block, tasks, V=V, s=s)
        right, AtU = parts[0][0].copy(), parts[0][1].copy()
        for r, g in parts[1:]:
            right += r
            AtU += g
        return right, AtU
