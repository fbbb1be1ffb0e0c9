"""The entropic (self-transport) score estimator and the pushforward score."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mongeflow.divergences import entropic_score, pushforward_score
from mongeflow.divergences.score import (
    _kth_smallest,
    _squared_distances,
    median_epsilon,
    self_transport,
)
from mongeflow.maps import ICNN, transport
from mongeflow.maps.base import hessian, log_det_hessian
from mongeflow.problems import Gaussian
from mongeflow.problems.builtin import paper_gmm


def _relative_error(estimate, reference):
    return float(jnp.linalg.norm(estimate - reference) / jnp.linalg.norm(reference))


# --- the median rule for ε -------------------------------------------------------------------


def test_median_epsilon_matches_the_lower_median():
    y = jnp.array([[0.0, 0.0], [1.0, 0.0], [0.0, 3.0]])
    # the 9 squared distances: 0, 0, 0, 1, 1, 9, 9, 10, 10 → median 1
    assert float(median_epsilon(y, 1.0)) == 1.0


@pytest.mark.parametrize("n", [2, 3, 101])
def test_median_epsilon_is_the_exact_lower_median(n):
    """Bit-for-bit the ⌊(n² − 1)/2⌋-th of the sorted n² squared distances (as torch.median)."""
    y = jax.random.normal(jax.random.key(n), (n, 2))
    sq = np.sort(np.asarray(_squared_distances(y)).ravel())
    assert float(median_epsilon(y, 1.0)) == sq[(n * n - 1) // 2]


def test_kth_smallest_is_exact_with_ties_negatives_and_close_values():
    """The selection is exact for every k, with repeated, signed and nearly equal values."""
    base = jax.random.normal(jax.random.key(0), (300,))
    close = 1.0 + jnp.arange(50, dtype=jnp.float32) * jnp.finfo(jnp.float32).eps
    values = jnp.concatenate([base, base[:40], close, -close, jnp.array([0.0, -0.0, 1e-30])])
    reference = np.sort(np.asarray(values))
    ks = jnp.arange(0, values.size, 7)
    picked = jax.jit(jax.vmap(lambda k: _kth_smallest(values, k)))(ks)
    np.testing.assert_array_equal(np.asarray(picked), reference[np.asarray(ks)])
    with jax.enable_x64(True):
        v64 = jnp.asarray(np.asarray(values, np.float64) * (1.0 + 1e-12 * np.arange(values.size)))
        ref64 = np.sort(np.asarray(v64))
        for k in (0, 17, 200, v64.size - 1):
            assert float(_kth_smallest(v64, k)) == ref64[k]


@pytest.mark.parametrize("c", [1e-4, 1e-2, 1.0, 1e2])
def test_median_epsilon_is_scale_equivariant(c):
    """ε(c·y) = c² ε(y) to float32 round-off (was off by 12× at c = 1e-4: the bisection had
    an absolute offset of 1 below the minimum and stopped after 20 halvings)."""
    y = jax.random.normal(jax.random.key(0), (100, 2))
    ratio = float(median_epsilon(c * y)) / (c**2 * float(median_epsilon(y)))
    assert abs(ratio - 1.0) <= 1e-5


@pytest.mark.parametrize("c", [1e-4, 1e-2, 1e2])
def test_entropic_score_is_scale_equivariant(c):
    """∇log ρ_c(c y) = ∇log ρ(y)/c for the law of c·Y, and the estimator (ε ∝ median) too.

    Measured relative L² difference ≤ 2e-6 (Sinkhorn run to 1e-6); tolerance 1e-4. Before
    the exact median it was 0.71 at c = 1e-4.
    """
    y = jax.random.normal(jax.random.key(0), (100, 2))
    reference = entropic_score(y, tolerance=1e-6) / c
    assert _relative_error(entropic_score(c * y, tolerance=1e-6), reference) <= 1e-4


# --- accuracy against true scores ------------------------------------------------------------


@pytest.mark.parametrize(
    "n, seeds, tol", [(100, 20, 0.95), pytest.param(1000, 4, 0.43, marks=pytest.mark.slow)]
)
def test_entropic_score_close_to_gaussian_score(n, seeds, tol):
    """Self-entropic-OT score on N(0, I₂) samples vs the true score −y, mean over seeds.

    Relative L² error |ŝ + y| / |y|, measured: n = 100: mean 0.87 over 20 seeds (per-seed
    std 0.11, so the mean's std ≈ 0.025); n = 1000: 0.33–0.40, mean 0.38 (std 0.027, mean of
    4 ≈ 0.014). Tolerances are about three standard deviations above. The estimator that
    returns zeros has error exactly 1, so it fails both.
    """
    keys = jax.random.split(jax.random.key(0), seeds)
    ys = jax.vmap(lambda k: jax.random.normal(k, (n, 2)))(keys)

    def mean_error(scores):  # the true score of N(0, I) is −y
        return float(
            jnp.mean(jnp.linalg.norm(scores + ys, axis=(1, 2)) / jnp.linalg.norm(ys, axis=(1, 2)))
        )

    assert mean_error(jnp.zeros_like(ys)) > tol
    assert mean_error(jax.vmap(entropic_score)(ys)) <= tol


@pytest.mark.slow
def test_entropic_score_has_the_gaussian_score_slope():
    """The estimator's factor, checked against the definition of a score, not against itself.

    On N(m, Σ) samples the true score is −Σ⁻¹(y − m); the least-squares fit ŝ ≈ B(y − ȳ) + c
    must give B ≈ −Σ⁻¹. At finite ε the population estimator is itself linear: for cost
    ½|y − y'|² the self-transport plan of N(0, σ²) is Gaussian with correlation ρ solving
    ρ/(1 − ρ²) = σ²/ε, the barycentric map is y ↦ ρy, so the estimator's slope along each
    eigendirection of Σ is (2/ε)(ρ − 1) → −1/σ² as ε → 0. Measured at n = 2000 over 6 seeds:
    |B − B_ε|/|B_ε| ≤ 0.062 and |B − (−Σ⁻¹)|/|Σ⁻¹| ≤ 0.134 (the 4–10 % bias of the finite ε).
    Tolerances 0.10 and 0.20; a factor 1/ε or 4/ε instead of 2/ε would give 0.5 or 1.0.
    """
    n = 2000
    cov = np.array([[1.0, 0.3], [0.3, 0.4]])
    mean = np.array([1.0, -2.0])
    z = np.asarray(jax.random.normal(jax.random.key(0), (n, 2)), np.float64)
    y = jnp.asarray(mean + z @ np.linalg.cholesky(cov).T, jnp.float32)
    s = np.asarray(entropic_score(y, tolerance=1e-4), np.float64)
    centred = np.asarray(y, np.float64) - np.asarray(y, np.float64).mean(0)
    coef = np.linalg.lstsq(np.c_[centred, np.ones(n)], s, rcond=None)[0]
    slope, intercept = coef[:2].T, coef[2]

    eps = float(median_epsilon(y))
    w, U = np.linalg.eigh(cov)
    r = w / eps
    rho = (np.sqrt(1.0 + 4.0 * r**2) - 1.0) / (2.0 * r)
    population = U @ np.diag((2.0 / eps) * (rho - 1.0)) @ U.T
    true = -np.linalg.inv(cov)

    assert np.linalg.norm(slope - population) <= 0.10 * np.linalg.norm(population)
    assert np.linalg.norm(slope - true) <= 0.20 * np.linalg.norm(true)
    assert np.linalg.norm(intercept) <= 0.05 * np.linalg.norm(true)  # E ∇log ρ = 0


@pytest.mark.slow
def test_symmetric_sinkhorn_matches_ott():
    """The specialised symmetric solver against OTT-JAX's general Sinkhorn (run with 2ε,
    since OTT's cost has no ½), on a non-Gaussian cloud: the plans, their marginals, and the
    barycentric projections Σ_j π_ij y_j / Σ_j π_ij, each computed from its own plan.

    The factor 2/ε that turns the displacement into a score is checked separately, against
    the Gaussian score (:func:`test_entropic_score_has_the_gaussian_score_slope`).
    """
    from ott.geometry import pointcloud
    from ott.problems.linear import linear_problem
    from ott.solvers.linear import sinkhorn

    n = 120
    y = paper_gmm().source.sample(jax.random.key(3), n)
    eps = median_epsilon(y)
    K, a = self_transport(y, eps, tolerance=1e-6)
    plan = a[:, None] * K * a[None, :] / n**2
    with jax.numpy_rank_promotion("allow"):
        geom = pointcloud.PointCloud(y, y, epsilon=2.0 * eps)
        out = sinkhorn.Sinkhorn(threshold=1e-6, max_iterations=20_000)(
            linear_problem.LinearProblem(geom)
        )
    ott_plan = np.asarray(out.matrix)
    assert bool(out.converged)
    np.testing.assert_allclose(plan, ott_plan, atol=1e-7)  # measured 2e-8; entries ≤ 1/n
    np.testing.assert_allclose(plan.sum(1), np.full(n, 1 / n), rtol=1e-5)
    np.testing.assert_allclose(ott_plan.sum(1), np.full(n, 1 / n), rtol=1e-5)
    ours = plan @ y / plan.sum(1, keepdims=True)
    theirs = ott_plan @ np.asarray(y) / ott_plan.sum(1, keepdims=True)
    # the barycentric displacement is what the score is made of: compare it relatively
    disp = theirs - np.asarray(y)
    assert np.linalg.norm(ours - y - disp) <= 1e-4 * np.linalg.norm(disp)  # measured 1.6e-5


def test_entropic_score_improves_with_samples():
    err = {}
    for n in (100, 1000):
        y = jax.random.normal(jax.random.key(11), (n, 2))
        err[n] = float(jnp.linalg.norm(entropic_score(y) + y) / jnp.linalg.norm(y))
    assert err[1000] < 0.7 * err[100]


# --- the exact score of a pushed-forward density ---------------------------------------------


def _invert(potential, y, x0, steps=20):
    """x with ∇φ(x) = y, by Newton's method (φ strongly convex, x0 close)."""

    def step(x, _):
        return x - jnp.linalg.solve(hessian(potential, x), jax.grad(potential)(x) - y), None

    return jax.lax.scan(step, x0, None, length=steps)[0]


