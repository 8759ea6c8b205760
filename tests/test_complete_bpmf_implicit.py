"""bpmf-implicit (Bayesian SVD++ by Gibbs sampling): the conditional draws against their closed-form
laws, recovery of the generating model, seeds, and the implicit features' structure."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import scipy.sparse as sp

from matcli.jobs.complete import IMPLICIT_MAX_SIDE, _choose_method
from matcli.methods.complete.bpmf_implicit import (_RidgeSolver, _sample_coef, _sample_rows, _sample_rows_averaged,
                                                   _Side, bpmf_implicit, implicit_features)
from matcli.methods.complete.common import Entries, FactorModel, Heldout

#: Draws per distribution check: 5 standard errors are then about 10% of a unit variance.
DRAWS = 4000


@pytest.fixture(autouse=True)
def _one_blas_thread():
    """Small dense algebra, as the job runs it (several BLAS threads only spin on a loaded machine)."""
    from threadpoolctl import threadpool_limits

    import scipy.linalg  # noqa: F401 - loaded before the limit so that it applies to scipy's BLAS too

    with threadpool_limits(limits=1, user_api="blas"):
        yield


def _moments_check(draws: np.ndarray, mean: np.ndarray, cov: np.ndarray) -> None:
    """Empirical mean and covariance of ``draws`` (S, p) against the exact ones, within 5 standard
    errors: the mean's is sqrt(diag(cov) / S); a covariance entry's is
    sqrt((cov_ii cov_jj + cov_ij^2) / S) (Gaussian fourth moments)."""
    S = draws.shape[0]
    se_mean = np.sqrt(np.diag(cov) / S)
    assert np.all(np.abs(draws.mean(axis=0) - mean) <= 5 * se_mean)
    emp = np.cov(draws.T)
    d = np.diag(cov)
    se_cov = np.sqrt((np.outer(d, d) + cov**2) / S)
    assert np.all(np.abs(emp - cov) <= 5 * se_cov)


@pytest.mark.parametrize("N, D", [(7, 4), (4, 7)], ids=["primal", "woodbury"])
def test_coefficient_draws_follow_the_matrix_normal_conditional(N, D):
    """coef | F, mean, prec ~ MN(A^-1 X^T (F - mean), A^-1, prec^-1), A = X^T X + lambda I, on both
    solver paths (D <= N: Cholesky of A; D > N: Woodbury through X X^T); X @ coef is returned too."""
    rng = np.random.default_rng(0)
    d, lam = 2, 0.7
    X = sp.csr_matrix(rng.random((N, D)) * (rng.random((N, D)) < 0.7))
    F = rng.standard_normal((N, d))
    mean = rng.standard_normal(d)
    B = rng.standard_normal((d, d))
    prec = B @ B.T + np.eye(d)
    side = _Side(F, X, _RidgeSolver(X, lam), np.zeros((D, d)))
    assert side.solver.dual == (D > N)
    A = (X.T @ X).toarray() + lam * np.eye(D)
    exact_mean = np.linalg.solve(A, X.T @ (F - mean))
    # Row-major vec(coef) has covariance kron(A^-1, prec^-1).
    exact_cov = np.kron(np.linalg.inv(A), np.linalg.inv(prec))
    draws = []
    for _ in range(DRAWS):
        coef, offset = _sample_coef(side, mean, prec, rng)
        draws.append(coef.ravel())
    np.testing.assert_allclose(offset, X @ coef, rtol=1e-12, atol=1e-12)
    _moments_check(np.array(draws), exact_mean.ravel(), exact_cov)


def test_row_draws_follow_the_gaussian_conditional():
    """Each row i ~ N(P_i^-1 b_i, P_i^-1), P_i = prec + alpha sum_j F_j F_j^T, b_i = alpha sum_j
    (t_ij - o_j) F_j + prec m_i, built here entry by entry (row 2 rates column 1 twice: both count);
    the returned conditional means are P_i^-1 b_i and the residual sums of squares are the draws'."""
    rng = np.random.default_rng(1)
    q, p, d, alpha = 3, 5, 2, 1.7
    rows = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2, 2])
    cols = np.array([0, 2, 4, 1, 3, 0, 1, 2, 3, 1])
    t = rng.standard_normal(rows.size)
    entries = Entries(rows, cols, t, (q, p))
    F = rng.standard_normal((p, d))
    other_bias = rng.standard_normal(p)
    prior_mean = rng.standard_normal((q, d))
    B = rng.standard_normal((d, d))
    prec = B @ B.T + np.eye(d)
    pattern, values = entries.matrix(0, np.ones(rows.size)), entries.matrix(0, t)
    out = [_sample_rows_averaged(pattern, values, F, other_bias, alpha, prior_mean, prec, rng) for _ in range(DRAWS)]
    draws = np.array([draw for draw, _, _ in out])
    for i in range(q):
        mine = rows == i
        P = prec + alpha * F[cols[mine]].T @ F[cols[mine]]
        b = alpha * F[cols[mine]].T @ (t[mine] - other_bias[cols[mine]]) + prec @ prior_mean[i]
        _moments_check(draws[:, i, :], np.linalg.solve(P, b), np.linalg.inv(P))
        # The conditional mean (the Rao-Blackwellised average's term) is P^-1 b itself.
        np.testing.assert_allclose(out[0][1][i], np.linalg.solve(P, b), rtol=1e-12, atol=1e-12)
    # The residual sum of squares of each draw, against the entries one by one (duplicates included).
    for draw, _, sse in out[:5]:
        direct = np.sum((t - other_bias[cols] - np.einsum("ij,ij->i", draw[rows], F[cols])) ** 2)
        assert sse == pytest.approx(direct, rel=1e-12)
    draw, _, sse = _sample_rows_averaged(pattern, values, F, None, alpha, prior_mean, prec, rng)
    assert sse == pytest.approx(np.sum((t - np.einsum("ij,ij->i", draw[rows], F[cols])) ** 2), rel=1e-12)
    # The plain half-step draws the same rows from the same generator state (one solve instead of two).
    for bias in (other_bias, None):
        plain = _sample_rows(pattern, values, F, bias, alpha, prior_mean, prec, np.random.default_rng(5))
        averaged = _sample_rows_averaged(pattern, values, F, bias, alpha, prior_mean, prec, np.random.default_rng(5))[0]
        np.testing.assert_allclose(plain, averaged, rtol=1e-10, atol=1e-12)


