"""The two-sample known-map problems: both sides are samples, T* is known exactly."""

import jax
import numpy as np
import pytest

import mongeflow as mf
from mongeflow.problems import EmpiricalSource, EmpiricalTarget
from mongeflow.problems.gaussian import bures_map
from mongeflow.problems.pairs import pair_mixture


def _linear_l2_uvp(p):
    """L2-UVP (%) of the Bures map between the training sides' empirical Gaussians, on the
    held-out source rows."""
    x = np.asarray(p.source.data, np.float64)
    y = np.asarray(p.target.data, np.float64)
    d = x.shape[1]
    A = bures_map(np.cov(x.T).reshape(d, d), np.cov(y.T).reshape(d, d))
    xv = np.asarray(p.validation, np.float64)
    linear = (xv - x.mean(0)) @ A.T + y.mean(0)
    true = np.asarray(jax.vmap(p.true_map)(p.validation), np.float64)
    var = np.asarray(p.validation_target, np.float64).var(0).sum()
    return 100 * np.mean(np.sum((linear - true) ** 2, 1)) / var


@pytest.mark.parametrize("dim", [2, 16])
def test_dense_pair_is_two_sample_sets_related_by_a_known_non_linear_map(dim):
    p = mf.get_problem("dense-pair", dim=dim, n=4000)
    assert isinstance(p.source, EmpiricalSource) and isinstance(p.target, EmpiricalTarget)
    assert p.source.data.shape == (3600, dim) and p.validation.shape == (400, dim)
    assert p.validation_target.shape == (400, dim)
    # T* pushes μ onto the target: the law of T*(x) for fresh x ~ μ matches the target rows
    fresh = pair_mixture(dim).sample(jax.random.key(7), 4000)
    pushed = np.asarray(jax.vmap(p.true_map)(fresh))
    y = np.asarray(p.target.data)
    sd = y.std(0)
    np.testing.assert_allclose(pushed.mean(0) / sd, y.mean(0) / sd, atol=0.12)
    np.testing.assert_allclose(pushed.std(0) / sd, 1.0, atol=0.1)
    # T* = ∇ψ with ψ strongly convex: monotone, and far from any linear map
    a, b = fresh[:500], fresh[500:1000]
    gap = np.sum((pushed[:500] - pushed[500:1000]) * np.asarray(a - b), axis=1)
    assert np.all(gap > 0)
    assert _linear_l2_uvp(p) > 4.0
    # the two sides are independent draws, not pairs: y is not T*(x) row by row
    mapped = np.asarray(jax.vmap(p.true_map)(p.validation))
    assert np.mean(np.sum((mapped - np.asarray(p.validation_target)) ** 2, 1)) > 1.0


def test_gaussian_pair_has_the_bures_map_and_rejects_bad_sizes():
    p = mf.get_problem("gaussian-pair", dim=3, n=20_000, validation=0.2)
    assert p.source.data.shape == (16_000, 3) and p.validation.shape == (4000, 3)
    assert _linear_l2_uvp(p) < 0.5  # the empirical Bures map is the true map, up to noise
    with pytest.raises(ValueError, match="n must be"):
        mf.get_problem("gaussian-pair", dim=2, n=1)
    with pytest.raises(ValueError, match="validation"):
        mf.get_problem("dense-pair", dim=2, validation=0.7)
