"""The Mix3toMix10 pairs of the Wasserstein-2 benchmark (Korotin et al. 2021).

Korotin, Li, Genevay, Solomon, Filippov & Burnaev, *Do Neural Optimal Transport Solvers Work? A
Continuous Wasserstein-2 Benchmark*, NeurIPS 2021 (MIT licence, Copyright (c) 2021 Alexander
Korotin; the potentials ship in ``problems/data/w2`` with that notice). Each pair, at
d ∈ {2, 4, 8, 16, 32, 64, 128}, is

- the source μ: an equal-weight mixture of three Gaussians N(c_k, 0.16 M_k M_kᵀ), fixed by
  NumPy's legacy generator seeded with 0 (:func:`mixture_parameters`);
- the map T*(x) = (∇ψ1(x) + ∇ψ2(x) − m) / s, with ψ1, ψ2 two input-convex networks trained by
  the benchmark's authors (:class:`DenseICNN`), m the mean of ∇ψ1 + ∇ψ2 under μ and s the
  square root of its per-coordinate variance averaged over the coordinates. T* is the
  gradient of the convex (ψ1 + ψ2 − mᵀx)/s, hence the Monge map from μ to ν = T*#μ
  (Brenier 1991);
- the target ν = T*#μ: mean 0, total variance d.

Two problems are built on them: ``w2-mix3to10`` (:func:`w2_mix3to10`: fresh samples of both
sides, as the benchmark is run) and ``w2-pair`` (:func:`w2_pair`: two fixed, unpaired sample
sets with held-out rows, as a user's data would be). Scores are the benchmark's
L2-UVP = 100 · E|T(x) − T*(x)|² / Var(ν) (see :func:`mongeflow.metrics.l2_uvp`).
"""

from __future__ import annotations

import functools
import importlib.resources

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from mongeflow.problems.base import Array, GaussianMixture, Problem, SamplerTarget
from mongeflow.problems.pairs import _check, _pair_problem

#: the dimensions whose potentials ship with mongeflow
SUPPORTED_DIMS = (2, 4, 8, 16, 32, 64, 128)
#: standard deviation of the mixture's components before the overall rescaling
COMPONENT_STD = 0.4
#: the networks' strong convexity: ψ(x) includes ½ · 0.01 · |x|²
STRONG_CONVEXITY = 0.01
#: samples of μ from which the map's centring m and scale s are estimated
MOMENT_SAMPLES = 2**18
#: rows pushed through the networks at a time (bounds memory at large d)
CHUNK = 2**14


def check_dim(dim: int | None) -> int:
    """The benchmark's dimension: ``dim`` (2 when ``None``) if its potentials ship here.

    Raises:
        ValueError: ``dim`` is not one of :data:`SUPPORTED_DIMS`.
    """
    d = 2 if dim is None else int(dim)
    if d not in SUPPORTED_DIMS:
        dims = ", ".join(map(str, SUPPORTED_DIMS))
        raise ValueError(f"the W2 benchmark pairs exist for d in {{{dims}}}; got dim={d}")
    return d


def mixture_parameters(dim: int) -> tuple[np.ndarray, np.ndarray]:
    """The centres c_k ``[3, d]`` and factors F_k ``[3, d, d]`` of the benchmark's source μ, in
    float64: component k is x = F_k z + c_k, z ~ N(0, I_d), so its covariance is F_k F_kᵀ.

    Korotin et al. (2021)'s ``RandomGaussianMixSampler(dim=d, num=3, dist=1, std=0.4,
    standardized=True)`` after NumPy's legacy generator is seeded with 0 (drawn here from
    ``np.random.RandomState(0)``, the same stream, so the global state is left alone):

    - c = 0 ``[3, d]``; for each coordinate j in turn, c[:, j] += a random permutation of
      (0, 1, 2) (``choice([0, 1, 2], 3, replace=False)``); then c −= 1;
    - M ~ N(0, 1) ``[3, d, d]``, each row divided by its Euclidean norm;
    - mult = sqrt(mean_k |c_k|² + 0.4² d) / √d, and c_k = c_k / mult, F_k = 0.4 M_k / mult,
      so that μ has total variance d about its mean, 0.
    """
    d = int(dim)
    rng = np.random.RandomState(0)
    centers = np.zeros((3, d))
    for j in range(d):
        centers[:, j] += rng.choice([0, 1, 2], 3, replace=False)
    centers -= 1.0
    maps = rng.normal(size=(3, d, d))
    maps /= np.sqrt(np.sum(maps**2, axis=2, keepdims=True))
    mult = np.sqrt(np.mean(np.sum(centers**2, axis=1)) + d * COMPONENT_STD**2) / np.sqrt(d)
    return centers / mult, COMPONENT_STD * maps / mult


