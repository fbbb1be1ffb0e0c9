"""Figures. Sits on top of the core (the core never imports this module)."""

from __future__ import annotations

import jax
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from mongeflow.maps.base import transport  # noqa: E402


def _project(*arrays: np.ndarray) -> list[np.ndarray]:
    """Keep 2-D data as is; project higher dimensions on the first two principal axes of
    the last array (the target sample)."""
    if arrays[0].shape[1] <= 2:
        return [a if a.shape[1] == 2 else np.c_[a, np.zeros(len(a))] for a in arrays]
    ref = arrays[-1]
    mean = ref.mean(0)
    _, _, vt = np.linalg.svd(ref - mean, full_matrices=False)
    return [(a - mean) @ vt[:2].T for a in arrays]


def plot_pushforward(result, path=None, n: int = 2000, seed_index: int = 0, ax=None):
    """Scatter of μ0, T#μ0 and γ (first two principal axes of γ when d > 2).

    Args:
        result: a :class:`~mongeflow.fit.FitResult`.
        path: where to save the PNG (``None``: do not save).
        n: samples per cloud.
    """
    problem = result.problem
    key = jax.random.key(7)
    x = np.asarray(problem.source.sample(jax.random.fold_in(key, 0), n))
    tx = np.asarray(transport(result.select(seed_index), x))
    clouds = [x, tx]
    if problem.target.can_sample:
        clouds.append(np.asarray(problem.target.sample(jax.random.fold_in(key, 1), n)))
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
    ax.set_title(f"{problem.name}, {type(result.scheme).__name__.lower()}{suffix}", fontsize=9)
    ax.legend(markerscale=4, fontsize=8, loc="upper right")
    if own:
        fig.tight_layout()
        if path is not None:
            fig.savefig(path, dpi=120)
            plt.close(fig)
    return fig


def plot_history(result, path=None):
    """Loss and metrics against steps (median over seeds, with min–max band)."""
    hist = result.history
    keys = [k for k in ("loss", "energy_distance", "l2_uvp") if k in hist]
    fig, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 3.2), squeeze=False)
    for ax, k in zip(axes[0], keys, strict=True):
        v = np.asarray(hist[k], float)
        ax.plot(hist["step"], np.nanmedian(v, 1), c="tab:orange")
        if v.shape[1] > 1:
            ax.fill_between(hist["step"], np.nanmin(v, 1), np.nanmax(v, 1), alpha=0.25)
        ax.set_xlabel("step")
        ax.set_title(k, fontsize=9)
        if k != "loss":
            ax.set_yscale("log")
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=120)
        plt.close(fig)
    return fig
