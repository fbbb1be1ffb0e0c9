"""Two-sample problems with a known Monge map: every method sees the same training samples.

``mongeflow bench twosample --out DIR`` runs ``dense-pair`` (x ~ μ, a Gaussian mixture, and
y = ∇ψ(x') for an independent x' ~ μ: T* = ∇ψ is known, but both sides are given only as
samples, as in Korotin et al., *Do neural optimal transport solvers work? A continuous
Wasserstein-2 benchmark*, NeurIPS 2021; ``gaussian-pair`` can be named with ``--problems``)
at d ∈ {2, 8, 16, 32, 64}, one seed, and writes ``DIR/results.json``, ``DIR/table.md`` (a
table per problem and d) and ``DIR/l2_uvp_vs_dim.png``.

The benchmark is a list of rows (:func:`rows`) over :mod:`mongeflow.bench.harness`. The
problem holds :data:`N_SAMPLES` points per side, 10 % of them held out. Every row is
trained on the same training rows (``problem.source.data``, ``problem.target.data``; the
entropic map on the first :data:`ENTROPIC_N` of them) and scored by
:func:`~mongeflow.bench.harness.score` on the same held-out rows
(:meth:`~mongeflow.bench.harness.HeldOut.of`: ``problem.validation``, n points x, and
``problem.validation_target``, n points y), which no row sees while training. The columns:

- L2-UVP = 100 mean_i |T(x_i) − T*(x_i)|² / Var(γ) (Korotin et al. 2021), in percent, on the
  held-out x; Var(γ) is the trace of the covariance of the training target samples (all of
  them), the same for every row.
- cos: the cosine similarity of Korotin et al. 2021, the benchmark's definition (not a mean
  of per-point cosines):

      cos = ⟨T − id, T* − id⟩_μ / (‖T − id‖_μ ‖T* − id‖_μ),

  every L²(μ) product a mean over the held-out x. It is 1 for a map that moves every point
  in T*'s direction by any positive multiple of T*'s move, and undefined (— in the table,
  ``null`` in ``results.json``) for T = id.
- the energy distance between T(x) (held-out x) and the held-out y
  (:func:`~mongeflow.metrics.energy_distance`), beside the two-sample floor
  (:func:`~mongeflow.metrics.energy_distance_floor`: what two independent samples of γ of
  these sizes score on average), and their ratio.
- the wall time to build the map (training, compilation included, scoring excluded).

The rows (:mod:`mongeflow.bench.rows` unless said):

- ``identity``; ``linear (Bures)`` (:class:`LinearRow`): the affine Monge map between the
  Gaussians with the training samples' means and covariances, by POT's
  ``ot.da.LinearTransport`` (Flamary et al. 2021) when POT is installed, else
  :func:`mongeflow.metrics.linear_baseline` on the same rows (the note says which).
- ``entropic map (OTT)``: OTT-JAX's entropic map at its default ε on the first
  :data:`ENTROPIC_N` training rows of each side (the rows are in random order: a Sinkhorn
  solve on all 9 000 is several times slower).
- ``W2NeuralDual (...)``: OTT-JAX's neural dual with all its defaults, batches drawn from
  the training rows, at its default iterations, 4 × those and ``auto``'s wall time, each
  capped at ``time_cap`` seconds.
- ``Monge gap (OTT)``: OTT-JAX's ``MongeGapEstimator`` (Uscidda & Cuturi, ICML 2023): an MLP
  map x ↦ x + MLP(x) (OTT's ``PotentialMLP(is_potential=False)``, hidden widths
  :func:`~mongeflow.maps.default.auto_widths`, at 32 < d ≤ 64 twice the semi-dual game's,
  GELU) minimising the Sinkhorn divergence to the target batch
  (ε = 0.1 × the mean cost of a target batch) plus 0.1 × the Monge gap for the squared
  Euclidean cost (ε = 0.01 × the mean source–target cost): the settings of OTT's Monge-gap
  tutorial, with the estimator's default optimiser (Adam, rate 10⁻³) and iterations
  (10 000), batches of 256, capped at ``time_cap`` seconds.
- ``drift MLP (unconstrained)``: :mod:`mongeflow.bench.drift_mlp`, the drifting-field
  regression of Deng et al. (2026) on x ↦ x + MLP(x), :data:`~mongeflow.auto.AUTO_STEPS`
  steps of 256. It pushes μ onto γ, but nothing makes it the OT map; compare it with
  ``drift / explicit``, the same field followed with T = ∇φ, φ convex.
- ``auto``: :func:`~mongeflow.fit.fit` with every default (for a target known by samples,
  the semi-dual scheme, :func:`mongeflow.auto.choose`); ``semidual``: the same scheme
  named (with ``--quick``, its steps scaled down).
- ``DIVERGENCE / SCHEME``: every registered divergence that works with target samples (all
  but those that need the target's potential) with the registered schemes ``explicit``,
  ``implicit``, ``natural`` and ``adam`` at their registered values; a divergence without a
  loss value (``loss_is_value`` false: ``drift``) goes with ``explicit`` only. Budgets: the
  same number of gradient evaluations as ``auto``'s :data:`~mongeflow.auto.AUTO_STEPS`
  steps (``adam``: that many steps; ``explicit`` and ``implicit``: AUTO_STEPS / inner steps
  outer steps), except ``natural``, at its registered ``default_steps`` (each of its steps
  solves a Gram system: 2 000 of them take far longer than every other row together).
- ``DIVERGENCE / explicit (τ = 0.1)`` for a divergence without a loss value (``drift``):
  the explicit scheme with τ = :data:`SMALL_TAU` and :data:`SMALL_TAU_STEPS` outer steps
  (4 000 gradient evaluations, twice ``auto``'s). The normalised drift keeps its size as
  T#μ meets γ, so τ is a step length, and the registered τ = 0.4 overshoots (the
  :class:`~mongeflow.divergences.Drift` docstring asks for a small τ). This τ was chosen
  among 0.2, 0.1 and 0.05 on ``dense-pair`` at d = 2 (scored on its held-out rows): a
  tuned row, unlike the others.

The library's fits are given the problem *without* its held-out rows, so that no row sees
the scored samples: their choice of the best map and their early stopping use the energy
distance on (re-drawn) training samples instead. The outside solvers and the drift MLP are
trained, as the library's fits pose the problem (:func:`~mongeflow.problems.standardize`),
in standardised coordinates (:class:`Posed`); each map is scored in the data's units. The
library's fits are scored through ``FitResult.map()`` (a :class:`~mongeflow.maps.MongeMap`).

``--quick`` (for tests; it measures nothing): d = 2, :data:`QUICK_N` samples per side, 1/50
of every fit's steps and of the drift MLP's, W2NeuralDual for 3 and 12 iterations and the
Monge gap for 3, of 16 samples.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from mongeflow import schemes
from mongeflow.auto import AUTO_STEPS
from mongeflow.bench import rows as shared
from mongeflow.bench.harness import (
    HeldOut,
    Row,
    Scored,
    Setting,
    Trained,
    Transport,
    Unit,
    batch_of,
    result,
    run_units,
)
from mongeflow.bench.report import (
    Column,
    Panel,
    figure_vs_dim,
    machine,
    machine_line,
    page,
    run_sections,
    sig,
    write,
)
from mongeflow.bench.rows import (  # noqa: F401  (the table's labels, for readers)
    ENTROPIC,
    IDENTITY,
    LINEAR,
    MG_BATCH,
    MG_ITERS,
    ND_BATCH,
    DriftMLPRow,
    EntropicRow,
    FitRow,
    IdentityRow,
    MongeGapRow,
    NeuralDualRow,
)
from mongeflow.divergences import DIVERGENCES, Divergence
from mongeflow.maps.base import Array
from mongeflow.metrics import linear_baseline
from mongeflow.problems import (
    EmpiricalSource,
    EmpiricalTarget,
    Problem,
    Standardiser,
    get_problem,
)
from mongeflow.problems.base import Source, Target
from mongeflow.schemes import Scheme

PROBLEMS = ("dense-pair",)
DIMS = (2, 8, 16, 32, 64)
#: points per side of each problem, of which VALIDATION are held out
N_SAMPLES = 10_000
VALIDATION = 0.1
#: seconds after which W2NeuralDual's budgets and the Monge gap stop
TIME_CAP = 300.0
#: training rows of each side in the entropic map's Sinkhorn solve (its cost grows as their
#: square: 9 000 rows took 200 s at d = 2 on a 2-core CPU)
ENTROPIC_N = 4000
#: the registered schemes of the divergence × scheme rows
GRID_SCHEMES = ("explicit", "implicit", "natural", "adam")
#: the extra explicit row of a divergence without a loss value (a normalised drift): its τ
#: and outer steps (inner steps as registered)
SMALL_TAU = 0.1
SMALL_TAU_STEPS = 40
#: the figures of :func:`~mongeflow.bench.harness.score` each row reports
FIGURES = ("l2_uvp", "cosine", "energy_distance", "energy_distance_floor", "ed_over_floor")
#: --quick: the fraction of every fit's steps, samples per side, tiny OTT budgets
QUICK_SCALE = 0.02
QUICK_N = 500
QUICK_ITERS = 3
QUICK_BATCH = 16

#: row groups that are not divergence × scheme rows, in the order of the table
GROUPS = (
    *("identity", "linear", "entropic-map", "neural-dual", "monge-gap", "drift-mlp", "auto"),
    "semidual",
)
MONGE_GAP, DRIFT_MLP, AUTO = MongeGapRow.label, DriftMLPRow.label, "auto"


# --------------------------------------------------------------------------------------
# which rows exist


def sample_divergences() -> dict[str, Divergence]:
    """The registered divergences that work with a target known by samples only."""
    return {k: d for k, d in DIVERGENCES.items() if not d.needs_potential}


def grid_steps(scheme: Scheme) -> int:
    """The steps of a grid row: as many gradient evaluations as ``auto``'s AUTO_STEPS steps
    (a scheme with an inner solver of K steps: AUTO_STEPS / K outer steps), except for the
    schemes that solve a Gram system at every step (``natural``): their ``default_steps``."""
    inner = getattr(scheme, "inner", None)
    if inner is not None and getattr(inner, "steps", None):
        return max(1, AUTO_STEPS // int(inner.steps))
    if isinstance(scheme, schemes.Backtracking | schemes.Natural):
        return int(scheme.default_steps)
    return AUTO_STEPS


def grid_rows(scale: float | None = None, options: dict | None = None) -> list[FitRow]:
    """Every sample divergence with every scheme of :data:`GRID_SCHEMES` that suits it (a
    divergence without a loss value: ``explicit`` only); steps × ``scale`` when given;
    ``options``: further keyword arguments of :func:`~mongeflow.fit.fit`."""
    options = options or {}
    rows = []
    for div_name, divergence in sample_divergences().items():
        for scheme_name in GRID_SCHEMES:
            if scheme_name not in schemes.SCHEMES:
                continue
            if not divergence.loss_is_value and scheme_name != "explicit":
                continue
            scheme = schemes.SCHEMES[scheme_name]
            steps = grid_steps(scheme)
            if scale is not None:
                steps = max(1, round(steps * scale))
            name, label = f"{div_name}-{scheme_name}", f"{div_name} / {scheme_name}"
            rows.append(FitRow(name, label, scheme, divergence, steps, options))
        if not divergence.loss_is_value and "explicit" in schemes.SCHEMES:
            # a normalised velocity keeps its size at equilibrium: τ sets a step length
            scheme = schemes.get_scheme("explicit", tau=SMALL_TAU)
            steps = SMALL_TAU_STEPS if scale is None else max(1, round(SMALL_TAU_STEPS * scale))
            rows.append(
                FitRow(
                    f"{div_name}-explicit-small-tau",
                    f"{div_name} / explicit (τ = {SMALL_TAU:g})",
                    scheme,
                    divergence,
                    steps,
                    options,
                )
            )
    return rows


def method_names() -> list[str]:
    """What ``--methods`` accepts: the row groups, then ``DIVERGENCE-SCHEME`` rows."""
    return [*GROUPS, *(r.name for r in grid_rows())]


def missing_neural_dual() -> str | None:
    """Why the W2NeuralDual and Monge-gap rows cannot run (the ``bench`` extra is missing),
    or ``None``."""
    why = shared.missing_neural_dual()
    if why is None:
        return None
    return why.replace("the W2NeuralDual rows need", "the W2NeuralDual and Monge-gap rows need")


def missing_pot() -> str | None:
    """Why the linear row uses :func:`~mongeflow.metrics.linear_baseline` instead of POT."""
    if importlib.util.find_spec("ot") is None:
        return "POT is not installed (pip install pot)"
    return None


# --------------------------------------------------------------------------------------
# the training rows and their standardised coordinates


class _Rows(Source):
    """A source whose ``sample(key, n)`` is its first n rows, in order (no re-drawing): it
    hands a solver that asks for n samples the training rows themselves."""

    data: Array
    dim: int = eqx.field(static=True)

    def __init__(self, data):
        self.data, self.dim = jnp.asarray(data), int(data.shape[1])

    def sample(self, key: Array, n: int) -> Array:
        if n > self.data.shape[0]:
            raise ValueError(f"{n} samples asked of {self.data.shape[0]} rows")
        return self.data[:n]


class _TargetRows(Target):
    """The target counterpart of :class:`_Rows`."""

    data: Array
    dim: int = eqx.field(static=True)

    def __init__(self, data):
        self.data, self.dim = jnp.asarray(data), int(data.shape[1])

    @property
    def can_sample(self) -> bool:
        return True

    def sample(self, key: Array, n: int) -> Array:
        if n > self.data.shape[0]:
            raise ValueError(f"{n} samples asked of {self.data.shape[0]} rows")
        return self.data[:n]


@dataclasses.dataclass(frozen=True)
class Posed:
    """The problem's training rows in standardised coordinates, as :func:`~mongeflow.fit.fit`
    poses them (:func:`~mongeflow.problems.standardize`: z = (x − m0)/s and, when the target
    is standardised too, w = (y − m1)/s), and the way back to the data's units."""

    problem: Problem  # standardised rows, no shift recorded (a plain problem)
    standardiser: Standardiser

    @classmethod
    def of(cls, problem: Problem) -> Posed:
        standardiser = Standardiser.of(problem)
        posed = standardiser.pose(problem)
        plain = Problem(
            problem.name,
            EmpiricalSource(posed.source.data),
            EmpiricalTarget(posed.target.data),
            posed.true_map,
            validation=posed.validation,
            validation_target=posed.validation_target,
        )
        return cls(plain, Standardiser.posed(posed))

    def to_data(self, transport: Callable[[Array], Array]) -> Callable[[Array], Array]:
        """A map of standardised coordinates, z ↦ w, as a map of the data's units."""
        standardiser = self.standardiser

        def in_units(x: Array) -> Array:
            return standardiser.to_y(transport(standardiser.to_z(x)))

        return in_units


