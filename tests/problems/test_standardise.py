"""The Standardiser: its statistics, its coordinate maps (round trips in float64), the
problems it poses (against the formulas written out) and the map lifted through it."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mongeflow.io import data_problem
from mongeflow.maps import AffinePotential, MongeMap, StandardizedPotential
from mongeflow.problems import (
    EmpiricalSource,
    EmpiricalTarget,
    Gaussian,
    Problem,
    SamplerSource,
    Standardiser,
    StandardizedSource,
    get_problem,
    standardize,
)

RNG = np.random.default_rng(0)
X = RNG.normal(size=(300, 3)) * [1.0, 5.0, 0.2] + [4.0, -2.0, 0.5]
Y = RNG.normal(size=(200, 3)) * 3.0 - 7.0
X_HELD, Y_HELD = RNG.normal(size=(20, 3)), RNG.normal(size=(10, 3))


def _msq(rows):
    """mean_i (r_ij − mean_j)², per column."""
    return np.mean((rows - rows.mean(0)) ** 2, axis=0)


@pytest.mark.parametrize("per_feature", [False, True])
@pytest.mark.parametrize("with_target", [False, True])
def test_round_trips_in_float64(per_feature, with_target):
    std = Standardiser.from_samples(X, Y if with_target else None, per_feature=per_feature)
    assert std.per_feature == per_feature and std.standardises_target == with_target
    z, w = std.to_z(X), std.to_w(Y)
    assert z.dtype == np.float64
    np.testing.assert_allclose(std.to_x(z), X, rtol=0, atol=1e-13)
    np.testing.assert_allclose(std.to_y(w), Y, rtol=0, atol=1e-13)
    np.testing.assert_allclose(std.to_z(std.to_x(X_HELD)), X_HELD, rtol=0, atol=1e-13)
    # one point [d] as rows [n, d]
    np.testing.assert_array_equal(std.to_z(X[0]), z[0])
    with jax.enable_x64(True):
        jstd = std.astype(jnp.float64)
        zj = jstd.to_z(jnp.asarray(X))
        assert zj.dtype == jnp.float64
        np.testing.assert_allclose(np.asarray(jstd.to_x(zj)), X, rtol=0, atol=1e-13)
        wj = jstd.to_w(jnp.asarray(Y))
        np.testing.assert_allclose(np.asarray(jstd.to_y(wj)), Y, rtol=0, atol=1e-13)
        jac = jax.jacfwd(jstd.to_x)(jnp.zeros(3))  # log |det| of z ↦ m + s z
        logdet = np.linalg.slogdet(np.asarray(jac))[1]
        assert float(jstd.log_scale()) == pytest.approx(logdet, rel=1e-12)


def test_the_statistics_are_the_means_and_the_pooled_spread():
    one = Standardiser.from_samples(X)
    np.testing.assert_allclose(one.shift, X.mean(0), rtol=1e-14)
    assert one.target_shift is None
    assert one.scale == pytest.approx(np.sqrt(np.mean(_msq(X))), rel=1e-14)
    both = Standardiser.from_samples(X, Y)
    np.testing.assert_allclose(both.target_shift, Y.mean(0), rtol=1e-14)
    assert both.scale == pytest.approx(np.sqrt(np.mean(0.5 * (_msq(X) + _msq(Y)))), rel=1e-14)
    each = Standardiser.from_samples(X, Y, per_feature=True)
    np.testing.assert_allclose(each.scale, np.sqrt(0.5 * (_msq(X) + _msq(Y))), rtol=1e-14)


def _old_pose_rows(rows, centre, scale):
    """What ``standardize`` wrote out: (rows − m[None]) / s in JAX's default float type."""
    dtype = jnp.zeros(()).dtype
    s = jnp.asarray(scale, dtype)
    s = s if s.ndim == 0 else s[None, :]
    return (rows - jnp.asarray(centre, dtype)[None, :]) / s


