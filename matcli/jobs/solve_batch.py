"""The compute phase of ``matcli solve --batch``: the ordered systems solved as one sequence, or as
contiguous chunks on a parallel backend.

Within a sequence the systems are chained: the setup is updated from one matrix to the next
(preconditioner or ordering reused), Krylov methods recycle a subspace (``--recycle``) and SOR
learns its relaxation factor from the iteration counts. The local backend solves the whole batch
as one sequence with the setup of the ``setup`` phase. A parallel backend cuts the ordered batch
into contiguous chunks, one per worker; a worker sets up from its chunk's first matrix and solves
the chunk as its own sequence, so the chaining continues within a chunk and the neighbours that
the ordering put together stay together.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from matcli.core.result import Callback, Result, Status
from matcli.jobs.solve import KRYLOV, System, prepare_solver


@dataclass(frozen=True)
class SequencePlan:
    """What every sequence of one batch shares: the resolved method, its parameters and the
    stopping rule (sent to the workers, so it holds names and numbers only)."""

    method: str
    precond: str
    params: dict[str, Any]
    symmetric: bool
    rtol: float
    maxiter: int | None
    recycle: int
    learn_omega: bool

    def prepare(self, A, rng: np.random.Generator):
        """The setup of :attr:`method` for matrix ``A`` (as the ``setup`` phase does it)."""
        return prepare_solver(self.method, A, params=self.params, precond=self.precond, symmetric=self.symmetric,
                              rng=rng)


@dataclass
class Chunk:
    """Contiguous part of the ordered batch: ``systems`` start at position ``start`` of the order;
    ``rng`` seeds the chunk's own setup."""

    index: int
    start: int
    systems: list[System]
    rng: np.random.Generator


@dataclass
class Solved:
    """A solved sequence, per system in sequence order: report ``entries``, ``solutions`` (None when
    the method produced none) and ``statuses``; ``iterations`` in total; the learned SOR omega (or
    None); ``history``: the iteration reports ``(iteration, values)`` of a worker run, numbered
    from the start of the sequence (empty when they went to a live callback); a worker run's
    ``setup`` facts (its solver's ``info``) and ``precond`` (the preconditioner it set up, after
    fallbacks)."""

    entries: list[dict[str, Any]]
    solutions: list[np.ndarray | None]
    statuses: list[Status]
    iterations: int
    omega_learned: float | None
    history: list[tuple[int, dict[str, float]]] = field(default_factory=list)
    setup: dict[str, Any] = field(default_factory=dict)
    precond: str = "none"


def solve_sequence(plan: SequencePlan, systems: list[System], solver, callback: Callback, *, start: int = 0,
                   chunk: int = 0, first_setup: str = "setup phase") -> Solved:
    """Solve ``systems`` in order with ``solver`` (set up for the first of them), updating it for each
    next matrix and rebuilding a Krylov preconditioner once the iteration count more than doubles.

    ``callback`` gets the iteration reports numbered consecutively across the sequence. Entry
    ``position`` is ``start`` plus the place in the sequence; ``first_setup`` labels how the first
    system's setup was made.
    """
    from matcli.methods.solve.batch import OmegaBandit, RecycledSubspace, RecyclingCG

    # CG starts from projections onto recycled Ritz vectors; the other Krylov methods start from
    # the best point of the span of earlier solutions.
    recycling_cg = RecyclingCG(plan.recycle) if plan.method == "cg" and plan.recycle > 0 else None
    recycling = plan.method in KRYLOV and plan.method != "cg" and plan.recycle > 0
    space = RecycledSubspace(plan.recycle) if recycling else None
    bandit = OmegaBandit(initial=solver.omega) if plan.learn_omega else None
    entries, solutions, statuses = [], [], []
    offset = 0
    reference_its = None
    for place, system in enumerate(systems):
        started = time.perf_counter()
        action = first_setup
        if place > 0:
            rebuild = (plan.method in KRYLOV and reference_its is not None
                       and entries[-1]["iterations"] > 2 * reference_its + 5)
            action = solver.update(system.A, rebuild=rebuild)
            if rebuild:
                reference_its = None
        if bandit is not None:
            solver.omega = bandit.choose()
        x0 = space.initial_guess(system.A, system.B.reshape(system.A.shape[0], -1)) if space is not None else None
        step = (lambda it, **v: callback(offset + it, **v))
        if recycling_cg is not None:
            result = recycling_cg.solve(system.A, system.B, M=solver.preconditioner, rtol=plan.rtol,
                                     maxiter=plan.maxiter, callback=step)
        else:
            result = solver.solve(system.A, system.B, x0=x0, rtol=plan.rtol, maxiter=plan.maxiter, callback=step)
        seconds = time.perf_counter() - started
        if bandit is not None:
            bandit.observe(solver.omega, result.iterations, result.status.converged)
        if space is not None and "x" in result.outputs:
            space.add(np.asarray(result.outputs["x"]).reshape(system.A.shape[1], -1))
        if reference_its is None and result.status.converged:
            reference_its = result.iterations
        offset += result.iterations
        statuses.append(result.status)
        solutions.append(result.outputs.get("x"))
        entry = {"name": system.name, "position": start + place, "chunk": chunk, "status": result.status.reason,
                 "iterations": result.iterations, "seconds": seconds, "setup": action,
                 "relative_residual": result.metrics.get("relative_residual"),
                 "backward_error": result.metrics.get("backward_error")}
        if space is not None:
            entry["recycled_dim"] = space.dim
        if recycling_cg is not None:
            entry["recycled_dim"] = result.info.get("recycled_dim", 0)
        if bandit is not None:
            entry["omega"] = solver.omega
        if result.message:
            entry["message"] = result.message
        entries.append(entry)
    return Solved(entries, solutions, statuses, offset, bandit.best() if bandit is not None else None)


