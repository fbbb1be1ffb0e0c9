"""Properties of the potentials: convexity, PSD Hessians, monotone maps, feasibility."""

import equinox as eqx
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
    "beta-softplus": dict(widths=(16, 8), activation="beta-softplus", quadratic_rank=2),
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


@eqx.filter_jit
def _map_and_hessians(phi, x):
    """T(x) at all of ``x`` and ∇²φ at its first 8 points, compiled once per structure."""
    return transport(phi, x), jax.vmap(lambda xi: hessian(phi, xi))(x[:8])


IDENTITY_CASES = [
    (2, dict()),
    (4, dict(quadratic_rank=4, strong_convexity=0.5)),
    (64, dict(quadratic_rank=64, linear_skip=True)),  # as default_potential builds it
    (3, dict(quadratic_rank=7)),  # more columns than dimensions
]


@pytest.mark.parametrize("d, options", IDENTITY_CASES)
def test_identity_init_is_identity(d, options, key):
    """T(x) = x and ∇²φ = I to float32 round-off (was 2e-2 (1 + |x|) and eig(∇²φ) up to
    1.023 at d = 64 with rank 64, and T = 1.5 x with α = 0.5)."""
    phi = ICNN(d, key, identity_init=True, **options)
    x = 3.0 * jax.random.normal(jax.random.fold_in(key, d), (64, d))
    t, hessians = _map_and_hessians(phi, x)
    assert bool(jnp.all(jnp.abs(t - x) <= 1e-5 * (1.0 + jnp.abs(x))))
    np.testing.assert_allclose(hessians, np.broadcast_to(np.eye(d), hessians.shape), atol=1e-5)


def test_identity_init_softplus_is_near_identity(key):
    """With softplus weights the output weights are 1e-4, not 0: the documented bound."""
    for d in (2, 64):
        phi = ICNN(d, key, identity_init=True, nonnegativity="softplus")
        x = 3.0 * jax.random.normal(jax.random.fold_in(key, d), (64, d))
        t, hessians = _map_and_hessians(phi, x)
        assert bool(jnp.all(jnp.abs(t - x) <= 5e-4 * (1.0 + jnp.abs(x))))
        assert float(jnp.max(jnp.abs(hessians - jnp.eye(d)[None]))) <= 5e-4


def test_hidden_scale_sets_the_hidden_nonnegative_weights_start(key):
    """W^z starts at max(N(0, s²), 0): about half at 0 (the reparametrisation's floor
    softplus(W_raw) = 1e-4 with ``"softplus"``), the rest of scale s; the default network
    takes s = 0.03 when reparametrised and the paper's 0.1 when clamped; s < 0 is refused."""
    from mongeflow.maps.default import REPARAMETRISED_SCALE, default_potential

    def hidden(phi):
        w = phi.z_weights[0]
        return np.asarray(jax.nn.softplus(w) if phi.nonnegativity == "softplus" else w)

    for kind, floor in (("clamp", 0.0), ("softplus", 1e-4)):
        for s in (0.0, 0.03, 0.1):
            w = hidden(ICNN(4, key, widths=(64, 64), nonnegativity=kind, hidden_scale=s))
            at_floor = np.isclose(w, floor, rtol=1e-3, atol=1e-7)
            assert np.all(w >= 0.0)
            if s == 0.0:
                assert np.all(at_floor), kind
                continue
            assert 0.4 < at_floor.mean() < 0.6, (kind, s)
            # the half drawn is |N(0, s²)|: its mean is s √(2/π)
            np.testing.assert_allclose(w[~at_floor].mean(), s * np.sqrt(2 / np.pi), rtol=0.1)
    assert REPARAMETRISED_SCALE == 0.03
    for kind, s in (("softplus", REPARAMETRISED_SCALE), ("clamp", 0.1)):
        w = hidden(default_potential(4, (64, 64), nonnegativity=kind)(key))
        drawn = w[w > 2e-4]
        np.testing.assert_allclose(drawn.mean(), s * np.sqrt(2 / np.pi), rtol=0.1)
    with pytest.raises(ValueError, match="hidden_scale must be ≥ 0, got -0.1"):
        ICNN(2, key, hidden_scale=-0.1)


def test_identity_init_quadratic_factor_trains(key):
    """The low-rank factor starts non-zero, so its gradient is not identically zero.

    (With L = 0 the gradient x xᵀ L of ½ xᵀ L Lᵀ x vanishes and L never moves.) The loss
    |T(x) − A x|² for a dense SPD A gives a gradient that is non-zero in every entry of L.
    """
    d = 4
    phi = ICNN(d, key, identity_init=True, quadratic_rank=3)
    M = jax.random.normal(jax.random.fold_in(key, 1), (d, d))
    A = M @ M.T / d + jnp.eye(d)
    x = jax.random.normal(jax.random.fold_in(key, 2), (128, d))

    def loss(p):
        return jnp.mean(jnp.sum((transport(p, x) - x @ A.T) ** 2, axis=1))

    grad = eqx.filter_jit(eqx.filter_grad(loss))(phi)
    assert float(jnp.min(jnp.abs(grad.quad_factor))) >= 1e-4 * float(
        jnp.max(jnp.abs(grad.quad_diag))
    )


def test_identity_init_needs_strong_convexity_below_one(key):
    with pytest.raises(ValueError, match="strong_convexity"):
        ICNN(2, key, identity_init=True, strong_convexity=1.0)


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


def test_log_det_psd_matches_slogdet_and_its_gradient_and_flags_indefinite_matrices():
    from mongeflow.maps.base import log_det, log_det_psd

    with jax.enable_x64(True):
        m = jax.random.normal(jax.random.key(3), (5, 5), dtype=jnp.float64)
        a = m @ m.T + 0.1 * jnp.eye(5)
        _, ref = jnp.linalg.slogdet(a)
        assert float(log_det_psd(a)) == pytest.approx(float(ref), rel=1e-12)
        assert float(log_det(a)) == pytest.approx(float(ref), rel=1e-12)
        # d log det A / dA = A⁻¹ (symmetric A)
        np.testing.assert_allclose(jax.grad(log_det_psd)(a), jnp.linalg.inv(a), rtol=1e-9)
        assert np.isnan(float(log_det_psd(a - 20.0 * jnp.eye(5))))
