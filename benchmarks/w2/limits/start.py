"""Whether the game's start decides its basin: the automatic game on the W2 benchmark pair's
2^16 rows (in their own coordinates, as ``finetune.play`` plays it), from the default
reparametrised network with its hidden non-negative weights W^z drawn afresh as
|N(0, ``scale``²)| instead of the start max(N(0, 0.1²), 0) of H69–H70, which leaves half of them at
the reparametrisation's floor softplus(W_raw) = 1e-4; ``scale`` 0 starts them all there
(the output weights start there in both, so T = id at the start); ``"draw": "relu"`` draws
them as max(N(0, ``scale``²), 0) instead, the default's law at another scale; ``inputs``
multiplies every layer's input weights and biases (W_0, b_0, W^x_k, b_k) at the start, so
the units start that much sharper against the rows (H72). Each argument
is one fit, a JSON object: ``d``, optionally ``scale`` (0.1; ``null`` for the default
network's own start, max(N(0, 0.1²), 0) in the records up to H71, max(N(0, 0.03²), 0)
since), ``draw`` (``"abs"``), ``inputs`` (1), ``seed``,
``problem`` (``"dense-pair"``: its 9 000 training rows a side, scored on its 1 000 held-out
source rows, as ``benchmarks/twosample/cli`` does).
One JSON line per fit: the L2-UVP on 4 096 fresh source samples, the rate the fit chose,
its wall time.

    python start.py '{"d": 8}' '{"d": 8, "scale": 0.0}'
"""

import json
import sys
import time
import warnings

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from restart import uvp  # this folder's scripts

import mongeflow as mf
from mongeflow.maps.default import default_potential
from mongeflow.maps.icnn import _inverse_softplus
from mongeflow.metrics import source_with_map
from mongeflow.schemes import SemiDual

warnings.simplefilter("ignore")


def run(d, seed=0, scale=0.1, problem="w2-pair", draw="abs", inputs=1.0):
    if problem == "dense-pair":  # its 9 000 training rows a side, scored on its held-out ones
        p = mf.get_problem("dense-pair", dim=d, n=10000, seed=0, validation=0.1)
        x = p.validation
        true = np.asarray(jax.vmap(p.true_map)(x))
    else:
        p = mf.get_problem(problem, dim=d)
        x, true = source_with_map(p, jax.random.key(7), 4096)
        true = np.asarray(true)
    make = default_potential(
        d,
        SemiDual.default_widths(d),
        activation=SemiDual.default_activation,
        nonnegativity="softplus",
    )

    def scaled(net):  # the input weights and biases of every layer times ``inputs``
        if inputs == 1.0:
            return net
        return eqx.tree_at(
            lambda n: (n.input_weight, n.input_bias, n.x_weights, n.biases),
            net,
            (
                inputs * net.input_weight,
                inputs * net.input_bias,
                tuple(inputs * w for w in net.x_weights),
                tuple(inputs * b for b in net.biases),
            ),
        )

    def started(key):
        net = scaled(make(key))
        if scale is None:  # the default start
            return net
        keys = jax.random.split(jax.random.fold_in(key, 99), len(net.z_weights))
        fold = jnp.abs if draw == "abs" else lambda w: jnp.maximum(w, 0.0)
        drawn = (
            fold(scale * jax.random.normal(k, w.shape))
            for k, w in zip(keys, net.z_weights, strict=True)
        )
        return eqx.tree_at(lambda n: n.z_weights, net, tuple(map(_inverse_softplus, drawn)))

    t0 = time.perf_counter()
    res = mf.fit(
        p, potential=started, seed=seed, fallback=False, final_eval_size=0, standardize=False
    )
    return dict(
        problem=problem,
        d=d,
        seed=seed,
        scale=scale,
        **({} if draw == "abs" else {"draw": draw}),
        **({} if inputs == 1.0 else {"inputs": inputs}),
        uvp=round(uvp(res.transport, x, true), 4),
        rate=res.scheme.learning_rate,
        wall=round(time.perf_counter() - t0),
    )


if __name__ == "__main__":
    for a in sys.argv[1:]:
        print(json.dumps(run(**json.loads(a))), flush=True)