@pytest.mark.slow
def test_pushforward_score_matches_finite_differences_for_a_non_affine_map():
    """∇log ρ_T at T(x) against an independent computation, for a non-quadratic ICNN φ.

    ρ_T(y) = ρ0(T⁻¹(y)) / det ∇²φ(T⁻¹(y)); its log is differentiated in y by central
    differences (h = 1e-4, float64), with T⁻¹ by Newton's method. Measured difference
    1.3e-9 (the O(h²) term); tolerance 1e-7. The Hessian is checked to vary across the
    samples by more than 10 %, so that a formula exact only for affine maps would fail.
    """
    with jax.enable_x64(True):
        d = 2
        phi = ICNN(d, jax.random.key(1), widths=(8, 8), strong_convexity=0.5, dtype=jnp.float64)
        phi = eqx.tree_at(lambda p: p.out_weight, phi, 10.0 * phi.out_weight + 0.5)
        source = Gaussian(jnp.array([0.3, -0.2]), jnp.array([[1.0, 0.4], [0.4, 0.8]]))
        x = source.sample(jax.random.key(2), 12)
        h = 1e-4
        steps = h * jnp.concatenate([jnp.eye(d), -jnp.eye(d)])

        @eqx.filter_jit
        def compute(phi, source, x):
            y = transport(phi, x)

            def log_density(yi, x_guess):
                xi = _invert(phi, yi, x_guess)
                return source.log_prob(xi) - log_det_hessian(phi, xi)

            def central_difference(yi, xi):
                values = jax.vmap(lambda e: log_density(yi + e, xi))(steps)
                return (values[:d] - values[d:]) / (2 * h)

            return (
                pushforward_score(phi, x, source.score),
                jax.vmap(central_difference)(y, x),
                jax.vmap(lambda yi, xi: _invert(phi, yi, xi + 0.1))(y, x),
                jax.vmap(lambda xi: hessian(phi, xi))(x),
            )

        score, expected, inverse, hessians = compute(phi, source, x)
        spread = jnp.max(jnp.linalg.norm(hessians - hessians[:1], axis=(1, 2)))
        assert float(spread) >= 0.1 * float(jnp.linalg.norm(hessians[0]))
        np.testing.assert_allclose(inverse, x, atol=1e-12)  # Newton inverts T to round-off
        np.testing.assert_allclose(score, expected, rtol=1e-7, atol=1e-7)
