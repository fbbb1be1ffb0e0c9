"""Input-convex neural network potentials (Amos, Xu & Kolter 2017)."""

from __future__ import annotations

from typing import Literal, Self

import equinox as eqx
import jax
import jax.numpy as jnp

from mongeflow.maps.base import Array, Potential

NonNegativity = Literal["clamp", "softplus"]
Activation = Literal["softplus", "beta-softplus"]
ACTIVATIONS = ("softplus", "beta-softplus")


NONNEGATIVITIES = ("clamp", "softplus")


def check_nonnegativity(nonnegativity: str) -> None:
    """Refuse a way of keeping the weights non-negative not in :data:`NONNEGATIVITIES`."""
    if nonnegativity not in NONNEGATIVITIES:
        raise ValueError(f"nonnegativity must be 'clamp' or 'softplus', got {nonnegativity!r}")


def check_activation(activation: str) -> None:
    """Refuse an activation that is not one of :data:`ACTIVATIONS`."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}, got {activation!r}")


def _uniform(key, shape, fan_in, dtype):
    bound = 1.0 / jnp.sqrt(fan_in)
    return jax.random.uniform(key, shape, dtype, -bound, bound)


def _inverse_softplus(w):
    w = jnp.maximum(w, 1e-4)
    return w + jnp.log(-jnp.expm1(-w))


def _identity_quadratic(dim: int, rank: int, scale: float, dtype) -> tuple[Array, Array]:
    """(q, L) with diag(softplus(q)) + L Lᵀ = scale · I, L non-zero.

    L = 0 would make the quadratic term exact but frozen: the gradient of ½ xᵀ L Lᵀ x in L is
    x xᵀ L, zero at L = 0 and along every path from it. Instead column j of L is c·e_(j mod d),
    so L Lᵀ = c² diag(m) is diagonal (m_i: how many columns sit on axis i) and the diagonal
    takes the rest, softplus(q_i) = scale − c² m_i. With c² = scale / (100 max m) the factor
    holds 1 % of the quadratic term; its gradient x xᵀ L is dense, so every entry trains.
    """
    counts = jnp.bincount(jnp.arange(rank) % dim, length=dim)
    c2 = scale / (100.0 * int(-(-rank // dim)))
    factor = (
        jnp.zeros((dim, rank), dtype)
        .at[jnp.arange(rank) % dim, jnp.arange(rank)]
        .set(jnp.sqrt(jnp.asarray(c2, dtype)))
    )
    diag = _inverse_softplus(jnp.asarray(scale - c2 * counts, dtype))
    return diag.astype(dtype), factor


#: the scale s of the hidden non-negative weights' start, max(N(0, s²), 0): the initialisation
#: of Dumont, Lacombe & Vialard (2026)'s example
HIDDEN_SCALE = 0.1


class ICNN(Potential):
    """φ(x) = w_outᵀ z_L + b_out [+ aᵀx] [+ ½ xᵀ Q x] + (α/2)|x|², an input-convex network.

    z_1 = σ(W_0 x + b_0),  z_{k+1} = σ(W^z_k z_k + W^x_k x + b_k), σ = softplus, or with
    ``activation="beta-softplus"`` σ_β(u) = softplus(β u)/β with a sharpness β = exp(log β)
    > 0 of each unit's own, learnt with the other weights (β → ∞ tends to max(u, 0)).
    Convexity in x needs W^z_k ≥ 0 and w_out ≥ 0 (σ is convex and non-decreasing for every
    β > 0); the input weights W_0, W^x_k are free. Q = diag(softplus(q)) + L Lᵀ is positive
    semi-definite (as in OTT-JAX's ICNN) and lets the network represent affine maps exactly.

    The default (``widths=(20, 20)``, no quadratic, no linear skip) is the 541-parameter
    network of Dumont, Lacombe & Vialard (2026), initialised as in their example: PyTorch's
    default uniform initialisation, non-negative weights drawn from N(0, 0.1²) then clamped.

    Args:
        dim: input dimension d.
        key: PRNG key for the initialisation.
        widths: hidden widths (depth = ``len(widths)``).
        nonnegativity: ``"clamp"`` (weights projected onto ≥ 0 after each update, as in the
            paper) or ``"softplus"`` (reparametrisation W = softplus(W_raw), always feasible).
        quadratic_rank: rank r of L in the quadratic term; ``None`` for no quadratic term.
        linear_skip: add a free linear term aᵀx to the output.
        strong_convexity: α ≥ 0; adds (α/2)|x|² so ∇²φ ⪰ α I.
        activation: ``"softplus"`` or ``"beta-softplus"`` (each unit's sharpness learnt,
            starting at β = 1, where it is softplus).
        identity_init: start at T = id (implies a quadratic term; needs α < 1). The output
            weights are 0 and the quadratic term is (1 − α) I, split between a diagonal and
            a non-zero, trainable factor L (see :func:`_identity_quadratic`). With
            ``"clamp"`` this is exact: T(x) = x and ∇²φ = I up to float round-off. With
            ``"softplus"`` a weight cannot be 0, and the output weights are softplus(raw) =
            1e-4, so T(x) − x = 1e-4 Σ_k ∇z_L,k(x): near-identity, |T(x) − x| ≤ 5e-4 (1 + |x|)
            and |∇²φ − I| ≤ 5e-4 entrywise at d = 2 … 64 with the default widths (measured
            2.5e-4 and 2e-4).
        hidden_scale: s ≥ 0, the hidden non-negative weights W^z_k start at max(N(0, s²), 0)
            (half of them at 0, or at the reparametrisation's floor softplus(W_raw) = 1e-4).

    Example:
        >>> import jax
        >>> phi = ICNN(2, jax.random.key(0))
        >>> from mongeflow.maps import parameter_count
        >>> parameter_count(phi)
        541
    """

    input_weight: Array
    input_bias: Array
    z_weights: tuple[Array, ...]
    x_weights: tuple[Array, ...]
    biases: tuple[Array, ...]
    out_weight: Array
    out_bias: Array
    linear: Array | None
    quad_diag: Array | None
    quad_factor: Array | None
    log_beta: tuple[Array, ...] | None
    nonnegativity: str = eqx.field(static=True)
    strong_convexity: float = eqx.field(static=True)

    def __init__(
        self,
        dim: int,
        key: Array,
        widths: tuple[int, ...] = (20, 20),
        *,
        nonnegativity: NonNegativity = "clamp",
        quadratic_rank: int | None = None,
        linear_skip: bool = False,
        strong_convexity: float = 0.0,
        identity_init: bool = False,
        activation: Activation = "softplus",
        hidden_scale: float = HIDDEN_SCALE,
        dtype=None,
    ):
        check_nonnegativity(nonnegativity)
        check_activation(activation)
        widths = tuple(int(w) for w in widths)
        if len(widths) == 0 or min(widths) < 1:
            raise ValueError(f"widths must be a non-empty tuple of positive ints, got {widths}")
        if not hidden_scale >= 0:
            raise ValueError(f"hidden_scale must be ≥ 0, got {hidden_scale}")
        if strong_convexity < 0:
            raise ValueError(f"strong_convexity must be ≥ 0, got {strong_convexity}")
        if identity_init and strong_convexity >= 1.0:
            raise ValueError(
                f"identity_init needs strong_convexity < 1 (∇²φ ⪰ αI), got {strong_convexity}"
            )
        if identity_init and quadratic_rank is None:
            quadratic_rank = min(dim, 2)
        dtype = dtype or jnp.zeros(()).dtype
        keys = iter(jax.random.split(key, 4 * len(widths) + 6))
        self.nonnegativity = nonnegativity
        self.strong_convexity = float(strong_convexity)

        self.input_weight = _uniform(next(keys), (widths[0], dim), dim, dtype)
        self.input_bias = _uniform(next(keys), (widths[0],), dim, dtype)
        z_w, x_w, bs = [], [], []
        for w_in, w_out in zip(widths[:-1], widths[1:], strict=True):
            drawn = hidden_scale * jax.random.normal(next(keys), (w_out, w_in), dtype)
            z_w.append(self._raw(drawn))
            x_w.append(_uniform(next(keys), (w_out, dim), dim, dtype))
            bs.append(_uniform(next(keys), (w_out,), w_in, dtype))
        self.z_weights, self.x_weights, self.biases = tuple(z_w), tuple(x_w), tuple(bs)
        out = 0.1 * jax.random.normal(next(keys), (widths[-1],), dtype)
        if identity_init:
            out = jnp.zeros_like(out)
        self.out_weight = self._raw(out)
        self.out_bias = _uniform(next(keys), (), widths[-1], dtype)
        self.linear = jnp.zeros((dim,), dtype) if linear_skip else None
        if quadratic_rank is None:
            self.quad_diag, self.quad_factor = None, None
        elif identity_init:
            self.quad_diag, self.quad_factor = _identity_quadratic(
                dim, quadratic_rank, 1.0 - self.strong_convexity, dtype
            )
        else:
            self.quad_diag = jnp.full((dim,), _inverse_softplus(jnp.asarray(1.0)), dtype)
            self.quad_factor = 1e-2 * jax.random.normal(next(keys), (dim, quadratic_rank), dtype)
        self.log_beta = (
            tuple(jnp.zeros((w,), dtype) for w in widths) if activation == "beta-softplus" else None
        )

    def _raw(self, w: Array) -> Array:
        """Stored value for a non-negative weight initialised at max(w, 0)."""
        w = jnp.maximum(w, 0.0)
        return _inverse_softplus(w) if self.nonnegativity == "softplus" else w

    def _nonneg(self, w: Array) -> Array:
        # With "clamp", feasibility is restored by `project` after each update; the forward
        # pass uses the weights as stored (the paper's projected scheme).
        return jax.nn.softplus(w) if self.nonnegativity == "softplus" else w

    @property
    def activation(self) -> str:
        """``"beta-softplus"`` when each unit learns its sharpness, else ``"softplus"``."""
        return "softplus" if self.log_beta is None else "beta-softplus"

    def _sigma(self, a: Array, k: int) -> Array:
        """σ at layer k's pre-activations (softplus, or softplus(β a)/β)."""
        if self.log_beta is None:
            return jax.nn.softplus(a)
        beta = jnp.exp(self.log_beta[k])
        return jax.nn.softplus(beta * a) / beta

    def _slopes(self, a: Array, k: int) -> tuple[Array, Array]:
        """σ'(a) and σ''(a) at layer k: sigmoid(β a) and β sigmoid(β a)(1 − sigmoid(β a))."""
        beta = 1.0 if self.log_beta is None else jnp.exp(self.log_beta[k])
        s1 = jax.nn.sigmoid(beta * a)
        return s1, beta * s1 * (1.0 - s1)

    def __call__(self, x: Array) -> Array:
        z = self._sigma(self.input_weight @ x + self.input_bias, 0)
        layers = zip(self.z_weights, self.x_weights, self.biases, strict=True)
        for k, (wz, wx, b) in enumerate(layers, 1):
            z = self._sigma(self._nonneg(wz) @ z + wx @ x + b, k)
        out = self._nonneg(self.out_weight) @ z + self.out_bias
        if self.linear is not None:
            out = out + self.linear @ x
        if self.quad_diag is not None:
            Lx = self.quad_factor.T @ x
            out = out + 0.5 * (jnp.sum(jax.nn.softplus(self.quad_diag) * x**2) + Lx @ Lx)
        if self.strong_convexity:
            out = out + 0.5 * self.strong_convexity * jnp.sum(x**2)
        return out

    def hessian(self, x: Array) -> Array:
        """∇²φ(x) in closed form, for one sample.

        Every layer is affine in (z_k, x) followed by the elementwise σ, so

            ∇²φ(x) = Σ_k J_kᵀ diag(g_k ⊙ σ''(a_k)) J_k + Q + α I,

        with a_k the pre-activations, J_k = da_k/dx (J_1 = W_0,
        J_{k+1} = W^z_k diag(σ'(a_k)) J_k + W^x_k), g_k = ∂φ/∂z_k (g_L = w_out,
        g_k = W^z_kᵀ (σ'(a_{k+1}) ⊙ g_{k+1})) and Q the quadratic term's matrix. It costs
        O(w² d + w d²) per layer of width w, and its derivatives in θ are several times
        cheaper than those of the autodiff Hessian (d = 64, widths 64, a batch of 256:
        see ``tests/maps``).
        """
        a = [self.input_weight @ x + self.input_bias]
        jac = [self.input_weight]
        layers = zip(self.z_weights, self.x_weights, self.biases, strict=True)
        for k, (wz, wx, b) in enumerate(layers):
            wz = self._nonneg(wz)
            s1, _ = self._slopes(a[-1], k)
            jac.append(wz @ (s1[:, None] * jac[-1]) + wx)
            a.append(wz @ self._sigma(a[-1], k) + wx @ x + b)
        g = self._nonneg(self.out_weight)
        hess = jnp.zeros((x.shape[0], x.shape[0]), x.dtype)
        for k in range(len(a) - 1, -1, -1):
            s1, s2 = self._slopes(a[k], k)
            curvature = g * s2  # g_k ⊙ σ''(a_k)
            hess = hess + jac[k].T @ (curvature[:, None] * jac[k])
            if k > 0:
                g = self._nonneg(self.z_weights[k - 1]).T @ (s1 * g)
        if self.quad_diag is not None:
            hess = hess + jnp.diag(jax.nn.softplus(self.quad_diag))
            hess = hess + self.quad_factor @ self.quad_factor.T
        if self.strong_convexity:
            hess = hess + self.strong_convexity * jnp.eye(x.shape[0], dtype=x.dtype)
        return hess

    def _constrained(self) -> list[Array]:
        return [*self.z_weights, self.out_weight]

    def project(self) -> Self:
        if self.nonnegativity == "softplus":
            return self
        return eqx.tree_at(
            lambda m: (m.z_weights, m.out_weight),
            self,
            (tuple(jnp.maximum(w, 0.0) for w in self.z_weights), jnp.maximum(self.out_weight, 0)),
        )

    def decayed(self) -> Self:
        """``True`` at the layers' weights (W_0, W^z_k, W^x_k, w_out) and the sharpnesses'
        log β (towards β = 1, softplus), ``False`` at the biases and the linear and quadratic
        terms: weight decay then shrinks the network's units and smooths them, not the affine
        part of its map. With ``nonnegativity="softplus"`` the non-negative weights are
        stored as W_raw = softplus⁻¹(W), which decay would pull towards W = softplus(0), not
        0: they are left out."""
        weights = ("input_weight", "x_weights", "log_beta")
        if self.nonnegativity == "clamp":
            weights += ("z_weights", "out_weight")
        return jax.tree_util.tree_map_with_path(lambda path, _: path[0].name in weights, self)

    def is_feasible(self) -> Array:
        if self.nonnegativity == "softplus":
            return jnp.asarray(True)
        return jnp.all(jnp.stack([jnp.all(w >= 0) for w in self._constrained()]))
