"""Adapter of ``matcli complete``: read observed entries, split a validation set, pick the method,
rank and regularisation, fit, score test entries and write predictions.

Options (``request.options``, a :class:`~matcli.jobs.options.CompleteOptions`): ``rank`` (int or "auto", the default), ``reg`` (float, "auto" or
None = "auto" for every method that takes one), ``bias`` (bool, or None: on for ratings only),
``validate`` (held-out fraction, 0 = none), ``test`` (spec or None), ``predict`` (spec or None),
``predictions_out`` (path or None), ``clip`` ((lo, hi) or None), ``maxiter`` (int or None),
``rtol`` (float), ``shape`` ((m, n) or None).

Ids: the model has one factor row per row id the training file keeps (:mod:`matcli.io.ids`: the
whole id space when that costs at most twice the observed ids, e.g. 943 x 1682 for MovieLens,
otherwise only the observed ids) and stores their ids as ``row_ids`` / ``col_ids`` (uint64,
1-based: the ratings file's ids, MatrixMarket row numbers, HDF5 index + 1). Test and predict
entries are mapped through these ids; an id without a factor row is predicted from the biases
alone. Predictions are written with the ids as given.

Defaults (``--method auto --rank auto --reg auto``, biases for ratings only): observed values on a
few levels (ratings such as 1..5 stars, see :func:`looks_like_ratings`) are noisy by construction,
and Bayesian averaging (bpmf-implicit, rank ``BPMF_RANK``) predicts them best; any other data is fitted
without biases (a mean and row/column offsets are two more rank-one terms, which the rank search
finds when the data has them, and which otherwise leave flat directions that slow ALS down) by
ALS with the rank and then the ridge weight chosen by validation RMSE on ``AUTO_VALIDATE`` of the
entries, which finds reg 0 (exact interpolation) on exactly low-rank data and a small reg on noisy
data.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from matcli.core.errors import InputError, UsageError
from matcli.core.registry import get_spec
from matcli.core.result import Callback, Result, no_callback
from matcli.io.guard import check_allocation
from matcli.jobs.base import FamilyJob
from matcli.methods.complete.specs import DEFAULT_MAXITER, DEFAULT_REG

if TYPE_CHECKING:
    from matcli.io.ids import IdAxis
    from matcli.io.load import Observed
    from matcli.methods.complete.common import Heldout

#: Candidate ranks and ridge weights (multiples of the method's ``DEFAULT_REG``) tried by
#: ``--rank auto`` / ``--reg auto``: steps of 2 around the default for noisy data, of 4 down to
#: 1/4096 of it, and 0 for data that is exactly low rank (the fit then interpolates).
RANK_GRID = (1, 2, 3, 5, 8, 12, 16, 24)
REG_FACTORS = (4.0, 2.0, 1.0, 1 / 2, 1 / 4, 1 / 16, 1 / 64, 1 / 256, 1 / 1024, 1 / 4096, 0.0)
#: ``--method auto`` treats the values as ratings (and fits bpmf) when they take at most
#: ``RATING_LEVELS`` distinct values, each seen ``RATING_ENTRIES_PER_LEVEL`` times on average.
RATING_LEVELS = 10
RATING_ENTRIES_PER_LEVEL = 100
#: bpmf's rank under ``--rank auto``: averaging over posterior samples keeps a larger rank from
#: overfitting, so the rank is a cost choice: on MovieLens 100k u1..u5 rank 8 and rank 10 both
#: reach mean test RMSE 0.901, rank 8 in half the time.
BPMF_RANK = 8
#: Methods that average posterior samples (no --reg; rank ``BPMF_RANK`` under --rank auto; the
#: written factors stack the samples).
BAYESIAN_METHODS = ("bpmf", "bpmf-implicit")
#: ``--method auto`` fits bpmf-implicit to ratings up to this min(m, n) (its dense Gram matrix of
#: the implicit features: 200 MB and a few seconds of Cholesky at 5000), bpmf beyond.
IMPLICIT_MAX_SIDE = 5000
#: Held-out scores below this multiple of the root mean square of the values count as exact
#: predictions (rounding), tied with each other.
EXACT_SCORE = 1e-8
#: Validation score each method is selected by (robust: the median absolute error, which the
#: outliers among the held-out entries do not move; others: the RMSE).
SCORE_METRIC = {"robust": "val_median_abs_error"}
#: Rank at or below which ``auto`` uses exact half-steps (stacked small solves beat CG there).
EXACT_RANK_LIMIT = 24
#: Fits stop as converged (``converged_atol``) once the training RMSE is below this multiple of
#: the root mean square of the observed values: the observations are interpolated to rounding.
INTERPOLATION_TOL = 1e-10
#: Validation fraction used by ``auto`` selection when ``--validate`` is not given.
AUTO_VALIDATE = 0.1
#: Arrays of ``rank + 8`` floats per factor row a fit holds at once (see :func:`factor_bytes`).
WORK_COLUMNS = 8
#: Methods a parallel backend runs as one distributed fit (half-steps over blocks of the entries on
#: the workers, :mod:`matcli.methods.complete.als_blocks`); the others only spread ``auto``'s fits.
DISTRIBUTED_METHODS = ("als", "als-exact")
#: Training entries from which ALS on a parallel backend is one distributed fit. Each half-step is a
#: round trip to the cluster: on 1e6 ratings 2 workers took 2.2x the time of one process, on 1e7
#: 0.53x (benchmarks/bench_als_distributed.py). Below it, ALS's auto candidates are fitted side by
#: side on the workers and a fixed fit runs in this process. $MATCLI_DISTRIBUTED_ALS_MIN_ENTRIES
#: overrides it (tuning for a cluster with faster round trips; the tests).
DISTRIBUTED_ALS_MIN_ENTRIES = 1 << 22


def distributed_als_min_entries() -> int:
    """:data:`DISTRIBUTED_ALS_MIN_ENTRIES`, or ``$MATCLI_DISTRIBUTED_ALS_MIN_ENTRIES`` (a non-negative integer)."""
    text = os.environ.get("MATCLI_DISTRIBUTED_ALS_MIN_ENTRIES", "").strip()
    if not text:
        return DISTRIBUTED_ALS_MIN_ENTRIES
    if not text.isdigit():
        raise UsageError(f"$MATCLI_DISTRIBUTED_ALS_MIN_ENTRIES={text!r}: expected a non-negative integer")
    return int(text)


class Job(FamilyJob):
    family = "complete"

    def __init__(self, request):
        super().__init__(request)
        self.observed = None
        self.rank_rule = None
        self._generators: dict[tuple[int, float], np.random.Generator] = {}
        self.reg_scored_entries: int | None = None
        self.test = None
        self.pairs = None
        self.predictions: np.ndarray | None = None
        self.split: dict[str, Any] = {}
        self.distributed = False
        self._source = None
        self._runners: dict[str, Any] = {}

    def input_paths(self) -> list[str]:
        from matcli.io.spec import parse_spec

        opts = self.request.options
        specs = list(self.request.inputs) + [s for s in (opts.test, opts.predict) if s]
        return [parse_spec(s).path for s in specs]

    def side_outputs(self) -> dict[str, str]:
        path = self.request.options.predictions_out
        return {"--predictions-out": path} if path else {}

    def output_arrays(self) -> tuple[str, ...] | None:
        # Before reading, the default bias (None: decided from the values) may or may not write them.
        biases = ("mu", "row_bias", "col_bias") if self.request.options.bias is not False else ()
        return ("U", "V", *biases, "row_ids", "col_ids")

    # ---------------------------------------------------------------- read
    def read(self) -> None:
        from matcli.io.load import read_observed

        opts = self.request.options
        if len(self.request.inputs) != 1:
            raise UsageError("complete takes exactly one observed-entries input")
        self.observed = read_observed(self.request.inputs[0], opts.shape)
        if opts.test:
            self.test = read_observed(opts.test, training=self.observed)
        if opts.predict:
            self.pairs = read_pairs(opts.predict, self.observed.row_ids, self.observed.col_ids)

    # ---------------------------------------------------------------- validate
    def validate(self) -> None:
        opts = self.request.options
        obs = self.observed
        m, n = obs.shape
        if obs.nnz == 0:
            raise InputError(obs.path, "no observed entries")
        rank = opts.rank
        if rank != "auto" and not 1 <= int(rank) <= min(m, n):
            raise UsageError(f"--rank {rank}: must be between 1 and min(m, n) = {min(m, n)}")
        clip = opts.clip
        if clip is not None and not clip[0] < clip[1]:
            raise UsageError(f"--clip {clip[0]},{clip[1]}: need lo < hi")
        if self.pairs is not None and not opts.predictions_out:
            raise UsageError("--predict needs --predictions-out FILE")
        if opts.predictions_out and self.pairs is None:
            raise UsageError("--predictions-out needs --predict PAIRS")

    # ---------------------------------------------------------------- setup
    def setup(self, rng: np.random.Generator) -> None:
        opts = self.request.options
        obs = self.observed
        m, n = obs.shape
        self.rng = rng
        rank_opt, reg_opt = opts.rank, opts.reg
        ratings = looks_like_ratings(obs.values)
        if self.method == "auto":
            self.method, self.choice_reason = _choose_method(obs.values, rank_opt, ratings, obs.shape)
        self.bias = ratings if opts.bias is None else bool(opts.bias)
        takes_reg = DEFAULT_REG[self.method] is not None
        if not takes_reg and reg_opt not in (None, "auto"):
            raise UsageError(f"--reg does not apply to method {self.method} (it learns its regularisation)")
        if not takes_reg:
            reg_opt = None
        if takes_reg and reg_opt in (None, "auto"):
            # A method whose default is no regularisation (an exact model) has nothing to choose.
            reg_opt = "auto" if DEFAULT_REG[self.method] else DEFAULT_REG[self.method]
        if self.method in BAYESIAN_METHODS and rank_opt == "auto":
            rank_opt = min(BPMF_RANK, m, n)
            self.rank_rule = (f"{self.method} under --rank auto: rank min({BPMF_RANK}, m, n) = {rank_opt} (posterior "
                              "averaging keeps a larger rank from overfitting)")
        self.auto = [name for name, value in (("rank", rank_opt), ("reg", reg_opt)) if value == "auto"]
        fraction = float(opts.validate)
        if self.auto and fraction == 0.0:
            fraction = AUTO_VALIDATE
        parallel_als = self.request.backend != "local" and self.method in DISTRIBUTED_METHODS
        self.distributed = parallel_als and obs.nnz >= distributed_als_min_entries()
        if parallel_als and not self.distributed:
            self.choice_reason = "; ".join(filter(None, [self.choice_reason, (
                f"{obs.nnz} entries, fewer than the {distributed_als_min_entries()} from which ALS is distributed "
                "(each half-step a round trip to the cluster costs more than the fit): "
                + ("the candidates are fitted side by side on the workers" if self.auto else
                   "fitted in this process"))]))
        elif self.request.backend != "local" and not self.auto and not self.distributed:
            raise UsageError(f"--backend {self.request.backend} runs ALS (als, als-exact) on the workers, and for other "
                             f"methods only the validation fits of --rank auto / --reg auto; {self.method} with a fixed "
                             "rank and regularisation has no distributed form (drop --backend, or use --method als)")
        self.split = _split(obs.nnz, fraction, rng)
        largest = min(max(RANK_GRID) if rank_opt == "auto" else int(rank_opt), m, n)
        self.spec = get_spec("complete", self.method)
        self.params = self.spec.resolve_params(list(self.request.params))
        check_allocation(obs.path, factor_bytes(m, n, largest, self.method, self.params.get("samples", 0)),
                         f"{self.method} factors of {m} x {n} factor rows at rank {largest}")
        self.resolved_params = {
            "rank": rank_opt, "reg": reg_opt,
            "bias": self.bias, "validate": fraction,
            "maxiter": int(opts.maxiter or DEFAULT_MAXITER[self.method]), "rtol": float(opts.rtol),
            "clip": list(opts.clip) if opts.clip else None, **self.params,
        }
        self.atol = INTERPOLATION_TOL * float(np.sqrt(np.mean(obs.values**2)))
        self.problem_info = {
            "shape": [m, n], "id_space": list(obs.id_space),
            "compacted": {"rows": obs.row_ids.compacted, "cols": obs.col_ids.compacted},
            "observed": obs.nnz, "sampling_rate": obs.nnz / (float(m) * n),
            "value_range": [float(obs.values.min()), float(obs.values.max())],
            "train_entries": obs.nnz - int(self.split["val"].size), "validation_entries": int(self.split["val"].size),
        }
        if self.test is not None:
            self.problem_info["test_entries"] = self.test.nnz
            self.problem_info["test_entries_bias_only"] = _bias_only(self.test.rows, self.test.cols)
        if self.pairs is not None:
            self.problem_info["prediction_pairs"] = int(self.pairs.rows.size)
            self.problem_info["prediction_pairs_bias_only"] = _bias_only(self.pairs.rows, self.pairs.cols)

    # ---------------------------------------------------------------- compute
    def compute(self, callback: Callback) -> Result:
        try:
            if self.request.threads is not None:
                return self._compute(callback)
            # The dense work here is batched k x k algebra and tall-skinny products, which run slower
            # with several BLAS threads (measured 2x on MovieLens); --threads N overrides this.
            from threadpoolctl import threadpool_limits

            # Import the kernel first: threadpool_limits limits only the BLAS libraries already
            # loaded, and a kernel importing scipy.linalg would otherwise load scipy's own OpenBLAS
            # with every thread (2 threads spinning on a loaded machine: a 943 x 943 Cholesky 2.5 s).
            self.spec.load()
            with threadpool_limits(limits=1, user_api="blas"):
                result = self._compute(callback)
            result.info["blas_threads"] = 1
            return result
        finally:
            self._release_blocks()

    def _compute(self, callback: Callback) -> Result:
        from matcli.methods.complete.common import FactorModel, Heldout, rmse

        obs = self.observed
        p = self.resolved_params
        clip = tuple(p["clip"]) if p["clip"] else None
        train, val = self.split["train"], self.split["val"]
        heldout = Heldout(obs.rows[val], obs.cols[val], obs.values[val]) if val.size else None
        selection: list[dict[str, Any]] = []
        rank, reg = p["rank"], p["reg"]
        if self.auto:
            rank, reg, selection = self._select(train, heldout, clip)
            p["rank"], p["reg"] = rank, reg
        # After selecting by validation, refit on every observed entry with the chosen values.
        fit_idx = None if self.auto else train
        fit_heldout = None if self.auto else heldout
        sweep_times: list[float] = []
        result = self._fit(fit_idx, fit_heldout, clip, int(rank), reg, _timed(callback, sweep_times))
        if sweep_times:
            result.info["seconds_per_sweep"] = float(np.mean(sweep_times))
        refit = True
        if self.auto:
            chosen = [row for row in selection if row["rank"] == rank and row["reg"] == reg]
            if not result.status.converged and chosen and chosen[0]["converged"]:
                # The refit on every entry did not converge where the validated fit on the
                # training split did (ALS at a small ridge weight converges sublinearly and
                # erratically): write the validated fit, with its own status.
                validated = self._fit(train, heldout, clip, int(rank), reg, no_callback, self._generators[(rank, reg)])
                validated.info["refit_status"] = result.status.reason
                result, fit_idx, refit = validated, train, False
            if chosen:
                result.metrics["val_rmse"] = chosen[0]["val_rmse"]
                if chosen[0]["baseline_val_rmse"] is not None:
                    result.metrics["baseline_val_rmse"] = chosen[0]["baseline_val_rmse"]
            result.info["selection"] = selection
            result.info["selected"] = {"rank": rank, "reg": reg, "refit_on_all_entries": refit,
                                       "score": SCORE_METRIC.get(self.method, "val_rmse")}
        model = FactorModel.from_outputs(result.outputs)
        if heldout is not None and "baseline_val_rmse" not in result.metrics:
            result.metrics["baseline_val_rmse"] = _baseline_rmse(obs, train, heldout, clip)
        if self.rank_rule:
            result.info["rank_rule"] = self.rank_rule
        if self.reg_scored_entries is not None:
            result.info["selected"]["reg_scored_entries"] = self.reg_scored_entries
        result.outputs["row_ids"] = obs.row_ids.ids()
        result.outputs["col_ids"] = obs.col_ids.ids()
        if self.test is not None:
            err = model.predict_mapped(self.test.rows, self.test.cols, clip) - self.test.values
            result.metrics["test_rmse"] = rmse(err)
            result.metrics["test_mae"] = float(np.mean(np.abs(err)))
        if self.pairs is not None:
            self.predictions = model.predict_mapped(self.pairs.rows, self.pairs.cols, clip)
        rows_seen = np.bincount(_subset(obs.rows, fit_idx), minlength=obs.shape[0]) > 0
        cols_seen = np.bincount(_subset(obs.cols, fit_idx), minlength=obs.shape[1]) > 0
        result.info["rows_without_observations"] = int(np.sum(~rows_seen))
        result.info["cols_without_observations"] = int(np.sum(~cols_seen))
        result.info["final_fit_sweeps"] = result.iterations
        if self.auto:
            result.info["note"] = f"compute time includes {len(selection)} selection fits before the final fit"
        return result

    def _fit(self, idx: np.ndarray | None, heldout, clip, rank: int, reg: float, callback: Callback,
             rng: np.random.Generator | None = None) -> Result:
        """Run the kernel on the entries ``idx`` (None: all of them, without copying), with the
        job's generator unless ``rng``; distributed ALS on a parallel backend."""
        rng = self.rng if rng is None else rng
        if self.distributed:
            return self._fit_blocks(idx, heldout, clip, rank, reg, rng, callback)
        return self._task(idx, heldout, clip).run(rank, reg, rng, callback)

    def _fit_blocks(self, idx: np.ndarray | None, heldout, clip, rank: int, reg: float, rng: np.random.Generator,
                    callback: Callback) -> Result:
        """ALS on the entries ``idx`` with its half-steps on the backend's workers: the same
        start, stopping rule and factors (bit for bit) as the local kernel
        (:func:`matcli.methods.complete.als_blocks.als_blocks`)."""
        from matcli.methods.complete.als_blocks import als_blocks

        runner, entries = self._block_runner(idx)
        p = self.resolved_params
        settings = {"bias": p["bias"], "maxiter": p["maxiter"], "rtol": p["rtol"], "atol": self.atol, **self.params}
        if self.method == "als-exact":
            settings["inner"] = "exact"
        return als_blocks(runner, entries, rank=rank, reg=reg, heldout=heldout, clip=clip, rng=rng, callback=callback,
                          **settings)

    def _block_runner(self, idx: np.ndarray | None) -> tuple[Any, Any]:
        """(the workers' blocks of the entries ``idx``, the entries on the client for the biases,
        counts and penalty), made once per job and entry set. The other set's blocks are
        released first: the workers hold the blocks of one set at a time."""
        key = "all" if idx is None else "train"
        if key not in self._runners:
            from matcli.backends.refs import reference
            from matcli.io.load import read_observed
            from matcli.jobs.complete_remote import DaskBlocks, observed_content
            from matcli.methods.complete.als_blocks import entry_set, plan_ranges

            self._release_blocks()
            obs = self.observed
            if self._source is None:
                self._source = reference(self.request.inputs[0], obs, read_observed,
                                         options=(self.request.options.shape,), content=observed_content)
            entries = entry_set(_subset(obs.rows, idx), _subset(obs.cols, idx), _subset(obs.values, idx), obs.shape)
            ranges = (plan_ranges(entries.row_counts, entries.nnz), plan_ranges(entries.col_counts, entries.nnz))
            bits = None
            if idx is not None:
                mask = np.zeros(obs.nnz, dtype=bool)
                mask[idx] = True
                bits = np.packbits(mask)
            self._runners[key] = (DaskBlocks(self.backend, self._source, bits, obs.nnz, ranges), entries)
        return self._runners[key]

    def _release_blocks(self) -> None:
        for runner, _ in self._runners.values():
            runner.close()
        self._runners = {}

    def _task(self, idx: np.ndarray | None, heldout, clip) -> FitTask:
        obs = self.observed
        p = self.resolved_params
        settings = {"bias": p["bias"], "maxiter": p["maxiter"], "rtol": p["rtol"], "atol": self.atol, **self.params}
        return FitTask(self.spec.load(), _subset(obs.rows, idx), _subset(obs.cols, idx), _subset(obs.values, idx),
                       obs.shape, heldout, clip, DEFAULT_REG[self.method] is not None, settings)

    def _select(self, train: np.ndarray | None, heldout, clip) -> tuple[int, float, list[dict[str, Any]]]:
        """Coordinate search on the validation score: rank first (at the given regularisation, or
        the method's default under ``--reg auto``; the smallest rank within one standard error of
        the best), then the regularisation at the chosen rank (the best score among the fits that
        converged, scored on the held-out entries the training split determines; the table's
        ``score`` of those rows is that RMSE).

        The candidate fits are independent, each with its own generator spawned from the job's: a
        candidate's score does not depend on which others ran or where. Under distributed ALS they
        run one after another, each over all the workers' blocks; otherwise they run through the
        backend side by side, ranks in rounds of ``backend.parallelism``. The stopping rule reads
        the scores in rank order, and fits of a round past the stop (``after_stop`` in the table)
        are not used, so every backend selects the same rank.
        """
        m, n = self.observed.shape
        p = self.resolved_params
        default_reg = DEFAULT_REG[self.method]
        reg = default_reg if p["reg"] == "auto" else p["reg"]
        rank = p["rank"]
        task = self._task(train, heldout, clip)
        if self.backend.name != "local" and not self.distributed:
            from matcli.jobs.complete_remote import fit_source

            # Workers read the observed entries themselves (once each); the task names them.
            task = fit_source(task, self.observed, self.request.inputs[0], self.request.options.shape, train)
        # One-standard-error rule: the RMSE estimated from N held-out entries has a relative
        # standard error of about 1 / sqrt(2 N); scores within it of the best are ties.
        tolerance = 1.0 + 1.0 / np.sqrt(2.0 * max(heldout.values.size, 1))
        # Scores at rounding level are all exact: none beats another.
        exact = EXACT_SCORE * float(np.sqrt(np.mean(self.observed.values ** 2)))
        metric = SCORE_METRIC.get(self.method, "val_rmse")
        table: list[dict[str, Any]] = []
        errors: dict[tuple[int, float], np.ndarray] = {}

        def score(candidates: list[tuple[int, float]]) -> list[dict[str, Any]]:
            seeded = [(k, lam, g) for (k, lam), g in zip(candidates, self.rng.spawn(len(candidates)))]
            # Untouched copies, to repeat a candidate's fit exactly (the refit's fallback).
            self._generators.update({(k, lam): copy.deepcopy(g) for k, lam, g in seeded})
            if self.distributed:
                # One candidate after another, each fit spread over the workers' blocks.
                outcomes = [_score_result(self._fit_blocks(train, heldout, clip, k, lam, g, no_callback), heldout,
                                          clip, metric) for k, lam, g in seeded]
            else:
                outcomes = self.backend.map(_score, seeded, task=task, metric=metric)
            rows = []
            for (k, lam), (sc, val, base, sweeps, ok, err) in zip(candidates, outcomes):
                rows.append({"rank": k, "reg": lam, "score": sc, "val_rmse": val, "baseline_val_rmse": base,
                             "sweeps": sweeps, "converged": ok, "after_stop": False})
                errors[(k, lam)] = err
            table.extend(rows)
            return rows

        def determined_score(row: dict[str, Any], keep: np.ndarray) -> float:
            err = errors[(row["rank"], row["reg"])][keep]
            return float(np.sqrt(np.mean(err * err))) if np.isfinite(err).all() else np.inf

        if rank == "auto":
            ranks = [k for k in RANK_GRID if k <= min(m, n)]
            width = 1 if self.distributed else self.backend.parallelism
            scores: dict[int, float] = {}
            worse = 0
            for begin in range(0, len(ranks), width):
                for row in score([(k, reg) for k in ranks[begin:begin + width]]):
                    if worse >= 2:
                        row["after_stop"] = True
                        continue
                    scores[row["rank"]] = row["score"]
                    if row["score"] <= min(scores.values()):
                        worse = 0
                    else:
                        worse += 1
                if worse >= 2:
                    break
            best = min(scores.values())
            rank = min(k for k, val in scores.items() if val <= tolerance * best + exact)
        if p["reg"] == "auto" and default_reg:
            done = {row["reg"]: row for row in table if row["rank"] == rank}
            fresh = [(rank, default_reg * f) for f in REG_FACTORS if default_reg * f not in done]
            rows = [*done.values(), *score(fresh)]
            # The ridge weight is compared on the held-out entries whose row and column keep more
            # training entries than a rank-k row has unknowns: elsewhere no fit is determined by the
            # training split (an exact model's reg 0 interpolates a square, possibly
            # ill-conditioned system there), while the refit on every entry may be.
            keep = self._determined(train, heldout, rank + int(p["bias"]))
            if np.count_nonzero(keep) < 2:
                keep = np.ones(heldout.values.size, dtype=bool)
            self.reg_scored_entries = int(np.count_nonzero(keep))
            if metric == "val_rmse":
                for row in rows:
                    row["score"] = determined_score(row, keep)
            # Only fits that converged within --maxiter are compared: a fit still moving is scored
            # where it stopped (small positive ridge weights converge sublinearly and overfit as
            # they go), and its refit would not converge either.
            pool = [row for row in rows if row["converged"]] or rows
            reg = min(pool, key=lambda row: row["score"])["reg"]
        return int(rank), float(reg), table

    def _determined(self, train: np.ndarray | None, heldout, unknowns: int) -> np.ndarray:
        """(V,) bool: the held-out entry's row and column each have more than ``unknowns``
        training entries."""
        m, n = self.observed.shape
        rows = np.bincount(_subset(self.observed.rows, train), minlength=m)
        cols = np.bincount(_subset(self.observed.cols, train), minlength=n)
        return (rows[heldout.rows] > unknowns) & (cols[heldout.cols] > unknowns)

    # ---------------------------------------------------------------- write
    def output_attributes(self, result: Result) -> dict[str, Any]:
        """The model file's description of itself (:func:`matcli.io.model.model_attributes`): the
        prediction formula, the clipping, rank, regularisation, biases and the id maps."""
        from matcli.io.model import model_attributes
        from matcli.methods.complete.common import FactorModel

        p = self.resolved_params
        rank, columns = int(p["rank"]), int(np.shape(result.outputs["U"])[1])
        stacked = None
        if columns != rank:
            stacked = (f"U and V hold {columns // rank} posterior samples of rank {rank} side by side, each scaled by "
                       "1/sqrt(samples), so U[i] . V[j] is the posterior mean" if self.method in BAYESIAN_METHODS else
                       f"U and V have {columns} columns for a fit of rank {rank}")
        return model_attributes(
            FactorModel.FORMULA, rank=rank, columns=columns, columns_meaning=stacked,
            reg=float(p["reg"]) if DEFAULT_REG[self.method] is not None else None, bias=bool(p["bias"]),
            clip=tuple(p["clip"]) if p["clip"] else None, id_space=self.observed.id_space,
            declared=self.observed.row_ids.declared)

    def draw(self, ax, result: Result) -> str:
        from matcli import plots

        if not plots.series(ax, result, ("train_rmse", "val_rmse"), "RMSE"):
            plots.no_history(ax, f"{self.method} recorded no per-sweep errors")
        m, n = self.observed.shape
        rank = self.resolved_params.get("rank")
        return f"matcli complete {self.method} ({m} x {n}, rank {rank}): {result.status.reason}"

    def write_extra(self, result: Result) -> dict[str, str]:
        if self.pairs is None or self.predictions is None:
            return {}
        from matcli.io.atomic import atomic_write
        from matcli.io.triplets import write_triplets

        path = self.request.options.predictions_out
        with atomic_write(path, force=self.request.force) as tmp:
            write_triplets(tmp, self.pairs.row_ids, self.pairs.col_ids, self.predictions)
        return {"predictions": path}


