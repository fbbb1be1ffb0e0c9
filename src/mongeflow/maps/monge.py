"""The learnt Monge map in the user's units: apply, invert, Jacobian, density, sample.

A potential φ is trained on standardised points z = (x − m)/s (m = 0, s = 1 when the data
were not standardised). Its outputs are in the target's units, or, for a target known by
samples and standardised with the source, in w = (y − m1)/s (same scale s, the target's own
mean m1). :class:`MongeMap` carries φ with m, s, m1 and, optionally, the target γ, and
reports everything in the units of x and y. One overall scale s (the default) keeps the map
the gradient of a convex function, hence the Brenier map of the data (Brenier 1991):
Φ(x) = s · φ((x − m)/s), or s² φ((x − m)/s) + m1ᵀx, is convex when φ is.

s may also be one scale per coordinate, s = (s_1, …, s_d), D = diag(s). The map is then
the Brenier map from the rescaled source z = D⁻¹(x − m) (to the target rescaled alike,
when it is standardised too: optimal for the rescaled cost Σ_i (x_i − y_i)²/s_i²), rather
than the map optimal for |x − y|², and no longer the gradient of a convex function of x
unless every s_i is equal.

Every method is pure JAX: it works under ``jax.jit``, ``jax.grad`` and ``jax.vmap``, also
given as a bound method (``jax.jit(m.transport)``), and accepts one point ``[d]`` or a batch
``[n, d]``.
"""

from __future__ import annotations

import functools
import types
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp

from mongeflow.maps.base import Array, Potential, hessian, log_det_psd
from mongeflow.problems.base import Target
from mongeflow.problems.standardise import Standardiser, log_scale_sum, standard, unstandard


def _potential_dtype(potential: Potential):
    leaves = jax.tree_util.tree_leaves(eqx.filter(potential, eqx.is_inexact_array))
    return leaves[0].dtype if leaves else jnp.zeros(()).dtype


class _BoundMethod(eqx.Module):
    # ``m.transport`` (any public method taken from a map): the function with the map bound.
    # Like equinox's own bound method, it is a pytree whose one child is the map, so that
    # ``eqx.filter_jit(m.transport)`` traces the map's arrays; unlike it, it is hashed and
    # compared as a Python bound method is, by the function and the identity of the map.
    # ``jax.jit(f)`` hashes f and keeps it in weak-key dictionaries (compares it with ==):
    # equinox's bound method hashes its fields, and the map's arrays have no hash
    # (``TypeError: unhashable type``), and compares with ``eqx.tree_equal``, element by
    # element (an error where the map is traced). ``jax.jit(m.transport)`` compiles the
    # method with the map's arrays as constants, as ``jax.jit(lambda x: m.transport(x))``.

    __func__: Callable = eqx.field(static=True)
    __self__: MongeMap

    def __call__(self, *args, **kwargs):
        return self.__func__(self.__self__, *args, **kwargs)

    def __hash__(self) -> int:
        return hash((self.__func__, id(self.__self__)))

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, _BoundMethod)
            and self.__func__ is other.__func__
            and self.__self__ is other.__self__
        )

    # the method's signature (for ``jax.jit(..., static_argnames=...)``), name and docstring
    @property
    def __wrapped__(self):
        return types.MethodType(self.__func__, self.__self__)

    @property
    def __name__(self) -> str:
        return self.__func__.__name__

    @property
    def __doc__(self) -> str | None:
        return self.__func__.__doc__


class _method:
    """Decorates a public method of :class:`MongeMap`: taken from a map, it is a
    :class:`_BoundMethod` (``jax.jit(m.transport)`` works); from the class, the function."""

    def __init__(self, func: Callable):
        self.func = func
        functools.update_wrapper(self, func)

    def __get__(self, obj, objtype=None):
        return self.func if obj is None else _BoundMethod(self.func, obj)


