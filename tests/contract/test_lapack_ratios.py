"""LAPACK TESTING's residual ratios, with LAPACK's thresholds, on matcli's factorizations.

The ratios (1-norms; ``eps`` is LAPACK's ``DLAMCH('Epsilon')`` = 2^-53, half of numpy's
``finfo.eps``, so they are the ratios LAPACK's own drivers print):

* LU, xGET01: ``||P A - L U|| / (n ||A|| eps)`` < 30 (``dtest.in``); sparse LU likewise for
  ``A[P][:, Q]``.
* pivoted QR, xQPT01 / xQRT11: ``||A P - Q R|| / (max(m, n) ||A|| eps)`` and
  ``||I - Q^H Q|| / (m eps)`` < 30.
* Cholesky, xPOT01: ``||A - L L^H|| / (n ||A|| eps)`` < 30; sparse Cholesky likewise for ``A[P][:, P]``.
* Bunch-Kaufman LDL^T, xSYT01: ``||A - L D L^H|| / (n ||A|| eps)`` < 30.
* symmetric eigensolver, xSYT21 (as in xDRVST): ``||A - V W V^H|| / (n ||A|| eps)`` and
  ``||I - V V^H|| / (n eps)`` < 60 (``sep.in``); ARPACK's partial decomposition, xSYT22:
  ``||V^H A V - W|| / (k ||A|| eps)`` and ``||I - V^H V|| / (k eps)`` < 60.
* SVD, xDRVBD with xBDT01: ``||A - U S V^H|| / (max(m, n) ||A|| eps)``, ``||I - U^H U|| / (m eps)``,
  ``||I - V^H V|| / (n eps)`` < 35 (``svd.in``), singular values nonnegative and non-increasing.

``A = 0`` follows LAPACK: the ratio is 0 when the residual is 0, else 1/eps. Matrices: LAPACK's
sizes (1, 2, 3, 5, 10, 50) and its kinds of test matrix (random, condition 1/sqrt(eps) and 0.1/eps,
scaled near underflow and overflow, zero columns, zero) re-created with numpy, real and complex;
then every suitable real matrix of ``../shared/data/matrices`` small enough for dense LAPACK (and all
square ones up to order 2500 for the sparse factorizations). Kernels are called directly (the same
ones ``matcli factorize`` runs); the CLI cases check that the written factors carry the same ratios
and a converged status.

Not ported: LAPACK's empty sizes (0): matcli refuses empty matrices (input error, as scipy's svds and
scikit-learn do); banded, packed, tridiagonal and RFP storage: not matcli formats.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from matcli.core.properties import symmetry_error
from matcli.io.load import read_matrix
from matcli.methods.factorize import dense, sparse, tsvd
from matcli.methods.solve.system import as_matrix

from conftest import data_file

from .factorize_cli import one_blas_thread  # noqa: F401  (autouse fixture: one BLAS thread)
from .factorize_cli import factorize

EPS = float(np.finfo(np.float64).eps) / 2      # DLAMCH('Epsilon'), rounding mode
LIN, SVD, SEP = 30.0, 35.0, 60.0          # dtest.in, svd.in, sep.in
SIZES = (1, 2, 3, 5, 10, 50)
KINDS = ("random", "cond-sqrt", "cond-eps", "underflow", "overflow", "zero-columns", "zero")


def norm1(X) -> float:
    if sp.issparse(X):
        return float(abs(X).sum(axis=0).max()) if X.nnz else 0.0
    return float(np.linalg.norm(X, 1)) if X.size else 0.0


def ratio(diff, A, scale: float) -> float:
    """LAPACK's ``||diff|| / (scale ||A|| eps)``; for A = 0: 0 if diff = 0 else 1/eps."""
    norm_A, err = norm1(A), norm1(diff)
    if norm_A == 0.0:
        return 0.0 if err == 0.0 else 1.0 / EPS
    return err / norm_A / scale / EPS


def identity_ratio(Q: np.ndarray, scale: float, side: str = "columns") -> float:
    G = Q.conj().T @ Q if side == "columns" else Q @ Q.conj().T
    return norm1(G - np.eye(G.shape[0])) / scale / EPS


