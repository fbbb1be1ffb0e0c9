"""The benchmarks' harness: rows trained on a posed problem and scored on held-out samples.

Every benchmark (:mod:`~mongeflow.bench.paper`, :mod:`~mongeflow.bench.maps`,
:mod:`~mongeflow.bench.twosample`, :mod:`~mongeflow.bench.w2`) is a list of rows over this
module and a small driver:

- a *row* (:class:`Row`) is a value with a ``name`` (what ``--methods`` calls it), a table
  ``label``, a ``kind`` and ``train(setting)``: it trains within its own budget on what the
  :class:`Setting` poses and returns a :class:`Trained` map (a
  :class:`~mongeflow.maps.MongeMap`, a potential φ with T = ∇φ, a :class:`Transport` or any
  callable ``[n, d] → [n, d]``; in the data's units, or in the posed coordinates when
  ``Trained.posed``), or one per checkpoint of a single training run;
- :func:`score` is the one scoring function: every figure the :class:`HeldOut` samples allow
  (L2-UVP and the cosine against a true map, the energy distance with its two-sample floor,
  the objective F against a target potential, a posterior's moment errors, the per-seed
  energy distance of the paper's table);
- :func:`run_budgets` is the one time-budget loop (compiled chunks of iterations, a
  checkpoint at every budget's end) and :func:`time_to` the time at which a recorded curve
  reaches a level;
- :func:`train_and_score` runs a list of rows on one problem, :func:`result` makes a row of
  ``results.json`` and :func:`run_units` drives a benchmark over problems × dimensions.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Protocol

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from mongeflow.divergences import KL
from mongeflow.maps.base import Array, Potential, log_det, transport
from mongeflow.maps.monge import MongeMap
from mongeflow.metrics import (
    energy_distance,
    energy_distance_floor,
    l2_uvp,
    source_with_map,
    target_samples,
    target_variance,
)
from mongeflow.problems import Problem
from mongeflow.problems.posterior import posterior_errors, reference_for
from mongeflow.progress import ProgressBar

#: the longest a compiled chunk of iterations runs between two clock readings
CHUNK_SECONDS = 2.0


def finite_or_none(v) -> float | None:
    """``float(v)``, or ``None`` (JSON's null) when it is NaN or infinite."""
    v = float(v)
    return v if math.isfinite(v) else None


# --------------------------------------------------------------------------------------
# maps


@dataclasses.dataclass(frozen=True)
class Transport:
    """A map given by its values rather than by a potential.

    Attributes:
        batch: x ↦ T(x) on a batch, ``[n, d] → [n, d]``.
        point: x ↦ T(x) on one point, ``[d] → [d]``: DT by forward-mode differentiation,
            for the objective F (``None``: F is not computed).
    """

    batch: Callable[[Array], Array]
    point: Callable[[Array], Array] | None = None

    def __call__(self, x: Array) -> Array:
        return self.batch(x)


#: what a row's training returns: a MongeMap, a potential φ (T = ∇φ), a :class:`Transport`
#: or a callable on batches
Map = MongeMap | Potential | Transport | Callable[[Array], Array]


@eqx.filter_jit
def _monge_transport(m: MongeMap, x: Array) -> Array:
    return m.transport(x)


@eqx.filter_jit
def _gradient(potential: Potential, x: Array) -> Array:
    return transport(potential, x)


def batch_of(m: Map) -> Callable[[Array], Array]:
    """x ↦ T(x) on a batch ``[n, d]`` for any :data:`Map` (compiled for a MongeMap or a
    potential; a callable as it is)."""
    if isinstance(m, MongeMap):
        return lambda x: _monge_transport(m, x)
    if isinstance(m, Potential):
        return lambda x: _gradient(m, x)
    return m


def allowing_rank_promotion(f: Callable) -> Callable:
    """``f`` called with implicit rank promotion allowed (OTT-JAX broadcasts implicitly)."""

    def call(*args):
        with jax.numpy_rank_promotion("allow"):
            return f(*args)

    return call


# --------------------------------------------------------------------------------------
# the held-out samples and the one scoring function


class SeedEnergyDistance:
    """Energy distance of T#μ0 against γ for each seed, on that seed's fresh samples.

    Seed ``i`` is scored on ``n`` samples of μ0 and ``n`` of γ drawn from the ``i``-th key of
    ``split(key(20260325), seeds)``; the samples depend only on the seed (and ``n``), so
    every method is scored on the same ones. Each score is
    :func:`mongeflow.metrics.energy_distance` (the V-statistic
    2 E|X − Y| − E|X − X'| − E|Y − Y'| of Székely & Rizzo 2013), the target's term included:
    nothing is shared between methods. Seeds are scored one after another (``lax.map``): for
    10⁴ × 10⁴ distances the batched products of ``vmap`` are slower on CPU than sequential
    ones.

    Args:
        problem: the problem (its source and target are sampled).
        seeds: how many seeds the potentials to score are stacked over.
        n: samples of each side per seed (the paper: 10⁴).

    Example:
        >>> import equinox as eqx, jax, mongeflow as mf
        >>> problem = mf.get_problem("paper-gmm")
        >>> make = lambda key: mf.ICNN(2, key)
        >>> potentials = eqx.filter_vmap(make)(jax.random.split(jax.random.key(0), 2))
        >>> SeedEnergyDistance(problem, seeds=2, n=200)(potentials).shape
        (2,)
    """

    def __init__(self, problem: Problem, seeds: int, n: int):
        self.problem = problem
        self.keys = jax.random.split(jax.random.key(20260325), seeds)
        self.n = int(n)

    def __call__(self, potentials: Potential) -> np.ndarray:
        """``[S]``, the energy distance of each of the stacked ``potentials``."""
        return np.asarray(_seed_scores(self.problem, potentials, self.keys, self.n), float)


@eqx.filter_jit
def _seed_scores(problem: Problem, potentials: Potential, keys: Array, n: int) -> Array:
    params, static = eqx.partition(potentials, eqx.is_array)

    def one(args):
        p, key = args
        x = problem.source.sample(jax.random.fold_in(key, 0), n)
        y = problem.target.sample(jax.random.fold_in(key, 1), n)
        return energy_distance(transport(eqx.combine(p, static), x), y)

    return jax.lax.map(one, (params, keys))


@eqx.filter_jit
def _draw(problem: Problem, key: Array, n: int):
    k_src, k_tgt, k_var = jax.random.split(key, 3)  # as metrics.evaluate splits it
    x, true = source_with_map(problem, k_src, n)
    y = target_samples(problem, k_tgt, n) if problem.target.can_sample else None
    variance = None if true is None else target_variance(problem, k_var)
    return x, true, y, variance


@dataclasses.dataclass(frozen=True)
class HeldOut:
    """The held-out samples every row of a benchmark is scored on; what is ``None`` is not
    scored.

    Attributes:
        x: held-out source points ``[n, d]``, in the data's units.
        true: T*(x), when the true map is known.
        variance: Var(γ), the trace of γ's covariance (the L2-UVP's denominator).
        y: held-out target samples (the energy distance).
        floor: the energy distance's two-sample floor for these sizes.
        problem: the problem whose target potential V gives the objective F.
        reference: a posterior's MCMC moments (:func:`~mongeflow.problems.posterior.reference_for`).
        seeds: per-seed fresh samples (the paper's table: the map is a stack of potentials).
    """

    x: Array | None = None
    true: Array | None = None
    variance: float | None = None
    y: Array | None = None
    floor: float | None = None
    problem: Problem | None = None
    reference: dict | None = None
    seeds: SeedEnergyDistance | None = None

    @classmethod
    def of(cls, problem: Problem) -> HeldOut:
        """A two-sample problem's held-out rows (``validation``, ``validation_target``),
        T* at them, Var(γ) of the training target rows and the two-sample floor."""
        x, y = problem.validation, problem.validation_target
        true = jax.vmap(problem.true_map)(x)
        train_y = np.asarray(problem.target.data, np.float64)
        variance = float(np.sum(np.var(train_y, axis=0)))
        floor = float(energy_distance_floor(y, x.shape[0]))
        return cls(x, true, variance, y, floor)

    @classmethod
    def drawn(cls, problem: Problem, key: Array, n: int) -> HeldOut:
        """``n`` samples of each side drawn from ``key`` as
        :func:`~mongeflow.metrics.evaluate` draws them (exact pairs (x, T*(x)) where the
        source has them; the problem's held-out rows when it holds some), Var(γ), the target
        potential for F and a posterior's reference when one is shipped."""
        x, true, y, variance = _draw(problem, key, int(n))
        return cls(
            x,
            true,
            None if variance is None else float(variance),
            y,
            problem=problem if problem.target.has_potential else None,
            reference=reference_for(problem),
        )

    @classmethod
    def per_seed(cls, problem: Problem, seeds: int, n: int) -> HeldOut:
        """Fresh samples of each side for each seed (:class:`SeedEnergyDistance`)."""
        return cls(seeds=SeedEnergyDistance(problem, seeds, n))

    def score(self, m: Map) -> dict[str, Any]:
        """:func:`score` of ``m`` on these samples."""
        return score(m, self)

    def probe(self, map_of: Callable[[Any], Map]) -> Callable[[Any], float]:
        """``state ↦`` the L2-UVP of ``map_of(state)`` on the held-out pairs, compiled once
        (a curve's points while a row trains; NaN when T* is unknown)."""
        x, true, variance = self.x, self.true, self.variance
        if true is None or variance is None:
            return lambda state: math.nan

        @jax.jit
        def value(state):
            return l2_uvp(batch_of(map_of(state))(x), true, variance)

        return lambda state: float(value(state))


def _cosine(move: np.ndarray, true_move: np.ndarray) -> float | None:
    norm2 = np.mean(np.sum(move**2, axis=1))
    true_norm2 = np.mean(np.sum(true_move**2, axis=1))
    inner = np.mean(np.sum(move * true_move, axis=1))
    # T = id (or a map that moves nothing): the cosine is undefined
    if not (norm2 > 1e-12 * true_norm2 and true_norm2 > 0):
        return None
    return finite_or_none(inner / math.sqrt(norm2 * true_norm2))


@eqx.filter_jit
def _potential_objective(potential: Potential, x: Array, problem: Problem) -> Array:
    return KL().objective(potential, x, problem)


def _objective(m: Map, x: Array, mapped: Array, problem: Problem) -> float | None:
    if isinstance(m, Potential):
        return finite_or_none(_potential_objective(m, x, problem))
    if isinstance(m, Transport) and m.point is not None:
        point = m.point

        @jax.jit
        def objective(x, mapped):
            logdet = jax.lax.map(lambda xi: log_det(jax.jacfwd(point)(xi)), x, batch_size=16)
            return jnp.mean(jax.vmap(problem.target.potential)(mapped)) - jnp.mean(logdet)

        return finite_or_none(objective(x, mapped))
    return None


def score(m: Map, held: HeldOut) -> dict[str, Any]:
    """Every figure of the map ``m`` (in the data's units) that ``held`` allows:

    - ``l2_uvp`` = 100 mean_i |T(x_i) − T*(x_i)|² / Var(γ), in percent, and ``cosine`` =
      ⟨T − id, T* − id⟩ / (‖T − id‖ ‖T* − id‖) in L²(μ) (both from Korotin et al. 2021,
      *Do neural optimal transport solvers work?*; the cosine is ``None`` for T = id), when
      T* is known (in float64);
    - ``energy_distance`` between T(x) and the held-out y
      (:func:`~mongeflow.metrics.energy_distance`), and with a two-sample floor
      (:func:`~mongeflow.metrics.energy_distance_floor`) ``energy_distance_floor`` and
      ``ed_over_floor``;
    - ``objective`` F = mean V(T(x)) − mean log det DT(x) when γ has a potential and DT is
      known (a potential, or a :class:`Transport` with its ``point`` form): up to a constant
      KL(T#μ0 ‖ γ), the figure every scheme minimises;
    - ``posterior_mean_error``, ``posterior_sd_error`` and their noise levels against a
      posterior's reference (:func:`~mongeflow.problems.posterior.posterior_errors`);
    - with per-seed samples, ``energy_distance`` ``[S]`` of a stack of potentials.

    Non-finite figures are ``None``.

    Example:
        >>> import jax, mongeflow as mf
        >>> problem = mf.get_problem("dense-pair", dim=2, n=200)
        >>> held = HeldOut.of(problem)
        >>> score(jax.vmap(problem.true_map), held)["l2_uvp"]
        0.0
    """
    if held.seeds is not None:
        return {"energy_distance": held.seeds(m)}
    mapped = jnp.asarray(batch_of(m)(held.x))
    out: dict[str, Any] = {}
    mapped64 = np.asarray(mapped, np.float64)
    if held.true is not None:
        x64, true64 = np.asarray(held.x, np.float64), np.asarray(held.true, np.float64)
        if held.variance is not None:
            l2 = np.mean(np.sum((mapped64 - true64) ** 2, axis=1))
            out["l2_uvp"] = finite_or_none(100.0 * l2 / held.variance)
        out["cosine"] = _cosine(mapped64 - x64, true64 - x64)
    if held.y is not None:
        ed = finite_or_none(energy_distance(jnp.asarray(mapped, held.y.dtype), held.y))
        out["energy_distance"] = ed
        if held.floor is not None:
            out["energy_distance_floor"] = held.floor
            out["ed_over_floor"] = None if ed is None or not held.floor > 0 else ed / held.floor
    if held.problem is not None and held.problem.target.has_potential:
        out["objective"] = _objective(m, held.x, mapped, held.problem)
    if held.reference is not None:
        errors = posterior_errors(mapped64, held.reference)
        out["posterior_mean_error"] = errors["mean_error"]
        out["posterior_sd_error"] = errors["sd_error"]
        out["posterior_mean_noise"] = errors["mean_noise_max"]
        out["posterior_sd_noise"] = errors["sd_noise_max"]
    return out


# --------------------------------------------------------------------------------------
# the one time-budget loop


@dataclasses.dataclass(frozen=True)
class Budget:
    """When a training run stops: after ``iterations``, or after ``seconds`` of training,
    whichever comes first (``None``: no such limit); in any case at the time cap."""

    name: str
    iterations: int | None = None
    seconds: float | None = None


def run_budgets(
    advance: Callable[[int, int], Any],
    score: Callable[[Any], float],
    budgets: Sequence[Budget],
    time_cap: float = math.inf,
    clock: Callable[[], float] = time.perf_counter,
    chunk_seconds: float = CHUNK_SECONDS,
) -> tuple[dict[str, dict], dict[str, list]]:
    """Train in chunks until every budget has ended; what each budget ends with.

    ``advance(first, count)`` runs iterations ``first … first + count − 1`` (and waits for
    them), returning the state after them; ``score(state)`` gives a point of the curve (off
    the clock). The first chunk is one iteration (it compiles); later chunks last at most
    ``chunk_seconds`` and end at every budget's end (its iterations exactly, its seconds to
    within half an iteration). A budget still running after ``time_cap`` seconds stops there
    (``capped``).

    Returns:
        Per budget name: ``state``, ``iterations``, ``time`` (seconds of training),
        ``capped`` and ``points`` (how much of the curve is its); and the curve
        (``time_s``, ``value``: the scores).
    """
    iteration, elapsed, per_step = 0, 0.0, None
    curve: dict[str, list] = {"time_s": [], "value": []}
    reached: dict[str, dict] = {}
    while len(reached) < len(budgets):
        pending = [b for b in budgets if b.name not in reached]
        count = min((b.iterations - iteration for b in pending if b.iterations), default=None)
        if per_step is None:
            count = 1  # the first chunk compiles; it measures nothing
        else:
            seconds = min([b.seconds for b in pending if b.seconds] + [time_cap]) - elapsed
            by_time = max(1, round(min(seconds, chunk_seconds) / max(per_step, 1e-9)))
            count = by_time if count is None else min(count, by_time)
        tic = clock()
        state = advance(iteration, count)
        took = clock() - tic
        elapsed += took
        iteration += count
        per_step = took / count
        curve["time_s"].append(elapsed)
        curve["value"].append(score(state))
        capped = elapsed >= time_cap
        for b in pending:
            done_iterations = b.iterations is not None and iteration >= b.iterations
            done_time = b.seconds is not None and elapsed >= b.seconds - 0.5 * per_step
            if done_iterations or done_time or capped:
                reached[b.name] = {
                    "state": state,
                    "iterations": iteration,
                    "time": elapsed,
                    "capped": capped and not (done_iterations or done_time),
                    "points": len(curve["time_s"]),
                }
    return reached, curve


def time_to(times: Sequence[float], values: Sequence[float], level: float) -> float | None:
    """The first time at which ``values`` is finite and ≤ ``level``, or ``None`` if never.

    Example:
        >>> time_to([1.0, 2.0, 3.0], [5.0, 0.9, 0.5], 1.0)
        2.0
    """
    for t, v in zip(times, values, strict=True):
        if np.isfinite(v) and v <= level:
            return float(t)
    return None


def level_key(level: float) -> str:
    """The ``results.json`` key of the time to ``level`` % L2-UVP."""
    return f"time_to_{level:g}pct_s"


# --------------------------------------------------------------------------------------
# rows


@dataclasses.dataclass(frozen=True)
class Trained:
    """What a row's training gives.

    Attributes:
        map: the map (:data:`Map`).
        wall_time_s: the time to build it (training, compilation included).
        note: the table's note.
        settings: the settings, for ``results.json`` (``None``: no ``settings`` key).
        curve: L2-UVP while training, ``{"time_s": [...], "l2_uvp": [...]}`` (the "time to"
            columns; drawn unless ``show_curve`` is false).
        show_curve: whether ``results.json`` keeps the curve (one training run with several
            checkpoints keeps it once).
        posed: the map is in the setting's posed coordinates (``Setting.to_data`` brings it
            back to the data's units), not in the data's units.
        extra: further keys of the row in ``results.json``.
        source: what the training returned (a :class:`~mongeflow.fit.FitResult`), for figures.
    """

    map: Any
    wall_time_s: float
    note: str = ""
    settings: dict | None = None
    curve: dict[str, list] | None = None
    show_curve: bool = True
    posed: bool = False
    extra: dict = dataclasses.field(default_factory=dict)
    source: Any = None


def _same(m: Map) -> Map:
    return m


@dataclasses.dataclass(frozen=True)
class Setting:
    """What a row trains on: a problem posed for it, and how its map comes back.

    Attributes:
        problem: the problem in the data's units as the library's fits are given it (with
            no held-out rows).
        posed: the problem the outside solvers train on (default ``problem``): its
            coordinates are the posed coordinates.
        to_data: a map in the posed coordinates → the same map in the data's units.
        seed: the seed of every solver (a list: seeds trained together).
        time_cap: seconds after which a time-capped training stops.
        probe: ``map_of ↦ (state ↦ L2-UVP)`` on held-out pairs (:meth:`HeldOut.probe`), for
            the curves of rows trained in chunks; ``None``: no curve.
        done: the rows trained before in this setting, by label (``auto``'s wall time sets a
            budget of W2NeuralDual).
    """

    problem: Problem
    posed: Any = None
    to_data: Callable[[Map], Map] = _same
    seed: int | list[int] = 0
    time_cap: float = math.inf
    probe: Callable[[Callable[[Any], Map]], Callable[[Any], float]] | None = None
    done: dict[str, Trained] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        if self.posed is None:
            object.__setattr__(self, "posed", self.problem)

    def curve_scorer(self, posed_map_of: Callable[[Any], Map]) -> Callable[[Any], float]:
        """``state ↦`` the held-out L2-UVP of ``posed_map_of(state)`` (a map in the posed
        coordinates), or NaN without a probe."""
        if self.probe is None:
            return lambda state: math.nan
        return self.probe(lambda state: self.to_data(posed_map_of(state)))


class Row(Protocol):
    """A row of a benchmark's table.

    ``name`` is what ``--methods`` calls it, ``label`` its name in the table, ``kind`` one of
    ``baseline``, ``outside``, ``library``, ``unconstrained`` (or the paper's ``faithful``);
    ``after`` names rows whose results it reads (it is trained after them). ``train`` runs
    within the row's own budget (steps, iterations, seconds) and the setting's time cap, and
    returns the map, or one per checkpoint by table label.
    """

    name: str
    label: str
    kind: str

    def train(self, setting: Setting) -> Trained | Mapping[str, Trained]: ...


@dataclasses.dataclass(frozen=True)
class Scored:
    """A trained map scored: its row, table label, training and :func:`score` figures."""

    row: Row
    label: str
    trained: Trained
    scores: dict
    scoring_time_s: float


def train_and_score(
    rows: Sequence[Row],
    setting: Setting,
    held: HeldOut,
    *,
    bar: ProgressBar | None = None,
    where: str = "",
) -> Iterator[Scored]:
    """Train each row on ``setting`` and score its map(s) on ``held``, yielding each as it
    is scored. Rows with a non-empty ``after`` run after the others (in their order)."""
    order = sorted(rows, key=lambda r: bool(getattr(r, "after", ())))
    for row in order:
        if bar is not None:
            bar.advance(0, f"{where} {row.label}".strip())
        trained = row.train(setting)
        items = trained.items() if isinstance(trained, Mapping) else [(row.label, trained)]
        for label, t in items:
            m = setting.to_data(t.map) if t.posed else t.map
            start = time.perf_counter()
            scores = score(m, held)
            setting.done[label] = t
            yield Scored(row, label, t, scores, time.perf_counter() - start)
        if bar is not None:
            bar.advance(1)


def in_row_order(rows: Sequence[Row], scored: Sequence[Scored]) -> list[Scored]:
    """``scored`` in the order of ``rows`` (a row's checkpoints in the order given)."""
    position = {id(r): i for i, r in enumerate(rows)}
    return sorted(scored, key=lambda s: position[id(s.row)])


def result(
    s: Scored,
    figures: Sequence[str],
    *,
    levels: Sequence[float] = (),
    curves: bool = False,
    settings: bool = False,
) -> dict:
    """A row of ``results.json``: ``kind``, the ``figures`` of :func:`score` (``None`` when
    not computed), ``wall_time_s``, the time to each of ``levels`` % L2-UVP on the row's
    curve, ``settings`` (always when ``settings``, else when the row has some), ``note``, the
    training's extra keys, and its curve when ``curves``."""
    t = s.trained
    row: dict[str, Any] = {"kind": s.row.kind}
    row.update({k: s.scores.get(k) for k in figures})
    row["wall_time_s"] = t.wall_time_s
    if levels and t.curve is not None:
        times, values = t.curve["time_s"], t.curve["l2_uvp"]
        row.update({level_key(level): time_to(times, values, level) for level in levels})
    if settings or t.settings is not None:
        row["settings"] = t.settings or {}
    row["note"] = t.note
    row.update(t.extra)
    if curves and t.curve is not None and t.show_curve:
        row["curve"] = {
            "time_s": list(t.curve["time_s"]),
            "l2_uvp": [finite_or_none(v) for v in t.curve["l2_uvp"]],  # NaN → null
        }
    return row


@dataclasses.dataclass(frozen=True)
class Unit:
    """One problem at one d: its rows, setting, held-out samples and the ``results.json``
    keys of its run (``problem``, ``dim`` and the benchmark's own)."""

    rows: Sequence[Row]
    setting: Setting
    held: HeldOut
    header: dict


def run_units(
    results: dict,
    units: Sequence[tuple[str, int]],
    setup: Callable[[str, int], Unit],
    record: Callable[[Scored], dict],
    *,
    rows_per_unit: int,
    title: str,
    progress: bool,
    write: Callable[[dict], None] | None,
) -> dict:
    """Run a benchmark over problems × dimensions: for each ``(name, d)`` of ``units``,
    ``setup`` poses it, its rows are trained and scored (:func:`train_and_score`), each
    recorded by ``record``, in the rows' order, into ``results["runs"]``; after each unit the
    L2-UVP of its rows is printed and ``write`` (if given) writes what there is so far (a long
    run keeps its part)."""
    total = time.perf_counter()
    results.setdefault("runs", [])
    with ProgressBar(progress, len(units) * rows_per_unit, title) as bar:
        for name, d in units:
            unit = setup(name, d)
            label = f"{name} d={d}"
            scored = list(train_and_score(unit.rows, unit.setting, unit.held, bar=bar, where=label))
            methods = {s.label: record(s) for s in in_row_order(unit.rows, scored)}
            results["runs"].append({**unit.header, "methods": methods})
            results["total_wall_time_s"] = time.perf_counter() - total
            line = ", ".join(
                f"{k} {v['l2_uvp']:.3g}%" for k, v in methods.items() if v["l2_uvp"] is not None
            )
            bar.print(f"{label}: L2-UVP {line}")
            if write is not None:
                write(results)
    return results
