"""Metrics: energy distance, Sinkhorn divergence, L² and L2-UVP (Korotin et al. 2021), KL,
kernel Stein discrepancy, posterior moments, convexity checks."""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import scipy.optimize

from mongeflow import kernels
from mongeflow.divergences.kl import KL
from mongeflow.divergences.sinkhorn import Sinkhorn
from mongeflow.maps.affine import AffinePotential
from mongeflow.maps.base import Array, Potential, hessian, transport
from mongeflow.problems.base import Gaussian, Problem
from mongeflow.problems.gaussian import bures_map
from mongeflow.problems.posterior import posterior_errors, reference_for
from mongeflow.problems.standardise import scale_rows
from mongeflow.stein import kernel_stein_discrepancy, target_score

#: samples of T#μ0 in the kernel Stein discrepancy (its cost is quadratic in them)
KSD_SIZE = 2000


@partial(jax.jit, static_argnames="block")
def mean_distance(a: Array, b: Array, block: int = 1000) -> Array:
    """mean_ij |a_i − b_j| over all pairs (chunked; one term of the energy distance)."""
    return kernels.mean_distance(a, b, min(block, a.shape[0], b.shape[0]))


@partial(jax.jit, static_argnames="block")
def energy_distance(x: Array, y: Array, block: int = 1000) -> Array:
    """ED = 2 E|X − Y| − E|X − X'| − E|Y − Y'|, the energy distance (V-statistic, not rooted).

    Székely & Rizzo's energy distance over all pairs, diagonal included, as Dumont, Lacombe
    & Vialard (2026) report it.

    Blocked (:mod:`mongeflow.kernels`): 10⁴ × 10⁴ samples need only ``block × 10⁴``
    distances at a time, and both sets are moved by the midpoint of their means first (the
    expansion |a|² + |b|² − 2⟨a, b⟩ cancels badly far from the origin).

    Example:
        >>> import jax
        >>> x = jax.random.normal(jax.random.key(0), (500, 2))
        >>> abs(float(energy_distance(x, x))) < 1e-6
        True
    """
    block = min(block, x.shape[0], y.shape[0])
    xy = kernels.mean_distance(x, y, block)
    xx = kernels.mean_distance(x, x, block)
    yy = kernels.mean_distance(y, y, block)
    return 2.0 * xy - xx - yy


def l2_error(mapped: Array, true: Array) -> Array:
    """E|T(x) − T*(x)|² over a batch."""
    return jnp.mean(jnp.sum((mapped - true) ** 2, axis=-1))


def target_variance(problem: Problem, key: Array, n: int = 10_000) -> Array:
    """Var(γ) = trace of γ's covariance (exact for a Gaussian target, else sampled)."""
    if isinstance(problem.target, Gaussian):
        return jnp.trace(problem.target.cov)
    y = problem.target.sample(key, n)
    return jnp.sum(jnp.var(y, axis=0))


def l2_uvp(mapped: Array, true: Array, variance: Array) -> Array:
    """L2-UVP = 100 · E|T(x) − T*(x)|² / Var(γ) (Korotin et al. 2021), in percent."""
    return 100.0 * l2_error(mapped, true) / variance


def source_with_map(problem: Problem, key: Array, n: int) -> tuple[Array, Array | None]:
    """Samples of μ0 and, when known, T* at them (exact pairs when the source has them).

    When the problem holds validation samples, they are used (at most ``n`` of them), never
    training samples.
    """
    if problem.validation is not None:
        x = problem.validation[:n]
        return x, None if problem.true_map is None else jax.vmap(problem.true_map)(x)
    src = problem.source
    if src.has_true_pairs:
        return src.sample_with_map(key, n)
    x = src.sample(key, n)
    if problem.true_map is None:
        return x, None
    return x, jax.vmap(problem.true_map)(x)


