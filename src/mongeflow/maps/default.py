"""The library's default map, defined once."""

from __future__ import annotations

from collections.abc import Callable

from mongeflow.maps.base import Array, Potential
from mongeflow.maps.icnn import HIDDEN_SCALE, ICNN, check_activation, check_nonnegativity


def auto_widths(dim: int) -> tuple[int, int]:
    """ICNN hidden widths for dimension d: (64, 64) up to d = 32, (2d, 2d) above.

    Measured on the ``dense-potential`` problem at d = 16 (Adam, cosine-decayed rate, 1 000
    steps): widths 20 left 2.3 % L2-UVP, widths 64 1.0 %, widths 128 0.9 %.
    """
    w = max(64, 2 * int(dim))
    return (w, w)


#: the scale s of the hidden non-negative weights' start, max(N(0, s²), 0), of a network
#: kept non-negative by the softplus reparametrisation (the semi-dual game's up to d = 8).
#: Played by the automatic game on the Wasserstein-2 benchmark pair (2^16 rows a side, one
#: fit each), 0.03 left 0.041 % L2-UVP at d = 2, 0.357 and 0.257 % at d = 4 (seeds 0, 1),
#: 0.977 and 0.939 % at d = 8, against 0.055, 0.424, 0.326, 1.053 and 1.143 % at 0.1; on
#: ``dense-pair`` (9 000 rows a side) 0.075 % at d = 2, 0.212 and 0.181 % at d = 4,
#: against 0.075, 0.198 and 0.216 %. All at the floor (s = 0) left 0.284 and 0.254 % at
#: d = 4 but 1.195 and 1.207 % at d = 8, and 0.218 and 0.248 % on ``dense-pair`` at d = 4.
#: Through the command line (the rows standardised, seeds 0 and 1): 0.06 % at d = 2, 0.30
#: and 0.29 % at d = 4, 0.93 and 1.13 % at d = 8, against 0.08, 0.39, 0.45, 1.04, 1.10 %;
#: on ``dense-pair`` 0.14 % at d = 2, 0.18, 0.15 and 0.16 % at d = 4 (seeds 0, 1, 2),
#: against 0.14, 0.14, 0.15 and 0.16 %.
REPARAMETRISED_SCALE = 0.03


def default_potential(
    dim: int,
    widths: tuple[int, ...] | None = None,
    strong_convexity: float = 0.0,
    activation: str = "softplus",
    nonnegativity: str = "clamp",
    hidden_scale: float | None = None,
) -> Callable[[Array], Potential]:
    """A factory ``key -> ICNN``: hidden ``widths`` (default :func:`auto_widths`), a
    full-rank PSD quadratic term (rank min(d, 64), so affine maps are exact), starting at
    T = id, with the ``activation``, ``nonnegativity`` and ``hidden_scale`` of
    :class:`~mongeflow.maps.ICNN`; ``hidden_scale`` ``None``: :data:`REPARAMETRISED_SCALE`
    for a ``"softplus"`` network, else the ICNN's own
    (:data:`~mongeflow.maps.icnn.HIDDEN_SCALE`, 0.1).

    Example:
        >>> import jax
        >>> default_potential(3)(jax.random.key(0)).quad_factor.shape
        (3, 3)
    """
    widths = auto_widths(dim) if widths is None else tuple(int(w) for w in widths)
    if not widths or min(widths) < 1:
        raise ValueError(f"widths must be positive integers, got {widths}")
    check_activation(activation)  # before any network is built (a factory is lazy)
    check_nonnegativity(nonnegativity)
    if hidden_scale is None:
        hidden_scale = REPARAMETRISED_SCALE if nonnegativity == "softplus" else HIDDEN_SCALE

    def make(key: Array) -> Potential:
        return ICNN(
            dim,
            key,
            widths=widths,
            quadratic_rank=min(dim, 64),
            identity_init=True,
            strong_convexity=strong_convexity,
            activation=activation,
            nonnegativity=nonnegativity,
            hidden_scale=hidden_scale,
        )

    return make
