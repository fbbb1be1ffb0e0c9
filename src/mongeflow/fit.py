"""``fit``: a problem posed, a configuration decided (:func:`mongeflow.auto.configure`),
the training loop run with its monitors (:func:`mongeflow.loop.solve`), and the kept map
compared with the linear (Bures) map on held-out figures."""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable, Sequence
from typing import Any, Literal

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from mongeflow.auto import checked_batch_size, configure, default_batch_size
from mongeflow.devices import data_sharding
from mongeflow.divergences import Divergence
from mongeflow.divergences.base import Task, make_task
from mongeflow.loop import (
    MIN_RECORDS,
    MIN_STEPS,
    RADIUS,
    Callback,
    EarlyStop,
    FitInterrupted,
    FitState,
    KeepBest,
    Monitor,
    Run,
    RunOff,
    Training,
    Validation,
    map_arrays,
    pick_seeds,
    solve,
)
from mongeflow.maps.base import Array, Potential, decays_any, transport
from mongeflow.maps.default import default_potential
from mongeflow.maps.monge import MongeMap
from mongeflow.metrics import (
    energy_distance_floor,
    evaluate,
    linear_baseline,
    posterior_figures,
    sinkhorn_divergence,
    sinkhorn_epsilon,
    sinkhorn_floor,
    source_with_map,
    target_samples,
    target_variance,
)
from mongeflow.problems import Problem, get_problem
from mongeflow.problems.standardise import standardize as standardize_problem
from mongeflow.schemes import Scheme

