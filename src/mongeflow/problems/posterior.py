"""Bayesian logistic regression posteriors: ``logistic-wine`` and ``logistic-cancer``.

The target is the posterior of the weights w ∈ R^d of a logistic regression with a
Gaussian prior,

    γ(w) ∝ exp(−V(w)),   V(w) = Σ_i softplus(−s_i x_iᵀ w) + |w|² / (2 σ²),      (1)

where x_i are the data's features (z-scored, with a constant 1 appended for the intercept),
s_i ∈ {−1, +1} the labels, softplus(t) = log(1 + eᵗ) (so softplus(−s xᵀw) = −log σ(s xᵀw),
the negative log-likelihood of one observation) and σ the prior scale. Each softplus term is
convex with Hessian σ'(·) x_i x_iᵀ ⪰ 0, so ∇²V ⪰ I / σ²: γ is strongly log-concave and V's
convexity constant is 1/σ² (exact in directions in which the data say nothing).

The normalising constant is unknown; the reference is a long NUTS run
(``benchmarks/posterior/reference.py``) whose per-coordinate mean and standard deviation,
with their Monte Carlo standard errors, are shipped in ``problems/data/`` and read by
:func:`posterior_reference`. :func:`posterior_errors` compares samples with it.

Datasets (both ship with scikit-learn, nothing is downloaded):

- ``"wine"`` (UCI wine, 178 samples, 13 features): class 0 (s = +1) against classes 1 and 2
  (s = −1); d = 14.
- ``"breast-cancer"`` (UCI Wisconsin diagnostic, 569 samples, 30 features): benign (s = +1)
  against malignant (s = −1); d = 31.

Features are z-scored with the population standard deviation (ddof = 0); the intercept is the
last coordinate of w.
"""

from __future__ import annotations

import functools
import importlib.resources
import json
import math

import jax
import jax.numpy as jnp
import numpy as np

from mongeflow.problems.base import Array, Gaussian, PotentialTarget, Problem

# Prior N(0, σ² I) with σ = 1: with z-scored features, effects on the log-odds of up to about
# ±2 per standard deviation of a feature are a priori plausible (the 95 % prior interval),
# much larger ones are not. It keeps the nearly separable breast-cancer posterior concentrated
# (posterior sds 0.41–0.93 in both problems) and V 1-convex.
PRIOR_SCALE = 1.0

DATASETS = ("wine", "breast-cancer")

# problem name -> dataset, for the registered problems (default prior scale)
POSTERIOR_PROBLEMS = {"logistic-wine": "wine", "logistic-cancer": "breast-cancer"}
_PROBLEM_NAMES = {dataset: name for name, dataset in POSTERIOR_PROBLEMS.items()}


@functools.cache
def _design(dataset: str) -> np.ndarray:
    """The matrix A with rows a_i = s_i x_i (float64, shape [N, d]), so that the likelihood
    term of (1) is Σ_i softplus(−a_iᵀ w).

    scikit-learn is imported here, when a posterior problem is built, so that importing
    mongeflow does not pay for it.
    """
    from sklearn.datasets import load_breast_cancer, load_wine

    if dataset == "wine":
        raw = load_wine()
        signs = np.where(raw.target == 0, 1.0, -1.0)
    elif dataset == "breast-cancer":
        raw = load_breast_cancer()
        signs = np.where(raw.target == 1, 1.0, -1.0)  # 1 = benign in scikit-learn
    else:
        raise ValueError(f"unknown dataset {dataset!r}; valid datasets: {', '.join(DATASETS)}")
    x = np.asarray(raw.data, dtype=np.float64)
    x = (x - x.mean(0)) / x.std(0)
    x = np.concatenate([x, np.ones((x.shape[0], 1))], axis=1)
    a = signs[:, None] * x
    a.setflags(write=False)
    return a


def logistic_data(dataset: str) -> np.ndarray:
    """The rows a_i = s_i x_i of the dataset (float64 ``[N, d]``; intercept last)."""
    return _design(dataset)


