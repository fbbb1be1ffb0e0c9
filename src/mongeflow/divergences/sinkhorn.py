"""The debiased Sinkhorn divergence to a target known by samples (OTT-JAX solves)."""

from __future__ import annotations

import functools
from typing import ClassVar, NamedTuple

import jax
import jax.numpy as jnp

from mongeflow.divergences.samples import SampleDivergence, block_size_setting, check_block_size
from mongeflow.kernels import centred, clip_block, row_blocks, squared_distances
from mongeflow.maps.base import Array
from mongeflow.settings import setting


def mean_squared_distance(z: Array, y: Array) -> Array:
    """mean_ij |z_i − y_j|² = |mean z − mean y|² + tr Cov z + tr Cov y, in O((n + m) d)."""
    gap = jnp.mean(z, axis=0) - jnp.mean(y, axis=0)
    return jnp.sum(gap**2) + jnp.sum(jnp.var(z, axis=0)) + jnp.sum(jnp.var(y, axis=0))


def _row_lse(
    rows: Array, cols: Array, f_rows: Array, g_cols: Array, eps, vec, block: int
) -> tuple[Array, Array]:
    """For each row i: ε log Σ_j vec_j exp((f_i + g_j − |r_i − c_j|²)/ε) and its sign, in row
    blocks of ``rows`` (memory O(block · m))."""
    n = rows.shape[0]
    blocks, _ = row_blocks(rows, block)
    f_pad = jnp.concatenate([f_rows, jnp.zeros((-n) % block, f_rows.dtype)]).reshape(-1, block)
    col_sq = jnp.sum(cols**2, axis=1)
    weights = None if vec is None else vec[None, :]

    def one(args):
        r, f = args
        logits = (f[:, None] + g_cols[None, :] - squared_distances(r, cols, col_sq)) / eps
        if weights is None:
            return jax.nn.logsumexp(logits, axis=1), jnp.ones(r.shape[0], rows.dtype)
        return jax.nn.logsumexp(logits, axis=1, b=weights, return_sign=True)

    res, sign = jax.lax.map(one, (blocks, f_pad))
    return eps * res.reshape(-1)[:n], sign.reshape(-1)[:n]


@functools.cache
def _blocked_point_cloud():
    """An OTT-JAX point cloud (cost |a − b|², unscaled) whose online kernel applications run
    in row blocks with ``lax.map``, so a solve never holds the n × m cost matrix.

    OTT-JAX's own online mode (``batch_size``) fails with current JAX (OTT-JAX 0.6.0 calls
    ``jax.interpreters.batching.is_vmappable``, which JAX 0.10 no longer has). Every step of
    the log-domain Sinkhorn solver (updates, marginals, the regularised cost) goes through
    ``apply_lse_kernel``, which is all this class changes. The class is built on first use,
    so that importing mongeflow does not import OTT-JAX (about 3 s).
    """
    from ott.geometry import pointcloud

    @jax.tree_util.register_pytree_node_class
    class BlockedPointCloud(pointcloud.PointCloud):
        def apply_lse_kernel(self, f, g, eps, vec=None, axis=0):
            if not self.is_online:
                return super().apply_lse_kernel(f, g, eps, vec, axis)
            if axis == 1:  # over the columns, one value per row of x
                res, sign = _row_lse(self.x, self.y, f, g, eps, vec, self.batch_size)
                remove = f
            else:  # over the rows, one value per row of y
                res, sign = _row_lse(self.y, self.x, g, f, eps, vec, self.batch_size)
                remove = g
            return res - jnp.where(jnp.isfinite(remove), remove, 0.0), sign

    return BlockedPointCloud


def entropic_map(z: Array, y: Array, g: Array, epsilon, block: int) -> Array:
    """T(z_i) = Σ_j w_ij y_j with w_ij = softmax_j((g_j − |z_i − y_j|²)/ε): the barycentric
    projection of the entropic plan of potentials (f, g) with uniform weights on y, the row
    normalisation standing for f (the soft c-transform), in row blocks of ``z``."""
    n = z.shape[0]
    blocks, _ = row_blocks(z, block)
    y_sq = jnp.sum(y**2, axis=1)

    def one(r):
        logits = (g[None, :] - squared_distances(r, y, y_sq)) / epsilon
        return jax.nn.softmax(logits, axis=1) @ y

    return jax.lax.map(one, blocks).reshape(-1, z.shape[1])[:n]


