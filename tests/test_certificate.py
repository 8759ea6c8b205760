"""The shared certificate check (matcli.jobs.certificate): what was asked decides every status.

Unit cases feed it results whose kernel status claims success while the metrics say otherwise (the
false successes of issue #17, rebuilt as results), and results that truly meet the request; CLI cases
check that the report and the output attributes carry the certified status and that --strict exits 3.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import scipy.sparse as sp

from matcli.core.result import Result, Status
from matcli.jobs.certificate import EPS, TRIPLET_FLOOR, certify, orthogonality_limit
from matcli.methods.solve.system import solution_metrics


def solve_job(A, method="gmres", rtol=1e-8, **params):
    return SimpleNamespace(family="solve", method=method, rtol=rtol, resolved_params=params,
                           systems=[SimpleNamespace(A=A)])


def solve_result(A, x, b, status, **kw):
    metrics = solution_metrics(A, x.reshape(len(x), -1), b.reshape(len(b), -1), **kw)
    return Result(status=status, outputs={"x": x}, metrics=metrics)


def test_minres_false_success_on_singular_3x3_is_a_certificate_failure():
    """scipy's gmres defective-matrix case: a singular 3x3 whose recurrence said rtol was met."""
    A = np.array([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 0]])
    b = np.array([1.0, 1.0, 1.0])
    x = np.array([1.0, 1.0, 0.0])  # the least-squares solution: true relative residual 1/sqrt(3)
    result = certify(solve_job(A, "minres"), solve_result(A, x, b, Status.CONVERGED_RTOL))
    assert result.status == Status.CERTIFICATE_RESIDUAL
    check = result.info["certificate"]["checks"][0]
    assert check["check"] == "relative_residual" and check["value"] == pytest.approx(1 / np.sqrt(3))
    assert "converged_rtol" in result.message and "relative_residual" in result.message


def test_true_solution_passes_and_keeps_the_kernel_status():
    rng = np.random.default_rng(0)
    A = rng.standard_normal((20, 20)) + 20 * np.eye(20)
    b = rng.standard_normal(20)
    x = np.linalg.solve(A, b)
    result = certify(solve_job(A), solve_result(A, x, b, Status.CONVERGED_RTOL))
    assert result.status == Status.CONVERGED_RTOL and result.info["certificate"]["passed"]


def test_direct_solve_is_judged_by_backward_error_lapack_ratio():
    """An ill-conditioned system solved by LU: relative residual may exceed rtol, the backward error
    does not exceed 30 n eps; a perturbed x fails it."""
    n = 12
    A = 1.0 / (np.arange(n)[:, None] + np.arange(n)[None, :] + 1.0)  # Hilbert, cond ~ 1e16
    b = A @ np.ones(n)
    x = np.linalg.solve(A, b)
    good = certify(solve_job(A, "lu", rtol=1e-14), solve_result(A, x, b, Status.CONVERGED_DIRECT))
    assert good.status == Status.CONVERGED_DIRECT
    assert good.info["certificate"]["checks"][0]["limit"] == pytest.approx(30 * n * EPS)
    bad = certify(solve_job(A, "lu"), solve_result(A, x + 1e-6, b, Status.CONVERGED_DIRECT))
    assert bad.status == Status.CERTIFICATE_RESIDUAL


def test_least_squares_certificate_uses_the_normal_equations():
    rng = np.random.default_rng(1)
    A = rng.standard_normal((30, 10))
    b = rng.standard_normal(30)  # inconsistent
    x = np.linalg.lstsq(A, b, rcond=None)[0]
    ok = certify(solve_job(A, "lsmr", atol=1e-8), solve_result(A, x, b, Status.CONVERGED_ATOL))
    assert ok.status == Status.CONVERGED_ATOL
    assert ok.info["certificate"]["checks"][0]["check"] == "normal_residual"
    assert ok.metrics["normal_residual"] <= 30 * 30 * EPS
    off = certify(solve_job(A, "lsmr", atol=1e-8), solve_result(A, x + 1e-4, b, Status.CONVERGED_ATOL))
    assert off.status == Status.CERTIFICATE_RESIDUAL


