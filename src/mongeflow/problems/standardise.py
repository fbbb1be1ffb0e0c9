"""Affine standardisation: a problem posed in z = (x − m)/s, w = (y − m1)/s, and back.

A :class:`Standardiser` owns the source's shift m, the scale s (one overall s, or one s_j
per coordinate) and, when the target is standardised too, its shift m1. It computes these
statistics (:meth:`Standardiser.of`, :meth:`Standardiser.from_samples`), poses a problem in
the standardised coordinates (:meth:`Standardiser.pose`) and moves points between the two
(:meth:`~Standardiser.to_z`, :meth:`~Standardiser.to_x`, :meth:`~Standardiser.to_w`,
:meth:`~Standardiser.to_y`). A potential φ trained in z is lifted back to the data's units
by :meth:`mongeflow.maps.MongeMap.lift`: T(x) = ∇φ((x − m)/s), or m1 + s ∇φ((x − m)/s).

One overall scale keeps a Brenier map a Brenier map (Brenier 1991): T(x) = m1 + s ∇φ(z) is
the gradient of the convex Φ(x) = s² φ((x − m)/s) + m1ᵀx. With one scale per coordinate,
D = diag(s), the map is the Brenier map of the rescaled problem, optimal for the cost
Σ_j (x_j − y_j)²/s_j² rather than for |x − y|².
"""

from __future__ import annotations

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from mongeflow.problems.base import (
    EmpiricalSource,
    EmpiricalTarget,
    Problem,
    Source,
)

Array = jax.Array


def scale_rows(scale, dtype=None) -> Array:
    """A scale ready to divide or multiply rows ``[n, d]``: a scalar array for one overall
    scale, shape ``[1, d]`` for one scale per coordinate."""
    s = jnp.asarray(scale, dtype)
    return s if s.ndim == 0 else s[None, :]


def log_scale_sum(scale, dim: int) -> Array:
    """Σ_j log s_j over d coordinates: d log s for one overall scale (log |det| of
    z ↦ m + s z)."""
    return jnp.sum(jnp.broadcast_to(jnp.log(jnp.asarray(scale)), (dim,)))


def scale_from_squares(squares, per_feature: bool) -> float | tuple[float, ...]:
    """The standardisation scale from the per-coordinate mean squared deviations: one
    overall s = sqrt(mean_j squares_j), or, ``per_feature``, s_j = sqrt(squares_j)."""
    squares = np.asarray(squares, dtype=np.float64)
    return static_scale(np.sqrt(squares if per_feature else np.mean(squares)))


def static_scale(scale) -> float | tuple[float, ...]:
    """A scale as a hashable static value: a float, or a tuple of floats (one per coordinate)."""
    arr = np.asarray(scale, dtype=np.float64)
    return float(arr) if arr.ndim == 0 else tuple(float(v) for v in arr)


def standard(x, centre, scale):
    """(x − centre)/scale for one point ``[d]`` or rows ``[..., d]``; ``centre`` is ``[d]``,
    ``scale`` a scalar or ``[d]`` (an array, which may be traced:
    :class:`~mongeflow.maps.MongeMap` holds s so)."""
    return (x - _aligned(centre, x)) / _aligned(scale, x)


def unstandard(z, centre, scale):
    """centre + scale · z: the inverse of :func:`standard`."""
    return _aligned(centre, z) + _aligned(scale, z) * z


def _aligned(v, x):
    """``v`` (a scalar or ``[d]``) with leading axes for those of ``x`` (``[..., d]``), so
    that no rank is promoted implicitly."""
    extra = np.ndim(x) - np.ndim(v)
    return v[(None,) * extra + (...,)] if extra > 0 and np.ndim(v) > 0 else v


def _moments(rows, total) -> tuple[np.ndarray, np.ndarray]:
    """``(mean, squares)`` of ``rows [n, d]`` in float64, per column j: the mean m_j and
    mean_i (r_ij − m_j)², the sums taken by ``total`` (over several holders of rows)."""
    rows = np.asarray(rows, dtype=np.float64)
    n = total(np.array([rows.shape[0]], dtype=np.float64))[0]
    mean = total(rows.sum(axis=0)) / n
    return mean, total(((rows - mean[None, :]) ** 2).sum(axis=0)) / n


