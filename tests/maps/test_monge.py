"""MongeMap: the learnt map in the user's units, under jit / grad / vmap, its inverse, its
log-density (which must integrate to one) and its sampler.

Compilation dominates the time of these tests: most calls use the same six points ``[6, 2]``
and the same map structure, so that they reuse compiled code.
"""

import logging

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mongeflow.maps import ICNN, AffinePotential, MongeMap
from mongeflow.problems import EmpiricalTarget, Gaussian, PotentialTarget

SHIFT = jnp.array([1.5, -0.5])
SCALE = 2.0


def random_icnn(seed=1):
    """A 2-D ICNN far from affine: N(0, 1) weights (as training might leave them), projected
    onto the convex set, with ∇²φ ⪰ 0.5 I so that T is invertible everywhere. (Drawn with
    NumPy into the ICNN's structure: JAX's eager random draws would each compile.)"""
    shapes = eqx.filter_eval_shape(
        ICNN, 2, jax.random.key(0), widths=(16, 16), strong_convexity=0.5
    )
    rng = np.random.default_rng(seed)
    phi = jax.tree_util.tree_map(
        lambda s: jnp.asarray(rng.standard_normal(s.shape), s.dtype), shapes
    )
    return phi.project()


@pytest.fixture(scope="module")
def monge():
    return MongeMap(random_icnn(), SHIFT, SCALE, Gaussian.standard(2))


@pytest.fixture(scope="module")
def points():
    x = np.random.default_rng(5).normal(size=(6, 2)) * 2.0 + np.asarray(SHIFT)
    return jnp.asarray(x, jnp.float32)


def rescaled(phi):
    """Φ(x) = s φ((x − m)/s), written out directly."""
    return lambda x: SCALE * phi((x - SHIFT) / SCALE)


@jax.jit
def rescaled_hessian(phi, x):
    """∇²Φ(x) = DT(x) for each row of ``x: [n, d]``."""
    return jax.vmap(jax.hessian(rescaled(phi)))(x)


