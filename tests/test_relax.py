"""Online learners of SOR's omega (matcli.methods.solve.relax) against exact references and the best
fixed omega in hindsight."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp

from matcli.methods.solve import relax
from matcli.methods.solve.stationary import sor

RTOL = 1e-8


def tridiagonal_poisson(n: int) -> np.ndarray:
    return 2 * np.eye(n) - np.eye(n, k=1) - np.eye(n, k=-1)


def sor_matrix_radius(A: np.ndarray, omega: float) -> float:
    """Spectral radius of (D - omega L)^-1 ((1 - omega) D + omega U), A = D - L - U, by dense eigvals."""
    D = np.diag(np.diag(A))
    L = -np.tril(A, -1)
    U = -np.triu(A, 1)
    M = np.linalg.solve(D - omega * L, (1 - omega) * D + omega * U)
    return float(np.abs(np.linalg.eigvals(M)).max())


def test_sor_rate_is_the_radius_of_the_sor_matrix():
    # 1-D Poisson is consistently ordered with Jacobi radius cos(pi / (n + 1)) (Young's setting).
    n = 30
    A = tridiagonal_poisson(n)
    mu = math.cos(math.pi / (n + 1))
    optimum = 2 / (1 + math.sqrt(1 - mu * mu))
    for omega in (0.5, 1.0, 1.5, optimum - 0.03, optimum + 0.03, 1.95):
        # the defective eigenvalue at omega* is avoided: elsewhere the eigenvalues are well conditioned
        # enough for 1e-6 (the Jordan-like clusters near omega* lose half the digits)
        assert float(relax.sor_rate(omega, mu)) == pytest.approx(sor_matrix_radius(A, omega), rel=1e-6)


def test_model_fit_recovers_the_jacobi_radius():
    # Counts from the asymptotic model itself (no transient, none seen right of an optimum): the
    # fit solves the model for mu, to the bisection's resolution.
    mus = [0.3, 0.9, 0.99, 0.9995]
    learner = relax.SORModelLearner(rtol=RTOL)
    omegas = []
    for mu in mus:
        omega = (1.0 + float(relax.optimal_omega(mu))) / 2           # left of the optimum
        omegas.append(omega)
        learner.observe(omega, math.log(RTOL) / math.log(float(relax.sor_rate(omega, mu))), True)
    fitted, excess = learner.fit()
    np.testing.assert_allclose(fitted, mus, rtol=1e-9)
    assert learner.sides == [0, 0, 0, 0] and np.all(excess == 0)
    # right of the optimum the count depends on omega only: the bound (optimum = omega) is imputed
    mu = 0.99
    omega = (float(relax.optimal_omega(mu)) + 2) / 2
    learner.observe(omega, 1.1 * math.log(RTOL) / math.log(omega - 1), True)
    fitted, excess = learner.fit()
    assert learner.sides[-1] == 1 and excess[-1] == pytest.approx(0.1, rel=1e-12)
    assert float(relax.optimal_omega(fitted[-1])) == pytest.approx(omega, rel=1e-12) and fitted[-1] > mu


def test_relaxation_features_exact():
    A = np.array([[2.0, -1.0], [-3.0, 2.0]])
    lower_upper, skew = relax.relaxation_features(sp.csr_matrix(A))
    assert lower_upper == pytest.approx(math.log10(3.0), rel=1e-14)
    # ||A - A^T||_F = sqrt(2 * 2^2), ||A + A^T||_F = sqrt(4 * 4^2)
    assert skew == pytest.approx(math.sqrt(8) / 8, rel=1e-14)
    assert np.allclose(relax.relaxation_features(tridiagonal_poisson(5)), [0.0, 0.0])


# ---------------------------------------------------------------- synthetic costs with a known best


def bernoulli_run(seed: int, T: int, means: np.ndarray) -> np.ndarray:
    """Cumulative pseudo-regret of Tsallis-INF on Bernoulli losses (scale 1: loss = iterations in {0, 1})."""
    learner = relax.TsallisInf(relax.default_grid(0.5)[: means.size], rng=np.random.default_rng(seed), scale=1.0)
    draws = np.random.default_rng(1000 + seed)
    regret = np.empty(T)
    total = 0.0
    for t in range(T):
        omega = learner.choose()
        i = int(np.argmin(np.abs(learner.omegas - omega)))
        total += means[i] - means.min()
        regret[t] = total
        learner.observe(omega, int(draws.random() < means[i]), True)
    return regret


def test_tsallis_inf_regret_within_its_bound_and_sublinear():
    means = np.array([0.8, 0.7, 0.6, 0.3, 0.5, 0.6, 0.7, 0.8])
    K, T = means.size, 2000
    regret = np.mean([bernoulli_run(seed, T, means) for seed in range(3)], axis=0)
    # Zimmert & Seldin (2021), Thm. 1: pseudo-regret <= 4 sqrt(K T) + 1 for losses in [0, 1]
    assert regret[-1] <= 4 * math.sqrt(K * T) + 1
    # sublinear: the average regret per round falls as T grows
    assert regret[-1] / T < regret[T // 8 - 1] / (T // 8)


def test_tsallis_inf_choices_are_deterministic_for_a_seed():
    def choices(seed):
        learner = relax.TsallisInf(rng=np.random.default_rng(seed))
        out = []
        for t in range(40):
            omega = learner.choose()
            out.append(omega)
            learner.observe(omega, int(100 + 50 * abs(omega - 1.8)), True)
        return out

    assert choices(7) == choices(7)
    assert choices(7) != choices(8)


def unimodal_regret(T: int, seed: int) -> np.ndarray:
    """Cumulative regret of the unimodal bandit on cost 100 (1 + 2 |u - 2.6|) with 5% noise, against the
    best arm it can reach (the 1/16 lattice from -0.5: u = 2.625, cost 105)."""
    learner = relax.UnimodalOmegaBandit()
    noise = np.random.default_rng(seed)
    best = 100 * (1 + 2 * 0.025)
    regret, total = np.empty(T), 0.0
    for t in range(T):
        omega = learner.choose()
        cost = 100 * (1 + 2 * abs(float(relax.u_of(omega)) - 2.6))
        total += cost - best
        regret[t] = total
        learner.observe(omega, int(round(cost * (1 + 0.05 * noise.standard_normal()))), True)
    return regret


def test_unimodal_bandit_regret_is_sublinear_and_deterministic():
    regret = unimodal_regret(1600, seed=3)
    np.testing.assert_array_equal(regret, unimodal_regret(1600, seed=3))
    per_round = [regret[T - 1] / T for T in (100, 400, 1600)]
    assert per_round[0] > per_round[1] > per_round[2]
    # OSUB's regret is logarithmic once the walk to the optimum is done: quadrupling T far less
    # than doubles it (a sqrt(T) regret would double)
    assert regret[1599] < 1.5 * regret[399]


def model_counts(omega, mu, excess: float = 0.15):
    """Iterations of systems with Jacobi radius ``mu`` at ``omega`` as Young's model gives them, plus a
    transient of ``excess`` times the optimal count (as measured on 5-point problems right of the
    optimum); broadcasts, int for scalars."""
    mu = np.asarray(mu, dtype=float)
    optimal_count = math.log(RTOL) / np.log(2 / (1 + np.sqrt(1 - mu * mu)) - 1)
    counts = np.ceil(math.log(RTOL) / np.log(relax.sor_rate(omega, mu)) + excess * optimal_count).astype(int)
    return int(counts) if counts.ndim == 0 else counts


def best_fixed(lattice: np.ndarray, mus: np.ndarray) -> int:
    """Least total over the lattice of a fixed omega for systems ``mus``."""
    return int(model_counts(lattice[:, None], mus[None, :]).sum(axis=1).min())


def instance_optimal(lattice: np.ndarray, mus: np.ndarray) -> int:
    return int(model_counts(lattice[:, None], mus[None, :]).min(axis=0).sum())


def test_model_learner_matches_the_best_fixed_omega_on_model_costs():
    rng = np.random.default_rng(11)
    mus = rng.uniform(0.985, 0.995, 150)
    learner = relax.SORModelLearner(1.0, rtol=RTOL)
    total = 0
    for mu in mus:
        omega = learner.choose()
        count = model_counts(omega, mu)
        learner.observe(omega, count, True)
        total += count
    best = best_fixed(learner.lattice, mus)
    first = model_counts(1.0, mus[0])
    # Full information after the first (blind) system: follow-the-leader on i.i.d. costs pays the
    # first system plus a vanishing excess (1% allowed), and its probes: every 5th system 1/16 left
    # in u, where counts near the optimum are at most ~10% higher (2% of the total).
    assert total <= best + first + 0.03 * best


def test_contextual_learner_beats_the_best_fixed_omega_when_systems_differ():
    # Two kinds of systems, mu = 0.95 (omega* = 1.52) and 0.995 (omega* = 1.82), told apart by a feature.
    rng = np.random.default_rng(12)
    kinds = rng.integers(0, 2, 150)
    mus = np.where(kinds == 0, 0.95, 0.995)
    learner = relax.ContextualSORModelLearner(1.0, rtol=RTOL)
    total = 0
    for kind, mu in zip(kinds, mus):
        omega = learner.choose([float(kind)])
        count = model_counts(omega, mu)
        learner.observe(omega, count, True)
        total += count
    instance = instance_optimal(learner.lattice, mus)
    assert total < best_fixed(learner.lattice, mus)
    # after one blind system of each kind (at omega = 1), each kind is solved at its own optimum but
    # for the probes (3% as above)
    blind = model_counts(1.0, 0.95) + model_counts(1.0, 0.995)
    assert total <= instance + blind + 0.03 * instance


# ---------------------------------------------------------------- a real sequence


def darcy_like(n: int, rng: np.random.Generator) -> sp.csr_matrix:
    """-div(a grad u) on an n x n grid, 5-point, a lognormal per node with harmonic-mean faces."""
    a = np.exp(rng.standard_normal((n, n)))
    N = n * n
    idx = np.arange(N).reshape(n, n)
    rows, cols, vals = [], [], []
    diag = np.zeros((n, n))
    for di, dj in ((0, 1), (1, 0)):
        p = idx[: n - di, : n - dj].ravel()
        q = idx[di:, dj:].ravel()
        face = 2 / (1 / a[: n - di, : n - dj] + 1 / a[di:, dj:])
        rows += [p, q]
        cols += [q, p]
        vals += [-face.ravel(), -face.ravel()]
        diag[: n - di, : n - dj] += face
        diag[di:, dj:] += face
    # Dirichlet faces on the boundary carry the node's own coefficient
    boundary = np.zeros((n, n))
    boundary[0, :] += a[0, :]
    boundary[-1, :] += a[-1, :]
    boundary[:, 0] += a[:, 0]
    boundary[:, -1] += a[:, -1]
    rows.append(idx.ravel())
    cols.append(idx.ravel())
    vals.append((diag + boundary).ravel())
    return sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(N, N))


def test_model_learner_within_ten_percent_of_the_best_fixed_omega_on_a_darcy_sequence():
    rng = np.random.default_rng(20)
    n, T = 12, 50
    systems = [darcy_like(n, rng) for _ in range(T)]
    b = np.ones(n * n)
    learner = relax.SORModelLearner(1.0, rtol=RTOL)
    total = 0
    first = None
    for A in systems:
        omega = learner.choose()
        result = sor(A, b, omega=omega, rtol=RTOL)
        assert result.status.converged
        learner.observe(omega, result.iterations, True)
        total += result.iterations
        first = result.iterations if first is None else first
    # the best fixed omega on the 1/16 lattice of u = -log2(2 - omega) around the optimum
    # (omega* of a 12 x 12 grid is about 2 / (1 + sin(pi / 13)) = 1.62, u = 1.4)
    grid = relax.omega_of(np.arange(1.0, 2.25 + 1e-9, 1 / 16))
    totals = [sum(sor(A, b, omega=float(w), rtol=RTOL).iterations for A in systems) for w in grid]
    best = min(totals)
    assert 0 < int(np.argmin(totals)) < grid.size - 1        # the grid brackets the best fixed omega
    # the first system is solved blind at omega = 1; after it the learner has full information from
    # Young's model, which fits 5-point matrices: the benchmark's 10% target is kept on the rest
    assert total <= 1.10 * best + first


def test_batch_sor_learns_omega_with_the_contextual_model_learner(monkeypatch):
    # solve --batch -m sor runs ContextualSORModelLearner (features of each system as its context);
    # the spy records the learner the runner builds and what it was told.
    import matcli
    from matcli.jobs import solve_batch

    made = []
    real = solve_batch.omega_learner

    def spy(plan, solver):
        made.append(real(plan, solver))
        return made[-1]

    monkeypatch.setattr(solve_batch, "omega_learner", spy)
    rng = np.random.default_rng(21)
    matrices = [darcy_like(10, rng) for _ in range(6)]
    out = matcli.solve(matrices, np.ones(100), batch=True, method="sor", rtol=RTOL, seed=1)
    assert out.converged
    assert len(made) == 1 and isinstance(made[0], relax.ContextualSORModelLearner)
    assert len(made[0].history) == 6 and len(made[0].features) == 6
    assert len({omega for omega, _ in made[0].history}) > 1     # it moved from the initial omega
    omegas = [entry["omega"] for entry in out.report["info"]["systems"]]
    assert omegas == [omega for omega, _ in made[0].history]
