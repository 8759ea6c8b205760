"""scipy's ``sparse/linalg/_isolve/tests/test_iterative.py``, ported to matcli's iterative solvers.

Every case of scipy's ``IterativeParams`` (23 with ``sym-nonpd``; the ``-F`` ones in float32 /
complex64) runs through every matcli iterative method (cg, minres, gmres, bicgstab, lsqr, lsmr,
sor, ssor) that accepts it: through the CLI with ``--strict`` (the exit code and the status the
user sees decide), and through the setup factories the job uses with every preconditioner. Then
the catalogue's contract tests: maxiter reached, zero right-hand side, x0 handling, tolerance
semantics, badly scaled preconditioners, the GMRES breakdown cases.

Tolerances: scipy uses rtol 1e-8 for double and 1e-2 for single precision. matcli computes every
``-F`` case in double precision (``system.as_matrix``), so it is held to 1e-8 throughout. Every
residual is recomputed here in complex128 from the returned x; "converged" must mean
``||b - A x|| <= rtol ||b||`` for that x, and a failed solve must not return more than it was
given (``||b - A x|| <= ||b||`` from x0 = 0, scipy's check for its non-converging cases).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.linalg import lu_factor, lu_solve

from conftest import data_file, solve_outputs
from matcli.core.errors import UsageError
from matcli.core.result import Status
from matcli.io.hdf5 import write_arrays
from matcli.methods.solve import krylov, solvers
from matcli.methods.solve.auto import SYMMETRY_TOL
from matcli.methods.solve.precond import Preconditioner

RTOL = 1e-8


@dataclass(frozen=True)
class Case:
    name: str
    A: object  #: dense ndarray or scipy.sparse matrix, in the case's own dtype
    b: np.ndarray
    hermitian: bool
    #: A or -A is Hermitian positive definite
    definite: bool
    positive_definite: bool
    zero_free_diagonal: bool
    lower_triangular: bool

    @cached_property
    def wide(self):
        """A in complex128 (sparse stays sparse) for independent residual checks."""
        if sp.issparse(self.A):
            return sp.csr_matrix(self.A, dtype=np.complex128)
        return np.asarray(self.A, dtype=np.complex128)

    @property
    def single(self) -> bool:
        return np.dtype(self.A.dtype) in (np.dtype(np.float32), np.dtype(np.complex64))


def is_hermitian(dense: np.ndarray) -> bool:
    """Hermitian up to rounding, by the test the solve job applies (``symmetry_error <= 1e-12``):
    scipy's rand-cmplx-sym-pd, ``conj(D) @ D.T``, differs from its adjoint by ~1e-15."""
    return bool(np.abs(dense - dense.conj().T).max() <= SYMMETRY_TOL * np.abs(dense).max())


def _case(name: str, A, b=None) -> Case:
    dense = (A.toarray() if sp.issparse(A) else np.asarray(A)).astype(np.complex128)
    herm = is_hermitian(dense)
    eig = np.linalg.eigvalsh((dense + dense.conj().T) / 2) if herm else None
    pd = bool(herm and eig.min() > 0)
    definite = bool(herm and (eig.min() > 0 or eig.max() < 0))
    if b is None:
        b = np.arange(dense.shape[0], dtype=A.dtype)
    return Case(name, A, b, herm, definite, pd, bool(np.all(np.diag(dense) != 0)),
                bool(np.array_equal(dense, np.tril(dense))))


def iterative_params() -> list[Case]:
    """The cases of scipy's ``IterativeParams`` in scipy's order (23 with sym-nonpd)."""
    cases = []
    n = 40
    data = np.ones((3, n))
    data[0, :] = 2
    data[1, :] = -1
    data[2, :] = -1
    poisson1d = sp.dia_matrix((data, [0, -1, 1]), shape=(n, n)).tocsr()
    cases += [_case("poisson1d", poisson1d), _case("poisson1d-F", poisson1d.astype(np.float32)),
              _case("neg-poisson1d", -poisson1d), _case("neg-poisson1d-F", (-poisson1d).astype(np.float32))]
    poisson2d = sp.kronsum(poisson1d, poisson1d).tocsr()
    cases += [_case("poisson2d", poisson2d), _case("poisson2d-F", poisson2d.astype(np.float32))]
    diag = np.array([[6, -5, 2, 7, -1, 10, 4, -3, -8, 9]], dtype=float)
    rand_diag = sp.dia_matrix((diag, [0]), shape=(10, 10)).tocsr()
    cases += [_case("rand-diag", rand_diag), _case("rand-diag-F", rand_diag.astype(np.float32))]
    rand = np.random.RandomState(1234).rand(4, 4)
    cases += [_case("rand", rand), _case("rand-F", rand.astype(np.float32))]
    sym = rand + rand.T
    cases += [_case("rand-sym", sym), _case("rand-sym-F", sym.astype(np.float32))]
    spd = np.random.RandomState(1234).rand(9, 9)  # scipy seeds the legacy global state with 1234
    spd = spd @ spd.T
    cases += [_case("rand-sym-pd", spd), _case("rand-sym-pd-F", spd.astype(np.float32))]
    state = np.random.RandomState(1234)
    cmplx = state.rand(4, 4) + 1j * state.rand(4, 4)
    cases += [_case("rand-cmplx", cmplx), _case("rand-cmplx-F", cmplx.astype(np.complex64))]
    herm = cmplx + cmplx.T.conj()
    cases += [_case("rand-cmplx-herm", herm), _case("rand-cmplx-herm-F", herm.astype(np.complex64))]
    state = np.random.RandomState(1234)
    hpd = state.rand(9, 9) + 1j * state.rand(9, 9)
    hpd = hpd.conj() @ hpd.T
    cases += [_case("rand-cmplx-sym-pd", hpd), _case("rand-cmplx-sym-pd-F", hpd.astype(np.complex64))]
    data = np.ones((2, 10))
    data[0, :] = 2
    data[1, :] = -1
    nonsym = sp.dia_matrix((data, [0, -1]), shape=(10, 10)).tocsr()
    cases += [_case("nonsymposdef", nonsym), _case("nonsymposdef-F", nonsym.astype(np.complex64))]
    A = np.zeros((11, 11))
    A[:5, 5] = A[5, :5] = [1, 2, 2, 2, 1]
    for i in range(5):
        A[i, 6 + i] = A[6 + i, i] = A[6 + i, 6 + i] = -1
    b = np.zeros(11)
    b[5] = 1
    cases.append(_case("sym-nonpd", A, b))
    return cases