@functools.cache
def logistic_potential_fn(dataset: str, prior_scale: float = PRIOR_SCALE):
    """V of (1) for one sample ``w: [d]`` → scalar, in the dtype of ``w``.

    Cached: every problem built with the same dataset and prior scale holds the same
    function, so compiled programs that take V as a static argument are reused.

    softplus is evaluated by ``jax.nn.softplus`` (log(1 + eᵗ) = max(t, 0) + log1p(e^{−|t|})),
    which neither overflows for large t nor loses the small values for very negative t.
    """
    if not prior_scale > 0:
        raise ValueError(f"prior_scale must be > 0, got {prior_scale}")
    a = _design(dataset)
    precision = 1.0 / float(prior_scale) ** 2

    def potential(w: Array) -> Array:
        margins = jnp.asarray(a, dtype=w.dtype) @ w
        return jnp.sum(jax.nn.softplus(-margins)) + 0.5 * precision * jnp.sum(w**2)

    return potential


def logistic_regression(
    dim: int | None = None, dataset: str = "wine", prior_scale: float = PRIOR_SCALE
) -> Problem:
    """The posterior (1) of a Bayesian logistic regression as a target; source N(0, I_d).

    Args:
        dim: ``None`` or the dataset's dimension (14 for wine, 31 for breast-cancer).
        dataset: ``"wine"`` or ``"breast-cancer"``.
        prior_scale: σ of the prior N(0, σ² I) (default 1.0); V is 1/σ²-convex. The shipped
            reference (:func:`posterior_reference`) is for the default only.

    Raises:
        ValueError: for an unknown dataset, a non-positive ``prior_scale`` or a ``dim`` other
            than the dataset's.
    """
    a = _design(dataset)
    d = a.shape[1]
    if dim is not None and int(dim) != d:
        raise ValueError(
            f"the {dataset} logistic-regression posterior has dimension {d} "
            f"({d - 1} features and an intercept); got dim={dim} (leave dim unset)"
        )
    target = PotentialTarget(
        logistic_potential_fn(dataset, float(prior_scale)),
        d,
        convexity=1.0 / float(prior_scale) ** 2,
    )
    return Problem(_PROBLEM_NAMES[dataset], Gaussian.standard(d), target)


def logistic_wine(dim: int | None = None, prior_scale: float = PRIOR_SCALE) -> Problem:
    """``logistic-wine``: :func:`logistic_regression` on the wine data (d = 14)."""
    return logistic_regression(dim, dataset="wine", prior_scale=prior_scale)


def logistic_cancer(dim: int | None = None, prior_scale: float = PRIOR_SCALE) -> Problem:
    """``logistic-cancer``: :func:`logistic_regression` on the breast-cancer data (d = 31)."""
    return logistic_regression(dim, dataset="breast-cancer", prior_scale=prior_scale)


def reference_path(dataset: str):
    """Where the shipped reference of ``dataset`` lives (an importlib.resources path)."""
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; valid datasets: {', '.join(DATASETS)}")
    return importlib.resources.files("mongeflow.problems").joinpath(f"data/logistic_{dataset}.npz")


def posterior_reference(dataset: str) -> dict:
    """The NUTS reference of the posterior (1) with the default prior, for ``dataset``.

    Returns a dict of float64 arrays ``mean``, ``sd``, ``mcse_mean``, ``mcse_sd``, ``ess``
    (``[d]`` each; the MCSEs from the multi-chain effective sample size, see
    ``benchmarks/posterior/reference.py``), ``ess_sq`` (the ESS of (w_j − mean_j)²),
    ``mcse_mean_bm`` (batch-means check of ``mcse_mean``), ``rhat`` (rank-normalised split
    R-hat), the int ``n_draws`` (draws
    kept, all chains), the float ``prior_scale`` and ``settings`` (a dict of the run's
    settings). A problem name (``"logistic-wine"``) is accepted for its dataset.
    """
    dataset = POSTERIOR_PROBLEMS.get(dataset, dataset)
    path = reference_path(dataset)
    if not path.is_file():
        raise FileNotFoundError(
            f"no posterior reference for {dataset!r} at {path}; run "
            f"benchmarks/posterior/reference.py --dataset {dataset}"
        )
    with path.open("rb") as f, np.load(f, allow_pickle=False) as z:
        out = {k: np.asarray(z[k], dtype=np.float64) for k in z.files if k != "settings"}
        settings = json.loads(str(z["settings"]))
    out["n_draws"] = int(out["n_draws"])
    out["prior_scale"] = float(out["prior_scale"])
    out["settings"] = settings
    return out


