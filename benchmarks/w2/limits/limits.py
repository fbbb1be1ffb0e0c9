"""What limits the semi-dual fit on the W2 benchmark's pairs: the finite rows, the compute,
or the network. Each argument is one fit, a JSON object:

    {"d": 8, "fresh": true, "steps": 48000, "batch": 1024, "widths": [128, 128],
     "bidirectional": true, "seed": 0}

``fresh`` fits ``w2-mix3to10`` (fresh samples of both sides at every step) instead of
``w2-pair`` (2^16 fixed rows a side, or ``rows``); ``jitter`` is ``SemiDual``'s (default 0,
as before the automatic fit jittered the rows); the other keys default to the automatic
fit's settings at that d as they were when the figures of ``output-*.txt`` were measured
(both ways up to d = 32, 12 000 steps from d = 8 to 32, 48 000 otherwise, batch 256; the
automatic fit runs 48 000 steps on these rows and jitters them above d = 4 since), but for
``widths``: :func:`auto_widths`, (128, 128) at
d = 64, as the automatic fit had when the figures of ``output-*.txt`` were measured (its
widths there are (64, 64) since). Each fit is scored on 4 096 fresh source samples against
T* (L2-UVP), with the trace of the pushforward's covariance over the target's; one line per
fit, printed as it ends. Usage: python limits.py SPEC [SPEC ...]

Two prototypes, not settings of the package: ``"start": "linear"`` starts the game at the
linear (Bures) map of the standardised training rows instead of the identity (φ's quadratic
term A, ψ's A⁻¹: the conjugate pair); ``"jitter_decay": true`` lets the jitter fall to 0
with the rate's cosine (on both sides' rows, as drawn, whatever ``jitter_rows`` says). The
other keys are ``SemiDual``'s settings (``"jitter_rows": "source"``,
``"jitter_keeps_variance": true``, ...).
"""

import dataclasses
import json
import sys
import time
import warnings

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

import mongeflow as mf
from mongeflow.maps.default import default_potential
from mongeflow.metrics import source_with_map, target_samples
from mongeflow.problems.gaussian import bures_map
from mongeflow.problems.standardise import standardize
from mongeflow.schemes.base import params_of
from mongeflow.schemes.semidual import JITTER_STREAM, jittered


def with_quadratic(potential, A):
    """``potential`` (the default ICNN, started at T = id) with its quadratic term set to the
    PSD matrix A: diag(δ) + L Lᵀ, δ half A's smallest eigenvalue, L the Cholesky factor of
    A − δI (so T = ∇φ = A x while the network's output weights are still 0)."""
    d = A.shape[0]
    delta = 0.5 * np.linalg.eigvalsh(A).min()
    L = np.linalg.cholesky(A - delta * np.eye(d))
    dtype = potential.quad_factor.dtype
    assert potential.quad_factor.shape == (d, d), "the quadratic term must have rank d"
    potential = eqx.tree_at(lambda p: p.quad_factor, potential, jnp.asarray(L, dtype))
    diag = jnp.full((d,), np.log(np.expm1(delta)), dtype)  # softplus(diag) = δ
    return eqx.tree_at(lambda p: p.quad_diag, potential, diag)


class Prototype(mf.SemiDual):
    """The semi-dual scheme with the two prototypes: ψ started at the quadratic of
    ``DUAL["A_inv"]`` when set; the jitter decaying with the rate when ``DECAY["on"]``
    (module-level switches: each spec's scheme has its own decay_steps, hence its own
    compiled step, and the switches are set before it is traced)."""

    def init(self, potential):
        state = super().init(potential)
        if DUAL.get("A_inv") is None:
            return state
        psi = with_quadratic(potential, DUAL["A_inv"])
        dual_state = state.dual_state
        if not self.bidirectional:  # ψ's own Adam state (both ways it shares φ's optimiser)
            dual_state = self._optimizers()[1].init(params_of(psi))
        return state._replace(dual=psi, dual_state=dual_state)

    def step(self, potential, state, batch, task, key):
        if not (DECAY["on"] and self.jitter):
            return super().step(potential, state, batch, task, key)
        done = jnp.minimum(state.step.astype(batch.x.dtype) / self.decay_steps, 1.0)
        scale = self.jitter * 0.5 * (1.0 + jnp.cos(jnp.pi * done))
        kx, ky = jax.random.split(jax.random.fold_in(key, JITTER_STREAM))
        x, y = jittered(batch.x, scale, kx), jittered(batch.y, scale, ky)
        plain = dataclasses.replace(self, jitter=0.0)  # the scheme's own step, on x and y
        return plain.step(potential, state, batch._replace(x=x, y=y), task, key)


def started_at(make, A):
    """The factory ``make`` with each potential's quadratic term set to A."""
    return lambda key: with_quadratic(make(key), A)


DUAL, DECAY = {}, {"on": False}

warnings.simplefilter("ignore")
print("jax", jax.__version__, jax.devices(), flush=True)
scored = {}
for spec in sys.argv[1:]:
    kw = json.loads(spec)
    d = kw.pop("d")
    if d not in scored:
        pair = mf.get_problem("w2-pair", dim=d)
        x, true = source_with_map(pair, jax.random.key(7), 4096)
        y = np.asarray(target_samples(pair, jax.random.key(8), 4096))
        scored[d] = (pair, x, np.asarray(true), np.sum(np.var(y, 0)))
    pair, x, true, var = scored[d]
    rows = kw.pop("rows", None)
    if kw.pop("fresh", False):
        problem = mf.get_problem("w2-mix3to10", dim=d)
    else:
        problem = pair if rows is None else mf.get_problem("w2-pair", dim=d, n=rows)
    bidirectional = kw.pop("bidirectional", d <= 32)
    steps = kw.pop("steps", 12000 if 4 < d <= 32 else 48000)
    batch = kw.pop("batch", 256)
    seed = kw.pop("seed", 0)
    widths = kw.pop("widths", None)
    DECAY["on"] = kw.pop("jitter_decay", False)
    linear_start = kw.pop("start", "identity") == "linear"
    scheme = Prototype(decay_steps=steps, bidirectional=bidirectional, **kw)
    potential = default_potential(d, widths=widths, activation="beta-softplus")
    DUAL["A_inv"] = None
    if linear_start:
        posed = standardize(problem)
        xs = np.asarray(posed.source.sample(jax.random.key(1), 20000), np.float64)
        ys = np.asarray(posed.target.sample(jax.random.key(2), 20000), np.float64)
        A = bures_map(np.cov(xs.T), np.cov(ys.T))
        DUAL["A_inv"] = np.linalg.inv(A)
        potential = started_at(potential, A)
    t = time.perf_counter()
    res = mf.fit(
        problem,
        scheme,
        potential=potential,
        steps=steps,
        batch_size=batch,
        seed=seed,
        fallback=False,
        final_eval_size=0,
    )
    tx = np.asarray(res.transport(x))
    uvp = 100 * np.mean(np.sum((tx - true) ** 2, 1)) / var
    ratio = np.sum(np.var(tx, 0)) / var
    print(
        f"{spec}: L2-UVP {uvp:.2f} % trace ratio {ratio:.3f} "
        f"kept step {int(res.best_step[0])} wall {time.perf_counter() - t:.0f} s",
        flush=True,
    )