#: Every iterative solve method of matcli (``matcli methods solve``).
ITERATIVE = ("cg", "minres", "gmres", "bicgstab", "lsqr", "lsmr", "sor", "ssor")


def rejection(case: Case, method: str) -> tuple[str, str] | None:
    """How matcli refuses ``method`` on ``case`` before iterating, as ``(kind, why)``: kind ``usage``
    (exit 2) or ``status`` (a negative status without iterating); None when the method runs."""
    if method == "minres" and not case.hermitian:
        return "usage", "MINRES needs a Hermitian matrix"
    if method == "cg" and not case.hermitian:
        return "status", "CG needs a Hermitian positive definite matrix: diverged_not_spd before iterating"
    if method in ("sor", "ssor") and not case.zero_free_diagonal:
        return "usage", "SOR sweeps divide by the diagonal, which has zeros"
    return None


def must_converge(case: Case, method: str) -> bool:
    """Whether theory (or scipy's catalogue, for BiCGSTAB) promises convergence to rtol 1e-8.

    GMRES, LSQR, LSMR: every case is nonsingular. MINRES: nonsingular Hermitian. CG: Hermitian
    positive definite. BiCGSTAB: scipy lists sym-nonpd as its breakdown case. SOR/SSOR: A or -A
    Hermitian positive definite (Ostrowski-Reich; the sweeps on -A x = -b are the same), or A
    lower triangular (a forward sweep with omega = 1 is the triangular solve).
    """
    if rejection(case, method) is not None:
        return False
    if method in ("gmres", "lsqr", "lsmr"):
        return True
    if method == "minres":
        return case.hermitian
    if method == "cg":
        return case.positive_definite
    if method == "bicgstab":
        return case.name != "sym-nonpd"
    return case.definite or case.lower_triangular


CASES = iterative_params()
CASE_IDS = [c.name for c in CASES]
BY_NAME = {c.name: c for c in CASES}
#: (case, method) pairs that run (not refused before iterating).
RUNS = [(c.name, m) for c in CASES for m in ITERATIVE if rejection(c, m) is None]
#: SOR sweeps converge slowly on the dense ill-conditioned SPD cases (Gauss-Seidel, ~5e4 sweeps of
#: a 9x9); the Krylov methods keep matcli's default iteration cap.
SWEEP_CAP = 100_000


def maxiter_for(method: str) -> int | None:
    return SWEEP_CAP if method in ("sor", "ssor") else None


def relative_residual(A: np.ndarray, x, b) -> float:
    """||b - A x|| / ||b||, recomputed in complex128 (absolute for b = 0)."""
    r = np.asarray(b, dtype=np.complex128) - A @ np.asarray(x, dtype=np.complex128)
    bnorm = np.linalg.norm(np.asarray(b, dtype=np.complex128))
    return float(np.linalg.norm(r) / bnorm) if bnorm else float(np.linalg.norm(r))


def prepare(method: str, A, precond_name: str = "none", params: dict | None = None, *,
            hermitian: bool | None = None):
    """The setup factory the solve job calls for ``method`` (``hermitian``: the job's symmetry fact)."""
    if hermitian is None:
        hermitian = is_hermitian((A.toarray() if sp.issparse(A) else np.asarray(A)).astype(np.complex128))
    return getattr(solvers, f"prepare_{method}")(A, params=params or {}, precond_name=precond_name,
                                                 symmetric=hermitian, rng=np.random.default_rng(0))


