"""Adapter of ``matcli complete``: read observed entries, split a validation set, pick the method,
rank and regularisation, fit, score test entries and write predictions.

Options (``request.options``): ``rank`` (int or "auto"), ``reg`` (float, "auto" or None for the
method default), ``bias`` (bool), ``validate`` (held-out fraction, 0 = none), ``test`` (spec or
None), ``predict`` (spec or None), ``predictions_out`` (path or None), ``clip`` ((lo, hi) or
None), ``maxiter`` (int or None), ``rtol`` (float), ``shape`` ((m, n) or None).

Ids: the model has one factor row per row id the training file keeps (:mod:`matcli.io.ids`: the
whole id space when that costs at most twice the observed ids, e.g. 943 x 1682 for MovieLens,
otherwise only the observed ids) and stores their ids as ``row_ids`` / ``col_ids`` (uint64,
1-based: the ratings file's ids, MatrixMarket row numbers, HDF5 index + 1). Test and predict
entries are mapped through these ids; an id without a factor row is predicted from the biases
alone. Predictions are written with the ids as given.
"""

from __future__ import annotations

import math
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
    from matcli.io.load import Observed
    from matcli.methods.complete.common import FactorModel, Heldout

#: Candidate ranks and ridge weights tried by ``--rank auto`` / ``--reg auto``.
RANK_GRID = (1, 2, 3, 5, 8, 12, 16, 24)
REG_FACTORS = (1 / 64, 1 / 16, 1 / 4, 1 / 2, 1.0, 2.0, 4.0)
#: Rank at or below which ``auto`` uses exact half-steps (stacked small solves beat CG there).
EXACT_RANK_LIMIT = 24
#: Fits stop as converged (``converged_atol``) once the training RMSE is below this multiple of
#: the root mean square of the observed values: the observations are interpolated to rounding.
INTERPOLATION_TOL = 1e-10
#: Validation fraction used by ``auto`` selection when ``--validate`` is not given.
AUTO_VALIDATE = 0.1
#: Arrays of ``rank + 8`` floats per factor row a fit holds at once (see :func:`factor_bytes`).
WORK_COLUMNS = 8