@dataclass(frozen=True)
class FitTask:
    """One kernel call but for rank, regularisation and generator: the training entries (rows,
    cols, values of equal length, 0-based, inside ``shape``), held-out entries, clipping and the
    remaining kernel keywords (``settings``). Picklable, so a backend can send it to its workers."""

    kernel: Callable[..., Result]
    rows: np.ndarray
    cols: np.ndarray
    values: np.ndarray
    shape: tuple[int, int]
    heldout: Heldout | None
    clip: tuple[float, float] | None
    with_reg: bool
    settings: dict[str, Any]

    def run(self, rank: int, reg: float, rng: np.random.Generator, callback: Callback = no_callback) -> Result:
        """Fit at ``rank`` (and ``reg`` when the method takes one)."""
        extra = {"reg": reg} if self.with_reg else {}
        return self.kernel(self.rows, self.cols, self.values, self.shape, rank=rank, **extra, heldout=self.heldout,
                           clip=self.clip, rng=rng, callback=callback, **self.settings)


def _score(candidate: tuple[int, float, np.random.Generator], task: FitTask,
           metric: str = "val_rmse") -> tuple[float, float, float | None, int, bool, np.ndarray]:
    """Backend task: (validation ``metric``, validation RMSE, the kernel's own baseline validation
    RMSE or None, sweeps, positive status, (V,) errors prediction - value on the held-out entries)
    of the fit at ``candidate`` = (rank, reg, generator). A fit without the metric (non-finite
    values) scores +inf. On a parallel backend ``task`` is a
    :class:`~matcli.jobs.complete_remote.FitSource`, loaded here into the client's ``FitTask``."""
    from matcli.jobs.complete_remote import FitSource

    rank, reg, rng = candidate
    if isinstance(task, FitSource):
        task = task.load()
    return _score_result(task.run(rank, reg, rng), task.heldout, task.clip, metric)