class MongeMap(eqx.Module):
    """T(x) = ∇Φ(x): the learnt Monge map in the user's units.

    Two cases, z = (x − m)/s throughout:

    - the target in its own units (``target_shift`` is ``None``, the default; targets known
      by V): Φ(x) = s · φ(z) and, by the chain rule, T(x) = ∇φ(z), *not* rescaled. The
      Jacobian is DT(x) = ∇²φ(z)/s, so log det DT(x) = log det ∇²φ(z) − d log s.
    - the target standardised too (``target_shift`` = m1; targets known by samples, see
      :func:`~mongeflow.problems.standardize`): φ maps z to w = (y − m1)/s, so
      Φ(x) = s² φ(z) + m1ᵀx, T(x) = m1 + s ∇φ(z), DT(x) = ∇²φ(z) and
      T⁻¹(y) = m + s ∇φ*((y − m1)/s).

    With one scale per coordinate (``scale`` of shape ``[d]``, D = diag(s); divisions are
    per coordinate) the same formulas hold with s read as D: DT(x) = ∇²φ(z) D⁻¹, or
    D ∇²φ(z) D⁻¹ when the target is standardised, and log det DT(x) = log det ∇²φ(z)
    − Σ_i log s_i, or log det ∇²φ(z). T is then optimal for |z − y|² (with the target
    standardised: for the rescaled cost Σ_i (x_i − y_i)²/s_i²), not for |x − y|².

    :meth:`lift` builds the map from φ and a :class:`~mongeflow.problems.Standardiser`
    (the coordinates it was trained in); :attr:`standardiser` gives them back.

    When T pushes the source μ0 onto γ, the change of variables (Monge–Ampère) formula gives
    the source density the map implies, ρ0(x) = γ(T(x)) · det DT(x) (Villani 2003, *Topics
    in Optimal Transportation*, ch. 4), and samples of μ0 are T⁻¹(y) for y ~ γ.

    Args:
        potential: the trained convex potential φ (acting on standardised points).
        shift: m, shape ``[d]``; ``None`` for zeros (no standardisation).
        scale: s > 0: one overall scale (a scalar; stored as an array, so it may be
            traced), or one scale per coordinate, shape ``[d]`` (see above: the map is then
            optimal for the rescaled cost).
        target: γ *as φ's outputs see it*: in the target's units, or, with ``target_shift``,
            in the standardised w = (y − m1)/s (as :func:`~mongeflow.fit.fit`'s problem
            holds it). Needed by :meth:`log_density` (with its normalising constant) and by
            :meth:`sample` (a target that can be sampled); ``None`` if unknown.
        target_shift: m1, shape ``[d]``, when φ's outputs are standardised target
            coordinates w = (y − m1)/s; ``None`` (the default) when they are in the
            target's own units.
        dim: d, needed only when ``shift`` is ``None`` and d cannot be read from the target
            or from the potential's ``dim`` attribute (as for an :class:`~mongeflow.maps.ICNN`
            without a target).

    Raises:
        ValueError: when d cannot be found, when ``shift``, ``dim``, the target or the
            potential disagree on d, or when ``scale`` is not a positive scalar or ``[d]``
            vector.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from mongeflow.maps import AffinePotential, MongeMap
        >>> from mongeflow.problems import Gaussian
        >>> phi = AffinePotential(2, A=jnp.diag(jnp.array([2.0, 0.5])))
        >>> T = MongeMap(phi, shift=jnp.array([1.0, -1.0]), scale=2.0, target=Gaussian.standard(2))
        >>> T(jnp.array([3.0, 1.0])).round(4)  # ∇φ((x − m)/s) = A (x − m)/s
        Array([2. , 0.5], dtype=float32)
        >>> jax.jit(lambda T, y: T.inverse(y))(T, jnp.array([[2.0, 0.5]])).round(4)
        Array([[3., 1.]], dtype=float32)
        >>> T.sample(jax.random.key(0), 5).shape
        (5, 2)
        >>> T.log_density(jnp.zeros((3, 2))).shape
        (3,)
    """

    potential: Potential
    shift: Array
    scale: Array
    target: Target | None = None
    target_shift: Array | None = None

    def __init__(
        self,
        potential: Potential,
        shift=None,
        scale=1.0,
        target: Target | None = None,
        *,
        target_shift=None,
        dim: int | None = None,
    ):
        dtype = _potential_dtype(potential)
        if shift is not None:
            shift = jnp.asarray(shift, dtype)
            if shift.ndim != 1:
                raise ValueError(f"shift must have shape [d], got shape {shift.shape}")
        if target_shift is not None:
            target_shift = jnp.asarray(target_shift, dtype)
            if target_shift.ndim != 1:
                raise ValueError(
                    f"target_shift must have shape [d], got shape {target_shift.shape}"
                )
        scale = jnp.asarray(scale, dtype)
        if scale.ndim > 1:
            raise ValueError(
                f"scale must be one number (a scalar) or one per coordinate (shape [d]), got "
                f"shape {scale.shape}"
            )
        if not isinstance(scale, jax.core.Tracer) and not bool(jnp.all(scale > 0)):
            raise ValueError(f"scale must be > 0, got {scale.tolist()}")
        candidates = {
            "shift": None if shift is None else int(shift.shape[0]),
            "target_shift": None if target_shift is None else int(target_shift.shape[0]),
            "dim": None if dim is None else int(dim),
            "scale": int(scale.shape[0]) if scale.ndim == 1 else None,
            "target": None if target is None else int(target.dim),
            "potential": getattr(potential, "dim", None),
        }
        known = {k: v for k, v in candidates.items() if isinstance(v, int)}
        if not known:
            raise ValueError(
                "cannot tell the dimension d of the map: give shift=[d values], dim=d or a target"
            )
        if len(set(known.values())) > 1:
            raise ValueError(
                "the dimension d is given inconsistently: "
                + ", ".join(f"{k} has d = {v}" for k, v in known.items())
            )
        d = next(iter(known.values()))
        try:
            out = jax.eval_shape(potential, jax.ShapeDtypeStruct((d,), dtype))
        except Exception as err:  # a shape mismatch inside the user's potential
            raise ValueError(
                f"the potential does not accept a point of dimension {d}: "
                f"{type(err).__name__}: {str(err)[:200]}"
            ) from None
        if out.shape != ():
            raise ValueError(f"the potential must return a scalar, got shape {out.shape}")
        self.potential = potential
        self.shift = jnp.zeros(d, dtype) if shift is None else shift
        self.scale = scale
        self.target = target
        self.target_shift = target_shift

    @classmethod
    def lift(
        cls,
        potential: Potential,
        standardiser: Standardiser | None,
        target: Target | None = None,
        *,
        dim: int | None = None,
    ) -> MongeMap:
        """The map of a potential φ trained in a standardiser's coordinates, in the data's
        units: T(x) = ∇φ((x − m)/s), or m1 + s ∇φ((x − m)/s) when the standardiser
        standardises the target too (see the class's docstring).

        Args:
            potential: φ, trained on z = (x − m)/s.
            standardiser: m, s and m1, e.g. a posed problem's
                :meth:`~mongeflow.problems.Standardiser.posed`; ``None`` for a problem that
                is not standardised (m = 0, s = 1).
            target: γ as φ's outputs see it (see the class's ``target``), or ``None``.
            dim: d, when it cannot be read otherwise (without a standardiser).

        Example:
            >>> import jax.numpy as jnp
            >>> from mongeflow.maps import AffinePotential, MongeMap
            >>> from mongeflow.problems import Standardiser
            >>> std = Standardiser(jnp.array([1.0, -1.0]), 2.0, target_shift=jnp.array([5.0, 0.0]))
            >>> MongeMap.lift(AffinePotential(2), std)(jnp.array([3.0, 1.0]))  # m1 + s (x − m)/s
            Array([7., 2.], dtype=float32)
        """
        if standardiser is None:
            return cls(potential, target=target, dim=dim)
        return cls(
            potential,
            shift=standardiser.shift,
            scale=standardiser.scale,
            target=target,
            target_shift=standardiser.target_shift,
            dim=dim,
        )

    @property
    def standardiser(self) -> Standardiser:
        """m, s and m1 as a :class:`~mongeflow.problems.Standardiser` (its scale is static:
        a map whose s is traced has none)."""
        if isinstance(self.scale, jax.core.Tracer):
            raise ValueError("the map's scale is traced: it has no static standardiser")
        scale = jax.device_get(self.scale)
        return Standardiser(self.shift, scale, self.target_shift)

    # Hashed and compared by identity, for ``jax.jit(m)`` (which hashes m; a Module's own
    # hash hashes its fields, and arrays have no hash). Values: ``eqx.tree_equal(m1, m2)``.
    def __hash__(self) -> int:
        return object.__hash__(self)

    def __eq__(self, other: object) -> bool:
        return self is other

    @property
    def dim(self) -> int:
        """The dimension d."""
        return int(self.shift.shape[0])

    @property
    def target_standardized(self) -> bool:
        """Whether φ's outputs are standardised target coordinates w = (y − m1)/s."""
        return self.target_shift is not None

    @property
    def per_feature(self) -> bool:
        """Whether the map has one scale per coordinate (optimal for the rescaled cost)."""
        return self.scale.ndim == 1

    def _log_scale(self) -> Array:
        """Σ_i log s_i (d log s for one overall scale)."""
        return log_scale_sum(self.scale, self.dim)

    # --- points -----------------------------------------------------------------------
    def _points(self, x, what: str) -> Array:
        x = jnp.asarray(x)
        if x.ndim not in (1, 2) or x.shape[-1] != self.dim:
            raise ValueError(
                f"{what} must have shape [n, {self.dim}] or [{self.dim}], got {x.shape}"
            )
        if not jnp.issubdtype(x.dtype, jnp.inexact):
            x = x.astype(self.shift.dtype)
        return x

    def _standardise(self, x: Array) -> Array:
        return standard(x, self.shift, self.scale)

    @_method
    def to_data_units(self, z) -> Array:
        """x = m + s z: points of φ's standardised space in the data's units.

        Args:
            z: ``[n, d]`` or ``[d]``.
        """
        return _apply("_to_data_units_one", self, self._points(z, "z"))

    def _to_data_units_one(self, z: Array) -> Array:
        return unstandard(z, self.shift, self.scale)

    @_method
    def target_to_data_units(self, w) -> Array:
        """y = m1 + s w: points of φ's output space (the coordinates of :attr:`target`) in the
        target's units; unchanged when the target is not standardised.

        Args:
            w: ``[n, d]`` or ``[d]``.
        """
        return _apply("_target_to_data_units_one", self, self._points(w, "w"))

    def _target_to_data_units_one(self, w: Array) -> Array:
        if self.target_shift is None:
            return w
        return unstandard(w, self.target_shift, self.scale)

    def _target_standardise(self, y: Array) -> Array:
        if self.target_shift is None:
            return y
        return standard(y, self.target_shift, self.scale)

    # --- the map ----------------------------------------------------------------------
    @_method
    def transport(self, x) -> Array:
        """T(x) = ∇φ((x − m)/s), or m1 + s ∇φ((x − m)/s) when the target is standardised.

        Args:
            x: source points ``[n, d]`` or one point ``[d]``.

        Returns:
            T(x), of the same shape as ``x``.
        """
        return _apply("_transport_one", self, self._points(x, "x"))

    def _transport_one(self, x: Array) -> Array:
        return self._target_to_data_units_one(jax.grad(self.potential)(self._standardise(x)))

    def __call__(self, x) -> Array:
        """T(x); see :meth:`transport`."""
        return self.transport(x)

    @_method
    def jacobian(self, x) -> Array:
        """DT(x) = ∇²φ(z)/s, or ∇²φ(z) when the target is standardised; z = (x − m)/s.

        Args:
            x: ``[n, d]`` or ``[d]``.

        Returns:
            ``[n, d, d]`` or ``[d, d]``.
        """
        return _apply("_jacobian_one", self, self._points(x, "x"))

    def _jacobian_one(self, x: Array) -> Array:
        h = hessian(self.potential, self._standardise(x))
        if self.target_standardized:  # D ∇²φ(z) D⁻¹: ∇²φ(z) for one overall scale
            return h * self.scale[:, None] / self.scale[None, :] if self.per_feature else h
        return h / self.scale[None, :] if self.per_feature else h / self.scale  # ∇²φ(z) D⁻¹

    @_method
    def log_det_jacobian(self, x) -> Array:
        """log det DT(x) = log det ∇²φ(z) − d log s, z = (x − m)/s (without the − d log s
        when the target is standardised: DT(x) = ∇²φ(z); with one scale per coordinate,
        − Σ_i log s_i).

        The log-determinant is 2 Σ_i log L_ii with L the Cholesky factor of ∇²φ(z); it is −inf
        where ∇²φ(z) is not positive definite (the factorisation fails).

        Args:
            x: ``[n, d]`` or ``[d]``.

        Returns:
            ``[n]`` or a scalar.
        """
        return _apply("_log_det_jacobian_one", self, self._points(x, "x"))

    def _log_det_hessian_one(self, x: Array) -> Array:
        """log det ∇²φ(z), z = (x − m)/s; −inf where ∇²φ(z) is not positive definite."""
        logdet = log_det_psd(hessian(self.potential, self._standardise(x)))
        return jnp.where(jnp.isfinite(logdet), logdet, -jnp.inf)

    def _log_det_jacobian_one(self, x: Array) -> Array:
        logdet = self._log_det_hessian_one(x)
        if self.target_standardized:
            return logdet
        return logdet - self._log_scale()

    @_method
    def inverse(self, y, iterations: int = 50) -> Array:
        """T⁻¹(y) = m + s z with z = ∇φ*(w) = argmin_z φ(z) − ⟨z, w⟩, w = y, or
        w = (y − m1)/s when the target is standardised.

        z solves the convex conjugate problem (Rockafellar 1970, Thm 23.5) by damped Newton
        with a backtracking (Armijo) line search, from z = w. The solve itself is not
        differentiated: derivatives come from the implicit function theorem at the solution,
        dz/dy = ∇²φ(z)⁻¹ (and likewise for φ's parameters), so ``jax.grad`` and ``jax.jvp``
        work through it.

        Args:
            y: target points ``[n, d]`` or one point ``[d]``.
            iterations: Newton steps (a fixed number, so the solve can be jitted).

        Returns:
            x with T(x) ≈ y, of the same shape as ``y``. Check ``T(x) − y`` where accuracy
            matters (a point outside the range of T has no preimage).
        """
        return _apply("_inverse_one", self, self._points(y, "y"), int(iterations))

    def _inverse_one(self, y: Array, iterations: int) -> Array:
        return self._from_output_one(self._target_standardise(y), iterations)

    def _from_output_one(self, y: Array, iterations: int = 50) -> Array:
        """x = m + s ∇φ*(y) for a point ``y`` of φ's output space (the target's coordinates)."""
        frozen = jax.tree_util.tree_map(
            lambda a: jax.lax.stop_gradient(a) if eqx.is_inexact_array(a) else a, self.potential
        )
        z = jax.lax.stop_gradient(newton_conjugate(frozen, jax.lax.stop_gradient(y), iterations))
        # zero in value; its derivative is the implicit-function derivative of the solve
        step = jnp.linalg.solve(hessian(frozen, z), jax.grad(self.potential)(z) - y)
        z = z - (step - jax.lax.stop_gradient(step))
        return self._to_data_units_one(z)

    @_method
    def log_density(self, x) -> Array:
        """log ρ0(x) = log γ(T(x)) + log det DT(x): the source density the map implies.

        Args:
            x: ``[n, d]`` or ``[d]``.

        Returns:
            ``[n]`` or a scalar; −inf where DT(x) is not positive definite.

        Raises:
            ValueError: the map has no target, its target is known by samples only (it has
                no density), or the target's normalising constant is unknown (e.g.
                γ ∝ exp(−V) for a user V without log Z).
        """
        if self.target is None:
            raise ValueError(
                "log_density needs the target γ, and this map has none: build it with "
                "MongeMap(..., target=...)"
            )
        if not self.target.has_potential and self.target.can_sample:
            raise ValueError(
                f"log_density needs the target's density γ = exp(−V)/Z, but this map's target "
                f"({type(self.target).__name__}) is known by samples only: it has no density "
                "(no potential V, no known normalising constant log Z), so the source "
                "density cannot be computed; the map, its inverse and sampling (T⁻¹ of the "
                "target samples) still work"
            )
        if not self.target.has_potential or self.target.log_normaliser is None:
            raise ValueError(
                f"log_density needs the target's normalised density γ = exp(−V)/Z, and the "
                f"target ({type(self.target).__name__}) has no known normalising constant "
                "log Z"
            )
        return _apply("_log_density_one", self, self._points(x, "x"))

    def _log_density_one(self, x: Array) -> Array:
        # γ is held in φ's output coordinates w; in the target's units its density is
        # γ_w((y − m1)/s) s^{-d} when standardised, and DT = ∇²φ(z) (else ∇²φ(z)/s): either
        # way log ρ0(x) = log γ_w(∇φ(z)) + log det ∇²φ(z) − d log s
        w = jax.grad(self.potential)(self._standardise(x))
        logdet = self._log_det_hessian_one(x) - self._log_scale()
        return self.target.log_prob(w) + logdet

    @_method
    def sample(self, key: Array, n: int) -> Array:
        """n samples of the source μ0 as T⁻¹(y), y ~ γ (see :meth:`inverse`); for a target
        known by samples, y is drawn from its rows with replacement.

        Args:
            key: a PRNG key.
            n: number of samples (static under ``jax.jit``).

        Returns:
            ``[n, d]``.

        Raises:
            ValueError: the map has no target, or the target cannot be sampled.
        """
        if self.target is None or not self.target.can_sample:
            what = (
                "has no target"
                if self.target is None
                else (f"has a target ({type(self.target).__name__}) that cannot be sampled")
            )
            raise ValueError(
                f"sample draws y ~ γ and returns T⁻¹(y), but this map {what}; a Gaussian "
                "target, or one with a sampler, is needed"
            )
        # the target is held in φ's output coordinates: no round trip through y
        return _apply("_from_output_one", self, self.target.sample(key, n))


