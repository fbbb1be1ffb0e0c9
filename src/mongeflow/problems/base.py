"""Sources, targets and problems.

A *source* μ0 is known through samples (a sampler or a data array), sometimes also through
its log-density. A *target* γ is known through its potential V (γ ∝ exp(−V), V convex,
written in JAX), through samples, or both. A :class:`Problem` pairs them, with the true
Monge map when it is known.

Every callable here acts on **one** sample (shape ``[d]``); callers ``vmap``.
"""

from __future__ import annotations

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array


class Source(eqx.Module):
    """A source distribution μ0 on R^d.

    Subclasses implement :meth:`sample`; those that know their density also implement
    :meth:`log_prob` and set ``has_log_prob = True``.
    """

    dim: eqx.AbstractVar[int]

    def sample(self, key: Array, n: int) -> Array:
        """Draw ``n`` samples, shape ``[n, d]``."""
        raise NotImplementedError

    @property
    def has_log_prob(self) -> bool:
        return False

    def log_prob(self, x: Array) -> Array:
        """log ρ0(x) for one sample ``x: [d]``."""
        raise ValueError(f"{type(self).__name__} has no known log-density")

    def score(self, x: Array) -> Array:
        """∇ log ρ0(x) for one sample ``x: [d]`` (autodiff of :meth:`log_prob`)."""
        return jax.grad(self.log_prob)(x)

    @property
    def has_true_pairs(self) -> bool:
        """Whether :attr:`sample_with_map` draws exact pairs (x, T*(x)): true for a source
        that defines it (one that knows the true map, e.g. x = ∇ψ(y) for y ~ γ)."""
        return type(self).sample_with_map is not Source.sample_with_map

    @property
    def sample_with_map(self) -> Callable[[Array, int], tuple[Array, Array]]:
        """``(key, n) -> (x, T*(x))``: ``n`` exact pairs, each ``[n, d]``, for a source that
        knows the true map T* (:attr:`has_true_pairs`); such a source defines it as a method.

        Raises:
            AttributeError: the source draws no pairs (so ``hasattr(source,
                "sample_with_map")`` is :attr:`has_true_pairs`).
        """
        raise AttributeError(
            f"{type(self).__name__} draws no exact pairs (x, T*(x)): it does not know the "
            "true map (see has_true_pairs)"
        )


class Target(eqx.Module):
    """A target γ on R^d, known by its potential V (γ ∝ exp(−V)), by samples, or both.

    ``has_potential`` says whether :meth:`potential` is available (divergences such as the
    KL need it); ``can_sample`` whether :meth:`sample` is (sample-based divergences and the
    energy distance need it).
    """

    dim: eqx.AbstractVar[int]

    @property
    def has_potential(self) -> bool:
        return False

    def potential(self, y: Array) -> Array:
        """V(y) for one sample ``y: [d]``."""
        raise ValueError(f"{type(self).__name__} is known by samples only: it has no potential V")

    @property
    def can_sample(self) -> bool:
        return False

    def sample(self, key: Array, n: int) -> Array:
        raise ValueError(f"{type(self).__name__} cannot be sampled")

    @property
    def rows(self) -> Array | None:
        """The finite set of rows ``[N, d]`` that :meth:`sample` draws from, or ``None`` when
        it draws fresh samples (or none)."""
        return None

    @property
    def log_normaliser(self) -> Array | None:
        """log Z with γ = exp(−V) / Z, or ``None`` when unknown."""
        return None

    @property
    def convexity(self) -> float | None:
        """λ such that ∇²V ⪰ λ I, when known."""
        return None

    def log_prob(self, y: Array) -> Array:
        log_z = self.log_normaliser
        if log_z is None:
            raise ValueError("the target's normalising constant is unknown")
        return -self.potential(y) - log_z


