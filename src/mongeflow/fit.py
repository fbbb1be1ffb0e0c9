"""The driver: compiled chunks of steps (``vmap`` over seeds), callbacks between chunks."""

from __future__ import annotations

import dataclasses
import functools
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any, Literal, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from mongeflow.auto import (
    AUTO_BATCH,
    AUTO_PATIENCE,
    choose,
    choose_divergence,
    configure_divergence,
)
from mongeflow.divergences import Divergence, Task
from mongeflow.maps.base import Array, Potential, log_det_hessian, transport
from mongeflow.maps.default import default_potential
from mongeflow.maps.monge import MongeMap
from mongeflow.metrics import (
    energy_distance,
    energy_distance_floor,
    evaluate,
    l2_uvp,
    linear_baseline,
    posterior_figures,
    source_with_map,
    target_samples,
    target_variance,
)
from mongeflow.problems import Problem, get_problem
from mongeflow.problems.base import standardize as standardize_problem
from mongeflow.schemes import Scheme


@dataclasses.dataclass(frozen=True)
class Run:
    """What a fit is doing, as its callbacks see it."""

    problem: Problem
    scheme: Scheme
    divergence: Divergence
    seeds: tuple[int, ...]
    steps: int
    batch_size: int
    log_every: int

    @property
    def label(self) -> str:
        return f"{self.scheme.name} on {self.problem.name}"


class FitState(NamedTuple):
    """The driver's state between two chunks of steps.

    Attributes:
        potentials, states: per seed (leading axis), the current potential and scheme state.
        alive: ``[S]``, whether each seed is still running (False once it hit a non-finite
            loss or map, or its map ran off (see :func:`fit`); it then keeps its last map
            whose loss was finite, or its last recorded map within the bound on |T(x)|).
        step: steps done.
        stopped_at: ``[S]``, the step at which each seed stopped, or −1.
        history: lists, one entry per record: ``step`` and, each ``[S]``, ``loss``,
            ``objective``, ``time_s`` and the evaluation metrics.
        best: per seed, the potential with the best validation figure so far (see
            :func:`fit`'s ``keep_best``), or ``None`` before the first evaluation.
        best_value, best_step: ``[S]``, the lowest validation figure so far and the step
            of ``best`` (for the energy distance, the latest map within its noise floor of
            that lowest figure; else the map of the lowest figure).
        early_stop: ``[S]``, the step at which each seed stopped improving, or −1.
        stop_reason: per seed, why it stopped (see ``FitResult.stop_reason``), or ``None``
            (running, plateaued, or not yet told: a seed with ``stopped_at ≥ 0`` and no
            reason gets one at the next history record).
    """

    potentials: Potential
    states: Any
    alive: Array
    step: int
    stopped_at: np.ndarray
    history: dict[str, list]
    best: Potential | None = None
    best_value: np.ndarray | None = None
    best_step: np.ndarray | None = None
    early_stop: np.ndarray | None = None
    stop_reason: list[str | None] | None = None


class Callback:
    """Hooks called by :func:`fit` between compiled chunks (progress bars, checkpoints).

    ``on_start`` may return a different state (a checkpoint's, to resume).
    """

    def on_start(self, run: Run, state: FitState) -> FitState:
        return state

    def on_chunk(self, run: Run, state: FitState) -> None:
        """After each compiled chunk of steps (about every ``chunk_seconds``); a history
        record was just made when ``state.history["step"][-1] == state.step``."""

    def on_end(self, run: Run, state: FitState, interrupted: bool) -> None:
        """After the last step, or on Ctrl-C (``interrupted``) before :class:`FitInterrupted`."""


class FitInterrupted(KeyboardInterrupt):
    """Ctrl-C during :func:`fit`, after the callbacks have seen the state."""

    def __init__(self, step: int):
        self.step = step
        super().__init__(f"interrupted after step {step}")


