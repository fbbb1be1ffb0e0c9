"""The energy distance to a target known by samples."""

from __future__ import annotations

from typing import ClassVar

import jax.numpy as jnp

from mongeflow.divergences.samples import SampleDivergence, block_size_setting, check_block_size
from mongeflow.kernels import energy_profile, mmd_squared, mmd_velocity
from mongeflow.maps.base import Array


class EnergyDistance(SampleDivergence):
    """D(ρ | γ) = ED(ρ, γ) = 2 E|Z − Y| − E|Z − Z'| − E|Y − Y'| for ρ = T#μ0, γ known by samples.

    The energy distance of Székely & Rizzo is the squared MMD of the kernel
    k(a, b) = −|a − b| (Sejdinovic et al. 2013). On a batch, z_i = T(x_i) and a fresh target
    batch y_j (as many), the loss is its V-statistic (all pairs, diagonal included, ≥ 0; the
    figure :func:`mongeflow.metrics.energy_distance` reports):

        loss = 2 mean_ij |z_i − y_j| − mean_ij |z_i − z_j| − mean_ij |y_i − y_j|,

    an estimate of D itself; its θ-gradient is mean_i J_θ(x_i)ᵀ ∇_W D(z_i). The velocity is
    v = −∇_W D = −2∇w with the witness w(u) = mean_j k(u, z_j) − mean_j k(u, y_j):

        v(z_i) = 2 (mean_j (z_i − z_j)/|z_i − z_j| − mean_j (z_i − y_j)/|z_i − y_j|),

    attraction to the target samples, repulsion among the pushed points (the MMD flow of
    Arbel et al. 2019 for this kernel). The gradient of |·| at 0 is taken as 0 (pairs that
    coincide to rounding count as coinciding).

    Kernel sums run in row blocks of ``block_size`` rows, forward and backward, so that
    n = m = 10⁴ needs about ``block_size × 10⁴`` entries at a time.

    Example:
        >>> import jax, mongeflow as mf
        >>> problem = mf.Problem("p", mf.Gaussian.standard(2), mf.Gaussian([1.0, 0.0]))
        >>> x = problem.source.sample(jax.random.key(0), 64)
        >>> phi = mf.AffinePotential(2)
        >>> EnergyDistance().velocity(phi, x, problem, jax.random.key(1)).shape
        (64, 2)
    """

    block_size: int = block_size_setting()
    name: ClassVar[str] = "energy"

    def __check_init__(self):
        check_block_size(self.block_size)

    def squared(self, z: Array, y: Array) -> Array:
        """ED_V(z, y), the V-statistic, differentiable in both point sets."""
        return mmd_squared(energy_profile, z, y, jnp.zeros((0,), z.dtype), self.block_size)

    def field(self, z: Array, y: Array) -> Array:
        """−∇_W ED at the points ``z`` of the pushed batch, against the target batch ``y``."""
        return mmd_velocity(energy_profile, z, y, jnp.zeros((0,), z.dtype), self.block_size)

    def cloud_loss(self, z: Array, y: Array) -> Array:
        return self.squared(z, y)