def assert_honest(case: Case, result, rtol: float = RTOL) -> float:
    """The status agrees with the residual of the returned x; returns that residual."""
    x = result.outputs["x"]
    assert np.all(np.isfinite(x))
    rel = relative_residual(case.wide, x, case.b)
    assert abs(result.metrics["relative_residual"] - rel) <= 1e-10 * max(rel, 1.0)
    if result.status.converged:
        assert rel <= rtol, f"{result.status.reason} at true relative residual {rel:.3g}"
    else:
        assert rel <= 1.0 + 1e-12, f"{result.status.reason}: returned x is worse than x0 = 0 ({rel:.3g})"
    return rel


def write_case(tmp_path, case: Case) -> tuple[str, str]:
    """A and b as files matcli reads: dense .npy keeps float32/complex64; sparse goes to HDF5 (read
    as double precision, the values being exactly those of the single-precision matrix)."""
    if sp.issparse(case.A):
        path = tmp_path / "case.h5"
        write_arrays(str(path), {"A": sp.csr_matrix(case.A), "b": case.b})
        return f"{path}:/A", f"{path}:/b"
    np.save(tmp_path / "A.npy", np.asarray(case.A))
    np.save(tmp_path / "b.npy", case.b)
    return str(tmp_path / "A.npy"), str(tmp_path / "b.npy")


def solve_cli(cli, tmp_path, A_spec, b_spec, method, *extra):
    return solve_outputs(cli, tmp_path, [A_spec, "--rhs", b_spec, "-m", method, "--strict", *extra])


def test_catalogue_is_scipys():
    assert len(CASES) == 23
    assert [c.name for c in CASES if c.single] == [c.name + "-F" for c in CASES if not c.single and
                                                     c.name != "sym-nonpd"]
    assert BY_NAME["nonsymposdef-F"].A.dtype == np.complex64
    assert sum(c.positive_definite for c in CASES) == 8 and sum(c.hermitian for c in CASES) == 17


# ----------------------------------------------------------------------- convergence (CLI, --strict)
@pytest.mark.parametrize("method", ITERATIVE)
@pytest.mark.parametrize("name", CASE_IDS)
def test_convergence_through_cli(cli, tmp_path, name, method):
    """scipy's test_convergence: the exit code under --strict, the status and the x file agree."""
    case = BY_NAME[name]
    A_spec, b_spec = write_case(tmp_path, case)
    extra = ["--rtol", str(RTOL), "--precond", "none"] if method in ("cg", "minres", "gmres", "bicgstab") \
        else ["--rtol", str(RTOL)]
    if maxiter_for(method):
        extra += ["--maxiter", str(maxiter_for(method))]
    if method in ("lsqr", "lsmr"):
        extra += ["--param", "atol=1e-12"]
    result, report, x = solve_cli(cli, tmp_path, A_spec, b_spec, method, *extra)
    refused = rejection(case, method)
    if refused and refused[0] == "usage":
        assert result.exit_code == 2, result.stderr
        assert "internal" not in result.stderr
        return
    assert result.exit_code in (0, 3), result.stderr
    status = report["status"]
    assert (result.exit_code == 0) == status["converged"]
    assert report["problem"]["compute_dtype"] == ("complex128" if np.iscomplexobj(case.A) else "float64")
    if not sp.issparse(case.A):
        assert report["problem"]["dtype"] == str(case.A.dtype)
    if refused:  # refused with a status before iterating: nothing to write
        assert status["reason"] == "diverged_not_spd" and result.exit_code == 3 and x is None
        return
    rel = relative_residual(case.wide, x, case.b)
    if status["converged"]:
        assert rel <= RTOL
    else:
        assert rel <= 1.0 + 1e-12 and status["message"]
    if must_converge(case, method):
        assert result.exit_code == 0, f"{status['reason']} at {rel:.3g}: {status['message']}"


# ------------------------------------------------------------- every preconditioner (setup factories)
PRECONDS = ("none", "jacobi", "ic", "ilu", "amg-sa", "amg-rs", "chebyshev")
KRYLOV = ("cg", "minres", "gmres", "bicgstab")


def precond_refused(case: Case, method: str, name: str) -> str | None:
    """Combinations the solve job refuses as usage errors before any setup (exit 2)."""
    if name == "ilu" and method in ("cg", "minres"):
        return "ILU is not symmetric: CG/MINRES need a Hermitian positive definite preconditioner"
    if name == "amg-rs" and np.iscomplexobj(case.A):
        return "pyamg's Ruge-Stuben has no complex kernels"
    return None


def precond_must_converge(case: Case, method: str, name: str) -> bool:
    """GMRES with any nonsingular preconditioner on a nonsingular matrix; CG on an HPD matrix with an
    HPD preconditioner (all of jacobi, ic, amg-sa/rs, chebyshev are HPD for HPD A); MINRES on any
    nonsingular Hermitian matrix: jacobi scales by |diag A| (HPD), ic falls back to it when A is
    indefinite, and an AMG cycle or Chebyshev polynomial found indefinite during the solve is
    replaced by it (those 14 combinations ended diverged_not_spd before)."""
    if method == "gmres":
        return True
    if method == "cg" and case.positive_definite:
        return True
    return method == "minres" and case.hermitian