@dataclasses.dataclass(frozen=True)
class FitResult:
    """What comes back from :func:`fit`.

    Attributes:
        potentials: the trained potentials, stacked over seeds (leading axis).
        problem, scheme, divergence: what was solved and how.
        seeds: the seeds, in the order of the leading axis.
        history: ``step`` ``[K]`` and, each ``[K, S]``: ``loss`` (the divergence's loss on
            the batches, mean over the record's interval), ``objective`` (what the scheme
            minimised), ``time_s`` (wall time since the start, compilation included) and,
            when available, ``energy_distance`` and ``l2_uvp`` on a fixed evaluation sample.
        metrics: final metrics per seed (each ``[S]``) on fresh samples (see
            :func:`~mongeflow.metrics.evaluate`), and beside them, on the same samples, those
            of the linear (Bures) baseline (:func:`~mongeflow.metrics.linear_baseline`):
            ``linear_energy_distance``, ``linear_l2_uvp``, ``linear_objective``.
        stopped_at: per seed, the step at which it stopped: the first with a non-finite loss
            or map, or the last before the history record that found its map run off; −1
            when it did not stop.
        stop_reason: per seed, why ``stopped_at`` stopped it: ``"non-finite"`` (a non-finite
            loss, map or pushed evaluation sample), ``"diverging"`` (the pushed evaluation
            sample ran off beyond :data:`DIVERGENCE_FACTOR` × (1 + the radius of the data and
            of the target), see :func:`fit`), or ``None`` (not stopped; a seed that stopped
            improving is told by ``early_stop``).
        wall_time_s: wall time of the training (compilation included).
        steps, batch_size: as run (``steps`` is the cap; see ``last_step``).
        selection: the history figure that picks each seed's map and stops the fit early
            (``"validation_objective"``: the held-out F; ``"energy_distance"``), or ``None``.
        best_step: ``[S]``, the step of each seed's returned map (−1: its last).
        last_step: the last step run (below ``steps`` when every seed stopped early).
        early_stop: ``[S]``, the step at which each seed stopped because its validation
            figure had not improved for ``patience`` records, or −1.
        tolerance: how far above the lowest validation figure a later map may be and still
            be kept instead (the energy distance's noise floor; 0 for F).
        linear: the linear (Bures) map's potential (:func:`~mongeflow.metrics.linear_baseline`),
            or ``None`` when γ has no moments to build it from.
        linear_kept: ``[S]``, whether the linear map was kept instead of the trained one,
            because it did better on the held-out selection figure (see :func:`fit`'s
            ``fallback``).
        comparison: the kept (trained) map against the linear map and against the starting
            map on the held-out selection figure: ``figure`` (its name), ``map``,
            ``linear`` and ``start`` (each ``[S]``; ``start`` is NaN on a resumed fit),
            ``noise`` (below it two figures cannot be told apart) and ``verdict`` (per
            seed: ``"better"``, ``"tie"`` or ``"worse"`` than the linear map); when the
            figure is F and γ can be sampled, the same for the held-out energy distance
            under ``energy_distance``; ``None`` without a selection figure or a linear map.
    """

    potentials: Potential
    problem: Problem
    scheme: Scheme
    divergence: Divergence
    seeds: tuple[int, ...]
    history: dict[str, np.ndarray]
    metrics: dict[str, np.ndarray]
    stopped_at: np.ndarray
    wall_time_s: float
    steps: int
    batch_size: int
    selection: str | None = None
    best_step: np.ndarray | None = None
    last_step: int | None = None
    early_stop: np.ndarray | None = None
    tolerance: float = 0.0
    linear: Potential | None = None
    linear_kept: np.ndarray | None = None
    comparison: dict[str, Any] | None = None
    stop_reason: list[str | None] | None = None

    @property
    def n_seeds(self) -> int:
        return len(self.seeds)

    def select(self, i: int) -> Potential:
        """The potential kept for ``seeds[i]``: the trained one, or the linear (Bures) map
        where that did better on the held-out figure (``linear_kept[i]``)."""
        if self.linear_kept is not None and self.linear_kept[i]:
            return self.linear
        return jax.tree_util.tree_map(lambda a: a[i] if eqx.is_array(a) else a, self.potentials)

    @property
    def best(self) -> int:
        """Index of the best seed, by figures that need no T*: the held-out objective F when
        γ has a potential, else the energy distance (without final metrics: the held-out
        figure of the comparison with the linear map), else the last recorded loss; seeds
        that stopped (on a non-finite value, or a map that ran off) come last."""
        for key in ("objective", "energy_distance"):
            if key in self.metrics:
                score = np.asarray(self.metrics[key], dtype=float)
                break
        else:
            if self.comparison is not None:  # the held-out figure of the map each seed kept
                kept = np.asarray(self.linear_kept, bool)
                score = np.where(kept, self.comparison["linear"], self.comparison["map"])
            else:
                score = np.asarray(self.history["loss"][-1], dtype=float)
        score = np.where(np.isfinite(score), score, np.inf)
        stopped = self.stopped_at >= 0
        if not stopped.all():
            score = np.where(stopped, np.inf, score)
        return int(np.argmin(score))

    def map(self, seed_index: int | None = None) -> MongeMap:
        """The map of ``seeds[seed_index]`` (default: the best seed), in the data's units."""
        i = self.best if seed_index is None else seed_index
        return MongeMap(
            self.select(i),
            shift=self.problem.shift,
            scale=self.problem.scale,
            target=self.problem.target,
            dim=self.problem.dim,
            target_shift=self.problem.target_shift,
        )

    def transport(self, x, seed_index: int | None = None) -> Array:
        """T(x) for ``x: [n, d]`` (in the data's units), with the best seed's map by default."""
        return self.map(seed_index).transport(x)

    def summary(self) -> dict[str, float]:
        """Mean of each final metric over seeds."""
        return {k: float(np.mean(v)) for k, v in self.metrics.items()}


#: the steps per second a fit assumes before it has timed its first chunk (the first chunk
#: runs ``chunk_seconds`` × this many steps, compilation included)
FIRST_CHUNK_RATE = 5.0


def _finite_tree(tree) -> Array:
    leaves = jax.tree_util.tree_leaves(eqx.filter(tree, eqx.is_inexact_array))
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(leaf)) for leaf in leaves]))


def _pick(flag, new, old):
    return jax.tree_util.tree_map(
        lambda a, b: jnp.where(flag, a, b) if eqx.is_array(a) else a, new, old
    )


@eqx.filter_jit
def _run_chunk(scheme, task, carry, keys, first_step, count, length: int):
    """``count`` (≤ ``length``) steps of every seed, from ``first_step``.

    ``carry`` holds, per seed, the potential, the scheme state, the last (potential, state)
    whose loss was finite, and whether the seed is alive: a seed whose loss or map turns
    non-finite stops there and falls back to it (a map can have finite parameters and still
    overflow, which only the next loss shows). ``count`` is traced, so chunks of any size up
    to ``length`` share one compiled program.
    """

    def one_seed(phi, state, good, alive, key):
        def body(i, c):
            phi, state, good, alive, losses, objectives = c
            new_phi, new_state, info = scheme.step(
                phi, state, task, jax.random.fold_in(key, first_step + i)
            )
            loss_ok = alive & jnp.isfinite(info.objective)
            ok = loss_ok & _finite_tree(new_phi)
            good = _pick(loss_ok, (phi, state), good)
            phi, state = _pick(ok, (new_phi, new_state), good)
            losses = losses.at[i].set(jnp.where(ok, info.loss, jnp.nan))
            objectives = objectives.at[i].set(jnp.where(ok, info.objective, jnp.nan))
            return phi, state, good, ok, losses, objectives

        nan = jnp.full((length,), jnp.nan, jnp.zeros(()).dtype)
        out = jax.lax.fori_loop(0, count, body, (phi, state, good, alive, nan, nan))
        return out

    potentials, states, goods, alive = carry
    if keys.shape[0] == 1:
        # One seed: run it without the seed axis. XLA's CPU matrix products under a vmap of
        # size 1 are slower (a step of the default map at d = 64: 176 ms against 137 ms).
        squeeze = functools.partial(_map_arrays, lambda a: a[0])
        out = one_seed(*squeeze((potentials, states, goods, alive, keys)))
        phi, state, good, alive, losses, objectives = _map_arrays(lambda a: a[None], out)
    else:
        phi, state, good, alive, losses, objectives = eqx.filter_vmap(
            one_seed, in_axes=(0, 0, 0, 0, 0)
        )(potentials, states, goods, alive, keys)
    return (phi, state, good, alive), losses, objectives


