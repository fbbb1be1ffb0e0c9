"""mongeflow: learn optimal-transport (Monge) maps with constrained gradient flows.

The method of Dumont, Lacombe & Vialard, *Learning Monge maps by lifting and constraining
Wasserstein gradient flows* (arXiv 2603.25182, 2026): a map T = ∇φ, φ convex, is trained by
discretising the gradient flow of D(T#μ0 | γ) constrained to the cone of Brenier maps.
"""

__version__ = "0.2.0"

from mongeflow.platform import prefer_sequential_cpu_schedule as _prefer_sequential

_prefer_sequential()  # before JAX creates its CPU client (see mongeflow.platform)

from mongeflow import auto  # noqa: E402
from mongeflow.divergences import (  # noqa: E402
    DIVERGENCES,
    KL,
    MMD,
    Divergence,
    Drift,
    EnergyDistance,
    Sinkhorn,
    entropic_score,
)
from mongeflow.fit import Callback, FitInterrupted, FitResult, FitWarning, fit  # noqa: E402
from mongeflow.io import InputError, data_problem, load_array  # noqa: E402
from mongeflow.mapping import load, save  # noqa: E402
from mongeflow.maps import (  # noqa: E402
    ICNN,
    AffinePotential,
    MongeMap,
    Potential,
    default_potential,
    transport,
)
from mongeflow.metrics import energy_distance, evaluate, l2_uvp  # noqa: E402
from mongeflow.problems import (  # noqa: E402
    PROBLEMS,
    EmpiricalSource,
    EmpiricalTarget,
    Gaussian,
    GaussianMixture,
    PotentialTarget,
    Problem,
    SamplerSource,
    get_problem,
)
from mongeflow.progress import Progress  # noqa: E402
from mongeflow.runs import Checkpoint  # noqa: E402
from mongeflow.schemes import (  # noqa: E402
    SCHEMES,
    Adam,
    AdamInner,
    Backtracking,
    Euclidean,
    Explicit,
    GaussNewton,
    Gram,
    IdentityMetric,
    Implicit,
    LBFGSInner,
    Natural,
    Scheme,
    get_scheme,
)

__all__ = [
    "DIVERGENCES",
    "ICNN",
    "KL",
    "MMD",
    "Drift",
    "EnergyDistance",
    "Sinkhorn",
    "PROBLEMS",
    "SCHEMES",
    "Adam",
    "AdamInner",
    "AffinePotential",
    "FitWarning",
    "auto",
    "Backtracking",
    "Callback",
    "Checkpoint",
    "Divergence",
    "EmpiricalSource",
    "EmpiricalTarget",
    "Euclidean",
    "Explicit",
    "FitInterrupted",
    "FitResult",
    "GaussNewton",
    "Gaussian",
    "GaussianMixture",
    "Gram",
    "IdentityMetric",
    "Implicit",
    "InputError",
    "LBFGSInner",
    "MongeMap",
    "Natural",
    "Potential",
    "PotentialTarget",
    "Problem",
    "Progress",
    "SamplerSource",
    "Scheme",
    "data_problem",
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
    "save",
    "transport",
]
