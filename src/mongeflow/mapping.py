"""A trained Monge map in the user's units: apply, invert, density, sample, save and load."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from mongeflow.maps import ICNN, AffinePotential, Potential, hessian, log_det_hessian, transport
from mongeflow.problems.base import Target

FORMAT = "mongeflow-map/1"


def potential_config(potential: Potential) -> dict[str, Any]:
    """What is needed to rebuild the potential's structure (its values are saved apart)."""
    if isinstance(potential, ICNN):
        widths = (potential.input_weight.shape[0], *(w.shape[0] for w in potential.z_weights))
        return {
            "class": "ICNN",
            "dim": int(potential.input_weight.shape[1]),
            "widths": [int(w) for w in widths],
            "nonnegativity": potential.nonnegativity,
            "quadratic_rank": None
            if potential.quad_factor is None
            else int(potential.quad_factor.shape[1]),
            "linear_skip": potential.linear is not None,
            "strong_convexity": potential.strong_convexity,
            "dtype": str(potential.input_weight.dtype),
        }
    if isinstance(potential, AffinePotential):
        return {"class": "AffinePotential", "dim": potential.dim, "dtype": str(potential.b.dtype)}
    raise TypeError(f"cannot save a potential of type {type(potential).__name__}")


def potential_skeleton(config: dict[str, Any]) -> Potential:
    dtype = jnp.dtype(config.get("dtype", "float32"))
    if config["class"] == "ICNN":
        return ICNN(
            config["dim"],
            jax.random.key(0),
            widths=tuple(config["widths"]),
            nonnegativity=config["nonnegativity"],
            quadratic_rank=config["quadratic_rank"],
            linear_skip=config["linear_skip"],
            strong_convexity=config["strong_convexity"],
            dtype=dtype,
        )
    if config["class"] == "AffinePotential":
        return AffinePotential(config["dim"], dtype=dtype)
    raise ValueError(f"unknown potential class {config['class']!r}")