def _map_arrays(fn, tree):
    return jax.tree_util.tree_map(lambda a: fn(a) if eqx.is_array(a) else a, tree)


@eqx.filter_jit
def _evaluate_history(potentials, target, x_eval, y_eval, true_eval, variance):
    # the evaluation samples are arguments, not constants, so XLA does not fold them
    def one(phi):
        mapped = transport(phi, x_eval)
        # max_i |T(x_i)|, non-finite when any T(x_i) is: the check for a map that ran off
        out = {_RADIUS: jnp.max(jnp.linalg.norm(mapped, axis=1))}
        if y_eval is not None:
            out["energy_distance"] = energy_distance(mapped, y_eval)
        if true_eval is not None:
            out["l2_uvp"] = l2_uvp(mapped, true_eval, variance)
        if target.has_potential:
            # the held-out F, and the standard error of its per-sample terms
            terms = jax.vmap(target.potential)(mapped) - jax.vmap(
                lambda xi: log_det_hessian(phi, xi)
            )(x_eval)
            out["validation_objective"] = jnp.mean(terms)
            out["validation_objective_se"] = jnp.std(terms) / jnp.sqrt(terms.shape[0])
        return out

    return eqx.filter_vmap(one)(potentials)


#: the key of ``max_i |T(x_i)|`` in :func:`_evaluate_history`'s figures (not recorded)
_RADIUS = "pushed_radius"

#: a map whose pushed evaluation sample reaches farther from the origin than this many
#: times (1 + the radius of the data and of the target) has run off (see :func:`fit`).
#: The maps of the registered problems reach at most 1.15 × (1 + R) at every record of
#: their fits (two seeds, default steps: every 2-D problem, dense-potential at d = 8, the
#: two posteriors; 500 steps: gaussian at d = 16, dense-potential at d = 32). A fit to a V
#: concave far out (heavy-tailed 2-D data, R ≈ 17) ran off to 320 × (1 + R) within 15
#: steps; at a bound of 1e3 it kept a map pushing data to |T(x)| = 5.8e3, with a held-out
#: objective of −1.5e7 against the linear map's 5e-4.
DIVERGENCE_FACTOR = 1e2


def _divergence_limit(x_eval, y_eval, reference) -> float:
    """The bound on max_i |T(x_i)| over the evaluation sample beyond which a map has run off:
    :data:`DIVERGENCE_FACTOR` × (1 + R), R the larger of the radius max_i |x_i| of the
    evaluation sample and the target's radius: max_j |y_j| over its evaluation samples
    ``y_eval``, else ``reference`` (max_i |T(x_i)| for the linear map, or the starting map).
    Radii are from the origin of the problem's (standardised) coordinates, so that a target
    far from the data (one known by V stays in its own units) is no run-off."""
    radius = float(np.max(np.linalg.norm(np.asarray(x_eval, np.float64), axis=1)))
    if y_eval is not None:
        target = float(np.max(np.linalg.norm(np.asarray(y_eval, np.float64), axis=1)))
    else:
        target = float(reference)
    if np.isfinite(target):
        radius = max(radius, target)
    return DIVERGENCE_FACTOR * (1.0 + radius)


def _selection(problem: Problem) -> str | None:
    """The figure that picks the best map: the held-out F when γ has a potential, else the
    held-out energy distance when γ can be sampled."""
    if problem.target.has_potential:
        return "validation_objective"
    if problem.target.can_sample:
        return "energy_distance"
    return None


def _pick_seeds(flags: np.ndarray, new, old):
    """Per seed (leading axis), ``new`` where ``flags`` else ``old``."""
    flags = jnp.asarray(flags)

    def one(a, b):
        if not eqx.is_array(a):
            return a
        return jnp.where(flags.reshape((-1,) + (1,) * (a.ndim - 1)), a, b)

    return jax.tree_util.tree_map(one, new, old)


class FitWarning(UserWarning):
    """A fit that finished, but not as well as it should have: its validation figure rose,
    it does not beat the linear map, or a seed ran off."""


#: the figures of the linear baseline reported beside the map's (as ``linear_<name>``)
BASELINE_FIGURES = (
    "energy_distance",
    "l2_uvp",
    "objective",
    "ksd",
    "posterior_mean_error",
    "posterior_sd_error",
)


