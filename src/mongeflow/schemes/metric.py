"""Metrics of the natural-gradient scheme: how a gradient becomes a direction."""

from __future__ import annotations

import abc
from typing import ClassVar

import jax

from mongeflow.maps.base import Array, Potential
from mongeflow.schemes.base import gram_solve
from mongeflow.settings import Settings, setting


class Metric(Settings):
    """Turns ∇_θ F into a direction M⁻¹ ∇_θ F for a metric M on the parameters."""

    @abc.abstractmethod
    def solve(self, potential: Potential, x: Array, grads):
        """M⁻¹ grads, for the batch ``x: [n, d]`` (a pytree like the parameters)."""


class Gram(Metric):
    """M = G + λI, G = (1/n) Σ_i J_iᵀ J_i: the L²(μ0) metric pulled back to θ
    (see :func:`~mongeflow.schemes.base.gram_solve`)."""

    # λ > 0: G has rank ≤ n·d, and the Woodbury solve (p > n·d) divides by λ
    damping: float = setting(0.1, help="Gram damping λ (G has rank ≤ n·d)", low=0.0, low_open=True)
    solver: str = setting(
        "auto",
        help="Gram solve: dense, matrix-free conjugate gradient, or auto (dense when small)",
        static=True,
        choices=("auto", "dense", "cg"),
    )
    cg_maxiter: int = setting(100, help="conjugate-gradient iterations", static=True, low=1)
    name: ClassVar[str] = "gram"

    def __check_init__(self):
        if self.solver not in ("auto", "dense", "cg"):
            raise ValueError(f"solver must be 'auto', 'dense' or 'cg', got {self.solver!r}")

    def solve(self, potential, x, grads):
        return gram_solve(potential, x, grads, self.damping, self.solver, self.cg_maxiter)


class IdentityMetric(Metric):
    """M = (1 + λ) I: plain gradient descent, scaled by 1/(1 + λ)."""

    damping: float = setting(0.1, help="λ: the gradient is divided by 1 + λ", low=0.0)
    name: ClassVar[str] = "identity"

    def solve(self, potential, x, grads):
        return jax.tree_util.tree_map(lambda g: g / (1.0 + self.damping), grads)


METRICS: dict[str, Metric] = {"gram": Gram(), "identity": IdentityMetric()}
