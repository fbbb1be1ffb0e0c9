"""Problems: sources, targets and the registry of built-in problems (keys are CLI names)."""

from __future__ import annotations

from collections.abc import Callable

from mongeflow.problems.base import (
    EmpiricalSource,
    EmpiricalTarget,
    Gaussian,
    GaussianMixture,
    PotentialTarget,
    Problem,
    SamplerSource,
    SamplerTarget,
    Source,
    Target,
)
from mongeflow.problems.builtin import (
    KnownPotentialSource,
    dense_potential,
    gaussian,
    known_potential,
    paper_gmm,
)
from mongeflow.problems.gaussian import affine_flow, bures_map, gaussian_kl
from mongeflow.problems.pairs import dense_pair, gaussian_pair
from mongeflow.problems.posterior import (
    logistic_cancer,
    logistic_regression,
    logistic_wine,
    posterior_errors,
    posterior_reference,
)
from mongeflow.problems.standardise import Standardiser, StandardizedSource, standardize
from mongeflow.problems.w2 import w2_mix3to10, w2_pair

PROBLEMS: dict[str, Callable[..., Problem]] = {
    "paper-gmm": paper_gmm,
    "gaussian": gaussian,
    "known-potential": known_potential,
    "dense-potential": dense_potential,
    "logistic-wine": logistic_wine,
    "logistic-cancer": logistic_cancer,
    "dense-pair": dense_pair,
    "gaussian-pair": gaussian_pair,
    "w2-mix3to10": w2_mix3to10,
    "w2-pair": w2_pair,
}


def get_problem(name: str, dim: int | None = None, **kwargs) -> Problem:
    """Build a registered problem by its CLI name.

    Example:
        >>> get_problem("gaussian", dim=3).dim
        3
    """
    if name not in PROBLEMS:
        raise ValueError(f"unknown problem {name!r}; valid problems: {', '.join(PROBLEMS)}")
    return PROBLEMS[name](dim=dim, **kwargs)


__all__ = [
    "PROBLEMS",
    "EmpiricalSource",
    "EmpiricalTarget",
    "Gaussian",
    "GaussianMixture",
    "KnownPotentialSource",
    "PotentialTarget",
    "Problem",
    "SamplerSource",
    "SamplerTarget",
    "Source",
    "Standardiser",
    "StandardizedSource",
    "Target",
    "affine_flow",
    "bures_map",
    "dense_pair",
    "dense_potential",
    "gaussian",
    "gaussian_pair",
    "gaussian_kl",
    "get_problem",
    "known_potential",
    "logistic_cancer",
    "logistic_regression",
    "logistic_wine",
    "paper_gmm",
    "posterior_errors",
    "posterior_reference",
    "standardize",
    "w2_mix3to10",
    "w2_pair",
]