class W2Mixture(GaussianMixture):
    """An equal-weight Gaussian mixture given by factors: component k is x = F_k z + m_k,
    z ~ N(0, I), i.e. N(m_k, F_k F_kᵀ).

    Samples are drawn with the factors themselves rather than with a Cholesky factor of
    F_k F_kᵀ (same law): the benchmark's covariances are ill-conditioned (condition numbers up
    to about 2·10⁷ at d = 128), at the limit of a float32 Cholesky factorisation. The
    log-density is the mixture's (:class:`~mongeflow.problems.GaussianMixture`).
    """

    factors: Array

    def __init__(self, means, factors):
        means = np.asarray(means, dtype=np.float64)
        factors = np.asarray(factors, dtype=np.float64)
        covs = np.einsum("kij,klj->kil", factors, factors)
        super().__init__(np.ones(means.shape[0]), means, covs)
        self.factors = jnp.asarray(factors, dtype=float)

    def sample(self, key: Array, n: int) -> Array:
        return _sample_factors(self, key, int(n))


@functools.partial(jax.jit, static_argnums=2)
def _sample_factors(mixture: W2Mixture, key: Array, n: int) -> Array:
    k_comp, k_noise = jax.random.split(key)
    comp = jax.random.categorical(k_comp, jnp.log(mixture.weights), shape=(n,))
    z = jax.random.normal(k_noise, (n, mixture.dim), dtype=mixture.means.dtype)
    rows = jnp.einsum("kij,nj->kni", mixture.factors, z) + mixture.means[:, None, :]  # [k, n, d]
    onehot = jax.nn.one_hot(comp, mixture.means.shape[0], dtype=rows.dtype)  # [n, k]
    return jnp.einsum("nk,kni->ni", onehot, rows)


class DenseICNN(eqx.Module):
    """The benchmark's input-convex network ψ: R^d → R (the ``DenseICNN`` of Korotin et al.
    2021), evaluated on one point ``x: [d]``.

    With quadratic layers q_k(x)_o = Σ_r (Σ_i x_i Q_k[i, r, o])² + (W_k x + b_k)_o,
    non-negative matrices C_k and celu(u) = u for u > 0, exp(u) − 1 otherwise:

        z_0 = q_0(x),   z_{k+1} = celu(C_k z_k + q_{k+1}(x)),
        ψ(x) = wᵀ z_K + ½ λ |x|²   (λ = 0.01, the strong convexity).

    Attributes:
        quadratic: Q_k ``[d, rank, h_k]``; ``weights``: W_k ``[h_k, d]``; ``biases``: b_k
            ``[h_k]``; ``convex``: C_k ``[h_{k+1}, h_k]``; ``final``: w ``[h_K]``.
    """

    quadratic: tuple[Array, ...]
    weights: tuple[Array, ...]
    biases: tuple[Array, ...]
    convex: tuple[Array, ...]
    final: Array
    strong_convexity: float = eqx.field(static=True, default=STRONG_CONVEXITY)

    @classmethod
    def from_arrays(cls, arrays, strong_convexity: float = STRONG_CONVEXITY) -> DenseICNN:
        """The network from its state-dict arrays (``quadratic_layers.k.quadratic_decomposed``,
        ``.weight``, ``.bias``, ``convex_layers.k.weight``, ``final_layer.weight``)."""
        n_quad = 1 + max(
            int(name.split(".")[1]) for name in arrays if name.startswith("quadratic_layers.")
        )

        def get(name):
            return jnp.asarray(np.asarray(arrays[name]), dtype=float)

        quad = tuple(get(f"quadratic_layers.{k}.quadratic_decomposed") for k in range(n_quad))
        weights = tuple(get(f"quadratic_layers.{k}.weight") for k in range(n_quad))
        biases = tuple(get(f"quadratic_layers.{k}.bias") for k in range(n_quad))
        convex = tuple(get(f"convex_layers.{k}.weight") for k in range(n_quad - 1))
        final = get("final_layer.weight").reshape(-1)
        return cls(quad, weights, biases, convex, final, float(strong_convexity))

    def _quadratic(self, k: int, x: Array) -> Array:
        proj = jnp.einsum("i,iro->ro", x, self.quadratic[k])
        return jnp.sum(proj**2, axis=0) + self.weights[k] @ x + self.biases[k]

    def __call__(self, x: Array) -> Array:
        z = self._quadratic(0, x)
        for k, C in enumerate(self.convex):
            z = jax.nn.celu(C @ z + self._quadratic(k + 1, x))
        return self.final @ z + 0.5 * self.strong_convexity * (x @ x)


