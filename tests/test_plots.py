"""--plot for every family: a PNG of the run's certificate, written through the output policy."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("matplotlib")

SAMPLES = Path(__file__).parents[1] / "sample_data"
CASES = {
    "solve cg": (["solve", f"{SAMPLES}/494_bus.mtx", "-m", "cg"], "residual"),
    "solve lu": (["solve", f"{SAMPLES}/494_bus.mtx", "-m", "lu"], None),
    "complete": (["complete", f"{SAMPLES}/completion400x300.h5:/observed", "-r", "4", "--reg", "0.01"], "train_rmse"),
    "svd": (["factorize", f"{SAMPLES}/west0479.mtx", "-k", "svd", "-m", "lanczos", "-r", "4"], None),
    "nmf": (["factorize", f"{SAMPLES}/ash219.mtx", "-k", "nmf", "-r", "4"], "relative_error"),
    "cholesky": (["factorize", f"{SAMPLES}/494_bus.mtx", "-k", "cholesky"], None),
    "sketch": (["sketch-regress", f"{SAMPLES}/regression5000x40.h5:/A", f"{SAMPLES}/regression5000x40.h5:/b",
                "-m", "precondition"], "residual"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_every_family_writes_its_plot(cli, tmp_path, name):
    args, series = CASES[name]
    png = tmp_path / "fig.png"
    result = cli([*args, "-o", tmp_path / "out.h5", "--plot", png, "--report", tmp_path / "r.json", "--quiet"])
    assert result.exit_code == 0, result.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["outputs"]["plot"] == str(png)
    if series:  # the plotted series is the report's history
        assert len(report["history"][series]) >= 1


def test_plot_is_an_output_like_any_other(cli, tmp_path):
    """Checked before any work: an existing file needs --force; the same path as -o is refused."""
    png = tmp_path / "fig.png"
    png.write_bytes(b"keep")
    args = ["solve", f"{SAMPLES}/494_bus.mtx", "-o", tmp_path / "x.h5", "--quiet"]
    result = cli([*args, "--plot", png])
    assert result.exit_code == 5 and png.read_bytes() == b"keep" and not (tmp_path / "x.h5").exists()
    result = cli([*args, "--plot", tmp_path / "x.h5"])
    assert result.exit_code == 5 and "same file" in result.stderr


def test_a_result_without_history_says_so():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from matcli import plots
    from matcli.core.result import Result, Status

    fig, ax = plt.subplots()
    empty = Result(Status.CONVERGED_DIRECT)
    assert not plots.series(ax, empty, ("residual",), "r")
    assert not plots.spectrum(ax, empty, "s")
    plots.no_history(ax, "lu is a direct method: no iterations to plot")
    assert [t.get_text() for t in ax.texts] == ["lu is a direct method: no iterations to plot"]
    full = Result(Status.CONVERGED_RTOL, history={"residual": [1.0, 1e-3, 1e-9]},
                  outputs={"s": np.array([3.0, 2.0, 0.0])}, metrics={"max_triplet_residual": 1e-12})
    fig, ax = plt.subplots()
    assert plots.series(ax, full, ("residual",), "r", target=1e-8)
    assert len(ax.lines) == 2  # the series and the target line
    fig, ax = plt.subplots()
    assert plots.spectrum(ax, full, "s") and "1.0e-12" in ax.get_legend().get_texts()[0].get_text()
    plt.close("all")


def test_a_batch_draws_one_line_per_system(cli, tmp_path):
    """The batch's residual history is split by each system's iterations (in solving order)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from matcli import plots
    from matcli.core.result import Result, Status

    result = Result(Status.CONVERGED_RTOL, history={"residual": [1e-1, 1e-9, 1e-2, 1e-5, 1e-9]},
                    info={"systems": [{"name": "b", "position": 1, "iterations": 3},
                                      {"name": "a", "position": 0, "iterations": 2}]})
    fig, ax = plt.subplots()
    assert plots.per_system(ax, result, "residual", "r", target=1e-8)
    lines = [line for line in ax.lines if line.get_label() in ("a", "b")]
    assert [line.get_label() for line in lines] == ["a", "b"]
    assert list(lines[0].get_ydata()) == [1e-1, 1e-9] and list(lines[1].get_ydata()) == [1e-2, 1e-5, 1e-9]
    broken = Result(Status.CONVERGED_RTOL, history={"residual": [1.0]}, info={"systems": [{"iterations": 2}]})
    assert not plots.per_system(plt.subplots()[1], broken, "residual", "r")
    plt.close("all")
    png = tmp_path / "batch.png"
    done = cli(["solve", SAMPLES / "batch_poisson24.h5:/systems", "--batch", "-m", "cg", "-o", tmp_path / "x.h5",
                "--plot", png, "--quiet"])
    assert done.exit_code == 0 and png.read_bytes()[:4] == b"\x89PNG"
