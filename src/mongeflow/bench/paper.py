"""The paper's experiment, run for every seed at once, and the library's better rows.

The experiment of Dumont, Lacombe & Vialard (2026): a mixture of four Gaussians in 2-D pushed
to N(0, I), each method trained for 100 seeds and scored by the energy distance on 10⁴
samples of each side. ``mongeflow bench paper --seeds 100 --out DIR`` writes
``DIR/results.json``, ``DIR/table.md``, ``DIR/fig1_pushforward.png`` and
``DIR/fig2_histograms.png``.

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

The table is a list of rows (:class:`Row`, each a :class:`~mongeflow.bench.harness.Row`
that trains every seed at once) over :mod:`mongeflow.bench.harness`: each stack of maps is
scored by :func:`~mongeflow.bench.harness.score` on per-seed fresh samples
(:meth:`~mongeflow.bench.harness.HeldOut.per_seed`).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np

from mongeflow.bench.harness import HeldOut, Scored, Setting, Trained, train_and_score
from mongeflow.bench.report import (
    Column,
    fixed,
    histograms,
    machine,
    machine_line,
    page,
    pushforward_figure,
    table,
    write,
)
from mongeflow.divergences import KL
from mongeflow.fit import fit
from mongeflow.maps import ICNN, parameter_count
from mongeflow.problems import get_problem
from mongeflow.progress import ProgressBar
from mongeflow.schemes import Adam, AdamInner, Euclidean, Explicit, Implicit, Scheme
from mongeflow.settings import record

#: The paper's Table (mean ± std of the energy distance over 100 seeds).
PAPER = {
    "explicit": (0.0194, 0.0098),
    "implicit": (0.0241, 0.0179),
    "euclidean": (0.1213, 0.1138),
    "adam": (0.0291, 0.0156),
}
BATCH = 100
#: The paper's gradient: the self-entropic-OT score in both the gradient and the velocity
#: (``velocity_estimator="auto"`` would use the mixture's exact score: not the paper's method).
SCORE = KL(gradient="entropic", velocity_estimator="entropic")
#: The library's exact log-det KL gradient (the velocity, unused by these rows, as the paper's).
LOGDET = KL(gradient="logdet", velocity_estimator="entropic")


def gradient_evaluations(scheme: Scheme, steps: int) -> int:
    """Mini-batch gradient evaluations, the paper's budget unit: outer × inner steps for a
    scheme whose inner solver is Adam (one gradient per inner step), else ``steps``."""
    inner = getattr(scheme, "inner", None)
    return steps * inner.steps if isinstance(inner, AdamInner) else steps


@dataclasses.dataclass(frozen=True)
class Row:
    """One method of the table.

    Attributes:
        name: the row's name.
        scheme: the scheme value: its settings are the row's reported settings.
        steps: outer steps.
        divergence: the lifted KL (:data:`SCORE` or :data:`LOGDET`).
        faithful: whether the row is the paper's method with the paper's settings.
        notes: only what the scheme value does not say (the example's settings before the
            conversions of the module docstring, a remark on the network).
        widths, strong_convexity: the ICNN ``ICNN(2, key, widths, strong_convexity)``.
        batch_size: the mini-batch size.
    """

    name: str
    scheme: Scheme
    steps: int
    divergence: KL
    faithful: bool
    notes: dict[str, Any] = dataclasses.field(default_factory=dict)
    widths: tuple[int, ...] = (20, 20)
    strong_convexity: float = 0.0
    batch_size: int = BATCH

    @property
    def label(self) -> str:
        return self.name

    @property
    def kind(self) -> str:
        return "faithful" if self.faithful else "library"

    def train(self, setting: Setting) -> Trained:
        """Every seed of ``setting.seed`` trained at once, in the paper's coordinates with its
        last map (no standardisation, no best map kept, no early stopping); the map is the
        stack of potentials; ``stopped_at`` says which seeds blew up."""
        start = time.perf_counter()
        res = fit(
            setting.problem,
            self.scheme,
            self.divergence,
            self.potential(),
            steps=self.steps,
            batch_size=self.batch_size,
            seed=setting.seed,
            callbacks=(),
            log_every=self.steps,
            eval_size=200,
            final_eval_size=0,
            standardize=False,
            keep_best=False,
            patience=None,
        )
        wall = time.perf_counter() - start
        stopped = [int(v) for v in res.stopped_at]
        return Trained(res.potentials, wall, extra={"stopped_at": stopped}, source=res)

    def potential(self) -> Callable:
        """The factory ``key -> ICNN`` of the row's network."""
        widths, alpha = self.widths, self.strong_convexity
        return lambda key: ICNN(2, key, widths=widths, strong_convexity=alpha)

    @property
    def network(self) -> str:
        """``ICNN 2-20-20-1, 541 parameters, clamp, …``, read off the network itself."""
        phi = self.potential()(jax.random.key(0))
        layers = "-".join(str(w) for w in (2, *self.widths, 1))
        return (
            f"ICNN {layers}, {parameter_count(phi)} parameters, {phi.nonnegativity}, "
            f"strong convexity {self.strong_convexity}"
        )

    @property
    def gradient_evaluations(self) -> int:
        return gradient_evaluations(self.scheme, self.steps)

    @property
    def settings(self) -> dict[str, Any]:
        """The reported settings: the scheme's and the divergence's records, the budget and
        the network, then the notes."""
        return {
            "scheme": record(self.scheme),
            "divergence": record(self.divergence),
            "steps": self.steps,
            "batch_size": self.batch_size,
            "network": self.network,
            **self.notes,
            "gradient_evaluations": self.gradient_evaluations,
        }


