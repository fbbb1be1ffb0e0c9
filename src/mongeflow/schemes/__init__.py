"""Schemes: how θ moves. One interface (``init`` / ``step``), one registry of CLI names."""

from __future__ import annotations

from mongeflow.schemes.base import Scheme, Task, gram_solve
from mongeflow.schemes.explicit import Explicit
from mongeflow.schemes.gradient import Adam, Euclidean
from mongeflow.schemes.implicit import Implicit
from mongeflow.schemes.natural import Natural

SCHEMES: dict[str, type[Scheme]] = {
    "euclidean": Euclidean,
    "adam": Adam,
    "explicit": Explicit,
    "implicit": Implicit,
    "natural": Natural,
}


def get_scheme(name: str, **settings) -> Scheme:
    """Build a registered scheme by its CLI name, with keyword settings.

    Example:
        >>> get_scheme("natural", tau=0.05).tau
        0.05
    """
    if name not in SCHEMES:
        raise ValueError(f"unknown scheme {name!r}; valid schemes: {', '.join(SCHEMES)}")
    return SCHEMES[name](**settings)


__all__ = [
    "SCHEMES",
    "Adam",
    "Euclidean",
    "Explicit",
    "Implicit",
    "Natural",
    "Scheme",
    "Task",
    "get_scheme",
    "gram_solve",
]
