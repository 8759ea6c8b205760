"""The systems of ``solve --batch`` as a parallel backend's workers get them: by reference.

A chunk of the batch travels as :class:`ChunkInput`: for each system its name, a reference to its
matrix (the batch group's ``A`` or the matrix file, read by the worker, see
:mod:`matcli.backends.refs`) and to its right-hand side (the group's ``b`` or the ``--rhs`` file,
read by the worker; ``ones`` made there; ``random`` values, drawn on the client in the setup phase,
sent by value), the dtype the client computes in, and the chunk's generator. The worker applies
the client's conversion (:func:`matcli.methods.solve.system.as_matrix`, then the batch's compute
dtype), so it solves with bit-identical arrays, which the references' digests check.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

from matcli.backends.refs import FileInput, Inline, reference
from matcli.jobs.solve import System
from matcli.jobs.solve_batch import Chunk, SequencePlan, Solved, contiguous_chunks, solve_chunk

#: Chunks per worker thread: more tasks than workers, so that the scheduler hands the next chunk
#: to whichever worker is free (a slow chunk does not leave the others idle); each chunk pays one
#: setup (factorization or preconditioner) on its worker.
TASKS_PER_THREAD = 3


@dataclass(frozen=True)
class Ones:
    """The ``ones`` right-hand side, made where it is used."""

    shape: tuple[int, ...]
    dtype: np.dtype

    def load(self) -> np.ndarray:
        return np.ones(self.shape, dtype=self.dtype)


@dataclass(frozen=True)
class SystemInput:
    """One system of a chunk: ``name`` and the references its ``A`` and ``B`` are loaded from."""

    name: str
    source: str
    A: FileInput | Inline
    B: FileInput | Inline | Ones

    def load(self) -> System:
        return System(self.name, self.source, self.A.load(), self.B.load())


@dataclass(frozen=True)
class ChunkInput:
    """:class:`matcli.jobs.solve_batch.Chunk` with its systems by reference."""

    index: int
    start: int
    systems: tuple[SystemInput, ...]
    rng: np.random.Generator


def matrix_as(A: Any, dtype: np.dtype):
    """The conversion the solve job applies to a batch matrix after reading it."""
    from matcli.methods.solve.system import as_matrix

    A = as_matrix(A)
    return A if A.dtype == dtype else A.astype(dtype)


def dense_as(B: Any, dtype: np.dtype) -> np.ndarray:
    """The conversion the solve job applies to a right-hand side after reading it."""
    return np.asarray(B, dtype=dtype)


def system_inputs(systems: list[System], inputs: list[str], rhs_spec: str | None) -> list[SystemInput]:
    """References to ``systems`` as the solve job read them from ``inputs`` (the job's input specs)
    with ``rhs_spec`` (``--rhs``: a spec, ``ones``, ``random`` or None)."""
    from matcli.io.load import list_hdf5_members, read_dense, read_matrix
    from matcli.io.spec import parse_spec

    groups = len(inputs) == 1 and parse_spec(inputs[0]).kind == "hdf5"
    refs = []
    for system in systems:
        dtype = system.A.dtype
        if groups:
            A = reference(f"{system.source}/A", system.A, read_matrix, convert=partial(matrix_as, dtype=dtype))
        else:
            A = reference(system.source, system.A, read_matrix, convert=partial(matrix_as, dtype=dtype))
        to_dtype = partial(dense_as, dtype=system.B.dtype)
        if rhs_spec is None and groups and "b" in list_hdf5_members(system.source):
            B = reference(f"{system.source}/b", system.B, read_dense, convert=to_dtype)
        elif rhs_spec not in (None, "ones", "random"):
            B = reference(rhs_spec, system.B, read_dense, convert=to_dtype)
        elif rhs_spec != "random" and np.all(system.B == 1):
            B = Ones(system.B.shape, system.B.dtype)
        else:
            B = Inline(system.B)
        refs.append(SystemInput(system.name, system.source, A, B))
    return refs


def chunk_inputs(systems: list[System], inputs: list[str], rhs_spec: str | None, threads: int,
                 rng: np.random.Generator) -> list[ChunkInput]:
    """The ordered ``systems`` cut into ``min(TASKS_PER_THREAD * threads, len(systems))`` contiguous
    chunks (:func:`matcli.jobs.solve_batch.contiguous_chunks`, with its generators), by reference."""
    chunks = contiguous_chunks(systems, TASKS_PER_THREAD * threads, rng)
    return [ChunkInput(chunk.index, chunk.start, tuple(system_inputs(chunk.systems, inputs, rhs_spec)), chunk.rng)
            for chunk in chunks]


def solve_chunk_input(chunk: ChunkInput, plan: SequencePlan) -> Solved:
    """Worker task: load the chunk's systems, then :func:`matcli.jobs.solve_batch.solve_chunk`."""
    systems = [system.load() for system in chunk.systems]
    return solve_chunk(Chunk(chunk.index, chunk.start, systems, chunk.rng), plan)
