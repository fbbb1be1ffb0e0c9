"""Whether a barrier lies between where the semi-dual's descent stops and the better map
one regression away: play the automatic game on the W2 benchmark pair's 2^16 rows (kept in
:func:`finetune.play`'s scratch file), descend its semi-dual as ``polish.py`` does (Adam,
rate 0.01, 300 steps), regress the game's φ onto T* as ``finetune.py`` does, then follow the
straight line between the two sets of weights, θ(t) = (1 − t) θ_descent + t θ_regressed, and
give the semi-dual on the fit's rows (with the largest residual |∇φ(z) − y| of its
conjugates; where it exceeds 1e-3, again with ten times Newton's steps) and the L2-UVP at
eleven points t = 0, 0.1, ..., 1. A
loss that falls all the way says the descent stopped for want of a direction it could see (a
flat valley); a rise on the way says a barrier. Each argument is one run, a JSON object:
``d``, optionally ``seed``.

    python path.py '{"d": 8}'
"""

import collections
import json
import sys
import time
import warnings

import equinox as eqx
import jax
from capacity import regress  # this folder's scripts
from finetune import newton, play, semidual, true_pairs
from fromtrue import uvp
from polish import adam_descent

import mongeflow as mf
from mongeflow.metrics import source_with_map

warnings.simplefilter("ignore")


def run(d, seed=0):
    t0 = time.perf_counter()
    p = mf.get_problem("w2-pair", dim=d)
    x, true = source_with_map(p, jax.random.key(7), 4096)
    phi = play(p, seed, keep=True)
    xs, ys = p.source.data, p.target.data
    z0 = jax.lax.map(lambda y: newton(phi, y, y, 40), ys, batch_size=1024)
    params, static = eqx.partition(phi, eqx.is_inexact_array)
    steps = adam_descent(static, params, xs, ys, z0, 0.01, 300, 8192, 3, seed)
    descended = collections.deque(steps, maxlen=1)[0]  # the weights after the last step
    regressed = regress(phi, true_pairs(d), lr=0.01, seed=seed + 1)
    regressed = eqx.partition(regressed, eqx.is_inexact_array)[0]
    line = []
    for i in range(11):
        t = i / 10
        mixed = jax.tree.map(lambda a, b, t=t: (1 - t) * a + t * b, descended, regressed)
        f = eqx.combine(mixed, static)
        value, residual = semidual(f, xs, ys)
        point = dict(t=t, semidual=round(value, 5), residual=float(f"{residual:.2g}"))
        if residual > 1e-3:  # a conjugate Newton's 40 steps did not reach: ten times more
            value, residual = semidual(f, xs, ys, iters=400)
            point.update(semidual_400=round(value, 5), residual_400=float(f"{residual:.2g}"))
        line.append(dict(point, uvp=round(float(uvp(f, x, true)), 3)))
    return dict(d=d, seed=seed, line=line, wall=round(time.perf_counter() - t0))


if __name__ == "__main__":
    for a in sys.argv[1:]:
        print(json.dumps(run(**json.loads(a))), flush=True)
