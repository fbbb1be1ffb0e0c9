"""The drifting field of Deng et al. (2026) towards a target known by samples."""

from __future__ import annotations

from typing import ClassVar

import jax
import jax.numpy as jnp

from mongeflow.divergences.samples import SampleDivergence, block_size_setting, check_block_size
from mongeflow.kernels import (
    centred,
    clip_block,
    energy_profile,
    mean_distance,
    mmd_squared,
    row_blocks,
    squared_distances,
)
from mongeflow.maps.base import Array
from mongeflow.settings import floats as _floats
from mongeflow.settings import setting


def drift_field(
    z: Array,
    positives: Array,
    negatives: Array,
    temperature: float,
    scale: Array,
    *,
    mask_self: bool = False,
    block: int = 1024,
) -> Array:
    """The cross-weighted drifting field at ``z: [n, d]`` for one temperature R, ``[n, d]``.

    With the columns t = (negatives | positives) and the logits
    ℓ_ij = −|z_i − t_j| / (R · scale) (ℓ_ii = −∞ on the negatives when ``mask_self``: there
    the negatives are ``z`` itself), the affinities are normalised over both axes,

        A_ij = (softmax_j ℓ_ij · softmax_i ℓ_ij)^{1/2}   (over all n rows, all columns),

    split as A⁺ (positive columns) and A⁻ (negative columns), with row sums S⁺_i, S⁻_i, and

        V_i = S⁻_i Σ_j A⁺_ij (y⁺_j − z_i) − S⁺_i Σ_j A⁻_ij (y⁻_j − z_i)
            = S⁻_i Σ_j A⁺_ij y⁺_j − S⁺_i Σ_j A⁻_ij y⁻_j,

    that is Σ_jk A⁺_ij A⁻_ik (y⁺_j − y⁻_k): the empirical form of the paper's cross-weighted
    field V = E_{p,q}[k(z, y⁺) k(z, y⁻)(y⁺ − y⁻)] / (Z_p Z_q) (Deng et al. 2026, §3), times
    Z_p Z_q ≈ S⁺_i S⁻_i, as the authors' code computes it. It is antisymmetric: swapping
    positives and negatives negates it, so it is 0 (to rounding) when they are the same set.

    Computed in row blocks of ``z`` (two passes: the column normalisers, then the field), so
    memory is O(block · (n⁻ + n⁺)). Nothing is differentiated.
    """
    z, positives, negatives = (jax.lax.stop_gradient(a) for a in (z, positives, negatives))
    columns = jnp.concatenate([negatives, positives])
    z, columns = centred(z, columns)
    negatives, positives = columns[: negatives.shape[0]], columns[negatives.shape[0] :]
    n, split = z.shape[0], negatives.shape[0]
    block = clip_block(block, n)
    rows, valid = row_blocks(z, block)
    starts = jnp.arange(rows.shape[0]) * block
    col_sq = jnp.sum(columns**2, axis=1)
    width = jax.lax.stop_gradient(temperature * scale)

    def logits(r, start):
        sq = squared_distances(r, columns, col_sq)
        out = -jnp.sqrt(sq) / width
        if mask_self:
            row_ids = start + jnp.arange(r.shape[0])
            self_pair = row_ids[:, None] == jnp.arange(columns.shape[0])[None, :]
            out = jnp.where(self_pair, -jnp.inf, out)
        return out

    def column_lse(args):
        r, w, start = args
        logit = jnp.where(w[:, None] > 0, logits(r, start), -jnp.inf)
        return jax.nn.logsumexp(logit, axis=0)

    col = jax.nn.logsumexp(jax.lax.map(column_lse, (rows, valid, starts)), axis=0)

    def one(args):
        r, start = args
        logit = logits(r, start)
        row = jax.nn.logsumexp(logit, axis=1)
        a = jnp.exp(logit - 0.5 * (row[:, None] + col[None, :]))
        neg, pos = a[:, :split], a[:, split:]
        s_neg, s_pos = jnp.sum(neg, axis=1), jnp.sum(pos, axis=1)
        return s_neg[:, None] * (pos @ positives) - s_pos[:, None] * (neg @ negatives)

    return jax.lax.map(one, (rows, starts)).reshape(-1, z.shape[1])[:n]


