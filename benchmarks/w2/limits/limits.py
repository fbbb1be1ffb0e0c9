"""What limits the semi-dual fit on the W2 benchmark's pairs: the finite rows, the compute,
or the network. Each argument is one fit, a JSON object:

    {"d": 8, "fresh": true, "steps": 48000, "batch": 1024, "widths": [128, 128],
     "bidirectional": true, "seed": 0}

``fresh`` fits ``w2-mix3to10`` (fresh samples of both sides at every step) instead of
``w2-pair`` (2^16 fixed rows a side, or ``rows``); ``jitter`` is ``SemiDual``'s (default 0,
as before the automatic fit jittered the rows above d = 32); the other keys default to the
automatic fit's settings at that d (both ways up to d = 32, 12 000 steps from d = 8 to 32,
48 000 otherwise, batch 256). Each fit is scored on 4 096 fresh source samples against
T* (L2-UVP), with the trace of the pushforward's covariance over the target's; one line per
fit, printed as it ends. Usage: python limits.py SPEC [SPEC ...]
"""

import json
import sys
import time
import warnings

import jax
import numpy as np

import mongeflow as mf
from mongeflow.maps.default import default_potential
from mongeflow.metrics import source_with_map, target_samples

warnings.simplefilter("ignore")
print("jax", jax.__version__, jax.devices(), flush=True)
scored = {}
for spec in sys.argv[1:]:
    kw = json.loads(spec)
    d = kw.pop("d")
    if d not in scored:
        pair = mf.get_problem("w2-pair", dim=d)
        x, true = source_with_map(pair, jax.random.key(7), 4096)
        y = np.asarray(target_samples(pair, jax.random.key(8), 4096))
        scored[d] = (pair, x, np.asarray(true), np.sum(np.var(y, 0)))
    pair, x, true, var = scored[d]
    rows = kw.pop("rows", None)
    if kw.pop("fresh", False):
        problem = mf.get_problem("w2-mix3to10", dim=d)
    else:
        problem = pair if rows is None else mf.get_problem("w2-pair", dim=d, n=rows)
    bidirectional = kw.pop("bidirectional", d <= 32)
    steps = kw.pop("steps", 12000 if 4 < d <= 32 else 48000)
    batch = kw.pop("batch", 256)
    seed = kw.pop("seed", 0)
    widths = kw.pop("widths", None)
    scheme = mf.SemiDual(decay_steps=steps, bidirectional=bidirectional, **kw)
    potential = default_potential(d, widths=widths, activation="beta-softplus")
    t = time.perf_counter()
    res = mf.fit(
        problem,
        scheme,
        potential=potential,
        steps=steps,
        batch_size=batch,
        seed=seed,
        fallback=False,
        final_eval_size=0,
    )
    tx = np.asarray(res.transport(x))
    uvp = 100 * np.mean(np.sum((tx - true) ** 2, 1)) / var
    ratio = np.sum(np.var(tx, 0)) / var
    print(
        f"{spec}: L2-UVP {uvp:.2f} % trace ratio {ratio:.3f} "
        f"kept step {int(res.best_step[0])} wall {time.perf_counter() - t:.0f} s",
        flush=True,
    )
