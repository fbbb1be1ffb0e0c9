"""Whether the semi-dual game stays at the answer: φ regressed onto T* and ψ onto its
inverse (∇ψ(T*(x)) = x), fresh samples, 48 000 steps each, then the game at the automatic
settings of ``limits.py`` (both ways up to d = 32; no jitter) from that pair, on the W2
benchmark pair's 2^16 rows in their own coordinates. Each argument is one fit, a JSON
object: ``d``, optionally ``steps``, ``fresh``, ``"start"`` (``"true"``: both networks
regressed, the default; ``"identity"``: the usual start, for comparison; ``"phi"`` or
``"psi"``: that network regressed, the other at the usual start), ``"nonneg"`` (the networks'
non-negativity, ``"clamp"`` by default, or ``"softplus"``) and ``SemiDual`` settings. One
JSON line per fit: the start's and the end's L2-UVP on 4 096 fresh source samples and the
history's (every few records).

    python fromtrue.py '{"d": 2}' '{"d": 2, "start": "identity"}'
    python fromtrue.py '{"d": 8, "nonneg": "softplus", "steps": 12000, "learning_rate": 0.001}'
"""

import json
import sys
import time
import warnings

import jax
import numpy as np
from capacity import regress  # this folder's script

import mongeflow as mf
from mongeflow.maps.base import transport
from mongeflow.maps.default import default_potential
from mongeflow.metrics import source_with_map
from mongeflow.schemes import SemiDual
from mongeflow.schemes.base import params_of

warnings.simplefilter("ignore")


CACHE = {}


def true_pair(d, nonneg):
    if (d, nonneg) in CACHE:
        return CACHE[d, nonneg]
    p = mf.get_problem("w2-mix3to10", dim=d)
    tm = jax.vmap(p.true_map)

    def fwd(k, n):
        x = p.source.sample(k, n)
        return x, tm(x)

    def inv(k, n):
        x = p.source.sample(k, n)
        return tm(x), x

    make = network(d, nonneg)
    t = time.perf_counter()
    phi = regress(make(jax.random.key(0)), fwd)
    psi = regress(make(jax.random.key(1)), inv)
    CACHE[d, nonneg] = (phi, psi, time.perf_counter() - t)
    return CACHE[d, nonneg]


def network(d, nonneg):
    """The game's network at d, its weights kept non-negative by ``nonneg``."""
    return default_potential(
        d, SemiDual.default_widths(d), activation=SemiDual.default_activation, nonnegativity=nonneg
    )


class FromTrue(SemiDual):
    """The game with ψ given (``PSI["psi"]``) instead of a copy of the starting φ (none
    given: the usual start)."""

    def init(self, potential):
        state = super().init(potential)
        psi = PSI["psi"]
        if psi is None:  # φ alone starts next to the answer
            return state
        map_opt, dual_opt = self._optimizers()
        return state._replace(
            dual=psi, dual_state=(map_opt if self.bidirectional else dual_opt).init(params_of(psi))
        )


PSI = {}


def uvp(f, x, true):
    tx = np.asarray(transport(f, x))
    true = np.asarray(true)
    return 100 * np.mean(np.sum((tx - true) ** 2, 1)) / np.sum(np.var(true, 0))


def main(args):
    for a in args:
        kw = json.loads(a)
        d = kw.pop("d")
        fresh = kw.pop("fresh", False)
        steps = kw.pop("steps", 48000)
        start = kw.pop("start", "true")
        nonneg = kw.pop("nonneg", "clamp")
        phi, psi, tsup = true_pair(d, nonneg)
        p = mf.get_problem("w2-mix3to10" if fresh else "w2-pair", dim=d)
        x, true = source_with_map(mf.get_problem("w2-pair", dim=d), jax.random.key(7), 4096)
        u0 = uvp(phi, x, true)
        PSI["psi"] = None if start == "phi" else psi
        kw.setdefault("bidirectional", d <= 32)
        game = SemiDual if start == "identity" else FromTrue
        scheme = game(decay_steps=steps, **kw)
        make = (lambda key, phi=phi: phi) if start in ("true", "phi") else network(d, nonneg)
        t = time.perf_counter()
        res = mf.fit(
            p,
            scheme,
            potential=make,
            steps=steps,
            batch_size=256,
            seed=0,
            fallback=False,
            final_eval_size=0,
            standardize=False,
        )
        h = res.history
        l2 = np.asarray(h["l2_uvp"]).reshape(len(h["step"]), -1)[:, 0]
        u1 = (
            100
            * float(np.mean(np.sum((np.asarray(res.transport(x)) - np.asarray(true)) ** 2, 1)))
            / float(np.sum(np.var(np.asarray(true), 0)))
        )
        print(
            json.dumps(
                dict(
                    spec=a,
                    start_uvp=round(float(u0), 4),
                    end_uvp=round(u1, 4),
                    wall=round(time.perf_counter() - t),
                    sup_wall=round(tsup),
                    hist=[round(float(v), 3) for v in l2[:: max(1, len(l2) // 12)]],
                )
            ),
            flush=True,
        )


if __name__ == "__main__":
    main(sys.argv[1:])
