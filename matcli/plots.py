"""``--plot FILE.png``: one figure per run, drawn from the result (nothing recomputed), written like every
output (atomically, through the output policy the runner applied before any work).

Each family draws what its certificate is about: a solve its true residual per iteration against
``--rtol`` (one line per system of a batch, :func:`per_system`), a completion its training and validation RMSE per sweep,
an SVD or eigendecomposition its values with their residuals, an NMF its objective per iteration, a
sketched regression its residual per CGLS iteration (a ridge ensemble its GCV curve). A result without a history (a direct solve, a
dense factorization) says so on the figure instead of drawing empty axes.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from matcli.core.errors import OutputError, UsageError
from matcli.core.result import Result


def require_matplotlib() -> None:
    """UsageError (before any work) when matplotlib is missing."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise UsageError("--plot needs matplotlib: pip install 'matcli[plot]'") from None


def write_plot(path: str, force: bool, draw: Callable[[Any], str]) -> dict[str, str]:
    """Draw on one axes with ``draw(ax)`` (which returns the title) and write the PNG to ``path``
    atomically; returns ``{"plot": path}`` for the report's outputs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from matcli.io.atomic import atomic_write

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    try:
        ax.set_title(draw(ax), fontsize=10)
        fig.tight_layout()
        with atomic_write(path, force=force) as tmp:
            fig.savefig(tmp, format="png", dpi=100)
    except OSError as exc:
        raise OutputError(path, f"cannot write plot ({exc})") from None
    finally:
        plt.close(fig)
    return {"plot": path}


def no_history(ax, why: str) -> None:
    """A figure that says there is nothing to draw, and why."""
    ax.axis("off")
    ax.text(0.5, 0.5, why, ha="center", va="center", wrap=True)


def series(ax, result: Result, names: tuple[str, ...], ylabel: str, *, target: float | None = None,
           target_label: str = "", log: bool = True) -> bool:
    """Plot the history series ``names`` (those present) against the iteration; False when none is."""
    drawn = False
    for name in names:
        values = np.asarray(result.history.get(name, []), dtype=float)
        if values.size == 0:
            continue
        floor = np.finfo(float).tiny if log else -np.inf
        x = np.arange(1, values.size + 1)
        (ax.semilogy if log else ax.plot)(x, np.maximum(values, floor), lw=1.2, label=name.replace("_", " "))
        drawn = True
    if not drawn:
        return False
    if target:
        ax.axhline(target, color="grey", ls="--", lw=0.8, label=target_label or f"target {target:g}")
    ax.set_xlabel("iteration")
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8)
    return True


def per_system(ax, result: Result, name: str, ylabel: str, *, target: float | None = None,
               target_label: str = "") -> bool:
    """A batch: the history ``name`` (every system's iterations, in solving order) split into one line
    per system by ``info["systems"][i]["iterations"]`` (ordered by ``position``); False when it does
    not add up."""
    systems = sorted(result.info.get("systems") or [], key=lambda entry: entry.get("position", 0))
    values = np.asarray(result.history.get(name, []), dtype=float)
    counts = [int(entry.get("iterations", 0)) for entry in systems]
    if not systems or values.size == 0 or sum(counts) != values.size:
        return False
    label = len(systems) <= 10
    for entry, piece in zip(systems, np.split(values, np.cumsum(counts)[:-1])):
        if piece.size:
            ax.semilogy(np.arange(1, piece.size + 1), np.maximum(piece, np.finfo(float).tiny), lw=1,
                        label=entry.get("name") if label else None)
    if target:
        ax.axhline(target, color="grey", ls="--", lw=0.8, label=target_label or f"target {target:g}")
    ax.set_xlabel("iteration (of each system)")
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=7)
    return True


def spectrum(ax, result: Result, values_key: str) -> bool:
    """Singular values or eigenvalue magnitudes (log scale), with the worst triplet / eigen residual
    and the orthogonality loss in the legend; False when the result has no values."""
    values = result.outputs.get(values_key)
    if values is None or np.size(values) == 0:
        return False
    magnitudes = np.abs(np.asarray(values)).ravel()
    shown = np.maximum(magnitudes, np.finfo(float).tiny)
    index = np.arange(1, magnitudes.size + 1)
    residual = result.metrics.get("max_triplet_residual", result.metrics.get("max_eigen_residual"))
    label = values_key + (f" (worst residual {residual:.1e})" if isinstance(residual, float) else "")
    ax.semilogy(index, shown, "o-", ms=3, lw=1, label=label)
    loss = result.metrics.get("orthogonality_loss")
    if isinstance(loss, float):
        ax.plot([], [], " ", label=f"orthogonality loss {loss:.1e}")
    ax.set_xlabel("index")
    ax.set_ylabel("|value|")
    ax.legend(fontsize=8)
    return True


def gcv_curves(ax, curve: dict[str, Any] | None) -> bool:
    """GCV against lambda (log axis), one line per sketch size, the chosen (lambda, q) marked;
    lambda = 0 (ridgeless) is drawn at the left edge, half a decade below the smallest positive lambda.
    ``curve`` is a kernel's ``info["gcv_curve"]`` (:mod:`matcli.methods.sketch.ensemble`); False when absent."""
    if not curve or not curve.get("gcv"):
        return False
    lams = np.asarray(curve["lambdas"], dtype=float)
    positive = lams[lams > 0]
    zero_at = positive.min() / 10**0.5 if positive.size else 1.0
    shown = np.where(lams > 0, lams, zero_at)
    name = "q" if str(curve.get("sketch_side", "features")).startswith("features") else "rows"
    for size, values in zip(curve["sketch_sizes"], curve["gcv"]):
        values = np.asarray(values, dtype=float)
        ax.loglog(shown, np.where(np.isfinite(values), values, np.nan), ".-", ms=3, lw=1, label=f"{name} = {size}")
    chosen = curve.get("chosen") or {}
    if "lambda" in chosen:
        lam = chosen["lambda"]
        ax.loglog([lam if lam > 0 else zero_at], [chosen["gcv"]], "r*", ms=12, zorder=5,
                  label=f"chosen: lambda = {lam:.3g}, {name} = {chosen['sketch_size']}")
    if lams.size and lams[0] == 0.0:
        ax.axvline(zero_at, color="grey", ls=":", lw=0.8, label="lambda = 0 (ridgeless)")
    ax.set_xlabel("lambda")
    ax.set_ylabel("GCV (estimated prediction risk)")
    ax.legend(fontsize=7, framealpha=0.6)
    return True