@pytest.mark.parametrize("per_feature", [False, True])
def test_pose_of_samples_on_both_sides_is_the_formula(per_feature):
    true_map = lambda x: 2.0 * x + 1.0  # noqa: E731
    raw = Problem(
        "rows",
        EmpiricalSource(X),
        EmpiricalTarget(Y),
        true_map,
        validation=jnp.asarray(X_HELD),
        validation_target=jnp.asarray(Y_HELD),
    )
    p = standardize(raw, per_feature=per_feature)
    x32, y32 = np.asarray(raw.source.data, np.float64), np.asarray(raw.target.data, np.float64)
    m0, m1 = x32.mean(0), y32.mean(0)
    squares = 0.5 * (_msq(x32) + _msq(y32))
    s = np.sqrt(squares) if per_feature else float(np.sqrt(np.mean(squares)))
    assert np.allclose(p.scale, s, rtol=1e-15, atol=0) and p.per_feature == per_feature
    np.testing.assert_array_equal(p.shift, jnp.asarray(m0, p.shift.dtype))
    np.testing.assert_array_equal(p.target_shift, jnp.asarray(m1, p.shift.dtype))
    np.testing.assert_array_equal(p.source.data, _old_pose_rows(raw.source.data, m0, p.scale))
    np.testing.assert_array_equal(p.target.data, _old_pose_rows(raw.target.data, m1, p.scale))
    np.testing.assert_array_equal(p.validation, _old_pose_rows(raw.validation, m0, p.scale))
    np.testing.assert_array_equal(
        p.validation_target, _old_pose_rows(raw.validation_target, m1, p.scale)
    )
    # the true map seen from z: w = (T*(m0 + s z) − m1)/s
    z = p.validation
    sj = jnp.asarray(p.scale)
    sj = sj if sj.ndim == 0 else sj[None, :]
    expected = (true_map(p.shift[None, :] + sj * z) - p.target_shift[None, :]) / sj
    np.testing.assert_allclose(jax.vmap(p.true_map)(z), expected, rtol=1e-6, atol=1e-6)
    # the problem's standardiser is the one that posed it
    std = Standardiser.of(raw, per_feature=per_feature)
    assert Standardiser.posed(p).scale == std.scale
    np.testing.assert_array_equal(Standardiser.posed(p).shift, std.astype(None).shift)
    assert std.pose(raw).scale == p.scale


def test_data_problem_poses_its_rows_as_the_standardiser_does():
    """The same statistics (bit for bit) from data_problem (which computes in float64) and
    from standardize (on the float32 rows: data exact in float32, here)."""
    x, y = X.astype(np.float32), EmpiricalTarget(Y.astype(np.float32))
    raw = data_problem(x, y, standardize=False, validation=0.0)
    rows = data_problem(x, y, validation=0.0)
    posed = standardize(raw)
    assert rows.scale == posed.scale
    np.testing.assert_array_equal(rows.shift, posed.shift)
    np.testing.assert_array_equal(rows.target_shift, posed.target_shift)
    np.testing.assert_allclose(rows.source.data, posed.source.data, rtol=0, atol=1e-6)
    np.testing.assert_allclose(rows.target.data, posed.target.data, rtol=0, atol=1e-6)


@pytest.mark.parametrize("per_feature", [False, True])
def test_pose_of_a_sampled_source_with_exact_pairs(per_feature, key):
    raw = get_problem("dense-potential", dim=2)
    assert raw.source.has_true_pairs and hasattr(raw.source, "sample_with_map")
    std = Standardiser.of(raw, per_feature=per_feature, key=jax.random.key(2024), n=10_000)
    p = standardize(raw, per_feature=per_feature)
    assert isinstance(p.source, StandardizedSource) and p.scale == std.scale
    x = np.asarray(raw.source.sample(jax.random.key(2024), 10_000), np.float64)
    np.testing.assert_allclose(p.shift, x.mean(0), rtol=1e-6, atol=1e-7)
    spread = _msq(x) if per_feature else np.mean(_msq(x))
    np.testing.assert_allclose(p.scale, np.sqrt(spread), rtol=1e-12)
    # pairs: (z, T*(x)) with the target in its own units
    assert p.source.has_true_pairs and hasattr(p.source, "sample_with_map")
    z, y = p.source.sample_with_map(key, 64)
    x_raw, y_raw = raw.source.sample_with_map(key, 64)
    np.testing.assert_array_equal(z, _old_pose_rows(x_raw, np.asarray(p.shift), p.scale))
    np.testing.assert_array_equal(y, y_raw)
    np.testing.assert_array_equal(p.source.sample(key, 64), z)
    np.testing.assert_allclose(jax.vmap(p.true_map)(z), y, atol=2e-4)
    # the density of z: ρ0(m + s z) · Π_j s_j
    log_s = np.sum(np.broadcast_to(np.log(p.scale), (2,)))
    x_back = Standardiser.posed(p).to_x(z)
    np.testing.assert_allclose(
        jax.vmap(p.source.log_prob)(z), jax.vmap(raw.source.log_prob)(x_back) + log_s, rtol=1e-5
    )