class StandardizedPotential(Potential):
    """A potential φ trained in a standardiser's coordinates z = (x − m)/s, as a potential
    of the data's units: Φ(x) = s φ(z), or Φ(x) = s² φ(z) + m1ᵀx when the target is
    standardised too, so that ∇Φ is the map :meth:`MongeMap.lift` gives, ∇φ(z) or
    m1 + s ∇φ(z), and ∇²Φ(x) = ∇²φ(z)/s or ∇²φ(z). Φ is convex when φ is (Brenier 1991:
    still the Brenier map). One overall scale only: with one scale per coordinate the map
    is not the gradient of a function of x.

    Raises:
        ValueError: the standardiser has one scale per coordinate.
    """

    potential: Potential
    standardiser: Standardiser

    def __check_init__(self):
        if self.standardiser.per_feature:
            raise ValueError(
                "with one scale per coordinate the map in the data's units is not the "
                "gradient of a potential of x: use MongeMap.lift"
            )

    def __call__(self, x: Array) -> Array:
        std = self.standardiser
        s = std.scale_array()
        value = self.potential(std.to_z(x))
        if std.target_shift is None:
            return s * value
        return s**2 * value + jnp.sum(std.target_shift * x)


@eqx.filter_jit
def _apply(method: str, m: MongeMap, x: Array, *args) -> Array:
    """``m.<method>(point, *args)`` acts on one point: apply it to ``x: [d]`` or to each row
    of ``x: [n, d]``, compiled (and cached, so repeated eager calls are fast)."""

    def one(point):
        return getattr(m, method)(point, *args)

    return one(x) if x.ndim == 1 else jax.vmap(one)(x)


