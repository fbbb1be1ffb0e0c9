"""Explicit constrained scheme: projected Euler step, solved as a regression (SPEC §2–3)."""

from __future__ import annotations

from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp

from mongeflow.maps.base import transport
from mongeflow.schemes.base import (
    Scheme,
    Task,
    adam_inner_loop,
    gram_solve,
    params_of,
    previous_map,
)


class Explicit(Scheme):
    """T_{k+1} = argmin_{T ∈ K} ‖T − (T_k + τ v_k∘T_k)‖²_{L²(μ0)}, v = −∇_W D.

    Parametrised (Dumont, Lacombe & Vialard 2026, explicit scheme):
    θ_{k+1} = argmin_θ mean_i |T_θ(x_i) − sg(T_k(x_i) + τ v_k(T_k(x_i)))|².

    Args:
        tau: time step τ.
        inner_steps: K', Adam steps per outer step, each on a fresh batch with a fresh
            velocity estimate (``solver="adam"``).
        inner_decay: cosine decay of the inner Adam rate to 0 within each outer step
            (paper: no); removes most of the mini-batch noise of the inner solution.
        inner_learning_rate: the inner Adam learning rate (paper: 0.1); a fresh Adam state
            at every outer step, parameters warm-started.
        solver: ``"adam"`` (the paper's) or ``"linearised"``: the exact solve of the
            regression linearised at θ_k, δ = τ (G + λI)⁻¹ (1/n) Σ J_iᵀ v_i.
        identity_start: T_0 = id rather than the initial network (paper: yes).
        damping: λ of the linearised solve.
    """

    tau: float = 0.4
    inner_steps: int = eqx.field(static=True, default=100)
    inner_learning_rate: float = 0.1
    solver: str = eqx.field(static=True, default="adam")
    inner_decay: bool = eqx.field(static=True, default=False)
    identity_start: bool = eqx.field(static=True, default=True)
    damping: float = 0.1
    default_steps: ClassVar[int] = 10

    def __check_init__(self):
        if self.solver not in ("adam", "linearised"):
            raise ValueError(f"solver must be 'adam' or 'linearised', got {self.solver!r}")

    @property
    def time_step(self):
        return self.tau

    @property
    def seeds_in_parallel(self) -> bool:
        return self.solver != "linearised"

    def init(self, potential):
        return jnp.zeros((), jnp.int32)

    def step(self, potential, state, task: Task, key):
        if self.solver == "linearised":
            return self._linearised(potential, state, task, key)
        previous = previous_map(potential, state, self.identity_start)

        def regression(phi, key):
            k_batch, k_vel = jax.random.split(key)
            x = task.sample(k_batch)
            goal = jax.lax.stop_gradient(
                transport(previous, x) + self.tau * task.divergence.velocity(previous, x, k_vel)
            )
            return jnp.mean(jnp.sum((transport(phi, x) - goal) ** 2, axis=-1))

        potential, loss = adam_inner_loop(
            potential, regression, self.inner_learning_rate, self.inner_steps, key, self.inner_decay
        )
        return potential, state + 1, loss

    def _linearised(self, potential, state, task, key):
        k_batch, k_vel = jax.random.split(key)
        x = task.sample(k_batch)
        v = jax.lax.stop_gradient(task.divergence.velocity(potential, x, k_vel))
        # (1/n) Σ J_iᵀ v_i as a VJP of the batch map
        _, vjp = eqx.filter_vjp(lambda p: transport(p, x), potential)
        (rhs,) = vjp(v / x.shape[0])
        rhs = params_of(rhs)
        delta = gram_solve(potential, x, rhs, self.damping)
        update = jax.tree_util.tree_map(lambda d: self.tau * d, delta)
        new = eqx.apply_updates(potential, update).project()
        return new, state + 1, jnp.mean(jnp.sum(v**2, axis=-1))
