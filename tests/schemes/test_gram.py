"""The Gram (natural-gradient) solve against a direct float64 solve built from the Jacobian."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from mongeflow.maps import ICNN, transport
from mongeflow.schemes.base import gram_solve

DAMPING = 1e-2


def _reference(potential, x, rhs_flat, damping):
    """δ solving (JᵀJ/n + λI) δ = rhs, J = ∂_θ vec T_θ(x) ([n·d, p]) by jax.jacobian."""
    params, static = eqx.partition(potential, eqx.is_inexact_array)
    flat, unravel = ravel_pytree(params)

    def outputs(theta):
        return transport(eqx.combine(unravel(theta), static), x).reshape(-1)

    J = np.asarray(jax.jacobian(outputs)(flat))
    A = J.T @ J / x.shape[0] + damping * np.eye(flat.size)
    return np.linalg.solve(A, np.asarray(rhs_flat)), J


@pytest.fixture
def x64():
    with jax.enable_x64(True):
        yield


# (n, widths): p = 13 parameters for widths (3,) in d = 2; n·d = 40 ≥ p takes the Cholesky
# of the p×p system, n·d = 8 < p the Woodbury identity with the (n·d)×(n·d) system.
@pytest.mark.parametrize("n, branch", [(20, "cholesky"), (4, "woodbury")])
def test_gram_solve_dense_and_cg_match_a_direct_solve(x64, n, branch):
    """ "dense" (either branch), "auto" and "cg" against np.linalg.solve of the p×p system.

    Measured relative errors: dense 3e-15, CG 6e-6 (Cholesky case) and 8e-8 (Woodbury case),
    cond(A) ≈ 70. Tolerances: 1e-10 for the direct solves, cond(A) · 1e-5 for CG.
    """
    key = jax.random.key(0)
    d = 2
    phi = ICNN(d, key, widths=(3,), dtype=jnp.float64)
    phi = eqx.tree_at(lambda p: p.out_weight, phi, phi.out_weight + 0.5)  # all weights active
    x = jax.random.normal(jax.random.fold_in(key, 1), (n, d), jnp.float64)
    params, _ = eqx.partition(phi, eqx.is_inexact_array)
    flat, unravel = ravel_pytree(params)
    p = flat.size
    assert (p <= n * d) == (branch == "cholesky")
    rhs_flat = jax.random.normal(jax.random.fold_in(key, 2), (p,), jnp.float64)
    rhs = unravel(rhs_flat)

    expected, J = _reference(phi, x, rhs_flat, DAMPING)
    # the system is not trivially λI: the Gram part dominates the damping
    assert np.linalg.norm(J.T @ J / n, 2) >= 10 * DAMPING

    solve = eqx.filter_jit(gram_solve)  # strings and ints are static under filter_jit
    dense = ravel_pytree(solve(phi, x, rhs, DAMPING, solver="dense"))[0]
    cg = ravel_pytree(solve(phi, x, rhs, DAMPING, solver="cg", cg_maxiter=50 * p))[0]

    scale = np.linalg.norm(expected)
    assert np.linalg.norm(np.asarray(dense) - expected) <= 1e-10 * scale
    # CG stops at a relative residual of 1e-5: error ≤ cond(A) · 1e-5 in the worst case
    cond = np.linalg.cond(J.T @ J / n + DAMPING * np.eye(p))
    assert np.linalg.norm(np.asarray(cg) - expected) <= min(1e-5 * cond, 1e-2) * scale
    # and the residual of the reference solve itself is at round-off
    A = J.T @ J / n + DAMPING * np.eye(p)
    assert np.linalg.norm(A @ expected - np.asarray(rhs_flat)) <= 1e-10 * np.linalg.norm(rhs_flat)
