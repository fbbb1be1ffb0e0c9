"""Problems with a known Monge map: the library's fits against outside solvers, by wall time.

``mongeflow bench maps --out DIR`` runs ``dense-potential`` (source (∇ψ)#N(0, I), target
N(0, I), T* = (∇ψ)⁻¹ exactly; any registered problem with a known map can be named with
``--problems``) at d ∈ {2, 8, 16, 32, 64}, one seed, and writes ``DIR/results.json``,
``DIR/table.md`` (a table per problem and d) and ``DIR/l2_uvp_vs_time.png``.

Every row is scored on the same held-out samples: :data:`N_EVAL` exact pairs (x, T*(x)) and
:data:`N_EVAL` samples of γ, drawn from one key that no row trains on. The columns:

- L2-UVP = 100 E|T(x) − T*(x)|² / Var(γ) (Korotin et al. 2021), in percent;
- the energy distance of T#μ0 to the held-out samples of γ;
- the held-out objective F = mean V(T(x)) − mean log det DT(x) (γ ∝ e^{−V}), in the
  data's units, the figure every scheme minimises: its differences between rows are
  differences of KL(T#μ0 ‖ γ);
- the wall time to build the map (training, compilation included; the scoring excluded;
  0 for the identity) and, where a curve was recorded, the times at which L2-UVP first
  reached 2 % and 1 % (:func:`~mongeflow.bench.common.time_to`).

The rows:

- ``identity`` (T = id) and ``linear (Bures)`` (:func:`~mongeflow.metrics.linear_baseline`:
  the affine Monge map from the Gaussian with the moments of 10⁴ source samples to γ's).
- ``entropic map (OTT)``: OTT-JAX's entropic map estimator (Pooladian & Niles-Weed 2021),
  the barycentric projection x ↦ x − ½∇f_ε(x) of a Sinkhorn solve between :data:`N_TRAIN`
  samples of μ0 and :data:`N_TRAIN` of γ, at OTT's default ε (5 % of the cost matrix's
  standard deviation). Its F uses the Jacobian of that map.
- ``W2NeuralDual (...)``: OTT-JAX's neural dual solver (Makkuva et al. 2020, with the
  conjugate fine-tuning and amortisation of Amos 2023) with all its defaults: ICNN
  potentials f and g of widths 64 × 4 with positive weights, Adam (rate 10⁻⁴,
  β = (0.5, 0.9)) on both, parallel updates, regression amortisation of g, and each target
  point's conjugate refined by L-BFGS (at most 20 iterations of at most 20 backtracking
  steps, tolerance 10⁻⁵). The solver takes its batches from the caller: here
  :data:`ND_BATCH` fresh samples of the standardised μ0 (posed as
  :func:`~mongeflow.fit.fit` poses it: x − m over one overall scale s) and of γ at every
  iteration, as the library's fits draw theirs. Its map is T(x) = ∇f((x − m)/s): f is the
  source side's potential, the loss E_μ0 f + E_γ f* is minimised, and ∇f carries μ0 onto
  γ (checked on the ``gaussian`` problem, whose Bures map is known). OTT's own
  ``to_dual_potentials().transport`` is not used: it pairs the potentials with the cost
  |x − y|², whose twist halves the gradient, and returns (x + ∇f(x))/2 (OTT-JAX 0.6).
  OTT's ICNN does not start at the identity (its initial map is ~10⁵ % L2-UVP on these
  problems), so a short run stays far off.
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
import importlib.util
import inspect
import json
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp

from mongeflow import schemes
from mongeflow.auto import AUTO_STEPS
from mongeflow.bench.common import finite_or_none, machine, time_to
from mongeflow.bench.report import maps_figure, maps_table
from mongeflow.divergences import KL
from mongeflow.fit import fit
from mongeflow.maps.base import Array, Identity, Potential, log_det
from mongeflow.metrics import (
    energy_distance,
    evaluate,
    l2_uvp,
    linear_baseline,
    source_with_map,
    target_samples,
    target_variance,
)
from mongeflow.problems import Problem, get_problem
from mongeflow.problems.base import standardize
from mongeflow.progress import ProgressBar
from mongeflow.schemes import Scheme
from mongeflow.settings import record

PROBLEMS = ("dense-potential",)
DIMS = (2, 8, 16, 32, 64)
#: held-out pairs (x, T*(x)) and samples of γ, the same for every row
N_EVAL = 2000
#: samples of each side in the Sinkhorn solve of the entropic map
N_TRAIN = 4000
#: W2NeuralDual's batch of each side per iteration (the solver has no batch size of its own)
ND_BATCH = 1024
#: the multiple of W2NeuralDual's default iterations in its second budget
ND_LONG = 4
#: seconds after which every W2NeuralDual budget stops
TIME_CAP = 300.0
#: the longest a compiled chunk of W2NeuralDual iterations runs between two checks
CHUNK_SECONDS = 2.0
#: the levels of the "time to" columns, in % L2-UVP
LEVELS = (2.0, 1.0)
#: row groups that are not registered schemes, in the order of the table
GROUPS = ("identity", "linear", "entropic-map", "neural-dual", "auto")
#: the divergence of every fit (fit's default: the KL with the exact log-det gradient)
DIVERGENCE = KL()
#: --quick: a fraction of each fit's steps, W2NeuralDual's iterations and batch, samples
QUICK_SCALE = 0.02
QUICK_ND_ITERS = 3
QUICK_ND_BATCH = 16
QUICK_N = 300

IDENTITY, LINEAR, ENTROPIC = "identity", "linear (Bures)", "entropic map (OTT)"
ND_ROWS = {
    "default": "W2NeuralDual (default budget)",
    "long": f"W2NeuralDual ({ND_LONG}× default budget)",
    "same-time": "W2NeuralDual (auto's wall time)",
}


@dataclasses.dataclass(frozen=True)
class Method:
    """One of the library's fits: ``scheme=None`` is ``auto``; ``steps=None`` the default."""

    name: str
    scheme: Scheme | None
    steps: int | None


