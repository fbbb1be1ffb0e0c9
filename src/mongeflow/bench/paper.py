"""The paper's experiment (SPEC §5), run for every seed at once, and the library's better rows.

``mongeflow bench paper --seeds 100 --out DIR`` writes ``DIR/results.json``, ``DIR/table.md``,
``DIR/fig1_pushforward.png`` and ``DIR/fig2_histograms.png``.

The four *faithful* rows follow the authors' example (github.com/theodumont/
monge-constrained-flow) step for step: the 541-parameter ICNN with clamped weights and its
initialisation, batch 100 drawn afresh at every step, the self-entropic-OT score with
ε = 0.05 · median of squared distances and the same Sinkhorn stopping rule, and their budgets.
Two conversions are needed because the example sums its gradients over the batch where this
library averages them:

- Euclidean GD: the example's lr = 1e-3 on the sum is lr = 0.1 on the mean.
- Implicit: the example's inner objective is Σ_i (KL gradient) + (1/2τ) mean |T − T_k|², i.e.
  n · F + (1/2τ) mean |T − T_k|². Adam is invariant to the overall scale, so this is
  F + (1/2 n τ) mean |T − T_k|²: the library's ``Implicit(tau = n τ = 40)``.

Adam and the explicit scheme's regression are unaffected (Adam is scale-invariant). Every
row uses the same seeds: seed s gives the same initial network, and the same evaluation
samples, to every method.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import numpy as np

from mongeflow.divergences import KL
from mongeflow.maps import ICNN, transport
from mongeflow.metrics import mean_distance
from mongeflow.problems import get_problem
from mongeflow.progress import ProgressBar
from mongeflow.schemes import Adam, Euclidean, Explicit, Implicit, Scheme

#: The paper's Table (mean ± std of the energy distance over 100 seeds).
PAPER = {
    "explicit": (0.0194, 0.0098),
    "implicit": (0.0241, 0.0179),
    "euclidean": (0.1213, 0.1138),
    "adam": (0.0291, 0.0156),
}
BATCH = 100


@dataclasses.dataclass(frozen=True)
class Row:
    """One method of the table."""

    name: str
    scheme: Scheme
    steps: int
    gradient: str  # "entropic" (the paper's score estimator) or "logdet"
    faithful: bool
    settings: dict[str, Any]
    widths: tuple[int, ...] = (20, 20)
    strong_convexity: float = 0.0
    batch_size: int = BATCH

    def potential(self) -> Callable:
        widths, alpha = self.widths, self.strong_convexity
        return lambda key: ICNN(2, key, widths=widths, strong_convexity=alpha)

    def divergence(self, target) -> KL:
        return KL(target, None, gradient=self.gradient, velocity_estimator="entropic")

    @property
    def gradient_evaluations(self) -> int:
        """Mini-batch gradient evaluations (outer × inner steps), the paper's budget unit."""
        inner = getattr(self.scheme, "inner_steps", 1)
        if getattr(self.scheme, "solver", "adam") != "adam":
            inner = 1
        return self.steps * inner


def faithful_rows(scale: float = 1.0) -> list[Row]:
    """The paper's four methods with its budgets (``scale`` < 1 shortens them, for tests)."""
    s = lambda n: max(1, round(n * scale))
    common = {"batch_size": BATCH, "network": "ICNN 2-20-20-1, 541 parameters, clamp"}
    score = {"gradient": "self-entropic-OT score, eps = 0.05 median |yi - yj|^2"}
    return [
        Row(
            "explicit",
            Explicit(tau=0.4, inner_steps=s(100), inner_learning_rate=0.1),
            steps=10,
            gradient="entropic",
            faithful=True,
            settings={
                **common,
                **score,
                "tau": 0.4,
                "outer_steps": 10,
                "inner_adam_steps": s(100),
                "inner_lr": 0.1,
                "T0": "identity",
            },
        ),
        Row(
            "implicit",
            Implicit(tau=0.4 * BATCH, inner_steps=s(100), inner_learning_rate=0.1),
            steps=10,
            gradient="entropic",
            faithful=True,
            settings={
                **common,
                **score,
                "tau": 0.4,
                "tau_on_mean_loss": 0.4 * BATCH,
                "outer_steps": 10,
                "inner_adam_steps": s(100),
                "inner_lr": 0.1,
                "first_prox_centre": "initial network",
            },
        ),
        Row(
            "euclidean",
            Euclidean(learning_rate=1e-3 * BATCH),
            steps=s(3000),
            gradient="entropic",
            faithful=True,
            settings={
                **common,
                **score,
                "lr_on_batch_sum": 1e-3,
                "lr_on_mean_loss": 1e-3 * BATCH,
                "steps": s(3000),
            },
        ),
        Row(
            "adam",
            Adam(learning_rate=0.05),
            steps=s(1000),
            gradient="entropic",
            faithful=True,
            settings={**common, **score, "lr": 0.05, "steps": s(1000)},
        ),
    ]