# --------------------------------------------------------------------------------------
# the rows


@dataclasses.dataclass(frozen=True)
class LinearRow:
    """``linear (Bures)`` from the training rows: POT's LinearTransport when ``use_pot`` and
    POT is installed (``None``: whenever POT is installed), else
    :func:`~mongeflow.metrics.linear_baseline` on the same rows."""

    use_pot: bool | None = None
    name: str = "linear"
    label: str = LINEAR
    kind: str = "baseline"

    def train(self, setting: Setting) -> Trained:
        problem = setting.problem
        x = np.asarray(problem.source.data, np.float64)
        y = np.asarray(problem.target.data, np.float64)
        dtype = problem.source.data.dtype
        use_pot = missing_pot() is None if self.use_pot is None else self.use_pot
        start = time.perf_counter()
        if use_pot:
            import ot

            linear = ot.da.LinearTransport().fit(Xs=x, Xt=y)
            A = jnp.asarray(linear.A_, dtype)
            b = jnp.asarray(np.ravel(linear.B_), dtype)
            transport = lambda z: z @ A + b[None, :]
            note = "POT's ot.da.LinearTransport on the training samples"
        else:
            rows_problem = Problem(problem.name, _Rows(x), _TargetRows(y))
            potential = linear_baseline(rows_problem, jax.random.key(0), n=x.shape[0])
            transport = jax.vmap(jax.grad(potential))
            why = missing_pot()
            note = "mongeflow.metrics.linear_baseline on the training samples" + (
                f" ({why})" if why else ""
            )
        wall = time.perf_counter() - start
        return Trained(transport, wall, note, {})


