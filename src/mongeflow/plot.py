"""Figures. Sits on top of the core (the core never imports this module)."""

from __future__ import annotations

import jax
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from mongeflow.files import atomic_write  # noqa: E402


def _project(*arrays: np.ndarray) -> list[np.ndarray]:
    """Keep 2-D data as is; project higher dimensions on the first two principal axes of
    the last array (the target sample)."""
    if arrays[0].shape[1] <= 2:
        return [a if a.shape[1] == 2 else np.c_[a, np.zeros(len(a))] for a in arrays]
    ref = arrays[-1]
    mean = ref.mean(0)
    _, _, vt = np.linalg.svd(ref - mean, full_matrices=False)
    return [(a - mean) @ vt[:2].T for a in arrays]


def _source_sample(result, key, n: int) -> np.ndarray:
    """n samples of μ0 in the user's units (undoing the standardisation of data, if any)."""
    x = result.problem.source.sample(key, n)
    return np.asarray(result.map().to_data_units(x), dtype=x.dtype)


def plot_pushforward(result, path=None, n: int = 2000, seed_index: int | None = None, ax=None):
    """Scatter of μ0, T#μ0 and γ (first two principal axes of γ when d > 2).

    Args:
        result: a :class:`~mongeflow.fit.FitResult`.
        path: where to save the PNG (``None``: do not save).
        n: samples per cloud.
    """
    problem = result.problem
    key = jax.random.key(7)
    x = _source_sample(result, jax.random.fold_in(key, 0), n)
    tx = np.asarray(result.transport(x, seed_index))
    clouds = [x, tx]
    if problem.target.can_sample:
        target = problem.target.sample(jax.random.fold_in(key, 1), n)
        clouds.append(np.asarray(result.map(seed_index).target_to_data_units(target)))
    proj = _project(*clouds)
    own = ax is None
    if own:
        fig, ax = plt.subplots(figsize=(5.5, 5))
    else:
        fig = ax.figure
    ax.scatter(*proj[0].T, s=3, alpha=0.25, c="tab:gray", label="source μ0")
    if len(proj) > 2:
        ax.scatter(*proj[2].T, s=3, alpha=0.35, c="tab:blue", label="target γ")
    ax.scatter(*proj[1].T, s=3, alpha=0.35, c="tab:orange", label="T#μ0")
    ax.set_aspect("equal")
    suffix = " (first two principal axes of γ)" if x.shape[1] > 2 else ""
    ax.set_title(f"{problem.name}, {result.scheme.name}{suffix}", fontsize=9)
    ax.legend(markerscale=4, fontsize=8, loc="upper right")
    if own:
        fig.tight_layout()
        if path is not None:
            atomic_write(path, lambda f: fig.savefig(f, dpi=120, format="png"))
            plt.close(fig)
    return fig


def plot_displacement(
    result, path=None, grid: int = 15, n: int = 4000, seed_index: int | None = None
):
    """The displacement field x ↦ T(x) − x of a 2-D map, as arrows on a grid.

    The grid (square cells) covers the central 98 % of the source sample, which is shown
    underneath so that arrows in empty regions (where the map only extrapolates) can be told
    apart. Arrows point from x along T(x) − x, scaled so that the longest spans one grid
    cell (the factor is in the title); their colour is the true length |T(x) − x|.

    Args:
        result: a :class:`~mongeflow.fit.FitResult` of a 2-D problem.
        path: where to save the PNG (``None``: do not save).
        grid: arrows along the source's longer side (cells are square).
        n: source samples drawn for the background and the grid's extent.
    """
    problem = result.problem
    if problem.dim != 2:
        raise ValueError(f"the displacement field is drawn for d = 2 only, got d = {problem.dim}")
    x = _source_sample(result, jax.random.key(11), n)
    lo, hi = np.percentile(x, 1, axis=0), np.percentile(x, 99, axis=0)
    cell = float(np.max(hi - lo)) / max(grid - 1, 1)  # square cells, ``grid`` on the long side
    centre = (lo + hi) / 2
    axes = [
        c + cell * (np.arange(round(r / cell) + 1) - round(r / cell) / 2)
        for c, r in zip(centre, hi - lo, strict=True)
    ]
    g0, g1 = np.meshgrid(*axes)
    points = np.c_[g0.ravel(), g1.ravel()].astype(x.dtype)
    shift = np.asarray(result.transport(points, seed_index)) - points
    length = np.linalg.norm(shift, axis=1)
    factor = cell / max(float(np.max(length)), 1e-12)
    fig, ax = plt.subplots(figsize=(5.5, 5))
    ax.scatter(*x.T, s=2, alpha=0.3, c="tab:gray", label="source μ0", zorder=0)
    arrows = ax.quiver(
        points[:, 0], points[:, 1], factor * shift[:, 0], factor * shift[:, 1], length,
        angles="xy", scale_units="xy", scale=1.0, cmap="viridis", width=0.005, zorder=1,
    )  # fmt: skip
    fig.colorbar(arrows, ax=ax, label="|T(x) − x|", shrink=0.8)
    pad = 0.08 * (hi - lo)
    ax.set_xlim(lo[0] - pad[0], hi[0] + pad[0])
    ax.set_ylim(lo[1] - pad[1], hi[1] + pad[1])
    ax.set_aspect("equal")
    ax.set_title(f"displacement T(x) − x, {problem.name} (arrows × {factor:.2g})", fontsize=9)
    ax.legend(markerscale=4, fontsize=8, loc="upper right")
    fig.tight_layout()
    if path is not None:
        atomic_write(path, lambda f: fig.savefig(f, dpi=120, format="png"))
        plt.close(fig)
    return fig


