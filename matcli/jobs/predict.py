"""Adapter of ``matcli predict``: a saved completion model (``matcli complete -o model.h5``) and pairs
in, ``user item prediction`` lines out.

Inputs (``request.inputs``): the model file (``model.h5``, or ``file.h5:/group`` holding the model)
and the pairs (a text file of ``user item`` lines, 1-based ids as in the training file, optionally
followed by a value and a timestamp; an HDF5 COO group; a coordinate ``.mtx``). Options
(``request.options``, a :class:`~matcli.jobs.options.PredictOptions`): ``out`` (the predictions file), ``clip`` ((lo, hi) or None: the model's own
``clip`` attribute, the one it was fitted with).

The pairs are mapped through the model's id maps by the function ``complete --predict`` uses
(:func:`matcli.jobs.complete.read_pairs`) and predicted by the same
:meth:`~matcli.methods.complete.common.FactorModel.predict_mapped`, so both commands write the same
numbers: an id without a factor row gets the bias-only prediction, and the report counts such
pairs (``problem.prediction_pairs_bias_only``). Status ``converged_direct`` (a prediction is a
formula, not an iteration), ``diverged_nan`` when a prediction overflows.
"""

from __future__ import annotations

import sys

import numpy as np

from matcli.core.errors import UsageError
from matcli.core.result import Callback, Result, Status
from matcli.jobs.base import FamilyJob

METHOD = "factor-model"


class Job(FamilyJob):
    family = "predict"

    def __init__(self, request):
        super().__init__(request)
        self.model = None
        self.pairs = None
        self.clip: tuple[float, float] | None = None
        self.predictions: np.ndarray | None = None

    def side_outputs(self) -> dict[str, str]:
        out = self.request.options.out
        return {"-o": out} if out else {}

    def stdout_formats(self) -> dict[str, str]:
        return {"-o": "predictions (tab-separated text)"}

    # ---------------------------------------------------------------- read
    def read(self) -> None:
        from matcli.io.model import read_model
        from matcli.io.spec import parse_spec
        from matcli.jobs.complete import read_pairs

        if len(self.request.inputs) != 2:
            raise UsageError("predict takes a model file and a pairs file")
        spec = parse_spec(self.request.inputs[0])
        self.model = read_model(spec.path, spec.internal)
        self.pairs = read_pairs(self.request.inputs[1], self.model.row_ids, self.model.col_ids)

    # ---------------------------------------------------------------- validate
    def validate(self) -> None:
        clip = self.request.options.clip
        if clip is not None and not clip[0] < clip[1]:
            raise UsageError(f"--clip {clip[0]},{clip[1]}: need lo < hi")

    # ---------------------------------------------------------------- setup
    def setup(self, rng: np.random.Generator) -> None:
        model = self.model
        given = self.request.options.clip
        self.clip = tuple(given) if given is not None else model.clip
        self.method = METHOD
        self.choice_reason = (f"the {model.method or 'completion'} model of rank {model.rank} in "
                              f"{self.request.inputs[0]} (its formula: attribute prediction_formula)")
        self.resolved_params = {
            "clip": list(self.clip) if self.clip else None,
            "clip_from": "--clip" if given is not None else ("model" if model.clip else "none"),
            "model_method": model.method, "rank": model.rank, "factor_columns": int(model.U.shape[1]),
            "bias": model.row_bias is not None,
        }
        rows, cols = self.pairs.rows, self.pairs.cols
        self.problem_info = {
            "model": self.request.inputs[0], "factor_rows": [int(model.U.shape[0]), int(model.V.shape[0])],
            "id_space": [model.row_ids.extent, model.col_ids.extent],
            "prediction_pairs": int(rows.size),
            "prediction_pairs_bias_only": int(np.count_nonzero((rows < 0) | (cols < 0))),
        }

    # ---------------------------------------------------------------- compute
    def compute(self, callback: Callback) -> Result:
        from matcli.methods.complete.common import FactorModel

        m = self.model
        model = FactorModel(m.U, m.V, m.mu, m.row_bias, m.col_bias) if m.row_bias is not None else \
            FactorModel(m.U, m.V)
        self.predictions = model.predict_mapped(self.pairs.rows, self.pairs.cols, self.clip)
        if not np.isfinite(self.predictions).all():
            bad = int(np.count_nonzero(~np.isfinite(self.predictions)))
            return Result(status=Status.DIVERGED_NAN,
                          message=f"{bad} predictions overflow to Inf/NaN (factors too large for float64)")
        return Result(status=Status.CONVERGED_DIRECT, message="predictions from the model's formula",
                      outputs={"row_ids": self.pairs.row_ids, "col_ids": self.pairs.col_ids,
                               "prediction": self.predictions})

    # ---------------------------------------------------------------- write
    def write_extra(self, result: Result) -> dict[str, str]:
        from matcli.io.atomic import atomic_write
        from matcli.io.output_policy import STDOUT
        from matcli.io.triplets import write_triplet_lines, write_triplets

        path = self.request.options.out
        if not path:  # the Python API without output=: the predictions are the result's arrays
            return {}
        if path == STDOUT:
            write_triplet_lines(sys.stdout, self.pairs.row_ids, self.pairs.col_ids, self.predictions)
            sys.stdout.flush()
            return {"predictions": STDOUT}
        with atomic_write(path, force=self.request.force) as tmp:
            write_triplets(tmp, self.pairs.row_ids, self.pairs.col_ids, self.predictions)
        return {"predictions": path}
