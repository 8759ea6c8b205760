"""Sketched least squares on real rectangular SuiteSparse matrices (shared data folder).

Franz6_id1959_aug (10592 x 3016) and Groebner_id2003_aug (4967 x 2456) are tall and nearly
orthogonal (sigma_max/sigma_min ~ 1.03), so scipy's LSQR to 1e-14 is an exact, independent
reference; lp_share1b transposed (253 x 117, cond ~ 1e5) is checked against numpy.linalg.lstsq.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse.linalg as sla

from matcli.io.load import read_matrix
from matcli.methods.sketch.regress import MODES, solve_sketched
from matcli.methods.sketch.sketches import SKETCH_KINDS

EPS = np.finfo(float).eps


def load(shared_data, name, transpose=False):
    A = read_matrix(str(shared_data / "matrices" / f"{name}.mtx"))
    A = A.T.tocsr() if transpose else A
    b = np.random.default_rng(0).standard_normal(A.shape[0])
    return A, b


@pytest.mark.parametrize("name", ["Franz6_id1959_aug", "Groebner_id2003_aug"])
def test_large_sparse_rectangular_matrices(shared_data, name):
    A, b = load(shared_data, name)
    x_ref = sla.lsqr(A, b, atol=1e-14, btol=1e-14, iter_lim=1000)[0]
    r_ref = np.linalg.norm(b - A @ x_ref)
    res = solve_sketched(A, b, mode="precondition", sketch="sparse-sign", rtol=1e-12, rng=np.random.default_rng(1))
    assert res.status.converged, res.message
    x = res.outputs["x"]
    assert np.linalg.norm(b - A @ x) <= r_ref * (1 + 1e-12)
    # cond(A) ~ 1.03: forward error ~ rtol * cond
    assert np.linalg.norm(x - x_ref) <= 1e-10 * np.linalg.norm(x_ref)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("sketch", SKETCH_KINDS)
def test_lp_share1b_transposed(shared_data, mode, sketch):
    A, b = load(shared_data, "lp_share1b", transpose=True)
    dense = A.toarray()
    x_ref, *_ = np.linalg.lstsq(dense, b, rcond=None)
    r_ref = np.linalg.norm(b - dense @ x_ref)
    s = np.linalg.svd(dense, compute_uv=False)
    slack = 10 * A.shape[1] * EPS * s[0] * np.linalg.norm(x_ref) / r_ref
    res = solve_sketched(A, b, mode=mode, sketch=sketch, rtol=1e-12, sketch_size=A.shape[0],
                         rng=np.random.default_rng(2))
    ratio = np.linalg.norm(b - A @ res.outputs["x"]) / r_ref
    if mode == "sketch-and-solve":
        # d = m: the sketch is a (random) square embedding, cond(S) bounds the residual ratio
        assert res.status.converged and ratio >= 1 - slack
    else:
        assert res.status.converged, res.message
        assert abs(ratio - 1) <= slack