def target_samples(problem: Problem, key: Array, n: int) -> Array:
    """Samples of γ: the held-out ones when the problem has them (at most ``n``), else
    ``n`` fresh ones."""
    if problem.validation_target is not None:
        return problem.validation_target[:n]
    return problem.target.sample(key, n)


def energy_distance_floor(y: Array, n: int) -> Array:
    """The energy distance expected between ``n`` points and ``y`` (m points) when both are
    independent samples of the same law: E ED = δ (1/n + 1/m) with δ = E|Y − Y'|, estimated
    from ``y``. A map whose energy distance is at this floor cannot be told from perfect by
    samples of these sizes."""
    m = y.shape[0]
    delta = mean_distance(y, y) * m / max(m - 1, 1)
    return delta * (1.0 / n + 1.0 / m)


def sinkhorn_epsilon(y: Array) -> Array:
    """The ε of the held-out Sinkhorn divergence, fixed by the target rows alone so that
    every map is scored with the same ε: the divergence's own rule
    (:class:`~mongeflow.divergences.Sinkhorn`) for ``y`` against itself, 0.05 ×
    mean_ij |y_i − y_j|²."""
    y = jnp.asarray(y)
    return Sinkhorn().epsilon(y, y)


def sinkhorn_divergence(z: Array, y: Array, epsilon: Array | None = None) -> float:
    """S_ε(z, y), the debiased Sinkhorn divergence between the rows of ``z`` and ``y``
    (Feydy et al. 2019; OTT-JAX's solver, :class:`~mongeflow.divergences.Sinkhorn`), at
    ``epsilon`` (default :func:`sinkhorn_epsilon` of ``y``); NaN when a Sinkhorn solve did
    not converge.

    A two-sample figure that still ranks maps where the energy distance no longer does: on
    the Wasserstein-2 benchmark pair at d = 64 (2 000 rows a side), T* shrunk by 15 % about
    its mean (L2-UVP 2.3 %) has an energy distance of 0.074 against the linear map's 0.049
    (L2-UVP 64 %), but S_ε 7.2 against 35.2 (T* itself: 7.4; :func:`sinkhorn_floor` 5.6).
    It does not separate maps within a few % L2-UVP of each other."""
    y = jnp.asarray(y)
    epsilon = sinkhorn_epsilon(y) if epsilon is None else epsilon
    return float(_sinkhorn_value(jnp.asarray(z, y.dtype), y, jnp.asarray(epsilon, y.dtype)))


def sinkhorn_value(z: Array, y: Array, epsilon: Array) -> Array:
    """S_ε(z, y) as :func:`sinkhorn_divergence` computes it, as a traceable JAX value (NaN
    when a Sinkhorn solve did not converge)."""
    solution = Sinkhorn().solve(z, y, epsilon)
    return jnp.where(solution.converged, solution.divergence, jnp.nan)


_sinkhorn_value = jax.jit(sinkhorn_value)


def sinkhorn_floor(y: Array, epsilon: Array | None = None) -> float:
    """About the S_ε of two independent samples of y's law with len(y) rows each, below
    which :func:`sinkhorn_divergence` cannot tell a map from perfect: half S_ε between the
    two halves of ``y`` (its finite-sample bias, were it to fall as 1/n; measured on the
    Wasserstein-2 benchmark pairs at d = 16 and 64 it falls a little slower: T* scores
    0.60–0.66 × the halves' figure at twice their rows)."""
    half = y.shape[0] // 2
    return 0.5 * sinkhorn_divergence(y[:half], y[half : 2 * half], epsilon)


def min_hessian_eigenvalue(potential: Potential, x: Array) -> Array:
    """Smallest eigenvalue of ∇²φ over the samples ``x: [n, d]`` (≥ 0 for convex φ)."""
    return jnp.min(jax.vmap(lambda xi: jnp.linalg.eigvalsh(hessian(potential, xi))[0])(x))


