"""Divergences D(T#μ0 | γ) lifted to maps, their gradients and pointwise velocities."""

from mongeflow.divergences.kl import KL
from mongeflow.divergences.score import entropic_score, median_epsilon, pushforward_score

__all__ = ["KL", "entropic_score", "median_epsilon", "pushforward_score"]