def methods(scale: float | None = None) -> list[Method]:
    """``auto``, then every registered scheme in the registry's order at its registered value
    and ``default_steps`` (× ``scale`` when given: the quick mode)."""
    steps = lambda n: None if scale is None else max(1, round(n * scale))
    out = [Method("auto", None, steps(AUTO_STEPS))]
    for name, scheme in schemes.SCHEMES.items():
        out.append(Method(name, scheme, steps(scheme.default_steps)))
    return out


def missing_neural_dual() -> str | None:
    """Why the W2NeuralDual rows cannot run (the ``bench`` extra is missing), or ``None``."""
    missing = [m for m in ("flax", "diffrax") if importlib.util.find_spec(m) is None]
    if not missing:
        return None
    return (
        f"the W2NeuralDual rows need {' and '.join(missing)} (OTT-JAX's 'neural' extra): "
        "pip install -e '.[bench]', or leave them out with --methods (without neural-dual)"
    )


def method_names() -> list[str]:
    """What ``--methods`` accepts: the row groups and the registered schemes."""
    return [*GROUPS, *schemes.SCHEMES]


# --------------------------------------------------------------------------------------
# maps as potentials in the data's units, and their figures on the held-out samples


class InUnits(Potential):
    """Φ(x) = s · φ((x − m)/s): a potential trained on standardised points z = (x − m)/s,
    in the data's units. ∇Φ(x) = ∇φ(z), ∇²Φ(x) = ∇²φ(z)/s; Φ is convex when φ is.

    When the target was standardised too, w = (y − m1)/s (``target_shift`` = m1), the map
    is m1 + s ∇φ(z): Φ(x) = s² φ((x − m)/s) + m1ᵀx, still convex.
    """

    potential: Potential
    shift: Array
    scale: Array
    target_shift: Array | None = None

    def __call__(self, x: Array) -> Array:
        z = (x - self.shift) / self.scale
        if self.target_shift is None:
            return self.scale * self.potential(z)
        return self.scale**2 * self.potential(z) + jnp.sum(self.target_shift * x)


class NeuralDualPotential(Potential):
    """W2NeuralDual's source potential f (a Flax ICNN) as a potential: T = ∇f."""

    params: Any
    value: Callable = eqx.field(static=True)  # params -> (x -> f(x))

    def __call__(self, x: Array) -> Array:
        with jax.numpy_rank_promotion("allow"):  # OTT-JAX's layers broadcast implicitly
            return self.value(self.params)(x)


