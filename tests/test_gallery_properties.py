"""Gallery problems have the properties they promise; matrix property detection is right."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from matcli import gallery
from matcli.core.properties import condition_estimate, describe, symmetry_error
from matcli.io.mtx import read_mtx
from tests.conftest import data_file


def test_poisson_2d_matches_kron_definition_and_is_spd():
    A = gallery.poisson((4, 5))
    T4 = np.diag(2 * np.ones(4)) - np.diag(np.ones(3), 1) - np.diag(np.ones(3), -1)
    T5 = np.diag(2 * np.ones(5)) - np.diag(np.ones(4), 1) - np.diag(np.ones(4), -1)
    np.testing.assert_array_equal(A.toarray(), np.kron(T4, np.eye(5)) + np.kron(np.eye(4), T5))
    # Known spectrum: 4 - 2cos(i pi/5) - 2cos(j pi/6) > 0.
    lam = np.linalg.eigvalsh(A.toarray())
    expect = np.sort([4 - 2 * np.cos(i * np.pi / 5) - 2 * np.cos(j * np.pi / 6)
                      for i in range(1, 5) for j in range(1, 6)])
    np.testing.assert_allclose(lam, expect, atol=1e-12)


def test_spd_problem_has_requested_condition_and_solution():
    p = gallery.spd_problem(60, 1e4, np.random.default_rng(0))
    np.testing.assert_allclose(np.linalg.cond(p["A"]), 1e4, rtol=1e-6)
    np.testing.assert_allclose(p["A"] @ p["x_true"], p["b"])


def test_regression_problem_optimum_is_x_true():
    p = gallery.regression_problem(300, 10, 1e6, 3, 0.1, np.random.default_rng(1))
    x, *_ = np.linalg.lstsq(p["A"], p["b"], rcond=None)
    np.testing.assert_allclose(x, p["x_true"], rtol=1e-6, atol=1e-6 * np.linalg.norm(p["x_true"]))
    np.testing.assert_allclose(np.linalg.norm(p["A"] @ x - p["b"]), p["optimal_residual"], rtol=1e-8)
    np.testing.assert_allclose(np.linalg.cond(p["A"]), 1e6, rtol=1e-4)


def test_completion_problem_entries_are_exact_low_rank_samples():
    p = gallery.completion_problem(50, 40, 3, 0.3, 0.0, 0.2, np.random.default_rng(2))
    M = p["U_true"] @ p["V_true"].T
    for part in ("observed", "test"):
        np.testing.assert_allclose(M[p[f"{part}/row"], p[f"{part}/col"]], p[f"{part}/value"])
    pairs = set(zip(p["observed/row"], p["observed/col"])) | set(zip(p["test/row"], p["test/col"]))
    assert len(pairs) == p["observed/row"].size + p["test/row"].size


def test_batch_systems_share_pattern():
    p = gallery.poisson_batch((5, 5), 3, 0.1, np.random.default_rng(3))
    patterns = [p[f"systems/s{t:03d}/A"].indices.tolist() for t in range(3)]
    assert patterns[0] == patterns[1] == patterns[2]


def test_describe_real_matrices():
    spd = read_mtx(str(data_file("matrices/494_bus.mtx")))
    facts = describe(spd)
    assert facts["symmetry"] == "symmetric" and facts["definiteness"] == "positive definite"
    np.testing.assert_allclose(facts["condition_estimate"], 2.42e6, rtol=0.02)  # MANIFEST cond2
    indef = describe(read_mtx(str(data_file("matrices/hangGlider_2.mtx"))))
    assert indef["definiteness"] == "indefinite"
    nonsym = describe(read_mtx(str(data_file("matrices/west0479.mtx"))))
    assert nonsym["symmetry"] == "general"


def test_symmetry_error_and_sparse_condition_estimate():
    A = gallery.poisson((50, 50))
    assert symmetry_error(A) == 0.0
    B = A + sp.random(*A.shape, density=1e-3, random_state=np.random.default_rng(4))
    assert symmetry_error(B) > 0
    cond, how = condition_estimate(A)
    exact = (4 - 4 * np.cos(50 * np.pi / 51)) / (4 - 4 * np.cos(np.pi / 51))
    assert "1-norm" in how and exact / 3 < cond < exact * 3
