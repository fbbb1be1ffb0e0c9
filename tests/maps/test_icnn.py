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
