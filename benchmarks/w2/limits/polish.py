"""Whether a low-noise descent of the semi-dual itself finishes what the game leaves: play
the automatic game on the W2 benchmark pair's 2^16 rows (in their own coordinates), then
descend E φ(x) − E φ(z(y)) over φ's weights on those rows, z(y) the exact argmax of
⟨z, y⟩ − φ(z) (so the gradient is that of E φ + E φ*, by the envelope theorem), kept for
every target row and refreshed by a few of :func:`finetune.newton`'s steps before each use;
large batches, Adam at a small rate decaying to 0. Each argument is one fit, a JSON object:
``d``, optionally ``steps`` (300), ``batch`` (8 192), ``lr`` (3e-4; a list: each rate from
the same game), ``refresh`` (Newton's steps before each use, 3), ``seed``. One JSON line per
fit: the game's L2-UVP and, for each rate, the polished map's at twelve points, on 4 096
fresh source samples.

    python polish.py '{"d": 8}'
"""

import json
import sys
import time
import warnings

import equinox as eqx
import jax
import jax.numpy as jnp
import optax
from finetune import newton, play  # this folder's scripts
from fromtrue import uvp

import mongeflow as mf
from mongeflow.metrics import source_with_map
from mongeflow.schemes.base import feasible

warnings.simplefilter("ignore")


def run(d, steps=300, batch=8192, lr=3e-4, refresh=3, seed=0):
    p = mf.get_problem("w2-pair", dim=d)
    x, true = source_with_map(p, jax.random.key(7), 4096)
    t0 = time.perf_counter()
    phi = play(p, seed)
    first, game_wall = float(uvp(phi, x, true)), time.perf_counter() - t0
    xs, ys = p.source.data, p.target.data
    z_all = jax.lax.map(lambda y: newton(phi, y, y, 40), ys, batch_size=1024)
    params0, static = eqx.partition(phi, eqx.is_inexact_array)
    z0, polished = z_all, {}
    for rate in lr if isinstance(lr, list) else [lr]:
        opt = optax.adam(optax.cosine_decay_schedule(rate, steps))
        params, state, z_all = params0, opt.init(params0), z0

        @jax.jit
        def step(params, state, z_all, key, opt=opt):
            f = eqx.combine(params, static)
            kx, ky = jax.random.split(key)
            ix = jax.random.choice(kx, xs.shape[0], (batch,), replace=False)
            iy = jax.random.choice(ky, ys.shape[0], (batch,), replace=False)
            z = jax.vmap(lambda y, z: newton(f, y, z, refresh))(ys[iy], z_all[iy])
            z = jax.lax.stop_gradient(z)

            def loss(params):
                g = eqx.combine(params, static)
                return jnp.mean(jax.vmap(g)(xs[ix])) - jnp.mean(jax.vmap(g)(z))

            u, state = opt.update(jax.grad(loss)(params), state, params)
            moved = feasible(eqx.combine(optax.apply_updates(params, u), static))
            return eqx.partition(moved, eqx.is_inexact_array)[0], state, z_all.at[iy].set(z)

        hist, key, t1 = [], jax.random.key(seed + 5), time.perf_counter()
        for i in range(steps):
            params, state, z_all = step(params, state, z_all, jax.random.fold_in(key, i))
            if (i + 1) % max(1, steps // 12) == 0:
                hist.append(round(float(uvp(eqx.combine(params, static), x, true)), 3))
        polished[str(rate)] = dict(hist=hist, wall=round(time.perf_counter() - t1))
    return dict(
        d=d,
        steps=steps,
        batch=batch,
        refresh=refresh,
        seed=seed,
        game=round(first, 4),
        game_wall=round(game_wall),
        polished=polished,
    )


if __name__ == "__main__":
    for a in sys.argv[1:]:
        print(json.dumps(run(**json.loads(a))), flush=True)
