"""Whether the semi-dual game leaves its network able to fit T*: play the automatic game on
the W2 benchmark pair's 2^16 rows (in their own coordinates), then regress its φ onto T*
(fresh samples, as ``capacity.py`` does) starting from the game's weights, beside the same
regression from a fresh network. Reports the three maps' L2-UVP on 4 096 fresh source
samples, the share of the game's and the tuned map's squared error carried by their worst 1 %
and 5 % of rows, and for each network the share of its non-negative hidden and output
weights still near zero (below 1e-3); and the semi-dual E φ + E φ* of each map on the same
2^16 fresh rows a side (its conjugate by Newton's method), the loss the game descends, lowest
at T*. Each argument is one fit, a JSON object: ``d``, optionally ``lr`` (the regression's
rate, 0.01), ``seed``, ``rows`` (also each semi-dual on the fit's own rows). The game is kept
in a scratch file per d and seed (:func:`play`), which ``polish.py`` shares.

    python finetune.py '{"d": 8}'
"""

import json
import os
import pickle
import sys
import tempfile
import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np
from capacity import regress  # this folder's scripts
from fromtrue import network, uvp

import mongeflow as mf
from mongeflow.maps.base import transport
from mongeflow.maps.icnn import ICNN
from mongeflow.metrics import source_with_map
from mongeflow.schemes import SemiDual

warnings.simplefilter("ignore")


def play(p, seed=0, keep=False):
    """φ of the automatic game on the W2 pair ``p``, in its own coordinates (one seed); with
    ``keep``, read from a scratch file per d and seed when there, else written to it
    (pickled: a file these scripts alone write and read)."""
    keep = keep and os.path.join(tempfile.gettempdir(), f"w2-game-{p.dim}-{seed}.pkl")
    if keep and os.path.exists(keep):
        with open(keep, "rb") as fh:
            return pickle.load(fh)
    res = mf.fit(p, seed=seed, fallback=False, final_eval_size=0, standardize=False)
    phi = jax.tree.map(lambda a: a[0] if isinstance(a, jax.Array) else a, res.potentials)
    if keep:
        with open(keep, "wb") as fh:
            pickle.dump(phi, fh)
    return phi


def true_pairs(d):
    """(key, n) ↦ n fresh source samples of the d-dimensional pair and T* at them."""
    q = mf.get_problem("w2-mix3to10", dim=d)

    def sample(key, n):
        x = q.source.sample(key, n)
        return x, jax.vmap(q.true_map)(x)

    return sample


def fresh_rows(d, key, n):
    """n fresh, independent rows of each side of the d-dimensional pair."""
    q, (kx, ky) = mf.get_problem("w2-mix3to10", dim=d), jax.random.split(key)
    return q.source.sample(kx, n), q.target.sample(ky, n)


def icnn(module):
    """The ICNN inside a potential (the default potential may wrap it)."""
    found = jax.tree.leaves(module, is_leaf=lambda m: isinstance(m, ICNN))
    return next(m for m in found if isinstance(m, ICNN))


def tails(f, x, true):
    """Share of the squared error carried by the worst 1 % and 5 % of the rows."""
    e = np.sort(np.sum((np.asarray(transport(f, x)) - true) ** 2, 1))[::-1]
    return [round(float(e[: len(e) * q // 100].sum() / e.sum()), 3) for q in (1, 5)]


def newton(f, y, z, iters):
    """For one target point y, z after ``iters`` steps of Newton's method on the concave
    max_z ⟨z, y⟩ − φ(z) from ``z``, each step the best of eight lengths 1, 1/2, ... 1/128 of
    Newton's (so it does not overshoot); at the answer ∇φ(z) = y."""
    lengths = 0.5 ** jnp.arange(8.0)
    gain = lambda z: jnp.dot(z, y) - f(z)

    def step(z, _):
        h = f.hessian(z) + 1e-6 * jnp.eye(z.shape[0])
        tries = z + lengths[:, None] * jnp.linalg.solve(h, y - jax.grad(f)(z))
        return tries[jnp.argmax(jax.vmap(gain)(tries))], None

    return jax.lax.scan(step, z, None, length=iters)[0]


def semidual(f, x, y, iters=40):
    """The semi-dual E φ(x) + E φ*(y) on the rows given, φ*(y) = max_z ⟨z, y⟩ − φ(z) by
    :func:`newton` from z = y; and the largest |∇φ(z) − y| left."""

    def conj(yi):
        z = newton(f, yi, yi, iters)
        return jnp.dot(z, yi) - f(z), jnp.linalg.norm(jax.grad(f)(z) - yi)

    values, residuals = jax.lax.map(conj, y, batch_size=1024)
    total = jnp.mean(jax.vmap(f)(x)) + jnp.mean(values)
    return float(total), float(jnp.max(residuals))


def near_zero(net):
    """Share of the effective non-negative weights (hidden z-weights and the output's) below
    1e-3."""
    net = icnn(net)
    pos = jax.nn.softplus if net.nonnegativity == "softplus" else (lambda w: jnp.maximum(w, 0))
    ws = [pos(w).ravel() for w in (*net.z_weights, net.out_weight)]
    w = np.asarray(jnp.concatenate(ws))
    return round(float(np.mean(w < 1e-3)), 3)


def run(d, lr=0.01, seed=0, rows=False):
    p = mf.get_problem("w2-pair", dim=d)
    x, true = source_with_map(p, jax.random.key(7), 4096)
    true = np.asarray(true)
    t0 = time.perf_counter()
    game = play(p, seed, keep=True)
    sample = true_pairs(d)
    tuned = regress(game, sample, lr=lr, seed=seed + 1)
    make = network(d, SemiDual(decay_steps=48000).default_nonnegativity(d))
    fresh = regress(make(jax.random.key(seed + 10)), sample, lr=lr, seed=seed + 1)
    xs, ys = fresh_rows(d, jax.random.key(11), 2**16)
    maps = (("game", game), ("game_tuned", tuned), ("fresh_tuned", fresh))
    objective = {k: semidual(v, xs, ys) for k, v in maps}
    if rows:  # also on the fit's own rows, those the game (and polish.py) descend
        on_rows = {k: semidual(v, p.source.data, p.target.data) for k, v in maps}
    return dict(
        d=d,
        lr=lr,
        semidual=objective,
        **({"semidual on the fit's rows": on_rows} if rows else {}),
        seed=seed,
        game=round(float(uvp(game, x, true)), 4),
        game_tuned=round(float(uvp(tuned, x, true)), 4),
        fresh_tuned=round(float(uvp(fresh, x, true)), 4),
        tails=dict(game=tails(game, x, true), game_tuned=tails(tuned, x, true)),
        near_zero=dict(game=near_zero(game), game_tuned=near_zero(tuned), fresh=near_zero(fresh)),
        wall=round(time.perf_counter() - t0),
    )


if __name__ == "__main__":
    for a in sys.argv[1:]:
        print(json.dumps(run(**json.loads(a))), flush=True)
