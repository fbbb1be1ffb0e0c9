"""Implicit constrained scheme: proximal point in L²(μ0) (SPEC §2–3)."""

from __future__ import annotations

from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import optax

from mongeflow.maps.base import transport
from mongeflow.schemes.base import Scheme, Task, adam_inner_loop, params_of, previous_map


class Implicit(Scheme):
    """T_{k+1} = argmin_{T ∈ K} D(T#μ0 | γ) + (1/2τ) ‖T − T_k‖²_{L²(μ0)}.

    Parametrised: θ_{k+1} = argmin_θ F(θ) + (1/2τ) mean_i |T_θ(x_i) − T_k(x_i)|²
    (Dumont, Lacombe & Vialard 2026, implicit scheme; proven to converge, linearly for λ > 0).

    Args:
        tau: time step τ.
        inner_steps: iterations of the inner solver per outer step.
        inner_decay: cosine decay of the inner Adam rate to 0 within each outer step
            (paper: no); removes most of the mini-batch noise of the inner solution.
        inner_learning_rate: Adam's learning rate (paper: 0.1).
        solver: ``"adam"`` (the paper's: a fresh batch at every inner step, fresh Adam state
            at every outer step) or ``"lbfgs"`` (L-BFGS with line search on one batch per
            outer step; needs the log-det loss, whose value is the objective).
        identity_start: use T_0 = id as the first proximal centre (paper: no, the initial
            network).
        lbfgs_batch_factor: the L-BFGS batch is this many times the mini-batch size.
    """

    tau: float = 0.4
    inner_steps: int = eqx.field(static=True, default=100)
    inner_learning_rate: float = 0.1
    solver: str = eqx.field(static=True, default="adam")
    inner_decay: bool = eqx.field(static=True, default=False)
    identity_start: bool = eqx.field(static=True, default=False)
    lbfgs_batch_factor: int = eqx.field(static=True, default=4)
    default_steps: ClassVar[int] = 10

    def __check_init__(self):
        if self.solver not in ("adam", "lbfgs"):
            raise ValueError(f"solver must be 'adam' or 'lbfgs', got {self.solver!r}")

    @property
    def time_step(self):
        return self.tau

    def init(self, potential):
        return jnp.zeros((), jnp.int32)

    def _objective(self, task, previous, p, x, key):
        proximal = jnp.mean(jnp.sum((transport(p, x) - transport(previous, x)) ** 2, axis=-1))
        return task.divergence.loss(p, x, key) + proximal / (2.0 * self.tau)

    def step(self, potential, state, task: Task, key):
        previous = previous_map(potential, state, self.identity_start)
        if self.solver == "lbfgs":
            return self._lbfgs(potential, previous, state, task, key)

        def proximal(phi, key):
            k_batch, k_loss = jax.random.split(key)
            return self._objective(task, previous, phi, task.sample(k_batch), k_loss)

        potential, loss = adam_inner_loop(
            potential, proximal, self.inner_learning_rate, self.inner_steps, key, self.inner_decay
        )
        return potential, state + 1, loss

    def _lbfgs(self, potential, previous, state, task, key):
        if not task.divergence.differentiable:
            raise ValueError("the L-BFGS inner solver needs a divergence whose loss is its value")
        keys = jax.random.split(key, self.lbfgs_batch_factor)
        x = jnp.concatenate([task.sample(k) for k in keys])
        params, static = eqx.partition(potential, eqx.is_inexact_array)
        fn = lambda p: self._objective(task, previous, eqx.combine(p, static), x, None)
        optimizer = optax.lbfgs()
        value_and_grad = optax.value_and_grad_from_state(fn)

        def inner(carry, _):
            p, opt_state = carry
            value, grad = value_and_grad(p, state=opt_state)
            updates, opt_state = optimizer.update(
                grad, opt_state, p, value=value, grad=grad, value_fn=fn
            )
            p = params_of(eqx.combine(optax.apply_updates(p, updates), static).project())
            return (p, opt_state), value

        (params, _), values = jax.lax.scan(
            inner, (params, optimizer.init(params)), None, length=self.inner_steps
        )
        return eqx.combine(params, static), state + 1, values[-1]
