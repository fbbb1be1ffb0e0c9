"""Properties of the potentials: convexity, PSD Hessians, monotone maps, feasibility."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mongeflow.maps import (
    ICNN,
    AffinePotential,
    hessian,
    log_det_hessian,
    parameter_count,
    transport,
)
from mongeflow.metrics import min_hessian_eigenvalue, monotonicity_violation

VARIANTS = {
    "paper": dict(),
    "softplus": dict(nonnegativity="softplus"),
    "quadratic": dict(quadratic_rank=2, linear_skip=True),
    "strong": dict(widths=(16, 16, 16), strong_convexity=0.5),
}


def trained_like(phi, key):
    """Perturb every parameter (as training would), then project: convexity must survive."""
    leaves, tree = jax.tree_util.tree_flatten(phi)
    keys = jax.random.split(key, len(leaves))
    leaves = [
        leaf + 0.5 * jax.random.normal(k, leaf.shape, leaf.dtype)
        if isinstance(leaf, jax.Array) and jnp.issubdtype(leaf.dtype, jnp.floating)
        else leaf
        for leaf, k in zip(leaves, keys, strict=True)
    ]
    return jax.tree_util.tree_unflatten(tree, leaves).project()


def test_paper_icnn_has_541_parameters(key):
    assert parameter_count(ICNN(2, key)) == 541


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_icnn_convex_along_random_segments(variant, key):
    d = 3
    phi = trained_like(ICNN(d, key, **VARIANTS[variant]), jax.random.fold_in(key, 1))
    assert bool(phi.is_feasible())
    ka, kb = jax.random.split(jax.random.fold_in(key, 2))
    a = 2 * jax.random.normal(ka, (200, d))
    b = 2 * jax.random.normal(kb, (200, d))
    t = jnp.linspace(0, 1, 11)[:, None, None]
    pts = (1 - t) * a[None] + t * b[None]
    vals = jax.vmap(jax.vmap(phi))(pts)  # [11, 200]
    chord = (1 - t[:, :, 0]) * vals[0][None] + t[:, :, 0] * vals[-1][None]
    assert float(jnp.max(vals - chord)) <= 1e-4 * float(jnp.max(jnp.abs(vals)) + 1)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_icnn_hessian_psd_and_map_monotone(variant, key):
    d = 3
    phi = trained_like(ICNN(d, key, **VARIANTS[variant]), jax.random.fold_in(key, 1))
    x = 2 * jax.random.normal(jax.random.fold_in(key, 3), (300, d))
    y = 2 * jax.random.normal(jax.random.fold_in(key, 4), (300, d))
    alpha = VARIANTS[variant].get("strong_convexity", 0.0)
    assert float(min_hessian_eigenvalue(phi, x)) >= alpha - 1e-5
    assert float(monotonicity_violation(phi, x, y)) >= alpha - 1e-5


def test_unprojected_negative_weights_are_detected(key):
    phi = ICNN(2, key)
    bad = jax.tree_util.tree_map(lambda a: a, phi)
    import equinox as eqx

    bad = eqx.tree_at(lambda m: m.out_weight, bad, -jnp.ones_like(phi.out_weight))
    assert not bool(bad.is_feasible())
    assert bool(bad.project().is_feasible())


def test_identity_init_is_identity(key):
    phi = ICNN(4, key, identity_init=True)
    x = jax.random.normal(key, (50, 4))
    np.testing.assert_allclose(transport(phi, x), x, atol=2e-3)


def test_affine_potential_is_affine_and_spd(key):
    A = jnp.array([[2.0, 0.5], [0.5, 1.0]])
    b = jnp.array([1.0, -1.0])
    phi = AffinePotential(2, A=A, b=b)
    x = jax.random.normal(key, (10, 2))
    np.testing.assert_allclose(transport(phi, x), x @ A.T + b[None, :], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(hessian(phi, x[0]), A, rtol=1e-5)
    np.testing.assert_allclose(log_det_hessian(phi, x[0]), np.log(np.linalg.det(A)), rtol=1e-5)
    assert parameter_count(phi) == 5


def test_bad_icnn_settings_raise(key):
    with pytest.raises(ValueError, match="nonnegativity"):
        ICNN(2, key, nonnegativity="relu")
    with pytest.raises(ValueError, match="widths"):
        ICNN(2, key, widths=())