def newton_conjugate(
    potential: Potential, y: Array, iterations: int, start: Array | None = None
) -> Array:
    """argmin_z φ(z) − ⟨z, y⟩ = ∇φ*(y) for one ``y: [d]``: damped Newton from z = ``start``
    (default y).

    Each step solves (∇²φ(z) + μ I) Δ = −(∇φ(z) − y) with a tiny μ = 10⁻⁸ (1 + tr ∇²φ) and
    halves the step until the Armijo condition f(z + tΔ) ≤ f(z) + 10⁻⁴ t ⟨∇f, Δ⟩ + δ holds
    (Nocedal & Wright 2006, Alg. 3.1), δ = 16 ε (1 + |f(z)| + |⟨z, y⟩|) the rounding error
    of f: near the solution f's decrease is below it, and the exact test would stall there
    (round trips off by 10⁻³ on data of unit scale in float32). A non-finite step leaves z
    unchanged.
    """

    def objective(z):
        return potential(z) - z @ y

    def step(z, _):
        g = jax.grad(potential)(z) - y
        h = hessian(potential, z)
        mu = 1e-8 * (1.0 + jnp.trace(h))
        dz = -jnp.linalg.solve(h + mu * jnp.eye(z.shape[0], dtype=z.dtype), g)
        f0 = objective(z)
        slope = g @ dz

        def search(carry):
            t, _ = carry
            return t * 0.5, objective(z + 0.5 * t * dz)

        # f's rounding error: a step whose increase of f is below it is not an increase
        slack = 16 * jnp.finfo(z.dtype).eps * (1.0 + jnp.abs(f0) + jnp.abs(z @ y))

        def keep_going(carry):
            t, f = carry
            return (f > f0 + 1e-4 * t * slope + slack) & (t > 1e-6)

        t0 = jnp.asarray(1.0, z.dtype)
        t, _ = jax.lax.while_loop(keep_going, search, (t0, objective(z + dz)))
        z_new = z + t * dz
        return jnp.where(jnp.all(jnp.isfinite(z_new)), z_new, z), None

    z, _ = jax.lax.scan(step, y if start is None else start, None, length=iterations)
    return z
