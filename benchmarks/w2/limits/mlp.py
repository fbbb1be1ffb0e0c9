"""The automatic two-sample fit on the W2 benchmark pair's 2^16 rows (in their own
coordinates) with a potential that is not input-convex: φ(x) = ½|x|² + f(x), f a plain
multilayer perceptron whose last layer starts at 0 (so T = id at the start), as the
expectile-regularised solver of Buzun et al. (ENOT, NeurIPS 2024) parametrises its maps.
Each argument is one fit, a JSON object: ``d``, optionally ``widths`` ([64, 64]),
``act`` ("softplus", "silu" or "gelu"), ``seed``, and ``SemiDual`` settings (then the scheme
is ``SemiDual`` with them, both ways, instead of the automatic one). One JSON line per fit:
the map's L2-UVP on 4 096 fresh source samples, what the fit chose, its wall time.

    python mlp.py '{"d": 8}'
"""

import json
import sys
import time
import warnings

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

import mongeflow as mf
from mongeflow.maps.base import Potential
from mongeflow.metrics import source_with_map
from mongeflow.schemes import SemiDual

warnings.simplefilter("ignore")

ACT = {"softplus": jax.nn.softplus, "silu": jax.nn.silu, "gelu": jax.nn.gelu}


class MLPPotential(Potential):
    """φ(x) = ½|x|² + f(x), f an MLP whose last layer starts at 0; not convex in general."""

    weights: tuple
    biases: tuple
    act: str = eqx.field(static=True)

    def __init__(self, d, key, widths=(64, 64), act="softplus"):
        sizes = (d, *widths)
        keys = jax.random.split(key, len(widths))
        self.weights = tuple(
            jax.random.normal(k, (m, n)) / jnp.sqrt(m)
            for k, m, n in zip(keys, sizes, sizes[1:], strict=False)
        ) + (jnp.zeros((sizes[-1], 1)),)
        self.biases = tuple(jnp.zeros(n) for n in sizes[1:]) + (jnp.zeros(1),)
        self.act = act

    def __call__(self, x):
        h = x
        for w, b in zip(self.weights[:-1], self.biases[:-1], strict=True):
            h = ACT[self.act](h @ w + b)
        return 0.5 * jnp.sum(x**2) + (h @ self.weights[-1] + self.biases[-1])[0]

    def decayed(self):
        return jax.tree.map(lambda a: a.ndim == 2, self)


def run(d, widths=(64, 64), act="softplus", seed=0, **scheme):
    p = mf.get_problem("w2-pair", dim=d)
    x, true = source_with_map(p, jax.random.key(7), 4096)
    true = np.asarray(true)
    t0 = time.perf_counter()
    kw = dict(seed=seed, fallback=False, final_eval_size=0, standardize=False)
    if scheme:
        scheme.setdefault("decay_steps", 48000)
        kw.update(steps=scheme["decay_steps"], batch_size=256)
        kw["scheme"] = SemiDual(**scheme)
    res = mf.fit(p, potential=lambda key: MLPPotential(d, key, tuple(widths), act), **kw)
    tx = np.asarray(res.transport(x))
    uvp = 100 * float(np.mean(np.sum((tx - true) ** 2, 1)) / np.sum(np.var(true, 0)))
    return dict(
        d=d,
        widths=list(widths),
        act=act,
        seed=seed,
        scheme=scheme,
        uvp=round(uvp, 4),
        chosen=str(getattr(res, "chosen", "")),
        wall=round(time.perf_counter() - t0),
    )


if __name__ == "__main__":
    for a in sys.argv[1:]:
        print(json.dumps(run(**json.loads(a))), flush=True)