def rows(
    chosen: Sequence[str], *, quick: bool, seed: int, n_train: int, train_key: Array
) -> list[Row]:
    """The rows of ``chosen`` (:func:`method_names`) at one problem and d, in the table's
    order (W2NeuralDual, which reads ``auto``'s wall time, is trained last)."""
    scale = QUICK_SCALE if quick else None
    options = {"eval_size": int(min(2000, n_train))}
    auto_steps = max(1, round(AUTO_STEPS * scale)) if quick else None
    mlp_steps = max(1, round(AUTO_STEPS * scale)) if quick else AUTO_STEPS
    semidual_steps = max(1, round(schemes.SemiDual.default_steps * scale)) if quick else None
    groups: dict[str, Callable[[], Row]] = {
        "identity": IdentityRow,
        "linear": LinearRow,
        "entropic-map": lambda: EntropicRow(ENTROPIC_N),
        "neural-dual": lambda: NeuralDualRow(
            jax.random.fold_in(train_key, 1),
            quick=quick,
            batch=QUICK_BATCH if quick else ND_BATCH,
        ),
        "monge-gap": lambda: MongeGapRow(
            jax.random.fold_in(train_key, 2),
            iterations=QUICK_ITERS if quick else MG_ITERS,
            batch=QUICK_BATCH if quick else MG_BATCH,
        ),
        "drift-mlp": lambda: DriftMLPRow(mlp_steps),
        "auto": lambda: FitRow(AUTO, AUTO, None, None, auto_steps, options),
        "semidual": lambda: FitRow(
            "semidual", "semidual", "semidual", None, semidual_steps, options
        ),
    }
    out = [make() for group, make in groups.items() if group in chosen]
    return out + [r for r in grid_rows(scale, options) if r.name in chosen]


