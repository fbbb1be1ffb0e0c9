"""Whether the semi-dual game's better fixed point near T* can be reached without T*: the
automatic game on the W2 benchmark pair's 2^16 rows (in their own coordinates), then fresh
networks regressed onto its map T̂ (φ: ∇φ(x) ≈ T̂(x)) and its inverse (ψ: ∇ψ(T̂(x)) ≈ x) on
the training rows, then a second, slow game from that pair. Each argument is one fit, a JSON
object: ``d``, optionally ``steps`` (the second game's, 12 000), ``rate`` (its rate, 0.001),
``rounds`` (how many times to regress and play again, 1), ``seed``. One JSON line per fit:
the L2-UVP of the first game's map, then of each round's regressed φ and game, on 4 096
fresh source samples.

    python restart.py '{"d": 8}'
"""

import json
import sys
import time
import warnings

import jax
import numpy as np
from capacity import regress  # this folder's scripts
from fromtrue import PSI, FromTrue

import mongeflow as mf
from mongeflow.maps.base import transport
from mongeflow.maps.default import default_potential
from mongeflow.metrics import source_with_map
from mongeflow.schemes import SemiDual

warnings.simplefilter("ignore")


def uvp(f, x, true):
    return 100 * float(np.mean(np.sum((np.asarray(f(x)) - true) ** 2, 1)) / np.sum(np.var(true, 0)))


def run(d, steps=12000, rate=0.001, rounds=1, seed=0):
    p = mf.get_problem("w2-pair", dim=d)
    x, true = source_with_map(p, jax.random.key(7), 4096)
    true = np.asarray(true)
    t0 = time.perf_counter()
    first = mf.fit(p, seed=seed, fallback=False, final_eval_size=0, standardize=False)
    u_first = uvp(first.transport, x, true)
    make = default_potential(
        d,
        SemiDual.default_widths(d),
        activation=SemiDual.default_activation,
        nonnegativity=SemiDual(decay_steps=steps).default_nonnegativity(d),
    )
    res, rounds_uvp = first, []
    for r in range(rounds):
        t_hat = jax.jit(res.transport)

        def fwd(k, n, t_hat=t_hat):
            rows = p.source.sample(k, n)
            return rows, t_hat(rows)

        def inv(k, n, t_hat=t_hat):
            rows = p.source.sample(k, n)
            return t_hat(rows), rows

        phi = regress(make(jax.random.key(seed + 10 + 2 * r)), fwd)
        PSI["psi"] = regress(make(jax.random.key(seed + 11 + 2 * r)), inv)
        u_phi = uvp(lambda z, phi=phi: transport(phi, z), x, true)
        res = mf.fit(
            p,
            FromTrue(learning_rate=rate, decay_steps=steps, bidirectional=d <= 32),
            potential=lambda key, phi=phi: phi,
            steps=steps,
            batch_size=256,
            seed=seed,
            fallback=False,
            final_eval_size=0,
            standardize=False,
        )
        rounds_uvp.append((round(u_phi, 4), round(uvp(res.transport, x, true), 4)))
    return dict(
        d=d,
        rate=rate,
        steps=steps,
        seed=seed,
        first=round(u_first, 4),
        rounds=rounds_uvp,
        wall=round(time.perf_counter() - t0),
    )


if __name__ == "__main__":
    for a in sys.argv[1:]:
        print(json.dumps(run(**json.loads(a))), flush=True)