def monotonicity_violation(potential: Potential, x: Array, y: Array) -> Array:
    """min_i ⟨T(x_i) − T(y_i), x_i − y_i⟩ / |x_i − y_i|² (≥ 0 for a monotone T)."""
    tx, ty = transport(potential, x), transport(potential, y)
    inner = jnp.sum((tx - ty) * (x - y), axis=-1)
    return jnp.min(inner / jnp.maximum(jnp.sum((x - y) ** 2, axis=-1), 1e-30))


def linear_baseline(problem: Problem, key: Array, n: int = 10_000) -> AffinePotential | None:
    """The linear (Bures) baseline: the affine Monge map between N(m0, Σ0), the Gaussian with
    the mean and covariance of ``n`` source samples, and N(m1, Σ1) with γ's mean and
    covariance (exact for a Gaussian γ, else from ``n`` samples of γ):
    T(x) = m1 + A (x − m0), A = Σ0^{-1/2} (Σ0^{1/2} Σ1 Σ0^{1/2})^{1/2} Σ0^{-1/2}.

    It is exact when both sides are Gaussian; every learnt map should beat it (the baseline
    of Korotin et al. 2021's Wasserstein-2 benchmark). For γ known only by V, its moments
    are those of the Laplace approximation (:func:`laplace_moments`). ``None`` when γ has
    neither moments, samples nor a usable mode.
    """
    k_src, k_tgt = jax.random.split(key)
    x = np.asarray(problem.source.sample(k_src, n), dtype=np.float64)
    target = problem.target
    if isinstance(target, Gaussian):
        m1, cov1 = np.asarray(target.mean, np.float64), np.asarray(target.cov, np.float64)
    elif target.can_sample:
        y = np.asarray(target.sample(k_tgt, n), dtype=np.float64)
        m1, cov1 = y.mean(0), np.atleast_2d(np.cov(y.T, bias=True))
    elif target.has_potential:
        m1, cov1 = laplace_moments(target, x.mean(0))
        if m1 is None:
            return None
    else:
        return None
    m0, cov0 = x.mean(0), np.atleast_2d(np.cov(x.T, bias=True))
    d = x.shape[1]
    ridge = 1e-9 * max(float(np.trace(cov0)) / d, 1e-30) * np.eye(d)  # a singular sample
    A = bures_map(cov0 + ridge, cov1)
    return AffinePotential(d, A=A, b=m1 - A @ m0, dtype=jnp.zeros(()).dtype)


def laplace_moments(target, start: np.ndarray):
    """The Laplace approximation N(y*, ∇²V(y*)⁻¹) of γ ∝ exp(−V): y* = argmin V (L-BFGS
    from ``start``). ``(None, None)`` when the minimisation fails or ∇²V(y*) is not
    positive definite."""
    v = jax.jit(target.potential)
    grad = jax.jit(jax.grad(target.potential))
    dtype = jnp.zeros(()).dtype
    res = scipy.optimize.minimize(
        lambda y: float(v(jnp.asarray(y, dtype))),
        start,
        jac=lambda y: np.asarray(grad(jnp.asarray(y, dtype)), np.float64),
        method="L-BFGS-B",
    )
    mode = np.asarray(res.x, np.float64)
    hess = np.asarray(jax.hessian(target.potential)(jnp.asarray(mode, dtype)), np.float64)
    hess = 0.5 * (hess + hess.T)
    if not np.all(np.isfinite(hess)) or np.linalg.eigvalsh(hess).min() <= 0:
        return None, None
    return mode, np.linalg.inv(hess)


