"""The rows the benchmarks share: the identity, the library's fits and the outside solvers.

Each is a :class:`~mongeflow.bench.harness.Row`: ``train(setting)`` trains within the row's
budget on what the :class:`~mongeflow.bench.harness.Setting` poses and returns its map.

- :class:`IdentityRow`: T = id.
- :class:`FitRow`: :func:`~mongeflow.fit.fit` with a scheme, a divergence and a step
  budget (``scheme=None``: ``auto``, the choice of :func:`mongeflow.auto.choose`); its
  curve is the fit's history (L2-UVP on its own held-out pairs), its warnings are kept.
- :class:`EntropicRow`: OTT-JAX's entropic map estimator (Pooladian & Niles-Weed 2021), the
  barycentric projection x ↦ x − ½∇f_ε(x) of a Sinkhorn solve at OTT's default ε (5 % of
  the cost matrix's standard deviation).
- :class:`NeuralDualRow`: OTT-JAX's W2NeuralDual (Makkuva et al. 2020, with the conjugate
  fine-tuning and amortisation of Amos 2023) with all its defaults, trained once on fresh
  batches of the standardised posed problem, its state at the end of each budget a row.
  Its map is T(x) = ∇f((x − m)/s): f is the source side's potential, the loss
  E_μ0 f + E_γ f* is minimised, and ∇f carries μ0 onto γ. OTT's own
  ``to_dual_potentials().transport`` is not used: it pairs the potentials with the cost
  |x − y|², whose twist halves the gradient, and returns (x + ∇f(x))/2 (OTT-JAX 0.6).
- :class:`MongeGapRow`: OTT-JAX's ``MongeGapEstimator`` (Uscidda & Cuturi, ICML 2023) with
  the settings of OTT's Monge-gap tutorial.
- :class:`DriftMLPRow`: the unconstrained drifting baseline of
  :mod:`mongeflow.bench.drift_mlp` (Deng et al. 2026).

The rows trained in chunks (W2NeuralDual, the Monge gap, the drift MLP) go through the one
time-budget loop, :func:`~mongeflow.bench.harness.run_budgets`.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import inspect
import math
import time
import warnings
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from mongeflow.bench.drift_mlp import fit_drift_mlp
from mongeflow.bench.harness import (
    Budget,
    Setting,
    Trained,
    Transport,
    allowing_rank_promotion,
    run_budgets,
)
from mongeflow.divergences import Divergence
from mongeflow.fit import FitWarning, fit
from mongeflow.maps.base import Array, Identity, Potential
from mongeflow.maps.default import auto_widths
from mongeflow.problems import standardize
from mongeflow.schemes import Scheme
from mongeflow.settings import record

IDENTITY, LINEAR, ENTROPIC = "identity", "linear (Bures)", "entropic map (OTT)"
#: W2NeuralDual's batch of each side per iteration (the solver has no batch size of its own)
ND_BATCH = 1024
#: the multiple of W2NeuralDual's default iterations in its second budget
ND_LONG = 4
#: --quick: W2NeuralDual's default budget
QUICK_ND_ITERS = 3
#: the table's label of each W2NeuralDual budget
ND_ROWS = {
    "default": "W2NeuralDual (default budget)",
    "long": f"W2NeuralDual ({ND_LONG}× default budget)",
    "same-time": "W2NeuralDual (auto's wall time)",
}
#: the Monge-gap estimator's settings (OTT-JAX's Monge-gap tutorial; the estimator's default
#: iterations and optimiser)
MG_ITERS = 10_000
MG_BATCH = 256
MG_LEARNING_RATE = 1e-3
MG_RELATIVE_EPSILON_FITTING = 0.1
MG_RELATIVE_EPSILON_GAP = 0.01
MG_STRENGTH = 0.1


def missing_neural_dual() -> str | None:
    """Why the W2NeuralDual rows cannot run (the ``bench`` extra is missing), or ``None``."""
    missing = [m for m in ("flax", "diffrax") if importlib.util.find_spec(m) is None]
    if not missing:
        return None
    return (
        f"the W2NeuralDual rows need {' and '.join(missing)} (OTT-JAX's 'neural' extra): "
        "pip install -e '.[bench]', or leave them out with --methods (without neural-dual)"
    )


def _iterations(k: int) -> str:
    return f"{k} iteration" + ("" if k == 1 else "s")


# --------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class IdentityRow:
    """T = id (φ = ½|x|²); its wall time is 0."""

    name: str = "identity"
    label: str = IDENTITY
    kind: str = "baseline"

    def train(self, setting: Setting) -> Trained:
        return Trained(Identity(), 0.0, "T = id")


@dataclasses.dataclass(frozen=True)
class FitRow:
    """One of the library's fits: :func:`~mongeflow.fit.fit` of ``setting.problem``.

    Attributes:
        name, label: the ``--methods`` name and the table's label.
        scheme, divergence: ``None``: fit's choice (``auto``).
        steps: the budget (``None``: the scheme's ``default_steps``).
        options: further keyword arguments of :func:`~mongeflow.fit.fit` (``eval_size``).
        as_map: the reported map of the fit (default its ``FitResult.map()``).
    """

    name: str
    label: str
    scheme: Scheme | None
    divergence: Divergence | None
    steps: int | None
    options: dict = dataclasses.field(default_factory=dict)
    as_map: Callable[[Any], Any] | None = None
    kind: str = "library"

    def train(self, setting: Setting) -> Trained:
        start = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", FitWarning)
            res = fit(
                setting.problem,
                self.scheme,
                self.divergence,
                steps=self.steps,
                seed=setting.seed,
                final_eval_size=0,  # scored by the harness, on the samples every row shares
                **self.options,
            )
        wall = time.perf_counter() - start
        note = f"{res.last_step} of {res.steps} steps"
        if res.last_step < res.steps and res.early_stop is not None and int(res.early_stop[0]) >= 0:
            note += " (stopped early on a plateau)"
        if int(res.stopped_at[0]) >= 0:
            note += f" (stopped on a non-finite value at step {int(res.stopped_at[0])})"
        ours = [w for w in caught if issubclass(w.category, FitWarning)]
        fit_warnings = sorted({str(w.message) for w in ours})
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
            # the L2-UVP on the fit's own held-out pairs at each record (T* is never trained on)
            "history": history,
        }
        curve = None
        if "l2_uvp" in history:
            curve = {"time_s": [float(t) for t in history["time_s"]], "l2_uvp": history["l2_uvp"]}
        m = res.map() if self.as_map is None else self.as_map(res)
        return Trained(m, wall, note, settings, curve=curve)


# --------------------------------------------------------------------------------------
# OTT-JAX's solvers


@dataclasses.dataclass(frozen=True)
class EntropicRow:
    """OTT-JAX's entropic map from ``n`` samples of each side of ``setting.posed`` (drawn
    with ``key``; ``key=None``: its first ``n`` training rows), at OTT's default ε; its wall
    time is the Sinkhorn solve's (compilation included). The map is in the posed
    coordinates."""

    n: int
    key: Array | None = None
    name: str = "entropic-map"
    label: str = ENTROPIC
    kind: str = "outside"

    def train(self, setting: Setting) -> Trained:
        from ott.geometry import pointcloud
        from ott.problems.linear import linear_problem
        from ott.solvers.linear import sinkhorn

        posed = setting.posed
        if self.key is None:
            x, y = posed.source.data, posed.target.data
            n = int(min(x.shape[0], y.shape[0], self.n))
            x, y = x[:n], y[:n]
        else:
            n = self.n
            k_x, k_y = jax.random.split(self.key)
            x, y = posed.source.sample(k_x, n), posed.target.sample(k_y, n)
        with jax.numpy_rank_promotion("allow"):  # OTT-JAX broadcasts implicitly
            start = time.perf_counter()
            geom = pointcloud.PointCloud(x, y)
            out = sinkhorn.Sinkhorn(max_iterations=5000)(linear_problem.LinearProblem(geom))
            jax.block_until_ready(out.potentials)
            wall = time.perf_counter() - start
            dual = out.to_dual_potentials()
        # x − ∇h*(∇f(x)) with h = |·|²: the barycentric projection, as dual.transport
        one = lambda xi: xi - 0.5 * jax.grad(dual.f)(xi)
        m = Transport(allowing_rank_promotion(dual.transport), allowing_rank_promotion(one))
        epsilon = float(geom.epsilon)
        settings = {
            "epsilon": epsilon,
            "n": n,
            "converged": bool(out.converged),
            "sinkhorn_iterations": int(out.n_iters),
        }
        note = f"ε = {epsilon:.3g} (OTT's default), {n} samples of each side"
        return Trained(m, wall, note, settings, posed=True)


class NeuralDualPotential(Potential):
    """W2NeuralDual's source potential f (a Flax ICNN) as a potential: T = ∇f."""

    params: Any
    value: Callable = eqx.field(static=True)  # params -> (x -> f(x))

    def __call__(self, x: Array) -> Array:
        with jax.numpy_rank_promotion("allow"):  # OTT-JAX's layers broadcast implicitly
            return self.value(self.params)(x)


