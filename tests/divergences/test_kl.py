"""The KL lift: closed forms on Gaussians, gradient agreement, the entropic score."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mongeflow.divergences import KL, entropic_score, pushforward_score
from mongeflow.maps import AffinePotential, transport
from mongeflow.problems import Gaussian, gaussian_kl
from mongeflow.problems.builtin import paper_gmm
from tests.conftest import exact_moment_sample


@pytest.fixture
def gaussian_setup():
    with jax.enable_x64(True):
        rng = np.random.default_rng(3)
        d = 3
        m0 = rng.standard_normal(d)
        M = rng.standard_normal((d, d))
        cov0 = M @ M.T / d + 0.5 * np.eye(d)
        m1 = rng.standard_normal(d)
        N = rng.standard_normal((d, d))
        cov1 = N @ N.T / d + 0.5 * np.eye(d)
        Q = rng.standard_normal((d, d))
        A = Q @ Q.T / d + 0.7 * np.eye(d)
        b = rng.standard_normal(d)
        x = exact_moment_sample(m0, cov0, 64, seed=1)
        yield dict(d=d, m0=m0, cov0=cov0, m1=m1, cov1=cov1, A=A, b=b, x=jnp.asarray(x))


def test_log_det_loss_is_the_gaussian_kl(gaussian_setup):
    s = gaussian_setup
    with jax.enable_x64(True):
        phi = AffinePotential(s["d"], A=s["A"], b=s["b"], dtype=jnp.float64)
        kl = KL(Gaussian(s["m1"], s["cov1"]), Gaussian(s["m0"], s["cov0"]))
        value = float(kl.value(phi, s["x"]))
        # T#N(m0, Σ0) = N(A m0 + b, A Σ0 A)
        expected = gaussian_kl(
            s["A"] @ s["m0"] + s["b"], s["A"] @ s["cov0"] @ s["A"], s["m1"], s["cov1"]
        )
        assert abs(value - expected) <= 1e-9 * max(1.0, abs(expected))


def test_log_det_gradient_equals_score_gradient(gaussian_setup):
    """autodiff of F = E V(T) − E log det ∇²φ  ==  E[Jᵀ (∇V + ∇log ρ_T)∘T] (SPEC §4)."""
    import equinox as eqx

    s = gaussian_setup
    with jax.enable_x64(True):
        phi = AffinePotential(s["d"], A=s["A"], b=s["b"], dtype=jnp.float64)
        source = Gaussian(s["m0"], s["cov0"])
        target = Gaussian(s["m1"], s["cov1"])
        x = s["x"]
        g_logdet = eqx.filter_grad(lambda p: KL(target).loss(p, x))(phi)

        pushed = Gaussian(s["A"] @ s["m0"] + s["b"], s["A"] @ s["cov0"] @ s["A"])
        y = transport(phi, x)
        direction = jax.vmap(jax.grad(target.potential))(y) + jax.vmap(pushed.score)(y)
        _, vjp = eqx.filter_vjp(lambda p: transport(p, x), phi)
        (g_score,) = vjp(direction / x.shape[0])
        for a, b in zip(
            jax.tree_util.tree_leaves(eqx.filter(g_logdet, eqx.is_inexact_array)),
            jax.tree_util.tree_leaves(eqx.filter(g_score, eqx.is_inexact_array)),
            strict=True,
        ):
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-9)
        # and the "exact" gradient mode of KL gives the same
        g_exact = eqx.filter_grad(lambda p: KL(target, source, gradient="exact").loss(p, x))(phi)
        for a, b in zip(
            jax.tree_util.tree_leaves(eqx.filter(g_logdet, eqx.is_inexact_array)),
            jax.tree_util.tree_leaves(eqx.filter(g_exact, eqx.is_inexact_array)),
            strict=True,
        ):
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-9)


def test_pushforward_score_is_exact_for_affine_maps(gaussian_setup):
    s = gaussian_setup
    with jax.enable_x64(True):
        phi = AffinePotential(s["d"], A=s["A"], b=s["b"], dtype=jnp.float64)
        source = Gaussian(s["m0"], s["cov0"])
        pushed = Gaussian(s["A"] @ s["m0"] + s["b"], s["A"] @ s["cov0"] @ s["A"])
        x = s["x"]
        score = pushforward_score(phi, x, source.score)
        expected = jax.vmap(pushed.score)(transport(phi, x))
        np.testing.assert_allclose(score, expected, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("n, tol", [(100, 1.0), (1000, 0.45)])
def test_entropic_score_close_to_gaussian_score(n, tol):
    """Self-entropic-OT score on N(0, I₂) samples vs the true score −y.

    Measured relative L² errors (5 seeds): n = 100: 0.70–0.95; n = 1000: 0.33–0.41 (the SPEC
    reports 0.8 and 0.33). Tolerances: the mean over 5 seeds ≤ 1.0 and ≤ 0.45.
    """
    errs = []
    for seed in range(5):
        y = jax.random.normal(jax.random.key(seed), (n, 2))
        s = entropic_score(y)
        errs.append(float(jnp.linalg.norm(s + y) / jnp.linalg.norm(y)))
    assert np.mean(errs) <= tol


def test_symmetric_sinkhorn_matches_ott():
    """The specialised symmetric solver against OTT-JAX's general Sinkhorn (run with 2ε,
    since OTT's cost has no ½), both to a tight tolerance, on a non-Gaussian cloud."""
    from ott.geometry import pointcloud
    from ott.problems.linear import linear_problem
    from ott.solvers.linear import sinkhorn

    from mongeflow.divergences.score import median_epsilon, self_transport

    y = paper_gmm().source.sample(jax.random.key(3), 120)
    eps = median_epsilon(y)
    K, a = self_transport(y, eps, tolerance=1e-6)
    plan = a[:, None] * K * a[None, :] / y.shape[0] ** 2
    with jax.numpy_rank_promotion("allow"):
        geom = pointcloud.PointCloud(y, y, epsilon=2.0 * eps)
        out = sinkhorn.Sinkhorn(threshold=1e-7, max_iterations=20_000)(
            linear_problem.LinearProblem(geom)
        )
    np.testing.assert_allclose(plan, out.matrix, atol=1e-6)
    np.testing.assert_allclose(plan.sum(1), np.full(120, 1 / 120), rtol=1e-5)
    ott_score = (2.0 / eps) * (out.matrix @ y / out.matrix.sum(1, keepdims=True) - y)
    np.testing.assert_allclose(entropic_score(y, tolerance=1e-6), ott_score, rtol=1e-3, atol=1e-3)


def test_median_epsilon_matches_the_lower_median():
    from mongeflow.divergences.score import median_epsilon

    y = jnp.array([[0.0, 0.0], [1.0, 0.0], [0.0, 3.0]])
    # the 9 squared distances: 0, 0, 0, 1, 1, 9, 9, 10, 10 → median 1
    assert float(median_epsilon(y, 1.0)) == 1.0


def test_entropic_score_improves_with_samples():
    err = {}
    for n in (100, 1000):
        y = jax.random.normal(jax.random.key(11), (n, 2))
        err[n] = float(jnp.linalg.norm(entropic_score(y) + y) / jnp.linalg.norm(y))
    assert err[1000] < 0.7 * err[100]


def test_exact_score_needs_source_density():
    with pytest.raises(ValueError, match="log-density"):
        KL(Gaussian.standard(2), None, gradient="exact")
    with pytest.raises(ValueError, match="gradient"):
        KL(Gaussian.standard(2), gradient="magic")