def _score_result(result: Result, held: Heldout, clip: tuple[float, float] | None,
                  metric: str) -> tuple[float, float, float | None, int, bool, np.ndarray]:
    """:func:`_score`'s tuple for a candidate's fitted ``result`` on the held-out entries ``held``."""
    from matcli.methods.complete.common import FactorModel

    value = float(result.metrics.get(metric, np.inf))
    errors = FactorModel.from_outputs(result.outputs).predict(held.rows, held.cols, clip) - held.values
    base = result.metrics.get("baseline_val_rmse")
    return ((value if np.isfinite(value) else np.inf), float(result.metrics.get("val_rmse", np.nan)),
            None if base is None else float(base), result.iterations, bool(result.status.converged), errors)


def looks_like_ratings(values: np.ndarray) -> bool:
    """True when the (N,) observed values take at most ``RATING_LEVELS`` distinct values with at
    least ``RATING_ENTRIES_PER_LEVEL`` entries per value on average: ratings on a scale (1..5 stars,
    half stars, likes), whose rounding alone is noise no exact low-rank model interpolates."""
    levels = np.unique(values).size
    return levels <= RATING_LEVELS and values.size >= RATING_ENTRIES_PER_LEVEL * levels


def _choose_method(values: np.ndarray, rank: int | str, ratings: bool,
                   shape: tuple[int, int] = (0, 0)) -> tuple[str, str]:
    """``--method auto``: (method, reason) from the observed values (``ratings``: they look like
    ratings), the requested rank and the (m, n) shape."""
    if ratings:
        levels = np.unique(values).size
        what = f"{values.size} values on {levels} levels look like ratings (noisy by rounding)"
        if min(shape) <= IMPLICIT_MAX_SIDE:
            return "bpmf-implicit", (
                f"{what}: the posterior mean of Bayesian SVD++ (bpmf-implicit: which entries each row and column has "
                "is information too) predicts them best (MovieLens 100k u1..u5: RMSE 0.893 against 0.901 for bpmf "
                "and 0.92 for ALS)")
        return "bpmf", (f"{what}: bpmf's posterior mean predicts them best (bpmf-implicit would factor a dense "
                        f"{min(shape)} x {min(shape)} Gram matrix, above {IMPLICIT_MAX_SIDE})")
    largest = max(RANK_GRID) if rank == "auto" else int(rank)
    what = f"ranks up to {largest} (--rank auto)" if rank == "auto" else f"rank {largest}"
    if largest <= EXACT_RANK_LIMIT:
        return "als-exact", (f"real-valued data, {what} <= {EXACT_RANK_LIMIT}: exact ALS half-steps (stacked "
                             f"{largest + 1}x{largest + 1} solves) cost about as much as a few CG steps")
    return "als", (f"real-valued data, {what} > {EXACT_RANK_LIMIT}: ALS with a few CG iterations per half-step "
                   "keeps a sweep at O(|Omega| k)")