__all__ = [
    "MIN_RECORDS",
    "MIN_STEPS",
    "Callback",
    "FitInterrupted",
    "FitResult",
    "FitState",
    "FitWarning",
    "Run",
    "checked_batch_size",
    "default_batch_size",
    "final_metrics",
    "fit",
    "progress_line",
]


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
            (``"validation_objective"``: the held-out F; ``"energy_distance"``;
            ``"sinkhorn_divergence"``: a target known by samples from d =
            :data:`SINKHORN_SELECTION_DIM`), or ``None``.
        best_step: ``[S]``, the step of each seed's returned map (−1: its last).
        last_step: the last step run (below ``steps`` when every seed stopped early).
        early_stop: ``[S]``, the step at which each seed stopped because its validation
            figure had not improved for ``patience`` records, or −1.
        tolerance: how far above the lowest validation figure a later map may be and still
            be kept instead (the energy distance's noise floor, :data:`SINKHORN_TOLERANCE`
            × the Sinkhorn divergence's; 0 for F).
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
            figure is F or the Sinkhorn divergence and γ can be sampled, the same for the
            held-out energy distance under ``energy_distance`` (with the Sinkhorn
            divergence, its verdict stands where a Sinkhorn solve did not converge, "worse"
            read as "tie"; ``decided_by`` names the figure whose verdict stands). For a
            target known by samples below d = :data:`SINKHORN_SELECTION_DIM`, where the energy
            distance does not find every trained map better, the figure is the held-out
            Sinkhorn divergence (``"sinkhorn_divergence"``, which still ranks maps in high
            dimension; ``start`` NaN), ``verdict`` is ``"better"`` where the energy
            distance found the map better and the Sinkhorn divergence's verdict elsewhere
            (``sinkhorn_verdict``: its own, every seed), and the energy distance's
            comparison sits under ``energy_distance``; ``None`` without a selection figure
            or a linear map.
        chosen: why the automatic choices were made (:class:`~mongeflow.auto.Configuration`),
            one line each; empty when everything was given.
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
    chosen: tuple[str, ...] = ()

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
        γ has a potential, else the energy distance (without final metrics, or when the
        comparison with the linear map went by the Sinkhorn divergence: that comparison's
        held-out figure), else the last recorded loss; seeds that stopped (on a non-finite
        value, or a map that ran off) come last."""
        by_sinkhorn = (
            self.comparison is not None and self.comparison["figure"] == "sinkhorn_divergence"
        )
        for key in () if by_sinkhorn else ("objective", "energy_distance"):
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


#: the dimension from which a target known by samples has its maps chosen by the held-out
#: Sinkhorn divergence rather than the energy distance (:func:`_selection`). On the
#: Wasserstein-2 benchmark pair at d = 16 with 8 192 rows a side, the semi-dual game's map
#: after 48 000 steps had L2-UVP 68.7 % (the linear map: 41.6 %), yet a held-out energy
#: distance of 0.0170 against the linear map's 0.0472 (its noise floor: 0.0131), within the
#: floor of its lowest (0.0111, at step 24 000); the Sinkhorn divergence put it behind the
#: linear map (8.3 against 5.7; T* 1.2, 2 000 rows a side)
SINKHORN_SELECTION_DIM = 8
#: the fraction of the Sinkhorn divergence's noise floor within which a later map is kept
#: over the lowest (:func:`_monitors`)
SINKHORN_TOLERANCE = 0.1
#: how many noise floors above the lowest a figure must be to be clearly worse: the energy
#: distance's and the Sinkhorn divergence's (whose figures of successive maps on the same
#: held-out rows differ far less than its floor); a held-out F by three standard errors
CLEARLY_WORSE = {"energy_distance": 3.0, "sinkhorn_divergence": 1.0}


def _selection(problem: Problem) -> str | None:
    """The figure that picks the best map: the held-out F when γ has a potential; when γ can
    be sampled, the held-out Sinkhorn divergence from d = :data:`SINKHORN_SELECTION_DIM` on
    (the energy distance stops ranking maps in high dimension), else the held-out energy
    distance."""
    if problem.target.has_potential:
        return "validation_objective"
    if problem.target.can_sample:
        if problem.dim >= SINKHORN_SELECTION_DIM:
            return "sinkhorn_divergence"
        return "energy_distance"
    return None


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
    if use_baseline is None or baseline is None:
        use_baseline = np.zeros(keys.shape[0], bool)
    return _final_figures_of(problem, potentials, baseline, keys, jnp.asarray(use_baseline), n)


@eqx.filter_jit
def _final_figures_of(problem, potentials, baseline, keys, use_baseline, n: int) -> dict:
    # The problem (its rows, its held-out rows) and the maps are arguments, not constants
    # of the program: XLA does not fold them (at d = 128 folding products with the held-out
    # rows took seconds), one program serves every problem of the same shapes, and rows
    # split over processes can be read.
    params, static = eqx.partition(potentials, eqx.is_array)

    def one(args):
        p, key, flag = args
        out = evaluate(problem, eqx.combine(p, static), key, n)
        if baseline is not None:
            base = evaluate(problem, baseline, key, n)
            out = {k: jnp.where(flag, base[k], v) for k, v in out.items()}
            out.update({f"linear_{k}": base[k] for k in BASELINE_FIGURES if k in base})
        return out

    return jax.lax.map(one, (params, keys, use_baseline))


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
    mesh: jax.sharding.Mesh | None = None,
    monitors: Sequence[Monitor] = (),
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
            rate on a loss, the explicit scheme on a velocity; with no divergence named
            either, the semi-dual scheme for a target known by samples).
        divergence: the lifted divergence: a value (used as given), a registered name
            (:func:`mongeflow.auto.configure_divergence`), or ``None``: the KL with the
            exact log-det gradient when γ has a potential, else the energy distance (the
            held-out figures of the semi-dual scheme), or the drifting field when a paper
            scheme is named (:func:`mongeflow.auto.choose_divergence`).
        potential: a potential (every seed starts from it), a factory ``key -> potential``
            (each seed initialised from its own key), or ``None`` for
            :func:`~mongeflow.maps.default_potential` with the scheme's widths, activation
            and non-negativity (``default_widths``, ``default_activation``,
            ``default_nonnegativity``). Where the scheme is chosen and its rate is the
            reparametrised networks', a clamped network given, or a potential that is not
            an input-convex network, gets ``SemiDual.learning_rate`` (and the descent
            after the game, where there is one, ``auto.SEMIDUAL_CLAMPED_FINISH_RATE``:
            :func:`mongeflow.auto.rate_for_network`; a potential that wraps a clamped
            network counts as clamped). Weight decay reaches the weights a potential's
            :meth:`~mongeflow.maps.Potential.decayed` marks (a wrapper's: those of the
            networks it holds); where a chosen decay reaches none, ``chosen`` says so.
        steps: outer steps (default: the scheme's ``default_steps``).
        batch_size: mini-batch size n, a fresh batch at every step (default 256, or 128
            above d = 32 with ``scheme=None`` (:func:`mongeflow.auto.auto_batch_size`), 256
            for the semi-dual scheme, or the number of training samples of a data source or
            of a target known by samples, when smaller).
        seed: an int, or a sequence of ints trained side by side in one program.
        callbacks: :class:`Callback` values (a progress bar, checkpoints).
        log_every: steps between history records (default: about 20 records).
        eval_size: samples per side for the history's metrics.
        final_eval_size: samples per side for the final metrics; 0 skips them.
        chunk_seconds: the longest a compiled chunk of steps may run, so that Ctrl-C and
            the callbacks are answered within about this time.
        keep_best: return, for each seed, the map whose validation figure was best among
            the start and the history records (the held-out objective F when γ has a
            potential, else the energy distance to held-out target samples, or from d =
            :data:`SINKHORN_SELECTION_DIM` on the Sinkhorn divergence to them
            (:func:`~mongeflow.metrics.sinkhorn_divergence`, one ε for every map); held out
            means the problem's ``validation`` samples when it has them, fresh samples
            otherwise), not the last map. For the energy distance, the latest map within its
            noise floor (:func:`~mongeflow.metrics.energy_distance_floor`) of the lowest
            figure is kept: below the floor the samples cannot rank two maps; for the
            Sinkhorn divergence, within :data:`SINKHORN_TOLERANCE` × its floor
            (:func:`~mongeflow.metrics.sinkhorn_floor`). A seed whose last figure is clearly
            worse than its best (by more than three standard errors, three noise floors of
            the energy distance or one of the Sinkhorn divergence: :data:`CLEARLY_WORSE`)
            gets a :class:`FitWarning`. A scheme that settles
            (:attr:`~mongeflow.schemes.Scheme.settles`: the semi-dual game, whose rate
            decays to 0) keeps its last map unless that is clearly worse than the lowest,
            and otherwise the map the rule above chose: a two-sample figure does not see
            optimality, and ranks the game's last maps by its noise (:func:`_settled`).
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
            map too; for a target known by samples, on the held-out Sinkhorn divergence
            from d = :data:`SINKHORN_SELECTION_DIM` on, and below it when the energy
            distance does not find the trained map better). Whatever this
            says, every fit compares its kept map with the linear map and with its starting
            map on that figure (``FitResult.comparison``) and gives a :class:`FitWarning`
            when the trained map does not beat the linear one.
        mesh: a :class:`jax.sharding.Mesh` whose first axis splits every training batch
            (data parallelism, :func:`mongeflow.devices.data_mesh`): the batch's rows, and
            the work on them (the maps, the kernel sums of the sample divergences, the
            gradients' sums), are divided among the mesh's devices by XLA, and the
            parameters are replicated. The batches drawn do not depend on the mesh, so the
            map is the same as on one device, up to the order of floating-point sums.
            ``None``: one device.
        monitors: more :class:`~mongeflow.loop.Monitor` values, run at every history record
            after the fit's own (:class:`~mongeflow.loop.RunOff`, and with a selection
            figure :class:`~mongeflow.loop.KeepBest` and :class:`~mongeflow.loop.EarlyStop`).

    Returns:
        A :class:`FitResult`.

    Raises:
        FitInterrupted: on Ctrl-C, after every callback's ``on_end``.
        TypeError: ``potential`` is neither a :class:`~mongeflow.maps.Potential` nor a
            function of a PRNG key that returns one.
        ValueError: the potential given does not take a point of the problem's dimension to
            a scalar (and for other bad settings, each named in its message).

    Example:
        >>> import mongeflow as mf
        >>> res = mf.fit("gaussian", dim=2, steps=5)
        >>> res.metrics["l2_uvp"].shape
        (1,)
    """
    problem = _posed(problem, dim, standardize, per_feature)
    chosen = scheme is None or isinstance(scheme, str)  # the rate follows the network
    structure = _structure(potential, problem.dim)  # checked, and traced once for both uses
    given = structure if chosen else None
    network = _nonnegativity(given)
    decays = None if given is None else decays_any(given)
    config = configure(
        problem,
        scheme,
        divergence,
        steps,
        batch_size,
        patience,
        network,
        decays,
        given=potential is not None,
    )
    seeds = (seed,) if isinstance(seed, int) else tuple(int(s) for s in seed)
    if not seeds:
        raise ValueError("at least one seed is needed")
    log_every = int(log_every or max(1, config.steps // 20))
    run = Run(
        problem, config.scheme, config.divergence, seeds, config.steps, config.batch_size, log_every
    )
    sharding = None if mesh is None else data_sharding(mesh)
    task = make_task(
        problem,
        config.divergence,
        config.batch_size,
        sharding,
        target_rows=config.scheme.needs_target_samples,
    )
    keys = jnp.stack([jax.random.key_data(jax.random.key(s)) for s in seeds])
    keys = jax.vmap(lambda k: jax.random.split(jax.random.wrap_key_data(k), 3))(keys)
    init_keys, train_keys, eval_keys = keys[:, 0], keys[:, 1], keys[:, 2]
    state = _initial_state(problem, config.scheme, potential, init_keys, task)
    starting = state.potentials  # before a checkpoint replaces them
    for callback in callbacks:
        state = callback.on_start(run, state)
    if state.step > config.steps:
        raise ValueError(f"the fit is already at step {state.step}, beyond steps={config.steps}")
    figure = _selection(problem)
    validation, baseline, limit, floors = _held_out(
        problem, starting, eval_size, sinkhorn=figure == "sinkhorn_divergence"
    )
    if figure == "sinkhorn_divergence" and validation.epsilon is None:
        figure = "energy_distance"  # too few held-out target rows for a Sinkhorn figure
    state = _check_resumed_history(state, figure)
    selection = figure if keep_best or config.patience else None
    tolerance, own = _monitors(selection, floors, limit, config.patience)
    monitors = [*own, *monitors]
    if config.short:
        _warn_short(config)
    t, wall = solve(
        run,
        task,
        state,
        train_keys,
        validation=validation,
        monitors=monitors,
        callbacks=callbacks,
        chunk_seconds=chunk_seconds,
    )
    kept = keep_best and selection is not None
    returned = t.best if kept else t.carry[0]
    returned_step = np.asarray(t.best_step).copy() if kept else np.full(len(seeds), -1)
    if kept and config.scheme.settles:
        last = _settled(t, selection, floors)
        returned = pick_seeds(last, t.carry[0], returned)
        returned_step = np.where(last, t.step, returned_step)
    diverged = np.array([r == "diverging" for r in t.reasons])
    if kept:
        _warn_if_worse(t.history, selection, t.best_value, returned_step, floors, seeds, diverged)
    # a map chosen by F once F ran off to −∞ (V not convex far out) is not to be trusted:
    # the linear map, a Brenier map whose F is finite, replaces it
    distrust = diverged & problem.target.has_potential & bool(fallback and kept)
    _warn_diverged(
        problem, diverged, t.stopped_at, t.ran_off, limit, returned_step, seeds, distrust
    )
    comparison, linear_kept = None, np.zeros(len(seeds), bool)
    if selection is not None and baseline is not None:
        comparison = _against_linear(
            validation, returned, baseline, selection, t.start_value, floors
        )
        if fallback and keep_best:
            linear_kept = (comparison["verdict"] == "worse") | distrust
        _warn_against_linear(comparison, linear_kept, returned_step, seeds, problem)
    final = {}
    if final_eval_size > 0:
        final = _final_figures(problem, returned, eval_keys, final_eval_size, baseline, linear_kept)
    if comparison is not None:
        final["beats_linear"] = comparison["verdict"] == "better"
        final["linear_kept"] = linear_kept.copy()
    return FitResult(
        potentials=returned,
        problem=problem,
        scheme=config.scheme,
        divergence=config.divergence,
        seeds=seeds,
        history={k: np.asarray(v) for k, v in t.history.items()},
        metrics={k: np.asarray(v) for k, v in final.items()},
        stopped_at=t.stopped_at,
        wall_time_s=wall,
        steps=config.steps,
        batch_size=config.batch_size,
        selection=selection if keep_best else None,
        best_step=returned_step,
        last_step=t.step,
        early_stop=t.early_stop,
        tolerance=tolerance if kept else 0.0,
        linear=baseline,
        linear_kept=linear_kept,
        comparison=comparison,
        stop_reason=t.reasons,
        chosen=config.reasons,
    )


def _monitors(selection, floors, limit, patience) -> tuple[float, list[Monitor]]:
    """``(tolerance, monitors)``: the fit's own monitors (:class:`~mongeflow.loop.RunOff`,
    and with a ``selection`` figure :class:`~mongeflow.loop.KeepBest`, with ``patience``
    :class:`~mongeflow.loop.EarlyStop`) and the tolerance of its choice of the best map.

    Maps whose held-out energy distances differ by less than its noise floor
    (``floors["energy_distance"]``) cannot be told apart by these samples: the later one is
    kept (on dense-pair at d = 8 the lowest figure picked a map of 2.8 % L2-UVP over the
    last one's 1.9 %). For the Sinkhorn divergence, whose figures of successive maps on the
    same held-out rows differ far less than its noise floor, the tolerance is
    :data:`SINKHORN_TOLERANCE` × its floor: on the Wasserstein-2 benchmark pairs the latest
    map within the whole floor was a worse one (d = 16, 8 192 rows a side: 13.1 % L2-UVP,
    figure 3.56, against 5.7 % at the lowest, 2.28; floor 1.5), and the lowest an earlier
    one (d = 32: 4.4 % at the lowest, 4.13, against 3.9 % at the last record, 4.16). A
    scheme that settles keeps its last map whenever that is not clearly worse
    (:func:`_settled`)."""
    floor = floors.get(selection) or 0.0
    tolerance = floor if selection == "energy_distance" else 0.0
    if selection == "sinkhorn_divergence":
        tolerance = SINKHORN_TOLERANCE * floor
    monitors: list[Monitor] = [RunOff(limit)]
    if selection is not None:
        monitors.append(KeepBest(selection, tolerance, limit))
        if patience:
            monitors.append(EarlyStop(patience))
    return tolerance, monitors


def _settled(t: Training, selection: str, floors: dict) -> np.ndarray:
    """Per seed, whether a scheme that settles keeps its last map: the seed ran to the end
    (not stopped, not run off), the last history record is that map's, and its held-out
    figure is not clearly worse than the lowest (within :data:`CLEARLY_WORSE` noise floors;
    never for the held-out F, whose margin is per record).

    The game's rate decays to 0, so its last maps are its most converged, while a
    two-sample figure does not see optimality and ranks them by its noise: on ``dense-pair``
    at d = 8 the lowest held-out Sinkhorn divergence (within a tenth of its floor) kept step
    1 350's map, 0.47 % L2-UVP, over the last one's 0.09 %; on the Wasserstein-2 benchmark
    pair at d = 2 the energy distance kept step 40 800's, 0.24 %, over the last one's
    0.19 %. A last map that is clearly worse (a game that came to fit its rows: on the same
    pair at d = 16 with 8 192 unjittered rows a side, 68.7 % after 48 000 steps) leaves
    the map that rule chose, and the fit warns (:func:`_warn_if_worse`)."""
    n = len(t.stopped_at)
    steps, figures = t.history.get("step"), t.history.get(selection)
    if selection not in CLEARLY_WORSE or not steps or steps[-1] != t.step:
        return np.zeros(n, bool)
    last = np.asarray(figures[-1], dtype=float)
    margin = CLEARLY_WORSE[selection] * (floors.get(selection) or 0.0)
    ran = (np.asarray(t.stopped_at) < 0) & (np.asarray(t.early_stop) < 0)
    with np.errstate(invalid="ignore"):
        return ran & np.isfinite(last) & (last <= np.asarray(t.best_value) + margin)


def _warn_short(config) -> None:
    """A :class:`FitWarning` for a fit asked for fewer steps than its scheme's default."""
    warnings.warn(
        f"only {config.steps} steps, fewer than the {config.usual_steps} this scheme runs "
        f"by default (and no fit stops early before {MIN_STEPS}): they are all run, but "
        "the map may be far from converged (compare it with the linear map's figures)",
        FitWarning,
        stacklevel=3,
    )


def _posed(problem, dim, standardize: bool, per_feature: bool) -> Problem:
    """The problem as the fit poses it: a registered name built, then standardised."""
    if isinstance(problem, str):
        problem = get_problem(problem, dim=dim)
    if not isinstance(problem, Problem):
        raise TypeError(
            f"problem must be a Problem or a registered name, got {type(problem).__name__}; "
            "for data use mongeflow.data_problem(x, target=...)"
        )
    if per_feature and not standardize:
        raise ValueError("per_feature=True is a kind of standardisation: it needs standardize")
    return standardize_problem(problem, per_feature=per_feature) if standardize else problem


def _said(err: Exception) -> str:
    """An exception's kind and the first line of its message, for an error of our own."""
    lines = str(err).splitlines() or [""]
    return f"{type(err).__name__}: {lines[0][:200]}"


def _structure(potential, dim: int):
    """``potential`` itself, or for a factory ``key -> potential`` its structure (traced,
    not built); ``None`` for none given.

    Raises:
        TypeError: ``potential`` is neither a :class:`~mongeflow.maps.Potential` nor a
            function of a PRNG key that returns one (a network of another kind, say).
        ValueError: the potential does not take one point of dimension ``dim`` to a scalar.
    """
    if potential is None:
        return None
    how = (
        "A network of your own becomes one by subclassing mongeflow.Potential: its "
        "__call__(x) gives φ(x), a scalar, for one point x of shape (d,), and the map is ∇φ "
        "(a Brenier map when φ is convex, as mongeflow.maps.ICNN is)."
    )
    built = potential
    if not isinstance(potential, Potential):
        kind = type(potential).__name__
        if not callable(potential):
            raise TypeError(
                f"potential must be a mongeflow Potential or a function key -> Potential; "
                f"got a value of type {kind}. {how}"
            )
        try:
            built = eqx.filter_eval_shape(potential, jax.random.key(0))
        except Exception as err:
            raise TypeError(
                f"potential must be a mongeflow Potential or a function key -> Potential; "
                f"got a value of type {kind}, which is not a Potential and could not be "
                f"called with a PRNG key ({_said(err)}). {how}"
            ) from err
        if not isinstance(built, Potential):
            raise TypeError(
                f"the function given as potential returned a value of type "
                f"{type(built).__name__}, not a mongeflow Potential. {how}"
            )
    try:
        value = eqx.filter_eval_shape(built, jax.ShapeDtypeStruct((dim,), jnp.float32))
    except Exception as err:
        raise ValueError(
            f"the potential given ({type(built).__name__}) does not accept one point of the "
            f"problem's dimension {dim} ({_said(err)}); build it for d = {dim}"
        ) from err
    if getattr(value, "shape", None) != ():
        raise ValueError(
            f"the potential given ({type(built).__name__}) gives an array of shape "
            f"{getattr(value, 'shape', None)} for one point of dimension {dim}; it must "
            f"give φ(x), a scalar"
        )
    return built


def _nonnegativity(potential) -> str | None:
    """How the networks of ``potential`` (a potential, or a factory's :func:`_structure`)
    keep their weights non-negative: ``"clamp"`` where any module in it with the setting
    (the potential itself, or one it wraps) clamps them, else that setting; ``"none"`` for
    a potential with no such module, ``None`` for none given."""
    if potential is None:
        return None

    def has_setting(node) -> bool:
        return isinstance(node, eqx.Module) and isinstance(
            getattr(node, "nonnegativity", None), str
        )

    nodes = jax.tree_util.tree_leaves(potential, is_leaf=has_setting)
    kinds = sorted({node.nonnegativity for node in nodes if has_setting(node)})
    return "clamp" if "clamp" in kinds else (kinds[0] if kinds else "none")


def _initial_state(
    problem: Problem, scheme: Scheme, potential, init_keys, task: Task | None = None
) -> FitState:
    """Every seed's starting potential (``potential``, a factory ``key -> potential``, or
    :func:`~mongeflow.maps.default_potential`) and scheme state, at step 0 (for ``task``)."""
    if potential is None:
        potential = default_potential(
            problem.dim,
            scheme.default_widths(problem.dim),
            activation=scheme.default_activation,
            nonnegativity=scheme.default_nonnegativity(problem.dim),
        )
    make = potential if not isinstance(potential, Potential) else (lambda _key: potential)
    potentials = eqx.filter_vmap(make)(init_keys)
    n = init_keys.shape[0]
    return FitState(
        potentials=potentials,
        states=eqx.filter_vmap(lambda p: scheme.init(p) if task is None else scheme.start(p, task))(
            potentials
        ),
        alive=jnp.ones(n, bool),
        step=0,
        stopped_at=np.full(n, -1),
        history={"step": [], "loss": [], "objective": [], "time_s": []},
    )


def _held_out(problem: Problem, potentials, eval_size: int, sinkhorn: bool = False):
    """``(validation, baseline, limit, floors)``: the figures of every history record (on
    the held-out rows, else fresh samples of fixed keys; with ``sinkhorn``, the Sinkhorn
    divergence too, at one ε fixed by the target rows), the linear (Bures) map, the bound
    of :class:`~mongeflow.loop.RunOff` and the noise floors of the two-sample figures
    (``{"energy_distance": ..., "sinkhorn_divergence": ...}``; empty without target
    samples)."""
    var_key = jax.random.key(12345)
    x_eval, true_eval = source_with_map(problem, jax.random.fold_in(var_key, 1), eval_size)
    y_eval = (
        target_samples(problem, jax.random.fold_in(var_key, 2), eval_size)
        if problem.target.can_sample
        else None
    )
    variance = target_variance(problem, var_key) if true_eval is not None else None
    # the floor compares two halves of the target rows: at least 2 rows each
    usable = sinkhorn and y_eval is not None and y_eval.shape[0] >= 4
    epsilon = sinkhorn_epsilon(y_eval) if usable else None
    validation = Validation(problem.target, x_eval, y_eval, true_eval, variance, epsilon)
    baseline = linear_baseline(problem, jax.random.fold_in(var_key, 3))
    reference = np.inf  # the target's radius when it has no samples: its linear map's reach
    if y_eval is None:
        ref = potentials if baseline is None else map_arrays(lambda a: a[None], baseline)
        reference = np.max(np.asarray(validation(ref)[RADIUS], dtype=float))
    limit = _divergence_limit(x_eval, y_eval, reference)
    floors = {}
    if y_eval is not None:
        floors["energy_distance"] = float(energy_distance_floor(y_eval, x_eval.shape[0]))
    if epsilon is not None:
        floors["sinkhorn_divergence"] = sinkhorn_floor(y_eval, epsilon)
        if not (np.isfinite(floors["sinkhorn_divergence"]) and float(epsilon) > 0):
            del floors["sinkhorn_divergence"]  # no usable Sinkhorn figure on these rows
            validation = dataclasses.replace(validation, epsilon=None)
    return validation, baseline, limit, floors


def _check_resumed_history(state: FitState, figure: str | None) -> FitState:
    """A resumed fit whose checkpoint recorded other held-out figures (made by an earlier
    version, which chose its maps by another figure) cannot go on: its kept map and history
    are in that figure's units. One with no record yet has its kept map chosen afresh (its
    kept figure may be in other units)."""
    if not state.history.get("step"):
        return state._replace(best=None, best_value=None, best_step=None)
    if figure is None or figure in state.history:
        return state
    raise ValueError(
        f"the checkpoint's history has no {_FIGURE_NAMES[figure]}, by which this version "
        "chooses the map for this problem (it was made by an earlier version); it cannot "
        "continue: start the run again with --overwrite"
    )


def _against_linear(validation, returned, baseline, selection, start_value, floors) -> dict:
    """The kept maps against the linear map on the held-out ``selection`` figure and, when
    that is F or the Sinkhorn divergence, on the held-out energy distance too
    (:func:`_compare`); when it is the energy distance and a seed's map is not better, on
    the Sinkhorn divergence (:func:`_sinkhorn_decides`). Where the Sinkhorn divergence is
    the figure but not finite (a solve that did not converge), the energy distance's
    verdict stands."""
    floor = floors.get("energy_distance")
    seeds = start_value.shape[0]
    mine = {k: np.asarray(v, dtype=float) for k, v in validation(returned).items()}
    theirs = validation(map_arrays(lambda a: a[None], baseline))
    theirs = {k: np.full(seeds, float(np.asarray(v)[0])) for k, v in theirs.items()}
    if selection == "validation_objective":
        noise = mine["validation_objective_se"]
    else:
        noise = np.full(seeds, floors.get(selection) or 0.0)
    comparison = _compare(selection, mine[selection], theirs[selection], start_value, noise)
    if selection == "energy_distance" and (comparison["verdict"] != "better").any():
        return _sinkhorn_decides(validation, returned, baseline, comparison)
    if selection != "energy_distance" and "energy_distance" in mine:
        # a second opinion that needs no V: the held-out energy distance
        comparison["energy_distance"] = _compare(
            "energy_distance",
            mine["energy_distance"],
            theirs["energy_distance"],
            np.full(seeds, np.nan),
            np.full(seeds, floor or 0.0),
        )
    if selection == "sinkhorn_divergence":
        # where a solve did not converge, the energy distance's verdict, but never "worse":
        # in high dimension it can put a good map behind the linear map (_sinkhorn_decides)
        unsolved = ~(np.isfinite(comparison["map"]) & np.isfinite(comparison["linear"]))
        energy = comparison["energy_distance"]["verdict"]
        comparison["verdict"] = np.where(
            unsolved, np.where(energy == "worse", "tie", energy), comparison["verdict"]
        )
        comparison["decided_by"] = np.where(unsolved, "energy_distance", "sinkhorn_divergence")
    return comparison


def _sinkhorn_decides(validation, returned, baseline, energy: dict) -> dict:
    """For a target known by samples whose trained map (for some seed) the held-out energy
    distance does not find better than the linear map: the comparison on the held-out
    Sinkhorn divergence (:func:`~mongeflow.metrics.sinkhorn_divergence`, one ε for every
    map; noise :func:`~mongeflow.metrics.sinkhorn_floor`), with the energy distance's
    beside it (``energy_distance``). A seed the energy distance finds better stays
    ``"better"``; the others take the Sinkhorn divergence's verdict (``sinkhorn_verdict``
    holds it for every seed). Where the Sinkhorn figures cannot be had (fewer than 4 target
    rows, a solve that did not converge), the energy distance's comparison is returned.

    In high dimension the energy distance punishes a map that spreads the mass a little too
    narrowly more than one of the wrong shape: on the Wasserstein-2 benchmark pair at
    d = 64 a semi-dual map of L2-UVP 13 % (its pushforward's variance 0.73 of the
    target's) had a held-out energy distance of 0.077 against the linear map's 0.042
    (L2-UVP 64 %); the Sinkhorn divergence ranked the two the right way round (17.7
    against 48.8), as it ranks blends of the linear map and T* by their L2-UVP."""
    x, y = validation.x_eval, validation.y_eval
    if y is None or y.shape[0] < 4:
        return energy
    epsilon = sinkhorn_epsilon(y)
    seeds = energy["verdict"].shape[0]
    push = eqx.filter_jit(transport)
    mine = np.array(
        [sinkhorn_divergence(push(p, x), y, epsilon) for p in _unstack(returned, seeds)]
    )
    linear = sinkhorn_divergence(push(baseline, x), y, epsilon)
    noise = sinkhorn_floor(y, epsilon)
    if not (np.all(np.isfinite(mine)) and np.isfinite(linear) and np.isfinite(noise)):
        return energy
    comparison = _compare(
        "sinkhorn_divergence",
        mine,
        np.full(seeds, linear),
        np.full(seeds, np.nan),
        np.full(seeds, noise),
    )
    comparison["sinkhorn_verdict"] = comparison["verdict"]
    comparison["verdict"] = np.where(
        energy["verdict"] == "better", "better", comparison["sinkhorn_verdict"]
    )
    comparison["energy_distance"] = energy
    return comparison


def _final_figures(problem, returned, eval_keys, n: int, baseline, linear_kept) -> dict:
    """:func:`final_metrics` and, for a posterior, its moments' errors, of each seed's kept
    map (the linear map where it was kept), with the linear map's beside them."""
    final = final_metrics(problem, returned, eval_keys, n, baseline, linear_kept)
    final = {k: np.asarray(v) for k, v in final.items()}
    seeds = eval_keys.shape[0]
    kept = [baseline if linear_kept[i] else p for i, p in enumerate(_unstack(returned, seeds))]
    posterior = [posterior_figures(problem, p, k, n) for p, k in zip(kept, eval_keys, strict=True)]
    for name in posterior[0]:
        final[name] = np.array([fig[name] for fig in posterior])
    if posterior[0] and baseline is not None:
        base = posterior_figures(problem, baseline, eval_keys[0], n)
        for name in ("posterior_mean_error", "posterior_sd_error"):
            final[f"linear_{name}"] = np.full(seeds, base[name])
    return final


_FIGURE_NAMES = {
    "validation_objective": "held-out objective F",
    "energy_distance": "held-out energy distance",
    "sinkhorn_divergence": "held-out Sinkhorn divergence",
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
            if verdict == "tie":  # within the figure's noise: neither is shown the better
                action = (
                    "the two are within the figure's noise on these rows, so it cannot tell "
                    f"them apart; {action}. A larger held-out share of the rows (validation; "
                    "--validation on the command line) may separate them; more steps, more "
                    "data or another scheme may help"
                )
            else:
                action += ". More steps, more data or another scheme may help"
            warnings.warn(
                f"seed {seed}: the trained map does not beat the linear (Bures) map: {name}"
                f"{where} {mine:.4g} against the linear map's {linear:.4g} (noise "
                f"{comparison['noise'][i]:.2g}); {action}",
                FitWarning,
                stacklevel=3,
            )
        elif (own := comparison.get("sinkhorn_verdict")) is not None and own[i] == "worse":
            second = comparison["energy_distance"]
            warnings.warn(
                f"seed {seed}: the held-out figures disagree: the trained map beats the linear "
                f"map on the held-out energy distance ({second['map'][i]:.4g} against "
                f"{second['linear'][i]:.4g}, noise floor {second['noise'][i]:.2g}) but not on "
                f"the {name} ({mine:.4g} against {linear:.4g}, noise "
                f"{comparison['noise'][i]:.2g}); the trained map is kept",
                FitWarning,
                stacklevel=3,
            )
        elif (second := comparison.get("energy_distance")) and second["verdict"][i] == "worse":
            warnings.warn(
                f"seed {seed}: the held-out figures disagree: the trained map beats the linear "
                f"map on the {name} ({mine:.4g} against {linear:.4g}) but not on the held-out "
                f"energy distance ({second['map'][i]:.4g} against {second['linear'][i]:.4g}, "
                f"noise floor {second['noise'][i]:.2g}); the trained map is kept. "
                + (
                    "In high dimension the energy distance punishes a pushforward spread a "
                    "little too narrowly more than one of the wrong shape; more steps may help"
                    if comparison["figure"] == "sinkhorn_divergence"
                    else "It may be far from converged: more steps may help"
                ),
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


def _warn_if_worse(history, selection, best_value, best_step, floors, seeds, skip) -> None:
    """A :class:`FitWarning` for each seed whose last validation figure is clearly worse
    than its best: by more than 3 standard errors (F), 3 noise floors (energy distance) or
    one (Sinkhorn divergence, whose figures of successive maps differ far less than its
    floor; a last record whose solve did not converge says nothing); not for the seeds in
    ``skip`` (those that ran off, which have their own warning)."""
    if not history.get(selection):
        return
    last = np.asarray(history[selection][-1], dtype=float)
    if selection == "validation_objective":
        noise = 3.0 * np.asarray(history["validation_objective_se"][-1], dtype=float)
    else:
        noise = np.full(len(seeds), CLEARLY_WORSE[selection] * (floors.get(selection) or 0.0))
    name = _FIGURE_NAMES[selection]
    advice = "a smaller step size or learning rate may help"
    if selection == "sinkhorn_divergence":
        advice = (
            "a long run can come to fit the training rows rather than their law: fewer "
            "steps or more rows may help"
        )
    for i, seed in enumerate(seeds):
        if skip[i]:
            continue
        unsolved = selection == "sinkhorn_divergence" and np.isnan(last[i])
        if not unsolved and (not np.isfinite(last[i]) or last[i] > best_value[i] + noise[i]):
            warnings.warn(
                f"seed {seed}: the {name} got worse, from its lowest {best_value[i]:.4g} to "
                f"{last[i]:.4g} at the last record; the map of step {int(best_step[i])} is "
                f"kept ({advice})",
                FitWarning,
                stacklevel=3,
            )


def progress_line(history: dict) -> str:
    """A short line of the latest record: loss and the evaluation metrics."""
    with warnings.catch_warnings():  # every seed stopped: an all-NaN loss
        warnings.simplefilter("ignore", RuntimeWarning)
        parts = []
        for k in ("loss", "objective", "l2_uvp", "energy_distance", "sinkhorn_divergence"):
            if history.get(k):
                v = np.nanmean(history[k][-1])
                if np.isfinite(v):
                    parts.append(f"{k} {v:.4g}")
    return "  ".join(parts)
