"""The energy distance to a target known by samples, and the blocked kernel sums it shares
with the Gaussian-kernel MMD."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ClassVar

import jax
import jax.numpy as jnp

from mongeflow.divergences.base import Divergence
from mongeflow.maps.base import Array, Potential, transport
from mongeflow.problems.base import Problem
from mongeflow.settings import setting

#: κ(s, params) -> (κ(s), κ'(s)): a radial kernel k(a, b) = κ(|a − b|²) and its slope in s
Profile = Callable[[Array, Array], tuple[Array, Array]]


# --- blocked sums of a radial kernel --------------------------------------------------------


def _row_blocks(a: Array, block: int) -> tuple[Array, Array]:
    """``a: [n, d]`` padded with zero rows to whole blocks → ``([k, block, d], [k, block])``
    (the second: 1 on real rows, 0 on padding)."""
    n, d = a.shape
    pad = (-n) % block
    a_pad = jnp.concatenate([a, jnp.zeros((pad, d), a.dtype)])
    mask = jnp.concatenate([jnp.ones(n, a.dtype), jnp.zeros(pad, a.dtype)])
    return a_pad.reshape(-1, block, d), mask.reshape(-1, block)


def _centred(a: Array, b: Array) -> tuple[Array, Array]:
    """Both sets moved by the midpoint of their means: the squared distances below come from
    |a|² + |b|² − 2⟨a, b⟩, which cancels badly far from the origin; distances do not change."""
    centre = 0.5 * (jnp.mean(a, axis=0) + jnp.mean(b, axis=0))
    return a - centre[None, :], b - centre[None, :]


def _squared_distances(rows: Array, b: Array, b_sq: Array) -> Array:
    """|rows_i − b_j|² ``[r, m]`` by one matrix product; entries within the rounding error of
    the expansion (a point and itself, or two points closer than about √ε_mach times their
    norm) are exactly 0, so that κ and κ' are taken at a true coincidence there."""
    rows_sq = jnp.sum(rows**2, axis=1)
    norms = rows_sq[:, None] + b_sq[None, :]
    sq = norms - 2.0 * rows @ b.T
    tiny = (32.0 + 4.0 * rows.shape[1]) * jnp.finfo(sq.dtype).eps * norms
    return jnp.where(sq > tiny, sq, 0.0)


def _floats(values) -> tuple[float, ...]:
    """The numbers of a list setting, given as a string ``"0.5, 1, 2"`` or as numbers."""
    if isinstance(values, str):
        values = values.replace(",", " ").split()
    try:
        return tuple(float(v) for v in values)
    except (TypeError, ValueError):
        raise ValueError(f"expected numbers such as '0.5,1,2', got {values!r}") from None


def _float_list(values) -> str:
    """The stored form of a list setting, ``"0.5,1.0,2.0"``: a string, so that the command
    line, ``run.json`` and a resumed run all hold the same value."""
    return ",".join(repr(v) for v in _floats(values))


def block_size_setting():
    """The ``block_size`` setting every sample-based divergence declares (one name, default
    and help text for the command line)."""
    return setting(
        1024,
        help="sample-based divergences: rows per block of the kernel sums (memory ∝ block × batch)",
        static=True,
        low=1,
    )


def check_block_size(block_size: int) -> None:
    if block_size < 1:
        raise ValueError(f"block_size must be ≥ 1, got {block_size}")


def _block_size(block: int, n: int) -> int:
    return max(1, min(int(block), n))


def _kernel_sum(profile: Profile, a: Array, b: Array, params: Array, block: int) -> Array:
    """mean_ij κ(|a_i − b_j|²), in row blocks of ``a``: memory O(block · m)."""
    a, b = _centred(a, b)
    rows, mask = _row_blocks(a, _block_size(block, a.shape[0]))
    b_sq = jnp.sum(b**2, axis=1)

    def one(args):
        r, w = args
        value, _ = profile(_squared_distances(r, b, b_sq), params)
        return w @ jnp.sum(value, axis=1)

    return jnp.sum(jax.lax.map(one, (rows, mask))) / (a.shape[0] * b.shape[0])


def kernel_field(profile: Profile, a: Array, b: Array, params: Array, block: int) -> Array:
    """G(a, b)_i = ∇_{a_i} mean_j κ(|a_i − b_j|²) = (2/m) Σ_j κ'(s_ij) (a_i − b_j), ``[n, d]``.

    Computed in row blocks of ``a`` as (2/m)(a_i Σ_j κ'_ij − Σ_j κ'_ij b_j): one matrix
    product per block and no ``[n, m, d]`` array. At a coincidence (s = 0) the term is 0
    (the difference vanishes; for the energy kernel, its subgradient 0 is taken).
    """
    a, b = _centred(a, b)
    n = a.shape[0]
    rows, _ = _row_blocks(a, _block_size(block, n))
    b_sq = jnp.sum(b**2, axis=1)

    def one(r):
        _, slope = profile(_squared_distances(r, b, b_sq), params)
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


# --- the divergence -----------------------------------------------------------------------


def target_batch(problem: Problem, key: Array | None, n: int, what: str) -> Array:
    """A batch of ``n`` target samples drawn with ``key`` (sample-based divergences)."""
    if key is None:
        raise ValueError(f"the {what} divergence draws target samples: it needs a PRNG key")
    k_target, _ = jax.random.split(key)
    return problem.target.sample(k_target, n)


class EnergyDistance(Divergence):
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
    needs_target_samples: ClassVar[bool] = True

    def __check_init__(self):
        check_block_size(self.block_size)

    def squared(self, z: Array, y: Array) -> Array:
        """ED_V(z, y), the V-statistic, differentiable in both point sets."""
        return mmd_squared(energy_profile, z, y, jnp.zeros((0,), z.dtype), self.block_size)

    def field(self, z: Array, y: Array) -> Array:
        """−∇_W ED at the points ``z`` of the pushed batch, against the target batch ``y``."""
        return mmd_velocity(energy_profile, z, y, jnp.zeros((0,), z.dtype), self.block_size)

    def _batches(self, potential: Potential, x: Array, problem: Problem, key):
        y = target_batch(problem, key, x.shape[0], self.name)
        return transport(potential, x), y

    def loss(self, potential, x, problem, key):
        z, y = self._batches(potential, x, problem, key)
        return self.squared(z, y)

    def value(self, potential, x, problem, key):
        return self.loss(potential, x, problem, key)

    def velocity(self, potential, x, problem, key):
        z, y = self._batches(potential, x, problem, key)
        return self.field(jax.lax.stop_gradient(z), y)
