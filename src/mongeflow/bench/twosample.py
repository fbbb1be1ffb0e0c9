"""Two-sample problems with a known Monge map: every method sees the same training samples.

``mongeflow bench twosample --out DIR`` runs ``dense-pair`` (x ~ μ, a Gaussian mixture, and
y = ∇ψ(x') for an independent x' ~ μ: T* = ∇ψ is known, but both sides are given only as
samples, as in Korotin et al., *Do neural optimal transport solvers work? A continuous
Wasserstein-2 benchmark*, NeurIPS 2021; ``gaussian-pair`` can be named with ``--problems``)
at d ∈ {2, 8, 16, 32, 64}, one seed, and writes ``DIR/results.json``, ``DIR/table.md`` (a
table per problem and d) and ``DIR/l2_uvp_vs_dim.png``.

The problem holds :data:`N_SAMPLES` points per side, 10 % of them held out. Every row is
trained on the same training rows (``problem.source.data``, ``problem.target.data``; the
entropic map on the first :data:`ENTROPIC_N` of them) and
scored on the same held-out rows (``problem.validation``: n points x, and
``problem.validation_target``: n points y), which no row sees while training. The columns:

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

The rows:

- ``identity``; ``linear (Bures)``: the affine Monge map between the Gaussians with the
  training samples' means and covariances, by POT's ``ot.da.LinearTransport`` (Flamary et
  al. 2021) when POT is installed, else :func:`mongeflow.metrics.linear_baseline` on the same
  rows (the note says which).
- ``entropic map (OTT)``: :func:`mongeflow.bench.maps.entropic_row` (OTT-JAX's entropic map
  at its default ε) on the first :data:`ENTROPIC_N` training rows of each side (the rows
  are in random order: a Sinkhorn solve on all 9 000 is several times slower).
- ``W2NeuralDual (...)``: :func:`mongeflow.bench.maps.neural_dual_rows`, OTT-JAX's neural dual
  with all its defaults, batches drawn from the training rows, at its default iterations,
  4 × those and ``auto``'s wall time, each capped at ``time_cap`` seconds.
- ``Monge gap (OTT)``: OTT-JAX's ``MongeGapEstimator`` (Uscidda & Cuturi, ICML 2023): an MLP
  map x ↦ x + MLP(x) (OTT's ``PotentialMLP(is_potential=False)``, hidden widths those of the
  library's default ICNN, GELU) minimising the Sinkhorn divergence to the target batch
  (ε = 0.1 × the mean cost of a target batch) plus 0.1 × the Monge gap for the squared
  Euclidean cost (ε = 0.01 × the mean source–target cost): the settings of OTT's Monge-gap
  tutorial, with the estimator's default optimiser (Adam, rate 10⁻³) and iterations
  (10 000), batches of 256, capped at ``time_cap`` seconds.
- ``drift MLP (unconstrained)``: :mod:`mongeflow.bench.drift_mlp`, the drifting-field
  regression of Deng et al. (2026) on x ↦ x + MLP(x), :data:`~mongeflow.auto.AUTO_STEPS`
  steps of 256. It pushes μ onto γ, but nothing makes it the OT map; compare it with
  ``drift / explicit``, the same field followed with T = ∇φ, φ convex.
- ``auto``: :func:`~mongeflow.fit.fit` with every default (the energy distance and Adam with
  a decaying rate, :func:`mongeflow.auto.choose`).
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
in standardised coordinates; each map is scored in the data's units. The library's fits are
scored through ``FitResult.map()`` (a :class:`~mongeflow.maps.MongeMap`). The entropic map
and W2NeuralDual run the training code of :mod:`mongeflow.bench.maps` unchanged; their
maps are handed over through its ``figures`` hooks and scored here (those rows compute
neither the cosine nor this benchmark's Var(γ)).

``--quick`` (for tests; it measures nothing): d = 2, :data:`QUICK_N` samples per side, 1/50
of every fit's steps and of the drift MLP's, W2NeuralDual for 3 and 12 iterations and the
Monge gap for 3, of 16 samples.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import math
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from mongeflow import schemes
from mongeflow.auto import AUTO_STEPS
from mongeflow.bench import maps as maps_bench
from mongeflow.bench.common import finite_or_none, machine, machine_line, markdown_table
from mongeflow.bench.drift_mlp import fit_drift_mlp
from mongeflow.divergences import DIVERGENCES, Divergence
from mongeflow.fit import FitWarning, fit
from mongeflow.maps.base import Array
from mongeflow.maps.default import auto_widths
from mongeflow.maps.monge import MongeMap
from mongeflow.metrics import energy_distance, energy_distance_floor, linear_baseline
from mongeflow.problems import EmpiricalSource, EmpiricalTarget, Problem, get_problem
from mongeflow.problems.base import Source, Target, standardize
from mongeflow.progress import ProgressBar
from mongeflow.schemes import Scheme
from mongeflow.settings import record

PROBLEMS = ("dense-pair",)
DIMS = (2, 8, 16, 32, 64)
#: points per side of each problem, of which VALIDATION are held out
N_SAMPLES = 10_000
VALIDATION = 0.1
#: seconds after which W2NeuralDual's budgets and the Monge gap stop
TIME_CAP = 300.0
#: training rows of each side in the entropic map's Sinkhorn solve (its cost grows as their
#: square: 9 000 rows took 200 s at d = 2 on a 2-core CPU)
ENTROPIC_N = maps_bench.N_TRAIN
#: the registered schemes of the divergence × scheme rows
GRID_SCHEMES = ("explicit", "implicit", "natural", "adam")
#: the extra explicit row of a divergence without a loss value (a normalised drift): its τ
#: and outer steps (inner steps as registered)
SMALL_TAU = 0.1
SMALL_TAU_STEPS = 40
#: the Monge-gap estimator's settings (OTT-JAX's Monge-gap tutorial; the estimator's default
#: iterations and optimiser)
MG_ITERS = 10_000
MG_BATCH = 256
MG_LEARNING_RATE = 1e-3
MG_RELATIVE_EPSILON_FITTING = 0.1
MG_RELATIVE_EPSILON_GAP = 0.01
MG_STRENGTH = 0.1
#: --quick: the fraction of every fit's steps, samples per side, tiny OTT budgets
QUICK_SCALE = 0.02
QUICK_N = 500
QUICK_ITERS = 3
QUICK_BATCH = 16

#: row groups that are not divergence × scheme rows, in the order of the table
GROUPS = ("identity", "linear", "entropic-map", "neural-dual", "monge-gap", "drift-mlp", "auto")
IDENTITY, LINEAR, ENTROPIC = "identity", "linear (Bures)", "entropic map (OTT)"
MONGE_GAP, DRIFT_MLP, AUTO = "Monge gap (OTT)", "drift MLP (unconstrained)", "auto"


# --------------------------------------------------------------------------------------
# which rows exist


@dataclasses.dataclass(frozen=True)
class GridRow:
    """One divergence × scheme row: its ``--methods`` name, table label and budget."""

    name: str
    label: str
    divergence: Divergence
    scheme: Scheme
    steps: int


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


def grid_rows(scale: float | None = None) -> list[GridRow]:
    """Every sample divergence with every scheme of :data:`GRID_SCHEMES` that suits it (a
    divergence without a loss value: ``explicit`` only); steps × ``scale`` when given."""
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
            rows.append(GridRow(name, label, divergence, scheme, steps))
        if not divergence.loss_is_value and "explicit" in schemes.SCHEMES:
            # a normalised velocity keeps its size at equilibrium: τ sets a step length
            scheme = schemes.get_scheme("explicit", tau=SMALL_TAU)
            steps = SMALL_TAU_STEPS if scale is None else max(1, round(SMALL_TAU_STEPS * scale))
            rows.append(
                GridRow(
                    f"{div_name}-explicit-small-tau",
                    f"{div_name} / explicit (τ = {SMALL_TAU:g})",
                    divergence,
                    scheme,
                    steps,
                )
            )
    return rows


def method_names() -> list[str]:
    """What ``--methods`` accepts: the row groups, then ``DIVERGENCE-SCHEME`` rows."""
    return [*GROUPS, *(r.name for r in grid_rows())]


def missing_neural_dual() -> str | None:
    """Why the W2NeuralDual and Monge-gap rows cannot run (the ``bench`` extra is missing),
    or ``None``."""
    why = maps_bench.missing_neural_dual()
    if why is None:
        return None
    return why.replace("the W2NeuralDual rows need", "the W2NeuralDual and Monge-gap rows need")


def missing_pot() -> str | None:
    """Why the linear row uses :func:`~mongeflow.metrics.linear_baseline` instead of POT."""
    if importlib.util.find_spec("ot") is None:
        return "POT is not installed (pip install pot)"
    return None


# --------------------------------------------------------------------------------------
# the samples and the scores


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
class HeldOut:
    """The held-out rows every map is scored on, with T* at them.

    Attributes:
        x: held-out source rows ``[n, d]``; ``true``: T*(x); ``y``: held-out target rows.
        variance: Var(γ), the trace of the training target samples' covariance.
        floor: the energy distance's two-sample floor for these sizes.
    """

    x: Array
    true: Array
    y: Array
    variance: float
    floor: float

    @classmethod
    def of(cls, problem: Problem) -> HeldOut:
        x, y = problem.validation, problem.validation_target
        true = jax.vmap(problem.true_map)(x)
        train_y = np.asarray(problem.target.data, np.float64)
        variance = float(np.sum(np.var(train_y, axis=0)))
        return cls(x, true, y, variance, float(energy_distance_floor(y, x.shape[0])))

    def score(self, transport: Callable[[Array], Array]) -> dict:
        """L2-UVP, cos, energy distance and its floor of the map ``transport`` (a batch
        ``[n, d]`` to ``[n, d]``, in the data's units)."""
        mapped = jnp.asarray(transport(self.x))
        return {**_scores(mapped, self.x, self.true, self.y, self.variance), "floor": self.floor}


def _scores(mapped: Array, x: Array, true: Array, y: Array, variance: float) -> dict:
    mapped, true = np.asarray(mapped, np.float64), np.asarray(true, np.float64)
    x = np.asarray(x, np.float64)
    l2 = np.mean(np.sum((mapped - true) ** 2, axis=1))
    move, true_move = mapped - x, true - x
    norm2, true_norm2 = np.mean(np.sum(move**2, axis=1)), np.mean(np.sum(true_move**2, axis=1))
    inner = np.mean(np.sum(move * true_move, axis=1))
    # T = id (or a map that moves nothing): the cosine is undefined
    defined = norm2 > 1e-12 * true_norm2 and true_norm2 > 0
    ed = float(energy_distance(jnp.asarray(mapped, y.dtype), y))
    return {
        "l2_uvp": finite_or_none(100.0 * l2 / variance),
        "cosine": finite_or_none(inner / math.sqrt(norm2 * true_norm2)) if defined else None,
        "energy_distance": finite_or_none(ed),
    }


def _row(kind: str, scores: dict, wall: float, note: str, settings: dict | None = None) -> dict:
    floor = scores["floor"]
    ed = scores["energy_distance"]
    return {
        "kind": kind,
        "l2_uvp": scores["l2_uvp"],
        "cosine": scores["cosine"],
        "energy_distance": ed,
        "energy_distance_floor": floor,
        "ed_over_floor": None if ed is None or not floor > 0 else ed / floor,
        "wall_time_s": wall,
        "settings": settings or {},
        "note": note,
    }


@dataclasses.dataclass(frozen=True)
class Posed:
    """The problem's training rows in standardised coordinates, as :func:`~mongeflow.fit.fit`
    poses them (:func:`~mongeflow.problems.standardize`: z = (x − m0)/s and, when the target
    is standardised too, w = (y − m1)/s), and the way back to the data's units."""

    problem: Problem  # standardised rows, no shift recorded (a plain problem)
    shift: Array
    scale: float
    target_shift: Array | None

    @classmethod
    def of(cls, problem: Problem) -> Posed:
        posed = standardize(problem)
        plain = Problem(
            problem.name,
            EmpiricalSource(posed.source.data),
            EmpiricalTarget(posed.target.data),
            posed.true_map,
            validation=posed.validation,
            validation_target=posed.validation_target,
        )
        target_shift = posed.target_shift
        return cls(plain, posed.shift, float(posed.scale), target_shift)

    def to_data(self, transport: Callable[[Array], Array]) -> Callable[[Array], Array]:
        """A map of standardised coordinates, z ↦ w, as a map of the data's units."""
        shift, scale, target_shift = self.shift, self.scale, self.target_shift

        def in_units(x: Array) -> Array:
            w = transport((x - shift[None, :]) / scale)
            return w if target_shift is None else target_shift[None, :] + scale * w

        return in_units


# --------------------------------------------------------------------------------------
# the rows


def baseline_rows(problem: Problem, held: HeldOut, use_pot: bool | None = None) -> dict:
    """``identity`` and ``linear (Bures)`` from the training rows (POT's LinearTransport when
    ``use_pot`` and POT is installed; ``None``: whenever POT is installed)."""
    rows = {IDENTITY: _row("baseline", held.score(lambda x: x), 0.0, "T = id")}
    x = np.asarray(problem.source.data, np.float64)
    y = np.asarray(problem.target.data, np.float64)
    use_pot = missing_pot() is None if use_pot is None else use_pot
    start = time.perf_counter()
    if use_pot:
        import ot

        linear = ot.da.LinearTransport().fit(Xs=x, Xt=y)
        A = jnp.asarray(linear.A_, held.x.dtype)
        b = jnp.asarray(np.ravel(linear.B_), held.x.dtype)
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
    rows[LINEAR] = _row("baseline", held.score(transport), wall, note)
    return rows


class _Capture:
    """Scoring hooks for :mod:`mongeflow.bench.maps`'s rows (their ``figures`` argument)
    that keep the maps, in order, to be scored here instead: those rows compute neither the
    cosine nor this benchmark's Var(γ)."""

    def __init__(self):
        self.maps: list = []

    def potential(self, problem, potential, key, n) -> dict:
        self.maps.append(jax.vmap(jax.grad(potential)))
        return {"l2_uvp": None, "energy_distance": None, "objective": None}

    def transport(self, problem, transport, key, n, one=None) -> dict:
        self.maps.append(transport)
        return {"l2_uvp": None, "energy_distance": None, "objective": None}


def entropic_row(posed: Posed, held: HeldOut) -> dict:
    """OTT-JAX's entropic map (:func:`mongeflow.bench.maps.entropic_row`) from the first
    :data:`ENTROPIC_N` training rows of each side, in standardised coordinates."""
    x, y = posed.problem.source.data, posed.problem.target.data
    rows_problem = Problem(posed.problem.name, _Rows(x), _TargetRows(y))
    n = int(min(x.shape[0], y.shape[0], ENTROPIC_N))
    captured = _Capture()
    row = maps_bench.entropic_row(
        rows_problem, jax.random.key(0), jax.random.key(1), n, 1, figures=captured.transport
    )
    transport = posed.to_data(captured.maps[-1])
    with jax.numpy_rank_promotion("allow"):  # OTT-JAX broadcasts implicitly
        scores = held.score(transport)
    return _row("outside", scores, row["wall_time_s"], row["note"], row["settings"])


def neural_dual_rows(
    posed: Posed,
    held: HeldOut,
    budgets: Sequence[maps_bench.Budget],
    *,
    key: Array,
    time_cap: float,
    batch: int,
) -> dict:
    """OTT-JAX's W2NeuralDual (:func:`mongeflow.bench.maps.neural_dual_rows`) on batches of
    the standardised training rows, its state at the end of each budget scored here."""
    n = int(held.x.shape[0])
    captured = _Capture()
    rows = maps_bench.neural_dual_rows(
        posed.problem,
        budgets,
        key=key,
        eval_key=key,
        n=n,
        time_cap=time_cap,
        batch=batch,
        figures=captured.potential,
    )
    out = {}
    for (label, row), transport in zip(rows.items(), captured.maps, strict=True):
        with jax.numpy_rank_promotion("allow"):  # OTT-JAX broadcasts implicitly
            scores = held.score(jax.jit(posed.to_data(transport)))
        out[label] = _row("outside", scores, row["wall_time_s"], row["note"], row["settings"])
    return out


def monge_gap_row(
    posed: Posed,
    held: HeldOut,
    *,
    key: Array,
    iterations: int = MG_ITERS,
    batch: int = MG_BATCH,
    time_cap: float = TIME_CAP,
) -> dict:
    """OTT-JAX's ``MongeGapEstimator`` (Uscidda & Cuturi 2023) with the settings of OTT's
    Monge-gap tutorial (see the module's docstring), trained on batches of the standardised
    training rows in compiled chunks (:func:`mongeflow.bench.maps.run_budgets`), stopped at
    ``iterations`` or ``time_cap`` seconds."""
    import optax
    from flax import linen as nn
    from ott.geometry import costs, pointcloud
    from ott.neural.methods.monge_gap import MongeGapEstimator, monge_gap_from_samples
    from ott.neural.networks.potentials import PotentialMLP
    from ott.tools import sinkhorn_divergence

    x_train, y_train = posed.problem.source.data, posed.problem.target.data
    dim = int(x_train.shape[1])
    k_init, k_train, k_scale = jax.random.split(key, 3)

    def draw(k, first):
        k_x, k_y = jax.random.split(jax.random.fold_in(k, first))
        xb = x_train[jax.random.randint(k_x, (batch,), 0, x_train.shape[0])]
        yb = y_train[jax.random.randint(k_y, (batch,), 0, y_train.shape[0])]
        return xb, yb

    widths = list(auto_widths(dim))
    with jax.numpy_rank_promotion("allow"):  # OTT-JAX broadcasts implicitly
        xb, yb = draw(k_scale, 0)
        eps_fit = MG_RELATIVE_EPSILON_FITTING * float(pointcloud.PointCloud(yb).mean_cost_matrix)
        eps_gap = MG_RELATIVE_EPSILON_GAP * float(pointcloud.PointCloud(xb, yb).mean_cost_matrix)

        def fitting_loss(mapped, target):
            div, out = sinkhorn_divergence.sinkdiv(mapped, target, epsilon=eps_fit, static_b=True)
            return div, None

        def regularizer(source, mapped):
            gap = monge_gap_from_samples(
                source, mapped, cost_fn=costs.SqEuclidean(), epsilon=eps_gap
            )
            return gap, None

        solver = MongeGapEstimator(
            dim_data=dim,
            model=PotentialMLP(dim_hidden=widths, is_potential=False, act_fn=nn.gelu),
            optimizer=optax.adam(MG_LEARNING_RATE),
            fitting_loss=fitting_loss,
            regularizer=regularizer,
            regularizer_strength=MG_STRENGTH,
            num_train_iters=max(iterations, 1),
            rng=k_init,
        )
    step_fn = solver.step_fn
    apply = solver.state_neural_net.apply_fn

    @jax.jit
    def chunk(state, first, count):
        def body(i, state):
            xb, yb = draw(k_train, first + i)
            state, _ = step_fn(state, {"source": xb, "target": yb}, None, False, first + i)
            return state

        return jax.lax.fori_loop(0, count, body, state)

    states = [solver.state_neural_net]

    def advance(first: int, count: int):
        states[-1] = jax.block_until_ready(chunk(states[-1], first, count))
        return states[-1].params

    def as_map(params):
        return posed.to_data(lambda z: apply({"params": params}, z))

    score_map = jax.jit(lambda params, x: as_map(params)(x))

    budget = maps_bench.Budget("default", iterations, None)
    with jax.numpy_rank_promotion("allow"):  # no curve: nothing is scored while training
        reached, _ = maps_bench.run_budgets(advance, lambda _: math.nan, [budget], time_cap)
    r = reached["default"]
    params = r["state"]
    with jax.numpy_rank_promotion("allow"):
        scores = held.score(lambda x: score_map(params, x))
    note = f"{r['iterations']} iterations"
    if r["capped"]:
        note = (
            f"stopped at the {time_cap:g} s cap after {r['iterations']} of {iterations} iterations"
        )
    settings = {
        "model": f"PotentialMLP(dim_hidden={widths}, is_potential=False, act_fn=gelu)",
        "optimizer": f"adam({MG_LEARNING_RATE:g})",
        "fitting_loss": f"sinkdiv, epsilon {eps_fit:.4g} ({MG_RELATIVE_EPSILON_FITTING:g} × "
        "the mean cost of a target batch)",
        "regularizer": f"monge gap, squared Euclidean cost, epsilon {eps_gap:.4g} "
        f"({MG_RELATIVE_EPSILON_GAP:g} × the mean source-target cost)",
        "regularizer_strength": MG_STRENGTH,
        "batch_size": batch,
        "iterations_budget": iterations,
        "iterations": r["iterations"],
        "time_cap_s": time_cap,
        "stopped_at_cap": r["capped"],
    }
    return _row("outside", scores, r["time"], note, settings)


def drift_mlp_row(posed: Posed, held: HeldOut, *, steps: int, seed: int) -> dict:
    """The unconstrained drifting baseline (:mod:`mongeflow.bench.drift_mlp`) on the
    standardised training rows."""
    res = fit_drift_mlp(
        posed.problem.source.data, posed.problem.target.data, steps=steps, seed=seed
    )
    transport = jax.jit(posed.to_data(res.map.transport))
    note = f"{res.steps} steps; x ↦ x + MLP(x), no convexity"
    return _row("unconstrained", held.score(transport), res.wall_time_s, note, res.settings)


@eqx.filter_jit
def _transport(m: MongeMap, x: Array) -> Array:
    return m.transport(x)


def fit_row(
    problem: Problem,
    held: HeldOut,
    scheme: Scheme | None,
    divergence: Divergence | None,
    steps: int | None,
    seed: int,
) -> dict:
    """One of the library's fits on the training rows (the problem without its held-out
    rows), scored through ``FitResult.map()``."""
    train = Problem(problem.name, problem.source, problem.target, problem.true_map)
    eval_size = int(min(2000, problem.source.data.shape[0]))
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", FitWarning)
        res = fit(
            train,
            scheme,
            divergence,
            steps=steps,
            seed=seed,
            eval_size=eval_size,
            final_eval_size=0,
        )
    wall = time.perf_counter() - start
    m = res.map()
    transport = lambda x: _transport(m, x)
    note = f"{res.last_step} of {res.steps} steps"
    if res.last_step < res.steps and res.early_stop is not None and int(res.early_stop[0]) >= 0:
        note += " (stopped early on a plateau)"
    if int(res.stopped_at[0]) >= 0:
        note += f" (stopped on a non-finite value at step {int(res.stopped_at[0])})"
    fit_warnings = sorted({str(w.message) for w in caught if issubclass(w.category, FitWarning)})
    for w in caught:  # the others go on to the caller
        if not issubclass(w.category, FitWarning):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    if fit_warnings:
        note += " (warned: see settings.warnings)"
    if res.linear_kept is not None and bool(res.linear_kept[0]):
        note += " (the linear map was kept: the trained map did not beat it)"
    history = {
        k: np.asarray(res.history[k])[:, 0].tolist()
        for k in ("time_s", "l2_uvp")
        if k in res.history
    }
    settings = {
        "scheme": record(res.scheme),
        "divergence": record(res.divergence),
        "steps": res.steps,
        "batch_size": res.batch_size,
        "last_step": res.last_step,
        "best_step": int(res.best_step[0]) if res.best_step is not None else None,
        "warnings": fit_warnings,
        "linear_kept": None if res.linear_kept is None else bool(res.linear_kept[0]),
        # the L2-UVP on training rows at each record (T* is never seen by the fit)
        "history": history,
    }
    return _row("library", held.score(transport), wall, note, settings)


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
    scale = QUICK_SCALE if quick else None
    grid = [r for r in grid_rows(scale) if r.name in chosen]
    auto_steps = max(1, round(AUTO_STEPS * scale)) if quick else None
    mlp_steps = max(1, round(AUTO_STEPS * scale)) if quick else AUTO_STEPS
    results: dict[str, Any] = {
        "machine": machine(),
        "quick": quick,
        "seed": seed,
        "n_samples": int(n),
        "validation": VALIDATION,
        "time_cap_s": time_cap,
        "runs": [],
    }
    total = time.perf_counter()
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
    units = [(name, d) for name in problems for d in dims]
    per_unit = len([g for g in GROUPS if g in chosen]) + len(grid)
    with ProgressBar(progress, len(units) * per_unit, "bench twosample") as bar:
        for name, d in units:
            problem = get_problem(name, dim=d, n=int(n), seed=seed, validation=VALIDATION)
            held = HeldOut.of(problem)
            posed = Posed.of(problem)
            train_key = jax.random.fold_in(jax.random.key(seed + 1000), 1)
            label = f"{name} d={d}"
            rows: dict[str, dict] = {}
            if "identity" in chosen or "linear" in chosen:
                bar.advance(0, f"{label} baselines")
                base = baseline_rows(problem, held)
                for group, row in (("identity", IDENTITY), ("linear", LINEAR)):
                    if group in chosen:
                        rows[row] = base[row]
                        bar.advance(1)
            if "entropic-map" in chosen:
                bar.advance(0, f"{label} entropic map")
                rows[ENTROPIC] = entropic_row(posed, held)
                bar.advance(1)
            ours: dict[str, dict] = {}
            if "auto" in chosen:
                bar.advance(0, f"{label} auto")
                ours[AUTO] = fit_row(problem, held, None, None, auto_steps, seed)
                bar.advance(1)
            if "neural-dual" in chosen:
                bar.advance(0, f"{label} W2NeuralDual")
                auto = ours.get(AUTO)
                budgets = maps_bench._neural_dual_budgets(
                    quick, auto["wall_time_s"] if auto else None
                )
                rows.update(
                    neural_dual_rows(
                        posed,
                        held,
                        budgets,
                        key=jax.random.fold_in(train_key, 1),
                        time_cap=time_cap,
                        batch=QUICK_BATCH if quick else maps_bench.ND_BATCH,
                    )
                )
                bar.advance(1)
            if "monge-gap" in chosen:
                bar.advance(0, f"{label} Monge gap")
                rows[MONGE_GAP] = monge_gap_row(
                    posed,
                    held,
                    key=jax.random.fold_in(train_key, 2),
                    iterations=QUICK_ITERS if quick else MG_ITERS,
                    batch=QUICK_BATCH if quick else MG_BATCH,
                    time_cap=time_cap,
                )
                bar.advance(1)
            if "drift-mlp" in chosen:
                bar.advance(0, f"{label} drift MLP")
                rows[DRIFT_MLP] = drift_mlp_row(posed, held, steps=mlp_steps, seed=seed)
                bar.advance(1)
            rows.update(ours)
            for row in grid:
                bar.advance(0, f"{label} {row.label}")
                rows[row.label] = fit_row(
                    problem, held, row.scheme, row.divergence, row.steps, seed
                )
                bar.advance(1)
            results["runs"].append(
                {
                    "problem": name,
                    "dim": d,
                    "n_train": int(problem.source.data.shape[0]),
                    "n_eval": int(held.x.shape[0]),
                    "target_variance": held.variance,
                    "energy_distance_floor": held.floor,
                    "methods": rows,
                }
            )
            results["total_wall_time_s"] = time.perf_counter() - total
            line = ", ".join(
                f"{k} {v['l2_uvp']:.3g}%" for k, v in rows.items() if v["l2_uvp"] is not None
            )
            bar.print(f"{label}: L2-UVP {line}")
            if out is not None:  # written after every problem and d: a long run keeps its part
                (out / "results.json").write_text(json.dumps(results, indent=1))
                (out / "table.md").write_text(twosample_table(results))
                twosample_figure(results, out / "l2_uvp_vs_dim.png")
    return results


# --------------------------------------------------------------------------------------
# the table and the figure


def _g(v, digits: int = 3) -> str:
    return "—" if v is None or not np.isfinite(v) else f"{v:.{digits}g}"


def twosample_table(results: dict) -> str:
    """Markdown tables of ``results.json`` of ``bench twosample``: one per problem and d."""
    header = [
        "method",
        "L2-UVP %",
        "cos",
        "energy distance",
        "ED / floor",
        "wall time (s)",
        "notes",
    ]
    quick = " (--quick: tiny budgets, nothing is measured)" if results.get("quick") else ""
    lines = [
        f"# Two-sample problems with a known map: every method on the same samples{quick}",
        "",
        f"{machine_line(results['machine'])} Total {results['total_wall_time_s']:.0f} s.",
        "",
        f"{results['n_samples']} samples per side, {results['validation']:.0%} of them held "
        "out; every row is trained on the same training rows and scored on the same held-out "
        "rows. L2-UVP = 100 E|T − T*|² / Var(γ) on the held-out x (Var(γ) from the training "
        "target samples); cos = ⟨T − id, T* − id⟩ / (‖T − id‖ ‖T* − id‖) in L²(μ) (Korotin et "
        "al. 2021; — for T = id); energy distance between T(x) and the held-out y, and its "
        "ratio to the two-sample floor (1: indistinguishable from γ at these sizes); wall "
        "time: building the map, compilation included. W2NeuralDual and the Monge gap stop at "
        f"{results['time_cap_s']:g} s.",
        "",
    ]
    for run in results["runs"]:
        rows = [
            [
                name,
                _g(r["l2_uvp"]),
                _g(r["cosine"], 4),
                _g(r["energy_distance"]),
                _g(r["ed_over_floor"]),
                f"{r['wall_time_s']:.1f}",
                r.get("note", ""),
            ]
            for name, r in run["methods"].items()
        ]
        lines += [
            f"## {run['problem']}, d = {run['dim']}",
            "",
            f"{run['n_train']} training and {run['n_eval']} held-out samples per side; "
            f"two-sample floor of the energy distance {_g(run['energy_distance_floor'])}.",
            "",
            *markdown_table(header, rows),
            "",
        ]
    return "\n".join(lines)


def twosample_figure(results: dict, path: Path) -> None:
    """L2-UVP and the energy distance over its floor against d, a line per row, a row of
    panels per problem (from ``results.json``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = results["runs"]
    problems = list(dict.fromkeys(r["problem"] for r in runs))
    names = list(dict.fromkeys(name for run in runs for name in run["methods"]))
    line_styles = ("-", "--", ":")
    styles = {
        name: {"color": f"C{i % 10}", "ls": line_styles[(i // 10) % 3], "label": name}
        for i, name in enumerate(names)
    }
    all_dims = sorted({r["dim"] for r in runs})
    fig, axes = plt.subplots(len(problems), 2, figsize=(10, 3.6 * len(problems)), squeeze=False)
    for row, problem in zip(axes, problems, strict=True):
        mine = sorted((r for r in runs if r["problem"] == problem), key=lambda r: r["dim"])
        for name in names:
            for ax, key in zip(row, ("l2_uvp", "ed_over_floor"), strict=True):
                pts = [
                    (r["dim"], r["methods"][name][key])
                    for r in mine
                    if name in r["methods"] and r["methods"][name][key] is not None
                ]
                if pts:
                    dims, vals = zip(*pts, strict=True)
                    ax.plot(dims, np.maximum(vals, 1e-6), marker="o", ms=3, lw=1, **styles[name])
        for ax, ylabel in zip(row, ("L2-UVP % (held out)", "energy distance / floor"), strict=True):
            ax.set_xscale("log", base=2)
            ax.set_xticks(all_dims, [str(d) for d in all_dims])
            ax.minorticks_off()
            ax.set_yscale("log")
            ax.set_xlabel("d", fontsize=8)
            ax.set_ylabel(ylabel, fontsize=8)
            ax.set_title(problem, fontsize=9)
            ax.tick_params(labelsize=7)
        row[1].axhline(1.0, color="gray", lw=0.6, ls="--")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.tight_layout()
    fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=7)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
