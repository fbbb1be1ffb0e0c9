"""The training loop: compiled chunks of steps (``vmap`` over seeds), the batches drawn by
the loop's sampler, and typed monitors that act on the held-out figures between chunks.

:func:`solve` is the one driver. What happens at a history record is not written in it
but in its monitors (:class:`RunOff`, :class:`KeepBest`, :class:`EarlyStop`, or a user's
own :class:`Monitor`), each a small value with the state it needs kept in the
:class:`Training` it acts on; :class:`Callback` values (progress, checkpoints) see the
state after every chunk.
"""

from __future__ import annotations

import dataclasses
import functools
import time
import warnings
from collections.abc import Sequence
from typing import Any, ClassVar, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from mongeflow.devices import replicate
from mongeflow.divergences import Divergence, Task
from mongeflow.maps.base import Array, Potential, log_det_hessian, transport
from mongeflow.metrics import energy_distance, l2_uvp, sinkhorn_value
from mongeflow.problems import Problem
from mongeflow.problems.base import Target
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
    """The driver's state between two chunks of steps: what a checkpoint saves.

    Attributes:
        potentials, states: per seed (leading axis), the current potential and scheme state.
        alive: ``[S]``, whether each seed is still running (False once it hit a non-finite
            loss or map, its map ran off (:class:`RunOff`) or it stopped improving
            (:class:`EarlyStop`)).
        step: steps done.
        stopped_at: ``[S]``, the step at which each seed stopped, or −1.
        history: lists, one entry per record: ``step`` and, each ``[S]``, ``loss``,
            ``objective``, ``time_s`` and the held-out figures.
        best, best_value, best_step: :class:`KeepBest`'s state: per seed, the kept
            potential, its validation figure and its step (``None`` before the first
            evaluation).
        early_stop: ``[S]``, :class:`EarlyStop`'s state: the step at which each seed
            stopped improving, or −1.
        stop_reason: per seed, why it stopped (``"non-finite"``, ``"diverging"``), or
            ``None`` (running, plateaued, or not yet told: a seed with ``stopped_at ≥ 0``
            and no reason gets one at the next history record).
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


#: the loop's state is one checkpointable value
TrainState = FitState


class Callback:
    """Hooks called by :func:`solve` between compiled chunks (progress bars, checkpoints).

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
    """Ctrl-C during a fit, after the callbacks have seen the state."""

    def __init__(self, step: int):
        self.step = step
        super().__init__(f"interrupted after step {step}")


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


def map_arrays(fn, tree):
    """``fn`` applied to every array leaf of ``tree``."""
    return jax.tree_util.tree_map(lambda a: fn(a) if eqx.is_array(a) else a, tree)


def pick_seeds(flags: np.ndarray, new, old):
    """Per seed (leading axis), ``new`` where ``flags`` else ``old``."""
    flags = jnp.asarray(flags)

    def one(a, b):
        if not eqx.is_array(a):
            return a
        return jnp.where(flags.reshape((-1,) + (1,) * (a.ndim - 1)), a, b)

    return jax.tree_util.tree_map(one, new, old)


