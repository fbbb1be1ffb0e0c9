"""mongeflow: learn optimal-transport (Monge) maps with constrained gradient flows.

The method of Dumont, Lacombe & Vialard, *Learning Monge maps by lifting and constraining
Wasserstein gradient flows* (arXiv 2603.25182, 2026): a map T = ∇φ, φ convex, is trained by
discretising the gradient flow of D(T#μ0 | γ) constrained to the cone of Brenier maps.
"""

import os as _os


def _prefer_sequential_cpu_schedule() -> None:
    """Ask XLA's CPU compiler for its memory-oriented (not concurrency-oriented) schedule.

    With the default schedule, independent batched LAPACK calls (the LU of a batch of
    Hessians, a Cholesky, an eigendecomposition) may run at the same time; each splits its
    batch over XLA's CPU thread pool and waits for its pieces, and on a 2-core machine two
    of them can wait on each other for ever (jaxlib 0.10). The memory-oriented schedule
    orders them. Takes effect if JAX has not created its CPU client yet; a value already in
    ``XLA_FLAGS`` is kept.
    """
    name = "xla_cpu_enable_concurrency_optimized_scheduler"
    flags = _os.environ.get("XLA_FLAGS", "")
    if name not in flags:
        _os.environ["XLA_FLAGS"] = f"{flags} --{name}=false".strip()


_prefer_sequential_cpu_schedule()

from mongeflow.divergences import KL, entropic_score  # noqa: E402
from mongeflow.fit import FitResult, default_potential, fit  # noqa: E402
from mongeflow.io import InputError, load_array  # noqa: E402
from mongeflow.mapping import MongeMap, load  # noqa: E402
from mongeflow.maps import ICNN, AffinePotential, Potential, transport  # noqa: E402
from mongeflow.metrics import energy_distance, evaluate, l2_uvp  # noqa: E402
from mongeflow.problems import (  # noqa: E402
    PROBLEMS,
    EmpiricalSource,
    Gaussian,
    GaussianMixture,
    PotentialTarget,
    Problem,
    SamplerSource,
    get_problem,
)
from mongeflow.schemes import SCHEMES, Adam, Euclidean, Explicit, Implicit, Natural, get_scheme  # noqa: E402

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
