"""Whether a low-noise descent of the semi-dual itself finishes what the game leaves: play
the automatic game on the W2 benchmark pair's 2^16 rows (in their own coordinates), then
descend E φ(x) − E φ(z(y)) over φ's weights on those rows, z(y) the exact argmax of
⟨z, y⟩ − φ(z) (so the gradient is that of E φ + E φ*, by the envelope theorem), kept for
every target row and refreshed by a few of :func:`finetune.newton`'s steps before each use;
large batches, Adam at a small rate decaying to 0. Each argument is one fit, a JSON object:
``d``, optionally ``steps`` (300), ``batch`` (8 192), ``lr`` (3e-4; a list: each rate from
the same game), ``refresh`` (Newton's steps before each use, 3), ``seed``, ``pool``
(descend on this many fresh rows a side from the benchmark's samplers instead of the fit's
rows), ``lbfgs`` (instead of Adam, L-BFGS on all the rows at once, ``steps`` iterations,
each value with the last iteration's conjugates refreshed by ``refresh`` Newton steps),
``clamp`` (before the descent, store the network's non-negative weights as they act and
keep them non-negative by the clamp instead of the softplus reparametrisation, whose
gradient vanishes at weights near 0), ``score`` (also each map's semi-dual on the rows
descended and on 2^16 fresh rows a side: what the descent lowers, and what it should). One
JSON line per fit: the game's L2-UVP and, for each descent, the map's at twelve points, on
4 096 fresh source samples. The game is kept in a scratch file per d and seed
(:func:`finetune.play`), so one game serves several runs.

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
from finetune import fresh_rows, icnn, newton, play, semidual  # this folder's scripts
from fromtrue import uvp

import mongeflow as mf
from mongeflow.metrics import source_with_map
from mongeflow.schemes.base import feasible

warnings.simplefilter("ignore")


def adam_descent(static, params, xs, ys, z_all, rate, steps, batch, refresh, seed):
    """Adam on the semi-dual, batches of ``batch`` rows a side, the rate decaying from
    ``rate`` to 0; yields the weights after each step. Each batch's conjugates are the kept
    ones refreshed by ``refresh`` Newton steps, and are kept again."""
    opt = optax.adam(optax.cosine_decay_schedule(rate, steps))

    @jax.jit
    def step(params, state, z_all, key):
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

    state, key = opt.init(params), jax.random.key(seed + 5)
    for i in range(steps):
        params, state, z_all = step(params, state, z_all, jax.random.fold_in(key, i))
        yield params


def lbfgs_descent(static, params, xs, ys, z_all, steps, refresh, chunk=8192):
    """L-BFGS (optax's, with its zoom line search) on the semi-dual over all the rows; yields
    the weights after each iteration. The value at any weights takes the conjugates ``z_all``
    of the last iteration and refreshes them by ``refresh`` Newton steps (so the line search
    sees nearly exact ones)."""

    def value(params, z_all):
        f = eqx.combine(params, static)
        z = jax.lax.map(lambda a: newton(f, a[0], a[1], refresh), (ys, z_all), batch_size=chunk)
        z = jax.lax.stop_gradient(z)
        gain = jnp.mean(jax.vmap(f)(z) - jnp.sum(z * ys, 1))
        return jnp.mean(jax.vmap(f)(xs)) - gain, z

    opt = optax.lbfgs()

    @jax.jit
    def step(params, state, z_all):
        (val, z_all), grad = jax.value_and_grad(value, has_aux=True)(params, z_all)
        fn = lambda p: value(p, z_all)[0]
        u, state = opt.update(grad, state, params, value=val, grad=grad, value_fn=fn)
        return optax.apply_updates(params, u), state, z_all

    state = opt.init(params)
    for _ in range(steps):
        params, state, z_all = step(params, state, z_all)
        yield params


def clamped(phi):
    """The same φ with its network's non-negative weights stored as they act (softplus of
    the raw values) and kept non-negative by the clamp instead of the reparametrisation."""
    net = icnn(phi)
    if net.nonnegativity != "softplus":
        return phi
    sp = jax.nn.softplus
    new = eqx.tree_at(
        lambda m: (m.z_weights, m.out_weight),
        net,
        (tuple(sp(w) for w in net.z_weights), sp(net.out_weight)),
    )
    object.__setattr__(new, "nonnegativity", "clamp")  # a static field of a fresh copy
    return eqx.tree_at(icnn, phi, new)


def run(
    d,
    steps=300,
    batch=8192,
    lr=3e-4,
    refresh=3,
    seed=0,
    pool=None,
    score=False,
    lbfgs=False,
    clamp=False,
):
    p = mf.get_problem("w2-pair", dim=d)
    x, true = source_with_map(p, jax.random.key(7), 4096)
    t0 = time.perf_counter()
    phi = play(p, seed, keep=True)
    first, game_wall = float(uvp(phi, x, true)), time.perf_counter() - t0
    if clamp:
        phi = clamped(phi)
    xs, ys = p.source.data, p.target.data
    if pool:
        xs, ys = fresh_rows(d, jax.random.key(1000 + seed), pool)
    if score:
        unseen = fresh_rows(d, jax.random.key(99), 2**16)
        losses = lambda f: [round(semidual(f, *r)[0], 4) for r in ((xs, ys), unseen)]
        scores = {"game": losses(phi)}
    z0 = jax.lax.map(lambda y: newton(phi, y, y, 40), ys, batch_size=1024)
    params0, static = eqx.partition(phi, eqx.is_inexact_array)
    rates = lr if isinstance(lr, list) else [lr]
    runs = {"lbfgs": lambda: lbfgs_descent(static, params0, xs, ys, z0, steps, refresh)}
    if not lbfgs:
        runs = {
            str(r): (
                lambda r=r: adam_descent(
                    static, params0, xs, ys, z0, r, steps, batch, refresh, seed
                )
            )
            for r in rates
        }
    polished = {}
    for name, descent in runs.items():
        hist, t1 = [], time.perf_counter()
        for i, params in enumerate(descent()):
            if (i + 1) % max(1, steps // 12) == 0:
                hist.append(round(float(uvp(eqx.combine(params, static), x, true)), 3))
        polished[name] = dict(hist=hist, wall=round(time.perf_counter() - t1))
        if score:
            scores[name] = losses(eqx.combine(params, static))
    return dict(
        d=d,
        steps=steps,
        batch=batch,
        refresh=refresh,
        seed=seed,
        pool=pool,
        game=round(first, 4),
        game_wall=round(game_wall),
        polished=polished,
        **({"semidual [rows, fresh]": scores} if score else {}),
    )


if __name__ == "__main__":
    for a in sys.argv[1:]:
        print(json.dumps(run(**json.loads(a))), flush=True)
