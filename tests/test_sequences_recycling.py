"""Sequences of PDE systems (matcli.sequences, `generate sequence`) and the recycling solvers run on
them (GCRO-DR, def-CG, the recycling probe of `solve --batch`), issue #20.

References: dense LAPACK solves and eigenvalues of small members, scipy's gcrotmk with its CU space
passed along the sequence, and the residual bound ||x - x*|| / ||x*|| <= cond(A) ||r|| / ||b||.
"""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import scipy.sparse as sp
from scipy.sparse.linalg import LinearOperator, gcrotmk

from matcli.jobs.solve_batch import PROBE_PAIRS, RecyclingProbe
from matcli.methods.solve.batch import order_systems
from matcli.methods.solve.deflated_cg import DeflatedCG
from matcli.methods.solve.gcrodr import GCRODR
from matcli.methods.solve.krylov import cg, gmres
from matcli.sequences import FAMILIES, sequence

RTOL = 1e-8


def relres(A, x, b) -> float:
    return float(np.linalg.norm(b - A @ x) / np.linalg.norm(b))


# ------------------------------------------------------------------ the families
@pytest.mark.parametrize("family", FAMILIES)
def test_family_shares_a_pattern_and_is_reproducible(family):
    first = list(sequence(family, 12, 4, np.random.default_rng(5)))
    again = list(sequence(family, 12, 4, np.random.default_rng(5)))
    longer = list(sequence(family, 12, 6, np.random.default_rng(5)))
    for s, t, u in zip(first, again, longer):
        assert s.A.shape == (144, 144) and s.b.shape == (144,)
        assert np.array_equal(s.A.indptr, first[0].A.indptr) and np.array_equal(s.A.indices, first[0].A.indices)
        assert (s.A != t.A).nnz == 0 and np.array_equal(s.b, t.b)
        # system t does not depend on how many systems are drawn
        assert (s.A != u.A).nnz == 0
    assert (first[0].A != first[1].A).nnz > 0
    assert sorted(order_systems([s.A for s in first])) == [0, 1, 2, 3]


def test_darcy_is_spd_with_the_thresholded_coefficients():
    s = next(sequence("darcy", 10, 1, np.random.default_rng(0)))
    D = s.A.toarray()
    assert np.array_equal(D, D.T)
    assert np.linalg.eigvalsh(D).min() > 0
    h2 = 1.0 / 11 ** 2
    # interior off-diagonals are -harmonic means of two values in {3, 12}: 3, 4.8 or 12 (over h^2)
    off = -D[np.triu_indices(100, 1)]
    off = np.unique(np.round(off[off != 0] * h2, 10))
    assert set(off) <= {3.0, 4.8, 12.0}


def test_convdiff_is_a_nonsymmetric_m_matrix():
    s = next(sequence("convdiff", 10, 1, np.random.default_rng(1)))
    D = s.A.toarray()
    assert not np.allclose(D, D.T)
    off = D - np.diag(np.diag(D))
    assert (off <= 0).all() and (np.diag(D) > 0).all()
    assert (D.sum(axis=1) >= -1e-9 * np.abs(D).max()).all()  # weak diagonal dominance (upwind)


def test_helmholtz_is_complex_symmetric_and_indefinite():
    s = next(sequence("helmholtz", 16, 1, np.random.default_rng(2)))
    D = s.A.toarray()
    assert np.iscomplexobj(D) and np.allclose(D, D.T) and not np.allclose(D, D.conj().T)
    real = np.linalg.eigvalsh(D.real)
    assert real.min() < 0 < real.max()
    assert s.b.nonzero()[0].size == 1


def test_generate_sequence_is_read_by_solve_batch(cli, tmp_path):
    path, out, rep = tmp_path / "seq.h5", tmp_path / "x.h5", tmp_path / "r.json"
    result = cli(["generate", "sequence", "--family", "convdiff", "--n", "12", "--count", "3", "--seed", "4",
                  "-o", path, "--quiet"])
    assert result.exit_code == 0, result.stderr
    with h5py.File(path, "r") as fh:
        assert sorted(fh["systems"]) == ["s000", "s001", "s002"]
        assert fh.attrs["family"] == "convdiff" and "peclet" in fh["systems/s001"].attrs
    expected = list(sequence("convdiff", 12, 3, np.random.default_rng(4)))
    result = cli(["solve", f"{path}:/systems", "--batch", "-m", "gmres", "--precond", "none", "--recycle", "4",
                  "-o", out, "--report", rep, "--quiet", "--strict"])
    assert result.exit_code == 0, result.stderr
    with h5py.File(out, "r") as fh:
        for s in expected:
            assert relres(s.A, fh[f"x/{s.name}"][()], s.b) <= RTOL


