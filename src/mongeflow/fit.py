"""The driver: one jitted program per run, ``lax.scan`` over steps, ``vmap`` over seeds."""

from __future__ import annotations

import dataclasses
import json
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from mongeflow.divergences.kl import KL
from mongeflow.maps.base import Array, Potential, transport
from mongeflow.maps.icnn import ICNN
from mongeflow.metrics import energy_distance, evaluate, l2_uvp, source_with_map, target_variance
from mongeflow.problems import Problem, get_problem
from mongeflow.problems.base import EmpiricalSource, Target
from mongeflow.progress import ProgressBar
from mongeflow.schemes import Scheme, Task, get_scheme


def default_potential(dim: int) -> Callable[[Array], Potential]:
    """The default map: an ICNN (20, 20) with a full-rank quadratic term, starting at T = id."""

    def make(key: Array) -> Potential:
        return ICNN(dim, key, widths=(20, 20), quadratic_rank=min(dim, 64), identity_init=True)

    return make


@dataclasses.dataclass(frozen=True)
class FitResult:
    """What comes back from :func:`fit`.

    Attributes:
        potentials: the trained potentials, stacked over seeds (leading axis).
        problem, scheme, divergence: what was solved and how.
        seeds: the seeds, in the order of the leading axis.
        history: ``step`` ``[K]`` and, each ``[K, S]``: ``loss`` (mean over the logging
            interval), ``time_s`` (wall time since the start, compilation included) and,
            when available, ``energy_distance`` and ``l2_uvp`` on a held-out
            evaluation sample.
        metrics: final metrics per seed (each ``[S]``) on fresh samples: ``energy_distance``,
            ``l2``, ``l2_uvp``, ``kl``, ``transport_cost`` when available.
        stopped_at: per seed, the step at which a non-finite loss or map stopped it, or −1.
            Such a seed keeps its last map whose loss was finite; when every seed has
            stopped, the fit ends early.
        wall_time_s: wall time of the training (compilation included).
    """

    potentials: Potential
    problem: Problem
    scheme: Scheme
    divergence: Any
    seeds: tuple[int, ...]
    history: dict[str, np.ndarray]
    metrics: dict[str, np.ndarray]
    stopped_at: np.ndarray
    wall_time_s: float
    steps: int
    batch_size: int
    shift: np.ndarray | None = None
    scale: float = 1.0
    target_record: dict | None = None

    @property
    def n_seeds(self) -> int:
        return len(self.seeds)

    def select(self, i: int = 0) -> Potential:
        """The potential trained with ``seeds[i]``."""
        return jax.tree_util.tree_map(lambda a: a[i] if eqx.is_array(a) else a, self.potentials)

    @property
    def potential(self) -> Potential:
        """The potential of the first seed."""
        return self.select(0)

    def map(self, seed_index: int = 0):
        """The map of ``seeds[seed_index]`` as a :class:`~mongeflow.mapping.MongeMap` (in the
        data's units when the data were standardised)."""
        from mongeflow.io import target_record_of
        from mongeflow.mapping import MongeMap

        record = self.target_record or target_record_of(self.problem.target)
        info = {
            "problem": self.problem.name,
            "scheme": type(self.scheme).__name__.lower(),
            "seed": self.seeds[seed_index],
            "steps": self.steps,
            "batch_size": self.batch_size,
            "metrics": {k: float(np.asarray(v)[seed_index]) for k, v in self.metrics.items()},
        }
        return MongeMap(
            self.select(seed_index), self.problem.target, self.shift, self.scale, record, info
        )

    def transport(self, x, seed_index: int = 0) -> Array:
        """T(x) for ``x: [n, d]`` with the map of ``seeds[seed_index]``."""
        if self.shift is None and self.scale == 1.0:
            return transport(self.select(seed_index), jnp.asarray(x))
        return jnp.asarray(self.map(seed_index).transport(x))

    def inverse(self, y, seed_index: int = 0, return_residual: bool = False):
        """T⁻¹(y) (see :meth:`MongeMap.inverse <mongeflow.mapping.MongeMap.inverse>`)."""
        return self.map(seed_index).inverse(y, return_residual=return_residual)

    def log_density(self, x, seed_index: int = 0):
        """log ρ0(x) = log γ(T(x)) + log det DT(x) implied by the map."""
        return self.map(seed_index).log_density(x)

    def save(self, path, seed_index: int = 0):
        """Save the map of ``seeds[seed_index]``; :func:`mongeflow.load` reads it back."""
        return self.map(seed_index).save(path)

    def summary(self) -> dict[str, float]:
        """Mean of each final metric over seeds."""
        return {k: float(np.mean(v)) for k, v in self.metrics.items()}


