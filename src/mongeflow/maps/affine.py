"""Affine maps: φ(x) = ½ xᵀ A x + bᵀ x with A symmetric positive definite."""

from __future__ import annotations

import equinox as eqx
import jax  # noqa: F401
import jax.numpy as jnp
import numpy as np

from mongeflow.maps.base import Array, Potential


class AffinePotential(Potential):
    """φ(x) = ½ xᵀ A x + bᵀ x, A = L Lᵀ with L lower triangular (so A ≻ 0 while diag L ≠ 0).

    T(x) = A x + b is exact for Gaussian → Gaussian problems (the Bures map is affine).
    Parameters: the d(d+1)/2 entries of L and b.

    Args:
        dim: dimension d.
        A: initial matrix (symmetric positive definite; default I, i.e. T = id).
        b: initial offset (default 0).

    Example:
        >>> import jax.numpy as jnp
        >>> phi = AffinePotential(2, A=2 * jnp.eye(2))
        >>> phi.A
        Array([[2., 0.],
               [0., 2.]], dtype=float32)
    """

    chol: Array  # the d(d+1)/2 lower-triangular entries of L
    b: Array
    dim: int = eqx.field(static=True)

    def __init__(self, dim: int, A=None, b=None, dtype=None):
        dtype = dtype or jnp.zeros(()).dtype
        self.dim = int(dim)
        A = np.eye(dim) if A is None else np.asarray(A, dtype=np.float64)
        if A.shape != (dim, dim):
            raise ValueError(f"A must have shape ({dim}, {dim}), got {A.shape}")
        L = np.linalg.cholesky(0.5 * (A + A.T))
        rows, cols = np.tril_indices(dim)
        self.chol = jnp.asarray(L[rows, cols], dtype)
        self.b = jnp.zeros(dim, dtype) if b is None else jnp.asarray(b, dtype)

    @property
    def L(self) -> Array:
        rows, cols = np.tril_indices(self.dim)
        return jnp.zeros((self.dim, self.dim), self.chol.dtype).at[rows, cols].set(self.chol)

    @property
    def A(self) -> Array:
        L = self.L
        return L @ L.T

    def __call__(self, x: Array) -> Array:
        Lx = self.L.T @ x
        return 0.5 * Lx @ Lx + self.b @ x
