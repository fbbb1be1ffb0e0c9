"""The IMQ kernel Stein discrepancy: its closed form, its blocking and its behaviour on
exact and wrong samples."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mongeflow.maps import AffinePotential, Identity
from mongeflow.problems import get_problem
from mongeflow.stein import imq_stein_kernel, kernel_stein_discrepancy, ksd_of_map


def _autodiff_stein_kernel(x, sx, y, sy, c, beta):
    """(S) with ∇_x k, ∇_y k and tr(∇_x ∇_y k) of k(x, y) = (c² + |x − y|²)^β by autodiff."""
    k = lambda a, b: (c**2 + jnp.sum((a - b) ** 2)) ** beta
    grad_x = jax.grad(k, argnums=0)
    grad_y = jax.grad(k, argnums=1)
    cross = jax.jacfwd(grad_x, argnums=1)(x, y)  # ∂²k / ∂x_i ∂y_j
    return sx @ sy * k(x, y) + sx @ grad_y(x, y) + sy @ grad_x(x, y) + jnp.trace(cross)


@pytest.mark.parametrize(("c", "beta"), [(1.0, -0.5), (0.7, -0.2), (2.0, -0.9)])
def test_closed_form_stein_kernel_matches_autodiff(c, beta):
    rng = np.random.default_rng(0)
    with jax.enable_x64(True):
        x, sx, y, sy = (jnp.asarray(rng.standard_normal((6, 4))) for _ in range(4))
        x = x.at[0].set(y[0])  # one pair on the diagonal x = y
        closed = jax.vmap(lambda *a: imq_stein_kernel(*a, c, beta))(x, sx, y, sy)
        auto = jax.vmap(lambda *a: _autodiff_stein_kernel(*a, c, beta))(x, sx, y, sy)
        np.testing.assert_allclose(np.asarray(closed), np.asarray(auto), rtol=1e-12)


def test_ksd_is_the_mean_of_the_stein_kernel_matrix():
    """The blocked, expanded computation against (1/n²) Σ_ij k_p by autodiff, for arbitrary
    points and "scores" far from the origin (float64)."""
    rng = np.random.default_rng(1)
    with jax.enable_x64(True):
        x = jnp.asarray(rng.standard_normal((9, 3)) + 5.0)
        s = jnp.asarray(rng.standard_normal((9, 3)))
        pair = lambda a, sa, b, sb: _autodiff_stein_kernel(a, sa, b, sb, 1.0, -0.5)
        matrix = jax.vmap(lambda a, sa: jax.vmap(lambda b, sb: pair(a, sa, b, sb))(x, s))(x, s)
        want = np.sqrt(float(jnp.mean(matrix)))
        for block in (9, 4):
            got = float(kernel_stein_discrepancy(x, s, block=block))
            np.testing.assert_allclose(got, want, rtol=1e-10)


def test_blockwise_equals_unblocked():
    x = jax.random.normal(jax.random.key(0), (1001, 5))
    s = -x + 0.1 * jax.random.normal(jax.random.key(1), (1001, 5))
    full = float(kernel_stein_discrepancy(x, s, block=1001))
    for block in (100, 7):
        np.testing.assert_allclose(
            float(kernel_stein_discrepancy(x, s, block=block)), full, rtol=1e-5
        )


def test_exact_samples_small_decreasing_and_shift_detected():
    """For exact draws of N(0, I_d), KSD² ≈ E k_p(x, x) / n = 2d / n (defaults c = 1,
    β = −1/2): checked within a factor 3 at n = 500 and 4000, and KSD falls with n. A sample
    of N(0.5·1, I) scored against N(0, I) keeps a KSD near its population value (about
    0.5 for d = 3), far above the exact sample's."""
    d = 3
    values = {}
    for n in (500, 4000):
        x = jax.random.normal(jax.random.key(n), (n, d))
        values[n] = float(kernel_stein_discrepancy(x, -x))
        assert 1 / 3 < values[n] ** 2 * n / (2 * d) < 3, values
    assert values[4000] < 0.7 * values[500]
    x = jax.random.normal(jax.random.key(7), (4000, d)) + 0.5
    shifted = float(kernel_stein_discrepancy(x, -x))
    assert shifted > 5 * values[4000]


def test_invalid_arguments():
    x = jnp.zeros((4, 2))
    with pytest.raises(ValueError, match="kernel"):
        kernel_stein_discrepancy(x, x, kernel="gaussian")
    with pytest.raises(ValueError, match="beta"):
        kernel_stein_discrepancy(x, x, beta=0.5)
    with pytest.raises(ValueError, match="shape"):
        kernel_stein_discrepancy(x, jnp.zeros((4, 3)))


def test_ksd_of_map_ranks_true_map_above_identity(key):
    """On ``gaussian`` (d = 3) the exact affine Bures map gives the KSD of exact samples;
    the identity (T#μ0 = μ0 ≠ γ) a much larger one."""
    p = get_problem("gaussian", dim=3)
    T = p.true_map
    true = AffinePotential(3, A=np.asarray(T.A), b=np.asarray(T.m1 - T.A @ T.m0))
    good = float(ksd_of_map(true, p, key, n=2000))
    bad = float(ksd_of_map(Identity(), p, key, n=2000))
    y = p.target.sample(jax.random.fold_in(key, 1), 2000)
    exact = float(kernel_stein_discrepancy(y, -jax.vmap(jax.grad(p.target.potential))(y)))
    assert good < 2 * exact
    assert bad > 5 * good
