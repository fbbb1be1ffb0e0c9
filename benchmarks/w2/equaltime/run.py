"""The library's schemes on the W2 pair at one d, each given the same wall time.

Usage: python run.py D SECONDS [METHOD ...]

Each method is first timed on a short fit (its steps per second, from the fit's history
records, compilation excluded), then fitted with the steps that fill SECONDS, its rate or
step decaying over them as the automatic rules set it (``mf.fit(problem, scheme,
divergence, steps=N)``). The pair is ``w2-pair`` (2^16 rows a side, 10 % held out); the kept
map is scored on 4 096 fresh source rows against T* (L2-UVP, %). One seed, one fit at a
time. Methods: ``semidual`` (the automatic semi-dual game), ``semidual-oneway`` (played one
way, two map updates a step), ``drift-explicit`` (the constrained drifting model),
``sinkhorn-explicit``, ``sinkhorn-adam``, ``energy-adam``.
"""

import sys
import time
import warnings

import jax
import numpy as np

import mongeflow as mf
from mongeflow.metrics import l2_uvp, source_with_map, target_samples

METHODS = {
    "semidual": ("semidual", None, {}),
    "semidual-oneway": ("semidual", None, {"bidirectional": False}),
    "drift-explicit": ("explicit", "drift", {}),
    "sinkhorn-explicit": ("explicit", "sinkhorn", {}),
    "sinkhorn-adam": ("adam", "sinkhorn", {}),
    "energy-adam": ("adam", "energy", {}),
}


def fit(problem, method, steps):
    scheme, divergence, changes = METHODS[method]
    config = mf.auto.configure(problem, scheme, divergence, steps=steps)
    chosen = config.scheme
    if changes:
        chosen = mf.settings.configure(chosen, changes)
    return mf.fit(
        problem,
        chosen,
        config.divergence,
        steps=config.steps,
        batch_size=config.batch_size,
        patience=None,
        log_every=max(1, config.steps // 10),
        fallback=False,
        final_eval_size=0,
    )


def rate(result):
    """Steps per second between the first and the last history record."""
    steps = np.asarray(result.history["step"], float)
    t = np.asarray(result.history["time_s"], float)[:, 0]
    return (steps[-1] - steps[0]) / (t[-1] - t[0])


def main():
    warnings.simplefilter("ignore")
    d, budget = int(sys.argv[1]), float(sys.argv[2])
    methods = sys.argv[3:] or list(METHODS)
    problem = mf.get_problem("w2-pair", dim=d)
    x, true = source_with_map(problem, jax.random.key(7), 4096)
    y = np.asarray(target_samples(problem, jax.random.key(8), 4096))
    variance = np.sum(np.var(y, 0))
    for method in methods:
        probe_steps = 600 if METHODS[method][0] in ("adam", "semidual") else 20
        per_second = rate(fit(problem, method, probe_steps))
        steps = max(1, int(per_second * budget))
        start = time.perf_counter()
        result = fit(problem, method, steps)
        wall = time.perf_counter() - start
        uvp = float(l2_uvp(result.transport(x), true, variance))
        print(
            f"d = {d}, {method}: {steps} steps ({per_second:.3g} steps/s), "
            f"L2-UVP {uvp:.2f} %, wall {wall:.0f} s",
            flush=True,
        )


if __name__ == "__main__":
    main()