class FitInterrupted(KeyboardInterrupt):
    """Ctrl-C during :func:`fit`: says at which step and where the checkpoint is."""

    def __init__(self, step: int, checkpoint):
        self.step, self.checkpoint = step, checkpoint
        where = f"; resume from {checkpoint}" if checkpoint is not None else ""
        super().__init__(f"interrupted after step {step}{where}")


def _save_checkpoint(path: Path, potentials, states, alive, stopped_at, done, history, seeds):
    path.mkdir(parents=True, exist_ok=True)
    tmp = path / "state.eqx.tmp"
    eqx.tree_serialise_leaves(tmp, (potentials, states, alive))
    tmp.replace(path / "state.eqx")  # atomic: a crash mid-write keeps the previous one
    meta = {
        "step": int(done),
        "seeds": list(seeds),
        "stopped_at": [int(v) for v in stopped_at],
        "history": {k: np.asarray(v).tolist() for k, v in history.items()},
    }
    (path / "checkpoint.json").write_text(json.dumps(meta))


def _load_checkpoint(path: Path, potentials, states, alive, seeds):
    meta_file, leaves = path / "checkpoint.json", path / "state.eqx"
    if not meta_file.is_file() or not leaves.is_file():
        raise ValueError(f"{str(path)!r} holds no checkpoint (checkpoint.json and state.eqx)")
    meta = json.loads(meta_file.read_text())
    if tuple(meta["seeds"]) != tuple(seeds):
        raise ValueError(
            f"the checkpoint was trained with seeds {meta['seeds']}, not {list(seeds)}"
        )
    try:
        potentials, states, alive = eqx.tree_deserialise_leaves(leaves, (potentials, states, alive))
    except Exception as err:
        raise ValueError(
            f"the checkpoint in {str(path)!r} does not match this problem, scheme and map: {err}"
        ) from None
    history = {k: [np.asarray(r) for r in v] for k, v in meta["history"].items()}
    history["step"] = [int(v) for v in meta["history"]["step"]]
    return potentials, states, alive, np.asarray(meta["stopped_at"]), int(meta["step"]), history


def _finite_tree(tree) -> Array:
    leaves = jax.tree_util.tree_leaves(eqx.filter(tree, eqx.is_inexact_array))
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(leaf)) for leaf in leaves]))


def final_metrics(problem: Problem, potentials: Potential, keys: Array, n: int) -> dict:
    """:func:`~mongeflow.metrics.evaluate` for each seed of stacked ``potentials``.

    One seed after another (``lax.map``), not ``vmap``: for 10⁴ × 10⁴ energy distances the
    batched matrix products are several times slower on CPU than the sequential ones.
    """
    params, static = eqx.partition(potentials, eqx.is_array)

    @jax.jit
    def run(params, keys):
        def one(args):
            p, k = args
            return evaluate(problem, eqx.combine(p, static), k, n)

        return jax.lax.map(one, (params, keys))

    return run(params, keys)