def in_units(potential: Potential, problem: Problem) -> Potential:
    """``potential``, trained on ``problem``, in the units of the problem's data."""
    if problem.shift is None:
        return potential
    return InUnits(
        potential,
        problem.shift,
        jnp.asarray(problem.scale, problem.shift.dtype),
        problem.target_shift,
    )


@eqx.filter_jit
def _evaluate(problem: Problem, potential: Potential, key: Array, n: int) -> dict:
    return evaluate(problem, potential, key, n)


def potential_figures(problem: Problem, potential: Potential, key: Array, n: int) -> dict:
    """L2-UVP, energy distance and F of T = ∇``potential`` on the held-out samples of
    ``key`` (:func:`~mongeflow.metrics.evaluate`)."""
    out = _evaluate(problem, potential, key, n)
    return {
        "l2_uvp": finite_or_none(out["l2_uvp"]),
        "energy_distance": finite_or_none(out["energy_distance"]),
        "objective": finite_or_none(out["objective"]) if "objective" in out else None,
    }


def map_figures(
    problem: Problem,
    transport: Callable[[Array], Array],
    key: Array,
    n: int,
    one: Callable[[Array], Array] | None = None,
) -> dict:
    """The figures of :func:`potential_figures` for a map that is not given by a potential:
    ``transport`` maps a batch ``[n, d]``; ``one`` (one point) gives DT by forward-mode
    differentiation for F (``None``: F is not computed). The samples are those that
    :func:`~mongeflow.metrics.evaluate` draws from ``key``; the Jacobians are taken a few
    points at a time, so a map that reads a large sample (the entropic map) fits in memory.
    """
    k_src, k_tgt, k_var = jax.random.split(key, 3)  # as metrics.evaluate splits it
    x, true = source_with_map(problem, k_src, n)
    y = target_samples(problem, k_tgt, n)
    mapped = transport(x)
    out = {
        "l2_uvp": finite_or_none(l2_uvp(mapped, true, target_variance(problem, k_var))),
        "energy_distance": finite_or_none(energy_distance(mapped, y)),
        "objective": None,
    }
    if one is not None and problem.target.has_potential:

        @jax.jit
        def objective(x, mapped):
            logdet = jax.lax.map(lambda xi: log_det(jax.jacfwd(one)(xi)), x, batch_size=16)
            return jnp.mean(jax.vmap(problem.target.potential)(mapped)) - jnp.mean(logdet)

        out["objective"] = finite_or_none(objective(x, mapped))
    return out


# --------------------------------------------------------------------------------------
# the rows


def _baseline_rows(problem: Problem, key: Array, n: int) -> dict:
    """Identity and the linear (Bures) map; their wall time is the time to build the map."""
    rows = {
        IDENTITY: {
            **potential_figures(problem, Identity(), key, n),
            "wall_time_s": 0.0,
            "note": "T = id",
        }
    }
    start = time.perf_counter()
    linear = linear_baseline(problem, jax.random.fold_in(key, 7))
    wall = time.perf_counter() - start
    rows[LINEAR] = {
        **potential_figures(problem, linear, key, n),
        "wall_time_s": wall,
        "note": "Bures map from the source sample's Gaussian to γ's moments",
    }
    return rows


def entropic_row(
    problem: Problem,
    key: Array,
    eval_key: Array,
    n_train: int,
    n: int,
    *,
    figures: Callable[..., dict] | None = None,
) -> dict:
    """OTT-JAX's entropic map from ``n_train`` samples of each side, OTT's default ε; its
    wall time is the Sinkhorn solve's (compilation included). ``figures`` (default
    :func:`map_figures`) scores the map: another benchmark may score it its own way."""
    from ott.geometry import pointcloud
    from ott.problems.linear import linear_problem
    from ott.solvers.linear import sinkhorn

    k_x, k_y = jax.random.split(key)
    x = problem.source.sample(k_x, n_train)
    y = problem.target.sample(k_y, n_train)
    with jax.numpy_rank_promotion("allow"):  # OTT-JAX broadcasts implicitly
        start = time.perf_counter()
        geom = pointcloud.PointCloud(x, y)
        out = sinkhorn.Sinkhorn(max_iterations=5000)(linear_problem.LinearProblem(geom))
        jax.block_until_ready(out.potentials)
        wall = time.perf_counter() - start
        dual = out.to_dual_potentials()
        # x − ∇h*(∇f(x)) with h = |·|²: the barycentric projection, as dual.transport
        one = lambda xi: xi - 0.5 * jax.grad(dual.f)(xi)
        scored = (figures or map_figures)(problem, dual.transport, eval_key, n, one)
    epsilon = float(geom.epsilon)
    return {
        **scored,
        "wall_time_s": wall,
        "settings": {
            "epsilon": epsilon,
            "n": n_train,
            "converged": bool(out.converged),
            "sinkhorn_iterations": int(out.n_iters),
        },
        "note": f"ε = {epsilon:.3g} (OTT's default), {n_train} samples of each side",
    }


