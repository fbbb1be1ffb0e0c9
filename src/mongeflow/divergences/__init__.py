"""Divergences D(T#μ0 | γ) lifted to maps: one contract, one registry of CLI names."""

from mongeflow.divergences.base import Divergence, Task
from mongeflow.divergences.drift import Drift
from mongeflow.divergences.energy import EnergyDistance
from mongeflow.divergences.kl import KL
from mongeflow.divergences.mmd import MMD
from mongeflow.divergences.score import entropic_score, median_epsilon, pushforward_score
from mongeflow.divergences.sinkhorn import Sinkhorn
from mongeflow.settings import lookup

DIVERGENCES: dict[str, Divergence] = {
    "kl": KL(),
    "energy": EnergyDistance(),
    "mmd": MMD(),
    "sinkhorn": Sinkhorn(),
    "drift": Drift(),
}


def get_divergence(name: str, **settings) -> Divergence:
    """A registered divergence by its CLI name, with flat settings.

    Example:
        >>> get_divergence("kl", gradient="entropic").gradient
        'entropic'
    """
    return lookup(DIVERGENCES, name, settings, "divergence")


__all__ = [
    "DIVERGENCES",
    "KL",
    "MMD",
    "Divergence",
    "Drift",
    "EnergyDistance",
    "Sinkhorn",
    "Task",
    "entropic_score",
    "get_divergence",
    "median_epsilon",
    "pushforward_score",
]
