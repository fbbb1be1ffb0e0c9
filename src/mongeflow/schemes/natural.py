"""Damped natural gradient in the L²(μ0) metric (paper, Cor. 3.8)."""

from __future__ import annotations

from typing import ClassVar

import equinox as eqx
import jax

from mongeflow.schemes.base import Scheme, Task, gram_solve, loss_and_grad


class Natural(Scheme):
    """θ ← θ − τ (G + λ I)⁻¹ ∇_θ F, G = (1/n) Σ_i J_iᵀ J_i, then projection.

    The τ → 0 limit of both the explicit and the implicit constrained schemes (Dumont,
    Lacombe & Vialard 2026, Cor. 3.8): the parametrised constrained gradient flow. G is
    applied matrix-free (JVP + VJP, conjugate gradient) or formed densely when small.

    Args:
        tau: time step τ of the flow.
        damping: λ > 0; G has rank ≤ n·d, so a damping (or pseudo-inverse) is required.
        solver: ``"auto"``, ``"dense"`` or ``"cg"`` (see :func:`gram_solve`).
        metric: ``"gram"``, or ``"identity"`` (G replaced by I: plain gradient descent,
            scaled by 1/(1 + λ)).
        cg_maxiter: conjugate-gradient iterations.
    """

    tau: float = 0.1
    damping: float = 0.1
    solver: str = eqx.field(static=True, default="auto")
    metric: str = eqx.field(static=True, default="gram")
    cg_maxiter: int = eqx.field(static=True, default=100)
    default_steps: ClassVar[int] = 100

    def __check_init__(self):
        if self.metric not in ("gram", "identity"):
            raise ValueError(f"metric must be 'gram' or 'identity', got {self.metric!r}")

    @property
    def time_step(self):
        return self.tau

    def init(self, potential):
        return None

    def step(self, potential, state, task: Task, key):
        k_batch, k_loss = jax.random.split(key)
        x = task.sample(k_batch)
        loss, grads = loss_and_grad(task, potential, x, k_loss)
        if self.metric == "identity":
            direction = jax.tree_util.tree_map(lambda g: g / (1.0 + self.damping), grads)
        else:
            direction = gram_solve(potential, x, grads, self.damping, self.solver, self.cg_maxiter)
        update = jax.tree_util.tree_map(lambda d: -self.tau * d, direction)
        return eqx.apply_updates(potential, update).project(), state, loss
