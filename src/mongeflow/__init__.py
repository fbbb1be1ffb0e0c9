"""mongeflow: learn optimal-transport (Monge) maps with constrained gradient flows.

The method of Dumont, Lacombe & Vialard, *Learning Monge maps by lifting and constraining
Wasserstein gradient flows* (arXiv 2603.25182, 2026): a map T = ∇φ, φ convex, is trained by
discretising the gradient flow of D(T#μ0 | γ) constrained to the cone of Brenier maps.
"""

from mongeflow.divergences import KL, entropic_score
from mongeflow.fit import FitResult, default_potential, fit
from mongeflow.io import InputError, load_array
from mongeflow.mapping import MongeMap, load
from mongeflow.maps import ICNN, AffinePotential, Potential, transport
from mongeflow.metrics import energy_distance, evaluate, l2_uvp
from mongeflow.problems import (
    PROBLEMS,
    EmpiricalSource,
    Gaussian,
    GaussianMixture,
    PotentialTarget,
    Problem,
    SamplerSource,
    get_problem,
)
from mongeflow.schemes import SCHEMES, Adam, Euclidean, Explicit, Implicit, Natural, get_scheme

__version__ = "0.1.0"

__all__ = [
    "ICNN",
    "KL",
    "PROBLEMS",
    "SCHEMES",
    "Adam",
    "AffinePotential",
    "EmpiricalSource",
    "Euclidean",
    "Explicit",
    "FitResult",
    "Gaussian",
    "GaussianMixture",
    "Implicit",
    "InputError",
    "MongeMap",
    "Natural",
    "Potential",
    "PotentialTarget",
    "Problem",
    "SamplerSource",
    "default_potential",
    "energy_distance",
    "entropic_score",
    "evaluate",
    "fit",
    "get_problem",
    "get_scheme",
    "l2_uvp",
    "load",
    "load_array",
    "transport",
]