def test_transport_and_jacobian_of_the_rescaled_potential(monge, points):
    expected = jax.jit(jax.vmap(jax.grad(rescaled(monge.potential))))(points)
    np.testing.assert_allclose(monge.transport(points), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(monge(points), expected, rtol=1e-5, atol=1e-5)
    hess = rescaled_hessian(monge.potential, points)
    sign, logdet = np.linalg.slogdet(np.asarray(hess, dtype=np.float64))
    assert np.all(sign > 0)
    np.testing.assert_allclose(monge.log_det_jacobian(points), logdet, atol=1e-4)
    # the map is far from affine: its Jacobian varies from point to point
    assert np.ptp(logdet) > 0.3


@pytest.mark.parametrize("method", ["transport", "inverse", "log_det_jacobian", "log_density"])
def test_jit_and_vmap_agree_with_plain_calls(monge, points, method):
    plain = getattr(monge, method)(points)
    # jit of vmap: the method sees one point [d] at a time, as a tracer
    batched = jax.jit(jax.vmap(lambda m, x: getattr(m, method)(x), in_axes=(None, 0)))
    out = batched(monge, points)
    assert (
        plain.shape == out.shape == points.shape[: 2 if method in ("transport", "inverse") else 1]
    )
    np.testing.assert_allclose(out, plain, rtol=1e-5, atol=1e-5)


def test_gradients_in_x(monge, points):
    x0, w = points[0], jnp.array([0.3, -1.2])
    # ∇_x ⟨w, T(x)⟩ = DT(x)ᵀ w = ∇²Φ(x) w
    grad_t = jax.grad(lambda x: w @ monge.transport(x))(x0)
    hess = rescaled_hessian(monge.potential, points)[0]
    np.testing.assert_allclose(grad_t, hess @ w, rtol=1e-4, atol=1e-5)
    # ∇_x log ρ0(x) (through T, the Hessian and its Cholesky factor) by central differences;
    # a single point [d] gives a scalar
    value, grad = jax.value_and_grad(monge.log_density)(x0)
    assert value.shape == ()
    np.testing.assert_allclose(value, monge.log_density(points)[0], rtol=1e-5)
    eps = 1e-2
    steps = eps * jnp.concatenate([jnp.eye(2), -jnp.eye(2), jnp.zeros((2, 2))])
    values = monge.log_density(x0[None, :] + steps)  # six points: reuses the [6, 2] code
    fd = (values[:2] - values[2:4]) / (2 * eps)
    np.testing.assert_allclose(grad, fd, rtol=2e-2, atol=2e-3)


def test_gradient_of_the_inverse(monge, points):
    """Implicit differentiation through the Newton solve: ∇_y ⟨w, T⁻¹(y)⟩ = DT(x)⁻¹ w at
    x = T⁻¹(y), and the derivative in the map's parameters agrees with central differences."""
    y = monge.transport(points)
    w = jnp.array([1.0, 0.5])
    params, static = eqx.partition(monge, eqx.is_inexact_array)

    def f(p, y):
        return w @ eqx.combine(p, static).inverse(y)[1]

    grad_params, grad_y = jax.grad(f, argnums=(0, 1))(params, y)
    jac = rescaled_hessian(monge.potential, points)[1]
    np.testing.assert_allclose(jac @ grad_y[1], w, rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(grad_y[0], [0.0, 0.0])  # other points do not move x_1
    v = jax.tree_util.tree_map(lambda a: 0.1 * jnp.ones_like(a), params)
    directional = sum(
        jnp.sum(g * d)
        for g, d in zip(
            jax.tree_util.tree_leaves(grad_params), jax.tree_util.tree_leaves(v), strict=True
        )
    )
    eps = 1e-2
    shifted = [
        jax.tree_util.tree_map(lambda a, b, s=s: a + s * eps * b, params, v) for s in (1, -1)
    ]
    fd = (f(shifted[0], y) - f(shifted[1], y)) / (2 * eps)
    np.testing.assert_allclose(directional, fd, rtol=2e-2)


def test_gradient_in_scale_under_jit(monge, points):
    """scale is an array: a map built inside a jitted function may depend on a traced s."""

    def f(s):
        return jnp.sum(MongeMap(monge.potential, SHIFT, s, monge.target).transport(points))

    grad = jax.jit(jax.grad(f))(jnp.asarray(SCALE))
    fd = (f(SCALE + 1e-2) - f(SCALE - 1e-2)) / 2e-2
    np.testing.assert_allclose(grad, fd, rtol=1e-2)


def test_inverse_undoes_transport(monge, points):
    y = monge.transport(points)
    x = monge.inverse(y)
    assert np.max(np.abs(x - points)) < 1e-4
    assert np.max(np.abs(monge.transport(x) - y)) < 1e-4


def test_log_density_integrates_to_one(monge):
    """∫ γ(T(x)) det DT(x) dx = 1 for a non-affine map with shift ≠ 0 and scale ≠ 1.

    The grid is the bounding box of T⁻¹ of the circle |y| = 6, which holds T⁻¹ of the disk
    (T is a homeomorphism): the γ-mass left out is below exp(−18). The integrand is smooth,
    so a 160 × 160 Riemann sum is accurate far below the 1 % asked.
    """
    angle = jnp.linspace(0.0, 2 * jnp.pi, 200)
    circle = 6.0 * jnp.stack([jnp.cos(angle), jnp.sin(angle)], axis=1)
    edge = np.asarray(monge.inverse(circle))
    low, high = edge.min(0), edge.max(0)
    axes = [np.linspace(low[i], high[i], 160) for i in range(2)]
    cell = (axes[0][1] - axes[0][0]) * (axes[1][1] - axes[1][0])
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 2)
    mass = float(jnp.sum(jnp.exp(monge.log_density(jnp.asarray(grid, jnp.float32))))) * cell
    assert abs(mass - 1.0) < 0.01


def test_sample_is_the_inverse_of_target_samples(monge, key):
    x = monge.sample(key, 6)  # (key, n), as Source.sample and Target.sample
    assert x.shape == (6, 2)
    np.testing.assert_allclose(x, monge.inverse(Gaussian.standard(2).sample(key, 6)), atol=1e-6)
    assert not np.allclose(monge.sample(jax.random.key(1), 6), x)


def test_affine_map_closed_form():
    """φ(z) = ½ zᵀAz + bᵀz: T(x) = A (x − m)/s + b and log det DT = log det A − d log s."""
    A, b = jnp.array([[2.0, 0.3], [0.3, 0.5]]), jnp.array([0.2, -1.0])
    m = MongeMap(AffinePotential(2, A=A, b=b), SHIFT, SCALE)
    x = jnp.array([[0.1, 2.0], [-3.0, 1.0]])
    expected = (x - SHIFT[None, :]) / SCALE @ A.T + b[None, :]
    np.testing.assert_allclose(m.transport(x), expected, rtol=1e-5, atol=1e-6)
    logdet = np.log(np.linalg.det(np.asarray(A))) - 2 * np.log(SCALE)
    np.testing.assert_allclose(m.log_det_jacobian(x), [logdet, logdet], rtol=1e-5)


def test_clear_errors(monge):
    phi = monge.potential
    with pytest.raises(ValueError, match="cannot tell the dimension"):
        MongeMap(phi)
    with pytest.raises(ValueError, match="shift has d = 2, target has d = 3"):
        MongeMap(phi, SHIFT, target=Gaussian.standard(3))
    with pytest.raises(ValueError, match="does not accept a point of dimension 3"):
        MongeMap(phi, dim=3)
    with pytest.raises(ValueError, match="scale must be > 0"):
        MongeMap(phi, SHIFT, 0.0)
    bare = MongeMap(phi, dim=2)
    np.testing.assert_array_equal(bare.shift, [0.0, 0.0])
    assert bare.dim == 2 and bare.scale.shape == ()
    with pytest.raises(ValueError, match=r"x must have shape \[n, 2\] or \[2\], got \(4, 3\)"):
        bare.transport(jnp.ones((4, 3)))
    with pytest.raises(ValueError, match=r"y must have shape \[n, 2\] or \[2\], got \(3,\)"):
        jax.jit(lambda m, y: m.inverse(y))(bare, jnp.ones(3))
    with pytest.raises(ValueError, match="this map has none"):
        bare.log_density(jnp.ones(2))
    with pytest.raises(ValueError, match="has no target"):
        bare.sample(jax.random.key(0), 3)
    unnormalised = MongeMap(phi, target=PotentialTarget(lambda y: 0.5 * y @ y, 2))
    with pytest.raises(ValueError, match="no known normalising constant"):
        jax.jit(lambda m, x: m.log_density(x))(unnormalised, jnp.ones(2))
    with pytest.raises(ValueError, match="cannot be sampled"):
        unnormalised.sample(jax.random.key(0), 3)
    samples_only = MongeMap(phi, target=EmpiricalTarget(jnp.ones((5, 2))))
    with pytest.raises(ValueError, match="no known normalising constant"):
        samples_only.log_density(jnp.ones(2))


# --- the methods as bound methods: jax.jit(m.transport), jax.vmap(m.transport) ----------
BOUND_METHODS = ["transport", "inverse", "jacobian", "log_det_jacobian", "log_density"]


@pytest.mark.parametrize("method", BOUND_METHODS)
def test_jax_jit_of_a_bound_method(monge, points, method):
    """jax.jit hashes the callable it is given: a method taken from the map must hash (by
    the map's identity, not its arrays) and give the values of the plain call."""
    bound = getattr(monge, method)
    # the inverse is a float32 Newton solve, compiled here into one program with the map's
    # arrays as constants: rounding differs at its accuracy, 1e-4 (as in the tests above)
    tol = 1e-4 if method == "inverse" else 1e-5
    np.testing.assert_allclose(jax.jit(bound)(points), bound(points), rtol=tol, atol=tol)


def test_jax_jit_of_the_map_and_with_static_arguments(monge, points):
    np.testing.assert_allclose(jax.jit(monge)(points), monge(points), rtol=1e-5, atol=1e-5)
    y = monge.transport(points)
    inverse = jax.jit(monge.inverse, static_argnames="iterations")  # reads the signature
    np.testing.assert_allclose(inverse(y, iterations=50), points, rtol=1e-4, atol=1e-4)


def test_jax_vmap_of_a_bound_method_over_single_points(monge, points):
    np.testing.assert_allclose(
        jax.vmap(monge.transport)(points), monge.transport(points), rtol=1e-5, atol=1e-5
    )


def test_grad_through_the_bound_method(monge, points):
    x0 = points[0]
    # ∇_x Σ_i T_i(x) = DT(x)ᵀ 1, DT(x) = ∇²Φ(x) symmetric
    expected = rescaled_hessian(monge.potential, points)[0].sum(axis=1)
    grad = jax.grad(lambda x: monge.transport(x).sum())(x0)
    np.testing.assert_allclose(grad, expected, rtol=1e-4, atol=1e-5)
    jitted = jax.jit(jax.grad(lambda x: monge.transport(x).sum()))(x0)
    np.testing.assert_allclose(jitted, grad, rtol=1e-5, atol=1e-6)


def test_bound_methods_are_pytrees_hashed_by_identity(monge, points):
    bound = monge.transport
    # a pytree whose leaves are the map's: eqx.filter_jit traces them, eqx.filter_grad would
    # differentiate them
    leaves = jax.tree_util.tree_leaves(bound)
    assert len(leaves) == len(jax.tree_util.tree_leaves(monge))
    assert all(a is b for a, b in zip(leaves, jax.tree_util.tree_leaves(monge), strict=True))
    np.testing.assert_allclose(
        eqx.filter_jit(bound)(points), monge.transport(points), rtol=1e-5, atol=1e-5
    )
    # hashed and compared as Python bound methods are: by function and map identity
    assert bound == monge.transport and hash(bound) == hash(monge.transport)
    assert bound != monge.inverse
    copy = jax.tree_util.tree_map(lambda a: a, monge)
    assert copy is not monge and eqx.tree_equal(copy, monge)
    assert copy.transport != bound and copy != monge
    # a map passed to a jitted function (traced) still gives jax.jit a hashable method
    inner = jax.jit(lambda m, x: jax.jit(m.transport)(x))(monge, points)
    np.testing.assert_allclose(inner, monge.transport(points), rtol=1e-5, atol=1e-5)


def test_jitting_a_bound_method_twice_does_not_recompile(monge, points, caplog):
    first = jax.jit(monge.transport)
    expected = first(points)
    with caplog.at_level(logging.WARNING), jax.log_compiles():
        jax.jit(lambda x: x + 1.0)(points)  # control: a new function is compiled and logged
        second = jax.jit(monge.transport)  # another bound method, equal to the first
        np.testing.assert_array_equal(second(points), expected)
    compiled = [r.getMessage() for r in caplog.records if "Compiling" in r.getMessage()]
    assert len(compiled) == 1 and "lambda" in compiled[0], compiled