def evaluate(problem: Problem, potential: Potential, key: Array, n: int = 10_000) -> dict:
    """Metrics of one trained map on ``n`` fresh samples of each side.

    Held-out samples of the problem (``problem.validation``, ``validation_target``) are used
    when it has them.

    Returns a dict with ``ksd`` (the kernel Stein discrepancy of T#μ0 against γ on
    ``KSD_SIZE`` of the samples, :func:`~mongeflow.stein.kernel_stein_discrepancy`, when γ
    has a potential but no sampler), ``energy_distance`` and its noise floor
    ``energy_distance_floor`` (:func:`energy_distance_floor`; if γ can be sampled), ``l2``,
    ``l2_uvp`` (if T* is known), ``transport_cost`` (E|x − T(x)|², x in the data's units),
    ``objective`` (the held-out
    F = mean V(T(x)) − mean log det ∇²φ(x), if γ has a potential: up to a constant the
    negative log-likelihood of the samples under the model (T⁻¹)#γ, so it ranks maps without
    T*) and ``kl`` (if log ρ0 and log Z are known).

    Units. ``transport_cost`` is always in the data's units (x = m + s z, and T(x) =
    m1 + s w when the target is standardised). Every other figure is computed in the
    problem's coordinates, those ``potential`` was trained in: for a problem whose target
    is in its own units (a target known by V, or no standardisation) ``energy_distance``,
    its floor and ``l2`` are in the target's units; when the target is standardised too
    (``problem.target_shift`` set, a target known by samples) they are in the standardised
    units w = (y − m1)/s, so ``energy_distance`` and its floor are those in the target's
    units divided by s, and ``l2`` divided by s² (with one scale per coordinate, they are
    those of the rescaled sides). ``l2_uvp`` (a ratio to Var γ in the same coordinates),
    ``kl`` and the KSD's verdicts do not depend on an overall scale.
    """
    k_src, k_tgt, k_var = jax.random.split(key, 3)
    x, true = source_with_map(problem, k_src, n)
    mapped = transport(potential, x)
    # the cost in the data's units: x = m + s z when the problem is standardised, and
    # T(x) = m1 + s w when its target is too
    scale = scale_rows(problem.scale)
    x_units = x if problem.shift is None else problem.shift[None, :] + scale * x
    mapped_units = mapped
    if problem.target_shift is not None:
        mapped_units = problem.target_shift[None, :] + scale * mapped
    out = {"transport_cost": jnp.mean(jnp.sum((x_units - mapped_units) ** 2, axis=-1))}
    if problem.target.can_sample:
        y = target_samples(problem, k_tgt, n)
        out["energy_distance"] = energy_distance(mapped, y)
        out["energy_distance_floor"] = energy_distance_floor(y, x.shape[0])
    if true is not None:
        out["l2"] = l2_error(mapped, true)
        out["l2_uvp"] = l2_uvp(mapped, true, target_variance(problem, k_var))
    if problem.target.has_potential:
        out["objective"] = KL().objective(potential, x, problem)
        if not problem.target.can_sample:  # no target samples: the KSD instead of the ED
            y = mapped[:KSD_SIZE]
            out["ksd"] = kernel_stein_discrepancy(y, target_score(problem, y))
    if problem.source.has_log_prob and problem.target.log_normaliser is not None:
        out["kl"] = KL().value(potential, x, problem)
    return out


def posterior_figures(problem: Problem, potential: Potential, key: Array, n: int) -> dict:
    """For a posterior with a shipped MCMC reference
    (:func:`~mongeflow.problems.posterior.reference_for`): the largest error of T#μ0's
    means (``posterior_mean_error``, in posterior sds) and sds (``posterior_sd_error``,
    relative) on ``n`` samples, and the typical largest errors of ``n`` exact draws
    (``posterior_mean_noise``, ``posterior_sd_noise``). Empty for other problems."""
    reference = reference_for(problem)
    if reference is None:
        return {}
    x, _ = source_with_map(problem, key, n)
    errors = posterior_errors(np.asarray(transport(potential, x)), reference)
    return {
        "posterior_mean_error": errors["mean_error"],
        "posterior_sd_error": errors["sd_error"],
        "posterior_mean_noise": errors["mean_noise_max"],
        "posterior_sd_noise": errors["sd_noise_max"],
    }
