"""Implicit constrained scheme: the proximal point step in L²(μ0)."""

from __future__ import annotations

from typing import ClassVar

import jax.numpy as jnp

from mongeflow.maps.base import transport
from mongeflow.schemes.base import Objective, Scheme, previous_map, report, start_loss
from mongeflow.schemes.inner import INNER_SOLVERS, AdamInner, InnerSolver
from mongeflow.settings import setting


class Implicit(Scheme):
    """T_{k+1} = argmin_{T ∈ K} D(T#μ0 | γ) + (1/2τ) ‖T − T_k‖²_{L²(μ0)}.

    Parametrised: θ_{k+1} = argmin_θ F(θ) + (1/2τ) mean_i |T_θ(x_i) − T_k(x_i)|²
    (Dumont, Lacombe & Vialard 2026, implicit scheme; proven to converge, linearly for
    λ-convex V). The inner solver is Adam (the paper's: a fresh batch at every inner step,
    a fresh Adam state at every outer step) or L-BFGS (one batch per outer step; needs a
    divergence whose loss is its value).

    Example:
        >>> Implicit(tau=1.0).identity_start
        False
    """

    tau: float = setting(0.4, help="time step τ of the flow", low=0.0, low_open=True, high=100.0)
    inner: InnerSolver = setting(
        default_factory=AdamInner,
        help="inner solver of the step's proximal problem",
        choices=INNER_SOLVERS,
    )
    identity_start: bool = setting(
        False,
        help="use T_0 = id as the first proximal centre (paper: the initial network)",
        static=True,
    )
    name: ClassVar[str] = "implicit"
    default_steps: ClassVar[int] = 10

    def step(self, potential, state, batch, task, key):
        previous = previous_map(potential, state, self.identity_start)

        def value(phi, b, key):
            moved = transport(phi, b.x) - transport(previous, b.x)
            proximal = jnp.mean(jnp.sum(moved**2, -1))
            return task.loss(phi, b, key) + proximal / (2.0 * self.tau)

        loss = start_loss(task, potential, key)
        objective = Objective(value, task.sample, exact=task.divergence.loss_is_value)
        potential, value_end = self.inner.minimise(potential, objective, key)
        return potential, state + 1, report(task, loss, value_end)