class Job(FamilyJob):
    family = "complete"

    def __init__(self, request):
        super().__init__(request)
        self.observed = None
        self.test = None
        self.pairs = None
        self.predictions: np.ndarray | None = None
        self.split: dict[str, Any] = {}

    def input_paths(self) -> list[str]:
        from matcli.io.spec import parse_spec

        opts = self.request.options
        specs = list(self.request.inputs) + [s for s in (opts.get("test"), opts.get("predict")) if s]
        return [parse_spec(s).path for s in specs]

    def side_outputs(self) -> dict[str, str]:
        path = self.request.options.get("predictions_out")
        return {"--predictions-out": path} if path else {}

    def output_arrays(self) -> tuple[str, ...] | None:
        biases = ("mu", "row_bias", "col_bias") if self.request.options.get("bias", True) else ()
        return ("U", "V", *biases, "row_ids", "col_ids")

    # ---------------------------------------------------------------- read
    def read(self) -> None:
        from matcli.io.load import read_observed

        opts = self.request.options
        if len(self.request.inputs) != 1:
            raise UsageError("complete takes exactly one observed-entries input")
        self.observed = read_observed(self.request.inputs[0], opts.get("shape"))
        if opts.get("test"):
            self.test = read_observed(opts["test"], training=self.observed)
        if opts.get("predict"):
            self.pairs = _read_pairs(opts["predict"], self.observed)

    # ---------------------------------------------------------------- validate
    def validate(self) -> None:
        opts = self.request.options
        obs = self.observed
        m, n = obs.shape
        if obs.nnz == 0:
            raise InputError(obs.path, "no observed entries")
        rank = opts.get("rank", 10)
        if rank != "auto" and not 1 <= int(rank) <= min(m, n):
            raise UsageError(f"--rank {rank}: must be between 1 and min(m, n) = {min(m, n)}")
        reg = opts.get("reg")
        if reg not in (None, "auto") and not 0.0 <= float(reg) < math.inf:
            raise UsageError(f"--reg {reg}: must be a finite number >= 0")
        rtol = float(opts.get("rtol", 1e-4))
        if not 0.0 <= rtol < 1.0:
            raise UsageError(f"--rtol {rtol}: must be a number in [0, 1)")
        fraction = float(opts.get("validate") or 0.0)
        if not 0.0 <= fraction < 1.0:
            raise UsageError("--validate must be in [0, 1)")
        clip = opts.get("clip")
        if clip is not None and not clip[0] < clip[1]:
            raise UsageError(f"--clip {clip[0]},{clip[1]}: need lo < hi")
        if self.request.backend != "local" and "auto" not in (rank, reg):
            raise UsageError(f"--backend {self.request.backend} runs the validation fits of --rank auto / --reg auto; "
                             "with a fixed rank and regularisation the one fit runs in this process (drop --backend)")
        if self.pairs is not None and not opts.get("predictions_out"):
            raise UsageError("--predict needs --predictions-out FILE")
        if opts.get("predictions_out") and self.pairs is None:
            raise UsageError("--predictions-out needs --predict PAIRS")

    # ---------------------------------------------------------------- setup
    def setup(self, rng: np.random.Generator) -> None:
        opts = self.request.options
        obs = self.observed
        m, n = obs.shape
        self.rng = rng
        rank_opt, reg_opt = opts.get("rank", 10), opts.get("reg")
        self.auto = [name for name, value in (("rank", rank_opt), ("reg", reg_opt)) if value == "auto"]
        fraction = float(opts.get("validate") or 0.0)
        if self.auto and fraction == 0.0:
            fraction = AUTO_VALIDATE
        self.split = _split(obs.nnz, fraction, rng)
        if self.method == "auto":
            largest = max(RANK_GRID) if rank_opt == "auto" else int(rank_opt)
            what = f"ranks up to {largest} (--rank auto)" if rank_opt == "auto" else f"rank {largest}"
            if largest <= EXACT_RANK_LIMIT:
                self.method = "als-exact"
                self.choice_reason = (f"{what} <= {EXACT_RANK_LIMIT}: exact ALS half-steps (stacked "
                                      f"{largest + 1}x{largest + 1} solves) cost about as much as a few CG steps")
            else:
                self.method = "als"
                self.choice_reason = (f"{what} > {EXACT_RANK_LIMIT}: ALS with a few CG iterations per "
                                      "half-step keeps a sweep at O(|Omega| k)")
        if DEFAULT_REG[self.method] is None and reg_opt is not None:
            raise UsageError(f"--reg does not apply to method {self.method} (it learns its regularisation)")
        largest = min(max(RANK_GRID) if rank_opt == "auto" else int(rank_opt), m, n)
        self.spec = get_spec("complete", self.method)
        self.params = self.spec.resolve_params(list(self.request.params))
        check_allocation(obs.path, factor_bytes(m, n, largest, self.method, self.params.get("samples", 0)),
                         f"{self.method} factors of {m} x {n} factor rows at rank {largest}")
        self.resolved_params = {
            "rank": rank_opt, "reg": DEFAULT_REG[self.method] if reg_opt is None else reg_opt,
            "bias": bool(opts.get("bias", True)), "validate": fraction,
            "maxiter": int(opts.get("maxiter") or DEFAULT_MAXITER[self.method]), "rtol": float(opts.get("rtol", 1e-4)),
            "clip": list(opts["clip"]) if opts.get("clip") else None, **self.params,
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
        if self.request.threads is not None:
            return self._compute(callback)
        # The dense work here is batched k x k algebra and tall-skinny products, which run slower
        # with several BLAS threads (measured 2x on MovieLens); --threads N overrides this.
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=1, user_api="blas"):
            result = self._compute(callback)
        result.info["blas_threads"] = 1
        return result

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
        model = FactorModel.from_outputs(result.outputs)
        if self.auto:
            best = min((row for row in selection if not row["after_stop"]), key=lambda row: row["val_rmse"])
            result.metrics["val_rmse"] = best["val_rmse"]
            result.info["selection"] = selection
            result.info["selected"] = {"rank": rank, "reg": reg, "refit_on_all_entries": True}
        result.outputs["row_ids"] = obs.row_ids.ids()
        result.outputs["col_ids"] = obs.col_ids.ids()
        if self.test is not None:
            err = _predict(model, self.test.rows, self.test.cols, clip) - self.test.values
            result.metrics["test_rmse"] = rmse(err)
            result.metrics["test_mae"] = float(np.mean(np.abs(err)))
        if self.pairs is not None:
            self.predictions = _predict(model, self.pairs.rows, self.pairs.cols, clip)
        rows_seen = np.bincount(_subset(obs.rows, fit_idx), minlength=obs.shape[0]) > 0
        cols_seen = np.bincount(_subset(obs.cols, fit_idx), minlength=obs.shape[1]) > 0
        result.info["rows_without_observations"] = int(np.sum(~rows_seen))
        result.info["cols_without_observations"] = int(np.sum(~cols_seen))
        result.info["final_fit_sweeps"] = result.iterations
        if self.auto:
            result.info["note"] = f"compute time includes {len(selection)} selection fits before the final fit"
        return result

    def _fit(self, idx: np.ndarray | None, heldout, clip, rank: int, reg: float, callback: Callback) -> Result:
        """Run the kernel on the entries ``idx`` (None: all of them, without copying)."""
        return self._task(idx, heldout, clip).run(rank, reg, self.rng, callback)

    def _task(self, idx: np.ndarray | None, heldout, clip) -> FitTask:
        obs = self.observed
        p = self.resolved_params
        settings = {"bias": p["bias"], "maxiter": p["maxiter"], "rtol": p["rtol"], "atol": self.atol, **self.params}
        return FitTask(self.spec.load(), _subset(obs.rows, idx), _subset(obs.cols, idx), _subset(obs.values, idx),
                       obs.shape, heldout, clip, DEFAULT_REG[self.method] is not None, settings)

    def _select(self, train: np.ndarray | None, heldout, clip) -> tuple[int, float, list[dict[str, Any]]]:
        """Coordinate search on validation RMSE: regularisation first (at the given or a middle
        rank), then rank at the chosen regularisation.

        The candidate fits are independent, so they run through the backend, each with its own
        generator spawned from the job's: a candidate's score does not depend on which others ran
        or where. Ranks go in rounds of ``backend.parallelism``; the stopping rule reads the scores
        in rank order, and fits of a round past the stop (``after_stop`` in the table) are not used,
        so every backend selects the same rank.
        """
        m, n = self.observed.shape
        p = self.resolved_params
        base_reg = DEFAULT_REG[self.method] if p["reg"] in ("auto", None) else float(p["reg"])
        rank = 10 if p["rank"] == "auto" else int(p["rank"])
        rank = min(rank, m, n)
        task = self._task(train, heldout, clip)
        table: list[dict[str, Any]] = []

        def score(candidates: list[tuple[int, float]]) -> list[dict[str, Any]]:
            seeded = [(k, lam, g) for (k, lam), g in zip(candidates, self.rng.spawn(len(candidates)))]
            rows = [{"rank": k, "reg": lam, "val_rmse": val, "sweeps": sweeps, "after_stop": False}
                    for (k, lam), (val, sweeps) in zip(candidates, self.backend.map(_score, seeded, task=task))]
            table.extend(rows)
            return rows

        reg = base_reg
        if p["reg"] == "auto" and base_reg is not None:
            grid = [base_reg * f for f in REG_FACTORS] if base_reg > 0 else [0.0]
            reg = min(score([(rank, lam) for lam in grid]), key=lambda row: row["val_rmse"])["reg"]
        if p["rank"] == "auto":
            ranks = [k for k in RANK_GRID if k <= min(m, n)]
            width = self.backend.parallelism
            scores: dict[int, float] = {}
            worse = 0
            for begin in range(0, len(ranks), width):
                for row in score([(k, reg) for k in ranks[begin:begin + width]]):
                    if worse >= 2:
                        row["after_stop"] = True
                        continue
                    scores[row["rank"]] = row["val_rmse"]
                    if row["val_rmse"] <= min(scores.values()):
                        worse = 0
                    else:
                        worse += 1
                if worse >= 2:
                    break
            # One-standard-error rule: the RMSE estimated from N held-out entries has a relative
            # standard error of about 1 / sqrt(2 N); keep the smallest rank within it of the best.
            tolerance = 1.0 + 1.0 / np.sqrt(2.0 * max(heldout.values.size, 1))
            best = min(scores.values())
            rank = min(k for k, val in scores.items() if val <= tolerance * best)
        return rank, reg, table

    # ---------------------------------------------------------------- write
    def write_extra(self, result: Result) -> dict[str, str]:
        if self.pairs is None or self.predictions is None:
            return {}
        from matcli.io.atomic import atomic_write
        from matcli.io.triplets import write_triplets

        path = self.request.options["predictions_out"]
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