def _array(values) -> Array | np.ndarray:
    """A JAX array or a NumPy array kept as it is; anything else as float64 NumPy."""
    if isinstance(values, (jax.Array, np.ndarray)):
        return values
    return np.asarray(values, dtype=np.float64)


class Standardiser(eqx.Module):
    """The affine change of coordinates z = (x − m)/s of a source and, when the target is
    standardised too, w = (y − m1)/s of its target (same s, the target's own mean m1).

    ``shift`` and ``target_shift`` are JAX arrays (what a posed problem holds, in JAX's
    default float type) or float64 NumPy arrays (the statistics as computed, by
    :meth:`from_samples` and :meth:`of`); the coordinate maps compute in the arrays' type.
    ``scale`` is static: one float, or a tuple of d floats (one per coordinate; the map learnt
    in z is then optimal for the rescaled cost Σ_j (x_j − y_j)²/s_j², see the module's
    docstring).

    Attributes:
        shift: the source's mean m, ``[d]``.
        scale: s, a float, or a tuple of d floats.
        target_shift: the target's mean m1, ``[d]``, or ``None``: the target stays in its own
            units (a target known by its potential V, whose law in w-coordinates would be
            a different distribution).

    Example:
        >>> import numpy as np
        >>> std = Standardiser(np.array([1.0, -1.0]), 2.0)
        >>> std.to_z(np.array([3.0, 1.0])), std.to_x(np.array([1.0, 1.0]))
        (array([1., 1.]), array([3., 1.]))
    """

    shift: Array
    scale: float | tuple[float, ...] = eqx.field(static=True)
    target_shift: Array | None = None

    def __init__(self, shift, scale=1.0, target_shift=None):
        self.shift = _array(shift)
        if self.shift.ndim != 1:
            raise ValueError(f"shift must have shape [d], got shape {self.shift.shape}")
        self.scale = static_scale(scale)
        if isinstance(self.scale, tuple) and len(self.scale) != self.shift.shape[0]:
            raise ValueError(
                f"{len(self.scale)} per-coordinate scales for dimension {self.shift.shape[0]}"
            )
        self.target_shift = None if target_shift is None else _array(target_shift)
        if self.target_shift is not None and self.target_shift.shape != self.shift.shape:
            raise ValueError(
                f"target_shift has shape {self.target_shift.shape}, shift {self.shift.shape}"
            )

    # --- statistics ---------------------------------------------------------------------
    @classmethod
    def from_samples(cls, x, y=None, *, per_feature: bool = False, total=None) -> Standardiser:
        """The statistics of source rows ``x: [n, d]`` and, for a target known by samples,
        target rows ``y: [m, d]``, in float64.

        m = mean x; s² = mean_i |x_i − m|² / d, or with ``y``, each side weighing the same
        whatever its size, s² = ½ (mean |x − m|² + mean |y − m1|²) / d, m1 = mean y. With
        ``per_feature``, s_j² is the same average for coordinate j alone.

        ``total``: for rows held in parts (one per process), a function that sums an array
        over the parts (:func:`mongeflow.devices.process_sum`); every part then gets the
        statistics of all the rows. ``None``: the rows are all here.

        The scale is not checked: a side with no spread gives s = 0 (or s_j = 0), which the
        caller reports (:meth:`of` raises, with the problem's name).
        """
        total = total or (lambda v: v)
        shift, squares = _moments(x, total)
        target_shift = None
        if y is not None:
            target_shift, target_squares = _moments(y, total)
            squares = 0.5 * (squares + target_squares)
        return cls(shift, scale_from_squares(squares, per_feature), target_shift)

    @classmethod
    def posed(cls, problem: Problem) -> Standardiser | None:
        """The standardiser ``problem`` is posed with (its ``shift``, ``scale`` and
        ``target_shift``), or ``None`` when it is not standardised."""
        if problem.shift is None:
            return None
        return cls(problem.shift, problem.scale, problem.target_shift)

    @classmethod
    def of(
        cls,
        problem: Problem,
        *,
        per_feature: bool = False,
        key: Array | None = None,
        n: int = 10_000,
    ) -> Standardiser:
        """The standardisation of ``problem`` (see :meth:`from_samples`): its source's rows,
        and its target's for a target known by samples (:class:`EmpiricalTarget`, which is
        then standardised too; any other target stays in its own units).

        Statistics are taken over every training row of an :class:`EmpiricalSource` /
        :class:`EmpiricalTarget` (once), else over ``n`` source samples drawn with ``key``
        (default ``jax.random.key(2024)``).

        Raises:
            ValueError: the problem is already standardised, or the samples have no spread
                (s = 0; with ``per_feature``, in some coordinate).
        """
        if problem.shift is not None:
            raise ValueError(
                f"{problem.name} is already standardised: its standardiser is "
                "Standardiser.posed(problem)"
            )
        key = jax.random.key(2024) if key is None else key
        if isinstance(problem.source, EmpiricalSource):  # every row, once
            x = problem.source.data
        else:
            x = problem.source.sample(key, n)
        both = isinstance(problem.target, EmpiricalTarget)
        std = cls.from_samples(x, problem.target.data if both else None, per_feature=per_feature)
        scale = np.asarray(std.scale)
        if not np.all(np.isfinite(scale)) or not np.all(scale > 0):
            sides = "its source and target have" if both else "its source has"
            where = f" in coordinate {int(np.argmin(scale))}" if per_feature else ""
            raise ValueError(f"cannot standardise {problem.name}: {sides} no spread{where}")
        return std

    # --- what it is ---------------------------------------------------------------------
    @property
    def dim(self) -> int:
        """The dimension d."""
        return int(self.shift.shape[0])

    @property
    def per_feature(self) -> bool:
        """Whether there is one scale per coordinate."""
        return isinstance(self.scale, tuple)

    @property
    def standardises_target(self) -> bool:
        """Whether the target is standardised too, w = (y − m1)/s."""
        return self.target_shift is not None

    def astype(self, dtype) -> Standardiser:
        """The same standardiser with ``shift`` and ``target_shift`` as JAX arrays of
        ``dtype`` (JAX's default float type when ``None``)."""
        dtype = jnp.zeros(()).dtype if dtype is None else dtype
        target_shift = None if self.target_shift is None else jnp.asarray(self.target_shift, dtype)
        return Standardiser(jnp.asarray(self.shift, dtype), self.scale, target_shift)

    def as_numpy(self) -> Standardiser:
        """The same standardiser with float64 NumPy arrays (computes in float64)."""
        target_shift = (
            None if self.target_shift is None else np.asarray(self.target_shift, np.float64)
        )
        return Standardiser(np.asarray(self.shift, np.float64), self.scale, target_shift)

    def scale_array(self):
        """s as an array: float64 NumPy beside NumPy statistics, else a JAX array (weakly
        typed for one overall scale: it takes the float type of the points it meets)."""
        if isinstance(self.shift, np.ndarray):
            return np.asarray(self.scale)
        return jnp.asarray(self.scale)

    def log_scale(self):
        """Σ_j log s_j (d log s for one overall scale): log |det| of :meth:`to_x`."""
        return log_scale_sum(self.scale_array(), self.dim)

    # --- coordinates --------------------------------------------------------------------
    def to_z(self, x):
        """z = (x − m)/s, for one point ``[d]`` or rows ``[n, d]``."""
        return standard(x, self.shift, self.scale_array())

    def to_x(self, z):
        """x = m + s z: the inverse of :meth:`to_z`."""
        return unstandard(z, self.shift, self.scale_array())

    def to_w(self, y):
        """w = (y − m1)/s for a standardised target; ``y`` unchanged otherwise."""
        if self.target_shift is None:
            return y
        return standard(y, self.target_shift, self.scale_array())

    def to_y(self, w):
        """y = m1 + s w: the inverse of :meth:`to_w`."""
        if self.target_shift is None:
            return w
        return unstandard(w, self.target_shift, self.scale_array())

    # --- problems -----------------------------------------------------------------------
    def pose(self, problem: Problem) -> Problem:
        """``problem`` posed in standardised coordinates.

        The source becomes the law of z = (X − m)/s (its rows transformed, for an
        :class:`EmpiricalSource`; else a :class:`StandardizedSource`), the held-out rows
        ``validation`` likewise; a standardised target's rows and ``validation_target``
        become w = (y − m1)/s; the true map T* becomes z ↦ T*(m + s z), or
        z ↦ (T*(m + s z) − m1)/s (:class:`StandardizedMap`). The statistics are cast to JAX's
        default float type first, and recorded in the problem (``shift``, ``scale``,
        ``target_shift``: :meth:`Standardiser.posed`).

        Raises:
            ValueError: the problem is already standardised, its dimension is not d, or the
                standardiser has a target shift and the target is not known by samples.
        """
        if problem.shift is not None:
            raise ValueError(f"{problem.name} is already standardised")
        if problem.dim != self.dim:
            raise ValueError(
                f"{problem.name} has dimension {problem.dim}, the standardiser {self.dim}"
            )
        both = self.target_shift is not None
        if both and not isinstance(problem.target, EmpiricalTarget):
            raise ValueError(
                f"a standardiser with a target shift poses a target known by samples "
                f"(EmpiricalTarget); {problem.name}'s target is a {type(problem.target).__name__}"
            )
        std = self.astype(None)
        held = None if problem.validation is None else std.to_z(problem.validation)
        held_target = problem.validation_target
        if both and held_target is not None:
            held_target = std.to_w(held_target)
        true_map = None if problem.true_map is None else StandardizedMap(problem.true_map, std)
        if isinstance(problem.source, EmpiricalSource):
            source = EmpiricalSource(std.to_z(problem.source.data))
        else:
            source = StandardizedSource(problem.source, std)
        target = EmpiricalTarget(std.to_w(problem.target.data)) if both else problem.target
        return Problem(
            problem.name,
            source,
            target,
            true_map,
            shift=std.shift,
            scale=std.scale,
            validation=held,
            validation_target=held_target,
            target_shift=std.target_shift,
        )


