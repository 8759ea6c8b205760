"""``matcli predict`` against ``complete --predict`` (the same bytes) and against an independent numpy
evaluation of the formula the model file states; bad model files; the self-describing attributes of
completion models and of factorizations with permutations (each convention checked numerically)."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import scipy.io
import scipy.sparse as sp

from matcli.methods.complete.common import FactorModel

EPS = np.finfo(np.float64).eps
#: Predictions are written with 10 significant digits (io.triplets.write_triplets): relative rounding <= 5e-10.
WRITTEN_RTOL = 5e-10


def ratings_file(path, *, rng, users, items, extra_ids=False, n=1500):
    """Ratings 1..5 of a rank-2 model plus noise at random (user, item) pairs; ``extra_ids`` spreads the
    user ids over 1..1e12 (a compacted id axis)."""
    u = rng.integers(0, users, n)
    i = rng.integers(0, items, n)
    a, b = rng.standard_normal((users, 2)), rng.standard_normal((items, 2))
    values = np.clip(np.rint(3 + np.einsum("ij,ij->i", a[u], b[i]) + 0.3 * rng.standard_normal(n)), 1, 5)
    user_ids = (rng.choice(10**12, users, replace=False) + 1) if extra_ids else np.arange(1, users + 1)
    with open(path, "w") as fh:
        for uu, ii, v in zip(user_ids[u], i + 1, values):
            fh.write(f"{uu}\t{ii}\t{int(v)}\n")
    return user_ids


def pairs_file(path, pairs):
    with open(path, "w") as fh:
        for user, item in pairs:
            fh.write(f"{user}\t{item}\n")


def read_predictions(path):
    rows = [line.split("\t") for line in path.read_text().splitlines()]
    return [(int(r[0]), int(r[1])) for r in rows], np.array([float(r[2]) for r in rows])


def reference(model_path, pairs, clip):
    """The formula of the model file, evaluated with numpy and a dict of ids: mu + row_bias[i] +
    col_bias[j] + U[i] . V[j]; an unknown id drops its side's bias and U . V; then clipping."""
    with h5py.File(model_path, "r") as fh:
        U, V = fh["U"][()], fh["V"][()]
        mu = float(fh["mu"][()]) if "mu" in fh else 0.0
        rb = fh["row_bias"][()] if "row_bias" in fh else np.zeros(U.shape[0])
        cb = fh["col_bias"][()] if "col_bias" in fh else np.zeros(V.shape[0])
        row_of = {int(x): k for k, x in enumerate(fh["row_ids"][()])}
        col_of = {int(x): k for k, x in enumerate(fh["col_ids"][()])}
    out = []
    for user, item in pairs:
        i, j = row_of.get(user), col_of.get(item)
        value = mu + (rb[i] if i is not None else 0.0) + (cb[j] if j is not None else 0.0)
        if i is not None and j is not None:
            value += float(U[i] @ V[j])
        out.append(value)
    out = np.array(out)
    return np.clip(out, *clip) if clip else out


