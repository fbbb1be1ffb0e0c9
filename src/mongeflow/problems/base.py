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
    (``target_shift``): w = (y − target_shift)/scale (see :func:`standardize`).

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


class StandardizedSource(Source):
    """μ0 seen in standardised coordinates z = (x − m)/s: the law of (X − m)/s, X ~ ``inner``.

    s is one overall scale or a tuple of one per coordinate. Its log-density is
    log ρ0(m + s z) + Σ_i log s_i, and when ``inner`` draws exact pairs
    (x, T*(x)) (``sample_with_map``), so does this source, as (z, T*(x)), or as
    (z, (T*(x) − m1)/s) when the target is standardised too (``target_shift`` = m1).
    """

    inner: Source
    shift: Array
    scale: float | tuple[float, ...] = eqx.field(static=True)
    dim: int = eqx.field(static=True)
    target_shift: Array | None = None

    def __init__(self, inner: Source, shift, scale, target_shift=None):
        self.inner, self.dim = inner, inner.dim
        self.shift, self.scale = jnp.asarray(shift), _static_scale(scale)
        self.target_shift = None if target_shift is None else jnp.asarray(target_shift)

    def sample(self, key: Array, n: int) -> Array:
        return (self.inner.sample(key, n) - self.shift[None, :]) / scale_rows(self.scale)

    @property
    def has_log_prob(self) -> bool:
        return self.inner.has_log_prob

    def log_prob(self, z: Array) -> Array:
        s = jnp.asarray(self.scale)
        return self.inner.log_prob(self.shift + s * z) + log_scale_sum(s, self.dim)

    def __getattr__(self, name):
        if name == "sample_with_map" and hasattr(self.inner, "sample_with_map"):

            def sample_with_map(key: Array, n: int) -> tuple[Array, Array]:
                x, y = self.inner.sample_with_map(key, n)
                s = scale_rows(self.scale)
                if self.target_shift is not None:
                    y = (y - self.target_shift[None, :]) / s
                return (x - self.shift[None, :]) / s, y

            return sample_with_map
        raise AttributeError(name)


class _InUnits(eqx.Module):
    """z ↦ T*(m + s z): a map of the data's units seen from standardised coordinates, or
    z ↦ (T*(m + s z) − m1)/s when the target is standardised too (``target_shift`` = m1)."""

    true_map: Callable[[Array], Array]
    shift: Array
    scale: float | tuple[float, ...] = eqx.field(static=True)
    target_shift: Array | None = None

    def __call__(self, z: Array) -> Array:
        s = jnp.asarray(self.scale)
        y = self.true_map(self.shift + s * z)
        if self.target_shift is None:
            return y
        return (y - self.target_shift) / s


def scale_rows(scale, dtype=None) -> Array:
    """A scale ready to divide or multiply rows ``[n, d]``: a scalar array for one overall
    scale, shape ``[1, d]`` for one scale per coordinate."""
    s = jnp.asarray(scale, dtype)
    return s if s.ndim == 0 else s[None, :]


def log_scale_sum(scale, dim: int) -> Array:
    """Σ_j log s_j over d coordinates: d log s for one overall scale."""
    return jnp.sum(jnp.broadcast_to(jnp.log(jnp.asarray(scale)), (dim,)))


def scale_from_squares(squares, per_feature: bool) -> float | tuple[float, ...]:
    """The standardisation scale from the per-coordinate mean squared deviations: one
    overall s = sqrt(mean_j squares_j), or, ``per_feature``, s_j = sqrt(squares_j)."""
    squares = np.asarray(squares, dtype=np.float64)
    return _static_scale(np.sqrt(squares if per_feature else np.mean(squares)))


def _static_scale(scale) -> float | tuple[float, ...]:
    """A scale as a hashable static value: a float, or a tuple of floats (one per coordinate)."""
    arr = np.asarray(scale, dtype=np.float64)
    return float(arr) if arr.ndim == 0 else tuple(float(v) for v in arr)


