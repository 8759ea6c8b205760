"""``factorize --kind svd`` on A read in row blocks (``--method tsqr``, ``--backend dask``, or an input
larger than the memory budget), by a backend's workers or here in turn.

:class:`RowBlockMatrix` gives :func:`matcli.methods.factorize.tsqr_svd.tsqr_svd` its three passes and
:func:`matcli.methods.factorize.blocked_rsvd.blocked_randomized_svd` its TSQR-basis passes, and
:func:`matcli.methods.factorize.blocked_lanczos.blocked_lanczos_svd` its ``A^H A`` products, as maps
over the row blocks of :mod:`matcli.io.row_blocks`; each task names its block (a spec and two
row numbers) and receives only small operands (the block's slice of ``Q_s U_R``, of U for the
certificate; the n x l matrix Z and the block's l x l slice of ``Q_s``). Blocks are cut from A's size and the memory budget alone
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


def basis_r_block(task: tuple[RowBlock, list | None], *, source: RowBlockSource, Z) -> np.ndarray:
    from matcli.methods.factorize.blocked_rsvd import block_r

    block, inner = task
    return block_r(read_rows(source, block), Z, inner)


def basis_adjoint_block(task: tuple[RowBlock, np.ndarray, list | None], *, source: RowBlockSource,
                        Z) -> np.ndarray:
    from matcli.methods.factorize.blocked_rsvd import block_adjoint

    block, T, inner = task
    return block_adjoint(read_rows(source, block), Z, T, inner)


def gram_block(block: RowBlock, *, source: RowBlockSource, p: np.ndarray) -> np.ndarray:
    """``A_i^H (A_i p)`` (n,): this block's share of one Lanczos step on ``A^H A``."""
    from matcli.methods.factorize.blocked_rsvd import _adjoint

    A = read_rows(source, block)
    return _adjoint(A, np.asarray(A @ p))


def finish_block(task: tuple[RowBlock, np.ndarray, list | None], *, source: RowBlockSource, Z, V: np.ndarray,
                 s: np.ndarray, chunk_rows: int) -> tuple:
    from matcli.methods.factorize.blocked_rsvd import block_finish

    block, T, inner = task
    return block_finish(read_rows(source, block), Z, T, V, s, chunk_rows, inner)


class RowBlockMatrix:
    """A (m x n) as row ``blocks`` of ``source``, its passes run by ``backend.map`` (see the module)."""

    def __init__(self, backend, source: RowBlockSource, blocks: list[RowBlock], chunk_rows: int = 4096):
        self.backend, self.source, self.blocks = backend, source, blocks
        self.shape = (source.n_rows, source.n_cols)
        self.dtype = np.dtype(np.complex128 if source.dtype.kind == "c" else np.float64)
        #: rows of the dense residual temporaries of :meth:`finish` (bounded by the planned block size)
        self.chunk_rows = chunk_rows
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

    def _tasks(self, *per_block) -> list[tuple]:
        """One item per block: the block and its slices (``None`` lists stand for no slice)."""
        columns = [column if column is not None else [None] * len(self.blocks) for column in per_block]
        return list(zip(self.blocks, *columns))

    def basis_r(self, Z, inners: list | None = None) -> list[np.ndarray]:
        """The blocks' R factors of their rows of ``A Z`` (or of the stacked bases, ``inners``; one pass)."""
        return self._map(basis_r_block, self._tasks(inners), Z=Z)

    def basis_adjoint(self, Z, Ts: list[np.ndarray], inners: list | None = None) -> np.ndarray:
        """``A^H Q`` for ``Q = diag(Q_i) [T_1; T_2; ...]``, ``Q_i`` the blocks' Q of their rows (one pass)."""
        return _sum_in_order(self._map(basis_adjoint_block, self._tasks(Ts, inners), Z=Z))

    def gram(self, p: np.ndarray) -> np.ndarray:
        """``A^H A p`` (n,) summed over the blocks in block order (one pass)."""
        return _sum_in_order(self._map(gram_block, self.blocks, p=p))

    def finish(self, Z, Ts: list[np.ndarray], V: np.ndarray, s: np.ndarray, inners: list | None = None) -> tuple:
        """``(U, ||A v_j - s_j u_j||^2, A^H U, ||A - U S V^H||_F^2, ||A||_F^2, how)`` for ``U = diag(Q_i) T``
        (one pass; U assembled here in block order; ``how`` names how the error was summed)."""
        parts = self._map(finish_block, self._tasks(Ts, inners), Z=Z, V=V, s=s, chunk_rows=self.chunk_rows)
        U = np.vstack([part[0] for part in parts])
        how = ("exact (||A_i - U_i S V^H||_F summed over the blocks)" if all(part[5] for part in parts) else
               "exact (Gram expansion ||A_i||^2 - 2 Re tr(S U_i^H A_i V) + ||U_i S V^H||^2 of the large sparse "
               "blocks, the residual of the others; accurate while the relative error is above ~1e-7)")
        return (U, _sum_in_order([part[1] for part in parts]), _sum_in_order([part[2] for part in parts]),
                max(float(sum(part[3] for part in parts)), 0.0), float(sum(part[4] for part in parts)), how)


def _sum_in_order(parts: list[np.ndarray]) -> np.ndarray:
    """The blocks' shares added in block order (the same bits on any number of workers)."""
    total = parts[0].copy()
    for part in parts[1:]:
        total += part
    return total