@pytest.mark.parametrize("sparse_ids", [False, True], ids=["dense-ids", "compacted-ids"])
def test_predict_writes_the_bytes_complete_predict_writes(cli, tmp_path, sparse_ids):
    rng = np.random.default_rng(7)
    user_ids = ratings_file(tmp_path / "train.tsv", rng=rng, users=60, items=40, extra_ids=sparse_ids)
    # known pairs, an unknown user, an unknown item, both unknown
    pairs = [(int(user_ids[k % 60]), 1 + k % 40) for k in range(50)]
    pairs += [(int(user_ids.max()) + 5, 3), (int(user_ids[0]), 99), (int(user_ids.max()) + 7, 98)]
    pairs_file(tmp_path / "pairs.tsv", pairs)
    done = cli(["complete", tmp_path / "train.tsv", "-m", "als-exact", "--rank", "2", "--reg", "0.1", "--bias",
                "--predict", tmp_path / "pairs.tsv", "--predictions-out", tmp_path / "by_complete.tsv",
                "--clip", "1,5", "-o", tmp_path / "model.h5", "--report", tmp_path / "c.json", "-q", "--seed", "3"])
    assert done.exit_code == 0, done.stderr
    ran = cli(["predict", tmp_path / "model.h5", tmp_path / "pairs.tsv", "-o", tmp_path / "by_predict.tsv",
               "--report", tmp_path / "p.json", "-q"])
    assert ran.exit_code == 0, ran.stderr
    assert (tmp_path / "by_predict.tsv").read_bytes() == (tmp_path / "by_complete.tsv").read_bytes()
    c_report = json.loads((tmp_path / "c.json").read_text())
    p_report = json.loads((tmp_path / "p.json").read_text())
    assert p_report["problem"]["prediction_pairs"] == len(pairs) == c_report["problem"]["prediction_pairs"]
    assert p_report["problem"]["prediction_pairs_bias_only"] == 3 == c_report["problem"]["prediction_pairs_bias_only"]
    assert p_report["status"]["converged"] and p_report["params"]["clip"] == [1.0, 5.0]
    assert p_report["params"]["clip_from"] == "model"
    from tests.test_report_schema import assert_valid_report

    assert_valid_report(p_report)
    written, values = read_predictions(tmp_path / "by_predict.tsv")
    assert written == pairs
    np.testing.assert_allclose(values, reference(tmp_path / "model.h5", pairs, (1.0, 5.0)), rtol=WRITTEN_RTOL, atol=0)


def test_clip_option_overrides_the_model_and_a_model_without_clip_does_not_clip(cli, tmp_path):
    rng = np.random.default_rng(11)
    ratings_file(tmp_path / "train.tsv", rng=rng, users=30, items=20, n=500)
    pairs = [(u, i) for u in range(1, 31) for i in range(1, 21)]
    pairs_file(tmp_path / "pairs.tsv", pairs)
    assert cli(["complete", tmp_path / "train.tsv", "-m", "als-exact", "--rank", "3", "--reg", "0", "--bias",
                "-o", tmp_path / "model.h5", "-q", "--seed", "1"]).exit_code == 0
    with h5py.File(tmp_path / "model.h5") as fh:
        assert "clip" not in fh.attrs
    for clip, name in ((None, "free.tsv"), ((2.0, 4.0), "clipped.tsv")):
        args = ["--clip", f"{clip[0]},{clip[1]}"] if clip else []
        assert cli(["predict", tmp_path / "model.h5", tmp_path / "pairs.tsv", "-o", tmp_path / name, "-q",
                    *args]).exit_code == 0
        _, values = read_predictions(tmp_path / name)
        np.testing.assert_allclose(values, reference(tmp_path / "model.h5", pairs, clip), rtol=WRITTEN_RTOL, atol=0)
    _, free = read_predictions(tmp_path / "free.tsv")
    assert free.min() < 2.0 or free.max() > 4.0  # an interpolating rank-3 fit leaves [2, 4]: clipping mattered


