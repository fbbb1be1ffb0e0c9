"""Blocked kernel sums between point clouds, shared by the sample divergences and the metrics.

Every sum over the n × m pairs of two point sets runs in row blocks of the first set
(``lax.map`` over blocks), so memory is O(block · m), forward and backward: n = m = 10⁴
needs about ``block × 10⁴`` kernel entries at a time. Squared distances come from
|a|² + |b|² − 2⟨a, b⟩ after both sets are moved by the midpoint of their means
(:func:`centred`), which keeps the expansion accurate far from the origin.

A radial kernel is given by its profile κ: k(a, b) = κ(|a − b|²); a :data:`Profile`
returns κ(s) and its slope κ'(s).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp

Array = jax.Array

#: κ(s, params) -> (κ(s), κ'(s)): a radial kernel k(a, b) = κ(|a − b|²) and its slope in s
Profile = Callable[[Array, Array], tuple[Array, Array]]


def row_blocks(a: Array, block: int) -> tuple[Array, Array]:
    """``a: [n, d]`` padded with zero rows to whole blocks → ``([k, block, d], [k, block])``
    (the second: 1 on real rows, 0 on padding)."""
    n, d = a.shape
    pad = (-n) % block
    a_pad = jnp.concatenate([a, jnp.zeros((pad, d), a.dtype)])
    mask = jnp.concatenate([jnp.ones(n, a.dtype), jnp.zeros(pad, a.dtype)])
    return a_pad.reshape(-1, block, d), mask.reshape(-1, block)


def centred(a: Array, b: Array) -> tuple[Array, Array]:
    """Both sets moved by the midpoint of their means: the squared distances below come from
    |a|² + |b|² − 2⟨a, b⟩, which cancels badly far from the origin; distances do not change."""
    centre = 0.5 * (jnp.mean(a, axis=0) + jnp.mean(b, axis=0))
    return a - centre[None, :], b - centre[None, :]


def squared_distances(rows: Array, b: Array, b_sq: Array) -> Array:
    """|rows_i − b_j|² ``[r, m]`` by one matrix product; entries within the rounding error of
    the expansion (a point and itself, or two points closer than about √ε_mach times their
    norm) are exactly 0, so that κ and κ' are taken at a true coincidence there."""
    rows_sq = jnp.sum(rows**2, axis=1)
    norms = rows_sq[:, None] + b_sq[None, :]
    sq = norms - 2.0 * rows @ b.T
    tiny = (32.0 + 4.0 * rows.shape[1]) * jnp.finfo(sq.dtype).eps * norms
    return jnp.where(sq > tiny, sq, 0.0)


def clip_block(block: int, n: int) -> int:
    return max(1, min(int(block), n))


def _kernel_sum(profile: Profile, a: Array, b: Array, params: Array, block: int) -> Array:
    """mean_ij κ(|a_i − b_j|²), in row blocks of ``a``: memory O(block · m)."""
    a, b = centred(a, b)
    rows, mask = row_blocks(a, clip_block(block, a.shape[0]))
    b_sq = jnp.sum(b**2, axis=1)

    def one(args):
        r, w = args
        value, _ = profile(squared_distances(r, b, b_sq), params)
        return w @ jnp.sum(value, axis=1)

    return jnp.sum(jax.lax.map(one, (rows, mask))) / (a.shape[0] * b.shape[0])