@pytest.mark.parametrize("method", KRYLOV)
@pytest.mark.parametrize("name", CASE_IDS)
def test_every_preconditioner(name, method):
    case = BY_NAME[name]
    if rejection(case, method):
        pytest.skip(rejection(case, method)[1])
    b_before = case.b.copy()
    for pname in PRECONDS:
        if precond_refused(case, method, pname):
            with pytest.raises(UsageError):
                prepare(method, case.A, pname, hermitian=case.hermitian)  # amg-rs refuses complex input in setup
                raise UsageError("refused by the job's validation")
            continue
        solver = prepare(method, case.A, pname, hermitian=case.hermitian)
        result = solver.solve(case.A, case.b, rtol=RTOL)
        assert result.outputs["x"].dtype == (np.complex128 if np.iscomplexobj(case.A) else np.float64)
        rel = assert_honest(case, result)
        if precond_must_converge(case, method, pname):
            assert result.status.converged, (pname, result.status.reason, rel, result.message)
        if "preconditioner_fallback" in solver.info:
            assert solver.info["preconditioner_requested"] == pname != solver.precond_name
    np.testing.assert_array_equal(case.b, b_before)


@pytest.mark.parametrize("name", ["neg-poisson1d", "rand-diag", "rand-sym", "rand-cmplx-herm", "sym-nonpd"])
def test_incomplete_cholesky_on_an_indefinite_matrix_falls_back(name):
    """Was a UsageError (exit 2): IC on a matrix that is not positive definite is a fact of the data."""
    case = BY_NAME[name]
    for method, weaker in (("minres", "jacobi"), ("gmres", "ilu")):
        solver = prepare(method, case.A, "ic", hermitian=case.hermitian)
        assert solver.precond_name == weaker
        assert "incomplete Cholesky broke down" in solver.info["preconditioner_fallback"]
        assert solver.solve(case.A, case.b, rtol=RTOL).status.converged


@pytest.mark.parametrize("name", ["poisson1d", "poisson2d"])
@pytest.mark.parametrize("method", KRYLOV)
def test_precond_inverse(name, method):
    """scipy: with the exact inverse as preconditioner the solve takes at most 3 products with A.
    Here: one iteration (BiCGSTAB's first half step), both as an operator and as an exact ILU/IC."""
    case = BY_NAME[name]
    factors = lu_factor(case.A.toarray())
    inverse = Preconditioner("inverse", lambda R: lu_solve(factors, R), True)
    kernel = getattr(krylov, method)
    result = kernel(case.A, case.b, M=inverse, rtol=RTOL)
    assert result.status.converged and result.iterations == 1
    assert_honest(case, result)
    exact = "ic" if method in ("cg", "minres") else "ilu"
    solver = prepare(method, case.A, exact, {"ilu_drop_tol": 0.0, "ilu_fill_factor": 100.0}, hermitian=True)
    result = solver.solve(case.A, case.b, rtol=RTOL)
    assert result.status.converged and result.iterations <= 2
    assert_honest(case, result)


# ------------------------------------------------------------------------------------ maxiter
@pytest.mark.parametrize("name,method", RUNS, ids=[f"{n}-{m}" for n, m in RUNS])
def test_maxiter(name, method):
    """scipy's test_maxiter: maxiter=1 at rtol 1e-12 makes one iteration and reports failure (unless
    that one iteration solved the system, which the residual must then show). Like scipy, the
    cases a method is not expected to solve are left out (their honesty is checked above)."""
    case = BY_NAME[name]
    if not must_converge(case, method):
        pytest.skip("not expected to converge (scipy: breakdown case / not applicable)")
    residuals = []

    def callback(it, **values):
        if "residual" in values:
            residuals.append(values["residual"])

    solver = prepare(method, case.A, hermitian=case.hermitian)
    result = solver.solve(case.A, case.b, rtol=1e-12, maxiter=1, callback=callback)
    assert len(residuals) == 1 and result.iterations == 1
    assert_honest(case, result, rtol=1e-12)
    if not result.status.converged:
        assert result.status in (Status.DIVERGED_MAX_IT, Status.DIVERGED_BREAKDOWN, Status.DIVERGED_NOT_SPD)


def test_maxiter_through_cli(cli, tmp_path):
    case = BY_NAME["poisson1d"]
    A_spec, b_spec = write_case(tmp_path, case)
    result, report, x = solve_cli(cli, tmp_path, A_spec, b_spec, "gmres", "--precond", "none", "--maxiter", "1")
    assert result.exit_code == 3 and report["status"]["reason"] == "diverged_max_it"
    assert report["iterations"] == 1 and len(report["history"]["residual"]) == 1
    assert cli(["solve", A_spec, "-m", "gmres", "--maxiter", "0", "-o", tmp_path / "y.h5"]).exit_code == 2


