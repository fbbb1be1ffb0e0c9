"""Score estimators ∇ log ρ for a point cloud, and the exact score of a pushed-forward density."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from ott.geometry import pointcloud
from ott.problems.linear import linear_problem
from ott.solvers.linear import sinkhorn

from mongeflow.maps.base import Array, Potential, hessian, log_det_hessian


def median_epsilon(y: Array, scale: float = 0.05) -> Array:
    """ε = scale · median_ij |y_i − y_j|² over all pairs (diagonal included), as in the paper."""
    sq = jnp.sum((y[:, None, :] - y[None, :, :]) ** 2, axis=-1)
    return scale * jnp.median(sq)


def entropic_score(
    y: Array,
    epsilon: Array | float | None = None,
    *,
    epsilon_scale: float = 0.05,
    threshold: float = 1e-3,
    max_iterations: int = 2000,
) -> Array:
    """Self-entropic-OT score estimate at the points of the cloud ``y: [n, d]`` → ``[n, d]``.

    Solves the symmetric entropic OT problem of the empirical measure with itself, cost
    ½|y − y'|² and regularisation ε, then (Dumont, Lacombe & Vialard 2026, following the
    self-entropic score of Mordant et al.)

        ∇ log ρ(y_i) ≈ (2/ε) (Σ_j w_ij y_j − y_i),  w_ij = n π_ij (the plan's rows).

    Args:
        y: the cloud ``[n, d]``.
        epsilon: ε for the cost ½|·|²; default ``epsilon_scale · median |y_i − y_j|²``.
        epsilon_scale: the median-heuristic factor (paper: 0.05).
        threshold, max_iterations: Sinkhorn's stopping rule (OTT-JAX).

    Notes:
        OTT-JAX's point-cloud cost is |y − y'|² without the ½, so it is run with 2ε.
    """
    y = jax.lax.stop_gradient(y)
    if epsilon is None:
        epsilon = median_epsilon(y, epsilon_scale)
    # OTT-JAX relies on implicit rank promotion internally; allow it inside this call.
    with jax.numpy_rank_promotion("allow"):
        geom = pointcloud.PointCloud(y, y, epsilon=2.0 * epsilon)
        solver = sinkhorn.Sinkhorn(threshold=threshold, max_iterations=max_iterations)
        plan = solver(linear_problem.LinearProblem(geom)).matrix
    barycentre = (plan @ y) / jnp.sum(plan, axis=1, keepdims=True)
    return (2.0 / epsilon) * (barycentre - y)


def pushforward_score(potential: Potential, x: Array, source_score) -> Array:
    """Exact ∇ log ρ_T at T(x) for T = ∇φ and a source with known score (SPEC §4).

    ∇ log ρ_T(T(x)) = DT(x)^{-T} [∇ log ρ0(x) − ∇_x log det DT(x)], for ``x: [n, d]``.
    """

    def one(xi):
        H = hessian(potential, xi)
        g = jax.grad(lambda z: log_det_hessian(potential, z))(xi)
        return jnp.linalg.solve(H, source_score(xi) - g)  # H symmetric: H^{-T} = H^{-1}

    return jax.vmap(one)(x)