def _record(s: Scored) -> dict:
    return result(s, FIGURES, settings=True)


# --------------------------------------------------------------------------------------


def check_problem(name: str, n: int = 20) -> None:
    """Raise a clear ValueError unless ``name`` is a registered two-sample problem with a
    known map (source and target given by samples, held-out rows of both)."""
    try:
        p = get_problem(name, dim=2, n=n)
    except TypeError:
        raise ValueError(
            f"problem {name!r} is not a two-sample problem (it takes no sample count n); "
            "two-sample problems: dense-pair, gaussian-pair"
        ) from None
    ok = (
        isinstance(p.source, EmpiricalSource)
        and isinstance(p.target, EmpiricalTarget)
        and p.true_map is not None
        and p.validation is not None
        and p.validation_target is not None
    )
    if not ok:
        raise ValueError(
            f"problem {name!r} is not a two-sample problem with a known map and held-out "
            "rows of both sides"
        )


def setting_of(problem: Problem, *, seed: int, time_cap: float, held: HeldOut) -> Setting:
    """The two-sample setting: the library's fits get the problem without its held-out
    rows; the outside solvers its standardised training rows (:class:`Posed`), their maps
    brought back to the data's units (compiled, but a :class:`~mongeflow.bench.harness.Transport`,
    a map given by its values, which is applied as it is)."""
    train = Problem(problem.name, problem.source, problem.target, problem.true_map)
    posed = Posed.of(problem)

    def to_data(m):
        if isinstance(m, Transport):
            return posed.to_data(m)
        return jax.jit(posed.to_data(batch_of(m)))

    return Setting(
        train,
        posed=posed.problem,
        to_data=to_data,
        seed=seed,
        time_cap=time_cap,
        probe=held.probe,
    )