@eqx.filter_jit
def _run_chunk(scheme, task, carry, keys, first_step, count, length: int):
    """``count`` (≤ ``length``) steps of every seed, from ``first_step``.

    Step k of a seed draws its batch with the first half of its key (the loop's sampler,
    ``task.sample``) and hands both to ``scheme.step``. ``carry`` holds, per seed, the
    potential, the scheme state, the last (potential, state) whose loss was finite, and
    whether the seed is alive: a seed whose loss or map turns non-finite stops there and
    falls back to it (a map can have finite parameters and still overflow, which only the
    next loss shows). ``count`` is traced, so chunks of any size up to ``length`` share
    one compiled program.
    """

    def one_seed(phi, state, good, alive, key):
        def body(i, c):
            phi, state, good, alive, losses, objectives = c
            step_key = jax.random.fold_in(key, first_step + i)
            batch = task.sample(jax.random.split(step_key)[0])
            new_phi, new_state, info = scheme.step(phi, state, batch, task, step_key)
            loss_ok = alive & jnp.isfinite(info.objective)
            ok = loss_ok & _finite_tree(new_phi)
            good = _pick(loss_ok, (phi, state), good)
            phi, state = _pick(ok, (new_phi, new_state), good)
            losses = losses.at[i].set(jnp.where(ok, info.loss, jnp.nan))
            objectives = objectives.at[i].set(jnp.where(ok, info.objective, jnp.nan))
            return phi, state, good, ok, losses, objectives

        nan = jnp.full((length,), jnp.nan, jnp.zeros(()).dtype)
        return jax.lax.fori_loop(0, count, body, (phi, state, good, alive, nan, nan))

    potentials, states, goods, alive = carry
    if keys.shape[0] == 1:
        # One seed: run it without the seed axis. XLA's CPU matrix products under a vmap of
        # size 1 are slower (a step of the default map at d = 64: 176 ms against 137 ms).
        squeeze = functools.partial(map_arrays, lambda a: a[0])
        out = one_seed(*squeeze((potentials, states, goods, alive, keys)))
        phi, state, good, alive, losses, objectives = map_arrays(lambda a: a[None], out)
    else:
        phi, state, good, alive, losses, objectives = eqx.filter_vmap(
            one_seed, in_axes=(0, 0, 0, 0, 0)
        )(potentials, states, goods, alive, keys)
    return (phi, state, good, alive), losses, objectives


#: the key of ``max_i |T(x_i)|`` in :class:`Validation`'s figures (not recorded)
RADIUS = "pushed_radius"


@eqx.filter_jit
def _held_out_figures(potentials, target: Target, x_eval, y_eval, true_eval, variance, epsilon):
    # the evaluation samples are arguments, not constants, so XLA does not fold them
    def one(phi):
        mapped = transport(phi, x_eval)
        # max_i |T(x_i)|, non-finite when any T(x_i) is: the check for a map that ran off
        out = {RADIUS: jnp.max(jnp.linalg.norm(mapped, axis=1))}
        if y_eval is not None:
            out["energy_distance"] = energy_distance(mapped, y_eval)
            if epsilon is not None:
                out["sinkhorn_divergence"] = sinkhorn_value(mapped, y_eval, epsilon)
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


@dataclasses.dataclass(frozen=True)
class Validation:
    """The held-out figures of stacked potentials (leading axis: seeds), computed at every
    history record: ``energy_distance`` (to ``y_eval``), with ``epsilon`` the Sinkhorn
    divergence ``sinkhorn_divergence`` at that ε (:func:`~mongeflow.metrics.sinkhorn_value`;
    NaN where a solve did not converge), ``l2_uvp`` (against ``true_eval``, T* at
    ``x_eval``), ``validation_objective`` and its standard error (when the target has a
    potential), and the reach max_i |T(x_i)| (:data:`RADIUS`)."""

    target: Target
    x_eval: Array
    y_eval: Array | None = None
    true_eval: Array | None = None
    variance: Array | None = None
    epsilon: Array | None = None

    def __call__(self, potentials: Potential) -> dict[str, Array]:
        return _held_out_figures(
            potentials,
            self.target,
            self.x_eval,
            self.y_eval,
            self.true_eval,
            self.variance,
            self.epsilon,
        )