def test_generate_sequence_refuses_mtx(cli, tmp_path):
    result = cli(["generate", "sequence", "-o", tmp_path / "a.mtx", "--quiet"])
    assert result.exit_code == 2 and "HDF5" in result.stderr


# ------------------------------------------------------------------ GCRO-DR
def test_systems_use_the_streams_of_rng_spawn_drawn_one_at_a_time():
    from matcli.sequences import _children

    spawned = np.random.default_rng(11).spawn(4)
    lazy = list(_children(np.random.default_rng(11), 4))
    assert [g.standard_normal(3).tolist() for g in spawned] == [g.standard_normal(3).tolist() for g in lazy]


def test_a_sequence_larger_than_the_free_disk_is_refused_before_writing(cli, tmp_path):
    out = tmp_path / "huge.h5"
    result = cli(["generate", "sequence", "--n", "8", "--count", "1000000000000", "-o", out])
    assert result.exit_code == 7 and "on disk" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def test_gcrodr_single_system_matches_gmres_and_the_direct_solution():
    s = next(sequence("convdiff", 16, 1, np.random.default_rng(6)))
    D = s.A.toarray()
    exact = np.linalg.solve(D, s.b)
    cond = np.linalg.cond(D)
    mine = GCRODR(m=20, k=5).solve(s.A, s.b, rtol=RTOL)
    ref = gmres(s.A, s.b, rtol=RTOL, restart=20)
    assert mine.status.converged and ref.status.converged
    assert relres(s.A, mine.outputs["x"], s.b) <= RTOL
    # ||e|| / ||x|| <= cond(A) ||r|| / ||b||, for both answers and hence between them
    bound = cond * RTOL * np.linalg.norm(exact)
    assert np.linalg.norm(mine.outputs["x"] - exact) <= bound
    assert np.linalg.norm(mine.outputs["x"] - ref.outputs["x"]) <= 2 * bound
    assert mine.info["recycled_dim"] == 0 and mine.info["cost"]["cycles"] >= 2  # deflated restarts happened


@pytest.mark.parametrize("family", ["convdiff", "helmholtz"])
def test_gcrodr_recycled_solves_reach_the_tolerance_and_keep_a_U_C(family):
    systems = list(sequence(family, 20, 6, np.random.default_rng(7)))
    solver = GCRODR(m=30, k=8)
    for s in systems:
        result = solver.solve(s.A, s.b, rtol=RTOL)
        assert result.status.converged and relres(s.A, result.outputs["x"], s.b) <= RTOL
        # the carried space is consistent with the matrix just solved: A U = C, C orthonormal
        U, C = solver.U, solver.C
        assert np.linalg.norm(s.A @ U - C) <= 1e-10 * np.linalg.norm(C)
        assert np.linalg.norm(C.conj().T @ C - np.eye(C.shape[1])) <= 1e-10
        assert np.iscomplexobj(U) == (family == "helmholtz")


def test_gcrodr_recycling_saves_iterations_on_helmholtz_and_beats_gcrotmk_in_products():
    """scipy's gcrotmk (GCROT(m, k), CU passed along, C recomputed from U for each matrix) is the
    reference: both reach rtol on every system; ours needs no more products with A in total."""
    systems = list(sequence("helmholtz", 24, 8, np.random.default_rng(3)))
    recycled, reset, CU = GCRODR(m=30, k=8), GCRODR(m=30, k=8), []
    ours = fresh = theirs = 0
    for s in systems:
        result = recycled.solve(s.A, s.b, rtol=RTOL)
        assert relres(s.A, result.outputs["x"], s.b) <= RTOL
        ours += result.info["cost"]["matvecs"]
        reset.reset()
        fresh += reset.solve(s.A, s.b, rtol=RTOL).info["cost"]["matvecs"]
        count = [0]

        def matvec(v, A=s.A):
            count[0] += 1
            return A @ v

        CU[:] = [(None, u) for _, u in CU]
        x, info = gcrotmk(LinearOperator(s.A.shape, matvec=matvec, dtype=complex), s.b, rtol=RTOL, atol=0.0,
                          m=22, k=8, CU=CU, truncate="smallest", maxiter=1000)
        assert info == 0 and relres(s.A, x, s.b) <= 1.01 * RTOL
        theirs += count[0]
    # measured 804 (recycled), 1808 (gcrotmk), over 1100 (reset each system)
    assert ours <= theirs
    assert ours <= 0.8 * fresh