class W2Map(eqx.Module):
    """T*(x) = (∇ψ1(x) + ∇ψ2(x) − m) / s, the benchmark's Monge map, for one point ``x: [d]``.

    It is the gradient of the convex Φ(x) = (ψ1(x) + ψ2(x) − mᵀx) / s (:meth:`potential`).
    """

    psi1: DenseICNN
    psi2: DenseICNN
    shift: Array  # m [d]
    scale: Array  # s, a scalar

    def potential(self, x: Array) -> Array:
        """Φ(x) = (ψ1(x) + ψ2(x) − mᵀx) / s, whose gradient is T*."""
        return (self.psi1(x) + self.psi2(x) - self.shift @ x) / self.scale

    def __call__(self, x: Array) -> Array:
        return jax.grad(self.potential)(x)


@eqx.filter_jit
def _apply(f, x: Array) -> Array:
    return jax.vmap(f)(x)


def push(f, x: Array, chunk: int = CHUNK) -> Array:
    """f applied to every row of ``x: [n, d]`` in blocks of b = min(``chunk``, the power of
    two ≥ n) rows, the last one padded: memory stays bounded at any n, and ``f`` is compiled
    for a few block sizes only. Works on traced arrays too (inside ``jax.jit``)."""
    n = x.shape[0]
    chunk = min(int(chunk), 1 << max(n - 1, 0).bit_length())
    pad = (-n) % chunk
    if pad:
        x = jnp.concatenate([x, jnp.zeros((pad, x.shape[1]), x.dtype)])
    parts = [_apply(f, x[i : i + chunk]) for i in range(0, n + pad, chunk)]
    out = parts[0] if len(parts) == 1 else jnp.concatenate(parts)
    return out[:n]


def load_potentials(dim: int) -> tuple[DenseICNN, DenseICNN]:
    """ψ1 and ψ2 of the d-dimensional pair, read from the package data (``{d}_v1.npz``,
    ``{d}_v2.npz``)."""
    d = check_dim(dim)
    folder = importlib.resources.files("mongeflow.problems").joinpath("data/w2")
    nets = []
    for version in (1, 2):
        with folder.joinpath(f"{d}_v{version}.npz").open("rb") as f, np.load(f) as arrays:
            nets.append(DenseICNN.from_arrays({name: arrays[name] for name in arrays.files}))
    return nets[0], nets[1]


def w2_benchmark(dim: int | None = None) -> tuple[W2Mixture, W2Map]:
    """The source μ and the map T* of the d-dimensional Mix3toMix10 pair (Korotin et al. 2021),
    built once per d in a process.

    m and s are estimated from :data:`MOMENT_SAMPLES` (2^18) samples of μ drawn with a fixed
    key (the benchmark uses 2^14): m = mean of g = ∇ψ1 + ∇ψ2, s² = mean over the coordinates
    of g's variance, so that ν = T*#μ has mean 0 and total variance d.

    Raises:
        ValueError: ``dim`` is not one of :data:`SUPPORTED_DIMS`.
    """
    return _build(check_dim(dim))