@dataclasses.dataclass
class Training:
    """What the monitors act on between two chunks: the compiled loop's carry (per seed:
    the potential, the scheme state, the last finite pair, whether alive) and the
    bookkeeping of :class:`FitState`, held as NumPy values."""

    carry: tuple
    step: int
    stopped_at: np.ndarray
    history: dict[str, list]
    best: Potential | None
    best_value: np.ndarray | None
    best_step: np.ndarray | None
    early_stop: np.ndarray
    reasons: list[str | None]
    #: per seed, its last recorded map that :class:`RunOff` found within its bound
    last_sane: Potential
    #: per seed, max |T(x)| of a map that ran off (NaN: none did)
    ran_off: np.ndarray
    #: per seed, the selection figure of the starting map (NaN on a resumed fit)
    start_value: np.ndarray
    #: whether every seed has stopped
    finished: bool = False

    @property
    def alive(self) -> np.ndarray:
        return np.asarray(self.carry[3])

    def set_alive(self, alive: np.ndarray) -> None:
        """Which seeds keep running (placed like the carry's flags, so that the compiled
        chunk sees the same input layout)."""
        flags = self.carry[3]
        new = jnp.asarray(alive)
        if isinstance(flags, jax.Array) and len(flags.sharding.device_set) > 1:
            new = jax.device_put(new, flags.sharding)
        self.carry = (*self.carry[:3], new)
        self.finished = self.finished or not bool(np.asarray(alive).any())

    def stop(self, seeds: np.ndarray) -> None:
        """Stop the seeds flagged in ``seeds``, as converged: they keep their maps and are
        not failures (``early_stop`` records the step, ``stopped_at`` stays −1)."""
        seeds = seeds & self.alive
        self.early_stop = np.where(seeds & (self.early_stop < 0), self.step, self.early_stop)
        self.set_alive(self.alive & ~seeds)

    def state(self) -> FitState:
        return FitState(
            *(self.carry[0], self.carry[1], self.carry[3], self.step, self.stopped_at),
            *(self.history, self.best, self.best_value, self.best_step, self.early_stop),
            list(self.reasons),
        )


class Monitor:
    """Acts on the :class:`Training` at the start and at every history record.

    ``figures`` are the held-out figures of the current maps (:class:`Validation`), ``[S]``
    each. Monitors run in the order given, those with ``before_recording`` first (before
    the figures enter the history); a monitor may stop seeds (:meth:`Training.stop`) or
    replace their maps in ``carry``.
    """

    #: act before the record's figures are added to the history (a check that may replace
    #: maps, whose seeds the later monitors must see stopped)
    before_recording: ClassVar[bool] = False

    def start(self, training: Training, validation: Validation) -> None:
        """Before the first step (and on resume)."""

    def record(self, training: Training, figures: dict[str, np.ndarray]) -> None:
        """At a history record, after the figures were computed."""


@dataclasses.dataclass(frozen=True)
class RunOff(Monitor):
    """A map whose pushed evaluation sample is non-finite, or reaches beyond ``limit``
    (max_i |T(x_i)| > limit), is never kept: its seed stops, like one that hit a
    non-finite loss, and falls back to its last recorded map within the bound; its
    ``stop_reason`` is ``"diverging"`` (``"non-finite"`` for the rest)."""

    limit: float
    before_recording: ClassVar[bool] = True

    def record(self, t: Training, figures: dict[str, np.ndarray]) -> None:
        radius = figures[RADIUS]
        alive = t.alive
        # A seed that stopped on a non-finite loss in this interval is told the same way, by
        # its last finite map: one that had run off stopped because it diverged.
        check = np.array([r is None for r in t.reasons]) & (alive | (t.stopped_at >= 0))
        bad = check & ~(radius <= self.limit)
        for s in np.flatnonzero(check):
            if bad[s]:
                t.reasons[s] = "diverging" if np.isfinite(radius[s]) else "non-finite"
                t.ran_off[s] = radius[s]
                # the step whose map ran off: the last one before this record
                t.stopped_at[s] = t.step - 1 if t.stopped_at[s] < 0 else t.stopped_at[s]
            elif t.stopped_at[s] >= 0:
                t.reasons[s] = "non-finite"
        if bad.any():
            potentials, states, good, _ = t.carry
            fallback = pick_seeds(bad, t.last_sane, potentials)
            good = (pick_seeds(bad, t.last_sane, good[0]), good[1])
            t.carry = (fallback, states, good, t.carry[3])
            t.set_alive(alive & ~bad)
        t.last_sane = pick_seeds(check & ~bad, t.carry[0], t.last_sane)