def neural_dual_budgets(quick: bool, auto_seconds: float | None) -> list[Budget]:
    """W2NeuralDual's budgets: its default iterations (``quick``: :data:`QUICK_ND_ITERS`),
    :data:`ND_LONG` × those, and ``auto``'s wall time when ``auto`` ran."""
    if quick:
        default = QUICK_ND_ITERS
    else:
        from ott.neural.methods.neuraldual import W2NeuralDual

        default = inspect.signature(W2NeuralDual).parameters["num_train_iters"].default
    budgets = [Budget("default", default, None), Budget("long", ND_LONG * default, None)]
    if auto_seconds is not None:
        budgets.append(Budget("same-time", None, auto_seconds))
    return budgets


@dataclasses.dataclass(frozen=True)
class NeuralDualRow:
    """OTT-JAX's W2NeuralDual with all its defaults, trained once on ``batch`` fresh samples
    of each side of ``standardize(setting.posed)`` per iteration (as
    :func:`~mongeflow.fit.fit` poses a problem: x − m over one overall scale s), in compiled
    chunks through :func:`~mongeflow.bench.harness.run_budgets`: its state at the end of
    each budget (:func:`neural_dual_budgets`; ``auto``'s wall time when ``auto`` ran before)
    is a row, each also stopped at the setting's time cap. The clock stops while the curve
    (the held-out L2-UVP after each chunk) is scored; the curve is kept once, with the
    longest run."""

    key: Array
    quick: bool = False
    batch: int = ND_BATCH
    solver_kwargs: dict | None = None
    name: str = "neural-dual"
    label: str = "W2NeuralDual"
    kind: str = "outside"
    after: tuple[str, ...] = ("auto",)

    def train(self, setting: Setting) -> dict[str, Trained]:
        from ott.neural.methods.neuraldual import W2NeuralDual

        # the standardised potential in the units of setting.posed: Φ(x) = s φ((x − m)/s)
        from mongeflow.bench.maps import in_units

        auto = setting.done.get("auto")
        budgets = neural_dual_budgets(self.quick, None if auto is None else auto.wall_time_s)
        time_cap, batch = setting.time_cap, self.batch
        posed = standardize(setting.posed)
        k_init, k_train = jax.random.split(self.key)
        with warnings.catch_warnings(), jax.numpy_rank_promotion("allow"):
            warnings.simplefilter("ignore", UserWarning)  # its ICNN's pos_weights differ
            solver = W2NeuralDual(posed.dim, rng=k_init, **(self.solver_kwargs or {}))
        step = solver.train_step_parallel

        @jax.jit
        def chunk(state_f, state_g, first, count):
            def body(i, carry):
                state_f, state_g, _ = carry
                k_x, k_y = jax.random.split(jax.random.fold_in(k_train, first + i))
                data = {
                    "source": posed.source.sample(k_x, batch),
                    "target": posed.target.sample(k_y, batch),
                }
                state_f, state_g, loss, *_ = step(state_f, state_g, data)
                return state_f, state_g, loss

            return jax.lax.fori_loop(0, count, body, (state_f, state_g, jnp.zeros(())))

        value = solver.state_f.potential_value_fn
        as_potential = lambda params: in_units(NeuralDualPotential(params, value), posed)
        states = [(solver.state_f, solver.state_g)]

        def advance(first: int, count: int):
            state_f, state_g, loss = chunk(*states[-1], first, count)
            jax.block_until_ready(loss)
            states[-1] = (state_f, state_g)
            return state_f.params

        curve_point = setting.curve_scorer(as_potential)
        with jax.numpy_rank_promotion("allow"):  # OTT-JAX broadcasts implicitly
            reached, curve = run_budgets(advance, curve_point, budgets, time_cap)

        config = {
            "icnn_widths": list(solver.neural_f.dim_hidden),
            "pos_weights": solver.pos_weights,
            "optimizer": "adam(rate 1e-4, b1 0.5, b2 0.9) on f and g (W2NeuralDual's default)",
            "conjugate_solver": repr(solver.conjugate_solver),
            "amortization_loss": solver.amortization_loss,
            "parallel_updates": solver.parallel_updates,
            "batch_size": batch,
            "data": "fresh batches of the standardised source and of the target each iteration",
            **(self.solver_kwargs or {}),
        }
        plain = (int, float, str, bool, list)
        config = {k: v if isinstance(v, plain) else repr(v) for k, v in config.items()}
        last = max(reached.values(), key=lambda r: r["points"])
        out = {}
        for b in budgets:
            r = reached[b.name]
            if r["capped"]:
                of = f" of {b.iterations}" if b.iterations else ""
                note = f"stopped at the {time_cap:g} s cap after {r['iterations']}{of} iterations"
            elif b.iterations is not None and r["iterations"] >= b.iterations:
                note = _iterations(r["iterations"])
            else:
                note = (
                    f"{_iterations(r['iterations'])} in {r['time']:.1f} s (auto: {b.seconds:.1f} s)"
                )
            settings = {
                **config,
                "iterations_budget": b.iterations,
                "seconds_budget": b.seconds,
                "time_cap_s": time_cap,
                "iterations": r["iterations"],
                "stopped_at_cap": r["capped"],
            }
            points = r["points"]
            out[ND_ROWS.get(b.name, b.name)] = Trained(
                as_potential(r["state"]),
                r["time"],
                note,
                settings,
                curve={"time_s": curve["time_s"][:points], "l2_uvp": curve["value"][:points]},
                show_curve=r is last,  # one curve per training run, drawn once
                posed=True,
            )
        return out


