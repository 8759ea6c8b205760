"""Learning to Relax: SOR's omega learned online across a sequence, against the best fixed omega.

Sequences from :mod:`matcli.sequences` (``--quick``: 100 systems on a 24 x 24 grid; ``--full``: 200
on 48 x 48), each solved by SOR to rtol 1e-8 from x = 0:

* ``darcy`` (threshold coefficient 3 / 12, SPD, variable coefficients: Young's formula assumes a
  consistently ordered matrix with known Jacobi radius; matcli estimates the radius by Lanczos)
* ``convdiff`` (upwind convection-diffusion, Pe log-uniform in [1, 100], random flow direction:
  nonsymmetric, Young's formula is not defined and matcli's default is omega = 1)
* ``--full`` adds ``darcy`` with a lognormal coefficient.

Outside the timed part, the best fixed omega in hindsight is found over a grid
(``u = -log2(2 - omega)`` in steps of 1/4 from -0.5 to 6, then steps of 1/16 around the best; exact
branch and bound, see :func:`hindsight`), and each system's own best omega on the 1/16 lattice gives
the instance-optimal total. The timed part runs, system by system and interleaved (the order
rotates), every policy: the Young-model learner, its contextual variant (cheap matrix features, and
the system's own parameters), the unimodal bandit, Tsallis-INF (the paper's learner), Young's
per-system estimate (SPD only, Lanczos included),
the best fixed omega and omega = 1; a learner's time includes its own choices and features.
Regret = learner - best fixed.
Target: within 10% of the best fixed omega's total iterations. The machine is shared (times are
measured as CPU seconds of this process, policy by policy; iteration counts are exact and
deterministic).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import Row, report, size_from_argv  # noqa: E402

from matcli.methods.solve import relax  # noqa: E402
from matcli.methods.solve.stationary import estimate_omega, sor  # noqa: E402
from matcli.sequences import sequence  # noqa: E402

RTOL = 1e-8


def solve(system, omega: float, maxiter: int) -> tuple[int, bool]:
    result = sor(system.A, system.b, omega=omega, rtol=RTOL, maxiter=maxiter)
    return result.iterations, result.status.converged


def hindsight(systems, maxiter: int, start_u: float) -> dict:
    """The best fixed omega in hindsight over the grid (untimed).

    Every omega of the grid (``u`` in steps of 1/4 from -0.5 to 6, then steps of 1/16 within 1/4 of
    the best) is solved on every system, in order of distance from ``start_u``; a column stops as
    soon as its running total exceeds the best complete total (it cannot be the minimum, so the
    result is exact), and each of its solves is capped at what is left of that budget. Then, per
    system, a walk on the 1/16 lattice from the best fixed omega finds the system's own best
    (the instance-optimal policy's total, an upper bound of it when a system's cost is not unimodal).
    """
    table: dict[float, list[int]] = {}
    failed: dict[float, int] = {}
    best_total = [float("inf")]
    attempted = []

    def column(u: float) -> None:
        attempted.append(u)
        its, fails, total = [], 0, 0
        for s in systems:
            budget = best_total[0] - total
            cap = int(min(maxiter, budget + 1)) if np.isfinite(budget) else maxiter
            n, ok = solve(s, float(relax.omega_of(u)), max(cap, 1))
            total += n
            if total > best_total[0]:
                return  # abandoned: more than the best complete column already
            its.append(n)
            fails += not ok and cap == maxiter
        table[round(u, 6)], failed[round(u, 6)] = its, fails
        best_total[0] = min(best_total[0], total)

    coarse = np.arange(-0.5, 6.0 + 1e-9, 0.25)
    for u in sorted(coarse, key=lambda u: (abs(u - start_u), u)):
        column(float(u))
    best_coarse = min(table, key=lambda u: sum(table[u]))
    for u in np.arange(best_coarse - 0.25, best_coarse + 0.25 + 1e-9, 1.0 / 16):
        if round(u, 6) not in table:
            column(float(u))
    totals = {u: sum(v) for u, v in table.items()}
    best_u = min(totals, key=totals.get)
    instance = 0
    for t, s in enumerate(systems):
        cost = {best_u: table[best_u][t]}

        def at(u: float) -> int:
            key = round(u, 6)
            if key not in cost:
                cost[key] = solve(s, float(relax.omega_of(key)), maxiter)[0] if key < 7 else maxiter
            return cost[key]

        u = best_u
        for step in (0.25, 1.0 / 16):
            while True:
                better = min((u - step, u + step), key=at)
                if at(better) >= at(u):
                    break
                u = better
        instance += at(u)
    return {"table": table, "failed": failed, "best_u": best_u, "best_total": totals[best_u],
            "columns_abandoned": len(attempted) - len(table), "instance_optimal": instance}


class Fixed:
    def __init__(self, omega: float):
        self.omega = omega

    def choose(self, system):
        return self.omega

    def observe(self, omega, iterations, converged):
        pass


class Young:
    """matcli's default outside --batch: Young's formula from a Lanczos estimate, per system."""

    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)

    def choose(self, system):
        return estimate_omega(system.A, self.rng)

    def observe(self, omega, iterations, converged):
        pass


class Plain:
    """A learner without context (choose() takes no system)."""

    def __init__(self, learner):
        self.learner = learner

    def choose(self, system):
        return self.learner.choose()

    def observe(self, omega, iterations, converged):
        self.learner.observe(omega, iterations, converged)


class Contextual:
    def __init__(self, learner, features):
        self.learner, self.features = learner, features

    def choose(self, system):
        return self.learner.choose(self.features(system))

    def observe(self, omega, iterations, converged):
        self.learner.observe(omega, iterations, converged)


def parameters(family: str):
    if family == "convdiff":
        return lambda s: np.array([np.log(s.params["peclet"]), np.cos(s.params["theta"]), np.sin(s.params["theta"])])
    return lambda s: np.array([s.params["mean_coefficient"]])


def run_family(family: str, options: dict, n: int, count: int, seed: int) -> list[Row]:
    systems = list(sequence(family, n, count, np.random.default_rng(seed), **options))
    label = f"{family}{'-' + options['coefficient'] if options else ''} {n}^2 x{count}"
    maxiter = 10 * n * n  # matcli's default cap for SOR
    t0 = time.perf_counter()
    spd = family == "darcy"
    # What matcli's batch would start from: Young's estimate on the first system (SPD), else 1.
    initial = estimate_omega(systems[0].A, np.random.default_rng(seed)) if spd else 1.0
    hs = hindsight(systems, maxiter, float(relax.u_of(initial)))
    print(f"{label}: hindsight grid {len(hs['table'])} complete omega columns x {count} systems in "
          f"{time.perf_counter() - t0:.1f} s", flush=True)
    best_omega = float(relax.omega_of(hs["best_u"]))
    policies = {
        "Young-model learner": Plain(relax.SORModelLearner(initial, rtol=RTOL)),
        "contextual Young-model (matrix features)": Contextual(relax.ContextualSORModelLearner(initial, rtol=RTOL),
                                                               lambda s: relax.relaxation_features(s.A)),
        "contextual Young-model (system parameters)": Contextual(
            relax.ContextualSORModelLearner(initial, rtol=RTOL), parameters(family)),
        "unimodal bandit": Plain(relax.UnimodalOmegaBandit(initial)),
        "Tsallis-INF (paper)": Plain(relax.TsallisInf(rng=np.random.default_rng(seed))),
        "best fixed omega (hindsight)": Fixed(best_omega),
        "omega = 1": Fixed(1.0),
    }
    if spd:
        policies["Young per system"] = Young(seed)
    names = list(policies)
    its = dict.fromkeys(names, 0)
    secs = dict.fromkeys(names, 0.0)
    fails = dict.fromkeys(names, 0)
    mismatches = 0
    for t, system in enumerate(systems):
        for k in range(len(names)):
            name = names[(t + k) % len(names)]
            policy = policies[name]
            started = time.process_time()
            omega = policy.choose(system)
            count_t, ok = solve(system, omega, maxiter)
            secs[name] += time.process_time() - started
            policy.observe(omega, count_t, ok)
            its[name] += count_t
            fails[name] += not ok
            key = round(float(relax.u_of(omega)), 6)
            if key in hs["table"] and hs["table"][key][t] != count_t:
                mismatches += 1
    best = hs["best_total"]
    assert its["best fixed omega (hindsight)"] == best, "the replay of the best fixed omega differs from the grid"
    rows = []
    peer = f"best fixed omega={best_omega:.4f} (hindsight)"
    for name in names:
        if name == "best fixed omega (hindsight)":
            continue
        ratio = its[name] / best
        learner = name not in ("omega = 1", "Young per system")
        rows.append(Row(
            workload=f"{label}: {name}", peer=peer, peer_seconds=secs["best fixed omega (hindsight)"],
            matcli_seconds=secs[name], peer_accuracy=f"{best} its",
            matcli_accuracy=f"{its[name]} its = {ratio:.3f}x best fixed (regret {its[name] - best:+d})"
                            + (f", {fails[name]} unconverged" if fails[name] else ""),
            target="<= 1.10x best fixed its" if learner else "",
            extra={"iterations": its[name], "best_fixed_iterations": best, "ratio": ratio,
                   "regret": its[name] - best, "instance_optimal_iterations": hs["instance_optimal"],
                   "unconverged": fails[name], "grid_unconverged": hs["failed"][hs["best_u"]],
                   "table_mismatches": mismatches}))
    print(f"{label}: per-system best on the grid (instance-optimal) {hs['instance_optimal']} its; "
          f"initial omega {initial:.4f}; replay mismatches {mismatches}", flush=True)
    return rows


def main() -> None:
    size = size_from_argv()
    n, count = (24, 100) if size == "quick" else (48, 200)
    families = [("darcy", {}), ("convdiff", {})]
    if size == "full":
        families.append(("darcy", {"coefficient": "lognormal"}))
    rows = []
    for i, (family, options) in enumerate(families):
        rows += run_family(family, options, n, count, seed=2026 + i)
    report("relax", rows, size)


if __name__ == "__main__":
    main()