def run_twosample(
    out: str | Path | None = None,
    *,
    dims: Sequence[int] = DIMS,
    problems: Sequence[str] = PROBLEMS,
    methods_: Sequence[str] | None = None,
    time_cap: float = TIME_CAP,
    quick: bool = False,
    seed: int = 0,
    n: int = N_SAMPLES,
    progress: bool = True,
) -> dict:
    """Run the two-sample benchmark; write ``results.json``, ``table.md`` and a figure.

    Args:
        out: the output directory (``None``: write nothing, return the results).
        dims, problems: what to run (registered two-sample problems, :func:`check_problem`).
        methods_: the rows to run (:func:`method_names`; default all).
        time_cap: seconds after which W2NeuralDual's budgets and the Monge gap stop.
        quick: d = 2 only, :data:`QUICK_N` samples per side, 1/50 of every fit's and the
            drift MLP's steps, W2NeuralDual and the Monge gap for 3 iterations of 16 samples
            (tests the code path, measures nothing).
        seed: the problems' seed and every solver's.
        n: samples per side of each problem (10 % held out).

    Raises:
        ValueError: an unknown problem or method, a problem that is not two-sample, a
            non-positive time cap or too few samples.
        ImportError: W2NeuralDual or Monge-gap rows asked for without the ``bench`` extra.
    """
    names = method_names()
    chosen = list(names if methods_ is None else methods_)
    bad = [m for m in chosen if m not in names]
    if bad:
        raise ValueError(f"unknown method {bad[0]!r}; valid methods: {', '.join(names)}")
    if time_cap <= 0:
        raise ValueError(f"the time cap must be positive, got {time_cap}")
    for name in problems:
        check_problem(name)
    # a missing optional extra is reported after the request itself has been checked
    if {"neural-dual", "monge-gap"} & set(chosen) and (why := missing_neural_dual()):
        raise ImportError(why)
    if quick:
        dims, n = (2,), QUICK_N
    if int(n) < 20:
        raise ValueError(f"n must be ≥ 20 samples per side, got {n}")
    results: dict[str, Any] = {
        "machine": machine(),
        "quick": quick,
        "seed": seed,
        "n_samples": int(n),
        "validation": VALIDATION,
        "time_cap_s": time_cap,
        "runs": [],
    }

    def setup(name: str, d: int) -> Unit:
        problem = get_problem(name, dim=d, n=int(n), seed=seed, validation=VALIDATION)
        held = HeldOut.of(problem)
        n_train = int(problem.source.data.shape[0])
        train_key = jax.random.fold_in(jax.random.key(seed + 1000), 1)
        header = {
            "problem": name,
            "dim": d,
            "n_train": n_train,
            "n_eval": int(held.x.shape[0]),
            "target_variance": held.variance,
            "energy_distance_floor": held.floor,
        }
        unit_rows = rows(chosen, quick=quick, seed=seed, n_train=n_train, train_key=train_key)
        setting = setting_of(problem, seed=seed, time_cap=time_cap, held=held)
        return Unit(unit_rows, setting, held, header)

    def save(results: dict) -> None:
        write(out, results, twosample_table(results), {"l2_uvp_vs_dim.png": twosample_figure})

    units = [(name, d) for name in problems for d in dims]
    per_unit = len(rows(chosen, quick=quick, seed=seed, n_train=20, train_key=jax.random.key(0)))
    return run_units(
        results,
        units,
        setup,
        _record,
        rows_per_unit=per_unit,
        title="bench twosample",
        progress=progress,
        write=None if out is None else save,
    )


