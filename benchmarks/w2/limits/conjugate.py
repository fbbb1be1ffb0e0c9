"""Which of the semi-dual game's two potentials gives the better map: T = ∇φ (the fit's map),
the conjugate map of the dual, x ↦ argmax_y ⟨x, y⟩ − ψ(y) = ∇ψ*(x) (damped Newton, 30
steps), or their average ∇(φ + ψ*)/2 (a Brenier map too). One fit of the W2 pair in its own
coordinates (as limits.py: 48 000 steps of 256 unless "steps" is given, the other keys
SemiDual's settings), scored on 4 096 fresh source samples against T*.

Usage: python conjugate.py '{"d": 16, "jitter": 0.1}'
"""

import json
import sys
import time
import warnings

import jax
import numpy as np

import mongeflow as mf
from mongeflow.loop import Callback
from mongeflow.maps.base import transport
from mongeflow.maps.default import default_potential
from mongeflow.maps.monge import newton_conjugate
from mongeflow.metrics import source_with_map, target_samples


class Last(Callback):
    """Keeps the driver's last state (φ and the scheme's state, with ψ)."""

    def on_end(self, run, state, interrupted):
        self.state = state


def first_seed(tree):
    return jax.tree_util.tree_map(lambda a: a[0], tree)


warnings.simplefilter("ignore")
kw = json.loads(sys.argv[1])
d = kw.pop("d")
pair = mf.get_problem("w2-pair", dim=d)
x, true = source_with_map(pair, jax.random.key(7), 4096)
true = np.asarray(true)
y = np.asarray(target_samples(pair, jax.random.key(8), 4096))
var = np.sum(np.var(y, 0))
steps = kw.pop("steps", 48000)
last = Last()
scheme = mf.SemiDual(decay_steps=steps, bidirectional=kw.pop("bidirectional", d <= 32), **kw)
start = time.perf_counter()
res = mf.fit(
    pair,
    scheme,
    potential=default_potential(d, activation="beta-softplus"),
    steps=steps,
    batch_size=256,
    seed=0,
    fallback=False,
    final_eval_size=0,
    callbacks=[last],
)
phi, psi = first_seed(last.state.potentials), first_seed(last.state.states.dual)


def uvp(m):
    return 100 * np.mean(np.sum((np.asarray(m) - true) ** 2, 1)) / var


by_phi = np.asarray(transport(phi, x))
by_psi = np.asarray(jax.jit(jax.vmap(lambda p: newton_conjugate(psi, p, 30)))(x))
print(f"{sys.argv[1]}: kept step {int(res.best_step[0])}, {time.perf_counter() - start:.0f} s")
print(
    f"  L2-UVP: the fit's map {uvp(res.transport(x)):.3f} %, ∇φ {uvp(by_phi):.3f} %, ∇ψ* "
    f"{uvp(by_psi):.3f} %, their average {uvp((by_phi + by_psi) / 2):.3f} %; ∇φ and ∇ψ* apart "
    f"{uvp(by_phi - by_psi + true):.3f} %"
)