def _biased_low_rank(m, n, k, noise, rate, seed):
    rng = np.random.default_rng(seed)
    M = (3.0 + rng.standard_normal((m, 1)) * 0.5 + rng.standard_normal((1, n)) * 0.5
         + rng.standard_normal((m, k)) @ rng.standard_normal((k, n)) / np.sqrt(k))
    mask = rng.random((m, n)) < rate
    rows, cols = np.nonzero(mask)
    values = M[rows, cols] + noise * rng.standard_normal(rows.size)
    return M, rows, cols, values, mask


@pytest.mark.parametrize("implicit", ["both", "none"])
def test_low_noise_recovery_of_the_generating_model(implicit):
    """mu + b_i + c_j + rank-3 matrix, noise 0.01, 40% of 120 x 100 observed: the posterior mean
    predicts the unobserved entries to within 3x the noise level (least squares with the true
    subspace would get about noise * sqrt(2 * (k + 1) / 44) ~ 0.005 here; the 3x covers posterior
    averaging of a short chain), while the values' own spread is ~1.2."""
    M, rows, cols, values, mask = _biased_low_rank(120, 100, 3, 0.01, 0.4, seed=3)
    result = bpmf_implicit(rows, cols, values, M.shape, rank=3, burnin=30, samples=30, implicit=implicit,
                           rng=np.random.default_rng(0))
    assert result.status.converged
    model = FactorModel.from_outputs(result.outputs)
    hr, hc = np.nonzero(~mask)
    err = model.predict(hr, hc) - M[hr, hc]
    assert np.sqrt(np.mean(err**2)) < 0.03
    assert result.info["alpha"] > 1 / (3 * 0.01) ** 2