def _baseline_rmse(obs: Observed, train: np.ndarray | None, heldout: Heldout,
                   clip: tuple[float, float] | None) -> float:
    """RMSE on the held-out entries of the better of two trivial predictors fitted on the training
    entries ``train``: the training mean, and the biases ``mu + b_i + c_j`` (damped means,
    :func:`~matcli.methods.complete.common.fit_biases`; on data without row or column offsets
    they fit noise and can lose to the mean). A completion must beat both."""
    from matcli.methods.complete.common import BASELINE_DAMPING, Entries, FactorModel, fit_biases, rmse

    entries = Entries(_subset(obs.rows, train), _subset(obs.cols, train), _subset(obs.values, train), obs.shape)
    mu, b, c = fit_biases(entries, entries.values, reg=BASELINE_DAMPING)
    m, n = obs.shape
    scores = []
    for row_bias, col_bias in ((np.zeros(m), np.zeros(n)), (b, c)):
        baseline = FactorModel(np.zeros((m, 0)), np.zeros((n, 0)), mu, row_bias, col_bias)
        scores.append(rmse(baseline.predict(heldout.rows, heldout.cols, clip) - heldout.values))
    return min(scores)


def _subset(array: np.ndarray, idx: np.ndarray | None) -> np.ndarray:
    return array if idx is None else array[idx]