class Drift(SampleDivergence):
    """The drifting field of Deng, Li, Li, Du & He (2026, "Generative Modeling via Drifting",
    arXiv 2602.04770) as the velocity of the flow of maps T = ∇φ.

    For the pushed batch z_i = T(x_i) and a fresh target batch y_j (as many), the positives
    are the y_j and the negatives the other pushed points z_j (j ≠ i). For each temperature R
    in ``temperatures`` (a tuple of floats; a list or a string ``"0.02,0.05"`` is read as
    one; default 0.02, 0.05, 0.2, the authors' values)
    the cross-weighted field V_R of :func:`drift_field` is computed with the kernel
    exp(−|z − y|/(R · scale)), scale = the mean distance from the pushed points to all the
    others (pushed and target). With ``normalise`` (the paper's drift normalisation) each
    V_R is divided by its RMS per coordinate, λ_R = (mean_{i,k} V_R,ik²)^{1/2}, and

        v(z_i) = (scale/√d) Σ_R V_R(z_i) / λ_R,

    the paper's normalised field expressed in the data's units (the paper works with the
    points divided by scale/√d, so that their mean distance is √d); scale and λ_R are
    constants of the batch. The normalised field keeps its size as the two distributions
    meet (only its direction becomes noise), so in the explicit scheme τ sets a step length,
    which should decay to 0 (:func:`mongeflow.auto.auto_drift_tau`); ``normalise=False``
    gives Σ_R V_R, which vanishes at equilibrium.

    A conservative drift of the same attract-minus-repel form is the velocity of the
    debiased Sinkhorn divergence, v = 2 (T_ργ − T_ρρ) with T the entropic barycentric maps
    (:class:`~mongeflow.divergences.Sinkhorn`): a Wasserstein gradient, so it has a loss
    (``--divergence sinkhorn``, with any scheme).

    The drift is in general not the Wasserstein gradient of a divergence, so there is no
    loss whose gradient it is. The loss is the paper's surrogate with a factor ½,

        loss = ½ mean_i |T_θ(x_i) − sg(T_θ(x_i) + v_i)|² = ½ mean_i |v_i|²,

    whose θ-gradient −mean_i J_θ(x_i)ᵀ v_i is what the other divergences' losses give with
    v = −∇_W D (``loss_is_value`` is False). :meth:`value` is the energy distance between
    the batches (V-statistic), a figure to watch, not one the drift descends.

    Example:
        >>> import jax, mongeflow as mf
        >>> problem = mf.Problem("p", mf.Gaussian.standard(2), mf.Gaussian([1.0, 0.0]))
        >>> x = problem.source.sample(jax.random.key(0), 64)
        >>> Drift().velocity(mf.AffinePotential(2), x, problem, jax.random.key(1)).shape
        (64, 2)
    """

    temperatures: tuple[float, ...] = setting(
        (0.02, 0.05, 0.2),
        help="drift: temperatures R of the kernels exp(−|z − y|/(R·scale)), one field each",
        static=True,
        listed=True,
        low=0.0,
        low_open=True,
    )
    normalise: bool = setting(
        True,
        help="drift: divide each temperature's field by its RMS (the paper's normalisation)",
        static=True,
    )
    block_size: int = block_size_setting()
    name: ClassVar[str] = "drift"

    def __post_init__(self):
        self.temperatures = _floats(self.temperatures)

    def __check_init__(self):
        temperatures = _floats(self.temperatures)
        if not temperatures or not all(0 < t < float("inf") for t in temperatures):
            raise ValueError(
                f"temperatures must be positive finite numbers, got {self.temperatures}"
            )
        check_block_size(self.block_size)

    @property
    def loss_is_value(self) -> bool:
        return False

    def scale(self, z: Array, y: Array) -> Array:
        """Mean distance from the points of ``z`` to those of (z, y), diagonal included."""
        n, m = z.shape[0], y.shape[0]
        zz = mean_distance(z, z, self.block_size)
        zy = mean_distance(z, y, self.block_size)
        return jax.lax.stop_gradient((n * zz + m * zy) / (n + m))

    def field(self, z: Array, y: Array) -> Array:
        """The (normalised) drift at the points of ``z`` towards the target batch ``y``."""
        z, y = jax.lax.stop_gradient(z), jax.lax.stop_gradient(y)
        scale = self.scale(z, y)
        tiny = jnp.finfo(z.dtype).tiny
        total = jnp.zeros_like(z)
        for temperature in _floats(self.temperatures):
            v = drift_field(z, y, z, temperature, scale, mask_self=True, block=self.block_size)
            if self.normalise:
                v = v / jnp.sqrt(jnp.maximum(jnp.mean(v**2), tiny))
            total = total + v
        if self.normalise:
            total = total * (scale / jnp.sqrt(z.shape[1]))
        return total

    def cloud_loss(self, z: Array, y: Array) -> Array:
        goal = jax.lax.stop_gradient(z + self.field(z, y))
        return 0.5 * jnp.mean(jnp.sum((z - goal) ** 2, axis=-1))

    def cloud_value(self, z: Array, y: Array) -> Array:
        return mmd_squared(energy_profile, z, y, jnp.zeros((0,), z.dtype), self.block_size)