# --------------------------------------------------------------------------------------
# the table and the figure

#: the columns of each problem's and d's table
COLUMNS = (
    Column("method", lambda name, r: name),
    Column("L2-UVP %", lambda name, r: sig(r["l2_uvp"])),
    Column("cos", lambda name, r: sig(r["cosine"], 4)),
    Column("energy distance", lambda name, r: sig(r["energy_distance"])),
    Column("ED / floor", lambda name, r: sig(r["ed_over_floor"])),
    Column("wall time (s)", lambda name, r: f"{r['wall_time_s']:.1f}"),
    Column("notes", lambda name, r: r.get("note", "")),
)


def _lead(run: dict) -> str:
    return (
        f"{run['n_train']} training and {run['n_eval']} held-out samples per side; "
        f"two-sample floor of the energy distance {sig(run['energy_distance_floor'])}."
    )


def twosample_table(results: dict) -> str:
    """Markdown tables of ``results.json`` of ``bench twosample``: one per problem and d."""
    quick = " (--quick: tiny budgets, nothing is measured)" if results.get("quick") else ""
    return page(
        f"Two-sample problems with a known map: every method on the same samples{quick}",
        f"{machine_line(results['machine'])} Total {results['total_wall_time_s']:.0f} s.",
        f"{results['n_samples']} samples per side, {results['validation']:.0%} of them held "
        "out; every row is trained on the same training rows and scored on the same held-out "
        "rows. L2-UVP = 100 E|T − T*|² / Var(γ) on the held-out x (Var(γ) from the training "
        "target samples); cos = ⟨T − id, T* − id⟩ / (‖T − id‖ ‖T* − id‖) in L²(μ) (Korotin et "
        "al. 2021; — for T = id); energy distance between T(x) and the held-out y, and its "
        "ratio to the two-sample floor (1: indistinguishable from γ at these sizes); wall "
        "time: building the map, compilation included. W2NeuralDual and the Monge gap stop at "
        f"{results['time_cap_s']:g} s.",
        *run_sections(results, COLUMNS, _lead),
    )


#: the panels of the figure against d
PANELS = (
    Panel("l2_uvp", "L2-UVP % (held out)"),
    Panel("ed_over_floor", "energy distance / floor", reference=1.0),
)


def twosample_figure(results: dict, path: Path) -> None:
    """L2-UVP and the energy distance over its floor against d, a line per row, a row of
    panels per problem (from ``results.json``)."""
    figure_vs_dim(results, path, PANELS)
