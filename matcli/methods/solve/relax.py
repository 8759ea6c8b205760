"""Online learners of SOR's relaxation factor across a sequence of systems ("Learning to Relax").

Khodak, Chow, Balcan, Talwalkar, "Learning to Relax: Setting Solver Parameters Across a Sequence
of Linear System Instances" (ICLR 2024): the systems ``A_t x = b_t`` arrive one by one; before
solving system ``t`` a learner picks ``omega_t`` and afterwards sees only the iteration count
``N_t(omega_t)`` (bandit feedback). The goal is a total ``sum_t N_t(omega_t)`` close to that of the
best fixed omega in hindsight, ``min_omega sum_t N_t(omega)`` (the regret is the difference).

Learners (all pure: no clocks, no solves; the caller solves and reports the count):

* :class:`TsallisInf`: the paper's non-contextual learner, 1/2-Tsallis-INF (Zimmert & Seldin 2021)
  over a fixed omega grid: regret ``O(sqrt(K T))`` for any sequence, but ``K`` arms must each be
  sampled about ``sqrt(T / K)`` times, which short sequences (``T ~ 100``) cannot afford.
* :class:`UnimodalOmegaBandit`: exploits the shape of ``N(omega)``. For a consistently ordered
  matrix the SOR spectral radius decreases to Young's omega* and is ``omega - 1`` beyond it, so the
  iteration count is unimodal in omega; the learner runs OSUB (Combes & Proutiere, "Unimodal
  bandits", ICML 2014: UCB restricted to the leader and its grid neighbours, whose regret does not
  grow with the number of arms) and zooms, halving the grid spacing around a leader whose two
  neighbours are both worse, so the resolution is fine where it matters and coarse elsewhere.
  Same interface as ``matcli.methods.solve.batch.OmegaBandit`` (``choose()``,
  ``observe(omega, iterations, converged)``, ``best()``).
* :class:`SORModelLearner`: model-based. Young's theory of SOR turns the one count seen per
  system into that system's whole cost curve (the Jacobi radius the count implies), so the bandit
  feedback becomes full information and the learner follows the leader on the imputed totals;
  counts right of a system's optimum (the branch where they depend on omega alone) are recognised
  and only bound it. Exact for 5-point discretisations (consistently ordered; Darcy with any
  coefficients, upwind convection-diffusion), a heuristic elsewhere.
* :class:`ContextualSORModelLearner`: the contextual variant. Each system comes with a cheap feature
  vector (:func:`relaxation_features`, or known parameters of the system); the imputed totals weight
  earlier systems by the similarity of their features (Nadaraya-Watson), so systems that need
  different omegas get different choices.

Arms live on the coordinate ``u = -log2(2 - omega)`` (``omega = 2 - 2^-u``): the iteration count
near omega -> 2 grows like ``1 / (2 - omega)``, so equal steps in ``u`` change it by equal factors.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp

#: Loss of a solve that did not converge, relative to its iteration count (it was stopped, so the
#: count under-states the cost).
UNCONVERGED_FACTOR = 2.0


def omega_of(u):
    """Relaxation factor ``2 - 2^-u`` of the grid coordinate ``u`` (array or scalar)."""
    return 2.0 - np.exp2(-np.asarray(u, dtype=float))


def u_of(omega):
    """Grid coordinate ``-log2(2 - omega)`` of ``0 < omega < 2``."""
    return -np.log2(2.0 - np.asarray(omega, dtype=float))


def default_grid(step: float = 0.5, u_min: float = -0.5, u_max: float = 6.0) -> np.ndarray:
    """Omegas ``2 - 2^-u`` for ``u = u_min, u_min + step, ..., u_max`` (default: 0.586, 1, 1.29, ...,
    1.984; 14 arms)."""
    count = int(round((u_max - u_min) / step)) + 1
    return omega_of(u_min + step * np.arange(count))


def _loss(iterations: int, converged: bool) -> float:
    return float(iterations) * (1.0 if converged else UNCONVERGED_FACTOR)


class TsallisInf:
    """1/2-Tsallis-INF over a fixed grid of omegas (the paper's non-contextual learner).

    At round ``t`` the arm is drawn from ``p_i = 4 / (eta_t (L_i - x))^2`` with ``eta_t = 2 / sqrt(t)``,
    ``L`` the importance-weighted cumulative loss estimates and ``x`` the normaliser (``sum p = 1``,
    found by Newton's method). Losses must lie in [0, 1]: a solve costs
    ``min(1, iterations / scale)`` (unconverged: 1). Zimmert & Seldin (JMLR 2021, Thm. 1): pseudo-regret <= ``4 sqrt(K T) + 1`` in these
    loss units, for any loss sequence.

    Parameters
    ----------
    omegas : (K,) the arms (default :func:`default_grid` with step 0.25, 27 arms).
    rng : the generator the arms are drawn with (choices are deterministic for a fixed seed).
    scale : a solve's loss is ``min(1, iterations / scale)``; None: twice the first system's count.
    """

    def __init__(self, omegas=None, *, rng: np.random.Generator, scale: float | None = None):
        self.omegas = np.asarray(default_grid(0.25) if omegas is None else omegas, dtype=float)
        self.rng = rng
        self.estimates = np.zeros(self.omegas.size)
        self.t = 1
        self.scale = scale
        self._last: tuple[int, float] | None = None
        self.history: list[tuple[float, int]] = []

    def probabilities(self) -> np.ndarray:
        """(K,) the distribution the next arm is drawn from."""
        eta = 2.0 / math.sqrt(self.t)
        L = self.estimates
        # The normaliser x < min(L): from x = min L - 2/eta (p_min = 1, sum p >= 1) Newton's steps
        # on the convex increasing sum(p)(x) - 1 stay right of the root and converge monotonically.
        x = L.min() - 2.0 / eta
        for _ in range(50):
            p = 4.0 / (eta * (L - x)) ** 2
            excess = p.sum() - 1.0
            if abs(excess) < 1e-12:
                break
            x -= excess / (eta * np.sum(p ** 1.5))
        return p / p.sum()

    def choose(self) -> float:
        """The omega for the next system (drawn; remembered for :meth:`observe`)."""
        p = self.probabilities()
        i = int(self.rng.choice(p.size, p=p))
        self._last = (i, float(p[i]))
        return float(self.omegas[i])

    def observe(self, omega: float, iterations: int, converged: bool) -> None:
        """Record the solve with the omega :meth:`choose` returned."""
        if self._last is None or self.omegas[self._last[0]] != omega:
            raise ValueError("observe() takes the omega of the preceding choose()")
        i, p = self._last
        if self.scale is None:
            self.scale = 2.0 * max(iterations, 1) if converged else None
        loss = min(1.0, iterations / self.scale) if converged and self.scale else 1.0
        self.estimates[i] += loss / p
        self.t += 1
        self._last = None
        self.history.append((float(omega), int(iterations)))

    def best(self) -> float:
        """The most probable arm."""
        return float(self.omegas[int(np.argmax(self.probabilities()))])


def _unimodal_choice(counts: np.ndarray, means: np.ndarray, leads: float, sigma: float, play_leader: bool) -> int:
    """OSUB's rule on sorted arms: the index to play.

    ``leads``: how often the current leader (arm of least mean among the tried) has led, counting
    this round. Untried neighbours of the leader are tried first; then the leader when
    ``play_leader``; otherwise the neighbourhood {leader - 1, leader, leader + 1} is scored by the
    lower confidence bound ``mean - sigma sqrt(2 log(leads) / count)``.
    """
    tried = counts > 0
    leader = int(np.argmin(np.where(tried, means, np.inf)))
    hood = [j for j in (leader - 1, leader, leader + 1) if 0 <= j < counts.size]
    untried = [j for j in hood if not tried[j]]
    if untried:
        # The right one first: N(omega) falls steeply up to omega* and rises slowly beyond it, so a
        # walk from omega = 1 or from Young's (under-)estimate finds the optimum on the right.
        return untried[-1]
    if play_leader:
        return leader
    bonus = sigma * np.sqrt(2.0 * math.log(max(leads, 2)) / counts[hood])
    return hood[int(np.argmin(means[hood] - bonus))]


class UnimodalOmegaBandit:
    """OSUB with zooming over ``u = -log2(2 - omega)`` (see the module docstring).

    Parameters
    ----------
    initial : first omega to try (e.g. Young's estimate); added to the grid. None: omega = 1.
    step, u_min, u_max : the starting grid (:func:`default_grid`).
    min_step : the finest spacing zooming reaches (1/16: neighbouring omegas differ by 4.4% in
        ``2 - omega``, the iteration count by about as much).
    leader_period : the leader is played every ``leader_period``-th round of its leadership (OSUB's
        gamma + 1 with gamma = 2, the number of neighbours).
    refine_after : both neighbours of the leader are pulled this often before zooming in.

    The loss of a solve is its iteration count divided by the first system's (unconverged solves
    count :data:`UNCONVERGED_FACTOR` times). The confidence width uses the pooled standard deviation
    of the losses of repeatedly pulled arms, at least ``sigma_floor`` times the leader's mean (a 2%
    difference in iteration counts is within the noise until the samples say otherwise).

    Arm means pool different systems, so the walk and the zooming assume systems of similar
    difficulty: on a sequence whose counts differ several-fold between systems at the same omega
    (convection-diffusion with Peclet numbers from 1 to 100) one hard system can stop the walk far
    from the optimum (bench_relax: 4.7x the best fixed omega's iterations there, 1.06x on Darcy).
    """

    sigma_floor = 0.02

    def __init__(self, initial: float | None = None, *, step: float = 0.5, u_min: float = -0.5, u_max: float = 6.0,
                 min_step: float = 1.0 / 16, leader_period: int = 3, refine_after: int = 1):
        u = list(u_of(default_grid(step, u_min, u_max)))
        start = 0.0 if initial is None or not 0 < initial < 2 else float(u_of(initial))
        u.append(start)
        self.u = np.unique(np.round(np.asarray(u), 12))
        self.first = int(np.searchsorted(self.u, np.round(start, 12)))
        self.min_step = min_step
        self.leader_period = leader_period
        self.refine_after = refine_after
        self.counts = np.zeros(self.u.size)
        self.sums = np.zeros(self.u.size)
        self.squares = np.zeros(self.u.size)
        self.scale: float | None = None
        self.leader: int | None = None
        self.leads = 0
        self.history: list[tuple[float, int]] = []

    @property
    def omegas(self) -> np.ndarray:
        """(K,) the current arms (the grid grows as the learner zooms in)."""
        return omega_of(self.u)

    def _means(self, counts: np.ndarray, sums: np.ndarray) -> np.ndarray:
        return np.where(counts > 0, sums / np.maximum(counts, 1e-300), np.inf)

    def _sigma(self, counts: np.ndarray, sums: np.ndarray, squares: np.ndarray, level: float) -> float:
        """Pooled standard deviation of the losses of arms pulled at least twice, at least
        ``sigma_floor * level`` (``level``: the leader's mean loss)."""
        floor = self.sigma_floor * level
        many = counts >= 2
        if not many.any():
            return floor
        means = sums[many] / counts[many]
        ss = np.sum(squares[many] - counts[many] * means ** 2)
        dof = np.sum(counts[many] - 1)
        return max(floor, math.sqrt(max(ss, 0.0) / dof))

    def _zoom(self, counts: np.ndarray, means: np.ndarray, leader: int) -> bool:
        """Insert midpoints between the leader and its neighbours when both are pulled enough and
        worse than it (the optimum lies between them); True when the grid changed."""
        if not 0 < leader < self.u.size - 1:
            return False
        left, right = leader - 1, leader + 1
        if min(counts[left], counts[right]) < self.refine_after or not (means[left] > means[leader] < means[right]):
            return False
        new = [(self.u[j] + self.u[leader]) / 2 for j in (left, right)
               if self.u[leader] - self.u[j] > self.min_step * 1.5 or self.u[j] - self.u[leader] > self.min_step * 1.5]
        if not new:
            return False
        self._insert(new)
        return True

    def _insert(self, new: list[float]) -> None:
        for value in new:
            i = int(np.searchsorted(self.u, value))
            self.u = np.insert(self.u, i, value)
            for name in ("counts", "sums", "squares"):
                setattr(self, name, np.insert(getattr(self, name), i, 0.0))
            if self.leader is not None and i <= self.leader:
                self.leader += 1

    def _pick(self) -> int:
        if not np.any(self.counts > 0):
            return self.first
        means = self._means(self.counts, self.sums)
        leader = int(np.argmin(means))
        if self._zoom(self.counts, means, leader):
            means = self._means(self.counts, self.sums)
            leader = int(np.argmin(means))
        if leader != self.leader:
            self.leader, self.leads = leader, 0
        self.leads += 1
        sigma = self._sigma(self.counts, self.sums, self.squares, float(means[leader]))
        return _unimodal_choice(self.counts, means, self.leads, sigma, self.leads % self.leader_period == 0)

    def choose(self) -> float:
        """The omega for the next system."""
        i = self._pick()  # may zoom, which changes self.u
        return float(omega_of(self.u[i]))

    def observe(self, omega: float, iterations: int, converged: bool) -> None:
        """Record the outcome of a solve with ``omega`` (an arm :meth:`choose` returned)."""
        if self.scale is None:
            self.scale = float(max(iterations, 1))
        i = int(np.argmin(np.abs(self.u - u_of(omega))))
        loss = _loss(iterations, converged) / self.scale
        self.counts[i] += 1
        self.sums[i] += loss
        self.squares[i] += loss * loss
        self.history.append((float(omega), int(iterations)))

    def best(self) -> float:
        """The arm of least mean loss so far (the initial omega before any observation)."""
        means = self._means(self.counts, self.sums)
        return float(omega_of(self.u[int(np.argmin(means)) if np.isfinite(means).any() else self.first]))


def relaxation_features(A) -> np.ndarray:
    """Cheap features of a square sparse or dense ``A`` for :class:`ContextualSORModelLearner`, (2,).

    ``[log10 ||L||_F / ||U||_F, ||A - A^T||_F / ||A + A^T||_F]`` with ``L``, ``U`` the strictly
    lower and upper triangles: how much of the coupling a forward sweep sees already updated, and
    how far A is from symmetric (for convection-diffusion both follow the Peclet number and the
    flow direction). O(nnz) work, no products with A beyond the transpose.
    """
    from scipy.sparse.linalg import norm

    A = sp.csr_matrix(A)
    lower = sp.tril(A, -1)
    upper = sp.triu(A, 1)
    lo, up = norm(lower), norm(upper)
    tiny = np.finfo(float).tiny
    skew = norm(A - A.T) / max(norm(A + A.T), tiny)
    return np.array([math.log10(max(lo, tiny) / max(up, tiny)), skew])


#: A count at most this much above ``ln(rtol) / ln(omega - 1)`` is taken as right of the optimum
#: (counts there exceed that asymptotic value by 10-20% on 5-point problems, see
#: :class:`SORModelLearner`).
RIGHT_BRANCH_EXCESS = 0.3


def sor_rate(omega, mu):
    """Spectral radius of SOR for a consistently ordered matrix whose Jacobi matrix has real
    eigenvalues of largest modulus ``mu`` < 1 (Young): ``omega - 1`` from omega* on, else the
    largest root of ``(lambda + omega - 1)^2 = lambda omega^2 mu^2``. Broadcasts (omega, mu)."""
    omega, mu = np.broadcast_arrays(np.asarray(omega, dtype=float), np.asarray(mu, dtype=float))
    optimal = 2.0 / (1.0 + np.sqrt(1.0 - mu * mu))
    root = omega * mu + np.sqrt(np.maximum(omega * omega * mu * mu - 4.0 * (omega - 1.0), 0.0))
    return np.where(omega >= optimal, np.abs(omega - 1.0), (root / 2.0) ** 2)


def optimal_omega(mu):
    """Young's ``omega* = 2 / (1 + sqrt(1 - mu^2))`` (broadcasts)."""
    mu = np.asarray(mu, dtype=float)
    return 2.0 / (1.0 + np.sqrt(1.0 - mu * mu))


class SORModelLearner:
    """Follow the leader on iteration counts imputed from Young's theory of SOR.

    Model of system ``t`` (Jacobi radius ``mu_t``): ``N_t(omega) = ln(rtol) / ln(sor_rate(omega, mu_t))
    + e N*_t`` with ``N*_t`` the asymptotic count at ``omega*_t``. The second term is the transient of
    the SOR matrix's Jordan blocks near and right of omega* (the residual falls like
    ``k (omega - 1)^k``): measured on 5-point problems, 10-20% of ``N*`` right of the optimum,
    fading to the left. A count no more than :data:`RIGHT_BRANCH_EXCESS` above
    ``ln(rtol) / ln(omega - 1)`` lies right of the optimum, where the count depends on omega alone:
    it gives that system's ``e`` and bounds ``mu_t`` by the radius whose optimum is omega. A larger count is
    left of the optimum and gives ``mu_t`` (the model solved for it, with ``e`` the mean over the
    systems seen right of theirs). A system with only a bound takes the mean curve over the estimated
    distribution of ``mu`` below its bound (:meth:`curves`). Bandit feedback, one count per
    system, thus becomes the system's whole cost curve, and the learner plays the omega of least
    imputed total over the systems so far (on a lattice of ``u = -log2(2 - omega)`` in steps of 1/32).

    The model holds for 5-point (and other consistently ordered) discretisations whose Jacobi
    matrix is similar to a symmetric one: Darcy with any coefficients, upwind convection-diffusion
    with constant velocity (whose strong non-normality at high Peclet numbers adds transients the
    model does not have). :attr:`imputation_error` says how well it fits.

    Parameters
    ----------
    initial : the first omega (e.g. Young's estimate); None: 1.
    rtol : the relative residual every solve is run to.
    step, u_min, u_max : the lattice of candidate omegas in ``u``.
    probe_every, probe_steps : every ``probe_every``-th system is solved up to ``probe_steps``
        lattice points left of the leader (1/16 in ``u``: about 4% in ``2 - omega``) when the
        optimistic reading of the bounds would move left: the exploration that turns bounds into
        values.
    """

    def __init__(self, initial: float | None = None, *, rtol: float = 1e-8, step: float = 1.0 / 32,
                 u_min: float = -0.5, u_max: float = 6.0, probe_every: int = 5, probe_steps: int = 2):
        self.initial = 1.0 if initial is None or not 0 < initial < 2 else float(initial)
        self.probe_every, self.probe_steps = probe_every, probe_steps
        #: total weight of earlier systems below which the next one is solved at ``initial``
        self.min_weight = 0.0
        self.log_rtol = math.log(rtol)
        self.lattice = omega_of(u_min + step * np.arange(int(round((u_max - u_min) / step)) + 1))
        self.played: list[float] = []
        self.counts: list[float] = []
        #: per system: 0 left of its optimum, 1 right of it, 2 did not converge (omega > 1)
        self.sides: list[int] = []
        self.errors: list[float] = []
        self.history: list[tuple[float, int]] = []
        self._predicted: np.ndarray | None = None

    def _asymptotic(self, omega, mu) -> np.ndarray:
        return self.log_rtol / np.log(np.clip(sor_rate(omega, mu), 1e-300, 1.0 - 1e-15))

    def imputed(self, omega, mu, excess) -> np.ndarray:
        """Modelled iterations at ``omega`` for Jacobi radii ``mu`` and transients ``excess``
        (broadcast)."""
        return self._asymptotic(omega, mu) + np.asarray(excess) * self._asymptotic(optimal_omega(mu), mu)

    def _weights(self) -> np.ndarray:
        return np.ones(len(self.played))

    def fit(self, weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(mu, e) of every system so far under the model; ``weights`` average ``e`` over the systems
        seen right of their optimum (the value for the others)."""
        omega = np.asarray(self.played)
        count = np.asarray(self.counts)
        side = np.asarray(self.sides)
        weights = np.ones(omega.size) if weights is None else weights
        # the radius whose optimum is omega (0 for omega <= 1): mu_t is above it left of the optimum
        bound = np.where(omega > 1.0, np.sqrt(np.maximum(1.0 - ((2.0 - omega) / omega) ** 2, 0.0)), 0.0)
        right = np.where(omega > 1.0, self.log_rtol / np.log(np.clip(omega - 1.0, 1e-300, None)), 1.0)
        own = np.where(side == 1, count / right - 1.0, np.where(side == 2, UNCONVERGED_FACTOR - 1.0, np.nan))
        seen = side == 1
        fill = float(np.average(own[seen], weights=weights[seen])) if weights[seen].sum() > 0 else 0.0
        excess = np.where(np.isnan(own), fill, own)
        # Left of the optimum: the model's count increases with mu, so bisection on [bound, 1).
        lo, hi = bound.copy(), np.full(omega.size, 1.0 - 1e-12)
        for _ in range(60):
            mid = (lo + hi) / 2
            above = self.imputed(omega, mid, fill) > count
            hi, lo = np.where(above, mid, hi), np.where(above, lo, mid)
        mu = np.where(side == 0, (lo + hi) / 2, bound)
        return mu, excess

    def curves(self, omegas: np.ndarray, weights: np.ndarray, optimistic: bool = False) -> np.ndarray:
        """(len(omegas), systems so far): each system's modelled count at each omega.

        A system seen right of its optimum has only an upper bound on ``mu``; its curve is the mean
        over the distribution of ``mu`` below that bound, the distribution being the nonparametric
        maximum likelihood estimate from the known values and the bounds (Turnbull's
        self-consistency iteration for censored data, the systems weighted by ``weights``), whose
        support is the known values and the bounds (mass at a bound stands for "at most there",
        which over-states the cost only left of the omega that gave the bound). ``optimistic``: the
        bound systems take the curve of the least ``mu`` known instead (among systems of weight at
        least 1e-3 of the largest), the most favourable case for omegas left of the bounds."""
        mu, excess = self.fit(weights)
        omegas = np.asarray(omegas, dtype=float)[:, None]
        C = self.imputed(omegas, mu[None, :], excess[None, :])
        side = np.asarray(self.sides)
        censored = np.flatnonzero(side == 1)
        if censored.size == 0:
            return C
        if optimistic:
            relevant = (side == 0) & (weights >= 1e-3 * weights.max())
            if relevant.any():
                low = mu[relevant].min()
                C[:, censored] = self.imputed(omegas, low, excess[censored][None, :])
            return C
        used = side != 2
        support = np.unique(mu[used])
        member = mu[censored][:, None] >= support[None, :]                 # (censored, support)
        exact = np.zeros(support.size)
        np.add.at(exact, np.searchsorted(support, mu[side == 0]), weights[side == 0])
        wc = weights[censored]
        p = np.full(support.size, 1.0 / support.size)
        for _ in range(200):
            share = member * p
            share /= np.maximum(share.sum(axis=1, keepdims=True), 1e-300)
            new = (exact + wc @ share) / max(exact.sum() + wc.sum(), 1e-300)
            if np.abs(new - p).max() < 1e-8:
                p = new
                break
            p = new
        share = member * p
        share /= np.maximum(share.sum(axis=1, keepdims=True), 1e-300)
        A = self._asymptotic(omegas, support[None, :])                      # (omegas, support)
        O = self._asymptotic(optimal_omega(support), support)
        C[:, censored] = A @ share.T + (share @ O * excess[censored])[None, :]
        return C

    def _leader(self, probe: bool = False) -> float:
        if not self.played or self._weights().sum() < self.min_weight:
            return self.initial
        w = self._weights()
        costs = self.curves(self.lattice, w) @ w
        self._predicted = costs / w.sum()
        i = int(np.argmin(costs))
        if not probe:
            return float(self.lattice[i])
        # Systems whose optimum lies left of the omega they were solved at only bound mu. When the
        # most favourable case for them puts the best omega further left, a probe a little to the
        # left tells which have mu in that band (without probes the bounds never tighten).
        hopeful = int(np.argmin(self.curves(self.lattice, w, optimistic=True) @ w))
        return float(self.lattice[max(i - self.probe_steps, hopeful) if hopeful < i else i])

    def _probing(self) -> bool:
        return len(self.played) % self.probe_every == self.probe_every - 1

    def choose(self) -> float:
        """The omega for the next system."""
        return self._leader(self._probing())

    def observe(self, omega: float, iterations: int, converged: bool) -> None:
        """Record a solve with ``omega`` that took ``iterations`` sweeps (``converged``: it reached rtol).

        A solve with omega > 1 that did not converge (stopped, or diverging as strongly nonsymmetric
        systems can at large omega) is taken as right of its optimum with ``e = UNCONVERGED_FACTOR -
        1``; with omega <= 1 its count bounds mu from below and is used as if it had converged."""
        count = float(max(iterations, 1))
        if self._predicted is not None:
            # the mean modelled count over the earlier systems, computed by the choice of omega
            predicted = float(np.interp(u_of(omega), u_of(self.lattice), self._predicted))
            self.errors.append(abs(predicted - count) / count)
            self._predicted = None
        # omega* >= 1 for every mu: an omega <= 1 is never right of the optimum
        right = self.log_rtol / math.log(omega - 1.0) if omega > 1.0 else 0.0
        side = 2 if not converged and omega > 1.0 else (1 if count <= (1.0 + RIGHT_BRANCH_EXCESS) * right else 0)
        self.played.append(float(omega))
        self.counts.append(count)
        self.sides.append(side)
        self.history.append((float(omega), int(iterations)))

    @property
    def imputation_error(self) -> float | None:
        """Median relative error of the count predicted for the omega played, from the systems before
        (their mean curve: it includes how much the systems differ; None before two systems)."""
        return float(np.median(self.errors)) if self.errors else None

    def best(self) -> float:
        """The omega of least imputed total over the systems so far (``initial`` before any)."""
        return self._leader()


class ContextualSORModelLearner(SORModelLearner):
    """:class:`SORModelLearner` whose imputed totals weight each earlier system by the similarity of
    its features to the next system's: ``exp(-|z - z_s|^2 / (2 h^2))`` in features standardised by
    their spread so far, ``h = bandwidth * T^(-1/(d + 4))`` (Silverman's rate for ``T`` systems).
    Systems that need different omegas thus get different choices (the instance-optimal policy is
    the limit), while a constant feature gives :class:`SORModelLearner`. A system whose features are
    new (total weight of the earlier systems below ``min_weight``: fewer than one similar system) is
    solved at ``initial``: the choice made for other systems may lie right of its optimum, where its
    count would only bound its ``mu``.
    """

    def __init__(self, initial: float | None = None, *, bandwidth: float = 1.0, min_weight: float = 0.5,
                 **kwargs):
        super().__init__(initial, **kwargs)
        self.bandwidth = bandwidth
        self.min_weight = min_weight
        self.features: list[np.ndarray] = []
        self._context: np.ndarray | None = None

    def _weights(self) -> np.ndarray:
        if self._context is None or not self.features:
            return np.ones(len(self.played))
        Z = np.vstack(self.features)
        # the spread includes the new system, so a first system with other features is told apart
        spread = np.vstack([Z, self._context]).std(axis=0)
        spread = np.where(spread > 1e-12 * np.maximum(np.abs(Z).max(axis=0), 1e-300), spread, np.inf)
        h = self.bandwidth * len(self.features) ** (-1.0 / (Z.shape[1] + 4))
        d2 = np.sum(((Z - self._context) / spread) ** 2, axis=1)
        return np.exp(-d2 / (2 * h * h))

    def choose(self, context=None) -> float:  # type: ignore[override]
        """The omega for the next system, whose features are ``context`` (d,)."""
        self._context = np.atleast_1d(np.asarray(context if context is not None else [0.0], dtype=float))
        return self._leader(self._probing())

    def observe(self, omega: float, iterations: int, converged: bool) -> None:
        if self._context is None:
            raise ValueError("observe() follows a choose(context)")
        super().observe(omega, iterations, converged)
        self.features.append(self._context)

    def best(self, context=None) -> float:  # type: ignore[override]
        if context is not None:
            self._context = np.atleast_1d(np.asarray(context, dtype=float))
        return self._leader()