def test_seed_determinism_and_dependence():
    M, rows, cols, values, _ = _biased_low_rank(40, 30, 2, 0.3, 0.5, seed=4)
    run = [bpmf_implicit(rows, cols, values, M.shape, rank=2, burnin=3, samples=4, rng=np.random.default_rng(s))
           for s in (7, 7, 8)]
    for key in ("U", "V", "row_bias", "col_bias"):
        np.testing.assert_array_equal(run[0].outputs[key], run[1].outputs[key])
    assert not np.allclose(run[0].outputs["U"], run[2].outputs["U"])
    with pytest.raises(ValueError, match="implicit='users'"):
        bpmf_implicit(rows, cols, values, M.shape, rank=2, implicit="users", rng=np.random.default_rng(0))


def test_implicit_features_are_the_normalised_training_pattern_and_constant_when_complete():
    """Row i of the user features is 1/sqrt(|N(i)|) on the items i rated (duplicates once); on a
    fully observed matrix every row is the same vector, so ``X @ coef`` shifts every prior mean
    alike: the implicit terms carry no information there."""
    rows = np.array([0, 0, 0, 1, 2, 2])
    cols = np.array([1, 3, 1, 0, 0, 2])
    X = implicit_features(Entries(rows, cols, np.ones(6), (3, 4)), 0).toarray()
    expected = np.array([[0, 1, 0, 1], [1, 0, 0, 0], [1, 0, 1, 0]]) / np.sqrt([[2], [1], [2]])
    np.testing.assert_allclose(X, expected, rtol=1e-15)
    Z = implicit_features(Entries(rows, cols, np.ones(6), (3, 4)), 1).toarray()
    np.testing.assert_allclose(Z, expected.T.astype(bool) / np.sqrt(np.maximum((expected > 0).sum(0), 1))[:, None],
                               rtol=1e-15)
    full_r, full_c = np.divmod(np.arange(12), 4)
    for axis, count in ((0, 4), (1, 3)):
        F = implicit_features(Entries(full_r, full_c, np.ones(12), (3, 4)), axis).toarray()
        np.testing.assert_allclose(F, np.full(F.shape, 1 / np.sqrt(count)), rtol=1e-15)


def test_implicit_terms_change_nothing_on_a_complete_matrix():
    """Every user rated every item: with and without implicit priors the posterior-mean
    predictions agree to Monte Carlo error (here bounded by the noise 0.05 over sqrt(samples))."""
    M, rows, cols, values, _ = _biased_low_rank(30, 25, 2, 0.05, 1.1, seed=5)
    preds = []
    for implicit in ("both", "none"):
        result = bpmf_implicit(rows, cols, values, M.shape, rank=2, burnin=20, samples=40, implicit=implicit,
                               rng=np.random.default_rng(2))
        preds.append(FactorModel.from_outputs(result.outputs).predict(rows, cols))
    assert np.sqrt(np.mean((preds[0] - preds[1]) ** 2)) < 0.05 / np.sqrt(40) * 3


