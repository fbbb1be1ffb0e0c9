"""Potentials φ (ICNN, affine), the maps T = ∇φ they define, and the learnt MongeMap."""

from mongeflow.maps.affine import AffinePotential
from mongeflow.maps.base import (
    Identity,
    IdentityOr,
    Potential,
    hessian,
    log_det_hessian,
    log_det_psd,
    parameter_count,
    transport,
)
from mongeflow.maps.default import default_potential
from mongeflow.maps.icnn import ICNN
from mongeflow.maps.monge import MongeMap, StandardizedPotential

__all__ = [
    "ICNN",
    "AffinePotential",
    "Identity",
    "IdentityOr",
    "MongeMap",
    "Potential",
    "StandardizedPotential",
    "hessian",
    "log_det_hessian",
    "log_det_psd",
    "parameter_count",
    "default_potential",
    "transport",
]