class SinkhornSolution(NamedTuple):
    """The debiased Sinkhorn divergence of two batches and the entropic maps at the first.

    Attributes:
        divergence: S_ε(z, y) (0 when the ``yy`` term was not solved: then only the maps).
        map_xy: T_xy(z_i) = Σ_j π^{zy}_ij y_j / Σ_j π^{zy}_ij, the barycentric (entropic) map.
        map_xx: T_xx(z_i) = Σ_j π^{zz}_ij z_j / Σ_j π^{zz}_ij, the same for z onto itself.
        epsilon: the ε used.
        converged: whether every Sinkhorn solve met its threshold.
    """

    divergence: Array
    map_xy: Array
    map_xx: Array
    epsilon: Array
    converged: Array


class Sinkhorn(SampleDivergence):
    """D(ρ | γ) = S_ε(ρ, γ) = OT_ε(ρ, γ) − ½ OT_ε(ρ, ρ) − ½ OT_ε(γ, γ), the debiased Sinkhorn
    divergence (Genevay, Peyré & Cuturi 2018; Feydy et al. 2019), cost c(a, b) = |a − b|².

    OT_ε is the entropic OT cost as OTT-JAX computes it (the dual value ⟨f, α⟩ + ⟨g, β⟩ at
    the Sinkhorn potentials); its three terms share one ε, set from the batches' own scale:

        ε = ``relative_epsilon`` × mean_ij |z_i − y_j|²   (a constant, not differentiated),

    so that the divergence is the same in any units (0.05, the factor OTT-JAX applies to a
    cost statistic by default).

    First variation and velocity (Feydy et al. 2019, Prop. 2): δS/δρ = f_ργ − f_ρρ, with f
    the entropic potentials extended by the soft c-transform, and for |·|² cost
    ∇f_ργ(z) = 2 (z − T_ργ(z)), T_ργ the barycentric entropic map. So

        ∇_W S(z_i) = 2 (T_ρρ(z_i) − T_ργ(z_i)),   v(z_i) = 2 (T_ργ(z_i) − T_ρρ(z_i)),

    computed from the OTT-JAX potentials (the plans are applied, never stored); at the batch
    points it equals −n ∂S_ε/∂z_i (envelope theorem), which the tests check against finite
    differences. The loss is S_ε on the batch z_i = T(x_i) against a fresh target batch of
    as many points, with that same envelope gradient attached: its value is S_ε and its
    θ-gradient is mean_i J_θ(x_i)ᵀ ∇_W S(z_i) (what OTT-JAX's implicit differentiation
    with frozen potentials also returns), without differentiating through the solver.

    The three entropic problems are solved by OTT-JAX's Sinkhorn solver (log domain) on
    point clouds whose kernel applications run in row blocks of ``block_size`` rows, so
    n = m = 10⁴ needs about ``block_size × 10⁴`` cost entries at a time. Each solve stops
    when its marginal error is below ``threshold`` or after ``iterations`` iterations (as
    flat settings ``sinkhorn_threshold`` and ``sinkhorn_iterations``: the flags
    ``--sinkhorn-threshold``, ``--sinkhorn-iterations``).

    Example:
        >>> import jax, mongeflow as mf
        >>> problem = mf.Problem("p", mf.Gaussian.standard(2), mf.Gaussian([1.0, 0.0]))
        >>> x = problem.source.sample(jax.random.key(0), 64)
        >>> Sinkhorn().velocity(mf.AffinePotential(2), x, problem, jax.random.key(1)).shape
        (64, 2)
    """

    relative_epsilon: float = setting(
        0.05,
        help="Sinkhorn divergence: ε = this × the mean squared distance between the batches",
        low=0.0,
        low_open=True,
    )
    threshold: float = setting(
        1e-3,
        help="Sinkhorn divergence: stop the Sinkhorn iterations at this marginal error",
        static=True,
        low=0.0,
        low_open=True,
        flag="sinkhorn-threshold",
    )
    iterations: int = setting(
        2000,
        help="Sinkhorn divergence: most Sinkhorn iterations per solve",
        static=True,
        low=1,
        flag="sinkhorn-iterations",
    )
    block_size: int = block_size_setting()
    name: ClassVar[str] = "sinkhorn"

    def __check_init__(self):
        if isinstance(self.relative_epsilon, (int, float)) and self.relative_epsilon <= 0:
            raise ValueError(f"relative_epsilon must be > 0, got {self.relative_epsilon}")
        if self.iterations < 1:
            raise ValueError(f"iterations must be ≥ 1, got {self.iterations}")
        check_block_size(self.block_size)

    def epsilon(self, z: Array, y: Array) -> Array:
        """ε for the batches ``z`` and ``y`` (not differentiated)."""
        sq = jax.lax.stop_gradient(mean_squared_distance(z, y))
        return self.relative_epsilon * jnp.maximum(sq, jnp.finfo(sq.dtype).tiny)

    def solve(
        self, z: Array, y: Array, epsilon: Array | None = None, with_yy: bool = True
    ) -> SinkhornSolution:
        """Solve the two (``with_yy=False``: only those the velocity needs) or three entropic
        problems of S_ε(z, y) with OTT-JAX; nothing is differentiated."""
        z, y = jax.lax.stop_gradient(z), jax.lax.stop_gradient(y)
        epsilon = self.epsilon(z, y) if epsilon is None else jax.lax.stop_gradient(epsilon)
        zc, yc = centred(z, y)  # the costs |a|² + |b|² − 2⟨a, b⟩ cancel far from 0
        block = clip_block(self.block_size, max(z.shape[0], y.shape[0]))
        from ott.geometry import costs
        from ott.tools import sinkhorn_divergence as ott_divergence

        with jax.numpy_rank_promotion("allow"):  # OTT-JAX broadcasts implicitly
            value, out = ott_divergence.sinkhorn_divergence(
                _blocked_point_cloud(),
                zc,
                yc,
                cost_fn=costs.SqEuclidean(),
                epsilon=epsilon,
                batch_size=block,
                static_b=not with_yy,
                offset_static_b=None if with_yy else 0.0,
                solve_kwargs={
                    "threshold": self.threshold,
                    "max_iterations": self.iterations,
                },
            )
        (_, g_xy), (_, g_xx), _ = out.potentials
        map_xy = entropic_map(zc, yc, g_xy, epsilon, block)
        map_xx = entropic_map(zc, zc, g_xx, epsilon, block)
        shift = z - zc  # back to the batches' own coordinates
        solved = out.converged[: 3 if with_yy else 2]
        converged = jnp.all(jnp.stack([jnp.asarray(c) for c in solved]))
        if not with_yy:
            value = jnp.zeros((), z.dtype)
        return SinkhornSolution(value, map_xy + shift, map_xx + shift, epsilon, converged)

    def field(self, z: Array, y: Array, epsilon: Array | None = None) -> Array:
        """v(z_i) = 2 (T_zy(z_i) − T_zz(z_i)) = −∇_W S_ε at the points of ``z``."""
        sol = self.solve(z, y, epsilon, with_yy=False)
        return 2.0 * (sol.map_xy - sol.map_xx)

    def divergence(self, z: Array, y: Array, epsilon: Array | None = None) -> Array:
        """S_ε(z, y), with the envelope gradient ∂S/∂z_i = (2/n)(T_zz(z_i) − T_zy(z_i))."""
        sol = self.solve(z, y, epsilon)
        grad = jax.lax.stop_gradient(2.0 * (sol.map_xx - sol.map_xy) / z.shape[0])
        moved = z - jax.lax.stop_gradient(z)  # 0, with gradient the identity
        return jax.lax.stop_gradient(sol.divergence) + jnp.sum(grad * moved)

    def cloud_loss(self, z: Array, y: Array) -> Array:
        return self.divergence(z, y)

    def cloud_value(self, z: Array, y: Array) -> Array:
        return self.solve(z, y).divergence