def solve_chunk(chunk: Chunk, plan: SequencePlan) -> Solved:
    """Worker task: set up from the chunk's first matrix, then solve the chunk as a sequence.

    The first system's ``seconds`` include that setup; the iteration reports are recorded in
    :attr:`Solved.history` for the caller to replay.
    """
    started = time.perf_counter()
    solver = plan.prepare(chunk.systems[0].A, chunk.rng)
    setup_s = time.perf_counter() - started
    history: list[tuple[int, dict[str, float]]] = []
    solved = solve_sequence(plan, chunk.systems, solver, lambda it, **v: history.append((it, v)),
                            start=chunk.start, chunk=chunk.index, first_setup="set up on worker")
    solved.entries[0]["seconds"] += setup_s
    solved.history = history
    solved.setup = solver.info
    solved.precond = getattr(solver, "precond_name", "none")
    return solved


def contiguous_chunks(systems: list[System], parts: int, rng: np.random.Generator) -> list[Chunk]:
    """Cut the ordered ``systems`` into ``min(parts, len(systems))`` contiguous chunks whose sizes
    differ by at most one, each with an independent generator spawned from ``rng``."""
    bounds = np.array_split(np.arange(len(systems)), min(parts, len(systems)))
    rngs = rng.spawn(len(bounds))
    return [Chunk(index, int(span[0]), systems[span[0]:span[-1] + 1], rngs[index])
            for index, span in enumerate(bounds)]


def batch_result(sequences: list[Solved], callback: Callback) -> Result:
    """Combine the sequences (in batch order) into the job's result and replay recorded iteration
    reports into ``callback``, numbered consecutively across the batch.

    Metrics: the worst relative residual and backward error over the systems (null in the report
    when a system has none: inf), number of systems and of failed systems; the result's
    ``iterations`` is the total over the batch. ``info["systems"]`` lists the per-system entries in
    the order solved; ``info["chunks"]`` is the number of sequences.
    """
    from matcli.methods.solve.krylov import combine_status

    offset = 0
    for solved in sequences:
        for iteration, values in solved.history:
            callback(offset + iteration, **values)
        offset += solved.iterations
    entries = [entry for solved in sequences for entry in solved.entries]
    statuses = [status for solved in sequences for status in solved.statuses]
    outputs = {f"x/{entry['name']}": x for solved in sequences for entry, x in zip(solved.entries, solved.solutions)
               if x is not None}
    worst = {key: max((float("inf") if e[key] is None else e[key]) for e in entries)
             for key in ("relative_residual", "backward_error")}
    total = sum(solved.iterations for solved in sequences)
    failed = [e["name"] for e, status in zip(entries, statuses) if not status.converged]
    message = "" if not failed else f"{len(failed)} of {len(entries)} systems failed: {', '.join(failed[:10])}"
    info = {"systems": entries, "order": [e["name"] for e in entries],
            "chunks": len(sequences)}
    learned = [s for s in sequences if s.omega_learned is not None]
    if learned:
        # Several chunks each learned an omega: report the one whose chunk needed the fewest iterations per system.
        info["omega_learned"] = min(learned, key=lambda s: s.iterations / len(s.entries)).omega_learned
    metrics = {**worst, "systems": float(len(entries)), "failed_systems": float(len(failed))}
    return Result(status=combine_status(statuses), outputs=outputs, metrics=metrics, iterations=total, info=info,
                  message=message)