def faithful_rows(scale: float = 1.0) -> list[Row]:
    """The paper's four methods with its budgets (``scale`` < 1 shortens them, for tests)."""
    s = lambda n: max(1, round(n * scale))
    return [
        Row(
            "explicit",
            Explicit(tau=0.4, inner=AdamInner(steps=s(100), learning_rate=0.1)),
            steps=10,
            divergence=SCORE,
            faithful=True,
        ),
        Row(
            "implicit",
            Implicit(tau=0.4 * BATCH, inner=AdamInner(steps=s(100), learning_rate=0.1)),
            steps=10,
            divergence=SCORE,
            faithful=True,
            notes={"tau_on_batch_sum": 0.4},
        ),
        Row(
            "euclidean",
            Euclidean(learning_rate=1e-3 * BATCH),
            steps=s(3000),
            divergence=SCORE,
            faithful=True,
            notes={"lr_on_batch_sum": 1e-3},
        ),
        Row("adam", Adam(learning_rate=0.05), steps=s(1000), divergence=SCORE, faithful=True),
    ]


def better_rows(scale: float = 1.0) -> list[Row]:
    """The library's configurations at the paper's batch (100) and gradient budget (≤ 1000).

    Each changes one thing at a time so the table shows what helps: the exact log-det KL
    gradient instead of the score estimator, a cosine decay of the (inner) learning rate,
    the implicit scheme on the log-det KL, and a wider ICNN (reported apart from the
    541-parameter rows).
    """
    s = lambda n: max(1, round(n * scale))
    cosine_inner = lambda rate: AdamInner(steps=s(100), learning_rate=rate, decay=True)
    return [
        Row("adam-logdet", Adam(learning_rate=0.01), s(1000), LOGDET, faithful=False),
        Row(
            "adam-cosine",
            Adam(learning_rate=0.05, decay_steps=s(1000)),
            s(1000),
            SCORE,
            faithful=False,
        ),
        Row(
            "explicit-cosine",
            Explicit(tau=0.4, inner=cosine_inner(0.1)),
            10,
            SCORE,
            faithful=False,
        ),
        Row(
            "adam-logdet-cosine",
            Adam(learning_rate=0.05, decay_steps=s(1000)),
            s(1000),
            LOGDET,
            faithful=False,
        ),
        Row(
            "implicit-logdet-cosine",
            Implicit(tau=1.0, inner=cosine_inner(0.05)),
            10,
            LOGDET,
            faithful=False,
        ),
        Row(
            "wide-adam-logdet-cosine",
            Adam(learning_rate=0.02, decay_steps=s(1000)),
            s(1000),
            LOGDET,
            faithful=False,
            widths=(64, 64),
            notes={"network_remark": "wider than the paper's: not comparable"},
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
    scale = 0.05 if quick else 1.0
    if quick:
        eval_size = min(eval_size, 500)
    problem = get_problem("paper-gmm")
    chosen = faithful_rows(scale) + better_rows(scale)
    if rows is not None:
        unknown = set(rows) - {r.name for r in chosen}
        if unknown:
            raise ValueError(
                f"unknown rows {sorted(unknown)}; valid: {', '.join(r.name for r in chosen)}"
            )
        chosen = [r for r in chosen if r.name in rows]
    results: dict[str, Any] = {
        "experiment": "Dumont, Lacombe & Vialard 2026: 4-Gaussian 2-D source to N(0, I)",
        "seeds": list(range(seeds)),
        "eval_size": eval_size,
        "quick": quick,
        "paper": {k: {"mean": m, "std": sd} for k, (m, sd) in PAPER.items()},
        "machine": machine(),
        "methods": {},
    }
    fitted = {}
    total = time.perf_counter()
    setting = Setting(problem, seed=list(range(seeds)))
    held = HeldOut.per_seed(problem, seeds, eval_size)
    with ProgressBar(progress, len(chosen), f"bench paper ({seeds} seeds)", chosen[0].name) as bar:
        for scored in train_and_score(chosen, setting, held, bar=bar):
            results["methods"][scored.label] = _record(scored)
            fitted[scored.label] = scored.trained.source
            summary = results["methods"][scored.label]["summary"]
            wall = results["methods"][scored.label]["wall_time_s"]
            bar.print(
                f"{scored.label}: energy distance {summary['mean']:.4f} ± {summary['std']:.4f} "
                f"({wall:.0f} s)"
            )
    results["total_wall_time_s"] = time.perf_counter() - total
    results["faithful_wall_time_s"] = sum(
        m["wall_time_s"] for m in results["methods"].values() if m["faithful"]
    )
    if out is not None:
        figures = {
            "fig1_pushforward.png": lambda r, path: pushforward_figure(r, fitted, problem, path),
            "fig2_histograms.png": histograms,
        }
        write(out, results, paper_table(results), figures)
    return results


def _record(s: Scored) -> dict:
    """A row of ``results.json``: the per-seed energy distances (null for a seed whose
    training blew up), their summary, the settings and the time (training and scoring)."""
    ed = np.array(s.scores["energy_distance"], dtype=float)
    stopped = np.asarray(s.trained.extra["stopped_at"])
    ed[stopped >= 0] = np.nan  # a seed whose training blew up has no result
    return {
        "faithful": s.row.faithful,
        "settings": s.row.settings,
        "energy_distance": [None if not np.isfinite(v) else float(v) for v in ed],
        "wall_time_s": s.trained.wall_time_s + s.scoring_time_s,  # training and scoring
        "scoring_time_s": s.scoring_time_s,
        "summary": _summary(ed),
        "stopped_at": [int(v) for v in stopped],
    }


def _paper_cell(name: str, row: dict, paper: dict) -> str:
    ref = paper.get(name)
    return f"{ref['mean']:.4f} ± {ref['std']:.4f}" if ref and row["faithful"] else ""


def paper_table(results: dict) -> str:
    """Markdown table of ``results.json`` of ``bench paper``."""
    s = lambda r: r["summary"]
    columns = [
        Column("method", lambda name, r: name),
        Column("faithful", lambda name, r: "yes" if r["faithful"] else "no"),
        Column("mean ± std", lambda name, r: f"{fixed(s(r)['mean'])} ± {fixed(s(r)['std'])}"),
        Column("median", lambda name, r: fixed(s(r)["median"])),
        Column("max", lambda name, r: fixed(s(r)["max"])),
        Column("share > 0.05", lambda name, r: f"{s(r)['share_above_0.05']:.2f}"),
        Column("failed", lambda name, r: s(r)["n_failed"]),
        Column("grad. evals", lambda name, r: r["settings"].get("gradient_evaluations", "")),
        Column("wall time (s)", lambda name, r: f"{r['wall_time_s']:.1f}"),
        Column("paper", lambda name, r: _paper_cell(name, r, results["paper"])),
    ]
    return page(
        f"The paper's table — {len(results['seeds'])} seeds, "
        f"energy distance on {results['eval_size']} samples of each side",
        machine_line(results["machine"]),
        table(columns, results["methods"]),
        f"Faithful rows together: {results['faithful_wall_time_s']:.1f} s; "
        f"all rows: {results['total_wall_time_s']:.1f} s (compilation and evaluation included).",
    )