def test_model_attributes_describe_the_model(cli, tmp_path):
    rng = np.random.default_rng(5)
    ratings_file(tmp_path / "train.tsv", rng=rng, users=40, items=30, n=800)
    assert cli(["complete", tmp_path / "train.tsv", "-m", "als-exact", "--rank", "4", "--reg", "0.2", "--bias",
                "--clip", "1,5", "-o", tmp_path / "als.h5", "-q", "--seed", "2"]).exit_code == 0
    assert cli(["complete", tmp_path / "train.tsv", "-m", "bpmf", "--rank", "3", "-o", tmp_path / "bpmf.h5", "-q",
                "--seed", "2", "-p", "samples=20", "-p", "burnin=5"]).exit_code == 0
    with h5py.File(tmp_path / "als.h5") as fh:
        attrs = dict(fh.attrs)
        assert attrs["prediction_formula"] == FactorModel.FORMULA
        assert attrs["rank"] == attrs["factor_columns"] == fh["U"].shape[1] == fh["V"].shape[1] == 4
        assert "factor_columns_meaning" not in attrs
        assert attrs["reg"] == 0.2 and bool(attrs["bias"]) and list(attrs["clip"]) == [1.0, 5.0]
        assert list(attrs["id_space"]) == [40, 30] and not attrs["id_space_declared"]
        assert "1-based" in attrs["row_ids_meaning"] and "1-based" in attrs["col_ids_meaning"]
        assert attrs["method"] == "als-exact"
    with h5py.File(tmp_path / "bpmf.h5") as fh:
        assert "reg" not in fh.attrs and fh.attrs["rank"] == 3 and fh.attrs["method"] == "bpmf"
        # the stacked posterior samples: U . V is their mean, as the attributes say
        assert fh.attrs["factor_columns"] == fh["U"].shape[1] == 3 * 20
        assert "posterior mean" in fh.attrs["factor_columns_meaning"]
    pairs_file(tmp_path / "pairs.tsv", [(1, 1)])
    assert cli(["predict", tmp_path / "bpmf.h5", tmp_path / "pairs.tsv", "-o", tmp_path / "p.tsv", "-q",
                "--report", tmp_path / "r.json"]).exit_code == 0
    params = json.loads((tmp_path / "r.json").read_text())["params"]
    assert params["rank"] == 3 and params["factor_columns"] == 60 and params["model_method"] == "bpmf"


def test_declared_id_space_bounds_the_pairs_as_in_complete(cli, tmp_path):
    """An HDF5 COO training group declares its shape: a pair beyond it is an input error in both commands."""
    rng = np.random.default_rng(3)
    m, n, k = 20, 15, 2
    M = rng.standard_normal((m, k)) @ rng.standard_normal((k, n))
    mask = rng.random((m, n)) < 0.6
    r, c = np.nonzero(mask)
    with h5py.File(tmp_path / "obs.h5", "w") as fh:
        g = fh.create_group("obs")
        g["row"], g["col"], g["value"] = r, c, M[r, c]
        g.attrs["shape"] = np.array([m, n])
    pairs_file(tmp_path / "inside.tsv", [(1, 1), (20, 15)])
    pairs_file(tmp_path / "outside.tsv", [(1, 1), (21, 3)])
    base = ["complete", f"{tmp_path / 'obs.h5'}:/obs", "--rank", "2", "--reg", "0", "-q", "--seed", "1"]
    assert cli([*base, "-o", tmp_path / "model.h5"]).exit_code == 0
    with h5py.File(tmp_path / "model.h5") as fh:
        assert fh.attrs["id_space_declared"] and list(fh.attrs["id_space"]) == [m, n]
    ok = cli(["predict", tmp_path / "model.h5", tmp_path / "inside.tsv", "-o", tmp_path / "p.tsv", "-q"])
    assert ok.exit_code == 0, ok.stderr
    _, values = read_predictions(tmp_path / "p.tsv")
    np.testing.assert_allclose(values, [M[0, 0], M[19, 14]], rtol=1e-6)  # rank-2 data, reg 0: interpolated
    bad = cli(["predict", tmp_path / "model.h5", tmp_path / "outside.tsv", "-o", tmp_path / "q.tsv", "-q"])
    also = cli([*base, "-o", tmp_path / "m2.h5", "--predict", tmp_path / "outside.tsv",
                "--predictions-out", tmp_path / "q2.tsv"])
    assert bad.exit_code == also.exit_code == 4
    assert "line 2" in bad.stderr and "outside the 20x15 training matrix" in bad.stderr
    assert not (tmp_path / "q.tsv").exists()


def write_model(path, **arrays):
    """Datasets, and root attributes for names starting with ``@``."""
    with h5py.File(path, "w") as fh:
        for name, value in arrays.items():
            if name.startswith("@"):
                fh.attrs[name[1:]] = value
            else:
                fh[name] = value