def test_gcrodr_ritz_vectors_are_accurate_for_the_matrix_they_came_from():
    systems = list(sequence("helmholtz", 24, 8, np.random.default_rng(3)))
    A, b = systems[0].A, systems[0].b
    solver = GCRODR(m=30, k=8)
    first = solver.solve(A, b, rtol=RTOL)
    second = solver.solve(A, (1 + 1j) * b + 1, rtol=RTOL)
    ritz = np.asarray(second.info["ritz_residuals"])
    assert ritz.size == 8 and np.median(ritz) <= 1e-2  # measured max 5e-3
    assert second.iterations < first.iterations
    # on the next (different) matrices the carried vectors are approximate: reported, and their
    # median relative residual stays below 1 (measured 0.42 to 0.92)
    for s in systems[1:]:
        ritz = np.asarray(solver.solve(s.A, s.b, rtol=RTOL).info["ritz_residuals"])
        assert np.isfinite(ritz).all() and np.median(ritz) < 1.0


def test_gcrodr_rejects_a_cycle_shorter_than_the_recycled_space():
    with pytest.raises(ValueError):
        GCRODR(m=5, k=4)


# ------------------------------------------------------------------ def-CG
def test_deflated_cg_reaches_the_tolerance_on_every_system_and_deflates():
    systems = list(sequence("darcy", 24, 6, np.random.default_rng(8), coefficient="lognormal"))
    solver = DeflatedCG(8)
    for place, s in enumerate(systems):
        result = solver.solve(s.A, s.b, rtol=RTOL)
        assert result.status.converged and relres(s.A, result.outputs["x"], s.b) <= RTOL
        assert result.info["deflation"] == ("none" if place == 0 else "def-cg")
        plain = cg(s.A, s.b, rtol=RTOL)
        if place:
            assert result.iterations < plain.iterations
            assert np.isfinite(result.info["ritz_residuals"]).all()


def test_deflated_cg_residuals_stay_orthogonal_to_w_on_one_matrix():
    s = next(sequence("darcy", 20, 1, np.random.default_rng(9)))
    solver = DeflatedCG(6)
    solver.solve(s.A, s.b, rtol=RTOL)
    b2 = np.random.default_rng(10).standard_normal(s.b.size)
    result = solver.solve(s.A, b2, rtol=RTOL)
    assert relres(s.A, result.outputs["x"], b2) <= RTOL
    # W spans accurate eigenvectors of the matrix it came from
    assert np.median(result.info["ritz_residuals"]) <= 0.05