class StandardizedSource(Source):
    """μ0 seen in standardised coordinates z = (x − m)/s: the law of (X − m)/s, X ~ ``inner``.

    Its log-density is log ρ0(m + s z) + Σ_j log s_j (change of variables), and when
    ``inner`` draws exact pairs (x, T*(x)) (:attr:`~mongeflow.problems.Source.has_true_pairs`),
    so does this source, as (z, T*(x)), or as (z, (T*(x) − m1)/s) when the target is
    standardised too.
    """

    inner: Source
    standardiser: Standardiser
    dim: int = eqx.field(static=True)

    def __init__(self, inner: Source, standardiser: Standardiser):
        self.inner, self.standardiser, self.dim = inner, standardiser, inner.dim

    @property
    def shift(self) -> Array:
        return self.standardiser.shift

    @property
    def scale(self) -> float | tuple[float, ...]:
        return self.standardiser.scale

    @property
    def target_shift(self) -> Array | None:
        return self.standardiser.target_shift

    def sample(self, key: Array, n: int) -> Array:
        return self.standardiser.to_z(self.inner.sample(key, n))

    @property
    def has_log_prob(self) -> bool:
        return self.inner.has_log_prob

    def log_prob(self, z: Array) -> Array:
        std = self.standardiser
        return self.inner.log_prob(std.to_x(z)) + std.log_scale()

    @property
    def has_true_pairs(self) -> bool:
        return self.inner.has_true_pairs

    @property
    def sample_with_map(self) -> Callable[[Array, int], tuple[Array, Array]]:
        """``(key, n) -> (z, w)``: exact pairs, when ``inner`` draws them (else absent:
        ``AttributeError``, as for any source without pairs)."""
        if not self.has_true_pairs:
            return Source.sample_with_map.fget(self)
        return self._sample_with_map

    def _sample_with_map(self, key: Array, n: int) -> tuple[Array, Array]:
        x, y = self.inner.sample_with_map(key, n)
        return self.standardiser.to_z(x), self.standardiser.to_w(y)


class StandardizedMap(eqx.Module):
    """A map of the data's units seen from standardised coordinates:
    z ↦ T*(m + s z), or z ↦ (T*(m + s z) − m1)/s when the target is standardised too."""

    true_map: Callable[[Array], Array]
    standardiser: Standardiser

    def __call__(self, z: Array) -> Array:
        std = self.standardiser
        return std.to_w(self.true_map(std.to_x(z)))


def standardize(
    problem: Problem, key: Array | None = None, n: int = 10_000, *, per_feature: bool = False
) -> Problem:
    """``problem`` posed in standardised coordinates, with one overall scale s:
    ``Standardiser.of(problem, ...).pose(problem)``.

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
    return Standardiser.of(problem, per_feature=per_feature, key=key, n=n).pose(problem)