# ---------------------------------------------------------------------------- zero right-hand side
def _spd10(seed: int) -> np.ndarray:
    A = np.random.default_rng(seed).random((10, 10))
    return A @ A.T + 10 * np.eye(10)


@pytest.mark.parametrize("method", ITERATIVE)
def test_zero_rhs(method):
    """scipy's test_zero_rhs: b = 0 gives x = 0 exactly, also from x0 = ones, at every tolerance."""
    A = _spd10(1684414984100503)
    b = np.zeros(10)
    solver = prepare(method, A)
    for rtol in np.logspace(-10, 2, 7):
        if rtol >= 1:
            continue  # --rtol must lie in (0, 1): a usage error (tested below)
        for x0 in (None, np.ones(10)):
            result = solver.solve(A, b, x0=x0, rtol=rtol)
            assert result.status == Status.CONVERGED_ZERO_RHS
            np.testing.assert_array_equal(result.outputs["x"], np.zeros(10))


def test_zero_rhs_through_cli(cli, tmp_path):
    np.save(tmp_path / "A.npy", _spd10(1684414984100503))
    np.save(tmp_path / "b.npy", np.zeros((10, 2)))
    for method in ITERATIVE:
        result, report, x = solve_cli(cli, tmp_path, str(tmp_path / "A.npy"), str(tmp_path / "b.npy"), method)
        assert result.exit_code == 0, (method, result.stderr)
        assert report["status"]["reason"] == "converged_zero_rhs"
        np.testing.assert_array_equal(x, 0.0)


@pytest.mark.parametrize("rtol", ["0", "1", "-1", "2", "nan", "inf", "1e-400"])
def test_invalid_rtol_is_a_usage_error(cli, tmp_path, rtol):
    """scipy's test_invalid_atol: a tolerance outside (0, 1) is refused before any work."""
    np.save(tmp_path / "A.npy", np.eye(3))
    result = cli(["solve", tmp_path / "A.npy", "-m", "gmres", "--rtol", rtol, "-o", tmp_path / "x.h5"])
    assert result.exit_code == 2 and not (tmp_path / "x.h5").exists()


# ------------------------------------------------------------------------------------- x0
@pytest.mark.parametrize("method", ITERATIVE)
def test_x0_working(method):
    """scipy's test_x0_working (rtol 1e-6 from zero and from a random x0), x0 left untouched.

    A A^T here has cond 2.4e4: SOR/SSOR converge (SPD) but need ~1.8e4 / ~1.1e5 Gauss-Seidel sweeps,
    so they run 2000 sweeps and must end honestly with diverged_max_it (the rate, not a defect)."""
    rng = np.random.default_rng(1685363802304750)
    A = rng.random((10, 10))
    A = A @ A.T
    b, x0 = rng.random(10), rng.random(10)
    case = _case("x0", A, b)
    kept = x0.copy()
    solver = prepare(method, A)
    for start in (None, x0):
        stationary = method in ("sor", "ssor")
        result = solver.solve(A, b, x0=start, rtol=1e-6, maxiter=2000 if stationary else None)
        if stationary:
            assert result.status == Status.DIVERGED_MAX_IT and result.iterations == 2000
            given = start if start is not None else 0 * b
            assert relative_residual(case.wide, result.outputs["x"], b) <= relative_residual(case.wide, given, b)
        else:
            assert result.status.converged, (result.status.reason, result.message)
            assert_honest(case, result, rtol=1e-6)
    np.testing.assert_array_equal(x0, kept)


@pytest.mark.parametrize("method", ITERATIVE)
def test_x0_solves_problem_exactly(method):
    """scipy gh-19948: an x0 that already solves the system is returned, with no iteration."""
    A, rhs = np.eye(2), np.array([-1.0, -1.0])
    result = prepare(method, A).solve(A, rhs, x0=rhs.copy())
    assert result.status.converged and result.iterations == 0
    np.testing.assert_array_equal(result.outputs["x"], rhs)


@pytest.mark.parametrize("method", KRYLOV)
@pytest.mark.parametrize("name", ["poisson1d", "rand-sym-pd", "rand-cmplx-sym-pd", "nonsymposdef"])
def test_x0_equals_Mb(name, method):
    """scipy's x0='Mb': start from the preconditioned right-hand side (here Jacobi)."""
    case = BY_NAME[name]
    if rejection(case, method):
        pytest.skip(rejection(case, method)[1])
    solver = prepare(method, case.A, "jacobi", hermitian=case.hermitian)
    x0 = solver.preconditioner.apply(case.b.astype(np.complex128 if np.iscomplexobj(case.A) else float)
                                     .reshape(-1, 1))[:, 0]
    result = solver.solve(case.A, case.b, x0=x0, rtol=RTOL)
    assert result.status.converged
    assert_honest(case, result)