class MongeMap:
    """T(x) = ∇Φ(x) with Φ(x) = s · φ((x − m)/s): the learnt map in the user's units.

    φ was trained on standardised data z = (x − m)/s (m = 0, s = 1 without
    standardisation). A single scale s keeps T the gradient of a convex function, hence still
    the Brenier map of the data; per-coordinate scaling would not.

    Args:
        potential: the trained φ.
        target: γ (needed for :meth:`log_density` and :meth:`sample`).
        shift, scale: m and s.
        target_record: how to rebuild γ when loading (see :func:`mongeflow.io.parse_target`).
        info: anything JSON-able to keep with the map (settings, metrics).
    """

    def __init__(
        self,
        potential: Potential,
        target: Target | None = None,
        shift=None,
        scale: float = 1.0,
        target_record: dict | None = None,
        info: dict | None = None,
    ):
        self.potential = potential
        self.target = target
        cfg = potential_config(potential)
        self.dim = int(cfg["dim"])
        self.shift = np.zeros(self.dim) if shift is None else np.asarray(shift, dtype=np.float64)
        self.scale = float(scale)
        self.target_record = target_record
        self.info = dict(info or {})

    # --- evaluation -------------------------------------------------------------------
    def _dtype(self):
        return jax.tree_util.tree_leaves(eqx.filter(self.potential, eqx.is_inexact_array))[0].dtype

    def _check(self, x, what="x") -> jnp.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if x.ndim == 1 and x.shape[0] == self.dim:
            x = x[None, :]
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"{what} must have shape [n, {self.dim}], got {x.shape}")
        if not np.all(np.isfinite(x)):
            raise ValueError(f"{what} contains NaN/inf")
        return jnp.asarray(x, dtype=self._dtype())

    def _z(self, x):
        return (x - jnp.asarray(self.shift, x.dtype)[None, :]) / self.scale

    def to_data_units(self, z) -> np.ndarray:
        """x = m + s z: points of the map's standardised space in the data's units."""
        return np.asarray(z, dtype=np.float64) * self.scale + self.shift

    def transport(self, x) -> np.ndarray:
        """T(x) for ``x: [n, d]``."""
        return np.asarray(transport(self.potential, self._z(self._check(x))))

    __call__ = transport

    def log_det_jacobian(self, x) -> np.ndarray:
        """log det DT(x) = log det ∇²φ(z) − d log s."""
        z = self._z(self._check(x))
        logdet = jax.vmap(lambda zi: log_det_hessian(self.potential, zi))(z)
        logdet = jnp.where(jnp.isnan(logdet), -jnp.inf, logdet)  # not positive definite
        return np.asarray(logdet) - self.dim * np.log(self.scale)

    def inverse(self, y, iterations: int = 50, return_residual: bool = False):
        """T⁻¹(y) = ∇Φ*(y), by damped Newton on the convex conjugate problem
        min_z φ(z) − ⟨z, y⟩ (with backtracking), then x = m + s z.

        Returns x, and with ``return_residual`` also |T(x) − y| per point.
        """
        y = self._check(y, "y")
        z = jax.jit(jax.vmap(lambda yi: _newton_conjugate(self.potential, yi, iterations)))(y)
        x = self.to_data_units(z)
        if not return_residual:
            return x
        residual = np.linalg.norm(self.transport(x) - np.asarray(y), axis=1)
        return x, residual

    def log_density(self, x) -> np.ndarray:
        """log ρ0(x) = log γ(T(x)) + log det DT(x) (the source density the map implies).

        Needs γ's normalising constant (known for Gaussian targets).
        """
        if self.target is None or self.target.log_normaliser is None:
            raise ValueError(
                "the density needs the target's normalising constant, which is unknown for "
                "this target (a potential V given as a function)"
            )
        y = jnp.asarray(self.transport(x))
        log_gamma = -jax.vmap(self.target.potential)(y) - self.target.log_normaliser
        return np.asarray(log_gamma) + self.log_det_jacobian(x)

    def sample(self, n: int, seed: int = 0, return_residual: bool = False):
        """n samples of the source as T⁻¹ of samples of γ (needs a target that can sample)."""
        if self.target is None or not self.target.can_sample:
            raise ValueError("sampling needs a target that can be sampled (a Gaussian target)")
        y = np.asarray(self.target.sample(jax.random.key(seed), int(n)), dtype=np.float64)
        return self.inverse(y, return_residual=return_residual)

    # --- persistence ------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write ``path/map.eqx`` (the parameters) and ``path/map.json`` (everything else)."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        eqx.tree_serialise_leaves(path / "map.eqx", self.potential)
        meta = {
            "format": FORMAT,
            "potential": potential_config(self.potential),
            "shift": self.shift.tolist(),
            "scale": self.scale,
            "target": self.target_record,
            "info": self.info,
        }
        (path / "map.json").write_text(json.dumps(meta, indent=2, default=_jsonable) + "\n")
        return path

    @classmethod
    def load(cls, path: str | Path) -> MongeMap:
        """Read a map written by :meth:`save` (``path`` is its directory)."""
        from mongeflow.io import InputError, target_from_record

        path = Path(path)
        meta_file, leaves = path / "map.json", path / "map.eqx"
        if not path.is_dir() or not meta_file.is_file() or not leaves.is_file():
            raise InputError(
                f"{str(path)!r} is not a saved map (expected a directory with map.json and "
                "map.eqx, as written by `mongeflow fit` or MongeMap.save)"
            )
        try:
            meta = json.loads(meta_file.read_text())
        except json.JSONDecodeError as err:
            raise InputError(f"{str(meta_file)!r} is not valid JSON: {err}") from None
        if meta.get("format") != FORMAT:
            raise InputError(f"{str(meta_file)!r}: unknown format {meta.get('format')!r}")
        skeleton = potential_skeleton(meta["potential"])
        try:
            potential = eqx.tree_deserialise_leaves(leaves, skeleton)
        except Exception as err:  # a truncated or mismatched file
            raise InputError(f"cannot read {str(leaves)!r}: {err}") from None
        record = meta.get("target")
        target = target_from_record(record) if record else None
        return cls(potential, target, meta["shift"], meta["scale"], record, meta.get("info"))


def load(path: str | Path) -> MongeMap:
    """Load a map saved by ``mongeflow fit`` or :meth:`MongeMap.save`."""
    return MongeMap.load(path)


def _jsonable(v):
    v = np.asarray(v)
    return v.item() if v.size == 1 else v.tolist()


def _newton_conjugate(potential: Potential, y, iterations: int):
    """argmin_z φ(z) − ⟨z, y⟩, damped Newton with halving line search, from z = y."""

    def objective(z):
        return potential(z) - z @ y

    def step(z, _):
        g = jax.grad(potential)(z) - y
        h = hessian(potential, z)
        mu = 1e-8 * (1.0 + jnp.trace(h))
        dz = -jnp.linalg.solve(h + mu * jnp.eye(z.shape[0], dtype=z.dtype), g)
        f0 = objective(z)
        slope = g @ dz

        def search(carry):
            t, _ = carry
            return t * 0.5, objective(z + 0.5 * t * dz)

        def keep_going(carry):
            t, f = carry
            return (f > f0 + 1e-4 * t * slope) & (t > 1e-6)

        t, _ = jax.lax.while_loop(keep_going, search, (1.0, objective(z + dz)))
        z_new = z + t * dz
        return jnp.where(jnp.all(jnp.isfinite(z_new)), z_new, z), None

    z, _ = jax.lax.scan(step, y, None, length=iterations)
    return z
