"""The driver: one jitted program per run, ``lax.scan`` over steps, ``vmap`` over seeds."""

from __future__ import annotations

import dataclasses
import time
import warnings
from collections.abc import Callable, Sequence
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
            interval) and, when available, ``energy_distance`` and ``l2_uvp`` on a held-out
            evaluation sample.
        metrics: final metrics per seed (each ``[S]``) on fresh samples: ``energy_distance``,
            ``l2``, ``l2_uvp``, ``kl``, ``transport_cost`` when available.
        stopped_at: per seed, the step at which a non-finite loss or map stopped it (its
            last finite map is kept), or −1.
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

    def transport(self, x, seed_index: int = 0) -> Array:
        """T(x) = ∇φ(x) for ``x: [n, d]`` with the map of ``seeds[seed_index]``."""
        return transport(self.select(seed_index), jnp.asarray(x))

    def summary(self) -> dict[str, float]:
        """Mean of each final metric over seeds."""
        return {k: float(np.mean(v)) for k, v in self.metrics.items()}


def _finite_tree(tree) -> Array:
    leaves = jax.tree_util.tree_leaves(eqx.filter(tree, eqx.is_inexact_array))
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(leaf)) for leaf in leaves]))


def fit(
    problem: Problem | str,
    scheme: Scheme | str = "natural",
    potential: Potential | Callable[[Array], Potential] | None = None,
    *,
    divergence=None,
    steps: int | None = None,
    batch_size: int = 256,
    seed: int | Sequence[int] = 0,
    dim: int | None = None,
    log_every: int | None = None,
    eval_size: int = 2000,
    final_eval_size: int = 10_000,
    progress: bool = True,
) -> FitResult:
    """Learn the Monge map of ``problem`` with ``scheme``, for one or many seeds at once.

    Args:
        problem: a :class:`Problem` or a registered problem name (with ``dim``).
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
        final_eval_size: samples per side for the final metrics (SPEC §5 uses 10⁴).
        progress: show a progress bar.

    Returns:
        A :class:`FitResult`.

    Example:
        >>> import mongeflow as mf
        >>> res = mf.fit("gaussian", "natural", dim=2, steps=5, progress=False)
        >>> res.metrics["l2_uvp"].shape
        (1,)
    """
    if isinstance(problem, str):
        problem = get_problem(problem, dim=dim)
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
    def run_chunk(potentials, states, alive, first_step, length_marker):
        length = length_marker.shape[0]

        def one_seed(phi, state, alive, key):
            def body(carry, i):
                phi, state, alive = carry
                new_phi, new_state, loss = scheme.step(
                    phi, state, task, jax.random.fold_in(key, first_step + i)
                )
                ok = alive & jnp.isfinite(loss) & _finite_tree(new_phi)
                keep = lambda new, old: jax.tree_util.tree_map(
                    lambda a, b: jnp.where(ok, a, b) if eqx.is_array(a) else a, new, old
                )
                return (keep(new_phi, phi), keep(new_state, state), ok), jnp.where(
                    ok, loss, jnp.nan
                )

            (phi, state, alive), losses = jax.lax.scan(
                body, (phi, state, alive), jnp.arange(length)
            )
            return phi, state, alive, losses

        return eqx.filter_vmap(one_seed)(potentials, states, alive, train_keys)

    @eqx.filter_jit
    def eval_chunk(potentials):
        def one(phi):
            mapped = transport(phi, x_eval)
            out = {}
            if y_eval is not None:
                out["energy_distance"] = energy_distance(mapped, y_eval)
            if true_eval is not None:
                out["l2_uvp"] = l2_uvp(mapped, true_eval, variance)
            return out

        return eqx.filter_vmap(one)(potentials)

    history: dict[str, list] = {"step": [], "loss": []}
    alive = jnp.ones(len(seeds), bool)
    stopped_at = np.full(len(seeds), -1)
    bar = _progress(progress, steps, f"{type(scheme).__name__.lower()} on {problem.name}")
    start = time.perf_counter()
    done = 0
    with bar:
        while done < steps:
            length = min(log_every, steps - done)
            potentials, states, alive, losses = run_chunk(
                potentials, states, alive, jnp.asarray(done), jnp.zeros(length)
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
            for k, v in eval_chunk(potentials).items():
                history.setdefault(k, []).append(np.asarray(v))
            bar.advance(length, history)
    wall = time.perf_counter() - start

    final = eqx.filter_jit(
        eqx.filter_vmap(lambda phi, k: evaluate(problem, phi, k, final_eval_size))
    )(potentials, eval_keys)
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
    )


class _progress:
    """A Rich progress bar showing the loss and the latest metric (no-op when disabled)."""

    def __init__(self, enabled: bool, total: int, label: str):
        self.enabled = enabled
        self.total = total
        self.label = label

    def __enter__(self):
        if self.enabled:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self.bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                TextColumn("{task.fields[info]}"),
                transient=True,
            )
            self.bar.__enter__()
            self.task = self.bar.add_task(self.label, total=self.total, info="compiling…")
        return self

    def advance(self, n: int, history: dict):
        if not self.enabled:
            return
        info = f"loss {np.nanmean(history['loss'][-1]):.4g}"
        for k in ("l2_uvp", "energy_distance"):
            if k in history:
                info += f"  {k} {np.mean(history[k][-1]):.4g}"
        self.bar.update(self.task, advance=n, info=info)

    def __exit__(self, *exc):
        if self.enabled:
            self.bar.__exit__(*exc)
        return False