# ------------------------------------------------------------------ the probe
def test_probe_switches_off_when_recycling_is_slower_and_keeps_it_when_faster():
    slow = RecyclingProbe(20)
    pattern = [slow.use_recycling(p) for p in range(2 * PROBE_PAIRS + 1)]
    assert pattern == [True] + [p % 2 == 0 for p in range(1, 2 * PROBE_PAIRS + 1)]
    for place in range(2 * PROBE_PAIRS + 1):
        recycled = slow.use_recycling(place)
        slow.record(place, recycled, 90 if recycled else 100, 1.5 if recycled else 1.0)
    assert slow.decision["recycling"] is False and "switched off" in slow.decision["reason"]
    assert slow.decision["pairs"] == PROBE_PAIRS and not slow.use_recycling(2 * PROBE_PAIRS + 1)
    # 3 x 0.5 s more, of which 3 x 90 iterations at the fresh rate explain 2.7 s, for 3 x 10 saved iterations
    assert slow.decision["overhead_seconds_per_saved_iteration"] == pytest.approx((4.5 - 270 * 3.0 / 300) / 30)
    fast = RecyclingProbe(20)
    for place in range(2 * PROBE_PAIRS + 1):
        recycled = fast.use_recycling(place)
        fast.record(place, recycled, 10 if recycled else 100, 0.1 if recycled else 1.0)
    # ten times cheaper after the first pair: no need to keep measuring
    assert fast.decision["recycling"] is True and fast.decision["pairs"] == 1
    assert all(fast.use_recycling(p) for p in range(3, 20))
    hopeless = RecyclingProbe(20)
    for place in range(3):
        recycled = hopeless.use_recycling(place)
        hopeless.record(place, recycled, 100, 3.0 if recycled else 1.0)
    assert hopeless.decision["recycling"] is False and hopeless.decision["pairs"] == 1
    # faster by the clock but saving under MIN_SAVING of the iterations: off (timing noise of tiny solves)
    noisy = RecyclingProbe(20)
    for place in range(2 * PROBE_PAIRS + 1):
        recycled = noisy.use_recycling(place)
        noisy.record(place, recycled, 95 if recycled else 100, 0.5 if recycled else 1.0)
    assert noisy.decision["recycling"] is False
    short = RecyclingProbe(2 * PROBE_PAIRS + 1)
    assert all(short.use_recycling(p) for p in range(2 * PROBE_PAIRS + 1)) and short.decision is None


def test_auto_switch_off_on_unrelated_systems(cli, tmp_path):
    """Unrelated random systems (independent values on one pattern): a recycled space from one says
    nothing about the next, so recycling only costs; the probe must switch it off."""
    rng = np.random.default_rng(11)
    n, path = 3000, tmp_path / "unrelated.h5"
    pattern = sp.random(n, n, density=3.0 / n, random_state=np.random.default_rng(12), format="csr")
    pattern = (pattern + sp.identity(n, format="csr")).tocsr()
    with h5py.File(path, "w") as fh:
        for t in range(12):
            A = pattern.copy()
            A.data = rng.standard_normal(A.nnz) * 0.2
            A = (A + sp.diags(rng.uniform(1.0, 2.0, n))).tocsr()
            g = fh.create_group(f"systems/s{t:03d}/A")
            g.attrs["encoding-type"], g.attrs["encoding-version"] = "csr_matrix", "0.1.0"
            g.attrs["shape"] = np.array(A.shape)
            g["data"], g["indices"], g["indptr"] = A.data, A.indices, A.indptr
            fh[f"systems/s{t:03d}/b"] = rng.standard_normal(n)
    out, rep = tmp_path / "x.h5", tmp_path / "r.json"
    result = cli(["solve", f"{path}:/systems", "--batch", "-m", "gmres", "--precond", "none", "--recycle", "30",
                  "--no-reorder", "-o", out, "--report", rep, "--quiet", "--strict"])
    assert result.exit_code == 0, result.stderr
    import json

    report = json.loads(rep.read_text())
    decision = report["info"]["recycling"]
    assert decision["recycling"] is False, decision
    systems = report["info"]["systems"]
    assert all(not s["recycled"] and s["recycled_dim"] == 0 for s in systems[2 * PROBE_PAIRS + 1:])
    assert all(s["relative_residual"] <= RTOL for s in systems)


def test_gcrodr_with_a_preconditioner_changing_per_system():
    """Right preconditioning in flexible form (Z = M^-1 V kept): M may change between systems and
    A U = C still holds for each new matrix."""
    from matcli.methods.solve.precond import jacobi

    systems = list(sequence("convdiff", 20, 4, np.random.default_rng(13), peclet_min=50.0, peclet_max=500.0))
    plain, preconditioned = GCRODR(m=30, k=6), GCRODR(m=30, k=6)
    for s in systems:
        M = jacobi(s.A)
        result = preconditioned.solve(s.A, s.b, M=M, rtol=RTOL)
        assert result.status.converged and relres(s.A, result.outputs["x"], s.b) <= RTOL
        assert result.info["cost"]["precond_applications"] == result.info["cost"]["arnoldi_steps"]
        U, C = preconditioned.U, preconditioned.C
        assert np.linalg.norm(s.A @ U - C) <= 1e-10 * np.linalg.norm(C)
        assert plain.solve(s.A, s.b, rtol=RTOL).status.converged
