import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mongeflow.metrics import energy_distance, l2_uvp, mean_distance


def _naive_ed(x, y):
    d = lambda a, b: np.linalg.norm(a[:, None] - b[None], axis=-1).mean()
    return 2 * d(x, y) - d(x, x) - d(y, y)


def test_energy_distance_matches_naive_and_chunks(key):
    x = np.asarray(jax.random.normal(key, (300, 2)))
    y = np.asarray(jax.random.normal(jax.random.fold_in(key, 1), (250, 2))) + 0.5
    expected = _naive_ed(x, y)
    for block in (7, 64, 300):
        assert float(energy_distance(jnp.asarray(x), jnp.asarray(y), block=block)) == (
            pytest.approx(expected, rel=1e-4)
        )


def test_energy_distance_floor_of_two_gaussian_samples(key):
    """Two independent n-samples of one law: E ED = 2 E|X − X'| / n (the V-statistic's zero
    diagonal), = 2√π / n ≈ 3.5e-4 for N(0, I₂) at n = 10⁴."""
    x = jax.random.normal(key, (10_000, 2))
    y = jax.random.normal(jax.random.fold_in(key, 1), (10_000, 2))
    ed = float(energy_distance(x, y))
    assert 5e-5 < ed < 1.5e-3


def test_l2_uvp_definition():
    y = jnp.zeros((4, 2))
    t = jnp.ones((4, 2))
    assert float(l2_uvp(t, y, jnp.asarray(2.0))) == pytest.approx(100.0)


@pytest.mark.parametrize("shift", [100.0, 1000.0])
def test_energy_distance_is_translation_invariant_in_float32(key, shift):
    """Samples far from the origin give the ED of the same samples at the origin.

    Two independent 2000-samples of N(0, I₂), ED ≈ 1.8e-3, moved to (shift, shift) and cast
    to float32, against the float64 naive sum. Before the samples were centred the relative
    error was 4.2e-3 at shift 100; now 1e-4 (as unshifted); tolerance 1e-3. The single mean
    distance of two different laws is checked too (error 3.9e-3 before at shift 1000).
    """
    x = np.asarray(jax.random.normal(key, (2000, 2)), np.float64)
    y = np.asarray(jax.random.normal(jax.random.fold_in(key, 2), (2000, 2)), np.float64)
    expected = _naive_ed(x, y)
    moved = np.full((1, 2), shift)
    ed = float(
        energy_distance(jnp.asarray(x + moved, jnp.float32), jnp.asarray(y + moved, jnp.float32))
    )
    assert abs(ed - expected) <= 1e-3 * expected

    z = y[:500] + 0.3
    expected_md = np.linalg.norm(x[:, None] - z[None], axis=-1).mean()
    md = float(
        mean_distance(jnp.asarray(x + moved, jnp.float32), jnp.asarray(z + moved, jnp.float32))
    )
    assert abs(md - expected_md) <= 1e-5 * expected_md


def test_linear_baseline_is_the_bures_map():
    """On Gaussian → Gaussian the baseline is the exact Monge map, up to the moments'
    sampling error; γ known by samples only works too, and so does a γ known only by V
    (through its Laplace moments)."""
    import mongeflow as mf
    from mongeflow.metrics import evaluate, linear_baseline
    from mongeflow.problems import bures_map

    problem = mf.get_problem("gaussian", dim=3)
    base = linear_baseline(problem, jax.random.key(0), n=20_000)
    true_A = np.asarray(problem.true_map.A)
    np.testing.assert_allclose(np.asarray(base.A), true_A, atol=0.05)
    assert float(evaluate(problem, base, jax.random.key(1), 5000)["l2_uvp"]) < 0.1
    samples = np.asarray(problem.target.sample(jax.random.key(2), 20_000))
    by_samples = mf.Problem("s", problem.source, mf.EmpiricalTarget(samples))
    base = linear_baseline(by_samples, jax.random.key(0), n=20_000)
    np.testing.assert_allclose(np.asarray(base.A), true_A, atol=0.08)
    # γ known only by V = |y|²/2: the Laplace moments N(0, I), so the Bures map to N(0, I)
    only_v = mf.Problem("v", problem.source, mf.PotentialTarget(lambda y: y @ y / 2, 3))
    base = linear_baseline(only_v, jax.random.key(0), n=20_000)
    cov0 = np.asarray(problem.source.cov, np.float64)
    np.testing.assert_allclose(np.asarray(base.A), bures_map(cov0, np.eye(3)), atol=0.08)


def test_the_sinkhorn_divergence_ranks_maps_where_the_energy_distance_does_not():
    """A mixture of ten unit Gaussians in d = 16 (centres 1.5 × N(0, I)), 1 000 rows: a
    fresh sample of it shrunk by 15 % about its mean (so within 15 % of the spread of a
    perfect pushforward) against the Gaussian with its mean and covariance (what the linear
    map pushes a Gaussian source to: the right moments, the wrong shape). The energy
    distance prefers the Gaussian beyond its noise floor (measured 0.044 against 0.078,
    floor 0.019); the Sinkhorn divergence prefers the shrunk sample beyond its own (6.1
    against 18.6, floor 5.2)."""
    from mongeflow.metrics import (
        energy_distance_floor,
        sinkhorn_divergence,
        sinkhorn_epsilon,
        sinkhorn_floor,
    )

    rng = np.random.default_rng(0)
    n, d = 1000, 16
    centres = 1.5 * rng.standard_normal((10, d))

    def mixture(n):
        return centres[rng.integers(0, 10, n)] + rng.standard_normal((n, d))

    y, fresh = mixture(n).astype(np.float32), mixture(n)
    mean = fresh.mean(0, keepdims=True)
    shrunk = (mean + 0.85 * (fresh - mean)).astype(np.float32)
    w, q = np.linalg.eigh(np.cov(y.T))
    gaussian = y.mean(0) + rng.standard_normal((n, d)) @ (q * np.sqrt(w)) @ q.T
    gaussian = gaussian.astype(np.float32)
    floor = float(energy_distance_floor(y, n))
    assert float(energy_distance(shrunk, y)) > float(energy_distance(gaussian, y)) + floor
    eps = sinkhorn_epsilon(y)
    s_shrunk = sinkhorn_divergence(shrunk, y, eps)
    s_gaussian = sinkhorn_divergence(gaussian, y, eps)
    assert s_shrunk < s_gaussian - sinkhorn_floor(y, eps)
    # a perfect pushforward (another fresh sample) scores about the floor
    assert sinkhorn_divergence(mixture(n).astype(np.float32), y, eps) < 2 * sinkhorn_floor(y, eps)
