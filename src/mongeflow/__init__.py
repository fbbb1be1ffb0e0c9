"""mongeflow: learn optimal-transport (Monge) maps with constrained gradient flows.

The method of Dumont, Lacombe & Vialard, *Learning Monge maps by lifting and constraining
Wasserstein gradient flows* (arXiv 2603.25182, 2026): a map T = ∇φ, φ convex, is trained by
discretising the gradient flow of D(T#μ0 | γ) constrained to the cone of Brenier maps.
"""

import importlib
import sys
import types
from typing import TYPE_CHECKING

from mongeflow.platform import prefer_sequential_cpu_schedule as _prefer_sequential

__version__ = "0.2.0"

_prefer_sequential()  # before JAX creates its CPU client (see mongeflow.platform)

# The public names are imported on first use (PEP 562): JAX and Equinox take seconds to
# load, and the command line takes over Ctrl-C before that (see mongeflow.interrupts).
_EXPORTS = {
    "mongeflow.divergences": (
        *("DIVERGENCES", "KL", "MMD", "Divergence", "Drift", "EnergyDistance", "Sinkhorn"),
        "entropic_score",
    ),
    "mongeflow.devices": ("data_mesh",),
    "mongeflow.estimator": ("MongeTransport",),
    "mongeflow.fit": ("Callback", "FitInterrupted", "FitResult", "FitWarning", "fit"),
    "mongeflow.io": ("InputError", "data_problem", "load_array"),
    "mongeflow.loop": ("EarlyStop", "KeepBest", "Monitor", "RunOff", "Validation", "solve"),
    "mongeflow.mapping": ("load", "save"),
    "mongeflow.maps": (
        *("ICNN", "AffinePotential", "MongeMap", "Potential", "default_potential"),
        "transport",
    ),
    "mongeflow.metrics": ("energy_distance", "evaluate", "l2_uvp"),
    "mongeflow.problems": (
        *("PROBLEMS", "EmpiricalSource", "EmpiricalTarget", "Gaussian", "GaussianMixture"),
        *("PotentialTarget", "Problem", "SamplerSource", "get_problem"),
    ),
    "mongeflow.problems.batch": ("Batch", "Sampler"),
    "mongeflow.progress": ("Progress",),
    "mongeflow.runs": ("Checkpoint",),
    "mongeflow.schemes": (
        *("SCHEMES", "Adam", "AdamInner", "Backtracking", "Euclidean", "Explicit"),
        *("GaussNewton", "Gram", "IdentityMetric", "Implicit", "LBFGSInner", "Natural"),
        *("Scheme", "SemiDual", "get_scheme"),
    ),
}
_ORIGIN = {name: module for module, names in _EXPORTS.items() for name in names}

if TYPE_CHECKING:  # the same names, for type checkers and editors
    from mongeflow import auto
    from mongeflow.devices import data_mesh
    from mongeflow.divergences import (
        DIVERGENCES,
        KL,
        MMD,
        Divergence,
        Drift,
        EnergyDistance,
        Sinkhorn,
        entropic_score,
    )
    from mongeflow.estimator import MongeTransport
    from mongeflow.fit import Callback, FitInterrupted, FitResult, FitWarning, fit
    from mongeflow.io import InputError, data_problem, load_array
    from mongeflow.loop import EarlyStop, KeepBest, Monitor, RunOff, Validation, solve
    from mongeflow.mapping import load, save
    from mongeflow.maps import (
        ICNN,
        AffinePotential,
        MongeMap,
        Potential,
        default_potential,
        transport,
    )
    from mongeflow.metrics import energy_distance, evaluate, l2_uvp
    from mongeflow.problems import (
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
    from mongeflow.problems.batch import Batch, Sampler
    from mongeflow.progress import Progress
    from mongeflow.runs import Checkpoint
    from mongeflow.schemes import (
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
        SemiDual,
        get_scheme,
    )


def __getattr__(name: str):
    """A public name (imported now, then kept), or a submodule (``mongeflow.metrics``)."""
    if name.startswith("__"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if name in _ORIGIN:
        value = getattr(importlib.import_module(_ORIGIN[name]), name)
        globals()[name] = value
        return value
    try:
        return importlib.import_module(f"{__name__}.{name}")  # binds it here too
    except ModuleNotFoundError as err:
        if err.name != f"{__name__}.{name}":
            raise
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


class _Package(types.ModuleType):
    """The import system binds a submodule to its name in the package once it has run:
    for ``mongeflow.fit`` that would hide the function ``fit``, so the name keeps the
    function (as the package's own import of it would)."""

    def __setattr__(self, name: str, value) -> None:
        if isinstance(value, types.ModuleType) and _ORIGIN.get(name) == value.__name__:
            value = getattr(value, name)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package

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
    "Batch",
    "Callback",
    "Checkpoint",
    "Divergence",
    "EarlyStop",
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
    "KeepBest",
    "Implicit",
    "InputError",
    "LBFGSInner",
    "Monitor",
    "MongeMap",
    "MongeTransport",
    "Natural",
    "Potential",
    "PotentialTarget",
    "Problem",
    "Progress",
    "RunOff",
    "Sampler",
    "SamplerSource",
    "Scheme",
    "SemiDual",
    "Validation",
    "data_mesh",
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
    "solve",
    "transport",
]
