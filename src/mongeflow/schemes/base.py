"""What every scheme shares: the task it steps on, and the Gram-matrix solves of SPEC §3."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, Literal, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import optax
from jax.flatten_util import ravel_pytree

from mongeflow.maps.base import Array, IdentityOr, Potential, transport


class Task(NamedTuple):
    """What a scheme steps on: a divergence and a mini-batch sampler ``key -> [n, d]``."""

    divergence: Any
    sample: Callable[[Array], Array]


class Scheme(eqx.Module):
    """How θ moves. A scheme is a small immutable value with two methods:

    ``init(potential) -> state`` and
    ``step(potential, state, task, key) -> (potential, state, loss)``,

    both pure, so that a driver can ``jit``, ``lax.scan`` and ``vmap`` them. One call of
    ``step`` is one outer step (for explicit / implicit schemes, one time step τ of the flow).
    """

    default_steps: ClassVar[int] = 1000

    @property
    def seeds_in_parallel(self) -> bool:
        """Whether :func:`~mongeflow.fit.fit` may ``vmap`` this scheme over seeds.

        Schemes that factorise a dense Gram matrix say no: batched over seeds, that
        factorisation is a batched LAPACK call, and two such calls running at once can
        deadlock XLA's CPU thread pool on small machines (jaxlib 0.10, 2 cores). Their seeds
        then run one after another inside the same compiled program.
        """
        return True

    def init(self, potential: Potential) -> Any:
        raise NotImplementedError

    def step(self, potential: Potential, state: Any, task: Task, key: Array):
        raise NotImplementedError

    @property
    def time_step(self) -> float | None:
        """Flow time advanced by one step (τ), when the scheme discretises the flow."""
        return None


def params_of(potential: Potential):
    return eqx.filter(potential, eqx.is_inexact_array)


def loss_and_grad(task: Task, potential: Potential, x: Array, key: Array):
    """(loss, ∇_θ loss) of the task's divergence on the batch ``x``."""
    return eqx.filter_value_and_grad(lambda p: task.divergence.loss(p, x, key))(potential)


def apply_optax(optimizer, potential, grads, opt_state):
    updates, opt_state = optimizer.update(grads, opt_state, params_of(potential))
    return eqx.apply_updates(potential, updates).project(), opt_state


GramSolver = Literal["auto", "dense", "cg"]


def _after(a: Array, b: Array) -> Array:
    """``a``, made to depend on ``b`` so that XLA computes ``b`` first.

    Under ``vmap`` over seeds, the Cholesky factorisation below is a batched LAPACK call that
    splits its batch over XLA's CPU thread pool and waits for the pieces. If it runs at the
    same time as another such call (the LU of the log-det in the loss) and the pool has two
    threads, each waits for the other for ever (jaxlib 0.10, 2-core machine). An optimisation
    barrier does not survive to the CPU runtime's scheduler; a data dependency does. The added
    term is ``min(|Σb|, 0) = 0`` (NaN when ``b`` is not finite, which the caller's finiteness
    guard reports anyway).
    """
    return a + jnp.minimum(jnp.abs(jnp.sum(b)), 0.0).astype(a.dtype)


def gram_solve(
    potential: Potential,
    x: Array,
    rhs,
    damping: float,
    solver: GramSolver = "auto",
    cg_maxiter: int = 100,
):
    """Solve (G + λ I) δ = rhs, G = (1/n) Σ_i J_iᵀ J_i, J_i = ∂_θ T_θ(x_i) (SPEC §3).

    ``rhs`` and the returned δ are pytrees shaped like the potential's parameters.

    ``dense``: forms J ([n·d, p]) and solves exactly, in the smaller of the two spaces
    (Cholesky of G + λI when p ≤ n·d, else the Woodbury identity with J Jᵀ + nλ I).
    ``cg``: matrix-free conjugate gradient, G v by one JVP and one VJP.
    ``auto``: dense when min(p, n·d) ≤ 2048.
    """
    params, static = eqx.partition(potential, eqx.is_inexact_array)
    flat, unravel = ravel_pytree(params)
    rhs_flat, _ = ravel_pytree(rhs)
    n = x.shape[0]
    m = x.size
    p = flat.size

    def outputs(theta):
        return transport(eqx.combine(unravel(theta), static), x).reshape(-1)

    if solver == "auto":
        solver = "dense" if min(p, m) <= 2048 else "cg"
    if solver == "dense":
        J = jax.jacrev(outputs)(flat) if m <= p else jax.jacfwd(outputs)(flat)
        J = _after(J, rhs_flat)
        if p <= m:
            G = J.T @ J / n + damping * jnp.eye(p, dtype=flat.dtype)
            delta = jax.scipy.linalg.cho_solve(jax.scipy.linalg.cho_factor(G), rhs_flat)
        else:
            K = J @ J.T + n * damping * jnp.eye(m, dtype=flat.dtype)
            w = jax.scipy.linalg.cho_solve(jax.scipy.linalg.cho_factor(K), J @ rhs_flat)
            delta = (rhs_flat - J.T @ w) / damping
    elif solver == "cg":
        _, jvp = jax.linearize(outputs, flat)
        vjp = jax.linear_transpose(jvp, flat)

        def matvec(v):
            return vjp(jvp(v))[0] / n + damping * v

        delta, _ = jax.scipy.sparse.linalg.cg(matvec, rhs_flat, maxiter=cg_maxiter)
    else:
        raise ValueError(f"solver must be 'auto', 'dense' or 'cg', got {solver!r}")
    return unravel(delta)


def frozen(potential: Potential) -> Potential:
    """The same potential with gradients stopped (a frozen T_k)."""
    return jax.tree_util.tree_map(
        lambda a: jax.lax.stop_gradient(a) if eqx.is_inexact_array(a) else a, potential
    )


def previous_map(potential: Potential, step: Array, identity_start: bool) -> Potential:
    """The frozen T_k of an outer step: T_0 = id when ``identity_start`` and ``step == 0``."""
    return IdentityOr(frozen(potential), jnp.logical_and(identity_start, step == 0))


def adam_inner_loop(
    potential: Potential, objective, learning_rate: float, steps: int, key, decay: bool = False
):
    """K' Adam steps on ``objective(phi, key)``, a fresh key (so a fresh batch) each step, a
    fresh Adam state, projection after each update (the paper's inner solver). With
    ``decay`` the rate follows a cosine from ``learning_rate`` to 0 within the inner loop.

    Returns the potential and the last inner loss.
    """
    rate = optax.cosine_decay_schedule(learning_rate, steps) if decay else learning_rate
    optimizer = optax.adam(rate)

    def inner(carry, key):
        phi, opt_state = carry
        loss, grads = eqx.filter_value_and_grad(objective)(phi, key)
        phi, opt_state = apply_optax(optimizer, phi, grads, opt_state)
        return (phi, opt_state), loss

    carry = (potential, optimizer.init(params_of(potential)))
    (potential, _), losses = jax.lax.scan(inner, carry, jax.random.split(key, steps))
    return potential, losses[-1]