def _timed(callback: Callback, seconds: list[float]) -> Callback:
    """Wrap ``callback`` to add ``sweep_seconds`` (wall time since the previous report) to each report."""
    import time

    last = [time.perf_counter()]

    def report(iteration: int, **values: float) -> None:
        now = time.perf_counter()
        seconds.append(now - last[0])
        last[0] = now
        callback(iteration, **values, sweep_seconds=seconds[-1])

    return report


def _split(count: int, fraction: float, rng: np.random.Generator) -> dict[str, np.ndarray | None]:
    """Random disjoint train/validation index sets (validation = round(fraction * count) entries);
    ``train`` is None (all entries) when nothing is held out."""
    n_val = int(round(fraction * count))
    if fraction > 0 and n_val == 0:
        n_val = 1
    if n_val == 0:
        return {"train": None, "val": np.empty(0, dtype=np.int64)}
    if n_val >= count:
        raise UsageError(f"--validate {fraction} leaves no training entries out of {count}")
    perm = rng.permutation(count)
    return {"train": np.sort(perm[n_val:]), "val": np.sort(perm[:n_val])}


@dataclass(frozen=True)
class Pairs:
    """Entries to predict: factor ``rows``/``cols`` (P,) int64 (-1: the id has no factor row) and
    the ``row_ids``/``col_ids`` (P,) uint64 they were given as (1-based), for the predictions file."""

    rows: np.ndarray
    cols: np.ndarray
    row_ids: np.ndarray
    col_ids: np.ndarray


