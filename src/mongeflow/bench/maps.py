"""Problems with a known Monge map: the library's fits against outside solvers, by wall time.

``mongeflow bench maps --out DIR`` runs ``dense-potential`` (source (∇ψ)#N(0, I), target
N(0, I), T* = (∇ψ)⁻¹ exactly; any registered problem with a known map can be named with
``--problems``) at d ∈ {2, 8, 16, 32, 64}, one seed, and writes ``DIR/results.json``,
``DIR/table.md`` (a table per problem and d) and ``DIR/l2_uvp_vs_time.png``.

The benchmark is a list of rows (:func:`rows`) over :mod:`mongeflow.bench.harness`. Every
row is scored by :func:`~mongeflow.bench.harness.score` on the same held-out samples:
:data:`N_EVAL` exact pairs (x, T*(x)) and :data:`N_EVAL` samples of γ, drawn from one key
that no row trains on (:meth:`~mongeflow.bench.harness.HeldOut.drawn`). The columns:

- L2-UVP = 100 E|T(x) − T*(x)|² / Var(γ) (Korotin et al. 2021), in percent;
- the energy distance of T#μ0 to the held-out samples of γ;
- the held-out objective F = mean V(T(x)) − mean log det DT(x) (γ ∝ e^{−V}), in the
  data's units, the figure every scheme minimises: its differences between rows are
  differences of KL(T#μ0 ‖ γ);
- the wall time to build the map (training, compilation included; the scoring excluded;
  0 for the identity) and, where a curve was recorded, the times at which L2-UVP first
  reached 2 % and 1 % (:func:`~mongeflow.bench.harness.time_to`).

The rows (:mod:`mongeflow.bench.rows`):

- ``identity`` (T = id) and ``linear (Bures)`` (:func:`~mongeflow.metrics.linear_baseline`:
  the affine Monge map from the Gaussian with the moments of 10⁴ source samples to γ's).
- ``entropic map (OTT)``: OTT-JAX's entropic map estimator (Pooladian & Niles-Weed 2021)
  between :data:`N_TRAIN` samples of μ0 and :data:`N_TRAIN` of γ, at OTT's default ε (5 %
  of the cost matrix's standard deviation). Its F uses the Jacobian of that map.
- ``W2NeuralDual (...)``: OTT-JAX's neural dual solver (Makkuva et al. 2020, with the
  conjugate fine-tuning and amortisation of Amos 2023) with all its defaults: ICNN
  potentials f and g of widths 64 × 4 with positive weights, Adam (rate 10⁻⁴,
  β = (0.5, 0.9)) on both, parallel updates, regression amortisation of g, and each target
  point's conjugate refined by L-BFGS (at most 20 iterations of at most 20 backtracking
  steps, tolerance 10⁻⁵). The solver takes its batches from the caller: here
  :data:`ND_BATCH` fresh samples of the standardised μ0 (posed as
  :func:`~mongeflow.fit.fit` poses it: x − m over one overall scale s) and of γ at every
  iteration, as the library's fits draw theirs. Its map is T(x) = ∇f((x − m)/s)
  (:class:`~mongeflow.bench.rows.NeuralDualRow`; checked on the ``gaussian`` problem, whose
  Bures map is known). OTT's ICNN does not start at the identity (its initial map is
  ~10⁵ % L2-UVP on these problems), so a short run stays far off.
  One training run gives three rows, its state at the end of each budget: its default
  20 000 iterations, 4 × that, and the wall time that ``auto`` took at the same d (left
  out when ``auto`` does not run). Every budget also stops at ``time_cap`` seconds
  (``--time-cap``); a row that stopped there says so ("stopped at the … s cap after K of N
  iterations"). Its time and curve (L2-UVP after each compiled chunk of iterations) count
  training only, compilation included, the scoring of the curve excluded.
- ``auto``: :func:`~mongeflow.fit.fit` with every default (``scheme=None``: the choice of
  :func:`mongeflow.auto.choose`, the library's default map, batch 256, early stopping on
  the held-out F, the best map kept).
- every scheme of the registry (:data:`mongeflow.schemes.SCHEMES`), at its registered
  default value and ``default_steps``, otherwise as ``auto``. A newly registered scheme
  joins with no edit here.

The library's fits are not time-capped (their budgets are step counts); their curves are
:func:`~mongeflow.fit.fit`'s history (L2-UVP on its own 2 000 held-out pairs, the time
including compilation and that scoring).

``--quick`` (for tests; it measures nothing): d = 2, 300 samples everywhere, 1/50 of every
fit's steps, W2NeuralDual for 3 and 12 iterations of 16 samples.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax

from mongeflow import schemes
from mongeflow.auto import AUTO_STEPS
from mongeflow.bench import rows as shared
from mongeflow.bench.harness import (
    HeldOut,
    Row,
    Scored,
    Setting,
    Trained,
    Unit,
    level_key,
    result,
    run_units,
)
from mongeflow.bench.report import (
    Column,
    figure_vs_time,
    machine,
    machine_line,
    page,
    run_sections,
    sig,
    write,
)
from mongeflow.bench.rows import (  # noqa: F401  (the table's labels, for readers of results)
    ENTROPIC,
    IDENTITY,
    LINEAR,
    ND_BATCH,
    ND_LONG,
    ND_ROWS,
    QUICK_ND_ITERS,
    EntropicRow,
    FitRow,
    IdentityRow,
    NeuralDualRow,
)
from mongeflow.divergences import KL
from mongeflow.maps.base import Array, Potential
from mongeflow.maps.monge import StandardizedPotential
from mongeflow.metrics import linear_baseline
from mongeflow.problems import Problem, Standardiser, get_problem

PROBLEMS = ("dense-potential",)
DIMS = (2, 8, 16, 32, 64)
#: held-out pairs (x, T*(x)) and samples of γ, the same for every row
N_EVAL = 2000
#: samples of each side in the Sinkhorn solve of the entropic map
N_TRAIN = 4000
#: seconds after which every W2NeuralDual budget stops
TIME_CAP = 300.0
#: the levels of the "time to" columns, in % L2-UVP
LEVELS = (2.0, 1.0)
#: row groups that are not registered schemes, in the order of the table
GROUPS = ("identity", "linear", "entropic-map", "neural-dual", "auto")
#: the divergence of every fit (fit's default: the KL with the exact log-det gradient)
DIVERGENCE = KL()
#: the figures of :func:`~mongeflow.bench.harness.score` each row reports
FIGURES = ("l2_uvp", "energy_distance", "objective")
#: --quick: a fraction of each fit's steps, W2NeuralDual's iterations and batch, samples
QUICK_SCALE = 0.02
QUICK_ND_BATCH = 16
QUICK_N = 300


def missing_neural_dual() -> str | None:
    """Why the W2NeuralDual rows cannot run (the ``bench`` extra is missing), or ``None``."""
    return shared.missing_neural_dual()


def method_names() -> list[str]:
    """What ``--methods`` accepts: the row groups and the registered schemes."""
    return [*GROUPS, *schemes.SCHEMES]


# --------------------------------------------------------------------------------------
# maps as potentials in the data's units


def in_units(potential: Potential, problem: Problem) -> Potential:
    """``potential``, trained on ``problem``, in the units of the problem's data:
    Φ(x) = s φ((x − m)/s), or s² φ((x − m)/s) + m1ᵀx when the target is standardised too
    (:class:`~mongeflow.maps.StandardizedPotential`)."""
    standardiser = Standardiser.posed(problem)
    return potential if standardiser is None else StandardizedPotential(potential, standardiser)


# --------------------------------------------------------------------------------------
# the rows


@dataclasses.dataclass(frozen=True)
class BuresRow:
    """The affine Monge map from the Gaussian with the moments of 10⁴ source samples (drawn
    with ``key``) to γ's (:func:`~mongeflow.metrics.linear_baseline`); its wall time is the
    time to build it."""

    key: Array
    name: str = "linear"
    label: str = LINEAR
    kind: str = "baseline"

    def train(self, setting: Setting) -> Trained:
        start = time.perf_counter()
        linear = linear_baseline(setting.problem, self.key)
        wall = time.perf_counter() - start
        return Trained(linear, wall, "Bures map from the source sample's Gaussian to γ's moments")


def _fit_potential(res) -> Potential:
    """A fit's potential in the units of the data (a potential, so that F is computed)."""
    return in_units(res.select(0), res.problem)