def fit_row(problem: Problem, method: Method, seed: int, key: Array, n: int, quick: bool) -> dict:
    """One of the library's fits, scored on the held-out samples of ``key``."""
    extra = {"eval_size": n} if quick else {}
    start = time.perf_counter()
    res = fit(
        problem,
        method.scheme,
        DIVERGENCE,
        steps=method.steps,
        seed=seed,
        final_eval_size=0,  # scored below, on the samples every row shares
        **extra,
    )
    wall = time.perf_counter() - start
    potential = in_units(res.select(0), res.problem)
    times = [float(t) for t in res.history["time_s"][:, 0]]
    l2 = [float(v) for v in res.history["l2_uvp"][:, 0]]
    early = int(res.early_stop[0]) if res.early_stop is not None else -1
    note = f"{res.last_step} of {res.steps} steps"
    if early >= 0:
        note += " (stopped early on a plateau)"
    if int(res.stopped_at[0]) >= 0:
        note += f" (stopped on a non-finite value at step {int(res.stopped_at[0])})"
    if res.linear_kept is not None and bool(res.linear_kept[0]):
        note += " (the linear map was kept: the trained map did not beat it)"
    return {
        **potential_figures(problem, potential, key, n),
        "wall_time_s": wall,
        **{_level_key(level): time_to(times, l2, level) for level in LEVELS},
        "settings": {
            "scheme": record(res.scheme),
            "divergence": record(res.divergence),
            "steps": res.steps,
            "batch_size": res.batch_size,
            "last_step": res.last_step,
            "best_step": int(res.best_step[0]) if res.best_step is not None else None,
        },
        "note": note,
        "curve": {"time_s": times, "l2_uvp": [finite_or_none(v) for v in l2]},  # NaN → null
    }


def _level_key(level: float) -> str:
    return f"time_to_{level:g}pct_s"


@dataclasses.dataclass(frozen=True)
class Budget:
    """A W2NeuralDual budget: stop at ``iterations`` or after ``seconds`` of training
    (whichever comes first; ``None``: no such limit), and in any case at the time cap."""

    name: str
    iterations: int | None
    seconds: float | None


def run_budgets(
    advance: Callable[[int, int], Any],
    score: Callable[[Any], float],
    budgets: Sequence[Budget],
    time_cap: float,
    clock: Callable[[], float] = time.perf_counter,
) -> tuple[dict[str, dict], dict[str, list]]:
    """Train in chunks until every budget has ended; what each budget ends with.

    ``advance(first, count)`` runs iterations ``first … first + count − 1`` (and waits for
    them), returning the state after them; ``score(state)`` gives a point of the curve (off
    the clock). The first chunk is one iteration (it compiles); later chunks last at most
    :data:`CHUNK_SECONDS` and end at every budget's end (its iterations exactly, its seconds
    to within half an iteration). A budget still running after ``time_cap`` seconds stops
    there (``capped``).

    Returns:
        Per budget name: ``state``, ``iterations``, ``time`` (seconds of training),
        ``capped`` and ``points`` (how much of the curve is its); and the curve
        (``time_s``, ``l2_uvp``: the scores).
    """
    iteration, elapsed, per_step = 0, 0.0, None
    curve: dict[str, list] = {"time_s": [], "l2_uvp": []}
    reached: dict[str, dict] = {}
    while len(reached) < len(budgets):
        pending = [b for b in budgets if b.name not in reached]
        count = min((b.iterations - iteration for b in pending if b.iterations), default=None)
        if per_step is None:
            count = 1  # the first chunk compiles; it measures nothing
        else:
            seconds = min([b.seconds for b in pending if b.seconds] + [time_cap]) - elapsed
            by_time = max(1, round(min(seconds, CHUNK_SECONDS) / per_step))
            count = by_time if count is None else min(count, by_time)
        tic = clock()
        state = advance(iteration, count)
        took = clock() - tic
        elapsed += took
        iteration += count
        per_step = took / count
        curve["time_s"].append(elapsed)
        curve["l2_uvp"].append(score(state))
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