@dataclasses.dataclass(frozen=True)
class MongeGapRow:
    """OTT-JAX's ``MongeGapEstimator`` (Uscidda & Cuturi 2023) on batches of ``batch``
    training rows of ``setting.posed`` (drawn with replacement): an MLP map x ↦ x + MLP(x)
    (OTT's ``PotentialMLP(is_potential=False)``, hidden widths
    :func:`~mongeflow.maps.default.auto_widths`, those of the library's default ICNN for a
    loss (at 32 < d ≤ 64 twice the semi-dual game's), GELU) minimising the Sinkhorn
    divergence to the target batch (ε = 0.1 × the mean cost of a target batch) plus 0.1 ×
    the Monge gap for the squared Euclidean cost (ε = 0.01 × the mean source–target cost),
    Adam (rate 10⁻³); trained in compiled chunks
    (:func:`~mongeflow.bench.harness.run_budgets`), stopped at ``iterations`` or at the
    setting's time cap."""

    key: Array
    iterations: int = MG_ITERS
    batch: int = MG_BATCH
    name: str = "monge-gap"
    label: str = "Monge gap (OTT)"
    kind: str = "outside"

    def train(self, setting: Setting) -> Trained:
        import optax
        from flax import linen as nn
        from ott.geometry import costs, pointcloud
        from ott.neural.methods.monge_gap import MongeGapEstimator, monge_gap_from_samples
        from ott.neural.networks.potentials import PotentialMLP
        from ott.tools import sinkhorn_divergence

        iterations, batch, time_cap = self.iterations, self.batch, setting.time_cap
        x_train, y_train = setting.posed.source.data, setting.posed.target.data
        dim = int(x_train.shape[1])
        k_init, k_train, k_scale = jax.random.split(self.key, 3)

        def draw(k, first):
            k_x, k_y = jax.random.split(jax.random.fold_in(k, first))
            xb = x_train[jax.random.randint(k_x, (batch,), 0, x_train.shape[0])]
            yb = y_train[jax.random.randint(k_y, (batch,), 0, y_train.shape[0])]
            return xb, yb

        widths = list(auto_widths(dim))
        with jax.numpy_rank_promotion("allow"):  # OTT-JAX broadcasts implicitly
            xb, yb = draw(k_scale, 0)
            eps_fit = MG_RELATIVE_EPSILON_FITTING * float(
                pointcloud.PointCloud(yb).mean_cost_matrix
            )
            eps_gap = MG_RELATIVE_EPSILON_GAP * float(
                pointcloud.PointCloud(xb, yb).mean_cost_matrix
            )

            def fitting_loss(mapped, target):
                div, out = sinkhorn_divergence.sinkdiv(
                    mapped, target, epsilon=eps_fit, static_b=True
                )
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

        budget = Budget("default", iterations, None)
        with jax.numpy_rank_promotion("allow"):  # no curve: nothing is scored while training
            reached, _ = run_budgets(advance, lambda _: math.nan, [budget], time_cap)
        r = reached["default"]
        params = r["state"]
        m = allowing_rank_promotion(lambda z: apply({"params": params}, z))
        note = f"{r['iterations']} iterations"
        if r["capped"]:
            note = (
                f"stopped at the {time_cap:g} s cap after {r['iterations']} of "
                f"{iterations} iterations"
            )
        settings = {
            "model": f"PotentialMLP(dim_hidden={widths}, is_potential=False, act_fn=gelu)",
            "optimizer": f"adam({MG_LEARNING_RATE:g})",
            "fitting_loss": f"sinkdiv, epsilon {eps_fit:.4g} ({MG_RELATIVE_EPSILON_FITTING:g} "
            "× the mean cost of a target batch)",
            "regularizer": f"monge gap, squared Euclidean cost, epsilon {eps_gap:.4g} "
            f"({MG_RELATIVE_EPSILON_GAP:g} × the mean source-target cost)",
            "regularizer_strength": MG_STRENGTH,
            "batch_size": batch,
            "iterations_budget": iterations,
            "iterations": r["iterations"],
            "time_cap_s": time_cap,
            "stopped_at_cap": r["capped"],
        }
        return Trained(m, r["time"], note, settings, posed=True)


@dataclasses.dataclass(frozen=True)
class DriftMLPRow:
    """The unconstrained drifting baseline (:mod:`mongeflow.bench.drift_mlp`) on the
    training rows of ``setting.posed``, ``steps`` steps."""

    steps: int
    name: str = "drift-mlp"
    label: str = "drift MLP (unconstrained)"
    kind: str = "unconstrained"

    def train(self, setting: Setting) -> Trained:
        posed = setting.posed
        res = fit_drift_mlp(
            posed.source.data, posed.target.data, steps=self.steps, seed=setting.seed
        )
        note = f"{res.steps} steps; x ↦ x + MLP(x), no convexity"
        return Trained(res.map.transport, res.wall_time_s, note, res.settings, posed=True)
