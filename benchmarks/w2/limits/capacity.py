"""What the semi-dual game's network can reach when told the answer: regress its map ∇φ
onto T* of the W2 benchmark pair (``w2-mix3to10``, fresh samples at every step, Adam with a
rate decaying to 0, the weights kept feasible as in the game) and score it on 4 096 fresh
source samples (L2-UVP). Each argument is one fit, a JSON object: ``d``, and optionally
``steps`` (48 000), ``batch`` (256), ``lr`` (0.01), ``widths`` (the game's), ``act`` (the
game's activation), ``nonneg`` ("clamp" or "softplus"), ``seed``, ``inverse`` (regress
∇φ(T*(x)) onto x instead, the dual's job in the game, scored in units of the source's
variance). One JSON line per fit.

    python capacity.py '{"d": 8}' '{"d": 8, "widths": [64, 64, 32]}'
"""

import json
import sys
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

import mongeflow as mf
from mongeflow.maps.base import transport
from mongeflow.metrics import source_with_map
from mongeflow.schemes import SemiDual
from mongeflow.schemes.base import feasible


def regress(net, sample, steps=48000, batch=256, lr=0.01, seed=1):
    """``net`` fitted by Adam (rate ``lr`` decaying to 0 over ``steps``) to the pairs
    ``sample(key, batch) -> (x, t)``, min mean |∇φ(x) − t|², each update made feasible as the
    game's are (:func:`~mongeflow.schemes.base.feasible`)."""
    opt = optax.adam(optax.cosine_decay_schedule(lr, steps))
    params, static = eqx.partition(net, eqx.is_inexact_array)
    st = opt.init(params)

    def loss(params, x, t):
        return jnp.mean(jnp.sum((transport(eqx.combine(params, static), x) - t) ** 2, -1))

    @jax.jit
    def chunk(params, st, key):
        def body(c, k):
            params, st = c
            x, t = sample(k, batch)
            u, st = opt.update(jax.grad(loss)(params, x, t), st, params)
            moved = feasible(eqx.combine(optax.apply_updates(params, u), static))
            return (eqx.partition(moved, eqx.is_inexact_array)[0], st), None

        return jax.lax.scan(body, (params, st), jax.random.split(key, 1000))[0]

    key = jax.random.key(seed)
    for i in range(steps // 1000):
        params, st = chunk(params, st, jax.random.fold_in(key, i))
    return eqx.combine(params, static)


def run(
    d, steps=48000, batch=256, lr=0.01, widths=None, act=None, seed=0, nonneg="clamp", inverse=False
):
    p = mf.get_problem("w2-mix3to10", dim=d)
    widths = widths or SemiDual.default_widths(d)
    from mongeflow.maps.icnn import ICNN

    phi = ICNN(
        d,
        jax.random.key(seed),
        widths=tuple(widths),
        quadratic_rank=min(d, 64),
        identity_init=True,
        activation=act or SemiDual.default_activation,
        nonnegativity=nonneg,
    )
    t0 = time.perf_counter()

    def sample(key, n):
        x = p.source.sample(key, n)
        pair = x, jax.vmap(p.true_map)(x)
        return pair[::-1] if inverse else pair

    f = regress(phi, sample, steps, batch, lr, seed=seed + 1)
    x, true = source_with_map(p, jax.random.key(7), 4096)
    if inverse:
        x, true = true, x
    tx = np.asarray(transport(f, x))
    true = np.asarray(true)
    uvp = 100 * np.mean(np.sum((tx - true) ** 2, 1)) / np.sum(np.var(true, 0))
    return dict(
        d=d,
        steps=steps,
        batch=batch,
        lr=lr,
        widths=list(widths),
        act=act,
        nonneg=nonneg,
        inverse=inverse,
        uvp=float(uvp),
        wall=time.perf_counter() - t0,
    )


if __name__ == "__main__":
    for a in sys.argv[1:]:
        print(json.dumps(run(**json.loads(a))), flush=True)
