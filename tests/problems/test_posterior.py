"""Logistic-regression posteriors: the potential, the shipped NUTS reference and
``posterior_errors``."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mongeflow as mf
from mongeflow.problems import PROBLEMS, get_problem, posterior_errors, posterior_reference
from mongeflow.problems.posterior import (
    DATASETS,
    logistic_data,
    logistic_potential_fn,
    logistic_regression,
    reference_for,
)

DIMS = {"wine": 14, "breast-cancer": 31}
NAMES = {"wine": "logistic-wine", "breast-cancer": "logistic-cancer"}


def _numpy_potential(dataset, w):
    """V(w) = Σ_i log(1 + exp(−s_i x_iᵀ w)) + |w|²/2 in float64 NumPy, from the raw
    scikit-learn data (z-scored here independently)."""
    from sklearn.datasets import load_breast_cancer, load_wine

    raw = load_wine() if dataset == "wine" else load_breast_cancer()
    positive = 0 if dataset == "wine" else 1
    s = np.where(raw.target == positive, 1.0, -1.0)
    x = (raw.data - raw.data.mean(0)) / raw.data.std(0)
    x = np.hstack([x, np.ones((len(x), 1))])
    return np.sum(np.logaddexp(0.0, -s * (x @ w))) + 0.5 * w @ w


@pytest.mark.parametrize("dataset", DATASETS)
def test_potential_matches_numpy_and_finite_differences(dataset):
    d = DIMS[dataset]
    rng = np.random.default_rng(0)
    # typical points, and far ones where a naive log(1 + exp(t)) overflows
    ws = [rng.standard_normal(d), 0.3 * rng.standard_normal(d), 300.0 * rng.standard_normal(d)]
    V = logistic_potential_fn(dataset)
    with jax.enable_x64(True):
        grad = jax.jit(jax.grad(V))
        for w in ws:
            want = _numpy_potential(dataset, w)
            np.testing.assert_allclose(float(V(jnp.asarray(w))), want, rtol=1e-12)
            # central differences, h = 1e-5: truncation O(h² V''') and rounding O(ε V / h)
            h = 1e-5
            fd = np.array(
                [
                    (_numpy_potential(dataset, w + h * e) - _numpy_potential(dataset, w - h * e))
                    / (2 * h)
                    for e in np.eye(d)
                ]
            )
            np.testing.assert_allclose(
                np.asarray(grad(jnp.asarray(w))), fd, rtol=1e-6, atol=1e-6 * abs(want)
            )
    # float32: same values to float32 accuracy, and finite far out
    for w in ws:
        got = float(V(jnp.asarray(w, jnp.float32)))
        np.testing.assert_allclose(got, _numpy_potential(dataset, w), rtol=1e-5)


@pytest.mark.parametrize("dataset", DATASETS)
def test_problem_shape_source_and_convexity(dataset):
    p = get_problem(NAMES[dataset])
    d = DIMS[dataset]
    assert p.name == NAMES[dataset] and p.dim == d == logistic_data(dataset).shape[1]
    assert get_problem(NAMES[dataset], dim=d).dim == d
    assert isinstance(p.source, mf.Gaussian)
    np.testing.assert_array_equal(np.asarray(p.source.cov), np.eye(d))
    assert p.target.has_potential and not p.target.can_sample
    assert p.target.convexity == 1.0
    assert logistic_regression(dataset=dataset, prior_scale=0.5).target.convexity == 4.0
    # ∇²V ⪰ I / σ² at a random point
    w = jax.random.normal(jax.random.key(1), (d,))
    hess = np.asarray(jax.jit(jax.hessian(p.target.potential))(w), np.float64)
    assert np.linalg.eigvalsh(hess)[0] >= 1.0 - 1e-4


def test_registry_and_dimension_errors():
    assert {"logistic-wine", "logistic-cancer"} <= set(PROBLEMS)
    with pytest.raises(ValueError, match="dimension 14"):
        get_problem("logistic-wine", dim=5)
    with pytest.raises(ValueError, match="dimension 31"):
        get_problem("logistic-cancer", dim=14)
    with pytest.raises(ValueError, match="unknown dataset"):
        logistic_regression(dataset="iris")
    with pytest.raises(ValueError, match="prior_scale"):
        logistic_regression(prior_scale=0.0)


@pytest.mark.parametrize("dataset", DATASETS)
def test_reference_loads_converged_and_matches_the_potential(dataset):
    ref = posterior_reference(dataset)
    d = DIMS[dataset]
    for key in ("mean", "sd", "mcse_mean", "mcse_sd", "ess", "rhat"):
        assert ref[key].shape == (d,), key
        assert np.all(np.isfinite(ref[key])), key
    assert ref["n_draws"] >= 40_000
    assert ref["prior_scale"] == 1.0
    assert ref["settings"]["dataset"] == dataset and ref["settings"]["dtype"] == "float64"
    assert np.all(ref["sd"] > 0)
    # a 0.1-sd goal is measurable: MCSE ≤ 0.01 sd, converged chains
    assert np.max(ref["mcse_mean"] / ref["sd"]) <= 0.01
    assert np.max(ref["mcse_sd"] / ref["sd"]) <= 0.01
    assert np.all(ref["ess"] >= 1e4)
    assert np.max(np.abs(ref["rhat"] - 1.0)) < 0.01
    # the reference is of this V: the Laplace approximation (mode, inverse Hessian), exact
    # for a Gaussian posterior, lies within 1 sd of the mean (measured 0.74 wine, 0.34
    # cancer: both posteriors are skewed) and its sds within 10 % (measured 7 %)
    assert posterior_reference(NAMES[dataset])["mean"] == pytest.approx(ref["mean"])
    with jax.enable_x64(True):
        V = logistic_potential_fn(dataset)
        grad, hess = jax.jit(jax.grad(V)), jax.jit(jax.hessian(V))
        w = jnp.zeros(d)
        for _ in range(25):
            w = w - jnp.linalg.solve(hess(w), grad(w))
        laplace_sd = np.sqrt(np.diag(np.linalg.inv(np.asarray(hess(w)))))
        w = np.asarray(w)
    assert np.max(np.abs(w - ref["mean"]) / ref["sd"]) < 1.0
    assert np.max(np.abs(laplace_sd / ref["sd"] - 1.0)) < 0.1


def test_reference_for_problem():
    assert reference_for(get_problem("logistic-wine"))["mean"].shape == (14,)
    assert reference_for(logistic_regression(dataset="wine", prior_scale=2.0)) is None
    assert reference_for(get_problem("gaussian", dim=2)) is None


@pytest.mark.parametrize("dataset", DATASETS)
def test_posterior_errors_of_exact_gaussian_draws(dataset):
    """Independent draws of N(mean, diag(sd²)) have exactly the reference's mean and sd:
    their errors are sampling noise, each ~ N(0, 1/n) (means) and ~ N(0, 1/(2n)) (sds) in sd
    units; the maxima over d ≤ 31 coordinates stay below 5 such standard deviations (and
    below ``*_noise_max`` times 2). A sample shifted by 0.2 sd is caught."""
    ref = posterior_reference(dataset)
    n = 20_000
    rng = np.random.default_rng(3)
    x = ref["mean"] + ref["sd"] * rng.standard_normal((n, len(ref["mean"])))
    err = posterior_errors(x, ref)
    assert err["n"] == n and err["mean_errors"].shape == ref["mean"].shape
    assert err["mean_error"] == pytest.approx(np.max(err["mean_errors"]))
    assert err["mean_error"] < 5 / math.sqrt(n)
    assert err["sd_error"] < 5 / math.sqrt(2 * n)
    assert err["mean_error"] < 2 * err["mean_noise_max"]
    assert err["sd_error"] < 2 * err["sd_noise_max"]
    assert 1 / math.sqrt(n) <= err["mean_noise"] < 1.1 / math.sqrt(n) + 0.01
    shifted = posterior_errors(x + 0.2 * ref["sd"], NAMES[dataset])
    assert abs(shifted["mean_error"] - 0.2) < 5 / math.sqrt(n)
    with pytest.raises(ValueError, match="shape"):
        posterior_errors(x[:, :3], ref)


@pytest.mark.slow
def test_short_fit_on_logistic_wine():
    res = mf.fit("logistic-wine", "adam", steps=10, eval_size=200, final_eval_size=500)
    assert res.metrics, res.metrics
    for name, value in res.metrics.items():
        assert np.all(np.isfinite(np.asarray(value))), (name, value)
    x = jnp.zeros((2, 14))
    assert res.transport(x).shape == (2, 14)