# ----------------------------------------------------------- tolerance with badly scaled preconditioners
@pytest.mark.parametrize("method", KRYLOV)
def test_rtol_with_badly_scaled_preconditioners(method):
    """scipy's test_atol: for M in (I, 1e-6 M0, 1e6 M0) and rtol over 1e-9 .. 1, the answer meets
    ||b - A x|| <= rtol ||b|| (matcli's rtol is relative; rtol >= 1 is a usage error)."""
    rng = np.random.default_rng(168441431005389)
    A = rng.uniform(size=(10, 10))
    A = A @ A.T + 10 * np.eye(10)
    b = 1e3 * rng.uniform(size=10)
    M0 = rng.standard_normal(size=(10, 10))
    M0 = M0 @ M0.T
    case = _case("atol", A, b)
    for scale in (None, 1e-6, 1e6):
        M = None if scale is None else Preconditioner(f"{scale:g} M0", lambda R, s=scale: (s * M0) @ R, True)
        for rtol in np.logspace(-9, 2, 7):
            if rtol >= 1:
                continue
            result = getattr(krylov, method)(A, b, M=M, rtol=rtol)
            assert result.status.converged, (scale, rtol, result.status.reason)
            assert_honest(case, result, rtol=rtol)


# --------------------------------------------------------------------------------- TestGMRES
def test_gmres_basic():
    """scipy: Vandermonde system, one restart cycle of GMRES(5): x[0] ~ 0.359 (the iterate minimising
    the residual over the 5-dimensional Krylov space is unique)."""
    A = np.vander(np.arange(10) + 1)[:, ::-1].astype(float)
    b = np.zeros(10)
    b[0] = 1
    result = krylov.gmres(A, b, restart=5, maxiter=5)
    assert result.status == Status.DIVERGED_MAX_IT
    np.testing.assert_allclose(result.outputs["x"][0], 0.359, rtol=1e-2)


def test_gmres_callback_reports_the_true_residual():
    """scipy expects 0.8165 after one step (and 1e-3 of it, its preconditioned residual, with
    M = 1e-3 I); matcli's GMRES is right preconditioned and reports the true residual both times."""
    A = sp.csr_matrix(np.diag(-2.0 * np.ones(6)) + np.diag(np.ones(5), 1) + np.diag(np.ones(5), -1))
    b = np.ones(6)
    for M in (None, Preconditioner("1e-3 I", lambda R: 1e-3 * R, True)):
        seen = []
        krylov.gmres(A, b, M=M, rtol=1e-16, maxiter=1,
                     callback=lambda it, **v: seen.append((it, v.get("initial_residual", v.get("residual")))))
        np.testing.assert_allclose([r for _, r in seen], [1.0, 0.81649658092772603], rtol=1e-10)


def test_gmres_abi_complex():
    r_real = krylov.gmres(np.eye(2), np.ones(2))
    r_cmplx = krylov.gmres(np.eye(2).astype(complex), np.ones(2).astype(complex))
    assert np.iscomplexobj(r_cmplx.outputs["x"]) and r_real.status == r_cmplx.status
    np.testing.assert_allclose(r_cmplx.outputs["x"], r_real.outputs["x"])


def test_gmres_rtol_is_relative():
    """scipy's test_atol_legacy: a tiny b does not make the tolerance absolute."""
    result = krylov.gmres(np.eye(2), np.ones(2), rtol=1e-5)
    np.testing.assert_allclose(result.outputs["x"], np.ones(2), rtol=1e-8)
    A = np.random.RandomState(12345).rand(30, 30)
    b = 1e-6 * np.ones(30)
    result = krylov.gmres(A, b, rtol=1e-7, restart=20)
    assert_honest(_case("legacy", A, b), result, rtol=1e-7)
    result = krylov.gmres(np.eye(2), 1e-10 * np.ones(2), rtol=1e-8)
    assert result.status.converged and relative_residual(np.eye(2), result.outputs["x"], 1e-10 * np.ones(2)) <= 1e-8


@pytest.mark.parametrize("method", ["gmres", "bicgstab"])
def test_defective_precond_breakdown(method):
    """scipy: a singular preconditioner M = diag(1, 1, 0): no NaN, no false success, and (GMRES, the
    minimal residual over x0 + range(M)) M A x = M b."""
    M = np.diag([1.0, 1.0, 0.0])
    A = np.diag([2.0, 3.0, 4.0])
    b = np.array([0.0, 1.0, 1.0])
    x0 = np.array([1.0, 0.0, 0.0])
    result = getattr(krylov, method)(A, b, x0=x0, M=Preconditioner("defective", lambda R: M @ R, False), rtol=1e-15)
    x = result.outputs["x"]
    assert np.all(np.isfinite(x)) and not result.status.converged
    assert relative_residual(A, x, b) <= relative_residual(A, x0, b)
    if method == "gmres":
        np.testing.assert_allclose(M @ (A @ x), M @ b, atol=1e-14)


DEFECTIVE = (np.array([[0.0, 1, 0], [1, 0, 0], [0, 0, 0]]), np.array([1.0, 0, 1]))


