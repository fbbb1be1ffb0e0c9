"""What the benchmarks share: the machine they ran on, markdown tables, time to a level, and
the per-seed energy distance of the paper's table."""

from __future__ import annotations

import math
import os
import platform
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import numpy as np

from mongeflow.maps.base import Array, Potential, transport
from mongeflow.metrics import energy_distance
from mongeflow.problems import Problem


def machine() -> dict[str, Any]:
    """What the benchmark ran on."""
    import jaxlib

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "jax": jax.__version__,
        "jaxlib": jaxlib.__version__,
        "device": str(jax.devices()[0]),
        "date": time.strftime("%Y-%m-%d"),
    }


def machine_line(m: dict[str, Any]) -> str:
    """One line naming the machine of :func:`machine`, for the tables' headers."""
    return f"Machine: {m['cpu']}, {m['cores']} cores, {m['device']}; jax {m['jax']}; {m['date']}."


def finite_or_none(v) -> float | None:
    """``float(v)``, or ``None`` (JSON's null) when it is NaN or infinite."""
    v = float(v)
    return v if math.isfinite(v) else None


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    """The lines of a markdown table: the header, its rule, then one line per row.

    Example:
        >>> markdown_table(["a", "b"], [[1, "x"]])
        ['| a | b |', '|---|---|', '| 1 | x |']
    """
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        if len(row) != len(header):
            raise ValueError(f"a row has {len(row)} cells for {len(header)} columns: {row}")
        lines.append("| " + " | ".join(str(cell) for cell in row) + " |")
    return lines


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


class SeedEnergyDistance:
    """Energy distance of T#μ0 against γ for each seed, on that seed's fresh samples.

    Seed ``i`` is scored on ``n`` samples of μ0 and ``n`` of γ drawn from the ``i``-th key of
    ``split(key(20260325), seeds)``; the samples depend only on the seed (and ``n``), so
    every method is scored on the same ones. Each score is
    :func:`mongeflow.metrics.energy_distance` (the paper's V-statistic
    2 E|X − Y| − E|X − X'| − E|Y − Y'|), the target's term included: nothing is shared
    between methods. Seeds are scored one after another (``lax.map``): for 10⁴ × 10⁴
    distances the batched products of ``vmap`` are slower on CPU than sequential ones.

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
        return np.asarray(_scores(self.problem, potentials, self.keys, self.n), dtype=float)


@eqx.filter_jit
def _scores(problem: Problem, potentials: Potential, keys: Array, n: int) -> Array:
    params, static = eqx.partition(potentials, eqx.is_array)

    def one(args):
        p, key = args
        x = problem.source.sample(jax.random.fold_in(key, 0), n)
        y = problem.target.sample(jax.random.fold_in(key, 1), n)
        return energy_distance(transport(eqx.combine(p, static), x), y)

    return jax.lax.map(one, (params, keys))
