"""Potentials φ (ICNN, affine) and the maps T = ∇φ, their Hessians and log-determinants."""

from mongeflow.maps.affine import AffinePotential
from mongeflow.maps.base import (
    Identity,
    IdentityOr,
    Potential,
    hessian,
    log_det_hessian,
    parameter_count,
    transport,
)
from mongeflow.maps.icnn import ICNN

__all__ = [
    "ICNN",
    "AffinePotential",
    "Identity",
    "IdentityOr",
    "Potential",
    "hessian",
    "log_det_hessian",
    "parameter_count",
    "transport",
]