@dataclasses.dataclass(frozen=True)
class KeepBest(Monitor):
    """Keeps, per seed, the map with the lowest held-out ``selection`` figure among the
    starting map and the history records; with a ``tolerance`` (the energy distance's
    noise floor, or a tenth of the Sinkhorn divergence's), the latest map within it of the
    lowest figure (below the floor the samples cannot rank two maps). ``limit``: a starting
    map reaching beyond it (:class:`RunOff`) does not compete."""

    selection: str
    tolerance: float = 0.0
    limit: float = np.inf

    def start(self, t: Training, validation: Validation) -> None:
        if t.best is not None:  # resumed: the checkpoint's kept maps
            return
        figures = validation(t.carry[0])
        value = np.asarray(figures[self.selection], dtype=float)
        t.start_value = value
        sane = np.asarray(figures[RADIUS], dtype=float) <= self.limit
        t.best = t.carry[0]
        t.best_value = np.where(np.isfinite(value) & sane, value, np.inf)
        t.best_step = np.full(value.shape[0], t.step)

    def record(self, t: Training, figures: dict[str, np.ndarray]) -> None:
        value = np.asarray(figures[self.selection], dtype=float)
        finite = np.isfinite(value) & t.alive
        if self.tolerance > 0:  # the latest map within `tolerance` of the lowest figure
            near = value <= t.best_value + self.tolerance
        else:
            near = value < t.best_value
        kept = finite & near
        t.best_value = np.where(finite & (value < t.best_value), value, t.best_value)
        t.best_step = np.where(kept, t.step, t.best_step)
        t.best = pick_seeds(kept, t.carry[0], t.best)


#: history records before any seed may stop early
MIN_RECORDS = 10
#: steps before any seed may stop early; a fit asked for fewer runs them all and warns
MIN_STEPS = 200


@dataclasses.dataclass(frozen=True)
class EarlyStop(Monitor):
    """A seed stops once its kept map (:class:`KeepBest`) has not changed for ``patience``
    consecutive history records, never before :data:`MIN_RECORDS` records and
    :data:`MIN_STEPS` steps (a figure on a few hundred held-out rows is noisy, and an early
    record can stand as the best by chance). Each seed stops on its own, so that a seed's
    map does not depend on the seeds trained beside it."""

    patience: int

    def record(self, t: Training, figures: dict[str, np.ndarray]) -> None:
        records = np.asarray(t.history["step"])
        if t.best_step is None or records.size < MIN_RECORDS or t.step < MIN_STEPS:
            return
        plateau = np.array([np.sum(records > b) >= self.patience for b in t.best_step])
        newly = plateau & t.alive
        if newly.any():
            t.stop(newly)