class SamplerSource(Source):
    """A source given by a sampler ``(key, n) -> [n, d]``, optionally with its log-density.

    Example:
        >>> import jax
        >>> src = SamplerSource(lambda key, n: jax.random.normal(key, (n, 3)), dim=3)
        >>> src.sample(jax.random.key(0), 5).shape
        (5, 3)
    """

    sampler: Callable[[Array, int], Array] = eqx.field(static=True)
    dim: int = eqx.field(static=True)
    log_density: Callable[[Array], Array] | None = eqx.field(static=True)

    def __init__(self, sampler, dim: int, log_density=None):
        self.sampler, self.dim, self.log_density = sampler, int(dim), log_density

    def sample(self, key: Array, n: int) -> Array:
        return self.sampler(key, n)

    @property
    def has_log_prob(self) -> bool:
        return self.log_density is not None

    def log_prob(self, x: Array) -> Array:
        if self.log_density is None:
            return super().log_prob(x)
        return self.log_density(x)


class EmpiricalSource(Source):
    """A source known by a data array ``[N, d]``; mini-batches are drawn with replacement."""

    data: Array
    dim: int = eqx.field(static=True)

    def __init__(self, data):
        data = jnp.asarray(data)
        if data.ndim != 2:
            raise ValueError(f"data must have shape [N, d], got shape {data.shape}")
        if data.shape[0] == 0:
            raise ValueError("data is empty")
        self.data = data
        self.dim = int(data.shape[1])

    def sample(self, key: Array, n: int) -> Array:
        idx = jax.random.randint(key, (n,), 0, self.data.shape[0])
        return self.data[idx]


def _as_cov(cov, dim: int) -> Array:
    cov = jnp.asarray(cov)
    if cov.ndim == 0:
        return cov * jnp.eye(dim)
    if cov.ndim == 1:
        return jnp.diag(cov)
    return cov


class Gaussian(Source, Target):
    """N(mean, cov): usable both as a source and as a target.

    As a target, V(y) = ½ (y − m)ᵀ Σ⁻¹ (y − m) and log Z = ½ (d log 2π + log det Σ).
    """

    mean: Array
    cov: Array
    chol: Array
    precision: Array
    dim: int = eqx.field(static=True)

    def __init__(self, mean, cov=1.0):
        self.mean = jnp.atleast_1d(jnp.asarray(mean, dtype=float))
        self.dim = int(self.mean.shape[0])
        cov = _as_cov(jnp.asarray(cov, dtype=float), self.dim)
        if cov.shape != (self.dim, self.dim):
            raise ValueError(
                f"covariance must have shape ({self.dim}, {self.dim}), got {cov.shape}"
            )
        self.cov = cov
        # factorised once here, not at every evaluation inside a training step
        self.chol = jnp.linalg.cholesky(cov)
        self.precision = jnp.linalg.inv(cov)

    @classmethod
    def standard(cls, dim: int) -> Gaussian:
        return cls(jnp.zeros(dim), jnp.eye(dim))

    @property
    def _chol(self) -> Array:
        return self.chol

    def sample(self, key: Array, n: int) -> Array:
        z = jax.random.normal(key, (n, self.dim), dtype=self.mean.dtype)
        return self.mean[None, :] + z @ self._chol.T

    @property
    def can_sample(self) -> bool:
        return True

    @property
    def has_log_prob(self) -> bool:
        return True

    @property
    def has_potential(self) -> bool:
        return True

    def potential(self, y: Array) -> Array:
        r = y - self.mean
        return 0.5 * r @ (self.precision @ r)

    @property
    def log_normaliser(self) -> Array:
        logdet = 2.0 * jnp.sum(jnp.log(jnp.diag(self.chol)))
        return 0.5 * (self.dim * jnp.log(2 * jnp.pi) + logdet)

    def log_prob(self, x: Array) -> Array:
        return -self.potential(x) - self.log_normaliser

    @property
    def convexity(self) -> float:
        return float(1.0 / np.max(np.linalg.eigvalsh(np.asarray(self.cov))))


