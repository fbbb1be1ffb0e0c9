"""Tables and figures of the benchmarks."""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np

from mongeflow.bench.common import machine_line, markdown_table


def _fmt(v: float, digits: int = 4) -> str:
    return "n/a" if v is None or not np.isfinite(v) else f"{v:.{digits}f}"


def paper_table(results: dict) -> str:
    """Markdown table of ``results.json`` of ``bench paper``."""
    header = [
        "method",
        "faithful",
        "mean ± std",
        "median",
        "max",
        "share > 0.05",
        "failed",
        "grad. evals",
        "wall time (s)",
        "paper",
    ]
    rows = []
    for name, row in results["methods"].items():
        s = row["summary"]
        paper = results["paper"].get(name)
        ref = f"{paper['mean']:.4f} ± {paper['std']:.4f}" if paper and row["faithful"] else ""
        rows.append(
            [
                name,
                "yes" if row["faithful"] else "no",
                f"{_fmt(s['mean'])} ± {_fmt(s['std'])}",
                _fmt(s["median"]),
                _fmt(s["max"]),
                f"{s['share_above_0.05']:.2f}",
                s["n_failed"],
                row["settings"].get("gradient_evaluations", ""),
                f"{row['wall_time_s']:.1f}",
                ref,
            ]
        )
    lines = [
        f"# The paper's table — {len(results['seeds'])} seeds, "
        f"energy distance on {results['eval_size']} samples of each side",
        "",
        machine_line(results["machine"]),
        "",
        *markdown_table(header, rows),
        "",
        f"Faithful rows together: {results['faithful_wall_time_s']:.1f} s; "
        f"all rows: {results['total_wall_time_s']:.1f} s (compilation and evaluation included).",
        "",
    ]
    return "\n".join(lines)


def paper_figures(results: dict, fitted: dict, problem, out: Path, seed_index: int = 0) -> None:
    """Fig. 1: T#μ0 against γ for one seed, a panel per method. Fig. 2: ED histograms."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(fitted)
    key = jax.random.key(2026)
    x = problem.source.sample(jax.random.fold_in(key, 0), 2000)
    y = np.asarray(problem.target.sample(jax.random.fold_in(key, 1), 2000))
    fig, axes = _grid(plt, len(names) + 1, 3.0, 3.2)
    axes[0].scatter(*np.asarray(x).T, s=2, alpha=0.4, color="tab:gray")
    axes[0].set_title("source μ0")
    for ax, name in zip(axes[1:], names, strict=False):
        mapped = np.asarray(fitted[name].transport(x, seed_index))
        ed = results["methods"][name]["energy_distance"][seed_index]
        ax.scatter(*y.T, s=2, alpha=0.25, color="tab:blue", label="γ")
        ax.scatter(*mapped.T, s=2, alpha=0.25, color="tab:orange", label="T#μ0")
        ax.set_title(f"{name}\nED {_fmt(ed)}", fontsize=9)
    for ax in axes:
        ax.set_xlim(-4.5, 4.5)
        ax.set_ylim(-4.5, 4.5)
        ax.set_aspect("equal")
        ax.tick_params(labelsize=7)
    axes[1].legend(loc="upper right", fontsize=7, markerscale=4)
    fig.suptitle(f"T#μ0 against γ, seed {results['seeds'][seed_index]}", fontsize=10)
    fig.tight_layout()
    fig.savefig(out / "fig1_pushforward.png", dpi=120)
    plt.close(fig)
    paper_histograms(results, out)


def _grid(plt, n: int, width: float, height: float, columns: int = 5):
    rows = -(-n // columns)
    cols = min(n, columns)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False)
    axes = axes.ravel()
    for ax in axes[n:]:
        ax.axis("off")
    return fig, axes


def paper_histograms(results: dict, out: Path) -> None:
    """Fig. 2: per-seed energy distances of each method over [0, 0.1] (from results.json)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results["methods"])
    fig, axes = _grid(plt, len(names), 3.0, 2.6)
    for ax, name in zip(axes, names, strict=False):
        ed = np.array(
            [np.nan if v is None else v for v in results["methods"][name]["energy_distance"]]
        )
        finite = ed[np.isfinite(ed)]
        ax.hist(np.clip(finite, 0, 0.1), bins=30, range=(0, 0.1), color="tab:orange")
        s = results["methods"][name]["summary"]
        ax.set_title(f"{name}\n{_fmt(s['mean'])} ± {_fmt(s['std'])}", fontsize=9)
        ax.set_xlabel("energy distance (clipped at 0.1)", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in axes[:: min(len(names), 5)]:
        ax.set_ylabel("seeds")
    fig.tight_layout()
    fig.savefig(out / "fig2_histograms.png", dpi=120)
    plt.close(fig)


def _g(v, digits: int = 3) -> str:
    return "—" if v is None or not np.isfinite(v) else f"{v:.{digits}g}"


def maps_table(results: dict) -> str:
    """Markdown table of ``results.json`` of ``bench maps``."""
    header = [
        "problem",
        "d",
        "method",
        "L2-UVP %",
        "energy distance",
        "wall time (s)",
        "time to L2-UVP ≤ 1 % (s)",
    ]
    rows = [
        [
            run["problem"],
            run["dim"],
            name,
            _g(r["l2_uvp"]),
            _g(r["energy_distance"]),
            f"{r['wall_time_s']:.1f}",
            _g(r.get("time_to_1pct_s")),
        ]
        for run in results["runs"]
        for name, r in run["methods"].items()
    ]
    lines = [
        "# Known maps: L2-UVP (%) and energy distance, one seed",
        "",
        f"{machine_line(results['machine'])} Metrics on {results['n_eval']} held-out samples. "
        f"Total {results['total_wall_time_s']:.0f} s.",
        "",
        *markdown_table(header, rows),
        "",
    ]
    return "\n".join(lines)


def maps_figure(results: dict, path: Path) -> None:
    """L2-UVP against wall time, a panel per problem and d (from ``results.json``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter

    runs = results["runs"]
    problems = sorted({r["problem"] for r in runs})
    dims = sorted({r["dim"] for r in runs})
    fig, axes = plt.subplots(
        len(problems), len(dims), figsize=(3.3 * len(dims), 3 * len(problems)), squeeze=False
    )
    for run in runs:
        ax = axes[problems.index(run["problem"]), dims.index(run["dim"])]
        for name, r in run["methods"].items():
            if "curve" in r:
                ax.plot(r["curve"]["time_s"], r["curve"]["l2_uvp"], marker=".", label=name)
            else:
                ax.scatter([r["wall_time_s"]], [r["l2_uvp"]], marker="x", label=name)
        ax.axhline(1.0, color="gray", lw=0.8, ls="--")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())  # no overlapping minor labels
        ax.set_title(f"{run['problem']}, d = {run['dim']}", fontsize=9)
        ax.set_xlabel("wall time (s)", fontsize=8)
        ax.set_ylabel("L2-UVP %", fontsize=8)
        ax.tick_params(labelsize=7)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=4, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
