"""The benchmarks' one writer: the machine line, markdown tables, ``results.json`` and figures.

Every benchmark writes ``DIR/results.json``, ``DIR/table.md`` (:func:`page` of
:func:`table` blocks, the machine line on top) and its figures through :func:`write`. The
figures: a figure of merit against d, a line per row and a panel per figure and problem,
the quoted literature as grey lines (:func:`figure_vs_dim`); L2-UVP against wall time
(:func:`figure_vs_time`); the paper's push-forward scatter and energy-distance histograms
(:func:`pushforward_figure`, :func:`histograms`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np


def machine() -> dict[str, Any]:
    """What the benchmark ran on."""
    import jaxlib

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "jax": jax.__version__,
        "jaxlib": jaxlib.__version__,
        "device": str(jax.devices()[0]),
        "date": time.strftime("%Y-%m-%d"),
    }


def machine_line(m: dict[str, Any]) -> str:
    """One line naming the machine of :func:`machine`, for the tables' headers."""
    return f"Machine: {m['cpu']}, {m['cores']} cores, {m['device']}; jax {m['jax']}; {m['date']}."


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    """The lines of a markdown table: the header, its rule, then one line per row.

    Example:
        >>> markdown_table(["a", "b"], [[1, "x"]])
        ['| a | b |', '|---|---|', '| 1 | x |']
    """
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        if len(row) != len(header):
            raise ValueError(f"a row has {len(row)} cells for {len(header)} columns: {row}")
        lines.append("| " + " | ".join(str(cell) for cell in row) + " |")
    return lines


def sig(v, digits: int = 3) -> str:
    """``v`` to ``digits`` significant digits, ``—`` when missing or not finite."""
    return "—" if v is None or not np.isfinite(v) else f"{v:.{digits}g}"


def fixed(v, digits: int = 4) -> str:
    """``v`` to ``digits`` decimals, ``n/a`` when missing or not finite."""
    return "n/a" if v is None or not np.isfinite(v) else f"{v:.{digits}f}"


@dataclasses.dataclass(frozen=True)
class Column:
    """A table column: its header and its cell, ``(label, row of results.json) → text``."""

    header: str
    cell: Callable[[str, dict], Any]


def table(columns: Sequence[Column], rows: Mapping[str, dict]) -> list[str]:
    """The lines of the markdown table of ``rows`` (label → row of ``results.json``)."""
    cells = [[c.cell(label, r) for c in columns] for label, r in rows.items()]
    return markdown_table([c.header for c in columns], cells)


def page(title: str, *parts: str | list[str]) -> str:
    """A markdown page: ``# title``, then each part (a paragraph, a ``## heading`` or the
    lines of a table) followed by a blank line."""
    lines = [f"# {title}", ""]
    for part in parts:
        lines += [*part, ""] if isinstance(part, list) else [part, ""]
    return "\n".join(lines)


def run_sections(
    results: dict, columns: Sequence[Column], lead: Callable[[dict], str] | None = None
) -> list[str | list[str]]:
    """The parts of :func:`page` for each run of ``results["runs"]``: ``## problem, d = d``,
    the run's ``lead`` paragraph (if any) and its table."""
    parts: list[str | list[str]] = []
    for run in results["runs"]:
        parts.append(f"## {run['problem']}, d = {run['dim']}")
        if lead is not None:
            parts.append(lead(run))
        parts.append(table(columns, run["methods"]))
    return parts


