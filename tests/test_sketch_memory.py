"""The memory plan of sketch-regress: the largest sketch that fits is exactly the largest that fits."""

from __future__ import annotations

import pytest

from matcli.methods.sketch.memory import MemoryPlan, sketch_bytes, vector_bytes, work_bytes


@pytest.mark.parametrize("kind", ["auto", "countsketch", "gaussian", "leverage", "srht"])
@pytest.mark.parametrize("streaming", [False, True])
@pytest.mark.parametrize("threads", [1, 2])
def test_max_rows_is_the_largest_sketch_within_the_free_memory(kind, streaming, threads):
    # 4 GiB: the SRHT transforms 64 columns of all 1e6 rows at a time (1.5 GB of working memory, once)
    plan = MemoryPlan(4 * 2**30, 60 * 2**20, 1_000_000, 200, threads, 0 if streaming else 1600 * 2**20,
                      streaming, kind=kind, nnz=None)
    free = plan.budget - plan.fixed()
    if streaming:
        free //= 2
    d = plan.max_rows(zeta=4)
    assert 0 < d < plan.m
    assert plan.sketch_total(d, 4) <= free and plan.least_budget(d, 4) <= plan.budget
    # the largest such d (a Gaussian sketch's chunk memory wobbles with d by up to 8 (d + 1) bytes)
    wobble = 8 * (d + 1) if kind == "gaussian" else 0
    assert plan.sketch_total(d + 1, 4) > free - wobble


def test_nothing_fits_a_budget_below_what_the_process_holds():
    plan = MemoryPlan(50 * 2**20, 60 * 2**20, 1000, 10, 1, 0, False, kind="auto")
    assert plan.max_rows(zeta=4) == 0


def test_working_memory_of_each_sketch():
    m, d = 1_000_000, 5000
    # a Gaussian chunk holds d x (at most 8192, at least 64) numbers, 16 MiB at most for d <= 32768
    assert work_bytes("gaussian", m, d) <= 2**24 and work_bytes("gaussian", m, 50_000) == 8 * 50_000 * 64
    assert work_bytes("countsketch", m, d) * 4 == work_bytes("sparse-sign", m, d, zeta=4)
    # scattering a sparse A: 16 zeta bytes per nonzero, in pieces of bounded size
    assert work_bytes("sparse-sign", m, d, nnz=1000) - work_bytes("sparse-sign", m, d) == 16 * 4 * 1000
    assert work_bytes("sparse-sign", m, d, nnz=10**9) - work_bytes("sparse-sign", m, d) <= 2**25
    assert work_bytes("srht", m, d) == 3 * 8 * m * 64
    assert vector_bytes(m, "leverage") > vector_bytes(m) == 5 * 8 * m
    assert sketch_bytes(d, 200, 2) == d * 8 * 201 * 8