@pytest.mark.parametrize("method", ["minres", "gmres", "bicgstab", "lsqr", "lsmr"])
def test_defective_matrix_breakdown(method):
    """scipy: singular symmetric A with b outside its range. No NaN, no success on Ax = b (MINRES said
    converged_rtol at 0.707 before); GMRES, MINRES and the least-squares methods solve it outside the
    null space (A A x = A b). LSQR/LSMR report the least-squares solution they were asked for."""
    A, b = DEFECTIVE
    result = prepare(method, A).solve(A, b, rtol=1e-8)
    x = result.outputs["x"]
    assert np.all(np.isfinite(x))
    rel = relative_residual(A, x, b)
    assert rel >= np.sqrt(0.5) - 1e-12  # no x does better: b's third component is outside range(A)
    if method in ("lsqr", "lsmr"):
        assert result.status == Status.CONVERGED_ATOL
    else:
        assert not result.status.converged and rel <= 1.0 + 1e-12
    if method != "bicgstab":
        np.testing.assert_allclose(A @ (A @ x), A @ b, atol=1e-8)


@pytest.mark.parametrize("method", ["minres", "gmres", "bicgstab"])
def test_defective_matrix_through_cli(cli, tmp_path, method):
    np.save(tmp_path / "A.npy", DEFECTIVE[0])
    np.save(tmp_path / "b.npy", DEFECTIVE[1])
    result, report, x = solve_cli(cli, tmp_path, str(tmp_path / "A.npy"), str(tmp_path / "b.npy"), method)
    assert result.exit_code == 3, (report["status"], result.stderr)
    assert report["metrics"]["relative_residual"] >= 0.7


def test_gmres_error_does_not_grow_with_maxiter():
    """scipy's test_maxiter_worsening (an xfail there): singular complex A, b numerically outside its
    range; the residual for maxiter = 1..19 never exceeds 9 times the best one seen."""
    A = np.array([[-0.1112795288033378, 0, 0, 0.16127952880333685],
                  [0, -0.13627952880333782 + 6.283185307179586j, 0, 0],
                  [0, 0, -0.13627952880333782 - 6.283185307179586j, 0],
                  [0.1112795288033368, 0j, 0j, -0.16127952880333785]])
    v = np.ones(4)
    best = np.inf
    for maxiter in range(1, 20):
        result = krylov.gmres(A, v, maxiter=maxiter, rtol=1e-8)
        error = np.linalg.norm(A @ result.outputs["x"] - v)
        if result.status.converged:
            assert error <= 1e-8 * np.linalg.norm(v)
        best = min(best, error)
        assert error <= 9 * best


def test_gmres_residuals_are_monotone():
    """scipy's test_callback_x_monotonic: GMRES(10) on rand(20, 20) + I never increases the residual."""
    rng = np.random.RandomState(1)
    A = rng.rand(20, 20) + np.eye(20)
    b = rng.rand(20)
    seen = []
    result = krylov.gmres(A, b, rtol=1e-6, restart=10, maxiter=200,
                          callback=lambda it, **v: seen.append(v["residual"]) if "residual" in v else None)
    assert np.all(np.diff(seen) <= 1e-12 * np.maximum(seen[:-1], 1e-300))
    assert_honest(_case("mono", A, b), result, rtol=1e-6)


# ------------------------------------------------- real matrices a preconditioner cannot be built for
def _zero_row(tmp_path) -> str:
    """Symmetric, a zero row and column: b = ones is outside the range of A."""
    A = sp.csr_matrix(np.array([[4.0, -1, 0, 0], [-1, 4, 0, 0], [0, 0, 0, 0], [0, 0, 0, 4]]))
    path = tmp_path / "zero_row.h5"
    write_arrays(str(path), {"A": A})
    return f"{path}:/A"


@pytest.mark.parametrize("precond_name", ["ic", "jacobi", "chebyshev", "amg-sa", "amg-rs"])
@pytest.mark.parametrize("method", KRYLOV)
def test_preconditioner_on_a_zero_row_is_not_a_usage_error(cli, tmp_path, method, precond_name):
    """Was exit 2 (ic, jacobi, chebyshev) or exit 1 (amg-rs: NaN in pyamg's setup)."""
    spec = _zero_row(tmp_path)
    result, report, x = solve_cli(cli, tmp_path, spec, "ones", method, "--precond", precond_name)
    assert result.exit_code == 3, result.stderr  # b's third entry is unreachable
    assert not report["status"]["converged"] and report["status"]["message"]
    assert report["metrics"]["relative_residual"] >= 0.5 - 1e-12  # ||b_3|| / ||b||


REAL = [("zenios.mtx", "cg", "ic"), ("zenios.mtx", "minres", "jacobi"), ("zenios.mtx", "gmres", "chebyshev"),
        ("zenios.mtx", "bicgstab", "amg-rs"), ("reorientation_1.mtx", "cg", "chebyshev"),
        ("reorientation_1.mtx", "minres", "ic"), ("reorientation_1.mtx", "gmres", "amg-sa"),
        ("reorientation_1.mtx", "bicgstab", "jacobi"), ("reorientation_1.mtx", "minres", "amg-rs"),
        # singular positive semi-definite, b = ones not in the range: CG's recursive residual fell while
        # the true one grew, and the "best" iterate it returned had relative residual 156
        ("amg_poisson1033.mtx", "cg", "ic"), ("amg_poisson1033.mtx", "cg", "jacobi")]


