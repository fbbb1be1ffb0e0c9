"""The closed-form ICNN Hessian."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mongeflow.maps import ICNN


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        pytest.param(
            {"widths": (16, 8), "quadratic_rank": 3, "strong_convexity": 0.1},
            marks=pytest.mark.slow,
        ),
        {"widths": (7, 5, 4), "activation": "beta-softplus", "quadratic_rank": 2},
        pytest.param(
            {
                "widths": (7, 5, 4),
                "nonnegativity": "softplus",
                "quadratic_rank": 2,
                "linear_skip": True,
            },
            marks=pytest.mark.slow,
        ),
    ],
)
def test_closed_form_hessian_matches_autodiff(kwargs):
    """ICNN.hessian (Σ_k J_kᵀ diag(g_k σ''(a_k)) J_k + Q + αI) against jacfwd(grad φ), and
    its θ-gradient (through a log det) against the autodiff Hessian's, in float64."""
    from mongeflow.maps.base import log_det  # noqa: I001

    with jax.enable_x64(True):
        phi = ICNN(5, jax.random.key(1), dtype=jnp.float64, **kwargs)
        # non-zero, non-negative output weights so every layer contributes curvature
        phi = eqx.tree_at(lambda m: m.out_weight, phi, jnp.abs(phi.out_weight) + 0.3)
        if phi.log_beta is not None:  # sharpnesses away from their start β = 1
            keys = jax.random.split(jax.random.key(3), len(phi.log_beta))
            pairs = zip(keys, phi.log_beta, strict=True)
            betas = tuple(jax.random.normal(k, b.shape, b.dtype) for k, b in pairs)
            phi = eqx.tree_at(lambda m: m.log_beta, phi, betas)
        xs = jax.random.normal(jax.random.key(2), (4, 5), jnp.float64)
        both = eqx.filter_jit(jax.vmap(lambda x: (phi.hessian(x), jax.jacfwd(jax.grad(phi))(x))))
        closed_h, auto_h = both(xs)
        np.testing.assert_allclose(closed_h, auto_h, rtol=1e-10, atol=1e-12)
        closed = eqx.filter_jit(
            eqx.filter_grad(lambda p: jnp.sum(jax.vmap(lambda x: log_det(p.hessian(x)))(xs)))
        )
        auto = eqx.filter_jit(
            eqx.filter_grad(
                lambda p: jnp.sum(jax.vmap(lambda x: log_det(jax.jacfwd(jax.grad(p))(x)))(xs))
            )
        )
        for a, b in zip(
            jax.tree_util.tree_leaves(closed(phi)),
            jax.tree_util.tree_leaves(auto(phi)),
            strict=True,
        ):
            np.testing.assert_allclose(a, b, rtol=1e-8, atol=1e-10)


def test_beta_softplus_starts_as_softplus_and_learns_each_units_sharpness():
    """At β = 1 the beta-softplus network is the softplus one (same key, same weights); each
    unit's log β is a parameter (one per hidden unit) and moves σ_β(u) = softplus(βu)/β."""
    plain = ICNN(4, jax.random.key(0), widths=(8, 6), quadratic_rank=2)
    sharp = ICNN(4, jax.random.key(0), widths=(8, 6), quadratic_rank=2, activation="beta-softplus")
    assert (plain.activation, sharp.activation) == ("softplus", "beta-softplus")
    assert [b.shape for b in sharp.log_beta] == [(8,), (6,)]
    xs = jax.random.normal(jax.random.key(1), (16, 4))
    sharp = eqx.tree_at(lambda m: m.out_weight, sharp, sharp.out_weight + 0.5)
    plain = eqx.tree_at(lambda m: m.out_weight, plain, plain.out_weight + 0.5)
    np.testing.assert_allclose(jax.vmap(sharp)(xs), jax.vmap(plain)(xs), rtol=1e-6)
    # a large β: σ_β(u) → max(u, 0); the closed form softplus(βu)/β at u = ±1, β = e^3
    big = eqx.tree_at(
        lambda m: m.log_beta, sharp, tuple(jnp.full_like(b, 3.0) for b in sharp.log_beta)
    )
    u = jnp.linspace(-1.0, 1.0, 8)  # one pre-activation per unit of the first layer
    np.testing.assert_allclose(
        big._sigma(u, 0), jnp.log1p(jnp.exp(jnp.e**3 * u)) / jnp.e**3, rtol=1e-5
    )
    grads = eqx.filter_grad(lambda p: jnp.sum(jax.vmap(p)(xs)))(sharp)
    assert all(float(jnp.max(jnp.abs(g))) > 0 for g in grads.log_beta)


def test_an_unknown_activation_is_refused():
    with pytest.raises(ValueError, match="activation must be one of softplus, beta-softplus"):
        ICNN(2, jax.random.key(0), activation="relu")