def better_rows(scale: float = 1.0) -> list[Row]:
    """The library's configurations at the paper's batch (100) and gradient budget (≤ 1000).

    Each changes one thing at a time so the table shows what helps: the exact log-det KL
    gradient instead of the score estimator, a cosine decay of the (inner) learning rate,
    the implicit scheme on the log-det KL, and a wider ICNN (reported apart from the
    541-parameter rows).
    """
    s = lambda n: max(1, round(n * scale))
    paper_net = {"network": "ICNN 2-20-20-1, 541 parameters, clamp", "batch_size": BATCH}
    logdet = {**paper_net, "gradient": "exact log-det KL (no score estimate)"}
    score = {**paper_net, "gradient": "self-entropic-OT score (as the paper)"}
    return [
        Row(
            "adam-logdet",
            Adam(learning_rate=0.01),
            steps=s(1000),
            gradient="logdet",
            faithful=False,
            settings={**logdet, "lr": 0.01, "steps": s(1000)},
        ),
        Row(
            "adam-cosine",
            Adam(learning_rate=0.05, decay_steps=s(1000)),
            steps=s(1000),
            gradient="entropic",
            faithful=False,
            settings={**score, "lr": "0.05, cosine decay to 0", "steps": s(1000)},
        ),
        Row(
            "explicit-cosine",
            Explicit(tau=0.4, inner_steps=s(100), inner_learning_rate=0.1, inner_decay=True),
            steps=10,
            gradient="entropic",
            faithful=False,
            settings={
                **score,
                "tau": 0.4,
                "outer_steps": 10,
                "inner_adam_steps": s(100),
                "inner_lr": "0.1, cosine decay to 0 in each outer step",
            },
        ),
        Row(
            "adam-logdet-cosine",
            Adam(learning_rate=0.05, decay_steps=s(1000)),
            steps=s(1000),
            gradient="logdet",
            faithful=False,
            settings={**logdet, "lr": "0.05, cosine decay to 0", "steps": s(1000)},
        ),
        Row(
            "implicit-logdet-cosine",
            Implicit(tau=1.0, inner_steps=s(100), inner_learning_rate=0.05, inner_decay=True),
            steps=10,
            gradient="logdet",
            faithful=False,
            settings={
                **logdet,
                "tau_on_mean_loss": 1.0,
                "outer_steps": 10,
                "inner_adam_steps": s(100),
                "inner_lr": "0.05, cosine decay to 0 in each outer step",
                "first_prox_centre": "initial network",
            },
        ),
        Row(
            "wide-adam-logdet-cosine",
            Adam(learning_rate=0.02, decay_steps=s(1000)),
            steps=s(1000),
            gradient="logdet",
            faithful=False,
            widths=(64, 64),
            settings={
                **logdet,
                "network": "ICNN 2-64-64-1, 4545 parameters, clamp (wider: not comparable)",
                "lr": "0.02, cosine decay to 0",
                "steps": s(1000),
            },
        ),
    ]


def _summary(ed: np.ndarray) -> dict[str, float]:
    finite = ed[np.isfinite(ed)]
    return {
        "mean": float(np.mean(finite)) if finite.size else float("nan"),
        "std": float(np.std(finite)) if finite.size else float("nan"),
        "median": float(np.median(finite)) if finite.size else float("nan"),
        "share_above_0.05": float(np.mean(~(ed <= 0.05))),
        "max": float(np.max(finite)) if finite.size else float("nan"),
        "n_failed": int(np.sum(~np.isfinite(ed))),
    }