def methods(scale: float | None = None, eval_size: int | None = None) -> list[FitRow]:
    """``auto``, then every registered scheme in the registry's order at its registered value
    and ``default_steps`` (× ``scale`` when given: the quick mode); ``eval_size``: the fits'
    held-out samples (default fit's)."""
    steps = lambda n: None if scale is None else max(1, round(n * scale))
    options = {} if eval_size is None else {"eval_size": eval_size}

    def row(name, scheme, n):
        return FitRow(name, name, scheme, DIVERGENCE, steps(n), options, _fit_potential)

    return [
        row("auto", None, AUTO_STEPS),
        *(row(name, s, s.default_steps) for name, s in schemes.SCHEMES.items()),
    ]


def rows(
    chosen: Sequence[str], *, quick: bool, eval_key: Array, train_key: Array, n_train: int
) -> list[Row]:
    """The rows of ``chosen`` (:func:`method_names`) at one problem and d, in the table's
    order (W2NeuralDual, which reads ``auto``'s wall time, is trained last)."""
    out: list[Row] = []
    if "identity" in chosen:
        out.append(IdentityRow())
    if "linear" in chosen:
        out.append(BuresRow(jax.random.fold_in(eval_key, 7)))
    if "entropic-map" in chosen:
        out.append(EntropicRow(n_train, jax.random.fold_in(train_key, 0)))
    if "neural-dual" in chosen:
        batch = QUICK_ND_BATCH if quick else ND_BATCH
        out.append(NeuralDualRow(jax.random.fold_in(train_key, 1), quick=quick, batch=batch))
    scale = QUICK_SCALE if quick else None
    fit_rows = methods(scale, QUICK_N if quick else None)
    out += [r for r in fit_rows if r.name in chosen]
    return out


