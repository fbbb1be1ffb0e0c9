"""The non-minimax alternative to the semi-dual game: the cycle-regularised objective of
Wasserstein-2 Generative Networks (Korotin et al., ICLR 2021, eq. (9)), one loss that both
networks *minimise*,

    L(φ, ψ̄) = E_x φ(x) + E_y [⟨∇ψ̄(y), y⟩ − φ(∇ψ̄(y))] + (λ/2) E_y |∇φ(∇ψ̄(y)) − y|²,

φ the map's potential (T = ∇φ), ∇ψ̄ the inverse map; the cycle term holds ∇ψ̄ at the
argmax of ⟨z, y⟩ − φ(z), so the first two terms approach E φ + E φ* from below, and the
minimum is the Brenier pair (for λ ∇²φ ⪰ I). Played on the W2 benchmark pair's 2^16 rows
(in their own coordinates) with the game's networks (reparametrised, both starting at the
identity), Adam with a rate decaying to 0; the map ∇φ scored on 4 096 fresh source samples
(L2-UVP). Each argument is one fit, a JSON object: ``d``, optionally ``steps`` (48 000),
``batch`` (256), ``lr`` (0.003), ``lam`` (λ, default d, as the benchmark's own training
used), ``b1``, ``b2`` (Adam's, 0.9 and 0.999), ``seed``. One JSON line per fit, with the
L2-UVP at twelve points of the run.

    python w2gn.py '{"d": 8}'
"""

import json
import sys
import time
import warnings

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from fromtrue import network, uvp  # this folder's scripts

import mongeflow as mf
from mongeflow.maps.base import transport
from mongeflow.metrics import source_with_map
from mongeflow.schemes.base import feasible

warnings.simplefilter("ignore")


def loss(nets, x, y, lam):
    phi, psi = nets
    z = transport(psi, y)  # ∇ψ̄(y), the inverse map
    back = transport(phi, z)  # ∇φ(∇ψ̄(y)), y again at the optimum
    primal = jnp.mean(jax.vmap(phi)(x))
    conj = jnp.mean(jnp.sum(z * y, -1) - jax.vmap(phi)(z))
    cycle = jnp.mean(jnp.sum((back - y) ** 2, -1))
    return primal + conj + 0.5 * lam * cycle


def run(d, steps=48000, batch=256, lr=0.003, lam=None, b1=0.9, b2=0.999, seed=0):
    lam = float(d if lam is None else lam)
    p = mf.get_problem("w2-pair", dim=d)
    xt, true = source_with_map(p, jax.random.key(7), 4096)
    true = np.asarray(true)
    make = network(d, "softplus")
    nets = (make(jax.random.key(seed)), make(jax.random.key(seed)))
    opt = optax.adam(optax.cosine_decay_schedule(lr, steps), b1=b1, b2=b2)
    params, static = eqx.partition(nets, eqx.is_inexact_array)
    st = opt.init(params)

    def f(params, x, y):
        return loss(eqx.combine(params, static), x, y, lam)

    chunk_len = steps // 12

    @jax.jit
    def chunk(params, st, key):
        def body(c, k):
            params, st = c
            kx, ky = jax.random.split(k)
            g = jax.grad(f)(params, p.source.sample(kx, batch), p.target.sample(ky, batch))
            u, st = opt.update(g, st, params)
            moved = jax.tree.map(
                feasible,
                eqx.combine(optax.apply_updates(params, u), static),
                is_leaf=lambda m: isinstance(m, eqx.Module),
            )
            return (eqx.partition(moved, eqx.is_inexact_array)[0], st), None

        return jax.lax.scan(body, (params, st), jax.random.split(key, chunk_len))[0]

    def score(params):
        return float(uvp(eqx.combine(params, static)[0], xt, true))

    t0 = time.perf_counter()
    key, hist = jax.random.key(seed + 1), []
    for i in range(12):
        params, st = chunk(params, st, jax.random.fold_in(key, i))
        hist.append(round(score(params), 3))
    return dict(
        d=d,
        steps=steps,
        batch=batch,
        lr=lr,
        lam=lam,
        b1=b1,
        b2=b2,
        seed=seed,
        uvp=hist[-1],
        hist=hist,
        wall=round(time.perf_counter() - t0),
    )


if __name__ == "__main__":
    for a in sys.argv[1:]:
        print(json.dumps(run(**json.loads(a))), flush=True)
