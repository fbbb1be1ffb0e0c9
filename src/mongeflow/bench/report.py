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
    """Markdown tables of ``results.json`` of ``bench maps``: one per problem and d."""
    header = [
        "method",
        "L2-UVP %",
        "energy distance",
        "held-out F",
        "wall time (s)",
        "to 2 % (s)",
        "to 1 % (s)",
        "notes",
    ]
    quick = " (--quick: tiny budgets, nothing is measured)" if results.get("quick") else ""
    lines = [
        f"# Known maps: the library's fits and outside solvers, one seed{quick}",
        "",
        f"{machine_line(results['machine'])} Total {results['total_wall_time_s']:.0f} s.",
        "",
        f"Every row is scored on the same {results['n_eval']} held-out pairs (x, T*(x)) and "
        f"{results['n_eval']} held-out samples of γ. L2-UVP = 100 E|T − T*|² / Var(γ); held-out "
        "F = mean V(T(x)) − mean log det DT(x) in the data's units (lower is better; its "
        "differences are differences of KL(T#μ0 ‖ γ)); wall time: building the map, "
        "compilation included; "
        "“to 2 %” and “to 1 %”: the first time L2-UVP reached that level on the row's curve "
        f"(— : never, or no curve). W2NeuralDual budgets stop at {results['time_cap_s']:g} s.",
        "",
    ]
    for run in results["runs"]:
        rows = [
            [
                name,
                _g(r["l2_uvp"]),
                _g(r["energy_distance"]),
                _g(r.get("objective"), 5),
                f"{r['wall_time_s']:.1f}",
                _g(r.get("time_to_2pct_s")),
                _g(r.get("time_to_1pct_s")),
                r.get("note", ""),
            ]
            for name, r in run["methods"].items()
        ]
        lines += [f"## {run['problem']}, d = {run['dim']}", "", *markdown_table(header, rows), ""]
    return "\n".join(lines)


def maps_figure(results: dict, path: Path) -> None:
    """L2-UVP against wall time, a panel per problem and d (from ``results.json``): a curve
    per row that recorded one, a point per other row, the baselines as horizontal lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter

    runs = results["runs"]
    problems = sorted({r["problem"] for r in runs})
    dims = sorted({r["dim"] for r in runs})
    fig, axes = plt.subplots(
        len(problems), len(dims), figsize=(3.6 * len(dims), 3.2 * len(problems)), squeeze=False
    )
    names = list(dict.fromkeys(name for run in runs for name in run["methods"]))
    colors = {name: f"C{i % 10}" for i, name in enumerate(names)}
    handles = {}
    for run in runs:
        ax = axes[problems.index(run["problem"]), dims.index(run["dim"])]
        for name, r in run["methods"].items():
            if r["l2_uvp"] is None:
                continue
            style = {"color": colors[name], "label": name}
            if r.get("kind") == "baseline":
                h = ax.axhline(r["l2_uvp"], ls=":", lw=1.2, **style)
            elif "curve" in r:
                t, v = np.asarray(r["curve"]["time_s"]), np.asarray(r["curve"]["l2_uvp"], float)
                keep = np.isfinite(v) & (t > 0)
                (h,) = ax.plot(t[keep], v[keep], marker=".", ms=3, lw=1, **style)
                ax.scatter([r["wall_time_s"]], [r["l2_uvp"]], marker="o", s=18, c=style["color"])
            else:
                h = ax.scatter([max(r["wall_time_s"], 1e-2)], [r["l2_uvp"]], marker="x", **style)
            handles.setdefault(name, h)
        for level in (1.0, 2.0):
            ax.axhline(level, color="gray", lw=0.6, ls="--")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())  # no overlapping minor labels
        ax.set_title(f"{run['problem']}, d = {run['dim']}", fontsize=9)
        ax.set_xlabel("wall time (s)", fontsize=8)
        ax.set_ylabel("L2-UVP % (held out)", fontsize=8)
        ax.tick_params(labelsize=7)
    fig.tight_layout()
    fig.legend(
        list(handles.values()),
        list(handles),
        loc="center left",
        bbox_to_anchor=(1.0, 0.5),
        fontsize=7,
        frameon=False,
    )
    fig.savefig(path, dpi=110, bbox_inches="tight")  # the legend right of the panels
    plt.close(fig)
