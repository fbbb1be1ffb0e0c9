"""An unconstrained drifting baseline: a residual MLP map trained by drifting-field regression.

Deng, Li, Li, Du & He (2026, *Generative Modeling via Drifting*, arXiv 2602.04770) train a
generator f by regressing it, at every step, onto its own output moved along the drifting
field V towards the data:

    loss(θ) = mean_i |f_θ(x_i) − sg(f_θ(x_i) + V(f_θ(x_i)))|²,

whose θ-gradient is −2 mean_i J_θ(x_i)ᵀ V(f_θ(x_i)): the outputs follow V. Here f is a map
x ↦ x + MLP(x) with no convexity constraint, and V is the field of
:class:`mongeflow.divergences.Drift` (:meth:`~mongeflow.divergences.Drift.field`: the
cross-weighted, normalised field towards a fresh target batch, the other pushed points as
negatives). Nothing else is added.

The drift stops moving the outputs once f#μ matches the target (the field is antisymmetric
in the two sets), so f pushes μ onto γ; but among the many maps that do so it picks one by
the implicit bias of the network and the optimiser, not the optimal (Monge) one. It is the
unconstrained counterpart of ``mongeflow.fit(problem, "explicit", "drift")``, which follows
the same field with T kept the gradient of a convex function (hence a Monge map whenever it
pushes μ onto γ, Brenier 1991). The two-sample benchmark
(:mod:`mongeflow.bench.twosample`) compares them: comparable energy distances, different
L2-UVP against T*.

Settings (not tuned on the benchmark): the hidden widths of the library's default ICNN for a
loss (:func:`~mongeflow.maps.default.auto_widths`, the same number of layers; at
32 < d ≤ 64 twice the semi-dual game's), SiLU activations,
the last layer zero (f = id at the start), Adam with its rate decaying to 0 over the steps
(cosine), batches of 256 drawn with replacement from each side, and the network applied to
standardised inputs: f(x) = x + s · MLP((x − m)/s), m the source sample's mean and s one
overall scale (as :func:`~mongeflow.problems.standardize` computes them).
"""

from __future__ import annotations

import dataclasses
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from mongeflow.bench.harness import Budget, run_budgets
from mongeflow.divergences import Drift
from mongeflow.maps.base import Array
from mongeflow.maps.default import auto_widths

#: Adam's initial rate (cosine decay to 0 over the steps)
LEARNING_RATE = 1e-3
#: points of each side per step
BATCH_SIZE = 256
#: the longest a compiled chunk of steps runs between two clock readings
CHUNK_SECONDS = 2.0


class DriftMLP(eqx.Module):
    """f(x) = x + s · MLP((x − m)/s): a residual map with no convexity constraint.

    Args:
        mlp: the network, ``[d] -> [d]``.
        shift: m ``[d]``.
        scale: s (a positive scalar array).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> f = drift_mlp_init(2, jax.random.key(0))
        >>> x = jnp.ones((3, 2))
        >>> bool(jnp.all(f.transport(x) == x))  # the identity at the start
        True
    """

    mlp: eqx.nn.MLP
    shift: Array
    scale: Array

    def __call__(self, x: Array) -> Array:
        """f(x) for one point ``[d]``."""
        return x + self.scale * self.mlp((x - self.shift) / self.scale)

    def transport(self, x: Array) -> Array:
        """f(x) for a batch ``[n, d]`` or one point ``[d]``."""
        x = jnp.asarray(x)
        return self(x) if x.ndim == 1 else jax.vmap(self)(x)


def drift_mlp_init(
    dim: int,
    key: Array,
    *,
    widths: tuple[int, ...] | None = None,
    shift: Array | None = None,
    scale: float = 1.0,
) -> DriftMLP:
    """A :class:`DriftMLP` equal to the identity: its last layer is zero.

    Args:
        dim: d.
        key: the initialisation's key.
        widths: hidden widths, all equal (default :func:`~mongeflow.maps.default.auto_widths`).
        shift, scale: the standardisation m (default 0) and s.

    Raises:
        ValueError: unequal or non-positive widths, or a non-positive scale.
    """
    widths = tuple(auto_widths(dim) if widths is None else widths)
    if not widths or len(set(widths)) != 1 or widths[0] < 1:
        raise ValueError(f"widths must be equal positive integers, got {widths}")
    if not scale > 0:
        raise ValueError(f"scale must be positive, got {scale}")
    dtype = jnp.zeros(()).dtype
    mlp = eqx.nn.MLP(dim, dim, widths[0], len(widths), activation=jax.nn.silu, key=key)
    last = mlp.layers[-1]
    mlp = eqx.tree_at(
        lambda m: (m.layers[-1].weight, m.layers[-1].bias),
        mlp,
        (jnp.zeros_like(last.weight), jnp.zeros_like(last.bias)),
    )
    shift = jnp.zeros(dim, dtype) if shift is None else jnp.asarray(shift, dtype)
    return DriftMLP(mlp, shift, jnp.asarray(scale, dtype))


@dataclasses.dataclass(frozen=True)
class DriftMLPFit:
    """What :func:`fit_drift_mlp` returns.

    Attributes:
        map: the trained :class:`DriftMLP` (its state after the last step run).
        losses: the mean regression loss of each compiled chunk of steps.
        steps: the steps run (below the budget when ``time_cap`` stopped the training).
        wall_time_s: training time, compilation included.
        settings: the settings, for the record.
    """

    map: DriftMLP
    losses: np.ndarray
    steps: int
    wall_time_s: float
    settings: dict


