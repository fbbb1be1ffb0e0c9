"""Potentials φ and the maps T = ∇φ they define.

A potential is an Equinox module whose ``__call__`` takes one sample ``x: [d]`` and returns
the scalar φ(x). Constrained potentials (the ICNN with clamped weights) implement
:meth:`Potential.project`, the projection back onto their feasible set, which every scheme
applies after each update.
"""

from __future__ import annotations

from typing import Self

import equinox as eqx
import jax
import jax.numpy as jnp

Array = jax.Array


class Potential(eqx.Module):
    """A convex potential φ: [d] -> scalar."""

    def __call__(self, x: Array) -> Array:
        raise NotImplementedError

    def project(self) -> Self:
        """Projection onto the feasible parameter set (identity unless constrained)."""
        return self

    def is_feasible(self) -> Array:
        """Whether the constrained parameters satisfy their constraints."""
        return jnp.asarray(True)


class Identity(Potential):
    """φ(x) = ½|x|², so T = id."""

    def __call__(self, x: Array) -> Array:
        return 0.5 * jnp.sum(x**2)


class IdentityOr(Potential):
    """φ if ``use_identity`` is false, else ½|x|²; ``use_identity`` may be traced.

    Lets a jitted scheme start from T_0 = id (the explicit scheme of Dumont, Lacombe &
    Vialard 2026) and later use the trained map without
    changing the program.
    """

    potential: Potential
    use_identity: Array

    def __call__(self, x: Array) -> Array:
        return jnp.where(self.use_identity, 0.5 * jnp.sum(x**2), self.potential(x))


def transport(potential: Potential, x: Array) -> Array:
    """T(x) = ∇φ(x) for a batch ``x: [n, d]`` → ``[n, d]``."""
    return jax.vmap(jax.grad(potential))(x)


def hessian(potential: Potential, x: Array) -> Array:
    """DT(x) = ∇²φ(x) for one sample (forward-over-reverse) → ``[d, d]``."""
    return jax.jacfwd(jax.grad(potential))(x)


def log_det_hessian(potential: Potential, x: Array) -> Array:
    """log det ∇²φ(x) for one sample, exact (Hessian then slogdet).

    Returns −inf where the Hessian is singular and NaN where it is not positive.
    """
    sign, logabsdet = jnp.linalg.slogdet(hessian(potential, x))
    return jnp.where(sign > 0, logabsdet, jnp.where(sign == 0, -jnp.inf, jnp.nan))


def parameter_count(potential: Potential) -> int:
    """Number of trainable scalars."""
    leaves = jax.tree_util.tree_leaves(eqx.filter(potential, eqx.is_inexact_array))
    return int(sum(leaf.size for leaf in leaves))