GOOD = {"U": np.ones((3, 2)), "V": np.ones((4, 2)), "mu": 3.0, "row_bias": np.zeros(3), "col_bias": np.zeros(4),
        "row_ids": np.arange(1, 4, dtype=np.uint64), "col_ids": np.arange(1, 5, dtype=np.uint64)}


def _without(name):
    return {k: v for k, v in GOOD.items() if k != name}


BAD_MODELS = {
    "missing V": (_without("V"), "missing dataset V"),
    "rank mismatch": ({**GOOD, "V": np.ones((4, 3))}, "same rank"),
    "row_bias length": ({**GOOD, "row_bias": np.zeros(2)}, "row_bias has 2 entries"),
    "ids length": ({**GOOD, "col_ids": np.arange(1, 4, dtype=np.uint64)}, "col_ids has 3 ids"),
    "NaN factor": ({**GOOD, "U": np.array([[1.0, np.nan], [1, 1], [1, 1]])}, "NaN or Inf"),
    "partial biases": (_without("mu"), "all of mu, row_bias, col_bias or none"),
    "ids not ascending": ({**GOOD, "row_ids": np.array([1, 3, 2], dtype=np.uint64)}, "strictly ascending"),
    "id zero": ({**GOOD, "row_ids": np.array([0, 1, 2], dtype=np.int64)}, "1-based"),
    "float ids": ({**GOOD, "row_ids": np.array([1.0, 2.0, 3.0])}, "must hold integers"),
    "U is 1-D": ({**GOOD, "U": np.ones(3)}, "is 1-D, expected 2-D"),
    "rank beyond the factors": ({**GOOD, "@rank": 3}, "attribute rank 3 is not within 0..2"),
}


@pytest.mark.parametrize("case", sorted(BAD_MODELS))
def test_bad_model_files_are_one_line_input_errors(cli, tmp_path, case):
    arrays, message = BAD_MODELS[case]
    write_model(tmp_path / "model.h5", **arrays)
    pairs_file(tmp_path / "pairs.tsv", [(1, 1)])
    result = cli(["predict", tmp_path / "model.h5", tmp_path / "pairs.tsv", "-o", tmp_path / "p.tsv", "-q"])
    assert result.exit_code == 4, result.stderr
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "p.tsv").exists()


def test_the_good_model_of_the_bad_cases_predicts(cli, tmp_path):
    """The control of the cases above: the same file with nothing broken gives mu + U . V."""
    write_model(tmp_path / "model.h5", **GOOD)
    pairs_file(tmp_path / "pairs.tsv", [(1, 1), (3, 4), (9, 1)])
    ran = cli(["predict", tmp_path / "model.h5", tmp_path / "pairs.tsv", "-o", tmp_path / "p.tsv", "-q"])
    assert ran.exit_code == 0, ran.stderr
    assert read_predictions(tmp_path / "p.tsv")[1].tolist() == [5.0, 5.0, 3.0]  # mu + U . V = 3 + 2; id 9: mu


def test_other_files_are_not_models(cli, tmp_path):
    pairs_file(tmp_path / "pairs.tsv", [(1, 1)])
    A = sp.random(30, 30, density=0.2, random_state=1, format="csr") + sp.eye(30) * 4
    scipy.io.mmwrite(tmp_path / "A.mtx", A)
    assert cli(["factorize", tmp_path / "A.mtx", "--kind", "lu", "-o", tmp_path / "lu.h5", "-q"]).exit_code == 0
    (tmp_path / "text.h5").write_text("not hdf5\n")
    for model, message in (("lu.h5", "not a completion model: written by matcli factorize"),
                           ("text.h5", "not a readable HDF5 file"), ("absent.h5", "")):
        result = cli(["predict", tmp_path / model, tmp_path / "pairs.tsv", "-o", tmp_path / "p.tsv", "-q"])
        assert result.exit_code == 4 and message in result.stderr, result.stderr


