"""The library's default map, defined once."""

from __future__ import annotations

from collections.abc import Callable

from mongeflow.maps.base import Array, Potential
from mongeflow.maps.icnn import ICNN

DEFAULT_WIDTHS = (20, 20)


def default_potential(
    dim: int, widths: tuple[int, ...] = DEFAULT_WIDTHS, strong_convexity: float = 0.0
) -> Callable[[Array], Potential]:
    """A factory ``key -> ICNN``: hidden ``widths`` (default (20, 20)), a full-rank PSD
    quadratic term (rank min(d, 64), so affine maps are exact), starting at T = id.

    Example:
        >>> import jax
        >>> default_potential(3)(jax.random.key(0)).quad_factor.shape
        (3, 3)
    """
    widths = tuple(int(w) for w in widths)
    if not widths or min(widths) < 1:
        raise ValueError(f"widths must be positive integers, got {widths}")

    def make(key: Array) -> Potential:
        return ICNN(
            dim,
            key,
            widths=widths,
            quadratic_rank=min(dim, 64),
            identity_init=True,
            strong_convexity=strong_convexity,
        )

    return make
