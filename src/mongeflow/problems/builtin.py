"""Built-in problems: ``paper-gmm`` (the experiment of Dumont, Lacombe & Vialard 2026),
``gaussian`` (closed-form Bures map), ``known-potential`` (T* = (∇ψ)⁻¹ known exactly) and
``dense-potential`` (the same with ψ non-linear in every direction, at any d)."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from mongeflow.problems.base import Array, Gaussian, GaussianMixture, Problem, Source
from mongeflow.problems.gaussian import bures_map


def paper_gmm(dim: int | None = None) -> Problem:
    """The experiment of Dumont, Lacombe & Vialard (2026), §5 of the paper.

    Source: 2-D mixture of 4 Gaussians, weights (0.3, 0.2, 0.3, 0.2), means (−2,−2), (−1,2),
    (2,−3), (2,2); target N(0, I₂). The Monge map is not known in closed form.
    """
    if dim not in (None, 2):
        raise ValueError(f"paper-gmm is 2-dimensional; got dim={dim}")
    source = GaussianMixture(
        weights=[0.3, 0.2, 0.3, 0.2],
        means=[[-2.0, -2.0], [-1.0, 2.0], [2.0, -3.0], [2.0, 2.0]],
        covs=[
            [[0.10, 0.06], [0.06, 0.10]],
            [[0.10, 0.01], [0.01, 0.50]],
            [[0.10, 0.03], [0.03, 0.10]],
            [[0.10, 0.00], [0.00, 0.10]],
        ],
    )
    return Problem("paper-gmm", source, Gaussian.standard(2))


def _random_spd(rng: np.random.Generator, d: int, low: float, high: float) -> np.ndarray:
    Q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    eig = np.exp(rng.uniform(np.log(low), np.log(high), size=d))
    return (Q * eig) @ Q.T


class AffineMap(eqx.Module):
    """x ↦ m1 + A (x − m0), for one sample."""

    A: Array
    m0: Array
    m1: Array

    def __call__(self, x: Array) -> Array:
        return self.m1 + self.A @ (x - self.m0)


def gaussian(dim: int | None = None, seed: int = 0) -> Problem:
    """N(m0, Σ0) → N(m1, Σ1) with non-isotropic covariances and the closed-form Bures map.

    Σ0 has eigenvalues log-uniform in [0.25, 4], Σ1 in [0.5, 2] (so V is 0.5-convex), random
    eigenvectors and means; everything is fixed by ``seed`` so the problem is reproducible.
    """
    d = 2 if dim is None else int(dim)
    if d < 1:
        raise ValueError(f"dim must be ≥ 1, got {d}")
    rng = np.random.default_rng(1000 + seed)
    cov0 = _random_spd(rng, d, 0.25, 4.0)
    cov1 = _random_spd(rng, d, 0.5, 2.0)
    m0 = rng.standard_normal(d)
    m1 = 0.5 * rng.standard_normal(d)
    A = bures_map(cov0, cov1)
    true_map = AffineMap(jnp.asarray(A), jnp.asarray(m0), jnp.asarray(m1))
    return Problem("gaussian", Gaussian(m0, cov0), Gaussian(m1, cov1), true_map)


class KnownPotentialSource(Source):
    """μ0 = (∇ψ)#γ for a strongly convex ψ, so that T* = (∇ψ)⁻¹ is known exactly
    (the construction of Korotin et al. 2021's Wasserstein-2 benchmark).

    ψ(y) = ½ yᵀ B y + aᵀy + Σ_k (c / s²) log cosh(s u_kᵀ y + b_k), whose gradient
    ∇ψ(y) = B y + a + Σ_k (c / s) tanh(s u_kᵀ y + b_k) u_k stretches space across the hyperplanes
    u_kᵀ y = −b_k / s: the source has a low-density valley across each of them, a clearly
    non-Gaussian shape. ∇²ψ = B + Σ_k c sech²(·) u_k u_kᵀ, between B and B + c Σ u_k u_kᵀ.
    """

    target: Gaussian
    B: Array
    U: Array  # [K, d] unit directions
    b: Array  # [K]
    c: float = eqx.field(static=True)
    s: float = eqx.field(static=True)
    dim: int = eqx.field(static=True)
    newton_steps: int = eqx.field(static=True, default=30)
    offset: Array | None = None  # a, the linear term aᵀy of ψ (moves the source by a)

    def _offset(self) -> Array | float:
        return 0.0 if self.offset is None else self.offset

    def grad_psi(self, y: Array) -> Array:
        z = self.s * (self.U @ y) + self.b
        return self.B @ y + (self.c / self.s) * (jnp.tanh(z) @ self.U) + self._offset()

    def hess_psi(self, y: Array) -> Array:
        z = self.s * (self.U @ y) + self.b
        w = self.c / jnp.cosh(z) ** 2
        return self.B + (self.U.T * w[None, :]) @ self.U

    def psi(self, y: Array) -> Array:
        z = self.s * (self.U @ y) + self.b
        logcosh = jnp.logaddexp(z, -z) - jnp.log(2.0)
        quad = 0.5 * y @ self.B @ y + jnp.sum(self._offset() * y)
        return quad + (self.c / self.s**2) * jnp.sum(logcosh)

    def sample_with_map(self, key: Array, n: int) -> tuple[Array, Array]:
        """Pairs ``(x, T*(x))``: y ~ γ and x = ∇ψ(y), each ``[n, d]``."""
        y = self.target.sample(key, n)
        return jax.vmap(self.grad_psi)(y), y

    def sample(self, key: Array, n: int) -> Array:
        return self.sample_with_map(key, n)[0]

    def inverse(self, x: Array) -> Array:
        """T*(x) = (∇ψ)⁻¹(x): safeguarded Newton on ∇ψ(y) = x, derivative by implicit
        differentiation (dT* = (∇²ψ)⁻¹ dx)."""
        return _newton_inverse(self, x)

    @property
    def has_log_prob(self) -> bool:
        return True

    def log_prob(self, x: Array) -> Array:
        """log ρ0(x) = log γ(y) − log det ∇²ψ(y) at y = T*(x)."""
        y = self.inverse(x)
        _, logdet = jnp.linalg.slogdet(self.hess_psi(y))
        return self.target.log_prob(y) - logdet


@jax.custom_jvp
def _newton_inverse(src: KnownPotentialSource, x: Array) -> Array:
    y0 = jnp.linalg.solve(src.B, x - src._offset())

    residual = lambda y: jnp.sum((src.grad_psi(y) - x) ** 2)

    def body(y, _):
        step = jnp.linalg.solve(src.hess_psi(y), src.grad_psi(y) - x)
        cands = jnp.stack([y - a * step for a in (1.0, 0.5, 0.25, 0.125, 0.0)])
        return cands[jnp.argmin(jax.vmap(residual)(cands))], None

    y, _ = jax.lax.scan(body, y0, None, length=src.newton_steps)
    return y


@_newton_inverse.defjvp
def _newton_inverse_jvp(primals, tangents):
    src, x = primals
    _, dx = tangents
    y = _newton_inverse(src, x)
    return y, jnp.linalg.solve(src.hess_psi(y), dx)


def known_potential(dim: int | None = None, seed: int = 0) -> Problem:
    """Source (∇ψ)#N(0, I) for a fixed strongly convex ψ; T* = (∇ψ)⁻¹ exactly.

    ψ uses K = min(d, 4) random directions, c = 1.5, s = 2 and B with eigenvalues
    log-uniform in [0.6, 1.6]; fixed by ``seed``.
    """
    d = 2 if dim is None else int(dim)
    if d < 1:
        raise ValueError(f"dim must be ≥ 1, got {d}")
    rng = np.random.default_rng(2000 + seed)
    k = min(d, 4)
    U = rng.standard_normal((k, d))
    U /= np.linalg.norm(U, axis=1, keepdims=True)
    B = _random_spd(rng, d, 0.6, 1.6)
    b = rng.uniform(-1.0, 1.0, size=k)
    target = Gaussian.standard(d)
    source = KnownPotentialSource(
        target=target, B=jnp.asarray(B), U=jnp.asarray(U), b=jnp.asarray(b), c=1.5, s=2.0, dim=d
    )
    return Problem("known-potential", source, target, source.inverse)


def dense_potential(dim: int | None = None, seed: int = 0) -> Problem:
    """A hard known-map problem at any d: source (∇ψ)#N(0, I), target N(0, I), T* = (∇ψ)⁻¹.

    ψ(y) = ½ yᵀ B y + aᵀy + Σ_{k=1}^{d} (c / s²) log cosh(s u_kᵀ y + b_k) with d random unit
    directions u_k (they span R^d, so ψ is non-linear in every direction, unlike
    ``known-potential`` whose min(d, 4) directions leave it nearly Gaussian at large d),
    c = 6, s = 2, b_k uniform in [−1, 1], B with eigenvalues log-uniform in [0.5, 2] and an
    offset a ~ N(0, 4 I). ∇²ψ lies between B and B + 6 Σ u_k u_kᵀ: ψ is strongly convex and
    T* is Lipschitz. The samples keep the scale ψ gives them (about 4 per coordinate, mean
    norm about 2√d): nothing is standardised.

    Calibrated so that the linear (Bures) map is clearly wrong at every d: its L2-UVP is
    7.5–8.5 % at d = 2, 8, 16, 32 and 64 (5 000 held-out pairs), as in the random-ICNN pairs of
    Korotin et al. (2021)'s Wasserstein-2 benchmark, whose linear baselines are a few percent.
    """
    d = 2 if dim is None else int(dim)
    if d < 1:
        raise ValueError(f"dim must be ≥ 1, got {d}")
    source = dense_psi(d, seed)
    return Problem("dense-potential", source, source.target, source.inverse)


def dense_psi(dim: int, seed: int = 0) -> KnownPotentialSource:
    """The dense strongly convex ψ of ``dense-potential`` (and ``dense-pair``), fixed by
    ``seed``, as the source (∇ψ)#N(0, I) that carries it (``grad_psi``, ``hess_psi``)."""
    d = int(dim)
    rng = np.random.default_rng(3000 + seed)
    U = rng.standard_normal((d, d))
    U /= np.linalg.norm(U, axis=1, keepdims=True)
    B = _random_spd(rng, d, 0.5, 2.0)
    b = rng.uniform(-1.0, 1.0, size=d)
    offset = 2.0 * rng.standard_normal(d)
    return KnownPotentialSource(
        target=Gaussian.standard(d),
        B=jnp.asarray(B),
        U=jnp.asarray(U),
        b=jnp.asarray(b),
        c=6.0,
        s=2.0,
        dim=d,
        offset=jnp.asarray(offset),
    )