def test_least_squares_only_stays_negative_and_records_its_certificate():
    A = np.diag([1.0, 1.0, 0.0])
    b = np.ones(3)
    x = np.array([1.0, 1.0, 0.0])
    result = certify(solve_job(A, "lsmr", atol=1e-8),
                     solve_result(A, x, b, Status.LEAST_SQUARES_ONLY, least_squares=True))
    assert result.status == Status.LEAST_SQUARES_ONLY
    assert result.info["certificate"]["passed"]  # a true least-squares solution: the check passes


def svd_job(method="svd-propack", rank=3, tol=0.0, shape=(6, 5)):
    return SimpleNamespace(family="factorize", kind="svd", method=method, shape=shape,
                           resolved_params={"rank": rank, "tol": tol})


def svd_result(A, U, s, Vt):
    from matcli.methods.factorize.metrics import svd_metrics

    metrics, _ = svd_metrics(A, U, s, Vt, np.random.default_rng(0))
    return Result(status=Status.CONVERGED_RTOL, outputs={"U": U, "s": s, "Vt": Vt}, metrics=metrics)


def test_propack_ones_matrix_false_success_is_caught():
    """s = [5.477, 1.039, 0] with non-orthonormal vectors on the 6x5 ones matrix (exact [5.477, 0, 0])."""
    A = np.ones((6, 5))
    rng = np.random.default_rng(2)
    U = np.linalg.qr(rng.standard_normal((6, 3)))[0]
    U[:, 1] = U[:, 0]  # a repeated vector: orthogonality loss ~ 1.41
    V = np.linalg.qr(rng.standard_normal((5, 3)))[0]
    s = np.array([np.sqrt(30.0), 1.039, 0.0])
    result = certify(svd_job(), svd_result(A, U, s, V.T))
    assert result.status.converged is False
    failed = [c["check"] for c in result.info["certificate"]["checks"] if not c["passed"]]
    assert "orthogonality_loss" in failed and "max_triplet_residual" in failed


def test_block_krylov_missing_triplets_are_a_count_failure():
    A = np.ones((6, 5))
    u, v = np.ones((6, 1)) / np.sqrt(6), np.ones((5, 1)) / np.sqrt(5)
    job = svd_job("svd-block-krylov", rank=3)
    result = certify(job, svd_result(A, u, np.array([np.sqrt(30.0)]), v.T))
    assert result.status == Status.CERTIFICATE_COUNT
    assert "got 1" in result.info["certificate"]["checks"][0]["meaning"]


def test_exact_svd_with_zero_singular_values_passes():
    """The ones matrix's exact SVD: one nonzero value, any orthonormal completion for the zeros."""
    A = np.ones((6, 5))
    U, s, Vt = np.linalg.svd(A, full_matrices=False)
    result = certify(svd_job("svd-dense"), svd_result(A, U[:, :3], s[:3], Vt[:3]))
    assert result.status == Status.CONVERGED_RTOL, result.info["certificate"]
    assert all(c["passed"] for c in result.info["certificate"]["checks"])


def test_zero_matrix_with_zero_vectors_fails_orthogonality():
    A = np.zeros((8, 6))
    result = certify(svd_job("svd-propack", rank=2, shape=A.shape),
                     svd_result(A, np.zeros((8, 2)), np.zeros(2), np.zeros((2, 6))))
    assert result.status == Status.CERTIFICATE_ORTHOGONALITY


def test_nmf_worse_than_nothing_fails_and_sparse_residual_metric_missing_fails():
    job = SimpleNamespace(family="factorize", kind="nmf", method="nmf-mu", shape=(4, 4),
                          resolved_params={"rank": 2})
    assert certify(job, Result(Status.CONVERGED_RTOL, metrics={"reconstruction_error": 1.7})).status \
        == Status.CERTIFICATE_ERROR
    assert certify(job, Result(Status.CONVERGED_RTOL, metrics={"reconstruction_error": float("inf")})).status \
        == Status.CERTIFICATE_ERROR
    assert certify(job, Result(Status.CONVERGED_RTOL, metrics={"reconstruction_error": 0.3})).status \
        == Status.CONVERGED_RTOL
    lu = SimpleNamespace(family="factorize", kind="lu", method="lu-sparse", shape=(5, 5),
                         resolved_params={})
    missing = certify(lu, Result(Status.CONVERGED_DIRECT, metrics={}))
    assert missing.status == Status.CERTIFICATE_RESIDUAL and "missing" in missing.message


