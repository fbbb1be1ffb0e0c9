"""The squared MMD of a Gaussian kernel to a target known by samples."""

from __future__ import annotations

from typing import ClassVar

import jax
import jax.numpy as jnp

from mongeflow.divergences.samples import SampleDivergence, block_size_setting, check_block_size
from mongeflow.divergences.score import _median_of_squared_distances
from mongeflow.kernels import (
    centred,
    gaussian_profile,
    mmd_squared,
    mmd_velocity,
    squared_distances,
)
from mongeflow.maps.base import Array
from mongeflow.settings import floats as _floats
from mongeflow.settings import setting

#: the median heuristic looks at most at this many points of the pooled batch (half each)
MEDIAN_POINTS = 1024


class MMD(SampleDivergence):
    """D(ρ | γ) = MMD²_k(ρ, γ) = E k(Z, Z') − 2 E k(Z, Y) + E k(Y, Y') with a Gaussian kernel.

    k(a, b) = Σ_h exp(−|a − b|²/(2h²)) (Gretton et al. 2012), the bandwidths taken from the
    batch by the median heuristic: h₀² = the median of |u_i − u_j|² over the pooled batch
    u = (z, y) (the lower median over all pairs, at most 512 points of each batch; a
    constant of the batch, not differentiated), and

    - ``bandwidth="median"``: one kernel, h = h₀;
    - ``bandwidth="multiscale"``: the sum over h = c·h₀ for c in ``scales`` (a tuple of
      floats, default (0.5, 1, 2); a list or a string such as ``"0.5,1,2"`` is read as one),
      which keeps a useful gradient when the two sets are far apart.

    On a batch, z_i = T(x_i) and a fresh target batch y_j (as many), the loss is the
    V-statistic MMD²_V(z, y) (all pairs, diagonal included, ≥ 0), an estimate of D itself.
    The velocity is v = −∇_W D = −2∇w with the witness w(u) = mean_j k(u, z_j) −
    mean_j k(u, y_j) (MMD gradient flow, Arbel, Korba, Salim & Gretton 2019); at the batch
    points it equals −n ∂MMD²_V/∂z_i. Kernel sums run in row blocks (see
    :class:`~mongeflow.divergences.energy.EnergyDistance`).

    Example:
        >>> import jax, mongeflow as mf
        >>> problem = mf.Problem("p", mf.Gaussian.standard(2), mf.Gaussian([1.0, 0.0]))
        >>> x = problem.source.sample(jax.random.key(0), 64)
        >>> mmd = MMD(bandwidth="multiscale")
        >>> bool(mmd.loss(mf.AffinePotential(2), x, problem, jax.random.key(1)) > 0)
        True
    """

    bandwidth: str = setting(
        "median",
        help="MMD: Gaussian bandwidth, the median heuristic or a sum over multiples of it",
        static=True,
        choices=("median", "multiscale"),
    )
    scales: tuple[float, ...] = setting(
        (0.5, 1.0, 2.0),
        help="MMD multiscale: multiples of the median bandwidth whose kernels are summed",
        static=True,
        listed=True,
        low=0.0,
        low_open=True,
    )
    block_size: int = block_size_setting()
    name: ClassVar[str] = "mmd"

    def __post_init__(self):
        self.scales = _floats(self.scales)

    def __check_init__(self):
        if self.bandwidth not in ("median", "multiscale"):
            raise ValueError(f"bandwidth must be 'median' or 'multiscale', got {self.bandwidth!r}")
        scales = _floats(self.scales)
        if not scales or not all(0 < s < float("inf") for s in scales):
            raise ValueError(f"scales must be positive finite numbers, got {self.scales}")
        check_block_size(self.block_size)

    def bandwidths(self, z: Array, y: Array) -> Array:
        """The squared bandwidths h² ``[K]`` of the batches ``z``, ``y`` (not differentiated)."""
        half = MEDIAN_POINTS // 2
        pooled = jax.lax.stop_gradient(jnp.concatenate([z[:half], y[:half]]))
        pooled, _ = centred(pooled, pooled)
        sq = squared_distances(pooled, pooled, jnp.sum(pooled**2, axis=1))
        sq = 0.5 * (sq + sq.T)  # exactly symmetric, as the selection assumes
        h2 = jnp.maximum(_median_of_squared_distances(sq), jnp.finfo(pooled.dtype).tiny)
        if self.bandwidth == "median":
            return h2[None]
        return h2 * jnp.asarray(_floats(self.scales), pooled.dtype) ** 2

    def squared(self, z: Array, y: Array, h2: Array | None = None) -> Array:
        """MMD²_V(z, y) with squared bandwidths ``h2`` (default :meth:`bandwidths`)."""
        h2 = self.bandwidths(z, y) if h2 is None else h2
        return mmd_squared(gaussian_profile, z, y, 0.5 / h2, self.block_size)

    def field(self, z: Array, y: Array, h2: Array | None = None) -> Array:
        """−∇_W MMD² at the points ``z`` of the pushed batch, against the target batch ``y``."""
        h2 = self.bandwidths(z, y) if h2 is None else h2
        return mmd_velocity(gaussian_profile, z, y, 0.5 / h2, self.block_size)

    def cloud_loss(self, z: Array, y: Array) -> Array:
        return self.squared(z, y)
