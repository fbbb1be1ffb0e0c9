"""Explicit constrained scheme: the projected Euler step, solved as a regression."""

from __future__ import annotations

from typing import ClassVar

import jax
import jax.numpy as jnp
import optax

from mongeflow.maps.base import transport
from mongeflow.schemes.base import (
    DECAY_HELP,
    Objective,
    Scheme,
    previous_map,
    report,
    start_loss,
)
from mongeflow.schemes.inner import INNER_SOLVERS, AdamInner, InnerSolver
from mongeflow.settings import setting


class Explicit(Scheme):
    """T_{k+1} = argmin_{T ∈ K} ‖T − (T_k + τ v_k∘T_k)‖²_{L²(μ0)}, v = −∇_W D.

    Parametrised (Dumont, Lacombe & Vialard 2026, explicit scheme), a regression onto a
    frozen goal:

        θ_{k+1} = argmin_θ mean_i |T_θ(x_i) − sg(T_k(x_i) + τ v_k(T_k(x_i)))|²,

    solved by the inner solver: Adam (the paper: K' = 100 steps, lr 0.1, a fresh batch and
    a fresh velocity estimate at each), L-BFGS, or one Gauss–Newton step (the regression
    linearised at θ_k).

    Example:
        >>> Explicit(inner=AdamInner(steps=20)).inner.steps
        20
    """

    tau: float = setting(0.4, help="time step τ of the flow", low=0.0, low_open=True, high=100.0)
    inner: InnerSolver = setting(
        default_factory=AdamInner,
        help="inner solver of the step's regression",
        choices=INNER_SOLVERS,
    )
    decay_steps: int = setting(0, help=DECAY_HELP, static=True, low=0)
    identity_start: bool = setting(
        True, help="start the flow at T_0 = id rather than the initial network", static=True
    )
    name: ClassVar[str] = "explicit"
    default_steps: ClassVar[int] = 10

    def step_size(self, step):
        """τ_k: τ, or with ``decay_steps`` = K > 0, τ (1 + cos(π min(k, K)/K))/2."""
        if self.decay_steps <= 0:
            return jnp.asarray(self.tau)
        return optax.cosine_decay_schedule(self.tau, self.decay_steps)(step)

    def step(self, potential, state, batch, task, key):
        previous = previous_map(potential, state, self.identity_start)
        tau = self.step_size(state)

        def residual(phi, b, key):
            goal = transport(previous, b.x) + tau * task.velocity(previous, b, key)
            return transport(phi, b.x) - jax.lax.stop_gradient(goal)

        def value(phi, b, key):
            return jnp.mean(jnp.sum(residual(phi, b, key) ** 2, axis=-1))

        loss = start_loss(task, potential, key)
        potential, objective = self.inner.minimise(
            potential, Objective(value, task.sample, residual), key
        )
        return potential, state + 1, report(task, loss, objective)
