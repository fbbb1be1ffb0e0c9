"""Divergences D(T#μ0 | γ) lifted to maps: one contract, one registry of CLI names."""

from mongeflow.divergences.base import Divergence, Task
from mongeflow.divergences.kl import KL
from mongeflow.divergences.score import entropic_score, median_epsilon, pushforward_score
from mongeflow.settings import configure

DIVERGENCES: dict[str, Divergence] = {
    "kl": KL(),
}


def get_divergence(name: str, **settings) -> Divergence:
    """A registered divergence by its CLI name, with flat settings.

    Example:
        >>> get_divergence("kl", gradient="entropic").gradient
        'entropic'
    """
    if name not in DIVERGENCES:
        raise ValueError(f"unknown divergence {name!r}; valid divergences: {', '.join(DIVERGENCES)}")
    return configure(DIVERGENCES[name], settings, f"divergence {name!r}")


__all__ = [
    "DIVERGENCES",
    "KL",
    "Divergence",
    "Task",
    "entropic_score",
    "get_divergence",
    "median_epsilon",
    "pushforward_score",
]
