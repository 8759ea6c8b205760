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
* :class:`ContextualOmegaBandit`: the contextual variant. Each system comes with a cheap feature
  vector (:func:`relaxation_features`, or a known parameter of the system); the arm statistics
  used by the unimodal rule are kernel-weighted averages over earlier systems with nearby features
  (Nadaraya-Watson), so systems that need different omegas learn separately while similar ones
  share their observations.

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
    ``min(1, iterations / (2 * N_1))`` with ``N_1`` the first system's count (1 when it did not
    converge). Zimmert & Seldin (JMLR 2021, Thm. 1): pseudo-regret <= ``4 sqrt(K T) + 1`` in these
    loss units, for any loss sequence.

    Parameters
    ----------
    omegas : (K,) the arms (default :func:`default_grid` with step 0.25, 27 arms).
    rng : the generator the arms are drawn with (choices are deterministic for a fixed seed).
    """

    def __init__(self, omegas=None, *, rng: np.random.Generator):
        self.omegas = np.asarray(default_grid(0.25) if omegas is None else omegas, dtype=float)
        self.rng = rng
        self.estimates = np.zeros(self.omegas.size)
        self.t = 1
        self.scale: float | None = None
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
            self.scale = 2.0 * max(iterations, 1) if converged else 1.0
        loss = min(1.0, _loss(iterations, converged) / self.scale) if self.scale > 1 else 1.0
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

    def _statistics(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.counts, self.sums, self.squares

    def _pick(self) -> int:
        counts, sums, squares = self._statistics()
        if not np.any(counts > 0):
            return self.first
        means = self._means(counts, sums)
        leader = int(np.argmin(means))
        if self._zoom(counts, means, leader):
            counts, sums, squares = self._statistics()
            means = self._means(counts, sums)
            leader = int(np.argmin(means))
        leads, play_leader = self._leadership(leader, counts)
        sigma = self._sigma(counts, sums, squares, float(means[leader]))
        return _unimodal_choice(counts, means, leads, sigma, play_leader)

    def _leadership(self, leader: int, counts: np.ndarray) -> tuple[float, bool]:
        """(rounds the leader has led, whether OSUB plays it this round)."""
        if leader != self.leader:
            self.leader, self.leads = leader, 0
        self.leads += 1
        return self.leads, self.leads % self.leader_period == 0

    def choose(self) -> float:
        """The omega for the next system."""
        i = self._pick()  # may zoom, which changes self.u
        return float(omega_of(self.u[i]))

    def _record(self, omega: float, iterations: int, converged: bool) -> int:
        if self.scale is None:
            self.scale = float(max(iterations, 1))
        i = int(np.argmin(np.abs(self.u - u_of(omega))))
        loss = _loss(iterations, converged) / self.scale
        self.counts[i] += 1
        self.sums[i] += loss
        self.squares[i] += loss * loss
        self.history.append((float(omega), int(iterations)))
        return i

    def observe(self, omega: float, iterations: int, converged: bool) -> None:
        """Record the outcome of a solve with ``omega`` (an arm :meth:`choose` returned)."""
        self._record(omega, iterations, converged)

    def best(self) -> float:
        """The arm of least mean loss so far (the initial omega before any observation)."""
        means = self._means(self.counts, self.sums)
        return float(omega_of(self.u[int(np.argmin(means)) if np.isfinite(means).any() else self.first]))


class ContextualOmegaBandit(UnimodalOmegaBandit):
    """The unimodal zooming learner with arm statistics local to each system's features.

    :meth:`choose` takes the system's feature vector ``z`` (d,). The statistics of arm ``i`` for it
    are sums over earlier systems ``s`` that played ``i``, weighted by
    ``exp(-|z - z_s|^2 / (2 h^2))`` in features standardised by their spread so far, with bandwidth
    ``h = bandwidth * T^(-1/(d + 4))`` (Silverman's rate for ``T`` earlier systems). With a constant
    feature every weight is 1 and the learner is :class:`UnimodalOmegaBandit`.
    """

    def __init__(self, initial: float | None = None, *, bandwidth: float = 1.0, **kwargs):
        super().__init__(initial, **kwargs)
        self.bandwidth = bandwidth
        self.features: list[np.ndarray] = []
        self.arms_played: list[float] = []
        self.losses: list[float] = []
        self._context: np.ndarray | None = None

    def _statistics(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        counts = np.zeros(self.u.size)
        sums = np.zeros(self.u.size)
        squares = np.zeros(self.u.size)
        if not self.features:
            return counts, sums, squares
        Z = np.vstack(self.features)
        spread = Z.std(axis=0)
        spread = np.where(spread > 1e-12 * np.maximum(np.abs(Z).max(axis=0), 1e-300), spread, np.inf)
        h = self.bandwidth * len(self.features) ** (-1.0 / (Z.shape[1] + 4))
        d2 = np.sum(((Z - self._context) / spread) ** 2, axis=1)
        w = np.exp(-d2 / (2 * h * h))
        arm = np.array([int(np.argmin(np.abs(self.u - a))) for a in self.arms_played])
        loss = np.asarray(self.losses)
        np.add.at(counts, arm, w)
        np.add.at(sums, arm, w * loss)
        np.add.at(squares, arm, w * loss * loss)
        # Arms whose weighted count is negligible count as untried for this context.
        counts = np.where(counts >= 0.05, counts, 0.0)
        return counts, np.where(counts > 0, sums, 0.0), np.where(counts > 0, squares, 0.0)

    def _leadership(self, leader: int, counts: np.ndarray) -> tuple[float, bool]:
        # A leadership streak has no meaning across contexts: the local effective number of
        # earlier systems takes the place of the round count, and the leader competes by its bound.
        return float(counts.sum()), False

    def choose(self, context=None) -> float:  # type: ignore[override]
        """The omega for the next system, whose features are ``context`` (d,)."""
        self._context = np.atleast_1d(np.asarray(context if context is not None else [0.0], dtype=float))
        return super().choose()

    def observe(self, omega: float, iterations: int, converged: bool) -> None:
        if self._context is None:
            raise ValueError("observe() follows a choose(context)")
        i = self._record(omega, iterations, converged)
        self.features.append(self._context)
        self.arms_played.append(float(self.u[i]))
        self.losses.append(_loss(iterations, converged) / self.scale)

    def best(self, context=None) -> float:  # type: ignore[override]
        """The arm of least local mean loss for ``context`` (global means when None)."""
        if context is None or not self.features:
            return super().best()
        self._context = np.atleast_1d(np.asarray(context, dtype=float))
        counts, sums, _ = self._statistics()
        means = self._means(counts, sums)
        return float(omega_of(self.u[int(np.argmin(means))]))


def relaxation_features(A) -> np.ndarray:
    """Cheap features of a square sparse or dense ``A`` for :class:`ContextualOmegaBandit`, (2,).

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