def test_output_policy_applies(cli, tmp_path):
    write_model(tmp_path / "model.h5", **GOOD)
    pairs_file(tmp_path / "pairs.tsv", [(1, 1)])
    (tmp_path / "p.tsv").write_text("keep\n")
    args = ["predict", tmp_path / "model.h5", tmp_path / "pairs.tsv", "-q"]
    assert cli([*args, "-o", tmp_path / "p.tsv"]).exit_code == 5
    assert (tmp_path / "p.tsv").read_text() == "keep\n"
    assert cli([*args, "-o", tmp_path / "p.tsv", "--force"]).exit_code == 0
    assert read_predictions(tmp_path / "p.tsv")[1].tolist() == [5.0]
    assert cli([*args, "-o", tmp_path / "pairs.tsv", "--force"]).exit_code in (2, 5)  # an input is never overwritten
    # the budget is checked against each dataset's declared size before reading it: U (60 KB) fits, V (80 KB) not
    write_model(tmp_path / "big.h5", **{**GOOD, "U": np.ones((3, 2500)), "V": np.ones((4, 2500))})
    over = cli(["predict", tmp_path / "big.h5", tmp_path / "pairs.tsv", "-q", "-o", tmp_path / "p.tsv", "--force",
                "--max-memory", "64K"])
    assert over.exit_code == 7 and "dataset /V" in over.stderr, over.stderr


# ------------------------------------------------------------------ factorize: permutation conventions
def _matrix_file(tmp_path, kind):
    rng = np.random.default_rng(4)
    n = 40
    if kind in ("cholesky", "ldl"):
        B = sp.random(n, n, density=0.1, random_state=2)
        A = B @ B.T + sp.eye(n) * (1.0 if kind == "cholesky" else -0.5)  # SPD / indefinite
    elif kind == "qr":
        A = sp.csr_matrix(rng.standard_normal((n + 10, n)))
    else:
        A = sp.random(n, n, density=0.15, random_state=3) + sp.eye(n)
    scipy.io.mmwrite(tmp_path / "A.mtx", sp.coo_matrix(A))
    return sp.csr_matrix(A).toarray()


def _dense(fh, name):
    obj = fh[name]
    if isinstance(obj, h5py.Group):
        return sp.csr_matrix((obj["data"][()], obj["indices"][()], obj["indptr"][()]),
                             shape=tuple(obj.attrs["shape"])).toarray() if obj.attrs["encoding-type"] == "csr_matrix" \
            else sp.csc_matrix((obj["data"][()], obj["indices"][()], obj["indptr"][()]),
                               shape=tuple(obj.attrs["shape"])).toarray()
    return obj[()]


#: (kind, method, the attribute stated, A and the factors -> (left side, right side) of that statement)
CONVENTIONS = [
    ("qr", "dense", "A[:, P] = Q @ R", lambda A, f: (A[:, f["P"]], f["Q"] @ f["R"])),
    ("lu", "dense", "A[P] = L @ U", lambda A, f: (A[f["P"]], f["L"] @ f["U"])),
    ("lu", "sparse", "A[P][:, Q] = L @ U", lambda A, f: (A[f["P"]][:, f["Q"]], f["L"] @ f["U"])),
    ("cholesky", "sparse", "A[P][:, P] = L @ L^H", lambda A, f: (A[f["P"]][:, f["P"]], f["L"] @ f["L"].T)),
    ("ldl", "dense", "A = L @ D @ L^H; L[P] is unit lower triangular",
     lambda A, f: (A, f["L"] @ f["D"] @ f["L"].T)),
]


