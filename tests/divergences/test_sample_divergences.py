"""Divergences to targets known by samples: energy distance, Gaussian MMD, Sinkhorn, drift."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mongeflow as mf
from mongeflow.divergences import MMD, Drift, EnergyDistance, Sinkhorn, get_divergence
from mongeflow.divergences.drift import drift_field
from mongeflow.maps import AffinePotential, transport
from mongeflow.metrics import energy_distance
from mongeflow.problems import EmpiricalTarget, Gaussian, PotentialTarget, Problem

SAMPLE_DIVERGENCES = ("energy", "mmd", "sinkhorn", "drift")
TARGET_MEAN, TARGET_STD = np.array([2.0, 1.0]), np.array([0.5, 1.5])


def _cloud(seed, n, d=2, shift=0.0):
    """n standard normal points in R^d, moved by ``shift`` (NumPy draws: no compilation)."""
    points = np.random.default_rng(seed).standard_normal((n, d)) + np.asarray(shift)
    return jnp.asarray(points, dtype=jnp.zeros(()).dtype)


def _rms(v):
    return float(jnp.sqrt(jnp.mean(v**2)))


def _two_sample_problem():
    """N(0, I₂) → N((2, 1), diag(0.25, 2.25)), the target known by 4000 samples only."""
    rng = np.random.default_rng(0)
    data = rng.standard_normal((4000, 2)) * TARGET_STD + TARGET_MEAN
    return Problem("two-sample", Gaussian.standard(2), EmpiricalTarget(data))


# --- velocity = −∇_W D = −n ∂D/∂z_i on the batch, against finite differences (float64) ------


def _points_functions(name, z, y):
    """D(z, y) with its batch-dependent constants (bandwidths, ε) frozen, and −∇_W D at z."""
    if name == "energy":
        div = EnergyDistance(block_size=7)
        return div.squared, div.field
    if name.startswith("mmd"):
        div = MMD(bandwidth=name.split("-")[1], block_size=7)
        h2 = div.bandwidths(z, y)
        return (lambda a, b: div.squared(a, b, h2)), (lambda a, b: div.field(a, b, h2))
    div = Sinkhorn(threshold=1e-12, iterations=20_000, block_size=7)
    eps = div.epsilon(z, y)
    return (lambda a, b: div.divergence(a, b, eps)), (lambda a, b: div.field(a, b, eps))


@pytest.mark.parametrize("name", ["energy", "mmd-median", "mmd-multiscale", "sinkhorn"])
def test_velocity_is_minus_n_times_the_finite_difference_gradient(name):
    with jax.enable_x64(True):
        n, d, h = 12, 2, 1e-6
        z = _cloud(0, n, d)
        y = _cloud(1, n, d, shift=jnp.array([1.0, -0.5]))
        value, field = _points_functions(name, z, y)
        directions = jnp.asarray(np.random.default_rng(5).standard_normal((4, n, d)))

        @jax.jit
        def check(z, y):
            diff = jax.vmap(lambda e: value(z + h * e, y) - value(z - h * e, y))(directions)
            return diff / (2 * h), field(z, y)

        fd, v = check(z, y)
        assert _rms(v) > 0.1  # a real field, not a vacuous test
        # ⟨∇_z D, e⟩ = −(1/n) Σ_i ⟨v_i, e_i⟩ along random directions e (measured: to 1e-9
        # relative for the energy distance and the MMD, 1e-8 for the Sinkhorn divergence)
        predicted = -jnp.einsum("kij,ij->k", directions, v) / n
        np.testing.assert_allclose(fd, predicted, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("name", SAMPLE_DIVERGENCES)
def test_loss_gradient_in_theta_is_the_velocity_pulled_back(name):
    """∇_θ loss = −(1/n) Σ_i J_θ(x_i)ᵀ v(T(x_i)) on the same batches (the lifting of D)."""
    problem = _two_sample_problem()
    phi = AffinePotential(2, A=[[1.5, 0.3], [0.3, 0.8]], b=[0.2, -0.1])
    true_map = AffinePotential(2, A=np.diag(TARGET_STD), b=TARGET_MEAN)
    x = _cloud(1, 256)
    div = get_divergence(name)

    @eqx.filter_jit
    def figures(phi, key):
        loss, grad = eqx.filter_value_and_grad(lambda p: div.loss(p, x, problem, key))(phi)
        v = div.velocity(phi, x, problem, key)
        _, pull = eqx.filter_vjp(lambda p: transport(p, x), phi)
        return loss, grad, pull(-v / x.shape[0])[0], v, div.value(true_map, x, problem, key)

    loss, grad, expected, v, value_at_true_map = figures(phi, jax.random.key(2))
    ours = jax.tree_util.tree_leaves(eqx.filter(grad, eqx.is_inexact_array))
    theirs = jax.tree_util.tree_leaves(eqx.filter(expected, eqx.is_inexact_array))
    scale = max(float(jnp.max(jnp.abs(t))) for t in theirs)
    assert scale > 0
    for a, b in zip(ours, theirs, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-4 * scale)
    if div.loss_is_value:  # the loss estimates D: far smaller at the true map (measured ≤ 1 %)
        assert 0.0 <= float(value_at_true_map) < 0.05 * float(loss), (value_at_true_map, loss)
    else:  # the drift: the surrogate ½ mean |v|²; its value is the energy distance
        assert float(loss) == pytest.approx(0.5 * float(jnp.mean(jnp.sum(v**2, -1))), rel=1e-5)
        assert 0.0 <= float(value_at_true_map) < 0.05  # the ED: ≈ 2 at T = id


# --- equilibrium: no velocity when the pushed batch is the target --------------------------


@pytest.mark.parametrize("name", ["energy", "mmd", "sinkhorn"])
def test_velocity_vanishes_when_the_distributions_agree(name):
    field = jax.jit(get_divergence(name).field)
    z = _cloud(0, 400)
    shifted = _rms(field(z, _cloud(1, 400, shift=1.0)))
    same_set = _rms(field(z, z))
    same_law = _rms(field(z, _cloud(1, 400)))
    # measured same set / shifted: 0 (energy, MMD), 1.4e-3 (Sinkhorn: its solver's
    # tolerance); same law / shifted: about 0.1 (the sampling noise of 400 points)
    assert same_set <= 1e-2 * shifted, (same_set, shifted)
    assert same_law <= 0.25 * shifted, (same_law, shifted)


def test_drift_field_is_antisymmetric_and_zero_for_equal_sets():
    """V_{p,q} = −V_{q,p} (Deng et al. 2026, §3): swapping positives and negatives negates the
    field, which is therefore zero when they are the same set (float64: to rounding)."""
    with jax.enable_x64(True):
        z = _cloud(0, 50)
        p, q = _cloud(1, 60, shift=1.0), _cloud(2, 40)

        @jax.jit
        def fields(temperature):
            field = lambda pos, neg, block: drift_field(z, pos, neg, temperature, 1.5, block=block)
            return field(p, q, 16), field(q, p, 16), field(p, p, 1024), field(p, q, 1024)

        for temperature in (0.02, 0.05, 0.2):
            pq, qp, pp, unblocked = fields(temperature)
            size = float(jnp.max(jnp.abs(pq)))
            assert size > 0
            np.testing.assert_allclose(pq, -qp, atol=1e-12 * size)
            assert float(jnp.max(jnp.abs(pp))) <= 1e-12 * size  # 0 up to rounding
            np.testing.assert_allclose(pq, unblocked, atol=1e-12 * size)  # blocks: no change


def test_drift_points_to_the_target_and_is_normalised():
    z = _cloud(0, 300)
    y_far, y_same = _cloud(1, 300, shift=jnp.array([3.0, 0.0])), _cloud(1, 300)
    one = Drift(temperatures=(0.05,))

    @jax.jit
    def fields():
        raw = Drift(normalise=False)
        return raw.field(z, y_far), raw.field(z, y_same), one.field(z, y_far), one.scale(z, y_far)

    v, v_same, normalised, scale = fields()
    assert float(jnp.mean(v[:, 0])) > 5 * abs(float(jnp.mean(v[:, 1])))
    # the raw field nearly vanishes when the target has the law of the pushed points
    assert _rms(v_same) < 0.25 * _rms(v)
    # normalised (the paper's default): each temperature's field has RMS scale/√d
    assert _rms(normalised) == pytest.approx(float(scale) / np.sqrt(2), rel=1e-5)


# --- blocks and large batches -------------------------------------------------------------


def test_blocked_sums_equal_unblocked_ones():
    z, y = _cloud(0, 37, 3), _cloud(1, 29, 3, shift=0.5)

    @jax.jit
    def figures(z, y):
        small, whole = EnergyDistance(block_size=5), EnergyDistance()
        far = EnergyDistance(block_size=8).squared(z + 100.0, y + 100.0)
        blocked = (small.squared(z, y), small.field(z, y))
        return blocked, (whole.squared(z, y), whole.field(z, y)), far, energy_distance(z, y)

    blocked, whole, far, reported = figures(z, y)
    assert float(blocked[0]) == pytest.approx(float(whole[0]), rel=1e-5)
    np.testing.assert_allclose(blocked[1], whole[1], rtol=1e-4, atol=1e-6)
    # the energy distance is the figure the metrics report, far from the origin too
    np.testing.assert_allclose(far, reported, rtol=1e-3)
    # the blocked point cloud solves OTT-JAX's problems as its dense one does
    from ott.geometry import pointcloud
    from ott.solvers import linear

    from mongeflow.divergences.sinkhorn import _blocked_point_cloud

    with jax.enable_x64(True):
        z64, y64 = _cloud(0, 37, 3), _cloud(1, 29, 3, shift=0.5)

        @jax.jit
        def both(z, y):
            with jax.numpy_rank_promotion("allow"):
                dense = linear.solve(pointcloud.PointCloud(z, y, epsilon=0.5), threshold=1e-10)
                cloud = _blocked_point_cloud()(z, y, epsilon=0.5, batch_size=5)
                blocked = linear.solve(cloud, threshold=1e-10)
            fields = lambda out: (out.reg_ot_cost, out.f, out.g)
            return fields(dense), fields(blocked)

        for a, b in zip(*both(z64, y64), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-9)


def test_ten_thousand_points_need_little_memory():
    """n = m = 10⁴ in float32: the compiled loss gradients and velocities need ~0.1 GB of
    temporaries (measured 80 MB; the drift 160 MB), not the 0.4 GB of one 10⁴ × 10⁴ matrix."""
    n, d = 10_000, 8
    shape = jax.ShapeDtypeStruct((n, d), jnp.float32)
    programs = {
        "energy": jax.value_and_grad(EnergyDistance().squared),  # the MMD's sums too
        "sinkhorn": jax.value_and_grad(Sinkhorn().divergence),
        "drift": Drift().field,
    }
    for name, program in programs.items():
        compiled = jax.jit(program).lower(shape, shape).compile()
        temp = compiled.memory_analysis().temp_size_in_bytes
        assert temp < 300 * 2**20, (name, temp / 2**20)


# --- what a divergence needs --------------------------------------------------------------


@pytest.mark.parametrize("name", SAMPLE_DIVERGENCES)
def test_a_target_without_samples_is_refused_clearly(name):
    no_samples = Problem(
        "potential-only",
        Gaussian.standard(2),
        PotentialTarget(lambda y: 0.5 * jnp.sum(y**2), dim=2),
    )
    div = get_divergence(name)
    assert div.needs_target_samples and not div.needs_potential
    with pytest.raises(ValueError, match=f"the {name} divergence needs samples of the target"):
        div.check(no_samples)
    with pytest.raises(ValueError, match="needs samples of the target"):
        mf.fit(no_samples, "adam", name, steps=1)
    # and a key to draw them
    with pytest.raises(ValueError, match="needs a PRNG key"):
        div.velocity(AffinePotential(2), jnp.zeros((4, 2)), _two_sample_problem(), None)


def test_settings_are_checked_and_parsed():
    # lists of numbers are tuples of floats, given also as a list or a string
    assert get_divergence("mmd", scales="0.25, 1").scales == (0.25, 1.0)
    assert Drift(temperatures=(0.1, 0.3)) == get_divergence("drift", temperatures="0.1 0.3")
    assert Drift(temperatures=[0.1, 0.3]) == Drift(temperatures="0.1,0.3")
    assert Drift().temperatures == (0.02, 0.05, 0.2)  # the authors' temperatures
    assert MMD().scales == (0.5, 1.0, 2.0)
    assert hash(Drift(temperatures=[0.1])) == hash(Drift(temperatures=(0.1,)))  # static
    assert Sinkhorn(threshold=1e-4, iterations=50).iterations == 50
    with pytest.raises(ValueError, match="expected numbers"):
        MMD(scales="half, one")
    with pytest.raises(ValueError, match="bandwidth must be one of"):
        get_divergence("mmd", bandwidth="silverman")
    with pytest.raises(ValueError, match="temperatures must be positive"):
        Drift(temperatures=(0.1, -1.0))
    with pytest.raises(ValueError, match="relative_epsilon"):
        Sinkhorn(relative_epsilon=0.0)
    with pytest.raises(ValueError, match="block_size"):
        EnergyDistance(block_size=0)


# --- they drive fits on a two-sample problem -----------------------------------------------

# Explicit-scheme settings per divergence: the MMD's Gaussian-kernel velocity is small, so
# its time step is larger; the drift's normalised field keeps its size near equilibrium, so
# its step is smaller. Affine maps (exact here), batch 128, one seed. Measured final / initial
# energy distance (initial 2.0): explicit energy 0.020, mmd 0.012, sinkhorn 0.003, drift
# 0.019; Adam on the loss (lr 0.03, 150 steps) 0.002, 0.002, 0.001 (on the drift's
# surrogate, as the paper trains: 0.004; the loss gradient is checked above instead).
EXPLICIT = {
    "energy": (mf.Explicit(tau=0.5, inner=mf.AdamInner(steps=20)), 6),
    "mmd": (mf.Explicit(tau=5.0, inner=mf.AdamInner(steps=20)), 6),
    "sinkhorn": (mf.Explicit(tau=0.5, inner=mf.AdamInner(steps=20)), 6),
    "drift": (mf.Explicit(tau=0.2, inner=mf.AdamInner(steps=20)), 8),
}


@pytest.fixture(scope="module")
def two_sample():
    problem = _two_sample_problem()
    x = _cloud(100, 2000)
    y = _cloud(101, 2000, shift=TARGET_MEAN / TARGET_STD) * jnp.asarray(TARGET_STD)[None, :]
    return problem, x, y, float(energy_distance(x, y))


def _fit_ratio(two_sample, scheme, name, steps):
    problem, x, y, initial = two_sample
    assert initial > 1.5
    res = mf.fit(
        problem, scheme, name, potential=AffinePotential(2), steps=steps, batch_size=128,
        eval_size=200, final_eval_size=0, log_every=steps,
    )  # fmt: skip
    assert np.all(res.stopped_at == -1)
    return float(energy_distance(res.transport(x), y)) / initial


# the drifting field in CI; the others (5-10 s cold each on 2 cores) with `pytest -m slow`
@pytest.mark.parametrize(
    "name",
    [n if n == "drift" else pytest.param(n, marks=pytest.mark.slow) for n in SAMPLE_DIVERGENCES],
)
def test_explicit_flow_reaches_the_target(name, two_sample):
    scheme, steps = EXPLICIT[name]
    assert _fit_ratio(two_sample, scheme, name, steps) < 0.1


@pytest.mark.parametrize(
    "name",
    ["energy", *(pytest.param(n, marks=pytest.mark.slow) for n in ("mmd", "sinkhorn"))],
)
def test_adam_on_the_loss_reaches_the_target(name, two_sample):
    assert _fit_ratio(two_sample, mf.Adam(learning_rate=0.03), name, 150) < 0.1
