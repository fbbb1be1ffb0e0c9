"""Inner solvers of the explicit and implicit schemes: values that minimise an objective."""

from __future__ import annotations

import abc
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import optax

from mongeflow.maps.base import Array, Potential
from mongeflow.schemes.base import Objective, apply_update, feasible, params_of
from mongeflow.schemes.metric import Gram
from mongeflow.settings import Settings, setting


class InnerSolver(Settings):
    """Minimises an :class:`~mongeflow.schemes.base.Objective` over θ, starting at θ_k."""

    @abc.abstractmethod
    def minimise(self, potential: Potential, objective: Objective, key: Array):
        """``(potential, value)``: the (feasible) minimiser found and the objective's last
        value."""


class AdamInner(InnerSolver):
    """K' Adam steps, a fresh batch at each, a fresh Adam state, projection after each
    update: the inner solver of Dumont, Lacombe & Vialard (2026).

    With ``decay`` the rate follows a cosine from ``learning_rate`` to 0 within the solve,
    which removes most of the mini-batch noise of the inner solution.
    """

    steps: int = setting(100, help="inner Adam steps per outer step (K')", static=True, low=1)
    learning_rate: float = setting(0.1, help="inner Adam learning rate", low=0.0, low_open=True)
    decay: bool = setting(
        False, help="cosine decay of the inner rate to 0 within each outer step", static=True
    )
    name: ClassVar[str] = "adam"

    def __check_init__(self):
        if self.steps < 1:
            raise ValueError(f"inner steps must be ≥ 1, got {self.steps}")

    def minimise(self, potential, objective, key):
        rate = (
            optax.cosine_decay_schedule(self.learning_rate, self.steps)
            if self.decay
            else self.learning_rate
        )
        optimizer = optax.adam(rate)

        def inner(carry, key):
            phi, opt_state = carry
            k_batch, k_value = jax.random.split(key)
            batch = objective.draw(k_batch)
            value, grads = eqx.filter_value_and_grad(objective.value)(phi, batch, k_value)
            updates, opt_state = optimizer.update(grads, opt_state, params_of(phi))
            return (apply_update(phi, updates), opt_state), value

        carry = (potential, optimizer.init(params_of(potential)))
        (potential, _), values = jax.lax.scan(inner, carry, jax.random.split(key, self.steps))
        return potential, values[-1]


class LBFGSInner(InnerSolver):
    """L-BFGS with a zoom line search (optax) on one batch of ``batch_factor`` mini-batches.

    The constrained weights are handled by minimising θ ↦ F(feasible(θ)) — an unconstrained
    problem whose value and gradient L-BFGS sees consistently — and returning the feasible
    point at the end. (Projecting between iterations would make L-BFGS reuse a value and a
    gradient taken at another point.) Needs an objective that is its own value.
    """

    steps: int = setting(100, help="L-BFGS iterations per outer step", static=True, low=1)
    batch_factor: int = setting(
        4, help="the L-BFGS batch is this many mini-batches", static=True, low=1
    )
    name: ClassVar[str] = "lbfgs"

    def __check_init__(self):
        if self.steps < 1 or self.batch_factor < 1:
            raise ValueError("L-BFGS steps and batch_factor must be ≥ 1")

    def minimise(self, potential, objective, key):
        if not objective.exact:
            raise ValueError("the L-BFGS inner solver needs an objective that is its own value")
        k_batch, k_value = jax.random.split(key)
        draws = [objective.draw(k) for k in jax.random.split(k_batch, self.batch_factor)]
        batch = jax.tree_util.tree_map(lambda *rows: jnp.concatenate(rows), *draws)
        potential = feasible(potential)
        params, static = eqx.partition(potential, eqx.is_inexact_array)
        fn = lambda p: objective.value(feasible(eqx.combine(p, static)), batch, k_value)
        optimizer = optax.lbfgs()
        value_and_grad = optax.value_and_grad_from_state(fn)

        def inner(carry, _):
            p, opt_state = carry
            value, grad = value_and_grad(p, state=opt_state)
            updates, opt_state = optimizer.update(
                grad, opt_state, p, value=value, grad=grad, value_fn=fn
            )
            return (optax.apply_updates(p, updates), opt_state), value

        (params, _), values = jax.lax.scan(
            inner, (params, optimizer.init(params)), None, length=self.steps
        )
        return feasible(eqx.combine(params, static)), values[-1]


class GaussNewton(InnerSolver):
    """One damped Gauss–Newton step on a least-squares objective (the regression of the
    explicit scheme linearised at θ_k):

        δ = −(G + λI)⁻¹ (1/n) Σ_i J_iᵀ r_i,   r = the residual at θ_k.

    For the explicit scheme started at T_k = T_θk, r = −τ v and δ = τ (G + λI)⁻¹ E[Jᵀ v]:
    the natural-gradient step (Dumont, Lacombe & Vialard 2026, Cor. 3.8).
    """

    gram: Gram = setting(
        default_factory=Gram, help="the damped Gram solve of the step", flatten=True
    )
    name: ClassVar[str] = "gauss-newton"

    def minimise(self, potential, objective, key):
        if objective.residual is None:
            raise ValueError("the Gauss-Newton inner solver needs a least-squares objective")
        k_batch, k_value = jax.random.split(key)
        batch = objective.draw(k_batch)
        r, vjp = eqx.filter_vjp(lambda p: objective.residual(p, batch, k_value), potential)
        (rhs,) = vjp(-r / batch.x.shape[0])
        delta = self.gram.solve(potential, batch.x, params_of(rhs))
        return apply_update(potential, delta), jnp.mean(jnp.sum(r**2, axis=-1))


INNER_SOLVERS: dict[str, InnerSolver] = {
    "adam": AdamInner(),
    "lbfgs": LBFGSInner(),
    "gauss-newton": GaussNewton(),
}