def neural_dual_rows(
    problem: Problem,
    budgets: Sequence[Budget],
    *,
    key: Array,
    eval_key: Array,
    n: int,
    time_cap: float,
    batch: int = ND_BATCH,
    solver_kwargs: dict | None = None,
    figures: Callable[..., dict] | None = None,
) -> dict[str, dict]:
    """Train OTT-JAX's W2NeuralDual once and score its state at the end of each budget
    with ``figures`` (default :func:`potential_figures`).

    ``problem`` is posed as :func:`~mongeflow.fit.fit` poses it (standardised); the map is
    reported in the data's units. Training runs in compiled chunks of iterations (at most
    :data:`CHUNK_SECONDS` each, cut at every budget's end); the clock stops while the curve
    is scored. Returns a row per budget name.
    """
    from ott.neural.methods.neuraldual import W2NeuralDual

    posed = standardize(problem)
    k_init, k_train = jax.random.split(key)
    with warnings.catch_warnings(), jax.numpy_rank_promotion("allow"):
        warnings.simplefilter("ignore", UserWarning)  # its ICNN's pos_weights differ from its own
        solver = W2NeuralDual(problem.dim, rng=k_init, **(solver_kwargs or {}))
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

    k_src, _, k_var = jax.random.split(eval_key, 3)  # the held-out pairs of evaluate
    x_eval, true_eval = source_with_map(problem, k_src, n)
    variance = target_variance(problem, k_var)
    value = solver.state_f.potential_value_fn
    as_potential = lambda params: in_units(NeuralDualPotential(params, value), posed)

    @jax.jit
    def curve_point(params):
        mapped = jax.vmap(jax.grad(as_potential(params)))(x_eval)
        return l2_uvp(mapped, true_eval, variance)

    states = [(solver.state_f, solver.state_g)]

    def advance(first: int, count: int):
        state_f, state_g, loss = chunk(*states[-1], first, count)
        jax.block_until_ready(loss)
        states[-1] = (state_f, state_g)
        return state_f.params

    with jax.numpy_rank_promotion("allow"):  # OTT-JAX broadcasts implicitly
        reached, curve = run_budgets(
            advance, lambda params: float(curve_point(params)), budgets, time_cap
        )

    config = {
        "icnn_widths": list(solver.neural_f.dim_hidden),
        "pos_weights": solver.pos_weights,
        "optimizer": "adam(rate 1e-4, b1 0.5, b2 0.9) on f and g (W2NeuralDual's default)",
        "conjugate_solver": repr(solver.conjugate_solver),
        "amortization_loss": solver.amortization_loss,
        "parallel_updates": solver.parallel_updates,
        "batch_size": batch,
        "data": "fresh batches of the standardised source and of the target each iteration",
        **(solver_kwargs or {}),
    }
    plain = (int, float, str, bool, list)
    config = {k: v if isinstance(v, plain) else repr(v) for k, v in config.items()}
    last = max(reached.values(), key=lambda r: r["points"])
    rows = {}
    for b in budgets:
        r = reached[b.name]
        potential = as_potential(r["state"])
        times, l2 = curve["time_s"][: r["points"]], curve["l2_uvp"][: r["points"]]
        if r["capped"]:
            of = f" of {b.iterations}" if b.iterations else ""
            note = f"stopped at the {time_cap:g} s cap after {r['iterations']}{of} iterations"
        elif b.iterations is not None and r["iterations"] >= b.iterations:
            note = _iterations(r["iterations"])
        else:
            note = f"{_iterations(r['iterations'])} in {r['time']:.1f} s (auto: {b.seconds:.1f} s)"
        row = {
            **(figures or potential_figures)(problem, potential, eval_key, n),
            "wall_time_s": r["time"],
            **{_level_key(level): time_to(times, l2, level) for level in LEVELS},
            "settings": {
                **config,
                "iterations_budget": b.iterations,
                "seconds_budget": b.seconds,
                "time_cap_s": time_cap,
                "iterations": r["iterations"],
                "stopped_at_cap": r["capped"],
            },
            "note": note,
        }
        if r is last:  # one curve per training run, drawn once
            row["curve"] = {"time_s": times, "l2_uvp": [finite_or_none(v) for v in l2]}
        rows[ND_ROWS.get(b.name, b.name)] = row
    return rows


