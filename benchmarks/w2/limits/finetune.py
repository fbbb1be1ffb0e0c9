"""Whether the semi-dual game leaves its network able to fit T*: play the automatic game on
the W2 benchmark pair's 2^16 rows (in their own coordinates), then regress its φ onto T*
(fresh samples, as ``capacity.py`` does) starting from the game's weights, beside the same
regression from a fresh network. Reports the three maps' L2-UVP on 4 096 fresh source
samples, the share of the game's and the tuned map's squared error carried by their worst 1 %
and 5 % of rows, and for each network the share of its non-negative hidden and output
weights still near zero (below 1e-3). Each argument is one fit, a JSON object: ``d``,
optionally ``lr`` (the regression's rate, 0.01), ``seed``.

    python finetune.py '{"d": 8}'
"""

import json
import sys
import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np
from capacity import regress  # this folder's scripts

import mongeflow as mf
from mongeflow.maps.base import transport
from mongeflow.maps.default import default_potential
from mongeflow.maps.icnn import ICNN
from mongeflow.metrics import source_with_map
from mongeflow.schemes import SemiDual

warnings.simplefilter("ignore")


def uvp(f, x, true):
    tx = np.asarray(transport(f, x))
    return 100 * float(np.mean(np.sum((tx - true) ** 2, 1)) / np.sum(np.var(true, 0)))


def icnn(module):
    """The ICNN inside a potential (the default potential may wrap it)."""
    found = [m for m in jax.tree.leaves(module, is_leaf=lambda m: isinstance(m, ICNN))]
    return next(m for m in found if isinstance(m, ICNN))


def tails(f, x, true):
    """Share of the squared error carried by the worst 1 % and 5 % of the rows."""
    e = np.sort(np.sum((np.asarray(transport(f, x)) - true) ** 2, 1))[::-1]
    return [round(float(e[: len(e) * q // 100].sum() / e.sum()), 3) for q in (1, 5)]


def near_zero(net):
    """Share of the effective non-negative weights (hidden z-weights and the output's) below
    1e-3."""
    net = icnn(net)
    pos = jax.nn.softplus if net.nonnegativity == "softplus" else (lambda w: jnp.maximum(w, 0))
    ws = [pos(w).ravel() for w in (*net.z_weights, net.out_weight)]
    w = np.asarray(jnp.concatenate(ws))
    return round(float(np.mean(w < 1e-3)), 3)


def run(d, lr=0.01, seed=0):
    p = mf.get_problem("w2-pair", dim=d)
    x, true = source_with_map(p, jax.random.key(7), 4096)
    true = np.asarray(true)
    t0 = time.perf_counter()
    res = mf.fit(p, seed=seed, fallback=False, final_eval_size=0, standardize=False)
    game = jax.tree.map(lambda a: a[0] if isinstance(a, jax.Array) else a, res.potentials)
    q = mf.get_problem("w2-mix3to10", dim=d)

    def sample(key, n):
        rows = q.source.sample(key, n)
        return rows, jax.vmap(q.true_map)(rows)

    tuned = regress(game, sample, lr=lr, seed=seed + 1)
    make = default_potential(
        d,
        SemiDual.default_widths(d),
        activation=SemiDual.default_activation,
        nonnegativity=SemiDual(decay_steps=48000).default_nonnegativity(d),
    )
    fresh = regress(make(jax.random.key(seed + 10)), sample, lr=lr, seed=seed + 1)
    return dict(
        d=d,
        lr=lr,
        seed=seed,
        game=round(uvp(game, x, true), 4),
        game_tuned=round(uvp(tuned, x, true), 4),
        fresh_tuned=round(uvp(fresh, x, true), 4),
        tails=dict(game=tails(game, x, true), game_tuned=tails(tuned, x, true)),
        near_zero=dict(game=near_zero(game), game_tuned=near_zero(tuned), fresh=near_zero(fresh)),
        wall=round(time.perf_counter() - t0),
    )


if __name__ == "__main__":
    for a in sys.argv[1:]:
        print(json.dumps(run(**json.loads(a))), flush=True)