def run_paper(
    seeds: int = 100,
    out: str | Path | None = None,
    *,
    quick: bool = False,
    rows: list[str] | None = None,
    eval_size: int = 10_000,
    progress: bool = True,
) -> dict:
    """Run the table; write ``results.json``, ``table.md`` and the two figures to ``out``.

    Args:
        seeds: seeds 0 … seeds−1, all trained together in one program per method.
        out: output directory (created); ``None`` writes nothing.
        quick: tiny budgets (1/20 of the steps, 500 evaluation samples) to test the code path.
        rows: names of rows to run (default: all).
        eval_size: samples of each side for the final energy distance (paper: 10⁴).
        progress: a progress bar over the rows, and one line per finished row.

    Returns:
        The ``results.json`` dictionary.
    """
    from mongeflow.fit import fit

    scale = 0.05 if quick else 1.0
    if quick:
        eval_size = min(eval_size, 500)
    problem = get_problem("paper-gmm")
    table = faithful_rows(scale) + better_rows(scale)
    if rows is not None:
        unknown = set(rows) - {r.name for r in table}
        if unknown:
            raise ValueError(
                f"unknown rows {sorted(unknown)}; valid: {', '.join(r.name for r in table)}"
            )
        table = [r for r in table if r.name in rows]
    results: dict[str, Any] = {
        "experiment": "Dumont, Lacombe & Vialard 2026, SPEC §5: 4-Gaussian 2-D source to N(0, I)",
        "seeds": list(range(seeds)),
        "eval_size": eval_size,
        "quick": quick,
        "paper": {k: {"mean": m, "std": sd} for k, (m, sd) in PAPER.items()},
        "machine": machine(),
        "methods": {},
    }
    fitted = {}
    total = time.perf_counter()
    scorer = _EnergyDistance(problem, seeds, eval_size)
    with ProgressBar(progress, len(table), f"bench paper ({seeds} seeds)", table[0].name) as bar:
        for i, row in enumerate(table):
            start = time.perf_counter()
            res = fit(
                problem,
                row.scheme,
                row.potential(),
                divergence=row.divergence(problem.target),
                steps=row.steps,
                batch_size=row.batch_size,
                seed=list(range(seeds)),
                log_every=row.steps,
                eval_size=200,
                final_eval_size=0,
                progress=False,
            )
            ed = scorer(res.potentials)
            wall = time.perf_counter() - start
            ed[res.stopped_at >= 0] = np.nan  # a seed whose training blew up has no result
            results["methods"][row.name] = {
                "faithful": row.faithful,
                "settings": {**row.settings, "gradient_evaluations": row.gradient_evaluations},
                "energy_distance": [None if not np.isfinite(v) else float(v) for v in ed],
                "wall_time_s": wall,
                "summary": _summary(ed),
                "stopped_at": [int(v) for v in res.stopped_at],
            }
            fitted[row.name] = res
            summary = results["methods"][row.name]["summary"]
            bar.print(
                f"{row.name}: energy distance {summary['mean']:.4f} ± {summary['std']:.4f} "
                f"({wall:.0f} s)"
            )
            bar.advance(1, table[i + 1].name if i + 1 < len(table) else "")
    results["total_wall_time_s"] = time.perf_counter() - total
    results["faithful_wall_time_s"] = sum(
        m["wall_time_s"] for m in results["methods"].values() if m["faithful"]
    )
    if out is not None:
        from mongeflow.bench.report import paper_figures, paper_table

        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "results.json").write_text(json.dumps(results, indent=1))
        (out / "table.md").write_text(paper_table(results))
        paper_figures(results, fitted, problem, out)
    return results


class _EnergyDistance:
    """ED of T#μ0 against γ per seed, each seed with its own fresh samples of both sides.

    The samples depend only on the seed, so every method is scored on the same ones, and
    γ's own term E|Y − Y'| is computed once per seed for all methods. Seeds are scored one
    after another (``lax.map``): faster on CPU than batching 10⁴ × 10⁴ products.
    """

    def __init__(self, problem, seeds: int, n: int):
        keys = jax.random.split(jax.random.key(20260325), seeds)
        self.x = jax.vmap(lambda k: problem.source.sample(jax.random.fold_in(k, 0), n))(keys)
        self.y = jax.vmap(lambda k: problem.target.sample(jax.random.fold_in(k, 1), n))(keys)
        self.yy = jax.jit(lambda y: jax.lax.map(lambda a: mean_distance(a, a), y))(self.y)

    def __call__(self, potentials) -> np.ndarray:
        params, static = eqx.partition(potentials, eqx.is_array)

        @jax.jit
        def run(params, x, y, yy):
            def one(args):
                p, xs, ys, yys = args
                mapped = transport(eqx.combine(p, static), xs)
                return 2.0 * mean_distance(mapped, ys) - mean_distance(mapped, mapped) - yys

            return jax.lax.map(one, (params, x, y, yy))

        return np.asarray(run(params, self.x, self.y, self.yy), dtype=float)


def machine() -> dict[str, Any]:
    """What the benchmark ran on."""
    import os
    import platform

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
