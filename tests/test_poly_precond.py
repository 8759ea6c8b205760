"""The Chebyshev polynomial preconditioner with its degree chosen from Ritz values (``cheb_degree=0``)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from numpy.polynomial import chebyshev as C

import matcli
from matcli.core.errors import UsageError
from matcli.core.registry import get_spec
from matcli.methods.solve import krylov, precond

EPS = np.finfo(float).eps


def poisson(n: int) -> sp.csr_matrix:
    T = sp.diags([-1.0, 2.0, -1.0], [-1, 0, 1], shape=(n, n))
    return sp.csr_matrix(sp.kron(sp.eye(n), T) + sp.kron(T, sp.eye(n)))


def scaled_poisson(n: int, seed: int) -> sp.csr_matrix:
    """S L S with S spanning a decade: SPD with a variable diagonal (Jacobi scaling matters)."""
    S = sp.diags(10 ** np.random.default_rng(seed).uniform(-0.5, 0.5, n * n))
    return sp.csr_matrix(S @ poisson(n) @ S)


def residual_polynomial(lam: np.ndarray, degree: int, a: float, b: float) -> np.ndarray:
    """1 - lam p(lam) of the Chebyshev iteration on [a, b]: T_m((b + a - 2 lam)/(b - a)) / T_m((b + a)/(b - a)),
    evaluated with numpy's Chebyshev series (independent of the kernel's three-term recurrence)."""
    coef = np.zeros(degree + 1)
    coef[-1] = 1.0
    return C.chebval((b + a - 2 * lam) / (b - a), coef) / C.chebval((b + a) / (b - a), coef)


def test_auto_degree_preconditioner_is_the_chebyshev_polynomial_and_spd():
    A = scaled_poisson(8, seed=3)
    n = A.shape[0]
    M = precond.chebyshev(A, 0, np.random.default_rng(0))
    assert M.info["degree_choice"] == "auto"
    m = M.info["degree"]
    a, b = M.info["interval"]
    Z = M.apply(np.eye(n))                                   # M^{-1} as a dense matrix
    # symmetric to rounding: m steps, each a product with <= 5 entries per row, on entries of size |Z|
    assert np.abs(Z - Z.T).max() <= 10 * m * 5 * EPS * np.abs(Z).max()
    # x^T M^{-1} x > 0: the symmetric part is positive definite
    assert np.linalg.eigvalsh((Z + Z.T) / 2).min() > 0
    # Independent reference: D^{1/2} M^{-1} D^{1/2} = p(H) with H = D^{-1/2} A D^{-1/2}, so its
    # eigenvalues are p(lambda_i) = (1 - r(lambda_i)) / lambda_i on the eigenvalues of H.
    d = A.diagonal()
    H = (A.toarray() / np.sqrt(d)[:, None]) / np.sqrt(d)[None, :]
    lam = np.linalg.eigvalsh(H)
    expected = np.sort((1 - residual_polynomial(lam, m, a, b)) / lam)
    got = np.linalg.eigvalsh(np.sqrt(d)[:, None] * ((Z + Z.T) / 2) * np.sqrt(d)[None, :])
    np.testing.assert_allclose(got, expected, rtol=1e-9 * m, atol=0)
    assert b > lam.max()                                      # the interval covers the spectrum's top


def test_cost_model_matches_the_chebyshev_bound():
    # eps_m = 1 / T_m((b + a)/(b - a)) from numpy's series; PCG iterations sqrt(kappa) ln(2/rtol) / 2.
    a, b, nnz, n = 0.01, 2.2, 5000, 1000
    for m in (1, 2, 5, 17):
        coef = np.zeros(m + 1)
        coef[-1] = 1.0
        eps = 1 / C.chebval((b + a) / (b - a), coef)
        kappa = (1 + eps) / (1 - eps)
        its, flops = precond.chebyshev_pcg_cost(m, a, b, nnz, n)
        assert its == max(1, int(np.ceil(0.5 * np.sqrt(kappa) * np.log(2e8))))
        assert flops == its * (2 * nnz + 12 * n + (m - 1) * (2 * nnz + 6 * n))
    degree, facts = precond.choose_chebyshev_degree(a, b, nnz, n)
    costs = [precond.chebyshev_pcg_cost(m, a, b, nnz, n)[1] for m in range(1, 65)]
    assert costs[degree - 1] == min(costs) and facts["model_flops"] == min(costs)
    # kappa(D^-1 A) = 1 (A = c I): no polynomial can do better than one step
    assert precond.choose_chebyshev_degree(0.999, 1.0, 100, 100)[0] == 1


@pytest.mark.parametrize("n", [32, 48])
def test_auto_degree_cuts_cg_iterations_on_poisson(n):
    # Degree m >= 2 on an interval holding the spectrum divides the modelled PCG iterations by about m;
    # the Ritz lower end over-estimates lambda_min (fewer damped modes), so only a quarter is required.
    A = poisson(n)
    b = np.ones(n * n)
    M = precond.build(A, "chebyshev", symmetric_matrix=True, params={"cheb_degree": 0}, rng=np.random.default_rng(1))
    assert M.info["degree"] >= 2
    plain = krylov.cg(A, b, rtol=1e-8)
    with_poly = krylov.cg(A, b, M=M, rtol=1e-8)
    for r in (plain, with_poly):
        assert r.status.converged
        assert np.linalg.norm(b - A @ r.outputs["x"]) <= 1e-8 * np.linalg.norm(b) * (1 + 1e-6)
    assert with_poly.iterations < 0.75 * plain.iterations


def test_solve_reports_the_chosen_degree():
    A = poisson(20)
    out = matcli.solve(A, method="cg", precond="chebyshev", params=["cheb_degree=0"], seed=1)
    info = out.report["problem"]["setup"]["preconditioner_info"]
    assert out.converged
    assert info["degree_choice"] == "auto" and 1 <= info["degree"] <= precond.MAX_CHEBYSHEV_DEGREE
    assert info["model_pcg_iterations"] >= 1 and len(info["interval"]) == 2
    given = matcli.solve(A, method="cg", precond="chebyshev", params=["cheb_degree=3"], seed=1)
    assert given.report["problem"]["setup"]["preconditioner_info"]["degree_choice"] == "given"
    assert given.report["problem"]["setup"]["preconditioner_info"]["degree"] == 3


def test_degree_parameter_range():
    spec = get_spec("solve", "cg").param("cheb_degree")
    assert spec.parse("0") == 0 and spec.parse("64") == 64
    for bad in ("-1", "65", "auto"):
        with pytest.raises(UsageError):
            spec.parse(bad)
