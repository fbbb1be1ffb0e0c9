"""The KL lift: closed forms on Gaussians, gradient agreement, the entropic score."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mongeflow.divergences import KL, pushforward_score
from mongeflow.maps import ICNN, AffinePotential, transport
from mongeflow.problems import EmpiricalTarget, Gaussian, Problem, gaussian_kl
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
        problem = Problem("g", Gaussian(s["m0"], s["cov0"]), Gaussian(s["m1"], s["cov1"]))
        value = float(KL().value(phi, s["x"], problem, None))
        # T#N(m0, Σ0) = N(A m0 + b, A Σ0 A)
        expected = gaussian_kl(
            s["A"] @ s["m0"] + s["b"], s["A"] @ s["cov0"] @ s["A"], s["m1"], s["cov1"]
        )
        assert abs(value - expected) <= 1e-9 * max(1.0, abs(expected))


def test_log_det_gradient_equals_score_gradient(gaussian_setup):
    """autodiff of F = E V(T) − E log det ∇²φ  ==  E[Jᵀ (∇V + ∇log ρ_T)∘T]."""
    s = gaussian_setup
    with jax.enable_x64(True):
        phi = AffinePotential(s["d"], A=s["A"], b=s["b"], dtype=jnp.float64)
        source = Gaussian(s["m0"], s["cov0"])
        target = Gaussian(s["m1"], s["cov1"])
        problem = Problem("g", source, target)
        x = s["x"]
        g_logdet = eqx.filter_grad(lambda p: KL().loss(p, x, problem, None))(phi)

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
        exact = KL(gradient="exact")
        g_exact = eqx.filter_grad(lambda p: exact.loss(p, x, problem, None))(phi)
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


def test_kl_checks_what_the_problem_offers():
    from mongeflow.problems import EmpiricalSource

    data_source = EmpiricalSource(np.zeros((4, 2)))
    with pytest.raises(ValueError, match="log-density"):
        KL(gradient="exact").check(Problem("p", data_source, Gaussian.standard(2)))
    with pytest.raises(ValueError, match="potential V"):
        KL().check(Problem("p", Gaussian.standard(2), EmpiricalTarget(np.zeros((4, 2)))))
    with pytest.raises(ValueError, match="gradient"):
        KL(gradient="magic")
    KL().check(Problem("p", data_source, Gaussian.standard(2)))  # the default needs only V


def _strictly_convex_map(d, key):
    """A non-affine map: a small ICNN with random positive weights and strong convexity."""
    phi = ICNN(d, key, widths=(8, 8), strong_convexity=0.5)
    return jax.tree_util.tree_map(
        lambda a: a.astype(jnp.float64) if eqx.is_inexact_array(a) else a, phi
    ).project()


@pytest.mark.slow
def test_kl_value_on_a_non_affine_map_matches_quadrature():
    """KL(T#μ0 | γ) by the change-of-variables Monte Carlo of KL.value, against a quadrature
    of ρ_T log(ρ_T / γ) on a y-grid with ρ_T(y) = ρ0(T⁻¹(y)) / T'(T⁻¹(y)) (1-D, T⁻¹ by
    bisection): independent of the log-det code."""
    with jax.enable_x64(True):
        phi = _strictly_convex_map(1, jax.random.key(3))
        source, target = Gaussian([0.2], [[0.8]]), Gaussian([0.5], [[0.3]])
        problem = Problem("1d", source, target)
        x = source.sample(jax.random.key(0), 400_000)
        mc = float(KL().value(phi, x, problem, None))
        T = jax.grad(lambda u: phi(jnp.atleast_1d(u)))
        ys = np.linspace(-12.0, 12.0, 12001)
        lo, hi = np.full_like(ys, -60.0), np.full_like(ys, 60.0)
        Tv = jax.jit(jax.vmap(T))
        for _ in range(90):
            mid = 0.5 * (lo + hi)
            below = np.asarray(Tv(jnp.asarray(mid))) < ys
            lo, hi = np.where(below, mid, lo), np.where(below, hi, mid)
        xs = 0.5 * (lo + hi)
        slope = np.asarray(jax.vmap(jax.grad(T))(jnp.asarray(xs)))
        log_rho0 = np.asarray(jax.vmap(lambda u: source.log_prob(jnp.atleast_1d(u)))(xs))
        log_rho_t = log_rho0 - np.log(slope)
        log_gamma = np.asarray(jax.vmap(lambda u: target.log_prob(jnp.atleast_1d(u)))(ys))
        integrand = np.exp(log_rho_t) * (log_rho_t - log_gamma)
        quad = float(np.sum(0.5 * (integrand[1:] + integrand[:-1]) * np.diff(ys)))
        assert quad > 0.05  # a non-trivial KL
        assert abs(mc - quad) <= 0.01 * quad + 3e-3, (mc, quad)


@pytest.mark.slow
def test_log_det_and_exact_score_gradients_agree_on_a_non_affine_map():
    """Integration by parts makes the log-det gradient and the exact-score gradient equal in
    expectation for any map; on a non-affine ICNN map they agree up to Monte-Carlo error."""
    with jax.enable_x64(True):
        phi = _strictly_convex_map(2, jax.random.key(5))
        problem = Problem(
            "2d", Gaussian([0.3, -0.2], [[1.0, 0.3], [0.3, 0.6]]), Gaussian.standard(2)
        )
        x = problem.source.sample(jax.random.key(1), 10_000)
        grad = lambda kl: eqx.filter_grad(lambda p: kl.loss(p, x, problem, None))(phi)
        flat = lambda g: jnp.concatenate(
            [a.ravel() for a in jax.tree_util.tree_leaves(eqx.filter(g, eqx.is_inexact_array))]
        )
        a, b = flat(grad(KL())), flat(grad(KL(gradient="exact")))
        rel = float(jnp.linalg.norm(a - b) / jnp.linalg.norm(a))
        assert rel <= 0.08, rel