def write(
    out: str | Path,
    results: dict,
    markdown: str,
    figures: Mapping[str, Callable[[dict, Path], None]] | None = None,
) -> None:
    """Write ``out/results.json``, ``out/table.md`` and each figure ``out/NAME`` (drawn by
    ``figures[NAME](results, path)``); ``out`` is created."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=1))
    (out / "table.md").write_text(markdown)
    for name, draw in (figures or {}).items():
        draw(results, out / name)


# --------------------------------------------------------------------------------------
# figures


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


@dataclasses.dataclass(frozen=True)
class Panel:
    """A panel of :func:`figure_vs_dim`: the row key plotted, its axis label, the least value
    drawn (log axes) and a dashed reference level (``None``: none)."""

    key: str
    ylabel: str
    least: float = 1e-6
    reference: float | None = None


def figure_vs_dim(
    results: dict,
    path: Path,
    panels: Sequence[Panel],
    *,
    quoted: Mapping[str, Mapping[int, float]] | None = None,
    title: str | None = None,
) -> None:
    """Figures of merit against d: a row of ``panels`` per problem of ``results["runs"]``, a
    line per row of the tables, and each ``quoted`` figure (name → d → value, the
    literature's) as a grey line in the first panel."""
    plt = _pyplot()
    runs = results["runs"]
    problems = list(dict.fromkeys(r["problem"] for r in runs))
    names = list(dict.fromkeys(name for run in runs for name in run["methods"]))
    line_styles = ("-", "--", ":")
    styles = {
        name: {"color": f"C{i % 10}", "ls": line_styles[(i // 10) % 3], "label": name}
        for i, name in enumerate(names)
    }
    all_dims = sorted({r["dim"] for r in runs})
    width = 5.0 if len(panels) > 1 else 6.5
    height = 3.6 if len(panels) > 1 else 4.2
    fig, axes = plt.subplots(
        len(problems), len(panels), figsize=(width * len(panels), height * len(problems)),
        squeeze=False,
    )  # fmt: skip
    for row, problem in zip(axes, problems, strict=True):
        mine = sorted((r for r in runs if r["problem"] == problem), key=lambda r: r["dim"])
        for name in names:
            for ax, panel in zip(row, panels, strict=True):
                pts = [
                    (r["dim"], r["methods"][name][panel.key])
                    for r in mine
                    if name in r["methods"] and r["methods"][name].get(panel.key) is not None
                ]
                if pts:
                    dims, vals = zip(*pts, strict=True)
                    ax.plot(
                        dims, np.maximum(vals, panel.least), marker="o", ms=3, lw=1, **styles[name]
                    )
        for ls, (name, values) in zip(("--", ":", "-."), (quoted or {}).items(), strict=False):
            dims = [d for d in all_dims if d in values]
            row[0].plot(dims, [values[d] for d in dims], color="gray", ls=ls, lw=1.2, label=name)
        for ax, panel in zip(row, panels, strict=True):
            ax.set_xscale("log", base=2)
            ax.set_xticks(all_dims, [str(d) for d in all_dims])
            ax.minorticks_off()
            ax.set_yscale("log")
            ax.set_xlabel("d", fontsize=8)
            ax.set_ylabel(panel.ylabel, fontsize=8)
            ax.set_title(title or problem, fontsize=9)
            ax.tick_params(labelsize=7)
            if panel.reference is not None:
                ax.axhline(panel.reference, color="gray", lw=0.6, ls="--")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.tight_layout()
    fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=7)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def figure_vs_time(results: dict, path: Path, levels: Sequence[float] = (1.0, 2.0)) -> None:
    """L2-UVP against wall time, a panel per problem and d (from ``results.json``): a curve
    per row that recorded one, a point per other row, the baselines as horizontal lines and
    ``levels`` as dashed ones."""
    plt = _pyplot()
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
        for level in levels:
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


def _grid(plt, n: int, width: float, height: float, columns: int = 5):
    rows = -(-n // columns)
    cols = min(n, columns)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False)
    axes = axes.ravel()
    for ax in axes[n:]:
        ax.axis("off")
    return fig, axes


def pushforward_figure(
    results: dict, fitted: Mapping[str, Any], problem, path: Path, seed_index: int = 0
) -> None:
    """T#μ0 against γ for one seed, a panel per method (``fitted``: name → a
    :class:`~mongeflow.fit.FitResult`)."""
    plt = _pyplot()
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
        ax.set_title(f"{name}\nED {fixed(ed)}", fontsize=9)
    for ax in axes:
        ax.set_xlim(-4.5, 4.5)
        ax.set_ylim(-4.5, 4.5)
        ax.set_aspect("equal")
        ax.tick_params(labelsize=7)
    axes[1].legend(loc="upper right", fontsize=7, markerscale=4)
    fig.suptitle(f"T#μ0 against γ, seed {results['seeds'][seed_index]}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def histograms(results: dict, path: Path) -> None:
    """Per-seed energy distances of each method over [0, 0.1] (from ``results.json``)."""
    plt = _pyplot()
    names = list(results["methods"])
    fig, axes = _grid(plt, len(names), 3.0, 2.6)
    for ax, name in zip(axes, names, strict=False):
        ed = np.array(
            [np.nan if v is None else v for v in results["methods"][name]["energy_distance"]]
        )
        finite = ed[np.isfinite(ed)]
        ax.hist(np.clip(finite, 0, 0.1), bins=30, range=(0, 0.1), color="tab:orange")
        s = results["methods"][name]["summary"]
        ax.set_title(f"{name}\n{fixed(s['mean'])} ± {fixed(s['std'])}", fontsize=9)
        ax.set_xlabel("energy distance (clipped at 0.1)", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in axes[:: min(len(names), 5)]:
        ax.set_ylabel("seeds")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
