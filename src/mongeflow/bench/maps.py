"""Problems with a known Monge map: every scheme against wall time, and two outside baselines.

``mongeflow bench maps --out DIR`` runs ``gaussian`` and ``known-potential`` at
d ∈ {2, 8, 32, 64} and writes ``DIR/results.json``, ``DIR/table.md`` and
``DIR/l2_uvp_vs_time.png``.

Every scheme of the registry (:data:`mongeflow.schemes.SCHEMES`) runs: at the budget of
:func:`budgets` when it has one, else at its registered default value and ``default_steps``.
Each trains the library's default map (ICNN (20, 20) + quadratic term, T0 = id) on the
log-det KL, batch 256 (natural: 1024), one seed, and is scored every tenth of its run on 2000
held-out pairs (x, T*(x)): L2-UVP = 100 E|T − T*|² / Var(γ) and the energy distance to 2000
samples of γ.
The baselines see the same kind of data, 2000 samples of each side:

- ``entropic-map``: OTT-JAX's entropic map estimator (Pooladian & Niles-Weed 2021) from a
  Sinkhorn solve between the samples, with OTT's default ε and with ε tuned on the true map
  over a grid (an oracle choice, so an optimistic baseline).
- ``ou-flow``: the unconstrained Langevin / Ornstein–Uhlenbeck flow map, the Wasserstein
  gradient flow of the KL (Dumont, Lacombe & Vialard 2026, §2): particles moved by
  v = −∇V − ∇log ρ_t (score by the self-entropic estimator) with explicit Euler (dt = 0.1)
  steps up to t = 5: it pushes μ0 to γ but is not the Monge map in general.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np

from mongeflow import schemes
from mongeflow.bench.common import machine, time_to
from mongeflow.bench.report import maps_figure, maps_table
from mongeflow.divergences import KL
from mongeflow.fit import fit
from mongeflow.metrics import target_variance
from mongeflow.problems import get_problem
from mongeflow.progress import ProgressBar
from mongeflow.schemes import Scheme
from mongeflow.settings import record

PROBLEMS = ("gaussian", "known-potential")
DIMS = (2, 8, 32, 64)
N_EVAL = 2000
BATCH = 256
EPSILON_GRID = (0.03, 0.1, 0.3, 1.0, 3.0)
#: The divergence of every scheme: the KL with the exact log-det gradient (fit's default).
DIVERGENCE = KL()


@dataclasses.dataclass(frozen=True)
class Budget:
    """A scheme's budget in this benchmark: flat settings for
    :func:`~mongeflow.schemes.get_scheme`, outer steps and batch size (``None``: the
    scheme's ``default_steps`` (scaled), :data:`BATCH`)."""

    settings: dict[str, Any] = dataclasses.field(default_factory=dict)
    steps: int | None = None
    batch_size: int | None = None


@dataclasses.dataclass(frozen=True)
class Method:
    name: str
    scheme: Scheme
    steps: int
    batch_size: int = BATCH


def budgets(scale: float = 1.0, dim: int = 2) -> dict[str, Budget]:
    """The settings that work across the problems, by registered scheme name.

    Two settings depend on d: natural uses batch 1024 (its step solves the Gram system of
    the batch exactly, so with batch 256 at d = 64, where p ≈ 7200 parameters and
    n·d ≈ 2.3 p, it fits the batch's noise and stalls near 4 % L2-UVP), and plain gradient
    descent's rate is 0.05 · min(1, 8/d) (0.02 diverges on ``gaussian`` at d = 64).
    """
    s = lambda n: max(1, round(n * scale))
    inner = {
        "tau": 0.4,
        "inner": "adam",
        "inner_steps": s(50),
        "inner_learning_rate": 0.05,
        "inner_decay": True,
    }
    return {
        "natural": Budget(steps=s(100), batch_size=1024),
        "adam": Budget({"learning_rate": 0.01, "decay_steps": s(500)}, steps=s(500)),
        "euclidean": Budget({"learning_rate": 0.05 * min(1.0, 8.0 / dim)}, steps=s(1000)),
        "explicit": Budget(inner, steps=10),
        "implicit": Budget({**inner, "identity_start": True}, steps=10),
    }


def methods(scale: float = 1.0, dim: int = 2) -> list[Method]:
    """Every registered scheme, in the registry's order: with its :func:`budgets` entry, or
    at its registered default value, ``scale`` × ``default_steps`` steps and batch
    :data:`BATCH` without one."""
    table = budgets(scale, dim)
    out = []
    for name in schemes.SCHEMES:
        budget = table.get(name, Budget())
        scheme = schemes.get_scheme(name, **budget.settings)
        steps = budget.steps or max(1, round(scheme.default_steps * scale))
        out.append(Method(name, scheme, steps, budget.batch_size or BATCH))
    return out


def _scheme_run(problem, method: Method, seed: int, n: int) -> dict:
    start = time.perf_counter()
    res = fit(
        problem,
        method.scheme,
        DIVERGENCE,
        steps=method.steps,
        batch_size=method.batch_size,
        seed=seed,
        callbacks=(),
        log_every=max(1, method.steps // 10),
        eval_size=n,
        final_eval_size=n,
    )
    wall = time.perf_counter() - start
    times = [float(t) for t in res.history["time_s"][:, 0]]
    l2 = [float(v) for v in res.history["l2_uvp"][:, 0]]
    return {
        "settings": {
            "scheme": record(res.scheme),
            "divergence": record(res.divergence),
            "steps": method.steps,
            "batch_size": method.batch_size,
        },
        "l2_uvp": float(res.metrics["l2_uvp"][0]),
        "energy_distance": float(res.metrics["energy_distance"][0]),
        "wall_time_s": wall,
        "time_to_1pct_s": time_to(times, l2, 1.0),
        "curve": {"time_s": times, "l2_uvp": l2},
        "stopped_at": int(res.stopped_at[0]),
    }


def _entropic_map(x, y, x_test, epsilon=None):
    from ott.geometry import pointcloud
    from ott.problems.linear import linear_problem
    from ott.solvers.linear import sinkhorn

    with jax.numpy_rank_promotion("allow"):
        geom = pointcloud.PointCloud(x, y, epsilon=epsilon)
        out = sinkhorn.Sinkhorn(max_iterations=5000)(linear_problem.LinearProblem(geom))
        mapped = out.to_dual_potentials().transport(x_test)
    return mapped, float(geom.epsilon)


def _baselines(problem, key, variance, n: int, grid=EPSILON_GRID) -> dict:
    from mongeflow.divergences.score import entropic_score
    from mongeflow.metrics import energy_distance, l2_uvp, source_with_map

    k_train, k_y, k_test, k_ty = jax.random.split(key, 4)
    x, _ = source_with_map(problem, k_train, n)
    y = problem.target.sample(k_y, n)
    x_test, true_test = source_with_map(problem, k_test, n)
    y_test = problem.target.sample(k_ty, n)
    out = {}

    # OTT-JAX entropic map, default ε, then ε tuned on the true map (oracle)
    start = time.perf_counter()
    mapped, eps0 = _entropic_map(x, y, x_test)
    out["entropic-map (OTT default ε)"] = {
        "settings": {"epsilon": eps0, "n": n},
        "l2_uvp": float(l2_uvp(mapped, true_test, variance)),
        "energy_distance": float(energy_distance(mapped, y_test)),
        "wall_time_s": time.perf_counter() - start,
    }
    start = time.perf_counter()
    best = None
    for factor in grid:
        mapped, eps = _entropic_map(x, y, x_test, factor * eps0)
        err = float(l2_uvp(mapped, true_test, variance))
        if np.isfinite(err) and (best is None or err < best[0]):
            best = (err, eps, mapped)
    err, eps, mapped = best
    out["entropic-map (ε tuned on T*)"] = {
        "settings": {"epsilon": eps, "grid": f"OTT default ε × {list(grid)}", "n": n},
        "l2_uvp": err,
        "energy_distance": float(energy_distance(mapped, y_test)),
        "wall_time_s": time.perf_counter() - start,
    }

    # unconstrained OU / Langevin flow map of the held-out particles
    start = time.perf_counter()
    grad_v = jax.vmap(jax.grad(problem.target.potential))
    dt, t_end = 0.1, 5.0

    @jax.jit
    def flow(z):
        def step(z, _):
            return z + dt * (-grad_v(z) - entropic_score(z)), None

        return jax.lax.scan(step, z, None, length=round(t_end / dt))[0]

    moved = flow(x_test)
    out["ou-flow (unconstrained)"] = {
        "settings": {"dt": dt, "t_end": t_end, "score": "self-entropic", "n": n},
        "l2_uvp": float(l2_uvp(moved, true_test, variance)),
        "energy_distance": float(energy_distance(moved, y_test)),
        "wall_time_s": time.perf_counter() - start,
    }
    return out


def run_maps(
    out: str | Path | None = None,
    *,
    dims=DIMS,
    problems=PROBLEMS,
    quick: bool = False,
    seed: int = 0,
    progress: bool = True,
) -> dict:
    """Run the known-map benchmark; write ``results.json``, ``table.md`` and a figure.

    ``quick`` runs d = 2 only, with 1/20 of the steps, 300 evaluation samples and a
    two-point ε grid (to test the code path, not to measure anything).
    """
    scale, n, grid = (0.05, 300, (0.3, 1.0)) if quick else (1.0, N_EVAL, EPSILON_GRID)
    if quick:
        dims = (2,)
    for name in problems:
        get_problem(name, dim=2)  # unknown names fail here, before any work
    results: dict[str, Any] = {
        "machine": machine(),
        "quick": quick,
        "seed": seed,
        "n_eval": n,
        "runs": [],
    }
    total = time.perf_counter()
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
    units = [(name, d) for name in problems for d in dims]
    per_unit = len(methods(scale)) + 1  # the schemes, then the baselines
    with ProgressBar(progress, len(units) * per_unit, "bench maps") as bar:
        for name, d in units:
            problem = get_problem(name, dim=d)
            variance = target_variance(problem, jax.random.key(0))
            entry = {"problem": name, "dim": d, "methods": {}}
            for method in methods(scale, d):
                bar.advance(0, f"{name} d={d} {method.name}")
                entry["methods"][method.name] = _scheme_run(problem, method, seed, n)
                bar.advance(1)
            bar.advance(0, f"{name} d={d} baselines")
            entry["methods"].update(
                _baselines(problem, jax.random.key(seed + 1000), variance, n, grid)
            )
            bar.advance(1)
            results["runs"].append(entry)
            results["total_wall_time_s"] = time.perf_counter() - total
            line = ", ".join(f"{k} {v['l2_uvp']:.3g}%" for k, v in entry["methods"].items())
            bar.print(f"{name} d={d}: L2-UVP {line}")
            if out is not None:  # written after every problem and d: a long run keeps its part
                (out / "results.json").write_text(json.dumps(results, indent=1))
                (out / "table.md").write_text(maps_table(results))
                maps_figure(results, out / "l2_uvp_vs_time.png")
    return results
