"""The descent after the game, in-process, from a game saved by ``branch.py`` on the W2 pair
at d = 8: each conjugate solved afresh from the dual's map, or kept per target row and
refined at each visit. Prints the L2-UVP (the fit's coordinates mapped back to the data's)
five times along the descent, with the wall time and, for kept conjugates, the rows'
residual |∇φ(z) − y|.

    python cached.py WORK GAME VARIANT STEPS ['{"newton": 4, "warm": 1, "pool": "rows"}']

WORK: the directory ``../cli/run.sh`` wrote (x.npy, y.npy, held_x.npy, held_true.npy);
GAME: the file ``branch.py`` saved; VARIANT: ``afresh`` (``newton`` steps from ∇ψ(y) on
fresh rows, as ``SemiDual`` without kept conjugates) or ``kept`` (``warm`` steps from the
row's last conjugate, the first visit from ∇ψ(y); ``pool``: ``rows``, the target's training
rows, or ``drawn``, 2^16 rows drawn from them with replacement). Options also: ``rate``
(Adam's, decaying to 0; 0.03), ``seed`` (the descent's key; 7). The rows' residual is over
the whole pool, rows not yet visited (z = 0) included.
"""

import json
import sys
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from mongeflow.divergences import get_divergence
from mongeflow.divergences.base import make_task
from mongeflow.io import data_problem
from mongeflow.maps.base import transport
from mongeflow.maps.default import default_potential
from mongeflow.maps.monge import newton_conjugate
from mongeflow.schemes.base import apply_update, params_of

work, game, variant, steps = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
opts = json.loads(sys.argv[5]) if len(sys.argv) > 5 else {}
d, rows_a_step = 8, 32 * 256
problem = data_problem(np.load(f"{work}/x.npy"), f"samples:{work}/y.npy")
net = default_potential(d, (64, 64), 0.0, "beta-softplus", "softplus")(jax.random.key(0))
stacked = jax.tree.map(lambda a: a[None] if eqx.is_array(a) else a, net)
phi, psi = eqx.tree_deserialise_leaves(game, (stacked, stacked))
phi, psi = (jax.tree.map(lambda a: a[0] if eqx.is_array(a) else a, p) for p in (phi, psi))
held_x = jnp.asarray(np.load(f"{work}/held_x.npy"), jnp.float32)
held_true = np.load(f"{work}/held_true.npy")
variance = np.sum(np.var(np.load(f"{work}/y.npy"), 0))


def uvp(f):
    z = (held_x - problem.shift) / problem.scale
    mapped = np.asarray(problem.target_shift + problem.scale * transport(f, z))
    return 100 * np.mean(np.sum((mapped - held_true) ** 2, -1)) / variance


task = make_task(problem, get_divergence("energy"), 256, target_rows=True)
optimiser = optax.adam(optax.cosine_decay_schedule(opts.get("rate", 0.03), steps))
opt_state = optimiser.init(params_of(phi))
key = jax.random.key(opts.get("seed", 7))


def draw(key, n):
    batches = jax.vmap(task.sample)(jax.random.split(key, n // 256))
    return batches.x.reshape(-1, d), batches.y.reshape(-1, d)


def descend(phi, opt_state, x, z):
    def loss(f):
        return jnp.mean(jax.vmap(f)(x)) - jnp.mean(jax.vmap(f)(z))

    grads = eqx.filter_grad(loss)(phi)
    updates, opt_state = optimiser.update(grads, opt_state, params_of(phi))
    return apply_update(phi, updates), opt_state


def solve(phi, y, start, iterations):
    z = jax.vmap(lambda yi, zi: newton_conjugate(phi, yi, iterations, zi))(y, start)
    return jax.lax.stop_gradient(z)


if variant == "afresh":

    @eqx.filter_jit
    def step(phi, opt_state, key, cache):
        x, y = draw(key, rows_a_step)
        z = solve(phi, y, transport(psi, y), opts.get("newton", 4))
        return (*descend(phi, opt_state, x, z), cache)

    cache = None
else:
    pool = task.target_rows
    if opts.get("pool", "rows") == "drawn":
        pool = draw(jax.random.fold_in(key, 99), 2**16)[1]
    cache = (jnp.zeros_like(pool), jnp.zeros(pool.shape[0], bool))

    @eqx.filter_jit
    def step(phi, opt_state, key, cache):
        conjugates, solved = cache
        kx, ki = jax.random.split(key)
        x, _ = draw(kx, rows_a_step)
        which = jax.random.randint(ki, (rows_a_step,), 0, pool.shape[0])
        y = pool[which]
        start = jnp.where(solved[which][:, None], conjugates[which], transport(psi, y))
        z = solve(phi, y, start, opts.get("warm", 1))
        cache = (conjugates.at[which].set(z), solved.at[which].set(True))
        return (*descend(phi, opt_state, x, z), cache)


print("the game:", round(uvp(phi), 4), flush=True)
start, every = time.perf_counter(), max(1, steps // 5)
for i in range(steps):
    phi, opt_state, cache = step(phi, opt_state, jax.random.fold_in(key, i), cache)
    if (i + 1) % every == 0:
        jax.block_until_ready(phi)
        said = f"step {i + 1}: {time.perf_counter() - start:.1f} s, L2-UVP {uvp(phi):.4f} %"
        if cache is not None:
            r = transport(phi, cache[0]) - pool
            said += f", rows' residual {float(jnp.sqrt(jnp.mean(jnp.sum(r**2, -1)))):.4f}"
        print(said, flush=True)
