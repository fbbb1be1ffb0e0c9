"""Schemes: how θ moves. One contract (``init`` / ``step``), one registry of CLI names.

The registry maps each CLI name to the scheme's default value; ``--help``, the run records
and :func:`get_scheme` are derived from the settings of these values.
"""

from __future__ import annotations

from mongeflow.schemes.backtracking import Backtracking
from mongeflow.schemes.base import (
    Objective,
    Scheme,
    StepInfo,
    UpdateScheme,
    apply_update,
    feasible,
    gram_solve,
)
from mongeflow.schemes.explicit import Explicit
from mongeflow.schemes.gradient import Adam, Euclidean
from mongeflow.schemes.implicit import Implicit
from mongeflow.schemes.inner import INNER_SOLVERS, AdamInner, GaussNewton, InnerSolver, LBFGSInner
from mongeflow.schemes.metric import METRICS, Gram, IdentityMetric, Metric
from mongeflow.schemes.natural import Natural
from mongeflow.schemes.semidual import SemiDual
from mongeflow.settings import lookup

SCHEMES: dict[str, Scheme] = {
    "euclidean": Euclidean(),
    "adam": Adam(),
    "explicit": Explicit(),
    "implicit": Implicit(),
    "natural": Backtracking(Natural()),
    "semidual": SemiDual(),
}


def get_scheme(name: str, **settings) -> Scheme:
    """A registered scheme by its CLI name, with flat settings (as on the command line).

    Example:
        >>> get_scheme("explicit", tau=0.2, inner_steps=10).inner.steps
        10
    """
    return lookup(SCHEMES, name, settings, "scheme")


__all__ = [
    "INNER_SOLVERS",
    "METRICS",
    "SCHEMES",
    "Adam",
    "AdamInner",
    "Backtracking",
    "Euclidean",
    "Explicit",
    "GaussNewton",
    "Gram",
    "IdentityMetric",
    "Implicit",
    "InnerSolver",
    "LBFGSInner",
    "Metric",
    "Natural",
    "SemiDual",
    "Objective",
    "Scheme",
    "StepInfo",
    "UpdateScheme",
    "apply_update",
    "feasible",
    "get_scheme",
    "gram_solve",
]