@functools.cache
def _build(d: int) -> tuple[W2Mixture, W2Map]:
    means, factors = mixture_parameters(d)
    mu = W2Mixture(means, factors)
    psi1, psi2 = load_potentials(d)
    unscaled = W2Map(psi1, psi2, jnp.zeros(d), jnp.asarray(1.0))
    key = jax.random.key(2021)
    total = np.zeros(d)
    squares = np.zeros(d)
    for i in range(MOMENT_SAMPLES // CHUNK):
        g = np.asarray(push(unscaled, mu.sample(jax.random.fold_in(key, i), CHUNK)), np.float64)
        total += g.sum(axis=0)
        squares += (g**2).sum(axis=0)
    mean = total / MOMENT_SAMPLES
    var = squares / MOMENT_SAMPLES - mean**2
    scale = np.sqrt(np.mean(var))
    return mu, W2Map(psi1, psi2, jnp.asarray(mean, dtype=float), jnp.asarray(scale, dtype=float))


@functools.cache
def _target_sampler(dim: int):
    """(key, n) ↦ T*(x) for n fresh x ~ μ: one function per d (a static part of the
    problem, so that a program compiled for one problem of that d serves them all)."""
    mu, true_map = w2_benchmark(dim)

    def sample(key: Array, n: int) -> Array:
        return push(true_map, mu.sample(key, n))

    return sample


def w2_mix3to10(dim: int | None = None) -> Problem:
    """The Mix3toMix10 pair of Korotin et al. (2021)'s Wasserstein-2 benchmark at dimension d,
    sampled afresh on both sides.

    Source μ: the benchmark's mixture of three Gaussians (:func:`mixture_parameters`), with its
    log-density. Target ν = T*#μ, known by samples only: y = T*(x) for fresh x ~ μ. True map
    T*(x) = (∇ψ1(x) + ∇ψ2(x) − m) / s (:func:`w2_benchmark`). Both sides have mean 0 and total
    variance d. The benchmark's baselines (L2-UVP, %) are, for d = 2, 4, …, 128, identity
    32.7, 42.0, 58.6, 87, 121, 137, 145 and linear (Bures) 14.1, 14.9, 27.3, 41.6, 55.3, 63.9,
    63.6.

    Args:
        dim: d, one of :data:`SUPPORTED_DIMS` (2 when ``None``).

    Raises:
        ValueError: ``dim`` is not supported.
    """
    d = check_dim(dim)
    mu, true_map = w2_benchmark(d)
    return Problem("w2-mix3to10", mu, SamplerTarget(_target_sampler(d), d), true_map)


def w2_pair(
    dim: int | None = None, seed: int = 0, n: int = 2**16, validation: float = 0.1
) -> Problem:
    """The Mix3toMix10 pair of Korotin et al. (2021) as two fixed, unpaired sample sets: x ~ μ
    and y = T*(x') for an independent x' ~ μ, with T*(x) = (∇ψ1(x) + ∇ψ2(x) − m) / s
    (:func:`w2_mix3to10`).

    ``n`` rows per side, of which a fraction ``validation`` is held out
    (``Problem.validation`` and ``Problem.validation_target``). The rows keep their
    coordinates: nothing more is standardised (both sides already have mean ≈ 0 and total
    variance ≈ d). ``seed`` fixes the samples (μ and T* are the benchmark's).

    Raises:
        ValueError: ``dim`` is not supported, ``n < 2`` or ``validation`` is outside [0, 0.5).
    """
    d = check_dim(dim)
    _check(d, n, validation)
    mu, true_map = w2_benchmark(d)
    kx, ky, ks = jax.random.split(jax.random.key(7000 + seed), 3)
    x = mu.sample(kx, int(n))
    y = push(true_map, mu.sample(ky, int(n)))
    return _pair_problem("w2-pair", ks, x, y, true_map, validation)


__all__ = [
    "SUPPORTED_DIMS",
    "DenseICNN",
    "W2Map",
    "W2Mixture",
    "check_dim",
    "load_potentials",
    "mixture_parameters",
    "push",
    "w2_benchmark",
    "w2_mix3to10",
    "w2_pair",
]