def factor_bytes(m: int, n: int, rank: int, method: str, samples: int = 0) -> float:
    """Bytes a fit holds per factor row, times the m + n rows: about ``WORK_COLUMNS`` arrays of
    ``rank + 8`` columns (factors, the spectral initialisation's blocks, a CG half-step's vectors),
    plus, for bpmf, a k x k precision matrix per row and the ``samples`` kept factor draws."""
    per_row = WORK_COLUMNS * (rank + 8) + (rank * rank + rank * samples if method in BAYESIAN_METHODS else 0)
    # bpmf-implicit also factors a dense min(m, n)^2 Gram matrix of the implicit features, and the
    # dual solve holds a copy beside it.
    gram = 2.0 * min(m, n) ** 2 if method == "bpmf-implicit" else 0.0
    return 8.0 * ((m + n) * per_row + gram)


def _bias_only(rows: np.ndarray, cols: np.ndarray) -> int:
    return int(np.count_nonzero((rows < 0) | (cols < 0)))


def read_pairs(spec: str, row_ids: IdAxis, col_ids: IdAxis) -> Pairs:
    """Pairs to predict, mapped through a model's id maps ``row_ids`` / ``col_ids`` (the training
    file's): a text file of ``user item`` lines (:func:`matcli.io.triplets.read_pairs`; ids outside
    a declared id space are an InputError naming the line) or an HDF5 COO group / coordinate ``.mtx``.
    Used by ``complete --predict`` and ``matcli predict``, so both map ids alike."""
    from matcli.io.ids import check_extent
    from matcli.io.spec import parse_spec

    parsed = parse_spec(spec)
    line_of = None
    if parsed.kind in ("hdf5", "mtx"):
        from matcli.io.load import read_observed

        own = read_observed(spec)
        users, items = own.row_ids.ids()[own.rows], own.col_ids.ids()[own.cols]
    else:
        from functools import partial

        from matcli.io.triplets import line_of_entry
        from matcli.io.triplets import read_pairs as read_pair_lines

        users, items = read_pair_lines(parsed.path)
        line_of = partial(line_of_entry, parsed.path, min_columns=2)
    row_keys, col_keys = users - np.uint64(1), items - np.uint64(1)
    if row_ids.declared:
        check_extent(parsed.path, row_keys, col_keys, (row_ids.extent, col_ids.extent), "training matrix", line_of)
    return Pairs(row_ids.rows_of(row_keys), col_ids.rows_of(col_keys), users, items)
