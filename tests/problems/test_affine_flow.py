"""An independent check of the exact affine/Gaussian constrained flow ``affine_flow``.

The Wasserstein gradient flow of KL(·|γ), γ = N(m1, Σ1) ∝ exp(−V), moves a density ρ with
the velocity v = −∇V − ∇log ρ. Constrained to maps T = ∇φ, the map moves by the L²(μ0)
projection of v∘T onto gradients. For T(x) = A(x − m0) + m (A symmetric) on μ0 = N(m0, Σ0),
ρ_T = N(m, AΣ0A). Here v∘T is built by autodiff of the two log-densities on samples, projected
by least squares onto x ↦ S(x − m0) + c (S symmetric), and compared with the derivative of the
trajectory that ``affine_flow`` integrates.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mongeflow.problems import affine_flow, bures_map
from tests.conftest import exact_moment_sample


def _random_spd(rng, d, low=0.5):
    M = rng.standard_normal((d, d))
    return M @ M.T / d + low * np.eye(d)


def _gaussian_log_density(y, mean, cov):
    r = y - mean
    _, logdet = jnp.linalg.slogdet(cov)
    return -0.5 * (r @ jnp.linalg.solve(cov, r) + logdet + y.shape[0] * jnp.log(2 * jnp.pi))


def _velocity_at_samples(x, A, m, m0, cov0, m1, cov1):
    """v(T(x)) = −∇V(T(x)) − ∇log ρ_T(T(x)), both gradients by autodiff (float64)."""
    with jax.enable_x64(True):
        x, A, m = jnp.asarray(x), jnp.asarray(A), jnp.asarray(m)
        y = (x - m0[None, :]) @ A.T + m[None, :]
        grad_V = jax.vmap(jax.grad(lambda yi: -_gaussian_log_density(yi, m1, cov1)))(y)
        score = jax.vmap(jax.grad(lambda yi: _gaussian_log_density(yi, m, A @ cov0 @ A.T)))(y)
        return np.asarray(-grad_V - score)


def _project_onto_symmetric_affine(x, m0, v):
    """argmin over symmetric S and c of mean_i |v_i − S(x_i − m0) − c|² (least squares)."""
    n, d = x.shape
    r = x - m0[None, :]
    pairs = [(i, j) for i in range(d) for j in range(i, d)]
    # column for S_ij (i ≤ j): the field r ↦ (E_ij + E_ji) r (halved on the diagonal)
    columns = []
    for i, j in pairs:
        E = np.zeros((d, d))
        E[i, j] = E[j, i] = 1.0
        columns.append((r @ E.T).reshape(-1))
    for k in range(d):
        e = np.zeros((n, d))
        e[:, k] = 1.0
        columns.append(e.reshape(-1))
    design = np.stack(columns, axis=1)
    coef = np.linalg.lstsq(design, v.reshape(-1), rcond=None)[0]
    S = np.zeros((d, d))
    for (i, j), value in zip(pairs, coef[: len(pairs)], strict=True):
        S[i, j] = S[j, i] = value
    return S, coef[len(pairs) :]


def _flow_derivative(m0, cov0, m1, cov1, A0, m_init, h=1e-4):
    """d/dt (A, m) at t = 0 from the integrated trajectory, second-order one-sided difference."""
    A, m = affine_flow(m0, cov0, m1, cov1, [0.0, h, 2 * h], A0=A0, m_init=m_init)
    dA = (-3 * A[0] + 4 * A[1] - A[2]) / (2 * h)
    dm = (-3 * m[0] + 4 * m[1] - m[2]) / (2 * h)
    return dA, dm


@pytest.mark.parametrize("d", [2, 3])
def test_affine_flow_moves_by_the_projected_velocity(d):
    """At a generic affine map, the flow's (dA/dt, dm/dt) is the projection of v∘T.

    The samples have exactly the moments of N(m0, Σ0), and v∘T is affine in x, so the least
    squares projection equals the L²(μ0) one to round-off. Differences: the O(h²) of the
    finite difference (h = 1e-4), measured ≤ 4e-8 relative (4e-6 at h = 1e-3, 4e-10 at
    h = 1e-5); tolerance 1e-6 relative.
    """
    rng = np.random.default_rng(d)
    m0, m1, m = rng.standard_normal(d), rng.standard_normal(d), rng.standard_normal(d)
    cov0, cov1 = _random_spd(rng, d), _random_spd(rng, d)
    A = _random_spd(rng, d, low=0.7)  # a symmetric map away from the fixed point
    x = exact_moment_sample(m0, cov0, 40 * d, seed=d)

    v = _velocity_at_samples(x, A, m, m0, cov0, m1, cov1)
    S, c = _project_onto_symmetric_affine(x, m0, v)
    dA, dm = _flow_derivative(m0, cov0, m1, cov1, A, m)

    assert np.linalg.norm(S) >= 0.1  # not at rest: the comparison is not 0 = 0
    np.testing.assert_allclose(dA, dA.T, atol=1e-12)
    assert np.linalg.norm(dA - S) <= 1e-6 * np.linalg.norm(S)
    assert np.linalg.norm(dm - c) <= 1e-6 * max(np.linalg.norm(c), 1.0)


def test_affine_flow_residual_is_orthogonal_to_non_affine_gradients():
    """The part of v∘T that the affine projection drops, w = v∘T − (S r + c), is orthogonal in
    L²(N(m0, Σ0)) to ∇ψ for non-quadratic ψ too (it is divergence-free for μ0), so the affine
    projection is the projection onto all gradient fields. Checked with 60² Gauss–Hermite
    nodes on entire integrands (measured |⟨w, ∇ψ⟩| ≤ 2e-15 · |w| |∇ψ|); tolerance 1e-10.
    """
    d = 2
    rng = np.random.default_rng(7)
    m0, m1, m = rng.standard_normal(d), rng.standard_normal(d), rng.standard_normal(d)
    cov0, cov1 = _random_spd(rng, d), _random_spd(rng, d)
    A = _random_spd(rng, d, low=0.7)
    x_fit = exact_moment_sample(m0, cov0, 80, seed=3)
    S, c = _project_onto_symmetric_affine(
        x_fit, m0, _velocity_at_samples(x_fit, A, m, m0, cov0, m1, cov1)
    )

    nodes, weights = np.polynomial.hermite_e.hermegauss(60)  # ∫ f(z) N(0, 1) dz
    weights = weights / weights.sum()
    z = np.stack(np.meshgrid(nodes, nodes, indexing="ij"), -1).reshape(-1, d)
    w2 = np.outer(weights, weights).reshape(-1)
    x = m0[None, :] + z @ np.linalg.cholesky(cov0).T
    residual = _velocity_at_samples(x, A, m, m0, cov0, m1, cov1) - (x - m0) @ S.T - c
    assert np.sqrt(w2 @ np.sum(residual**2, 1)) >= 0.05  # the dropped part is not zero

    with jax.enable_x64(True):
        psis = [
            lambda u: jnp.exp(0.6 * u[0] - 0.4 * u[1]),
            lambda u: jnp.sin(u[0]) * jnp.cos(0.7 * u[1]),
            lambda u: (u[0] - 0.2 * u[1]) ** 3 / 6.0,
        ]
        for psi in psis:
            grad = np.asarray(jax.vmap(jax.grad(psi))(jnp.asarray(x)))
            inner = w2 @ np.sum(residual * grad, 1)
            size = np.sqrt(w2 @ np.sum(residual**2, 1)) * np.sqrt(w2 @ np.sum(grad**2, 1))
            assert abs(inner) <= 1e-10 * size


def test_affine_flow_rests_at_the_bures_map():
    """At T = Bures map, m = m1 the projected velocity is zero, and the flow stays there."""
    d = 3
    rng = np.random.default_rng(11)
    m0, m1 = rng.standard_normal(d), rng.standard_normal(d)
    cov0, cov1 = _random_spd(rng, d), _random_spd(rng, d)
    A = bures_map(cov0, cov1)
    x = exact_moment_sample(m0, cov0, 120, seed=1)
    S, c = _project_onto_symmetric_affine(x, m0, _velocity_at_samples(x, A, m1, m0, cov0, m1, cov1))
    assert np.linalg.norm(S) <= 1e-9 and np.linalg.norm(c) <= 1e-9
    A_t, m_t = affine_flow(m0, cov0, m1, cov1, [0.0, 1.0], A0=A, m_init=m1)
    assert np.linalg.norm(A_t[-1] - A) <= 1e-8 and np.linalg.norm(m_t[-1] - m1) <= 1e-8