def kernel_field(profile: Profile, a: Array, b: Array, params: Array, block: int) -> Array:
    """G(a, b)_i = ∇_{a_i} mean_j κ(|a_i − b_j|²) = (2/m) Σ_j κ'(s_ij) (a_i − b_j), ``[n, d]``.

    Computed in row blocks of ``a`` as (2/m)(a_i Σ_j κ'_ij − Σ_j κ'_ij b_j): one matrix
    product per block and no ``[n, m, d]`` array. At a coincidence (s = 0) the term is 0
    (the difference vanishes; for the energy kernel, its subgradient 0 is taken).
    """
    a, b = centred(a, b)
    n = a.shape[0]
    rows, _ = row_blocks(a, clip_block(block, n))
    b_sq = jnp.sum(b**2, axis=1)

    def one(r):
        _, slope = profile(squared_distances(r, b, b_sq), params)
        return r * jnp.sum(slope, axis=1)[:, None] - slope @ b

    field = jax.lax.map(one, rows).reshape(-1, a.shape[1])[:n]
    return (2.0 / b.shape[0]) * field


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 4))
def kernel_mean(profile: Profile, a: Array, b: Array, params: Array, block: int) -> Array:
    """K(a, b) = mean_ij κ(|a_i − b_j|²) over all n·m pairs, diagonal included.

    Blocked in both directions: its gradient, ∂K/∂a_i = G(a, b)_i / n and
    ∂K/∂b_j = G(b, a)_j / m (:func:`kernel_field`), is computed block by block too, so
    n = m = 10⁴ needs about ``block · 10⁴`` kernel entries at a time, forward and backward.
    ``params`` (bandwidths) get no gradient.
    """
    return _kernel_sum(profile, a, b, params, block)


def _kernel_mean_fwd(profile, a, b, params, block):
    return _kernel_sum(profile, a, b, params, block), (a, b, params)


def _kernel_mean_bwd(profile, block, residuals, g):
    a, b, params = residuals
    da = (g / a.shape[0]) * kernel_field(profile, a, b, params, block)
    db = (g / b.shape[0]) * kernel_field(profile, b, a, params, block)
    return da, db, jnp.zeros_like(params)


kernel_mean.defvjp(_kernel_mean_fwd, _kernel_mean_bwd)


def mmd_squared(profile: Profile, z: Array, y: Array, params: Array, block: int) -> Array:
    """MMD²_V(z, y) = K(z, z) − 2 K(z, y) + K(y, y) (V-statistic: all pairs, diagonal
    included; ≥ 0 for a positive-definite or conditionally negative-definite kernel)."""
    return (
        kernel_mean(profile, z, z, params, block)
        - 2.0 * kernel_mean(profile, z, y, params, block)
        + kernel_mean(profile, y, y, params, block)
    )


def mmd_velocity(profile: Profile, z: Array, y: Array, params: Array, block: int) -> Array:
    """−∇_W MMD²(ρ, γ) at the points ``z`` of ρ: −2 ∇w(z_i) with the witness
    w(u) = mean_j k(u, z_j) − mean_j k(u, y_j), i.e. −2 (G(z, z) − G(z, y)).

    The first variation of MMD²(ρ, γ) = ∬k dρdρ − 2∬k dρdγ + ∬k dγdγ in ρ is 2w, so its
    Wasserstein gradient is 2∇w (Arbel, Korba, Salim & Gretton 2019, MMD gradient flow);
    on the batch it equals n ∂MMD²_V/∂z_i.
    """
    return -2.0 * (
        kernel_field(profile, z, z, params, block) - kernel_field(profile, z, y, params, block)
    )


def energy_profile(s: Array, params: Array) -> tuple[Array, Array]:
    """κ(s) = −√s (k(a, b) = −|a − b|) and κ'(s) = −1/(2√s), with κ'(0) = 0."""
    positive = s > 0
    root = jnp.sqrt(jnp.where(positive, s, 1.0))
    return jnp.where(positive, -root, 0.0), jnp.where(positive, -0.5 / root, 0.0)


def mean_distance(a: Array, b: Array, block: int = 1024) -> Array:
    """mean_ij |a_i − b_j| over all pairs, in row blocks (differentiable)."""
    return -kernel_mean(energy_profile, a, b, jnp.zeros((0,), a.dtype), block)


def gaussian_profile(s: Array, inv_two_h2: Array) -> tuple[Array, Array]:
    """κ(s) = Σ_k exp(−s/(2h_k²)) and κ'(s) = −Σ_k exp(−s/(2h_k²))/(2h_k²), for
    ``inv_two_h2 = 1/(2h²)`` of shape ``[K]``."""
    e = jnp.exp(-s[..., None] * inv_two_h2.reshape((1,) * s.ndim + (-1,)))
    return jnp.sum(e, axis=-1), -(e @ inv_two_h2)
