"""fancyimpute's own tests (``iskandr/fancyimpute``, folder ``test/``), ported to ``matcli complete``.

Their data, re-created with the same generator calls (``np.random.seed(0)``, then ``randn``,
``randn``, ``uniform`` in that order, as ``low_rank_data.create_rank_k_dataset`` does):

* ``XY``: 500 x 10 of rank 3, 25% of the entries missing (``low_rank_data.py``);
* its first 100 rows (``test_nuclear_norm_minimization.py``);
* the rank-1 outer product of ``[1, 2, 3, 4, 5]`` and ``[0.1, -0.1, 0.2, -0.2, 0.02]`` with
  entry (1, 2) missing, and the symmetric ``XY^T XY`` built from it, (1, 2) missing
  (``test_nuclear_norm_minimization.py``, ``test_rank1.py``).

Their thresholds: mean absolute error over the missing entries < 0.1 (SoftImpute, IterativeSVD,
MatrixFactorization, NuclearNormMinimization on the low-rank data); |error| of the missing
rank-1 entry < 0.01 (NuclearNormMinimization) and < 0.001 (MatrixCompletion in ``test_rank1.py``;
the same data and options, so one run checks both and the stricter bound decides).

Each case runs through the CLI with files in ``tmp_path`` and matcli's defaults; the peer's own
option is passed where it has one (IterativeSVD ``rank=3`` -> ``--rank 3``, MatrixFactorization
``rank=5`` -> ``--rank 5``). The default method must also end with a positive status that passes
the certificate (``--strict``, exit 0).

Methods: the default (auto: ``als-exact`` on this real-valued data), ``als-exact``, ``als``,
``robust``, ``softimpute`` and ``scaledgd`` run every case. ``REJECTED`` lists the justified
rejections (robust and scaledgd, whose models have no regularisation, above the true rank),
checked to end with a negative status instead. ``bpmf`` fails fancyimpute's SoftImpute case with
its defaults and is kept as a strict expected failure (``KNOWN_FAILURES``: it models noisy ratings).
KNN is out of scope (matcli has no neighbourhood imputation).
"""

from __future__ import annotations

import json

import numpy as np
import pytest


def rank_k_dataset(n_rows: int, n_cols: int, k: int, fraction_missing: float):
    """fancyimpute's ``create_rank_k_dataset(..., random_seed=0)``: (XY, missing_mask)."""
    state = np.random.RandomState(0)
    x = state.randn(n_rows, k)
    y = state.randn(k, n_cols)
    missing = state.uniform(0, 1, (n_rows, n_cols)) < fraction_missing
    return x @ y, missing


def rank1_dataset(symmetric: bool):
    """``create_rank1_data``: the 5 x 5 outer product (or X^T X of it) with entry (1, 2) missing."""
    XY = np.outer(np.array([1, 2, 3, 4, 5], dtype=float), np.array([0.1, -0.1, 0.2, -0.2, 0.02]))
    if symmetric:
        XY = XY.T @ XY
    missing = np.zeros(XY.shape, dtype=bool)
    missing[1, 2] = True
    return XY, missing


LOW_RANK = rank_k_dataset(500, 10, 3, 0.25)
DATA = {
    "low_rank_500x10": LOW_RANK,
    "low_rank_first_100_rows": (LOW_RANK[0][:100], LOW_RANK[1][:100]),
    "rank1": rank1_dataset(symmetric=False),
    "rank1_symmetric": rank1_dataset(symmetric=True),
}

#: (case, data, peer option as matcli arguments, error measure, bound).
CASES = [
    ("SoftImpute()", "low_rank_500x10", [], "mae", 0.1),
    ("IterativeSVD(rank=3)", "low_rank_500x10", ["--rank", "3"], "mae", 0.1),
    ("MatrixFactorization(rank=5)", "low_rank_500x10", ["--rank", "5"], "mae", 0.1),
    ("NuclearNormMinimization() first 100 rows", "low_rank_first_100_rows", [], "mae", 0.1),
    ("NuclearNormMinimization()/MatrixCompletion() rank 1", "rank1", [], "max", 0.001),
    ("NuclearNormMinimization()/MatrixCompletion() rank 1 symmetric", "rank1_symmetric", [], "max", 0.001),
]
METHODS = ["auto", "als-exact", "als", "robust", "softimpute", "scaledgd"]