def plot_history(result, path=None):
    """Loss and metrics against steps (median over seeds, with min–max band), and the
    linear (Bures) map's final figure as a dashed line where it measures the same thing.

    The loss and the objective share one panel when they are equal (a scheme that
    minimises the loss itself). The linear map's line is its held-out figure from
    ``result.metrics`` (``linear_energy_distance``, ``linear_l2_uvp``; ``linear_objective``
    on the loss panel of a KL fit only, whose loss is that F; the held-out Sinkhorn
    divergence's from ``result.comparison``).
    """
    hist = result.history
    keys = [
        k
        for k in ("loss", "objective", "energy_distance", "sinkhorn_divergence", "l2_uvp")
        if k in hist and np.isfinite(np.asarray(hist[k], float)).any()
    ]
    titles = {k: k for k in keys}
    if {"loss", "objective"} <= set(keys) and np.allclose(
        np.asarray(hist["loss"], float), np.asarray(hist["objective"], float), equal_nan=True
    ):
        keys.remove("objective")
        titles["loss"] = "loss (= objective)"
    fig, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 3.2), squeeze=False)
    for ax, k in zip(axes[0], keys, strict=True):
        v = np.asarray(hist[k], float)
        ax.plot(hist["step"], np.nanmedian(v, 1), c="tab:orange", label="map")
        if v.shape[1] > 1:
            ax.fill_between(hist["step"], np.nanmin(v, 1), np.nanmax(v, 1), alpha=0.25)
        baseline = _linear_figure(result, k)
        if baseline is not None and (k == "loss" or baseline > 0):  # > 0: log scale
            ax.axhline(baseline, c="tab:gray", ls="--", lw=1, label="linear map")
            ax.legend(fontsize=8)
        ax.set_xlabel("step")
        ax.set_title(titles[k], fontsize=9)
        if k not in ("loss", "objective"):
            ax.set_yscale("log")
    fig.tight_layout()
    if path is not None:
        atomic_write(path, lambda f: fig.savefig(f, dpi=120, format="png"))
        plt.close(fig)
    return fig


def _linear_figure(result, key: str) -> float | None:
    """The linear map's final figure comparable with the history's ``key``, or ``None``."""
    metrics = getattr(result, "metrics", None) or {}
    if key == "objective":  # what the scheme minimised: its own, not the metrics' F
        return None
    comparison = getattr(result, "comparison", None) or {}
    if key == "sinkhorn_divergence" and comparison.get("figure") == key:
        value = np.asarray(comparison["linear"], float)  # on the same held-out rows
        return float(np.nanmedian(value)) if np.isfinite(value).any() else None
    if key == "loss":  # the metrics' objective is the KL's F: the loss of a KL fit only
        divergence = getattr(getattr(result, "divergence", None), "name", None)
        name = "linear_objective" if divergence == "kl" else None
    else:
        name = f"linear_{key}"
    if name is None or name not in metrics:
        return None
    value = np.asarray(metrics[name], float)
    if not np.isfinite(value).any():
        return None
    return float(np.nanmedian(value))
