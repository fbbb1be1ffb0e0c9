"""Damped natural gradient in the L²(μ0) metric (paper, Cor. 3.8)."""

from __future__ import annotations

from typing import ClassVar

import jax

from mongeflow.schemes.base import UpdateScheme
from mongeflow.schemes.metric import METRICS, Gram, Metric
from mongeflow.settings import setting


class Natural(UpdateScheme):
    """θ ← θ − τ (G + λ I)⁻¹ ∇_θ F, G = (1/n) Σ_i J_iᵀ J_i, then projection.

    The τ → 0 limit of both the explicit and the implicit constrained schemes (Dumont,
    Lacombe & Vialard 2026, Cor. 3.8): the parametrised constrained gradient flow. G is
    applied matrix-free (JVP + VJP, conjugate gradient) or formed densely when small.

    The step solves the batch's Gram system exactly, so it follows the batch's noise as
    well as its signal: use a batch with n·d well above the parameter count p. On
    ``known-potential`` at d = 64 (p ≈ 7200), batch 256 (n·d ≈ 2.3 p) stalls near 4 % L2-UVP
    and batch 1024 (≈ 9 p) reaches 0.5 % (``benchmarks/maps/easy-2026-11-23``).

    The registered ``natural`` scheme is wrapped in :class:`Backtracking`.

    Example:
        >>> Natural(tau=0.05).metric
        Gram(damping=0.1, solver='auto', cg_maxiter=100)
    """

    tau: float = setting(0.1, help="time step τ of the flow", low=0.0, low_open=True, high=100.0)
    metric: Metric = setting(
        default_factory=Gram,
        help="the metric of the natural gradient: the L2(μ0) Gram matrix, or the identity",
        choices=METRICS,
    )
    name: ClassVar[str] = "natural"
    default_steps: ClassVar[int] = 100

    def init(self, potential):
        return None

    def propose(self, potential, state, task, batch, key):
        loss, grads = task.loss_and_grad(potential, batch, key)
        direction = self.metric.solve(potential, batch.x, grads)
        return jax.tree_util.tree_map(lambda d: -self.tau * d, direction), state, loss