def solve(
    run: Run,
    task: Task,
    state: FitState,
    keys: Array,
    *,
    validation: Validation,
    monitors: Sequence[Monitor] = (),
    callbacks: Sequence[Callback] = (),
    chunk_seconds: float = 2.0,
) -> tuple[Training, float]:
    """Run ``run.steps`` steps of ``run.scheme`` on ``task`` for every seed of ``state``
    (``keys``: one training key per seed), in compiled chunks of at most ``chunk_seconds``.

    At every ``run.log_every`` steps a history record is made (the mean loss and objective
    over the interval, the wall time, the :class:`Validation` figures), then every monitor
    acts on it; the loop ends at ``run.steps`` or when every seed has stopped. Returns the
    final :class:`Training` and the wall time.

    Raises:
        FitInterrupted: on Ctrl-C, after every callback's ``on_end``.
    """
    n = len(run.seeds)
    mesh = getattr(task.sampler.sharding, "mesh", None)
    if mesh is not None:  # parameters, states and kept maps replicated on the mesh
        task = replicate(task, mesh)
        state = state._replace(
            potentials=replicate(state.potentials, mesh),
            states=replicate(state.states, mesh),
            alive=replicate(jnp.asarray(state.alive), mesh),
            best=None if state.best is None else replicate(state.best, mesh),
        )
    # several processes run one program: every chunk must have the same length in each
    # (a chunk's length comes from the clock, which differs between processes)
    timed = jax.process_count() == 1
    t = Training(
        carry=(state.potentials, state.states, (state.potentials, state.states), state.alive),
        step=state.step,
        stopped_at=state.stopped_at.copy(),
        history=state.history,
        best=state.best,
        best_value=state.best_value,
        best_step=state.best_step,
        early_stop=np.full(n, -1) if state.early_stop is None else state.early_stop.copy(),
        reasons=[None] * n if state.stop_reason is None else list(state.stop_reason),
        # on a resumed fit the kept map, which was checked, rather than the checkpoint's
        # current one, which a Ctrl-C may have saved between two records
        last_sane=state.potentials if state.best is None else state.best,
        ran_off=np.full(n, np.nan),
        start_value=np.full(n, np.nan),
    )
    for monitor in monitors:
        monitor.start(t, validation)
    pending_loss, pending_objective = [], []
    per_step = None  # seconds per step, measured after the first (compiling) chunk
    start = time.perf_counter()
    try:
        while t.step < run.steps:
            boundary = min(run.steps, (t.step // run.log_every + 1) * run.log_every)
            # before the first chunk is timed, assume a slow step (FIRST_CHUNK_RATE): a
            # first chunk of a whole record could run for minutes before Ctrl-C is answered
            rate = FIRST_CHUNK_RATE if per_step is None else 1.0 / max(per_step, 1e-9)
            count = boundary - t.step
            if timed:
                count = max(1, min(count, int(chunk_seconds * rate)))
            tic = time.perf_counter()
            t.carry, losses, objectives = _run_chunk(
                run.scheme,
                task,
                t.carry,
                keys,
                jnp.asarray(t.step),
                jnp.asarray(count),
                run.log_every,
            )
            losses, objectives = np.asarray(losses)[:, :count], np.asarray(objectives)[:, :count]
            per_step = (time.perf_counter() - tic) / count  # the first includes compilation
            alive = t.alive
            for s in np.flatnonzero(~alive & (t.stopped_at < 0) & (t.early_stop < 0)):
                bad = np.flatnonzero(~np.isfinite(objectives[s]))
                t.stopped_at[s] = t.step + (int(bad[0]) if bad.size else 0)
            t.step += count
            pending_loss.append(losses)
            pending_objective.append(objectives)
            t.finished = t.step == run.steps or not alive.any()
            if t.step == boundary or t.finished:
                history = t.history
                history["step"].append(t.step)
                with warnings.catch_warnings():  # a seed stopped for the whole interval
                    warnings.simplefilter("ignore", RuntimeWarning)
                    history["loss"].append(np.nanmean(np.concatenate(pending_loss, 1), 1))
                    history["objective"].append(np.nanmean(np.concatenate(pending_objective, 1), 1))
                pending_loss, pending_objective = [], []
                history["time_s"].append(np.full(n, time.perf_counter() - start))
                figures = {k: np.asarray(v) for k, v in validation(t.carry[0]).items()}
                figures[RADIUS] = figures[RADIUS].astype(float)
                for monitor in monitors:
                    if monitor.before_recording:
                        monitor.record(t, figures)
                for k, v in figures.items():
                    if k != RADIUS:
                        history.setdefault(k, []).append(v)
                for monitor in monitors:
                    if not monitor.before_recording:
                        monitor.record(t, figures)
            for callback in callbacks:
                callback.on_chunk(run, t.state())
            if t.finished:  # every seed stopped: a non-finite value, a run-off or a plateau
                break
    except KeyboardInterrupt:
        for callback in callbacks:
            callback.on_end(run, t.state(), True)
        raise FitInterrupted(t.step) from None
    wall = time.perf_counter() - start
    t.reasons = [
        "non-finite" if r is None and k >= 0 else r
        for r, k in zip(t.reasons, t.stopped_at, strict=True)
    ]
    for callback in callbacks:
        callback.on_end(run, t.state(), False)
    return t, wall