def final_metrics(
    problem: Problem,
    potentials: Potential,
    keys: Array,
    n: int,
    baseline: Potential | None,
    use_baseline: np.ndarray | None = None,
) -> dict:
    """:func:`~mongeflow.metrics.evaluate` for each seed of stacked ``potentials`` and, on
    the same samples, the figures of the ``baseline`` map (``linear_energy_distance``, ...).
    Where ``use_baseline[i]``, seed i's own figures are the baseline's (the map it keeps).

    One seed after another (``lax.map``), not ``vmap``: for 10⁴ × 10⁴ energy distances the
    batched matrix products are several times slower on CPU than the sequential ones.
    """
    params, static = eqx.partition(potentials, eqx.is_array)
    if use_baseline is None or baseline is None:
        use_baseline = np.zeros(keys.shape[0], bool)

    @jax.jit
    def run(params, keys, use_baseline):
        def one(args):
            p, key, flag = args
            out = evaluate(problem, eqx.combine(p, static), key, n)
            if baseline is not None:
                base = evaluate(problem, baseline, key, n)
                out = {k: jnp.where(flag, base[k], v) for k, v in out.items()}
                out.update({f"linear_{k}": base[k] for k in BASELINE_FIGURES if k in base})
            return out

        return jax.lax.map(one, (params, keys, use_baseline))

    return run(params, keys, jnp.asarray(use_baseline))


