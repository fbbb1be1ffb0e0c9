import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mongeflow.metrics import energy_distance, l2_uvp


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
    """SPEC §5: two independent 10⁴-samples of N(0, I₂) give ED ≈ 4e-4."""
    x = jax.random.normal(key, (10_000, 2))
    y = jax.random.normal(jax.random.fold_in(key, 1), (10_000, 2))
    ed = float(energy_distance(x, y))
    assert 5e-5 < ed < 1.5e-3


def test_l2_uvp_definition():
    y = jnp.zeros((4, 2))
    t = jnp.ones((4, 2))
    assert float(l2_uvp(t, y, jnp.asarray(2.0))) == pytest.approx(100.0)