def reference_for(problem: Problem) -> dict | None:
    """The shipped reference of ``problem`` when it is a registered logistic-regression
    posterior with the reference's prior scale, else ``None``."""
    dataset = POSTERIOR_PROBLEMS.get(problem.name)
    if dataset is None:
        return None
    ref = posterior_reference(dataset)
    lam = problem.target.convexity
    if lam is None or not math.isclose(lam, 1.0 / ref["prior_scale"] ** 2, rel_tol=1e-9):
        return None
    return ref


def posterior_errors(samples, reference: dict | str) -> dict:
    """Per-coordinate errors of the mean and standard deviation of ``samples`` against the
    reference, in units of the reference's posterior standard deviation.

    For ``samples: [n, d]`` with mean m̂ and sd ŝ (ddof = 1), and the reference's m, s:

        mean_errors_j = |m̂_j − m_j| / s_j,      sd_errors_j = |ŝ_j / s_j − 1|,

    ``mean_error`` and ``sd_error`` are their maxima over the coordinates.

    The noise floor: for n exact, independent draws m̂_j − m_j ≈ N(0, s_j²/n) and, for a
    near-Gaussian posterior, ŝ_j / s_j − 1 ≈ N(0, 1/(2n)); the reference adds its own MCSE.
    ``mean_noise`` = sqrt(1/n + max_j (mcse_mean_j / s_j)²) and ``sd_noise`` =
    sqrt(1/(2n) + max_j (mcse_sd_j / s_j)²) are the per-coordinate standard deviations of the
    two errors for exact samples. Their maxima over the d coordinates are larger:
    ``mean_noise_max`` and ``sd_noise_max`` multiply by E max_{j ≤ d} |Z_j| for independent
    standard normals Z_j (2.02 for d = 14, 2.34 for d = 31): the typical size of the maximal
    errors of exact samples.

    Args:
        samples: ``[n, d]`` draws (JAX or NumPy; evaluated in float64).
        reference: a dict from :func:`posterior_reference`, or a dataset / problem name.

    Returns:
        A dict: ``mean_error``, ``sd_error``, ``mean_noise``, ``sd_noise``,
        ``mean_noise_max``, ``sd_noise_max`` (floats), ``mean_errors``, ``sd_errors``
        (``[d]`` float64 arrays) and ``n``.
    """
    if isinstance(reference, str):
        reference = posterior_reference(reference)
    x = np.asarray(samples, dtype=np.float64)
    ref_mean = np.asarray(reference["mean"], np.float64)
    ref_sd = np.asarray(reference["sd"], np.float64)
    if x.ndim != 2 or x.shape[1] != ref_mean.shape[0]:
        raise ValueError(f"samples must have shape [n, {ref_mean.shape[0]}], got {x.shape}")
    n = x.shape[0]
    if n < 2:
        raise ValueError("posterior_errors needs at least 2 samples")
    mean_errors = np.abs(x.mean(0) - ref_mean) / ref_sd
    sd_errors = np.abs(x.std(0, ddof=1) / ref_sd - 1.0)
    ref_mean_noise = np.max(np.asarray(reference.get("mcse_mean", 0.0)) / ref_sd)
    ref_sd_noise = np.max(np.asarray(reference.get("mcse_sd", 0.0)) / ref_sd)
    mean_noise = math.sqrt(1.0 / n + float(ref_mean_noise) ** 2)
    sd_noise = math.sqrt(1.0 / (2 * n) + float(ref_sd_noise) ** 2)
    spread = _expected_max_abs_normal(ref_mean.shape[0])
    return {
        "mean_error": float(mean_errors.max()),
        "sd_error": float(sd_errors.max()),
        "mean_errors": mean_errors,
        "sd_errors": sd_errors,
        "mean_noise": mean_noise,
        "sd_noise": sd_noise,
        "mean_noise_max": spread * mean_noise,
        "sd_noise_max": spread * sd_noise,
        "n": n,
    }


def _expected_max_abs_normal(d: int) -> float:
    """E max_{j ≤ d} |Z_j| for independent standard normals, by quadrature of
    ∫_0^∞ (1 − (2Φ(t) − 1)^d) dt."""
    t = np.linspace(0.0, 10.0, 4001)
    cdf_abs = np.array([math.erf(v / math.sqrt(2.0)) for v in t])
    f = 1.0 - cdf_abs**d
    return float(np.sum((f[1:] + f[:-1]) * 0.5 * np.diff(t)))