class GaussianMixture(Source):
    """Mixture Σ_k w_k N(m_k, Σ_k), with its log-density."""

    weights: Array
    means: Array
    covs: Array
    dim: int = eqx.field(static=True)

    def __init__(self, weights, means, covs):
        self.weights = jnp.asarray(weights, dtype=float) / jnp.sum(jnp.asarray(weights))
        self.means = jnp.asarray(means, dtype=float)
        self.covs = jnp.asarray(covs, dtype=float)
        k, d = self.means.shape
        if self.covs.shape != (k, d, d) or self.weights.shape != (k,):
            raise ValueError("weights [k], means [k, d] and covs [k, d, d] do not agree")
        self.dim = int(d)

    @property
    def has_log_prob(self) -> bool:
        return True

    def sample(self, key: Array, n: int) -> Array:
        k_comp, k_noise = jax.random.split(key)
        comp = jax.random.categorical(k_comp, jnp.log(self.weights), shape=(n,))
        chol = jnp.linalg.cholesky(self.covs)
        z = jax.random.normal(k_noise, (n, self.dim), dtype=self.means.dtype)
        return self.means[comp] + jnp.einsum("nij,nj->ni", chol[comp], z)

    def log_prob(self, x: Array) -> Array:
        def one(m, c):
            r = x - m
            _, logdet = jnp.linalg.slogdet(c)
            return -0.5 * (r @ jnp.linalg.solve(c, r) + logdet + self.dim * jnp.log(2 * jnp.pi))

        comps = jax.vmap(one)(self.means, self.covs)
        return jax.scipy.special.logsumexp(comps + jnp.log(self.weights))


class PotentialTarget(Target):
    """γ ∝ exp(−V) for a user potential ``V: [d] -> scalar`` (V convex).

    Args:
        potential_fn: V, written in JAX, acting on one sample.
        dim: the dimension d.
        log_normaliser: log Z when known (enables true KL values and densities).
        sampler: optional ``(key, n) -> [n, d]`` sampler of γ (enables energy distances).
        convexity: optional λ with ∇²V ⪰ λ I.
        origin: where V came from, as ``(file, name)`` when it was read from a Python file
            (lets a saved map rebuild its target); ``None`` for a function given in Python.
    """

    potential_fn: Callable[[Array], Array] = eqx.field(static=True)
    dim: int = eqx.field(static=True)
    log_z: float | None = eqx.field(static=True)
    sampler: Callable[[Array, int], Array] | None = eqx.field(static=True)
    lam: float | None = eqx.field(static=True)
    origin: tuple[str, str] | None = eqx.field(static=True)

    def __init__(
        self,
        potential_fn,
        dim: int,
        log_normaliser=None,
        sampler=None,
        convexity=None,
        origin: tuple[str, str] | None = None,
    ):
        self.potential_fn, self.dim = potential_fn, int(dim)
        self.log_z, self.sampler, self.lam = log_normaliser, sampler, convexity
        self.origin = None if origin is None else (str(origin[0]), str(origin[1]))

    @property
    def has_potential(self) -> bool:
        return True

    def potential(self, y: Array) -> Array:
        return self.potential_fn(y)

    @property
    def can_sample(self) -> bool:
        return self.sampler is not None

    def sample(self, key: Array, n: int) -> Array:
        if self.sampler is None:
            return super().sample(key, n)
        return self.sampler(key, n)

    @property
    def log_normaliser(self):
        return self.log_z

    @property
    def convexity(self):
        return self.lam


class EmpiricalTarget(Target):
    """A target known only by samples ``[N, d]``; batches are drawn with replacement."""

    data: Array
    dim: int = eqx.field(static=True)

    def __init__(self, data):
        data = jnp.asarray(data)
        if data.ndim != 2 or data.shape[0] == 0:
            raise ValueError(f"target samples must have shape [N, d], N ≥ 1, got {data.shape}")
        self.data = data
        self.dim = int(data.shape[1])

    @property
    def can_sample(self) -> bool:
        return True

    def sample(self, key: Array, n: int) -> Array:
        idx = jax.random.randint(key, (n,), 0, self.data.shape[0])
        return self.data[idx]

    @property
    def rows(self) -> Array:
        return self.data