def _record(s: Scored) -> dict:
    return result(s, FIGURES, levels=LEVELS, curves=True)


# --------------------------------------------------------------------------------------


def run_maps(
    out: str | Path | None = None,
    *,
    dims: Sequence[int] = DIMS,
    problems: Sequence[str] = PROBLEMS,
    methods_: Sequence[str] | None = None,
    time_cap: float = TIME_CAP,
    quick: bool = False,
    seed: int = 0,
    progress: bool = True,
) -> dict:
    """Run the known-map benchmark; write ``results.json``, ``table.md`` and a figure.

    Args:
        dims, problems: what to run (registered problems with a known map).
        methods_: the row groups to run (:func:`method_names`; default all).
        time_cap: seconds after which every W2NeuralDual budget stops.
        quick: d = 2 only, 1/50 of every fit's steps, W2NeuralDual for 3 and 12 iterations
            of 16 samples, 300 samples everywhere (tests the code path, measures nothing).
        seed: the seed of every fit and of W2NeuralDual; the samples come from ``seed + 1000``.

    Raises:
        ValueError: an unknown problem or method, or a problem with no known map.
        ImportError: W2NeuralDual rows asked for without the ``bench`` extra.
    """
    names = method_names()
    chosen = list(names if methods_ is None else methods_)
    bad = [m for m in chosen if m not in names]
    if bad:
        raise ValueError(f"unknown method {bad[0]!r}; valid methods: {', '.join(names)}")
    if time_cap <= 0:
        raise ValueError(f"the time cap must be positive, got {time_cap}")
    for name in problems:
        p = get_problem(name, dim=2)  # unknown names fail here, before any work
        if p.true_map is None and not hasattr(p.source, "sample_with_map"):
            raise ValueError(f"problem {name!r} has no known map: L2-UVP cannot be measured")
        if not p.target.has_potential:
            raise ValueError(
                f"problem {name!r} has a target known only by samples; this benchmark fits "
                "the KL, which needs V: run `mongeflow bench twosample` for it"
            )
    # a missing optional extra is reported after the request itself has been checked
    if "neural-dual" in chosen and (why := missing_neural_dual()):
        raise ImportError(why)
    n, n_train = (QUICK_N, QUICK_N) if quick else (N_EVAL, N_TRAIN)
    if quick:
        dims = (2,)
    results: dict[str, Any] = {
        "machine": machine(),
        "quick": quick,
        "seed": seed,
        "n_eval": n,
        "n_train": n_train,
        "time_cap_s": time_cap,
        "runs": [],
    }

    def setup(name: str, d: int) -> Unit:
        problem = get_problem(name, dim=d)
        base = jax.random.key(seed + 1000)
        eval_key, train_key = jax.random.fold_in(base, 0), jax.random.fold_in(base, 1)
        held = HeldOut.drawn(problem, eval_key, n)
        setting = Setting(problem, seed=seed, time_cap=time_cap, probe=held.probe)
        unit_rows = rows(
            chosen, quick=quick, eval_key=eval_key, train_key=train_key, n_train=n_train
        )
        return Unit(unit_rows, setting, held, {"problem": name, "dim": d})

    def save(results: dict) -> None:
        write(out, results, maps_table(results), {"l2_uvp_vs_time.png": figure_vs_time})

    units = [(name, d) for name in problems for d in dims]
    per_unit = len([g for g in GROUPS if g in chosen and g != "auto"])
    per_unit += len([m for m in methods() if m.name in chosen])
    return run_units(
        results,
        units,
        setup,
        _record,
        rows_per_unit=per_unit,
        title="bench maps",
        progress=progress,
        write=None if out is None else save,
    )