@pytest.mark.parametrize("matrix,method,precond_name", REAL)
def test_singular_indefinite_real_matrices_fall_back(cli, tmp_path, matrix, method, precond_name):
    """zenios (singular, zero diagonal), reorientation_1 (cond ~ 2e19, 281 zero diagonal entries) and
    amg_poisson1033 (singular PSD): explicit preconditioners exited 2 (ic/jacobi/chebyshev) or 1
    (amg: NaN). Now a weaker one is used and the report says so; the status agrees with the
    residual of the x written, and a failed solve returns nothing worse than x0 = 0."""
    path = str(data_file(f"matrices/{matrix}"))
    result, report, x = solve_cli(cli, tmp_path, path, "ones", method, "--precond", precond_name, "--maxiter", "300")
    assert result.exit_code in (0, 3), result.stderr
    setup = report["problem"]["setup"]
    if precond_name in ("ic", "chebyshev", "amg-sa", "amg-rs"):
        assert setup["preconditioner_requested"] == precond_name and "broke down" in setup["preconditioner_fallback"]
        assert "broke down" in report["method_reason"]
    assert report["params"]["precond"] == setup["preconditioner"]
    from matcli.io.load import read_matrix

    A = read_matrix(path)
    rel = float(np.linalg.norm(np.ones(A.shape[0]) - A @ x) / np.sqrt(A.shape[0]))
    assert (result.exit_code == 0) == report["status"]["converged"]
    assert rel <= (RTOL if report["status"]["converged"] else 1.0 + 1e-12)


def test_bicgstab_breakdown_case_through_cli(cli, tmp_path):
    """scipy's sym-nonpd hits BiCGSTAB's breakdown (rho = r^H r_hat = 0 at the first step): a negative
    status naming it, exit 3 under --strict, x no worse than x0 = 0; GMRES and MINRES solve it."""
    case = BY_NAME["sym-nonpd"]
    A_spec, b_spec = write_case(tmp_path, case)
    result, report, x = solve_cli(cli, tmp_path, A_spec, b_spec, "bicgstab", "--precond", "none")
    assert result.exit_code == 3 and report["status"]["reason"] == "diverged_breakdown"
    assert relative_residual(case.wide, x, case.b) <= 1.0
    for method in ("gmres", "minres"):
        result, report, x = solve_cli(cli, tmp_path, A_spec, b_spec, method, "--precond", "none")
        assert result.exit_code == 0 and relative_residual(case.wide, x, case.b) <= RTOL


def test_minres_on_b_in_the_null_space_stops(cli, tmp_path):
    """The issue's Neumann Laplacian amg_anisotropic3d7816 with b = ones (numerically in the null
    space: ||A b|| ~ 5e-17 ||b||): MINRES said converged_happy_breakdown at relative residual 2.8e15,
    then (after the true-residual check) restarted from its garbage iterate and ran all 78160
    iterations (18 s) to diverged_max_it. Now: a negative status after the first false claim."""
    path = str(data_file("matrices/amg_anisotropic3d7816.mtx"))
    result, report, x = solve_cli(cli, tmp_path, path, "ones", "minres", "--precond", "none")
    assert result.exit_code == 3
    assert report["status"]["reason"] == "diverged_tolerance_unreachable"
    assert report["iterations"] < 1000 and report["metrics"]["relative_residual"] <= 1.0


@pytest.mark.parametrize("precond_name", ["amg-sa"])
def test_minres_replaces_an_indefinite_preconditioner(cli, tmp_path, precond_name):
    """MINRES needs an HPD preconditioner; on the symmetric indefinite rand-sym (a zero-free diagonal,
    so the AMG hierarchies build) it met r^H M^-1 r < 0 and ended diverged_not_spd. Now the solve is
    repeated with the |diag A| scaling and the report says which preconditioner was used and why.

    amg-rs is not a case here: on this 4 x 4 matrix its hierarchy is one level, the exact
    pseudo-inverse, so MINRES ends in one step and whether it meets the negative curvature first is
    rounding; tests/test_amg_setup_path.py covers amg-rs (and amg-sa) on a multilevel indefinite
    cycle, a shifted 2-D Laplacian."""
    case = BY_NAME["rand-sym"]
    A_spec, b_spec = write_case(tmp_path, case)
    result, report, x = solve_cli(cli, tmp_path, A_spec, b_spec, "minres", "--precond", precond_name)
    assert result.exit_code == 0, report["status"]
    assert report["params"]["precond"] == "jacobi" and report["problem"]["setup"]["preconditioner"] == "jacobi"
    assert f"{precond_name} is not positive definite" in report["method_reason"]
    assert relative_residual(case.wide, x, case.b) <= RTOL