def _iterations(k: int) -> str:
    return f"{k} iteration" + ("" if k == 1 else "s")


def _neural_dual_budgets(quick: bool, auto_seconds: float | None) -> list[Budget]:
    if quick:
        default = QUICK_ND_ITERS
    else:
        from ott.neural.methods.neuraldual import W2NeuralDual

        default = inspect.signature(W2NeuralDual).parameters["num_train_iters"].default
    budgets = [Budget("default", default, None), Budget("long", ND_LONG * default, None)]
    if auto_seconds is not None:
        budgets.append(Budget("same-time", None, auto_seconds))
    return budgets


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
    scale = QUICK_SCALE if quick else None
    n, n_train = (QUICK_N, QUICK_N) if quick else (N_EVAL, N_TRAIN)
    if quick:
        dims = (2,)
    fits = [m for m in methods(scale) if m.name in chosen]
    results: dict[str, Any] = {
        "machine": machine(),
        "quick": quick,
        "seed": seed,
        "n_eval": n,
        "n_train": n_train,
        "time_cap_s": time_cap,
        "runs": [],
    }
    total = time.perf_counter()
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
    units = [(name, d) for name in problems for d in dims]
    per_unit = len([g for g in GROUPS if g in chosen and g != "auto"]) + len(fits)
    with ProgressBar(progress, len(units) * per_unit, "bench maps") as bar:
        for name, d in units:
            problem = get_problem(name, dim=d)
            base = jax.random.key(seed + 1000)
            eval_key, train_key = jax.random.fold_in(base, 0), jax.random.fold_in(base, 1)
            rows: dict[str, dict] = {}
            label = f"{name} d={d}"
            if "identity" in chosen or "linear" in chosen:
                bar.advance(0, f"{label} baselines")
                base_rows = _baseline_rows(problem, eval_key, n)
                for group, row in (("identity", IDENTITY), ("linear", LINEAR)):
                    if group in chosen:
                        rows[row] = {"kind": "baseline", **base_rows[row]}
                        bar.advance(1)
            if "entropic-map" in chosen:
                bar.advance(0, f"{label} entropic map")
                row = entropic_row(problem, jax.random.fold_in(train_key, 0), eval_key, n_train, n)
                rows[ENTROPIC] = {"kind": "outside", **row}
                bar.advance(1)
            ours: dict[str, dict] = {}
            for method in fits:
                bar.advance(0, f"{label} {method.name}")
                row = fit_row(problem, method, seed, eval_key, n, quick)
                ours[method.name] = {"kind": "library", **row}
                bar.advance(1)
            if "neural-dual" in chosen:
                bar.advance(0, f"{label} W2NeuralDual")
                auto = ours.get("auto")
                budgets = _neural_dual_budgets(quick, auto["wall_time_s"] if auto else None)
                nd = neural_dual_rows(
                    problem,
                    budgets,
                    key=jax.random.fold_in(train_key, 1),
                    eval_key=eval_key,
                    n=n,
                    time_cap=time_cap,
                    batch=QUICK_ND_BATCH if quick else ND_BATCH,
                )
                rows.update({k: {"kind": "outside", **v} for k, v in nd.items()})
                bar.advance(1)
            rows.update(ours)
            results["runs"].append({"problem": name, "dim": d, "methods": rows})
            results["total_wall_time_s"] = time.perf_counter() - total
            line = ", ".join(
                f"{k} {v['l2_uvp']:.3g}%" for k, v in rows.items() if v["l2_uvp"] is not None
            )
            bar.print(f"{label}: L2-UVP {line}")
            if out is not None:  # written after every problem and d: a long run keeps its part
                (out / "results.json").write_text(json.dumps(results, indent=1))
                (out / "table.md").write_text(maps_table(results))
                maps_figure(results, out / "l2_uvp_vs_time.png")
    return results