class SamplerTarget(Target):
    """A target known only through a sampler ``(key, n) -> [n, d]`` that draws fresh samples
    (for instance y = T(x) with x drawn afresh from a source): no potential.

    Example:
        >>> import jax
        >>> tgt = SamplerTarget(lambda key, n: 2.0 * jax.random.normal(key, (n, 3)), dim=3)
        >>> tgt.sample(jax.random.key(0), 5).shape
        (5, 3)
    """

    sampler: Callable[[Array, int], Array] = eqx.field(static=True)
    dim: int = eqx.field(static=True)

    def __init__(self, sampler, dim: int):
        self.sampler, self.dim = sampler, int(dim)

    @property
    def can_sample(self) -> bool:
        return True

    def sample(self, key: Array, n: int) -> Array:
        return self.sampler(key, n)


class Problem(eqx.Module):
    """What is solved: a source, a target and, when known, the true Monge map.

    A problem built from data may be posed in standardised coordinates z = (x − shift)/scale
    (one overall scale, which keeps a Brenier map a Brenier map); a map learnt on it is
    reported in the data's units x (see :class:`~mongeflow.maps.MongeMap`). A target known
    by samples is then standardised too, with the same scale and its own mean
    (``target_shift``): w = (y − target_shift)/scale. The three make up the problem's
    standardiser (:meth:`mongeflow.problems.standardise.Standardiser.posed`; see
    :func:`~mongeflow.problems.standardise.standardize`).

    Attributes:
        name: a short label.
        source: the source μ0 (in standardised coordinates when ``shift`` is set).
        target: the target γ.
        true_map: T*: [d] -> [d] for one sample, or ``None``.
        shift: the data's mean m ``[d]``, or ``None`` (no standardisation).
        scale: the data's overall scale s, or a tuple of d scales, one per coordinate
            (``per_feature`` standardisation; the map is then optimal for the rescaled
            cost, see :class:`~mongeflow.maps.MongeMap`).
        validation: held-out source samples ``[n_val, d]`` (in the problem's coordinates),
            never trained on: the metrics, the choice of the best map and early stopping
            use them. ``None`` when the source can be sampled afresh.
        validation_target: held-out target samples ``[m_val, d]`` for a target known by
            samples (in the problem's coordinates), or ``None``.
        target_shift: the target samples' mean m1 ``[d]`` when the target is posed in
            standardised coordinates w = (y − m1)/scale too (a target known by samples), or
            ``None``: the target, ``validation_target`` and ``true_map``'s values are then in
            the target's own units.
    """

    name: str = eqx.field(static=True)
    source: Source
    target: Target
    true_map: Callable[[Array], Array] | None = None
    shift: Array | None = None
    scale: float | tuple[float, ...] = eqx.field(static=True, default=1.0)
    validation: Array | None = None
    validation_target: Array | None = None
    target_shift: Array | None = None

    def __check_init__(self):
        if self.source.dim != self.target.dim:
            raise ValueError(
                f"source dimension {self.source.dim} differs from target dimension "
                f"{self.target.dim}"
            )
        if self.target_shift is not None and self.shift is None:
            raise ValueError("target_shift is set but shift is not: standardise both sides")
        if isinstance(self.scale, tuple) and len(self.scale) != self.source.dim:
            raise ValueError(
                f"{len(self.scale)} per-coordinate scales for dimension {self.source.dim}"
            )

    @property
    def dim(self) -> int:
        return self.source.dim

    @property
    def target_standardized(self) -> bool:
        """Whether the target is posed in standardised coordinates w = (y − m1)/s too."""
        return self.target_shift is not None

    @property
    def per_feature(self) -> bool:
        """Whether the problem was standardised with one scale per coordinate."""
        return isinstance(self.scale, tuple)

    def training_sizes(self) -> tuple[int | None, int | None]:
        """The numbers of training rows of the source and of the target (those left after
        the validation split), each ``None`` when that side is not a fixed sample."""
        n = self.source.data.shape[0] if isinstance(self.source, EmpiricalSource) else None
        m = self.target.data.shape[0] if isinstance(self.target, EmpiricalTarget) else None
        return (None if n is None else int(n)), (None if m is None else int(m))


__all__ = [
    "EmpiricalSource",
    "EmpiricalTarget",
    "Gaussian",
    "GaussianMixture",
    "PotentialTarget",
    "Problem",
    "SamplerSource",
    "SamplerTarget",
    "Source",
    "Target",
]