# ------------------------------------------------------------------------------ LAPACK-style matrices
def general(m: int, n: int, kind: str, complex_values: bool, rng: np.random.Generator) -> np.ndarray:
    """An m x n test matrix of LAPACK's kinds (xLATMS with geometric singular values)."""
    def gauss(*shape):
        g = rng.standard_normal(shape)
        return g + 1j * rng.standard_normal(shape) if complex_values else g

    k = min(m, n)
    if kind == "zero":
        return np.zeros((m, n), dtype=complex if complex_values else float)
    U, _ = np.linalg.qr(gauss(m, k))
    V, _ = np.linalg.qr(gauss(n, k))
    cond = {"cond-sqrt": np.sqrt(0.1 / EPS), "cond-eps": 0.1 / EPS}.get(kind, 2.0)
    s = cond ** (-np.arange(k) / max(k - 1, 1))
    A = (U * s) @ V.conj().T
    if kind == "underflow":
        A *= 1e-290
    elif kind == "overflow":
        A *= 1e290
    elif kind == "zero-columns" and n > 1:
        A[:, : n // 2] = 0
    return A


def hermitian(n: int, kind: str, complex_values: bool, definite: bool, rng: np.random.Generator) -> np.ndarray:
    """An n x n Hermitian test matrix: positive definite (xPO types) or with alternating signs (xSY)."""
    g = rng.standard_normal((n, n)) + (1j * rng.standard_normal((n, n)) if complex_values else 0)
    Q, _ = np.linalg.qr(g)
    cond = {"cond-sqrt": np.sqrt(0.1 / EPS), "cond-eps": 0.1 / EPS}.get(kind, 2.0)
    w = cond ** (-np.arange(n) / max(n - 1, 1))
    if not definite:
        w = w * np.where(np.arange(n) % 2, -1.0, 1.0)
    A = (Q * w) @ Q.conj().T
    A = (A + A.conj().T) / 2
    scale = {"underflow": 1e-290, "overflow": 1e290}.get(kind, 1.0)
    return A * scale


CASES = [(m, n, kind, cplx) for m in SIZES for n in SIZES for kind in KINDS for cplx in (False, True)
         if (m == n or m in (3, 50) or n in (3, 50))]


def check_lu(A) -> float:
    res = dense.lu(A)
    L, U, P = res.outputs["L"], res.outputs["U"], res.outputs["P"]
    return ratio(A[P] - L @ U, A, A.shape[1])


def check_qr(A) -> tuple[float, float]:
    res = dense.qr(A)
    Q, R, P = res.outputs["Q"], res.outputs["R"], res.outputs["P"]
    m, n = A.shape
    return ratio(A[:, P] - Q @ R, A, max(m, n)), identity_ratio(Q, m)


def check_svd(A) -> tuple[float, float, float]:
    res = tsvd.dense_svd(A, rng=np.random.default_rng(0))
    U, s, Vt = res.outputs["U"], res.outputs["s"], res.outputs["Vt"]
    m, n = A.shape
    assert np.all(s >= 0) and np.all(np.diff(s) <= 0)
    return (ratio(A - (U * s) @ Vt, A, max(m, n)), identity_ratio(U, m), identity_ratio(Vt, n, "rows"))


@pytest.mark.parametrize("m, n, kind, cplx", CASES)
def test_general_matrices(m, n, kind, cplx):
    A = general(m, n, kind, cplx, np.random.default_rng([m, n, KINDS.index(kind), cplx]))
    assert check_lu(A) < LIN
    qr_residual, qr_orth = check_qr(A)
    assert qr_residual < LIN and qr_orth < LIN
    assert max(check_svd(A)) < SVD


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("kind", [k for k in KINDS if k not in ("zero-columns", "zero")])
@pytest.mark.parametrize("cplx", [False, True])
def test_hermitian_matrices(n, kind, cplx):
    rng = np.random.default_rng([n, KINDS.index(kind), cplx])
    spd = hermitian(n, kind, cplx, True, rng)
    chol = dense.cholesky(spd)
    assert chol.status.converged, chol.message
    L = chol.outputs["L"]
    assert ratio(spd - L @ L.conj().T, spd, n) < LIN
    sparse_chol = sparse.cholesky_sparse(sp.csc_matrix(spd))
    if sparse_chol.status.converged:
        Ls, P = sparse_chol.outputs["L"], sparse_chol.outputs["P"]
        assert ratio(sp.csr_matrix(spd)[P][:, P] - Ls @ Ls.conj().T, sp.csr_matrix(spd), n) < LIN
    else:
        # SuperLU's symmetric mode may meet a numerically non-positive pivot at condition 0.1/eps
        assert kind == "cond-eps", sparse_chol.message
    indefinite = hermitian(n, kind, cplx, False, rng)
    for A in (spd, indefinite):
        ldl = dense.ldl(A)
        L, D = ldl.outputs["L"], ldl.outputs["D"]
        assert ratio(A - L @ D @ L.conj().T, A, n) < LIN
        eig = dense.eig(A, hermitian=True)
        w, V = eig.outputs["w"], eig.outputs["V"]
        assert ratio(A - (V * w) @ V.conj().T, A, n) < SEP
        assert identity_ratio(V, n, "rows") < SEP


@pytest.mark.parametrize("n", [2, 5, 10, 50])
@pytest.mark.parametrize("cplx", [False, True])
def test_sparse_lu_on_lapack_matrices(n, cplx):
    for kind in ("random", "cond-sqrt", "cond-eps", "underflow", "overflow"):
        A = general(n, n, kind, cplx, np.random.default_rng(n))
        res = sparse.lu_sparse(sp.csc_matrix(A))
        assert res.status.converged, (kind, res.message)
        L, U, P, Q = (res.outputs[k] for k in ("L", "U", "P", "Q"))
        assert ratio(sp.csr_matrix(A)[P][:, Q] - L @ U, sp.csr_matrix(A), n) < LIN, kind


# ------------------------------------------------------------------------------ real matrices
#: Real matrices small enough for every dense factorization in a test run.
DENSE_REAL = ["plat362", "pts5ldd03", "bcsstk03", "494_bus", "west0479", "impcol_a", "fs_183_1", "temp",
              "w156", "GD99_cc", "arrowc", "west0067", "qc324", "lp_afiro", "lp_share1b", "ash219"]
#: Square real matrices for the sparse factorizations (order <= 2500).
SPARSE_REAL = ["plat362", "pts5ldd03", "bcsstk03", "494_bus", "1138_bus", "kk_Laplace3D10", "gr_30_30",
               "bcsstk13", "amg_poisson1033", "reorientation_1", "hangGlider_2", "cryg2500", "watt_2",
               "adder_dcop_05", "nnc1374", "mahindas", "rajat19", "orsirr_1", "olm1000", "young1c",
               "bp_1200", "west0479", "hor_131", "qc324", "impcol_a", "fs_183_1", "temp", "w156", "arrowc",
               "west0067", "GD99_cc"]


def load(name: str):
    return as_matrix(read_matrix(str(data_file(f"matrices/{name}.mtx"))))


@pytest.mark.parametrize("name", DENSE_REAL)
def test_dense_factorizations_of_real_matrices(name):
    A = load(name).toarray()
    m, n = A.shape
    assert check_lu(A) < LIN
    qr_residual, qr_orth = check_qr(A)
    assert qr_residual < LIN and qr_orth < LIN
    assert max(check_svd(A)) < SVD
    if m == n and symmetry_error(A) <= 1e-12:
        ldl = dense.ldl(A)
        assert ratio(A - ldl.outputs["L"] @ ldl.outputs["D"] @ ldl.outputs["L"].conj().T, A, n) < LIN
        eig = dense.eig(A, hermitian=True)
        w, V = eig.outputs["w"], eig.outputs["V"]
        assert ratio(A - (V * w) @ V.conj().T, A, n) < SEP and identity_ratio(V, n, "rows") < SEP
        chol = dense.cholesky(A)
        if chol.status.converged:
            assert ratio(A - chol.outputs["L"] @ chol.outputs["L"].conj().T, A, n) < LIN


@pytest.mark.parametrize("name", SPARSE_REAL)
def test_sparse_factorizations_of_real_matrices(name):
    A = sp.csr_matrix(load(name))
    n = A.shape[0]
    lu = sparse.lu_sparse(A)
    if lu.status.converged:
        L, U, P, Q = (lu.outputs[k] for k in ("L", "U", "P", "Q"))
        assert ratio(A[P][:, Q] - L @ U, A, n) < LIN
    else:
        # SuperLU meets an exact zero pivot: only matrices the manifest calls singular
        assert name in ("GD99_cc", "zenios"), lu.message
    if symmetry_error(A) <= 1e-12:
        chol = sparse.cholesky_sparse(A)
        if chol.status.converged:
            L, P = chol.outputs["L"], chol.outputs["P"]
            # plat362 met this only after the dense refactor (SuperLU's own L D L^T: ratio 98.6)
            assert ratio(A[P][:, P] - L @ L.conj().T, A, n) < LIN


@pytest.mark.parametrize("name", ["494_bus", "bcsstk03", "plat362", "1138_bus"])
def test_arpack_eigenpairs_xsyt22(name):
    A = sp.csr_matrix(load(name))
    k = 5
    res = sparse.eig_arpack(A, rank=k, hermitian=True, rng=np.random.default_rng(0))
    assert res.status.converged
    w, V = res.outputs["w"], res.outputs["V"]
    assert ratio(V.conj().T @ (A @ V) - np.diag(w), A, k) < SEP
    assert identity_ratio(V, k) < SEP
    exact = np.sort(np.abs(np.linalg.eigvalsh(A.toarray())))[::-1][:k]
    np.testing.assert_allclose(np.sort(np.abs(w))[::-1], exact, rtol=SEP * A.shape[0] * EPS)


# ------------------------------------------------------------------------------ through the CLI
@pytest.mark.parametrize("kind, method", [("lu", "dense"), ("lu", "sparse"), ("qr", "dense"), ("cholesky", "dense"),
                                          ("cholesky", "sparse"), ("ldl", "dense"), ("eig", "dense"), ("svd", "dense")])
@pytest.mark.parametrize("cplx", [False, True])
def test_cli_factors_meet_the_ratios(tmp_path, kind, method, cplx):
    rng = np.random.default_rng(7)
    n = 50
    if kind in ("cholesky", "ldl", "eig"):
        A = hermitian(n, "cond-sqrt", cplx, kind == "cholesky", rng)
    else:
        A = general(n, n, "cond-sqrt", cplx, rng)
    stored = sp.csr_matrix(A) if method == "sparse" else A
    run = factorize(tmp_path, stored, "--kind", kind, "-m", method, strict=True)
    assert run.exit_code == 0 and run.converged, (run.stderr, run.report and run.report["status"])
    assert run.report["certificate"]["passed"]
    f = run.arrays
    if kind == "lu":
        L, U, P = f["L"], f["U"], f["P"]
        diff = (sp.csr_matrix(A)[P][:, f["Q"]] - L @ U) if method == "sparse" else A[P] - L @ U
        assert ratio(diff, A, n) < LIN
    elif kind == "qr":
        assert ratio(A[:, f["P"]] - f["Q"] @ f["R"], A, n) < LIN and identity_ratio(f["Q"], n) < LIN
    elif kind == "cholesky":
        L = f["L"]
        Ap = sp.csr_matrix(A)[f["P"]][:, f["P"]] if method == "sparse" else A
        assert ratio(Ap - L @ L.conj().T, A, n) < LIN
    elif kind == "ldl":
        assert ratio(A - f["L"] @ f["D"] @ f["L"].conj().T, A, n) < LIN
    elif kind == "eig":
        assert ratio(A - (f["V"] * f["w"]) @ f["V"].conj().T, A, n) < SEP and identity_ratio(f["V"], n, "rows") < SEP
        assert run.metrics["max_eigen_residual"] < SEP * n * 2 * EPS
    else:
        assert ratio(A - (f["U"] * f["s"]) @ f["Vt"], A, n) < SVD
    if kind in ("lu", "qr", "cholesky", "ldl"):
        # the certificate's Frobenius bound, 60 n finfo.eps
        assert run.metrics["factorization_residual"] <= 2 * LIN * n * 2 * EPS