def _mean_square_columns(rows: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """mean_i (r_ij − centre_j)², one value per column j."""
    return np.mean((rows - centre[None, :]) ** 2, axis=0)


def standardize(
    problem: Problem, key: Array | None = None, n: int = 10_000, *, per_feature: bool = False
) -> Problem:
    """``problem`` posed in standardised coordinates, with one overall scale s.

    - A target known by a potential V (or by a sampler): only the source is standardised,
      z = (x − m)/s, with m the source's mean and s = sqrt(mean |x − m|² / d); the target
      stays in its own units and the learnt φ maps z to them: T(x) = ∇φ((x − m)/s).
    - A target known by samples (:class:`EmpiricalTarget`): both sides, with the same scale
      and each its own mean, z = (x − m0)/s and w = (y − m1)/s, m0 and m1 the two sides'
      means and s² = ½ (mean |x − m0|² + mean |y − m1|²) / d (each side weighing the same,
      whatever its size); the held-out rows (``validation``, ``validation_target``) and
      the true map (z ↦ (T*(m0 + s z) − m1)/s) are transformed alike. The learnt φ maps z to
      w, so T(x) = m1 + s ∇φ((x − m0)/s), the gradient of the convex
      Φ(x) = s² φ((x − m0)/s) + m1ᵀx: still a Brenier map. Centring each side on its own
      mean, rather than both on one common point, makes the fit blind to a translation of
      either side (the Monge map of μ0 → γ(· − b) is T + b): with one common centre, a
      target moved far away would shrink both clouds to specks of the unit scale the
      networks and rates are tuned for.

    Statistics are taken over every training row of an :class:`EmpiricalSource` /
    :class:`EmpiricalTarget` (once), else over ``n`` samples drawn with ``key``. One scale
    for every coordinate keeps a Brenier map a Brenier map; the map learnt in these
    coordinates is reported in the data's units through ``shift``, ``scale`` and
    ``target_shift`` (see :class:`~mongeflow.maps.MongeMap`). A problem that is already
    standardised comes back unchanged.

    With ``per_feature``, s is one scale per coordinate instead, s_j² = mean (x_j − m_j)²
    (or the two sides' average, for a target known by samples): every feature then weighs
    alike, and the learnt map is the Brenier map from the rescaled source (to a target known
    by samples rescaled alike: optimal for the rescaled cost Σ_j (x_j − y_j)²/s_j²), not the
    one for the squared distance in the data's units (see :class:`~mongeflow.maps.MongeMap`).

    Raises:
        ValueError: the samples have no spread (s = 0; with ``per_feature``, in some
            coordinate).
    """
    if problem.shift is not None:
        return problem
    key = jax.random.key(2024) if key is None else key
    if isinstance(problem.source, EmpiricalSource):  # every row, once
        x = np.asarray(problem.source.data, dtype=np.float64)
    else:
        x = np.asarray(problem.source.sample(key, n), dtype=np.float64)
    shift = x.mean(axis=0)
    both = isinstance(problem.target, EmpiricalTarget)
    squares = _mean_square_columns(x, shift)
    if both:
        y = np.asarray(problem.target.data, dtype=np.float64)
        target_shift = y.mean(axis=0)
        squares = 0.5 * (squares + _mean_square_columns(y, target_shift))
    scale = np.asarray(scale_from_squares(squares, per_feature))
    if not np.all(np.isfinite(scale)) or not np.all(scale > 0):
        sides = "its source and target have" if both else "its source has"
        where = f" in coordinate {int(np.argmin(scale))}" if per_feature else ""
        raise ValueError(f"cannot standardise {problem.name}: {sides} no spread{where}")
    scale = _static_scale(scale)
    dtype = jnp.zeros(()).dtype
    s = scale_rows(scale, dtype)
    shift = jnp.asarray(shift, dtype)
    target_shift = jnp.asarray(target_shift, dtype) if both else None
    held = problem.validation
    held = None if held is None else (held - shift[None, :]) / s
    held_target = problem.validation_target
    if both and held_target is not None:
        held_target = (held_target - target_shift[None, :]) / s
    true_map = (
        None if problem.true_map is None else _InUnits(problem.true_map, shift, scale, target_shift)
    )
    if isinstance(problem.source, EmpiricalSource):
        source = EmpiricalSource((problem.source.data - shift[None, :]) / s)
    else:
        source = StandardizedSource(problem.source, shift, scale, target_shift)
    target = problem.target
    if both:
        target = EmpiricalTarget((problem.target.data - target_shift[None, :]) / s)
    return Problem(
        problem.name,
        source,
        target,
        true_map,
        shift=shift,
        scale=scale,
        validation=held,
        validation_target=held_target,
        target_shift=target_shift,
    )