def test_implicit_feedback_helps_where_only_the_pattern_is_informative():
    """Two user types with opposite tastes on 100 regular items (4 stars on one half, 2 on the
    other, noise 0.5) of which each user rated ~3; each type also rates ~10 of its own 50 'marker'
    items, all 3 stars for everyone. The marker ratings' values say nothing about the type, which
    items were rated says it exactly (the mechanism SVD++ models): with implicit priors the RMSE on
    held-out regular ratings is lower than without by more than 5x the spread between two seeds."""
    rng = np.random.default_rng(6)
    m, regular, markers = 1000, 100, 50
    n = regular + 2 * markers
    type_a = rng.random(m) < 0.5
    j = np.arange(n)
    own_markers = np.where(type_a[:, None], (j >= regular) & (j < regular + markers), j >= regular + markers)
    observed = rng.random((m, n)) < np.where(j < regular, 0.03, 0.0)[None, :] + 0.2 * own_markers
    rows, cols = np.nonzero(observed)
    truth = np.where(cols < regular, np.where(type_a[rows] == (cols < regular // 2), 4.0, 2.0), 3.0)
    values = truth + 0.5 * rng.standard_normal(rows.size)
    held = (rng.random(rows.size) < 0.3) & (cols < regular)
    scores = {}
    for implicit in ("both", "none"):
        scores[implicit] = [
            bpmf_implicit(rows[~held], cols[~held], values[~held], (m, n), rank=2, burnin=10, samples=20,
                          implicit=implicit, heldout=Heldout(rows[held], cols[held], values[held]),
                          rng=np.random.default_rng(seed)).metrics["val_rmse"]
            for seed in (0, 1)]
    spread = max(abs(v[0] - v[1]) for v in scores.values())
    assert np.mean(scores["both"]) < np.mean(scores["none"]) - 5 * spread


def test_auto_picks_bpmf_implicit_for_ratings_up_to_the_gram_limit():
    ratings = np.repeat(np.arange(1.0, 6.0), 200)
    assert _choose_method(ratings, "auto", True, (943, 1682))[0] == "bpmf-implicit"
    assert _choose_method(ratings, "auto", True, (10**6, IMPLICIT_MAX_SIDE))[0] == "bpmf-implicit"
    method, reason = _choose_method(ratings, "auto", True, (10**6, IMPLICIT_MAX_SIDE + 1))
    assert method == "bpmf" and "Gram" in reason


def test_cli_fit_writes_the_posterior_mean_and_its_parameters(cli, tmp_path):
    """Through ``matcli complete``: the --param values reach the kernel, the model file stacks the
    kept samples with the averaged biases, and its formula reproduces the reported test RMSE."""
    rng = np.random.default_rng(9)
    M, rows, cols, values, mask = _biased_low_rank(60, 50, 2, 0.2, 0.5, seed=9)
    held = rng.random(rows.size) < 0.2
    for name, keep in (("train.tsv", ~held), ("test.tsv", held)):
        np.savetxt(tmp_path / name, np.column_stack([rows[keep] + 1, cols[keep] + 1, values[keep]]),
                   fmt=["%d", "%d", "%.10g"])
    report = tmp_path / "r.json"
    res = cli(["complete", tmp_path / "train.tsv", "--test", tmp_path / "test.tsv", "-m", "bpmf-implicit",
               "--rank", "2", "-p", "samples=7", "-p", "burnin=4", "-p", "implicit=rows", "-p", "lambda_beta=2",
               "--bias", "--validate", "0.1", "--strict", "--seed", "3", "-o", tmp_path / "m.h5",
               "--report", report, "--quiet"])
    assert res.exit_code == 0, res.stderr
    rep = json.loads(report.read_text())
    assert rep["method"] == "bpmf-implicit" and rep["status"]["converged"]
    assert rep["params"]["implicit"] == "rows" and rep["params"]["lambda_beta"] == 2.0
    assert rep["info"]["samples_averaged"] == 7 and rep["info"]["implicit"] == "rows"
    with h5py.File(tmp_path / "m.h5") as fh:
        U, V = fh["U"][()], fh["V"][()]
        mu, rb, cb = float(fh["mu"][()]), fh["row_bias"][()], fh["col_bias"][()]
        row_ids, col_ids = fh["row_ids"][()], fh["col_ids"][()]
        assert fh.attrs["factor_columns"] == U.shape[1] == 2 * 7
    test = np.loadtxt(tmp_path / "test.tsv")
    r = np.searchsorted(row_ids, test[:, 0].astype(np.uint64))
    c = np.searchsorted(col_ids, test[:, 1].astype(np.uint64))
    pred = mu + rb[r] + cb[c] + np.einsum("ij,ij->i", U[r], V[c])
    assert rep["metrics"]["test_rmse"] == pytest.approx(np.sqrt(np.mean((pred - test[:, 2]) ** 2)), rel=1e-10)
    # The values spread ~1.2 around their mean; the fit must be near the noise 0.2.
    assert rep["metrics"]["test_rmse"] < 0.4