#: Cases a method rightly refuses: the answer misses the peer's bound and the status says so
#: (negative), which the test checks instead.
REJECTED = {
    ("MatrixFactorization(rank=5)", "robust"):
        "robust splits the entries into an exact rank-k matrix plus sparse outliers; with k = 5 above the "
        "true rank 3 the split is not unique (the two spare directions fit part of any entry), so it flags "
        "11% of these clean entries, misses its inlier tolerance and ends diverged_max_it (MAE 0.18)",
    ("MatrixFactorization(rank=5)", "scaledgd"):
        "scaledgd's default ridge weight is 0 (nothing for --reg auto to choose): rank 5 above the true rank 3 "
        "without regularisation leaves the spare directions free; it ends diverged_max_it (MAE 0.21)",
}

#: Methods that fail fancyimpute's SoftImpute case with their defaults, the measured mean absolute
#: error on the missing entries (bound 0.1), and why.
KNOWN_FAILURES = {
    "bpmf": "MAE 0.41: its noise precision 2.5 / var(values) assumes noisy ratings; on exact data the posterior "
            "mean keeps that much noise (ratings are its purpose; auto never picks it for real-valued data)",
}


def complete(cli, tmp_path, XY, missing, args):
    """Run ``matcli complete`` on the observed entries of XY and predict the missing ones.

    Returns (predictions at the missing entries in row-major order, exit code, report)."""
    m, n = XY.shape
    observed = np.argwhere(~missing)
    obs, pairs = tmp_path / "observed.mtx", tmp_path / "pairs.txt"
    with open(obs, "w") as fh:
        fh.write(f"%%MatrixMarket matrix coordinate real general\n{m} {n} {len(observed)}\n")
        np.savetxt(fh, np.column_stack([observed + 1, XY[~missing]]), fmt=["%d", "%d", "%.17g"])
    np.savetxt(pairs, np.argwhere(missing) + 1, fmt="%d")
    preds, report = tmp_path / "pred.txt", tmp_path / "r.json"
    res = cli(["complete", obs, "--predict", pairs, "--predictions-out", preds, "-o", tmp_path / "model.h5",
               "--report", report, "--seed", "0", "--quiet", *args])
    assert res.exit_code in (0, 3), res.stderr
    table = np.loadtxt(preds, ndmin=2)
    np.testing.assert_array_equal(table[:, :2].astype(int) - 1, np.argwhere(missing))
    return table[:, 2], res.exit_code, json.loads(report.read_text())


def error(kind: str, predicted: np.ndarray, truth: np.ndarray) -> float:
    diff = np.abs(predicted - truth)
    return float(np.mean(diff) if kind == "mae" else np.max(diff))


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("case, data, args, kind, bound", CASES, ids=[c[0] for c in CASES])
def test_fancyimpute_case(cli, tmp_path, method, case, data, args, kind, bound):
    XY, missing = DATA[data]
    strict_here = method == "auto"
    predicted, code, rep = complete(cli, tmp_path, XY, missing,
                                    ["--method", method, *args, *(["--strict"] if strict_here else [])])
    if (case, method) in REJECTED:
        assert not rep["status"]["converged"], REJECTED[(case, method)]
        return
    assert error(kind, predicted, XY[missing]) < bound, (case, method, rep["params"], rep["status"])
    if strict_here:
        assert code == 0 and rep["status"]["converged"], rep["status"]
        assert rep["metrics"]["val_rmse"] <= rep["metrics"]["baseline_val_rmse"]
    if method == "robust" and rep["status"]["converged"]:
        # No outliers in this data: a split that flags more than a few entries is wrong and must
        # not come with a positive status (under --rank 5 it flags 11% and says diverged_max_it).
        assert rep["metrics"]["outlier_fraction"] < 0.05


@pytest.mark.parametrize("method", sorted(KNOWN_FAILURES))
def test_known_failures_on_softimpute_case(cli, tmp_path, method):
    XY, missing = DATA["low_rank_500x10"]
    predicted, _, _ = complete(cli, tmp_path, XY, missing, ["--method", method])
    mae = error("mae", predicted, XY[missing])
    if mae >= 0.1:
        pytest.xfail(KNOWN_FAILURES[method])
    pytest.fail(f"{method} now meets fancyimpute's SoftImpute bound (MAE {mae:.3g} < 0.1): move it to METHODS")


def test_defaults_pick_exact_als_and_interpolate(cli, tmp_path):
    """What the defaults chose on fancyimpute's data: the true rank, no shrinkage, exact answers."""
    XY, missing = DATA["low_rank_500x10"]
    predicted, code, rep = complete(cli, tmp_path, XY, missing, ["--strict"])
    assert code == 0
    assert rep["method"] == "als-exact" and rep["params"]["rank"] == 3 and rep["params"]["reg"] == 0.0
    assert rep["status"]["reason"] == "converged_atol"
    assert error("mae", predicted, XY[missing]) < 1e-3
