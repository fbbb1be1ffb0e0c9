"""Built-in problems: shapes, densities, closed-form maps."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mongeflow.metrics import energy_distance
from mongeflow.problems import PROBLEMS, bures_map, gaussian_kl, get_problem


@pytest.mark.parametrize("name", list(PROBLEMS))
def test_problem_samples_and_dimension(name, key):
    dim = None if name == "paper-gmm" or name.startswith("logistic") else 5
    if name.startswith("w2"):
        dim = 4  # the benchmark's potentials exist for d = 2, 4, 8, ... only
    p = get_problem(name, dim=dim, **({"n": 512} if name == "w2-pair" else {}))
    x = p.source.sample(key, 64)
    assert x.shape == (64, p.dim)
    assert bool(jnp.all(jnp.isfinite(x)))


def test_paper_gmm_moments(key):
    """Sample mean and covariance of the paper's mixture against their closed forms.

    m = Σ w_k m_k and Σ = Σ w_k (Σ_k + m_k m_kᵀ) − m mᵀ from the published weights, means and
    covariances. Tolerances: five standard errors, each estimated from the sample itself
    (sd of x_i, resp. of (x_i − m_i)(x_j − m_j), over √n); about 0.02 for the mean and
    0.02–0.04 for the covariance at n = 2·10⁵, against entries of size 0.03–5.
    """
    n = 200_000
    x = np.asarray(get_problem("paper-gmm").source.sample(key, n), np.float64)
    w = np.array([0.3, 0.2, 0.3, 0.2])
    means = np.array([[-2, -2], [-1, 2], [2, -3], [2, 2]], float)
    covs = np.array(
        [
            [[0.10, 0.06], [0.06, 0.10]],
            [[0.10, 0.01], [0.01, 0.50]],
            [[0.10, 0.03], [0.03, 0.10]],
            [[0.10, 0.00], [0.00, 0.10]],
        ]
    )
    mean = w @ means
    cov = np.einsum("k,kij->ij", w, covs + means[:, :, None] * means[:, None, :])
    cov -= np.outer(mean, mean)

    se_mean = x.std(0) / np.sqrt(n)
    assert np.all(np.abs(x.mean(0) - mean) <= 5 * se_mean)
    r = x - mean[None, :]
    products = r[:, :, None] * r[:, None, :]
    se_cov = products.std(0) / np.sqrt(n)
    assert np.all(np.abs(products.mean(0) - cov) <= 5 * se_cov)


def test_gaussian_true_map_pushes_source_to_target(key):
    p = get_problem("gaussian", dim=4)
    x = p.source.sample(key, 4000)
    y = jax.vmap(p.true_map)(x)
    y_ref = p.target.sample(jax.random.fold_in(key, 1), 4000)
    floor = energy_distance(p.target.sample(jax.random.fold_in(key, 2), 4000), y_ref)
    assert float(energy_distance(y, y_ref)) <= 3 * float(floor) + 2e-3


def test_bures_map_is_symmetric_and_pushes_covariance():
    rng = np.random.default_rng(0)
    M, N = rng.standard_normal((2, 4, 4))
    c0, c1 = M @ M.T + np.eye(4), N @ N.T + np.eye(4)
    A = bures_map(c0, c1)
    np.testing.assert_allclose(A, A.T, atol=1e-12)
    np.testing.assert_allclose(A @ c0 @ A, c1, rtol=1e-9, atol=1e-9)
    assert np.min(np.linalg.eigvalsh(A)) > 0


def test_gaussian_kl_closed_form():
    assert gaussian_kl(np.zeros(2), np.eye(2), np.zeros(2), np.eye(2)) == pytest.approx(0.0)
    # KL(N(m, I) | N(0, I)) = |m|²/2
    assert gaussian_kl(np.ones(3), np.eye(3), np.zeros(3), np.eye(3)) == pytest.approx(1.5)


@pytest.mark.slow
def test_known_potential_pairs_are_exact_and_density_integrates(key):
    p = get_problem("known-potential", dim=3)
    x, y = p.source.sample_with_map(key, 500)
    np.testing.assert_allclose(jax.vmap(p.true_map)(x), y, atol=1e-4)
    # the true map is the gradient of a convex function: monotone
    xs = x[:250], x[250:]
    ys = y[:250], y[250:]
    assert float(jnp.min(jnp.sum((ys[0] - ys[1]) * (xs[0] - xs[1]), axis=1))) >= 0
    # log ρ0 is a density: importance-sampling E_γ[ρ0(x)/γ(x)] over a wide Gaussian ≈ 1
    d = 3
    z = 3.0 * jax.random.normal(jax.random.fold_in(key, 5), (200_000, d))
    log_q = -0.5 * jnp.sum(z**2, 1) / 9.0 - 0.5 * d * jnp.log(2 * jnp.pi * 9.0)
    ratio = jnp.exp(jax.vmap(p.source.log_prob)(z) - log_q)
    assert float(jnp.mean(ratio)) == pytest.approx(1.0, abs=0.03)


def test_unknown_problem_lists_valid_names():
    with pytest.raises(ValueError, match="paper-gmm"):
        get_problem("banana")


@pytest.mark.parametrize("dim", [2, *(pytest.param(d, marks=pytest.mark.slow) for d in (16, 64))])
def test_dense_potential_pairs_are_exact_and_hard_for_a_linear_map(dim, key):
    """T*(x) = y on generated pairs x = ∇ψ(y), and the linear (Bures) map is ≥ 5 % L2-UVP."""
    from mongeflow.metrics import evaluate, linear_baseline

    p = get_problem("dense-potential", dim=dim)
    x, y = p.source.sample_with_map(key, 2000)
    np.testing.assert_allclose(jax.vmap(p.true_map)(x), y, atol=2e-4)
    # the samples keep ψ's scale: neither centred nor unit
    assert float(jnp.mean(jnp.std(x, axis=0))) > 2.5
    base = linear_baseline(p, jax.random.fold_in(key, 1), 5000)
    assert float(evaluate(p, base, jax.random.fold_in(key, 2), 5000)["l2_uvp"]) > 5.0
