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

    def hessian(self, x: Array) -> Array:
        """∇²φ(x) for one sample, ``[d, d]`` (forward-over-reverse autodiff; potentials
        with a cheaper closed form override it)."""
        return jax.jacfwd(jax.grad(self))(x)

    def is_feasible(self) -> Array:
        """Whether the constrained parameters satisfy their constraints."""
        return jnp.asarray(True)

    def decayed(self) -> Self:
        """A tree like the potential's parameters, ``True`` at those that weight decay
        shrinks towards 0 (the mask of AdamW, Loshchilov & Hutter, ICLR 2019): those that
        each potential it holds marks (a wrapper around a network decays that network's
        weights), and none of its own; a network marks its layers' weights."""

        def inner(node) -> bool:
            return isinstance(node, Potential) and node is not self

        def mark(node):
            return node.decayed() if inner(node) else False

        return jax.tree_util.tree_map(mark, self, is_leaf=inner)


def decay_mask(potential):
    """:meth:`Potential.decayed` of ``potential``; for a module that is not a
    :class:`Potential`, the marks of the potentials it holds, and nothing else."""
    if isinstance(potential, Potential):
        return potential.decayed()
    return Potential.decayed(potential)


def decays_any(potential) -> bool:
    """Whether weight decay reaches any parameter of ``potential`` (:func:`decay_mask`)."""
    return any(jax.tree_util.tree_leaves(decay_mask(potential)))


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
    """DT(x) = ∇²φ(x) for one sample → ``[d, d]`` (the potential's own
    :meth:`Potential.hessian`: a closed form where it has one, else autodiff)."""
    if isinstance(potential, Potential):
        return potential.hessian(x)
    return jax.jacfwd(jax.grad(potential))(x)


def log_det_hessian(potential: Potential, x: Array) -> Array:
    """log det ∇²φ(x) for one sample, exact (Hessian, then :func:`log_det_psd`: the Hessian of
    a convex φ is symmetric positive semi-definite).

    Returns −inf (or NaN) where the Hessian is singular and NaN where it is not positive
    definite.
    """
    return log_det_psd(hessian(potential, x))


def log_det_psd(a: Array) -> Array:
    """log det A = 2 Σ log L_ii for a symmetric positive definite A = L Lᵀ (Cholesky), NaN
    where A is not positive definite (−inf or NaN where it is singular).

    A is symmetrised first. Its derivative costs a third of :func:`log_det`'s under ``vmap``
    on CPU (256 Hessians of an ICNN at d = 64, value and gradient: 0.34 s against 0.92 s,
    jax 0.10).
    """
    chol = jnp.linalg.cholesky(0.5 * (a + a.T))
    return 2.0 * jnp.sum(jnp.log(jnp.diagonal(chol)))


def log_det(a: Array) -> Array:
    """log det A for one square matrix, −inf where A is singular, NaN where det A < 0.

    From the LU factorisation, like ``jnp.linalg.slogdet``, whose derivative is several
    hundred times slower under ``vmap`` on CPU (256 matrices of size 64: 6.7 s against
    0.05 s here, jax 0.10).
    """
    lu, pivots, _ = jax.lax.linalg.lu(a)
    diag = jnp.diagonal(lu)
    swaps = jnp.sum(pivots != jnp.arange(pivots.shape[0], dtype=pivots.dtype))
    sign = jnp.prod(jnp.sign(diag)) * jnp.where(swaps % 2 == 0, 1.0, -1.0).astype(diag.dtype)
    logabsdet = jnp.sum(jnp.log(jnp.abs(diag)))
    return jnp.where(sign > 0, logabsdet, jnp.where(sign == 0, -jnp.inf, jnp.nan))


def parameter_count(potential: Potential) -> int:
    """Number of trainable scalars."""
    leaves = jax.tree_util.tree_leaves(eqx.filter(potential, eqx.is_inexact_array))
    return int(sum(leaf.size for leaf in leaves))