def drift_regression_loss(f: DriftMLP, x: Array, y: Array, drift: Drift) -> Array:
    """mean_i |f(x_i) − sg(f(x_i) + V(f(x_i)))|², V = ``drift.field`` towards ``y``."""
    z = jax.vmap(f)(x)
    goal = jax.lax.stop_gradient(z + drift.field(z, y))
    return jnp.mean(jnp.sum((z - goal) ** 2, axis=-1))


def fit_drift_mlp(
    x: Array,
    y: Array,
    *,
    steps: int = 2000,
    batch_size: int = BATCH_SIZE,
    learning_rate: float = LEARNING_RATE,
    widths: tuple[int, ...] | None = None,
    drift: Drift | None = None,
    seed: int = 0,
    time_cap: float | None = None,
) -> DriftMLPFit:
    """Train a :class:`DriftMLP` from the samples ``x`` (source) to ``y`` (target).

    Args:
        x, y: the training samples of each side, ``[N, d]`` and ``[M, d]``.
        steps: Adam steps (the rate decays to 0 over them).
        batch_size: points of each side per step, drawn with replacement.
        learning_rate: Adam's initial rate.
        widths: hidden widths (default those of the library's default ICNN).
        drift: the field (default ``Drift()``: the authors' temperatures, normalised).
        seed: the initialisation's and the batches' seed.
        time_cap: seconds after which training stops (``None``: run every step).

    Raises:
        ValueError: arrays of the wrong shape, or non-positive steps, batch size or rate.

    Example:
        >>> import jax
        >>> x = jax.random.normal(jax.random.key(0), (200, 2))
        >>> res = fit_drift_mlp(x, x + 1.0, steps=5, batch_size=32)
        >>> res.steps, res.map.transport(x).shape
        (5, (200, 2))
    """
    x, y = jnp.asarray(x), jnp.asarray(y)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1] or 0 in x.shape + y.shape:
        raise ValueError(f"x and y must be [N, d] and [M, d], got {x.shape} and {y.shape}")
    if steps < 1 or batch_size < 2 or not learning_rate > 0:
        raise ValueError(
            f"steps ≥ 1, batch_size ≥ 2 and a positive rate are needed, got {steps}, "
            f"{batch_size}, {learning_rate}"
        )
    drift = Drift() if drift is None else drift
    dim = x.shape[1]
    xs = np.asarray(x, np.float64)
    shift = xs.mean(axis=0)
    scale = float(np.sqrt(np.mean(np.sum((xs - shift) ** 2, axis=1)) / dim))
    if not scale > 0:
        raise ValueError("the source samples have no spread")
    key = jax.random.key(seed)
    k_init, k_train = jax.random.split(key)
    f = drift_mlp_init(dim, k_init, widths=widths, shift=shift, scale=scale)
    schedule = optax.cosine_decay_schedule(learning_rate, steps)
    optimiser = optax.adam(schedule)
    params, static = eqx.partition(f, eqx.is_inexact_array)
    opt_state = optimiser.init(params)

    @jax.jit
    def chunk(params, opt_state, first, count):
        def body(i, carry):
            params, opt_state, total = carry
            k_x, k_y = jax.random.split(jax.random.fold_in(k_train, first + i))
            xb = x[jax.random.randint(k_x, (batch_size,), 0, x.shape[0])]
            yb = y[jax.random.randint(k_y, (batch_size,), 0, y.shape[0])]
            loss_of = lambda p: drift_regression_loss(eqx.combine(p, static), xb, yb, drift)
            loss, grads = jax.value_and_grad(loss_of)(params)
            updates, opt_state = optimiser.update(grads, opt_state, params)
            return optax.apply_updates(params, updates), opt_state, total + loss

        zero = jnp.zeros((), x.dtype)
        params, opt_state, total = jax.lax.fori_loop(0, count, body, (params, opt_state, zero))
        return params, opt_state, total / count

    state = [(params, opt_state, None)]

    def advance(first: int, count: int):
        params, opt_state, _ = state[-1]
        params, opt_state, loss = jax.block_until_ready(chunk(params, opt_state, first, count))
        state[-1] = (params, opt_state, loss)
        return loss

    cap = math.inf if time_cap is None else time_cap
    budget = Budget("steps", steps, None)
    reached, curve = run_budgets(advance, float, [budget], cap, chunk_seconds=CHUNK_SECONDS)
    params, opt_state, _ = state[-1]
    done, elapsed, losses = reached["steps"]["iterations"], reached["steps"]["time"], curve["value"]
    settings = {
        "widths": list(widths or auto_widths(dim)),
        "activation": "silu",
        "optimizer": f"adam, rate {learning_rate:g} with cosine decay to 0 over {steps} steps",
        "batch_size": batch_size,
        "steps_budget": steps,
        "drift": {"temperatures": drift.temperatures, "normalise": drift.normalise},
        "standardised_input": {"scale": scale},
        "time_cap_s": time_cap,
    }
    return DriftMLPFit(eqx.combine(params, static), np.asarray(losses), done, elapsed, settings)


__all__ = ["DriftMLP", "DriftMLPFit", "drift_mlp_init", "drift_regression_loss", "fit_drift_mlp"]