def _score(candidate: tuple[int, float, np.random.Generator], task: FitTask) -> tuple[float, int]:
    """Backend task: (validation RMSE, sweeps) of the fit at ``candidate`` = (rank, reg, generator)."""
    rank, reg, rng = candidate
    result = task.run(rank, reg, rng)
    return float(result.metrics.get("val_rmse", np.nan)), result.iterations


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
    per_row = WORK_COLUMNS * (rank + 8) + (rank * rank + rank * samples if method == "bpmf" else 0)
    return 8.0 * (m + n) * per_row


def _bias_only(rows: np.ndarray, cols: np.ndarray) -> int:
    return int(np.count_nonzero((rows < 0) | (cols < 0)))


def _predict(model: FactorModel, rows: np.ndarray, cols: np.ndarray, clip: tuple[float, float] | None) -> np.ndarray:
    """Predictions at factor ``rows``/``cols`` (N,) int64. Where one of them is -1 (an id without a
    factor row) the entry gets the bias-only prediction: mu plus the bias of the side that is known."""
    known = (rows >= 0) & (cols >= 0)
    if known.all():
        return model.predict(rows, cols, clip)
    pred = np.zeros(rows.size)
    pred[known] = model.predict(rows[known], cols[known])
    if model.has_bias:
        pred[~known] = model.mu
        for side, bias in ((rows, model.row_bias), (cols, model.col_bias)):
            only = (side >= 0) & ~known
            pred[only] += bias[side[only]]
    if clip is not None:
        np.clip(pred, clip[0], clip[1], out=pred)
    return pred


def _read_pairs(spec: str, training: Observed) -> Pairs:
    """Pairs to predict, mapped through the training file's ids: a text file of ``user item``
    lines (:func:`matcli.io.triplets.read_pairs`; ids outside a declared training shape are an
    InputError naming the line) or an HDF5 COO group / coordinate ``.mtx``."""
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

        from matcli.io.triplets import line_of_entry, read_pairs

        users, items = read_pairs(parsed.path)
        line_of = partial(line_of_entry, parsed.path, min_columns=2)
    row_keys, col_keys = users - np.uint64(1), items - np.uint64(1)
    if training.row_ids.declared:
        check_extent(parsed.path, row_keys, col_keys, training.id_space, "training matrix", line_of)
    return Pairs(training.row_ids.rows_of(row_keys), training.col_ids.rows_of(col_keys), users, items)
