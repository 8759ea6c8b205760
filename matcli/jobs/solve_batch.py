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
    fallbacks); ``recycling``: whether recycling stayed on, and why."""

    entries: list[dict[str, Any]]
    solutions: list[np.ndarray | None]
    statuses: list[Status]
    iterations: int
    omega_learned: float | None
    history: list[tuple[int, dict[str, float]]] = field(default_factory=list)
    setup: dict[str, Any] = field(default_factory=dict)
    precond: str = "none"
    #: the recycling probe's decision (:class:`RecyclingProbe`), None without recycling
    recycling: dict[str, Any] | None = None


#: Systems of the probe that decides whether recycling pays: after the first (recycled) system,
#: PROBE_PAIRS pairs solved from scratch and recycled alternately, compared in wall time.
PROBE_PAIRS = 3
#: Share of the fresh iterations recycling must save in the probe to stay on.
MIN_SAVING = 0.1
#: Ratio (either way) of recycled to fresh cost after which the probe stops before PROBE_PAIRS pairs.
DECISIVE = 2.0


def make_recycler(plan: SequencePlan, restart: int):
    """The recycling solver of ``plan`` (None when recycling is off or the method has none):
    GCRO-DR(restart + k, k) for GMRES, :class:`RecyclingCG` for CG (projected starts; def-CG,
    :class:`DeflatedCG`, measured slower on the darcy sequences, see benchmarks/bench_sequences.py),
    the span of earlier solutions for the other Krylov methods."""
    from matcli.methods.solve.batch import RecycledSubspace, RecyclingCG
    from matcli.methods.solve.gcrodr import GCRODR

    if plan.recycle <= 0 or plan.method not in KRYLOV:
        return None
    if plan.method == "gmres":
        return GCRODR(m=restart + plan.recycle, k=plan.recycle)
    if plan.method == "cg":
        return RecyclingCG(plan.recycle)
    return RecycledSubspace(plan.recycle)


@dataclass
class RecyclingProbe:
    """Measures recycling against solving from scratch on the first systems of a sequence and
    switches it off when it does not pay in wall time.

    Position 0 is solved with recycling (it seeds the space); positions 1, 3, ..., 2P - 1 from
    scratch and 2, 4, ..., 2P with recycling (P = :data:`PROBE_PAIRS`). After position 2P (or
    after an earlier pair when the sums so far differ by a factor :data:`DECISIVE`), recycling
    stays on only when the recycled solves took less wall time in total than the fresh ones and
    saved at least :data:`MIN_SAVING` of their iterations. The decision rests on wall time, so two
    runs of one batch may recycle on different systems (and write answers that differ within rtol).
    A sequence shorter than ``2P + 2`` systems is not probed (recycling stays on) and, like
    ``--recycle 0``, gives the same bytes on every run."""

    systems: int
    fresh: list[tuple[int, float]] = field(default_factory=list)
    recycled: list[tuple[int, float]] = field(default_factory=list)
    decision: dict[str, Any] | None = None

    @property
    def probing(self) -> bool:
        return self.systems >= 2 * PROBE_PAIRS + 2 and self.decision is None

    def use_recycling(self, place: int) -> bool:
        """Whether system ``place`` of the sequence is solved with recycling."""
        if self.probing:
            return place == 0 or place % 2 == 0
        return self.decision is None or bool(self.decision["recycling"])

    def record(self, place: int, recycled: bool, iterations: int, seconds: float) -> None:
        if not self.probing or place == 0:
            return
        (self.recycled if recycled else self.fresh).append((iterations, seconds))
        if place == 2 * PROBE_PAIRS or (recycled and self._decisive()):
            self.decision = self._decide()

    def _decisive(self) -> bool:
        """Whether the pairs so far leave no doubt: recycling at least DECISIVE times cheaper in
        both time and iterations, or DECISIVE times slower (then the probe ends early)."""
        fresh_its, fresh_s = (sum(v) for v in zip(*self.fresh))
        rec_its, rec_s = (sum(v) for v in zip(*self.recycled))
        return (rec_s * DECISIVE < fresh_s and rec_its * DECISIVE <= fresh_its) or rec_s > DECISIVE * fresh_s

    def _decide(self) -> dict[str, Any]:
        fresh_its, fresh_s = (sum(v) for v in zip(*self.fresh))
        rec_its, rec_s = (sum(v) for v in zip(*self.recycled))
        # A recycled iteration costs more than a fresh one (longer orthogonalisation, projections),
        # so recycling that saves under MIN_SAVING of the iterations cannot pay, whatever a timing
        # of a few milliseconds says.
        pays = rec_s < fresh_s and rec_its <= (1 - MIN_SAVING) * fresh_its
        saved = fresh_its - rec_its
        # Time of the recycled solves beyond what their iterations cost at the fresh rate: the
        # overhead (projections, harvesting, longer orthogonalisation) spent per saved iteration.
        overhead = rec_s - rec_its * fresh_s / max(fresh_its, 1)
        pairs = len(self.recycled)
        reason = (f"recycling kept: {pairs} recycled systems took {rec_s:.3g} s and {rec_its} iterations, "
                  f"{pairs} fresh ones {fresh_s:.3g} s and {fresh_its}" if pays else
                  f"recycling switched off: it did not pay on the first systems ({pairs} recycled: "
                  f"{rec_s:.3g} s, {rec_its} iterations; {pairs} fresh: {fresh_s:.3g} s, {fresh_its} iterations)")
        return {"recycling": bool(pays), "reason": reason, "pairs": pairs, "fresh_seconds": fresh_s, "recycled_seconds": rec_s,
                "fresh_iterations": int(fresh_its), "recycled_iterations": int(rec_its),
                "seconds_per_fresh_iteration": fresh_s / max(fresh_its, 1),
                "overhead_seconds_per_saved_iteration": overhead / saved if saved > 0 else None}


def omega_learner(plan: SequencePlan, solver: Any):
    """The online omega learner of a ``--batch`` with a learned omega (starting from ``solver``'s
    estimate), or None.

    SOR: :class:`~matcli.methods.solve.relax.ContextualSORModelLearner` (Young's model of each
    system's cost curve, earlier systems weighted by the similarity of cheap features); it came
    within 1-3% of the best fixed omega in hindsight on Darcy and convection-diffusion sequences
    (benchmarks/bench_relax.py). SSOR, where Young's model does not hold: the unimodal bandit.
    """
    from matcli.methods.solve.relax import ContextualSORModelLearner, UnimodalOmegaBandit

    if not plan.learn_omega:
        return None
    if plan.method == "sor":
        return ContextualSORModelLearner(solver.omega, rtol=plan.rtol)
    return UnimodalOmegaBandit(solver.omega)


def solve_sequence(plan: SequencePlan, systems: list[System], solver, callback: Callback, *, start: int = 0,
                   chunk: int = 0, first_setup: str = "setup phase") -> Solved:
    """Solve ``systems`` in order with ``solver`` (set up for the first of them), updating it for each
    next matrix and rebuilding a Krylov preconditioner once the iteration count more than doubles.

    With ``plan.recycle > 0`` a Krylov method recycles (:func:`make_recycler`) under a
    :class:`RecyclingProbe`, which switches recycling off when it does not pay; its decision is
    :attr:`Solved.recycling`. ``callback`` gets the iteration reports numbered consecutively across
    the sequence. Entry ``position`` is ``start`` plus the place in the sequence; ``first_setup``
    labels how the first system's setup was made.
    """
    from matcli.methods.solve.batch import RecycledSubspace
    from matcli.methods.solve.relax import relaxation_features

    recycler = make_recycler(plan, int(plan.params.get("restart", 50)))
    probe = RecyclingProbe(len(systems)) if recycler is not None else None
    bandit = omega_learner(plan, solver)
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
            solver.omega = (bandit.choose(relaxation_features(system.A)) if plan.method == "sor"
                            else bandit.choose())
        step = (lambda it, **v: callback(offset + it, **v))
        recycled = probe is not None and probe.use_recycling(place)
        # The probe compares solves only: a preconditioner rebuilt above would bias either arm.
        solve_started = time.perf_counter()
        if recycled and isinstance(recycler, RecycledSubspace):
            x0 = recycler.initial_guess(system.A, system.B.reshape(system.A.shape[0], -1))
            result = solver.solve(system.A, system.B, x0=x0, rtol=plan.rtol, maxiter=plan.maxiter, callback=step)
        elif recycled:
            result = recycler.solve(system.A, system.B, M=solver.preconditioner, rtol=plan.rtol,
                                    maxiter=plan.maxiter, callback=step)
        else:
            result = solver.solve(system.A, system.B, rtol=plan.rtol, maxiter=plan.maxiter, callback=step)
        finished = time.perf_counter()
        seconds = finished - started
        if probe is not None:
            probe.record(place, recycled, result.iterations, finished - solve_started)
        if bandit is not None:
            bandit.observe(solver.omega, result.iterations, result.status.converged)
        if recycled and isinstance(recycler, RecycledSubspace) and "x" in result.outputs:
            recycler.add(np.asarray(result.outputs["x"]).reshape(system.A.shape[1], -1))
        if reference_its is None and result.status.converged:
            reference_its = result.iterations
        offset += result.iterations
        statuses.append(result.status)
        solutions.append(result.outputs.get("x"))
        entry = {"name": system.name, "position": start + place, "chunk": chunk, "status": result.status.reason,
                 "iterations": result.iterations, "seconds": seconds, "setup": action,
                 "relative_residual": result.metrics.get("relative_residual"),
                 "backward_error": result.metrics.get("backward_error")}
        if probe is not None:
            entry["recycled"] = recycled
            entry["recycled_dim"] = (0 if not recycled else recycler.dim if isinstance(recycler, RecycledSubspace)
                                     else int(result.info.get("recycled_dim", 0)))
            if "ritz_residuals" in result.info:
                entry["ritz_residual_median"] = float(np.median(result.info["ritz_residuals"]))
        if bandit is not None:
            entry["omega"] = solver.omega
        if result.message:
            entry["message"] = result.message
        entries.append(entry)
    recycling = None
    if probe is not None:
        recycling = probe.decision or {"recycling": True, "reason": f"recycling kept: a sequence of {len(systems)} "
                                       f"systems is too short to measure ({2 * PROBE_PAIRS + 2} needed)"}
    return Solved(entries, solutions, statuses, offset, bandit.best() if bandit is not None else None,
                  recycling=recycling)


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
    the order solved (with recycling: ``recycled``, ``recycled_dim`` and, where measured, the median
    relative Ritz residual of the recycled space for that matrix); ``info["chunks"]`` is the number
    of sequences; ``info["recycling"]`` the probe's decision (one per chunk when several).
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
    decisions = [s.recycling for s in sequences if s.recycling is not None]
    if decisions:
        info["recycling"] = decisions[0] if len(decisions) == 1 else decisions
    learned = [s for s in sequences if s.omega_learned is not None]
    if learned:
        # Several chunks each learned an omega: report the one whose chunk needed the fewest iterations per system.
        info["omega_learned"] = min(learned, key=lambda s: s.iterations / len(s.entries)).omega_learned
    metrics = {**worst, "systems": float(len(entries)), "failed_systems": float(len(failed))}
    return Result(status=combine_status(statuses), outputs=outputs, metrics=metrics, iterations=total, info=info,
                  message=message)