# --------------------------------------------------------------------------------------
# the table

#: the columns of each problem's and d's table
COLUMNS = (
    Column("method", lambda name, r: name),
    Column("L2-UVP %", lambda name, r: sig(r["l2_uvp"])),
    Column("energy distance", lambda name, r: sig(r["energy_distance"])),
    Column("held-out F", lambda name, r: sig(r.get("objective"), 5)),
    Column("wall time (s)", lambda name, r: f"{r['wall_time_s']:.1f}"),
    Column("to 2 % (s)", lambda name, r: sig(r.get(level_key(2.0)))),
    Column("to 1 % (s)", lambda name, r: sig(r.get(level_key(1.0)))),
    Column("notes", lambda name, r: r.get("note", "")),
)


def maps_table(results: dict) -> str:
    """Markdown tables of ``results.json`` of ``bench maps``: one per problem and d."""
    quick = " (--quick: tiny budgets, nothing is measured)" if results.get("quick") else ""
    return page(
        f"Known maps: the library's fits and outside solvers, one seed{quick}",
        f"{machine_line(results['machine'])} Total {results['total_wall_time_s']:.0f} s.",
        f"Every row is scored on the same {results['n_eval']} held-out pairs (x, T*(x)) and "
        f"{results['n_eval']} held-out samples of γ. L2-UVP = 100 E|T − T*|² / Var(γ); held-out "
        "F = mean V(T(x)) − mean log det DT(x) in the data's units (lower is better; its "
        "differences are differences of KL(T#μ0 ‖ γ)); wall time: building the map, "
        "compilation included; "
        "“to 2 %” and “to 1 %”: the first time L2-UVP reached that level on the row's curve "
        f"(— : never, or no curve). W2NeuralDual budgets stop at {results['time_cap_s']:g} s.",
        *run_sections(results, COLUMNS),
    )