def fit(
    problem: Problem | str | np.ndarray,
    scheme: Scheme | str = "natural",
    potential: Potential | Callable[[Array], Potential] | None = None,
    *,
    target: Target | str = "gaussian",
    standardize: bool = False,
    divergence=None,
    steps: int | None = None,
    batch_size: int = 256,
    seed: int | Sequence[int] = 0,
    dim: int | None = None,
    log_every: int | None = None,
    eval_size: int = 2000,
    final_eval_size: int = 10_000,
    checkpoint: str | Path | None = None,
    checkpoint_every: int | None = None,
    resume: bool = False,
    progress: bool = True,
) -> FitResult:
    """Learn the Monge map of ``problem`` with ``scheme``, for one or many seeds at once.

    Args:
        problem: a :class:`Problem`, a registered problem name (with ``dim``), or data: an
            array ``[N, d]`` of source samples (then ``target`` and ``standardize`` apply).
        target: for data: a :class:`Target` or a specification (``"gaussian"``,
            ``"gaussian:MEAN.npy,COV.npy"``, ``"FILE.py:NAME"``; see
            :func:`mongeflow.io.parse_target`).
        standardize: for data: train on z = (x − mean)/s with s the data's overall standard
            deviation (one scale for all coordinates, which keeps the map a Brenier map); the
            result still maps x in the data's units.
        scheme: a :class:`Scheme` or a registered scheme name (default settings).
        potential: a potential (every seed starts from it), a factory ``key -> potential``
            (each seed initialised from its own key), or ``None`` for
            :func:`default_potential`.
        divergence: the lifted divergence; default ``KL`` with the exact log-det gradient
            and, for the velocity, the exact score when the source density is known, else
            the self-entropic-OT score.
        steps: outer steps (default: the scheme's ``default_steps``).
        batch_size: mini-batch size n (a fresh batch at every step).
        seed: an int, or a sequence of ints trained side by side in one ``vmap``-ed program.
        log_every: steps between history records (default: about 20 records).
        eval_size: samples per side for the history's metrics.
        final_eval_size: samples per side for the final metrics (SPEC §5 uses 10⁴); 0 skips
            them (``metrics`` is then empty).
        checkpoint: a directory: the training state is written there every
            ``checkpoint_every`` steps (default: at every history record) and at the end, and
            on Ctrl-C before stopping.
        resume: continue from the state in ``checkpoint`` (same problem, scheme, potential
            and seeds); the result equals an uninterrupted run with the same settings.
            ``steps`` is the total, so a finished run can also be extended.
        progress: show a progress bar.

    Returns:
        A :class:`FitResult`.

    Example:
        >>> import mongeflow as mf
        >>> res = mf.fit("gaussian", "natural", dim=2, steps=5, progress=False)
        >>> res.metrics["l2_uvp"].shape
        (1,)
    """
    shift, scale, target_record = None, 1.0, None
    if isinstance(problem, str):
        problem = get_problem(problem, dim=dim)
    elif not isinstance(problem, Problem):
        from mongeflow.io import check_samples, parse_target, target_record_of

        data = check_samples(problem)
        if standardize:
            shift = data.mean(axis=0)
            scale = float(np.sqrt(np.mean(np.sum((data - shift) ** 2, axis=1)) / data.shape[1]))
            if not scale > 0:
                raise ValueError("cannot standardise data whose samples are all equal")
            data = (data - shift) / scale
        if isinstance(target, str):
            target, target_record = parse_target(target, data.shape[1], data)
        else:
            target_record = target_record_of(target)
        if target.dim != data.shape[1]:
            raise ValueError(
                f"the data have dimension {data.shape[1]} but the target has {target.dim}"
            )
        dtype = jnp.zeros(()).dtype
        problem = Problem("data", EmpiricalSource(jnp.asarray(data, dtype)), target)
    if isinstance(scheme, str):
        scheme = get_scheme(scheme)
    steps = int(scheme.default_steps if steps is None else steps)
    if steps < 1:
        raise ValueError(f"steps must be ≥ 1, got {steps}")
    if batch_size < 2:
        raise ValueError(f"batch_size must be ≥ 2, got {batch_size}")
    seeds = (seed,) if isinstance(seed, int) else tuple(int(s) for s in seed)
    if not seeds:
        raise ValueError("at least one seed is needed")
    if divergence is None:
        known = problem.source.has_log_prob
        divergence = KL(
            problem.target,
            problem.source if known else None,
            gradient="logdet",
            velocity_estimator="exact" if known else "entropic",
        )
    if potential is None:
        potential = default_potential(problem.dim)
    make = potential if not isinstance(potential, Potential) else (lambda _key: potential)

    log_every = int(log_every or max(1, steps // 20))
    task = Task(divergence, lambda key: problem.source.sample(key, batch_size))
    keys = jnp.stack([jax.random.key_data(jax.random.key(s)) for s in seeds])
    keys = jax.vmap(lambda k: jax.random.split(jax.random.wrap_key_data(k), 3))(keys)
    init_keys, train_keys, eval_keys = keys[:, 0], keys[:, 1], keys[:, 2]

    potentials = eqx.filter_vmap(make)(init_keys)
    states = eqx.filter_vmap(scheme.init)(potentials)
    var_key = jax.random.key(12345)
    x_eval, true_eval = source_with_map(problem, jax.random.fold_in(var_key, 1), eval_size)
    y_eval = (
        problem.target.sample(jax.random.fold_in(var_key, 2), eval_size)
        if problem.target.can_sample
        else None
    )
    variance = target_variance(problem, var_key) if true_eval is not None else None

    @eqx.filter_jit
    def run_chunk(potentials, states, goods, alive, first_step, length_marker):
        """``length`` steps of every seed. ``goods`` holds, per seed, the last (potential,
        state) whose loss was finite: a seed whose loss or map turns non-finite stops there
        and falls back to it (a map can have finite parameters and still overflow, which
        only the next loss shows)."""
        length = length_marker.shape[0]

        def one_seed(phi, state, good, alive, key):
            def body(carry, i):
                phi, state, good, alive = carry
                new_phi, new_state, loss = scheme.step(
                    phi, state, task, jax.random.fold_in(key, first_step + i)
                )
                loss_ok = alive & jnp.isfinite(loss)
                ok = loss_ok & _finite_tree(new_phi)
                pick = lambda flag, new, old: jax.tree_util.tree_map(
                    lambda a, b: jnp.where(flag, a, b) if eqx.is_array(a) else a, new, old
                )
                good = pick(loss_ok, (phi, state), good)
                phi, state = pick(ok, (new_phi, new_state), good)
                return (phi, state, good, ok), jnp.where(ok, loss, jnp.nan)

            (phi, state, good, alive), losses = jax.lax.scan(
                body, (phi, state, good, alive), jnp.arange(length)
            )
            return phi, state, good, alive, losses

        if scheme.seeds_in_parallel or len(seeds) == 1:
            return eqx.filter_vmap(one_seed)(potentials, states, goods, alive, train_keys)
        # one seed after another (see Scheme.seeds_in_parallel)
        arrays, static = eqx.partition((potentials, states, goods), eqx.is_array)

        def sequential(args):
            arr, a, k = args
            phi, state, good, a, losses = one_seed(*eqx.combine(arr, static), a, k)
            return eqx.filter((phi, state, good), eqx.is_array), a, losses

        arrays, alive, losses = jax.lax.map(sequential, (arrays, alive, train_keys))
        potentials, states, goods = eqx.combine(arrays, static)
        return potentials, states, goods, alive, losses

    @eqx.filter_jit
    def eval_chunk(potentials, x_eval, y_eval, true_eval, variance):
        # the evaluation samples are arguments, not constants, so XLA does not fold them
        def one(phi):
            mapped = transport(phi, x_eval)
            out = {}
            if y_eval is not None:
                out["energy_distance"] = energy_distance(mapped, y_eval)
            if true_eval is not None:
                out["l2_uvp"] = l2_uvp(mapped, true_eval, variance)
            return out

        return eqx.filter_vmap(one)(potentials)

    history: dict[str, list] = {"step": [], "loss": [], "time_s": []}
    alive = jnp.ones(len(seeds), bool)
    stopped_at = np.full(len(seeds), -1)
    done = 0
    if checkpoint is not None:
        checkpoint = Path(checkpoint)
    if resume:
        if checkpoint is None:
            raise ValueError("resume=True needs the checkpoint directory")
        potentials, states, alive, stopped_at, done, history = _load_checkpoint(
            checkpoint, potentials, states, alive, seeds
        )
        if done > steps:
            raise ValueError(f"the checkpoint is at step {done}, beyond steps={steps}")
    goods = (potentials, states)  # per seed, the last (potential, state) with a finite loss
    every = int(checkpoint_every or log_every)
    last_saved = done
    label = f"{type(scheme).__name__.lower()} on {problem.name}"
    bar = ProgressBar(progress, steps, label, completed=done)
    start = time.perf_counter()
    try:
        with bar:
            while done < steps:
                length = min(log_every, steps - done)
                potentials, states, goods, alive, losses = run_chunk(
                    potentials, states, goods, alive, jnp.asarray(done), jnp.zeros(length)
                )
                losses = np.asarray(losses)
                alive_np = np.asarray(alive)
                for s in np.flatnonzero(~alive_np & (stopped_at < 0)):
                    bad = np.flatnonzero(~np.isfinite(losses[s]))
                    stopped_at[s] = done + (int(bad[0]) if bad.size else 0)
                done += length
                history["step"].append(done)
                with warnings.catch_warnings():  # a seed stopped for the whole chunk: NaN
                    warnings.simplefilter("ignore", RuntimeWarning)
                    history["loss"].append(np.nanmean(losses, 1))
                history["time_s"].append(np.full(len(seeds), time.perf_counter() - start))
                for k, v in eval_chunk(potentials, x_eval, y_eval, true_eval, variance).items():
                    history.setdefault(k, []).append(np.asarray(v))
                bar.advance(length, _progress_info(history))
                finished = done == steps or not alive_np.any()
                if checkpoint is not None and (done - last_saved >= every or finished):
                    _save_checkpoint(
                        checkpoint, potentials, states, alive, stopped_at, done, history, seeds
                    )
                    last_saved = done
                if finished:  # every seed stopped on a non-finite value: nothing left to run
                    break
    except KeyboardInterrupt:
        if checkpoint is not None and done > last_saved:
            _save_checkpoint(
                checkpoint, potentials, states, alive, stopped_at, done, history, seeds
            )
        raise FitInterrupted(done, checkpoint) from None
    wall = time.perf_counter() - start

    final = (
        final_metrics(problem, potentials, eval_keys, final_eval_size)
        if final_eval_size > 0
        else {}
    )
    return FitResult(
        potentials=potentials,
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
        shift=shift,
        scale=scale,
        target_record=target_record,
    )


def _progress_info(history: dict) -> str:
    with warnings.catch_warnings():  # every seed stopped: an all-NaN loss
        warnings.simplefilter("ignore", RuntimeWarning)
        info = f"loss {np.nanmean(history['loss'][-1]):.4g}"
    for k in ("l2_uvp", "energy_distance"):
        if k in history:
            info += f"  {k} {np.mean(history[k][-1]):.4g}"
    return info