@pytest.mark.parametrize("kind,method,statement,sides", CONVENTIONS, ids=[f"{c[0]}-{c[1]}" for c in CONVENTIONS])
def test_permutation_convention_attribute_holds(cli, tmp_path, kind, method, statement, sides):
    A = _matrix_file(tmp_path, kind)
    result = cli(["factorize", tmp_path / "A.mtx", "--kind", kind, "--method", method, "-o", tmp_path / "f.h5", "-q"])
    assert result.exit_code == 0, result.stderr
    with h5py.File(tmp_path / "f.h5") as fh:
        convention = fh.attrs["permutation_convention"]
        factors = {name: _dense(fh, name) for name in fh}
    assert convention.startswith(statement) and "0-based" in convention
    left, right = sides(A, factors)
    # the certificate's bound on a factorization residual: 60 max(m, n) eps ||A||_F
    assert np.linalg.norm(left - right) <= 60 * max(A.shape) * EPS * np.linalg.norm(A)
    if kind == "ldl":
        L = factors["L"][factors["P"]]
        assert np.array_equal(L, np.tril(L)) and np.all(np.diag(L) == 1.0)


def test_factorizations_without_permutations_say_nothing(cli, tmp_path):
    _matrix_file(tmp_path, "cholesky")
    assert cli(["factorize", tmp_path / "A.mtx", "--kind", "cholesky", "--method", "dense", "-o",
                tmp_path / "c.h5", "-q"]).exit_code == 0
    with h5py.File(tmp_path / "c.h5") as fh:
        assert "permutation_convention" not in fh.attrs and "P" not in fh


def test_a_model_in_a_group_and_the_link_policy(cli, tmp_path):
    """``file.h5:/group`` names a model inside a file; a factor behind an external link is refused
    unless --allow-external-links, as for every HDF5 input."""
    with h5py.File(tmp_path / "many.h5", "w") as fh:
        for name, value in GOOD.items():
            fh[f"fits/best/{name}"] = value
    pairs_file(tmp_path / "pairs.tsv", [(3, 4)])
    ran = cli(["predict", f"{tmp_path / 'many.h5'}:/fits/best", tmp_path / "pairs.tsv", "-o", tmp_path / "p.tsv", "-q"])
    assert ran.exit_code == 0, ran.stderr
    assert read_predictions(tmp_path / "p.tsv")[1].tolist() == [5.0]
    with h5py.File(tmp_path / "factors.h5", "w") as fh:
        fh["U"] = GOOD["U"]
    with h5py.File(tmp_path / "linked.h5", "w") as fh:
        for name, value in GOOD.items():
            if name != "U":
                fh[name] = value
        fh["U"] = h5py.ExternalLink(str(tmp_path / "factors.h5"), "/U")
    args = ["predict", tmp_path / "linked.h5", tmp_path / "pairs.tsv", "-q", "--force", "-o", tmp_path / "p.tsv"]
    refused = cli(args)
    assert refused.exit_code == 4 and "external" in refused.stderr, refused.stderr
    allowed = cli([*args, "--allow-external-links"])
    assert allowed.exit_code == 0, allowed.stderr


def test_predictions_to_standard_output(tmp_path):
    """-o - writes the same lines to standard output; with --report - as well it is a usage error."""
    import subprocess
    import sys

    from tests.conftest import data_file

    base, test = data_file("ml-100k/u1.base"), data_file("ml-100k/u1.test")
    model = tmp_path / "m.h5"
    run = [sys.executable, "-m", "matcli"]
    assert subprocess.run([*run, "complete", base, "-m", "als-exact", "-r", "3", "--reg", "0.1", "-o", model, "-q"],
                          timeout=300).returncode == 0
    assert subprocess.run([*run, "predict", model, test, "-o", tmp_path / "p.tsv", "-q"], timeout=300).returncode == 0
    piped = subprocess.run([*run, "predict", model, test, "-o", "-", "-q"], capture_output=True, timeout=300)
    assert piped.returncode == 0 and piped.stdout == (tmp_path / "p.tsv").read_bytes()
    both = subprocess.run([*run, "predict", model, test, "-o", "-", "--report", "-"], capture_output=True, timeout=300)
    assert both.returncode == 2 and both.stdout == b""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.h5", "p.tsv"]