def fit(
    problem: Problem | str,
    scheme: Scheme | str | None = None,
    divergence: Divergence | str | None = None,
    potential: Potential | Callable[[Array], Potential] | None = None,
    *,
    steps: int | None = None,
    batch_size: int | None = None,
    seed: int | Sequence[int] = 0,
    dim: int | None = None,
    callbacks: Sequence[Callback] = (),
    log_every: int | None = None,
    eval_size: int = 2000,
    final_eval_size: int = 10_000,
    chunk_seconds: float = 2.0,
    keep_best: bool = True,
    patience: int | None | Literal["auto"] = "auto",
    standardize: bool = True,
    per_feature: bool = False,
    fallback: bool = True,
) -> FitResult:
    """Learn the Monge map of ``problem`` with ``scheme``, for one or many seeds at once.

    A seed stops on a non-finite loss or map, or when its map runs off: at each history
    record, the evaluation sample x_1..x_n (the held-out rows when there are any) is pushed
    through the map, and a map with a non-finite T(x_i), or with max_i |T(x_i)| beyond
    :data:`DIVERGENCE_FACTOR` × (1 + R), is never kept (R, in the fit's coordinates: the
    larger of max_i |x_i| and the target's radius, max_j |y_j| over its evaluation samples,
    else the reach max_i |T(x_i)| of the linear map, else of the starting map). The seed
    then falls back to its last recorded map within the bound, and ``FitResult.stop_reason``
    says ``"diverging"`` (``"non-finite"`` for the rest). Such a run-off is how a target's V
    that is not convex far from the data shows: the objective E[V(T(x))] − E[log det ∇T(x)]
    is then unbounded below, and a map pushing mass where V falls without end would win on
    it; a :class:`FitWarning` names V as the likely cause.

    Args:
        problem: a :class:`Problem` (for data, see :func:`mongeflow.io.data_problem`) or a
            registered problem name (with ``dim``).
        scheme: a :class:`Scheme` (used as given), a registered scheme name (with the
            automatic rules for its settings: :func:`mongeflow.auto.configure_named`), or
            ``None`` for the choice of :func:`mongeflow.auto.choose` (Adam with a decaying
            rate on a loss, the explicit scheme on a velocity).
        divergence: the lifted divergence: a value (used as given), a registered name
            (:func:`mongeflow.auto.configure_divergence`), or ``None``: the KL with the
            exact log-det gradient when γ has a potential, else the drifting field
            (:func:`mongeflow.auto.choose_divergence`).
        potential: a potential (every seed starts from it), a factory ``key -> potential``
            (each seed initialised from its own key), or ``None`` for
            :func:`~mongeflow.maps.default_potential`.
        steps: outer steps (default: the scheme's ``default_steps``).
        batch_size: mini-batch size n, a fresh batch at every step (default 256, or 128
            above d = 32 with ``scheme=None`` (:func:`mongeflow.auto.auto_batch_size`), or the
            number of training samples of a data source or of a target known by samples,
            when smaller).
        seed: an int, or a sequence of ints trained side by side in one program.
        callbacks: :class:`Callback` values (a progress bar, checkpoints).
        log_every: steps between history records (default: about 20 records).
        eval_size: samples per side for the history's metrics.
        final_eval_size: samples per side for the final metrics; 0 skips them.
        chunk_seconds: the longest a compiled chunk of steps may run, so that Ctrl-C and
            the callbacks are answered within about this time.
        keep_best: return, for each seed, the map whose validation figure was best among
            the start and the history records (the held-out objective F when γ has a
            potential, else the energy distance to held-out target samples; held out means
            the problem's ``validation`` samples when it has them, fresh samples otherwise),
            not the last map. For the energy distance, the latest map within its noise floor
            (:func:`~mongeflow.metrics.energy_distance_floor`) of the lowest figure is
            kept: below the floor the samples cannot rank two maps. A seed whose last
            figure is clearly worse than its best (by more than three standard errors, or
            than the energy distance's noise floor) gets a :class:`FitWarning`.
        patience: a seed stops once its kept map has not changed for this many
            consecutive history records (``steps`` is then a cap); ``None`` runs every step;
            ``"auto"``: 5, or what :func:`mongeflow.auto.choose` picked with the scheme
            (every step of the explicit scheme's decaying schedule). No seed stops before
            :data:`MIN_RECORDS` records and :data:`MIN_STEPS` steps: a figure on a few
            hundred held-out rows is noisy, and an early record can stand as the best by
            chance. A fit asked for fewer steps than both its scheme's default and
            :data:`MIN_STEPS` runs them all, with a :class:`FitWarning`.
        standardize: pose the problem in standardised coordinates
            (:func:`~mongeflow.problems.standardize`: the source's mean removed, one overall
            scale, and a target known by samples centred on its own mean with the same
            scale) unless it already is; the map is reported in the problem's units all the
            same. Network initialisations, learning rates and step sizes are tuned for
            coordinates of unit scale.
        per_feature: with ``standardize``, one scale per coordinate instead of one overall
            scale, for a problem not yet standardised (for data, give it to
            :func:`~mongeflow.io.data_problem`). The map is then optimal for the rescaled
            cost Σ_j (x_j − y_j)²/s_j², not for the squared distance in the problem's units.
        fallback: with ``keep_best``, keep the linear (Bures) map instead of a trained map
            that does worse on the held-out selection figure (the linear map is a Brenier
            map too). Whatever this says, every fit compares its kept map with the linear
            map and with its starting map on that figure (``FitResult.comparison``) and
            gives a :class:`FitWarning` when the trained map does not beat the linear one.

    Returns:
        A :class:`FitResult`.

    Raises:
        FitInterrupted: on Ctrl-C, after every callback's ``on_end``.

    Example:
        >>> import mongeflow as mf
        >>> res = mf.fit("gaussian", dim=2, steps=5)
        >>> res.metrics["l2_uvp"].shape
        (1,)
    """
    if isinstance(problem, str):
        problem = get_problem(problem, dim=dim)
    if not isinstance(problem, Problem):
        raise TypeError(
            f"problem must be a Problem or a registered name, got {type(problem).__name__}; "
            "for data use mongeflow.data_problem(x, target=...)"
        )
    if per_feature and not standardize:
        raise ValueError("per_feature=True is a kind of standardisation: it needs standardize")
    if standardize:
        problem = standardize_problem(problem, per_feature=per_feature)
    if divergence is None:
        divergence = choose_divergence(problem)
    elif isinstance(divergence, str):
        divergence = configure_divergence(divergence, problem)
    divergence.check(problem)
    auto_patience, auto_batch = AUTO_PATIENCE, AUTO_BATCH
    if steps is not None and steps < 1:
        raise ValueError(f"steps must be ≥ 1, got {steps}")
    asked = steps  # the user's number of steps, if any
    if scheme is None or isinstance(scheme, str):
        usual = choose(problem, divergence, None, scheme).steps
        choice = choose(problem, divergence, steps, scheme)
        scheme, steps, auto_patience = choice.scheme, choice.steps, choice.patience
        auto_batch = choice.batch_size
    else:
        usual = scheme.default_steps
    steps = int(scheme.default_steps if steps is None else steps)
    if patience == "auto":
        patience = auto_patience
    elif patience is not None and (isinstance(patience, str) or patience < 0):
        raise ValueError(f"patience must be a non-negative int, None or 'auto', got {patience!r}")
    batch_size = _batch_size(problem, batch_size, auto_batch)
    seeds = (seed,) if isinstance(seed, int) else tuple(int(s) for s in seed)
    if not seeds:
        raise ValueError("at least one seed is needed")
    if potential is None:
        potential = default_potential(problem.dim)
    make = potential if not isinstance(potential, Potential) else (lambda _key: potential)
    log_every = int(log_every or max(1, steps // 20))
    run = Run(problem, scheme, divergence, seeds, steps, batch_size, log_every)
    task = Task(problem, divergence, batch_size)

    keys = jnp.stack([jax.random.key_data(jax.random.key(s)) for s in seeds])
    keys = jax.vmap(lambda k: jax.random.split(jax.random.wrap_key_data(k), 3))(keys)
    init_keys, train_keys, eval_keys = keys[:, 0], keys[:, 1], keys[:, 2]
    potentials = eqx.filter_vmap(make)(init_keys)
    state = FitState(
        potentials=potentials,
        states=eqx.filter_vmap(scheme.init)(potentials),
        alive=jnp.ones(len(seeds), bool),
        step=0,
        stopped_at=np.full(len(seeds), -1),
        history={"step": [], "loss": [], "objective": [], "time_s": []},
    )
    for callback in callbacks:
        state = callback.on_start(run, state)
    if state.step > steps:
        raise ValueError(f"the fit is already at step {state.step}, beyond steps={steps}")

    var_key = jax.random.key(12345)
    x_eval, true_eval = source_with_map(problem, jax.random.fold_in(var_key, 1), eval_size)
    y_eval = (
        target_samples(problem, jax.random.fold_in(var_key, 2), eval_size)
        if problem.target.can_sample
        else None
    )
    variance = target_variance(problem, var_key) if true_eval is not None else None
    evaluate_now = lambda p: _evaluate_history(
        p, problem.target, x_eval, y_eval, true_eval, variance
    )
    baseline = linear_baseline(problem, jax.random.fold_in(var_key, 3))
    reference = np.inf  # the target's radius when it has no samples: its linear map's reach
    if y_eval is None:
        ref = potentials if baseline is None else _map_arrays(lambda a: a[None], baseline)
        reference = np.max(np.asarray(evaluate_now(ref)[_RADIUS], dtype=float))
    limit = _divergence_limit(x_eval, y_eval, reference)
    selection = _selection(problem) if keep_best or patience else None
    floor = None if y_eval is None else float(energy_distance_floor(y_eval, x_eval.shape[0]))
    # Maps whose held-out energy distances differ by less than its noise floor cannot be
    # told apart by these samples: the later one is kept (on dense-pair at d = 8 the lowest
    # figure picked a map of 2.8 % L2-UVP over the last one's 1.9 %).
    tolerance = (floor or 0.0) if selection == "energy_distance" else 0.0
    start_value = np.full(len(seeds), np.nan)  # unknown on a resumed fit
    if selection is not None and state.best is None:  # the starting map competes too
        figures = evaluate_now(state.potentials)
        value = np.asarray(figures[selection], dtype=float)
        start_value = value
        sane = np.asarray(figures[_RADIUS], dtype=float) <= limit
        state = state._replace(
            best=state.potentials,
            best_value=np.where(np.isfinite(value) & sane, value, np.inf),
            best_step=np.full(len(seeds), state.step),
        )

    carry = (state.potentials, state.states, (state.potentials, state.states), state.alive)
    step, stopped_at, history = state.step, state.stopped_at.copy(), state.history
    best, best_value, best_step = state.best, state.best_value, state.best_step
    # per seed, the step at which it stopped improving
    early_at = np.full(len(seeds), -1) if state.early_stop is None else state.early_stop.copy()
    reasons = [None] * len(seeds) if state.stop_reason is None else list(state.stop_reason)
    # per seed, its last recorded map within `limit` (on a resumed fit the kept map, which
    # was checked, rather than the checkpoint's current one, which a Ctrl-C may have saved
    # between two records)
    last_sane = state.potentials if state.best is None else state.best
    ran_off = np.full(len(seeds), np.nan)  # per seed, max |T(x)| of the map that ran off
    pending_loss, pending_objective = [], []
    per_step = None  # seconds per step, measured after the first (compiling) chunk
    start = time.perf_counter()

    def current() -> FitState:
        return FitState(
            *(carry[0], carry[1], carry[3], step, stopped_at, history),
            *(best, best_value, best_step, early_at, list(reasons)),
        )

    def plateaued() -> np.ndarray:
        """``[S]``: the seeds that have gone ``patience`` records without a new best (never
        before :data:`MIN_RECORDS` records and :data:`MIN_STEPS` steps)."""
        records = np.asarray(history["step"])
        if selection is None or not patience or records.size < MIN_RECORDS or step < MIN_STEPS:
            return np.zeros(len(seeds), bool)
        return np.array([np.sum(records > b) >= patience for b in best_step])

    if asked is not None and asked < min(usual, MIN_STEPS):
        warnings.warn(
            f"only {steps} steps, fewer than the {usual} this scheme runs by default (and no "
            f"fit stops early before {MIN_STEPS}): they are all run, but the map may be far "
            "from converged (compare it with the linear map's figures)",
            FitWarning,
            stacklevel=2,
        )

    try:
        while step < steps:
            boundary = min(steps, (step // log_every + 1) * log_every)
            count = boundary - step
            # before the first chunk is timed, assume a slow step (FIRST_CHUNK_RATE): a
            # first chunk of a whole record could run for minutes before Ctrl-C is answered
            rate = FIRST_CHUNK_RATE if per_step is None else 1.0 / max(per_step, 1e-9)
            count = max(1, min(count, int(chunk_seconds * rate)))
            tic = time.perf_counter()
            carry, losses, objectives = _run_chunk(
                scheme, task, carry, train_keys, jnp.asarray(step), jnp.asarray(count), log_every
            )
            losses, objectives = np.asarray(losses)[:, :count], np.asarray(objectives)[:, :count]
            elapsed = time.perf_counter() - tic
            per_step = elapsed / count  # the first chunk's includes compilation: an upper bound
            alive_np = np.asarray(carry[3])
            for s in np.flatnonzero(~alive_np & (stopped_at < 0) & (early_at < 0)):
                bad = np.flatnonzero(~np.isfinite(objectives[s]))
                stopped_at[s] = step + (int(bad[0]) if bad.size else 0)
            step += count
            pending_loss.append(losses)
            pending_objective.append(objectives)
            finished = step == steps or not alive_np.any()
            if step == boundary or finished:
                history["step"].append(step)
                with warnings.catch_warnings():  # a seed stopped for the whole interval
                    warnings.simplefilter("ignore", RuntimeWarning)
                    history["loss"].append(np.nanmean(np.concatenate(pending_loss, 1), 1))
                    history["objective"].append(np.nanmean(np.concatenate(pending_objective, 1), 1))
                pending_loss, pending_objective = [], []
                history["time_s"].append(np.full(len(seeds), time.perf_counter() - start))
                metrics = evaluate_now(carry[0])
                radius = np.asarray(metrics.pop(_RADIUS), dtype=float)
                # A map whose pushed sample is non-finite or has run off (beyond `limit`) is
                # never kept: its seed stops, like one that hit a non-finite loss, and falls
                # back to its last recorded map within the bound. A seed that stopped on a
                # non-finite loss in this interval is told the same way, by its last finite
                # map: one that had run off stopped because it diverged.
                check = np.array([r is None for r in reasons]) & (alive_np | (stopped_at >= 0))
                bad = check & ~(radius <= limit)
                for s in np.flatnonzero(check):
                    if bad[s]:
                        reasons[s] = "diverging" if np.isfinite(radius[s]) else "non-finite"
                        ran_off[s] = radius[s]
                        # the step whose map ran off: the last one before this record
                        stopped_at[s] = step - 1 if stopped_at[s] < 0 else stopped_at[s]
                    elif stopped_at[s] >= 0:
                        reasons[s] = "non-finite"
                if bad.any():
                    alive_np = alive_np & ~bad
                    fallback_map = _pick_seeds(bad, last_sane, carry[0])
                    good = (_pick_seeds(bad, last_sane, carry[2][0]), carry[2][1])
                    carry = (fallback_map, carry[1], good, jnp.asarray(alive_np))
                    finished = finished or not alive_np.any()
                last_sane = _pick_seeds(check & ~bad, carry[0], last_sane)
                for k, v in metrics.items():
                    history.setdefault(k, []).append(np.asarray(v))
                if selection is not None:
                    value = np.asarray(metrics[selection], dtype=float)
                    finite = np.isfinite(value) & alive_np
                    # the latest map within `tolerance` of the lowest figure is kept
                    near = value <= best_value + tolerance if tolerance > 0 else value < best_value
                    kept = finite & near
                    best_value = np.where(finite & (value < best_value), value, best_value)
                    best_step = np.where(kept, step, best_step)
                    best = _pick_seeds(kept, carry[0], best)
                # a seed that stopped improving stops (each seed on its own, so that a
                # seed's map does not depend on the seeds trained beside it)
                newly = plateaued() & alive_np
                if newly.any():
                    early_at = np.where(newly, step, early_at)
                    carry = (*carry[:3], jnp.asarray(alive_np & ~newly))
                    finished = finished or not (alive_np & ~newly).any()
            for callback in callbacks:
                callback.on_chunk(run, current())
            if finished:  # every seed stopped: a non-finite value, a run-off or a plateau
                break
    except KeyboardInterrupt:
        for callback in callbacks:
            callback.on_end(run, current(), True)
        raise FitInterrupted(step) from None
    wall = time.perf_counter() - start
    reasons = [
        "non-finite" if r is None and k >= 0 else r
        for r, k in zip(reasons, stopped_at, strict=True)
    ]
    for callback in callbacks:
        callback.on_end(run, current(), False)

    returned, returned_step = carry[0], np.full(len(seeds), -1)
    diverged = np.array([r == "diverging" for r in reasons])
    if selection is not None and keep_best:
        returned, returned_step = best, np.asarray(best_step).copy()
        _warn_if_worse(history, selection, best_value, best_step, floor, seeds, diverged)
    # a map chosen by F once F ran off to −∞ (V not convex far out) is not to be trusted:
    # the linear map, a Brenier map whose F is finite, replaces it
    distrust = diverged & problem.target.has_potential & bool(fallback and keep_best)
    _warn_diverged(problem, diverged, stopped_at, ran_off, limit, returned_step, seeds, distrust)
    comparison, linear_kept = None, np.zeros(len(seeds), bool)
    if selection is not None and baseline is not None:
        mine = {k: np.asarray(v, dtype=float) for k, v in evaluate_now(returned).items()}
        theirs = evaluate_now(_map_arrays(lambda a: a[None], baseline))
        theirs = {k: np.full(len(seeds), float(np.asarray(v)[0])) for k, v in theirs.items()}
        if selection == "validation_objective":
            noise = mine["validation_objective_se"]
        else:
            noise = np.full(len(seeds), floor or 0.0)
        comparison = _compare(selection, mine[selection], theirs[selection], start_value, noise)
        if selection != "energy_distance" and "energy_distance" in mine:
            # a second opinion that needs no V: the held-out energy distance
            comparison["energy_distance"] = _compare(
                "energy_distance",
                mine["energy_distance"],
                theirs["energy_distance"],
                np.full(len(seeds), np.nan),
                np.full(len(seeds), floor or 0.0),
            )
        if fallback and keep_best:
            linear_kept = (comparison["verdict"] == "worse") | distrust
        _warn_against_linear(comparison, linear_kept, returned_step, seeds, problem)
    final = {}
    if final_eval_size > 0:
        final = final_metrics(problem, returned, eval_keys, final_eval_size, baseline, linear_kept)
        final = {k: np.asarray(v) for k, v in final.items()}
        kept = [
            baseline if linear_kept[i] else p for i, p in enumerate(_unstack(returned, len(seeds)))
        ]
        posterior = [
            posterior_figures(problem, p, k, final_eval_size)
            for p, k in zip(kept, eval_keys, strict=True)
        ]
        for name in posterior[0]:
            final[name] = np.array([fig[name] for fig in posterior])
        if posterior[0] and baseline is not None:
            base = posterior_figures(problem, baseline, eval_keys[0], final_eval_size)
            for name in ("posterior_mean_error", "posterior_sd_error"):
                final[f"linear_{name}"] = np.full(len(seeds), base[name])
    if comparison is not None:
        final["beats_linear"] = comparison["verdict"] == "better"
        final["linear_kept"] = linear_kept.copy()
    return FitResult(
        potentials=returned,
        problem=problem,
        scheme=scheme,
        divergence=divergence,
        seeds=seeds,
        history={k: np.asarray(v) for k, v in history.items()},
        metrics={k: np.asarray(v) for k, v in final.items()},
        stopped_at=stopped_at,
        wall_time_s=wall,
        steps=steps,
        batch_size=batch_size,
        selection=selection if keep_best else None,
        best_step=returned_step,
        last_step=step,
        early_stop=early_at,
        tolerance=tolerance if selection is not None and keep_best else 0.0,
        linear=baseline,
        linear_kept=linear_kept,
        comparison=comparison,
        stop_reason=reasons,
    )


#: history records before any seed may stop early
MIN_RECORDS = 10
#: steps before any seed may stop early; a fit asked for fewer runs them all and warns
MIN_STEPS = 200

_FIGURE_NAMES = {
    "validation_objective": "held-out objective F",
    "energy_distance": "held-out energy distance",
}


def _compare(figure: str, mine, linear, start, noise) -> dict[str, Any]:
    """The trained maps' held-out ``figure`` against the linear map's (lower is better):
    ``"better"`` below it by more than ``noise``, ``"worse"`` above it by more, else
    ``"tie"``."""
    verdict = np.where(
        mine < linear - noise, "better", np.where(mine > linear + noise, "worse", "tie")
    )
    verdict = np.where(np.isfinite(mine), verdict, "worse")  # a non-finite figure loses
    return {
        "figure": figure,
        "map": mine,
        "linear": linear,
        "start": np.asarray(start, dtype=float),
        "noise": noise,
        "verdict": verdict,
    }


def _warn_against_linear(comparison, linear_kept, returned_step, seeds, problem) -> None:
    """A :class:`FitWarning` for each seed whose trained map does not beat the linear map,
    or whose kept map is its starting map."""
    name = _FIGURE_NAMES[comparison["figure"]]
    held = problem.validation
    where = f" on {held.shape[0]} held-out rows" if held is not None else ""
    for i, seed in enumerate(seeds):
        mine, linear = comparison["map"][i], comparison["linear"][i]
        verdict = comparison["verdict"][i]
        if verdict != "better":
            if linear_kept[i]:
                action = "the linear map is kept instead (it is a Brenier map too)"
            else:
                action = "the trained map is kept, but it is no better than the linear map"
            warnings.warn(
                f"seed {seed}: the trained map does not beat the linear (Bures) map: {name}"
                f"{where} {mine:.4g} against the linear map's {linear:.4g} (noise "
                f"{comparison['noise'][i]:.2g}); {action}. More steps, more data or another "
                "scheme may help",
                FitWarning,
                stacklevel=3,
            )
        elif (second := comparison.get("energy_distance")) and second["verdict"][i] == "worse":
            warnings.warn(
                f"seed {seed}: the held-out figures disagree: the trained map beats the linear "
                f"map on the {name} ({mine:.4g} against {linear:.4g}) but not on the held-out "
                f"energy distance ({second['map'][i]:.4g} against {second['linear'][i]:.4g}, "
                f"noise floor {second['noise'][i]:.2g}); the trained map is kept. It may be "
                "far from converged: more steps may help",
                FitWarning,
                stacklevel=3,
            )
        elif returned_step[i] == 0:
            warnings.warn(
                f"seed {seed}: the kept map is the starting map: no trained map had a better "
                f"{name}{where}",
                FitWarning,
                stacklevel=3,
            )


def _unstack(potentials: Potential, n: int) -> list[Potential]:
    return [
        jax.tree_util.tree_map(lambda a, i=i: a[i] if eqx.is_array(a) else a, potentials)
        for i in range(n)
    ]


def _warn_diverged(
    problem, diverged, stopped_at, ran_off, limit, returned_step, seeds, linear
) -> None:
    """A :class:`FitWarning` for each seed stopped because its map ran off; with a target
    known by V, it names V as the likely cause (``linear``: the seeds whose map the linear
    map replaces, when there is one)."""
    for i in np.flatnonzero(diverged):
        kept = (
            f"its map of step {int(returned_step[i])} is kept"
            if returned_step[i] >= 0
            else "its last recorded map within that bound is kept"
        )
        if linear[i]:
            kept = (
                "the maps chosen by the objective are not to be trusted once it ran off, so "
                "the linear (Bures) map is kept instead, if there is one"
            )
        if problem.target.has_potential:
            why = (
                "The target's potential V is the likely cause: the objective "
                "E[V(T(x))] − E[log det ∇T(x)] is bounded below only when exp(−V) is "
                "integrable, and a V that is not convex away from the data (concave, or "
                "unbounded below, far out) lets the map push mass where V falls without end. "
                "Check V beyond the data's range: convexity at the data says nothing of V there"
            )
        else:
            why = "A smaller step size or learning rate may help"
        reach = f"reached {ran_off[i]:.3g}, " if np.isfinite(ran_off[i]) else "went "
        warnings.warn(
            f"seed {seeds[i]}: the map had run off by step {int(stopped_at[i]) + 1}, and the "
            f"seed was stopped: max |T(x)| over the evaluation sample {reach}beyond "
            f"{limit:.3g} ({DIVERGENCE_FACTOR:g} × (1 + the radius of the data and of the "
            f"target, in the fit's coordinates)); {kept}. {why}",
            FitWarning,
            stacklevel=3,
        )


def _warn_if_worse(history, selection, best_value, best_step, floor, seeds, skip) -> None:
    """A :class:`FitWarning` for each seed whose last validation figure is clearly worse
    than its best: by more than 3 standard errors (F) or 3 noise floors (energy distance);
    not for the seeds in ``skip`` (those that ran off, which have their own warning)."""
    if not history.get(selection):
        return
    last = np.asarray(history[selection][-1], dtype=float)
    if selection == "validation_objective":
        noise = 3.0 * np.asarray(history["validation_objective_se"][-1], dtype=float)
    else:
        noise = np.full(len(seeds), 3.0 * (floor or 0.0))
    name = "held-out objective F" if selection == "validation_objective" else "energy distance"
    for i, seed in enumerate(seeds):
        if skip[i]:
            continue
        if not np.isfinite(last[i]) or last[i] > best_value[i] + noise[i]:
            warnings.warn(
                f"seed {seed}: the {name} got worse, from {best_value[i]:.4g} at step "
                f"{int(best_step[i])} to {last[i]:.4g} at the last record; the map of step "
                f"{int(best_step[i])} is kept (a smaller step size or learning rate may help)",
                FitWarning,
                stacklevel=3,
            )


def default_batch_size(problem: Problem, preferred: int = AUTO_BATCH) -> int:
    """``preferred``, or the training rows of a side known by samples when fewer."""
    return min([preferred] + [k for k in problem.training_sizes() if k is not None])


def _batch_size(problem: Problem, batch_size: int | None, default: int) -> int:
    if batch_size is None:
        return default_batch_size(problem, default)
    n, m = problem.training_sizes()
    if batch_size < 2:
        raise ValueError(f"batch_size must be ≥ 2, got {batch_size}")
    for rows, side in ((n, "data"), (m, "target")):
        if rows is not None and batch_size > rows:
            raise ValueError(
                f"batch_size {batch_size} is larger than the {rows} training samples of the "
                f"{side} (those left after the validation split); use at most {rows}"
            )
    return int(batch_size)


def progress_line(history: dict) -> str:
    """A short line of the latest record: loss and the evaluation metrics."""
    with warnings.catch_warnings():  # every seed stopped: an all-NaN loss
        warnings.simplefilter("ignore", RuntimeWarning)
        parts = []
        for k in ("loss", "objective", "l2_uvp", "energy_distance"):
            if history.get(k):
                v = np.nanmean(history[k][-1])
                if np.isfinite(v):
                    parts.append(f"{k} {v:.4g}")
    return "  ".join(parts)
