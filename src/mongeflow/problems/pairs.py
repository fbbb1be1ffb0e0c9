"""Two-sample problems with a known Monge map: both sides are given only as samples.

This is how neural optimal-transport solvers are compared (Korotin et al., *Do neural optimal
transport solvers work? A continuous Wasserstein-2 benchmark*, NeurIPS 2021): pairs (μ, ∇ψ#μ)
with ψ convex, so that T* = ∇ψ is known (Brenier 1991), but the solver sees two independent
sample sets and no density. A fraction of each side is held out for the final figures.
"""

from __future__ import annotations

import jax
import numpy as np

from mongeflow.problems.base import (
    EmpiricalSource,
    EmpiricalTarget,
    GaussianMixture,
    Problem,
)
from mongeflow.problems.builtin import dense_psi, gaussian


def _check(dim, n: int, validation: float) -> int:
    d = 2 if dim is None else int(dim)
    if d < 1:
        raise ValueError(f"dim must be ≥ 1, got {d}")
    if int(n) < 2:
        raise ValueError(f"n must be ≥ 2 samples per side, got {n}")
    if not 0.0 <= validation < 0.5:
        raise ValueError(f"validation must be in [0, 0.5), got {validation}")
    return d


def _split(key, x: jax.Array, validation: float) -> tuple[jax.Array, jax.Array | None]:
    n_val = int(round(validation * x.shape[0]))
    if n_val == 0:
        return x, None
    perm = jax.random.permutation(key, x.shape[0])
    return x[perm[n_val:]], x[perm[:n_val]]


def _pair_problem(name, key, x, y, true_map, validation) -> Problem:
    kx, ky = jax.random.split(key)
    x_train, x_val = _split(kx, x, validation)
    y_train, y_val = _split(ky, y, validation)
    return Problem(
        name,
        EmpiricalSource(x_train),
        EmpiricalTarget(y_train),
        true_map,
        validation=x_val,
        validation_target=y_val,
    )


def pair_mixture(dim: int | None = None) -> GaussianMixture:
    """μ of ``dense-pair``: three equally weighted Gaussians N(m_k, 0.5 I) with |m_k| = 3 along
    random directions (fixed), a multimodal source at every d."""
    d = 2 if dim is None else int(dim)
    rng = np.random.default_rng(4000 + d)
    dirs = rng.standard_normal((3, d))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    covs = np.broadcast_to(0.5 * np.eye(d), (3, d, d))
    return GaussianMixture(np.ones(3), 3.0 * dirs, covs)


def dense_pair(
    dim: int | None = None, seed: int = 0, n: int = 10_000, validation: float = 0.1
) -> Problem:
    """Two sample sets with a known map: x ~ μ, a Gaussian mixture (:func:`pair_mixture`), and
    y = ∇ψ(x') for an *independent* x' ~ μ, with ψ the dense strongly convex potential of
    ``dense-potential`` (d random directions, non-linear in every direction). T* = ∇ψ.

    ``n`` samples per side, of which a fraction ``validation`` is held out
    (``Problem.validation`` and ``Problem.validation_target``). The samples keep their
    scale: nothing is standardised. ``seed`` fixes ψ and the samples.
    """
    d = _check(dim, n, validation)
    psi = dense_psi(d, seed)
    mu = pair_mixture(d)
    key = jax.random.key(5000 + seed)
    kx, ky, ks = jax.random.split(key, 3)
    x = mu.sample(kx, int(n))
    y = jax.vmap(psi.grad_psi)(mu.sample(ky, int(n)))
    return _pair_problem("dense-pair", ks, x, y, psi.grad_psi, validation)


def gaussian_pair(
    dim: int | None = None, seed: int = 0, n: int = 10_000, validation: float = 0.1
) -> Problem:
    """Two Gaussian sample sets, x ~ N(m0, Σ0) and y ~ N(m1, Σ1) (those of the ``gaussian``
    problem), whose Monge map is the closed-form Bures map
    T*(x) = m1 + Σ0^{-1/2}(Σ0^{1/2} Σ1 Σ0^{1/2})^{1/2} Σ0^{-1/2} (x − m0)."""
    d = _check(dim, n, validation)
    p = gaussian(d, seed)
    key = jax.random.key(6000 + seed)
    kx, ky, ks = jax.random.split(key, 3)
    x = p.source.sample(kx, int(n))
    y = p.target.sample(ky, int(n))
    return _pair_problem("gaussian-pair", ks, x, y, p.true_map, validation)


__all__ = ["dense_pair", "gaussian_pair", "pair_mixture"]