def test_a_source_without_pairs_has_no_sample_with_map(key):
    p = standardize(get_problem("gaussian", dim=3))
    sampler = SamplerSource(lambda k, n: jax.random.normal(k, (n, 2)), dim=2)
    for source in (p.source, Gaussian.standard(2), sampler):
        assert not source.has_true_pairs
        assert not hasattr(source, "sample_with_map")
        with pytest.raises(AttributeError, match="draws no exact pairs"):
            source.sample_with_map(key, 4)


def test_standardiser_errors():
    flat = Problem("flat", EmpiricalSource(np.ones((5, 2))), Gaussian.standard(2))
    with pytest.raises(ValueError, match="cannot standardise flat: its source has no spread"):
        Standardiser.of(flat)
    column = np.c_[RNG.normal(size=5), np.ones(5)]
    one = Problem("col", EmpiricalSource(column), EmpiricalTarget(np.ones((4, 2))))
    with pytest.raises(ValueError, match="source and target have no spread in coordinate 1"):
        Standardiser.of(one, per_feature=True)
    posed = standardize(Problem("x", EmpiricalSource(X), Gaussian.standard(3)))
    assert standardize(posed) is posed
    with pytest.raises(ValueError, match="already standardised"):
        Standardiser.of(posed)
    with pytest.raises(ValueError, match="poses a target known by samples"):
        Standardiser.from_samples(X, Y).pose(Problem("v", EmpiricalSource(X), Gaussian.standard(3)))
    with pytest.raises(ValueError, match="2 per-coordinate scales for dimension 3"):
        Standardiser(np.zeros(3), (1.0, 2.0))


@pytest.mark.parametrize("per_feature", [False, True])
@pytest.mark.parametrize("with_target", [False, True])
def test_a_lifted_map_is_the_formula(per_feature, with_target):
    """T(x) = ∇φ((x − m)/s), or m1 + s ∇φ((x − m)/s) with the target standardised."""
    A = jnp.array([[2.0, 0.3, 0.0], [0.3, 0.5, 0.1], [0.0, 0.1, 1.0]])
    b = jnp.array([0.2, -1.0, 0.5])
    phi = AffinePotential(3, A=A, b=b)
    std = Standardiser.from_samples(X, Y if with_target else None, per_feature=per_feature)
    std = std.astype(jnp.float32)
    T = MongeMap.lift(phi, std, Gaussian.standard(3))
    x = jnp.asarray(X[:7], jnp.float32)
    m, s = std.shift, jnp.asarray(std.scale, jnp.float32)
    s = s if s.ndim == 0 else s[None, :]
    grad = ((x - m[None, :]) / s) @ A.T + b[None, :]  # ∇φ(z) = A z + b
    expected = grad if not with_target else std.target_shift[None, :] + s * grad
    np.testing.assert_allclose(T(x), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(T.inverse(T(x)), x, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(T.standardiser.scale, std.scale, rtol=1e-7)  # s in float32
    np.testing.assert_array_equal(T.standardiser.shift, std.shift)
    assert MongeMap.lift(phi, None, dim=3).dim == 3
    if per_feature:
        with pytest.raises(ValueError, match="one scale per coordinate"):
            StandardizedPotential(phi, std)
    else:  # the same map as the gradient of Φ in the data's units
        Phi = StandardizedPotential(phi, std)
        np.testing.assert_allclose(jax.vmap(jax.grad(Phi))(x), expected, rtol=1e-5, atol=1e-5)