def test_orthogonality_limit_is_between_householder_and_lanczos_accuracy():
    assert orthogonality_limit(1, 10) == pytest.approx(np.sqrt(EPS))
    assert orthogonality_limit(100, 10**4) == pytest.approx(10 * np.sqrt(EPS))
    assert orthogonality_limit(100, 10**8) == pytest.approx(60 * 10**8 * EPS)
    assert TRIPLET_FLOOR == pytest.approx(1.49e-8, rel=1e-2)


def test_completion_worse_than_baseline_fails():
    job = SimpleNamespace(family="complete", method="als", resolved_params={})
    worse = Result(Status.CONVERGED_RTOL, metrics={"train_rmse": 0.5, "val_rmse": 1.2, "baseline_val_rmse": 1.0})
    assert certify(job, worse).status == Status.CERTIFICATE_ERROR
    better = Result(Status.CONVERGED_RTOL, metrics={"train_rmse": 0.5, "val_rmse": 0.9, "baseline_val_rmse": 1.0})
    assert certify(job, better).status == Status.CONVERGED_RTOL
    nan = Result(Status.CONVERGED_RTOL, metrics={"train_rmse": float("nan")})
    assert certify(job, nan).status == Status.CERTIFICATE_ERROR


def test_sketch_eps_bound_decides_iterative_modes():
    job = SimpleNamespace(family="sketch", method="precondition", resolved_params={"rtol": 1e-10, "eps": 1e-6})
    far = Result(Status.CONVERGED_RTOL, metrics={"relative_residual": 0.3, "residual_ratio_estimate": 1.01})
    assert certify(job, far).status == Status.CERTIFICATE_RESIDUAL
    near = Result(Status.CONVERGED_RTOL, metrics={"relative_residual": 0.3, "residual_ratio_estimate": 1 + 1e-7})
    assert certify(job, near).status == Status.CONVERGED_RTOL


# ------------------------------------------------------------------------------------------ CLI
def test_report_and_output_carry_the_certified_status(cli, tmp_path):
    """A singular inconsistent system solved with MINRES: whatever the kernel said, the status written
    beside x and in the report is the certificate's, and --strict exits 3."""
    import h5py

    from matcli.io.hdf5 import write_arrays

    A = sp.diags([1.0, 1.0, 0.0]).tocsr()
    write_arrays(str(tmp_path / "p.h5"), {"A": A, "b": np.ones(3)})
    result = cli(["solve", str(tmp_path / "p.h5:/A"), "--rhs", str(tmp_path / "p.h5:/b"), "--method", "minres",
                  "-o", str(tmp_path / "x.h5"), "--report", str(tmp_path / "r.json"), "--strict", "--quiet"])
    assert result.exit_code == 3, result.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["status"]["converged"] is False
    assert report["certificate"]["checks"] and report["certificate"]["passed"] is False
    assert "certificate" not in report["info"]
    with h5py.File(tmp_path / "x.h5") as fh:
        assert fh.attrs["status"] == report["status"]["reason"] and not fh.attrs["converged"]


def test_converged_report_lists_passed_checks(cli, tmp_path):
    from matcli import gallery
    from matcli.io.hdf5 import write_arrays

    write_arrays(str(tmp_path / "p.h5"), gallery.poisson_problem((20, 20), np.random.default_rng(3)))
    result = cli(["solve", str(tmp_path / "p.h5:/A"), "--rhs", str(tmp_path / "p.h5:/b"), "--method", "cg",
                  "-o", str(tmp_path / "x.h5"), "--report", str(tmp_path / "r.json"), "--strict", "--quiet"])
    assert result.exit_code == 0, result.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["certificate"]["passed"] is True
    (check,) = report["certificate"]["checks"]
    assert check["check"] == "relative_residual" and check["value"] <= check["limit"] == pytest.approx(1e-8, rel=1e-5)
