"""Saving and loading learnt Monge maps.

A saved map is a directory holding ``map.eqx`` (the potential's parameters, written by
``eqx.tree_serialise_leaves``) and ``map.json``: the format, the potential's structure, the
standardisation (shift, scale and, when the target was standardised too, target_shift), a
record of the target and free-form info. A target known by samples is saved beside them,
its rows in ``target.npy``, in the user's units (the map holds them standardised,
w = (y − target_shift)/scale, when ``target_shift`` is saved).

Example:
    >>> import jax, tempfile
    >>> from mongeflow.maps import ICNN, MongeMap
    >>> from mongeflow.problems import Gaussian
    >>> T = MongeMap(ICNN(2, jax.random.key(0)), target=Gaussian.standard(2))
    >>> path = save(T, tempfile.mkdtemp(), info={"steps": 0})
    >>> bool((load(path).transport(jax.numpy.ones(2)) == T.transport(jax.numpy.ones(2))).all())
    True
    >>> read_info(path)
    {'steps': 0}
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from mongeflow.io import InputError, target_from_record
from mongeflow.maps import ICNN, AffinePotential, Potential
from mongeflow.maps.monge import MongeMap
from mongeflow.problems.base import EmpiricalTarget, Gaussian, PotentialTarget, Target

FORMAT = "mongeflow-map/1"
#: the format of a map whose target is standardised too (``target_shift``): a reader that
#: knows only :data:`FORMAT` would ignore the target's shift and scale, so it must refuse it
FORMAT_TARGET_STANDARDIZED = "mongeflow-map/2"
FORMATS = (FORMAT, FORMAT_TARGET_STANDARDIZED)
#: the file holding the rows of a target known by samples, beside map.json
TARGET_SAMPLES_FILE = "target.npy"

__all__ = [
    "FORMAT",
    "FORMATS",
    "FORMAT_TARGET_STANDARDIZED",
    "TARGET_SAMPLES_FILE",
    "MongeMap",
    "load",
    "potential_config",
    "potential_skeleton",
    "read_info",
    "save",
    "target_record",
]


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
    """A potential of the structure ``config`` describes (its values to be read into it)."""
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


def target_record(target: Target | None) -> dict | None:
    """A JSON-able record from which :func:`mongeflow.io.target_from_record` rebuilds γ.

    A :class:`~mongeflow.problems.Gaussian` is saved by its mean and covariance; a
    :class:`~mongeflow.problems.PotentialTarget` read from a file (its ``origin`` set, as
    :func:`mongeflow.io.parse_target` does) by that file, the function's name and, when
    known, its ``log_normaliser`` and ``convexity`` (a ``sampler`` is not saved); an
    :class:`~mongeflow.problems.EmpiricalTarget` by the name of the ``.npy`` file, beside
    map.json, that :func:`save` writes its rows to. Anything else (``None``, a V given as a
    Python function) has no record: ``None``.
    """
    if isinstance(target, EmpiricalTarget):
        return {
            "kind": "samples",
            "dim": target.dim,
            "n": int(target.data.shape[0]),
            "file": TARGET_SAMPLES_FILE,
            "dtype": str(target.data.dtype),
        }
    if isinstance(target, Gaussian):
        return {
            "kind": "gaussian",
            "dim": target.dim,
            "mean": np.asarray(target.mean).tolist(),
            "cov": np.asarray(target.cov).tolist(),
        }
    if isinstance(target, PotentialTarget) and target.origin is not None:
        record = {
            "kind": "python",
            "dim": target.dim,
            "file": target.origin[0],
            "name": target.origin[1],
        }
        for key in ("log_normaliser", "convexity"):
            value = getattr(target, key)
            if value is not None:
                record[key] = float(value)
        return record
    return None


def save(m: MongeMap, path: str | Path, info: dict | None = None) -> Path:
    """Write the map to the directory ``path``: ``map.eqx`` and ``map.json`` (and
    ``target.npy``, the rows of a target known by samples).

    Args:
        m: the map.
        path: a directory (created if needed; the files in it are overwritten).
        info: anything JSON-able to keep with the map (settings, metrics), read back by
            :func:`read_info`.

    Returns:
        ``path``.

    Warns:
        UserWarning: when the map's target has no record (:func:`target_record`), e.g. a
            potential V given as a Python function: it is not saved, and
            ``load(path, target=...)`` must give it again for density and sampling.
    """
    path = Path(path)
    record = target_record(m.target)
    if record is None and m.target is not None:
        kind = type(m.target).__name__
        record = {"kind": "unsaved", "type": kind}
        warnings.warn(
            f"the map's target ({kind}) is not saved with it (only Gaussians, target samples "
            "and potentials read from a file, FILE.py:NAME, are; a potential V given as a "
            "Python function is not): to use log_density or sample after loading, give it "
            "again with "
            "load(path, target=...)",
            stacklevel=2,
        )
    meta = {
        "format": FORMAT if m.target_shift is None else FORMAT_TARGET_STANDARDIZED,
        "potential": potential_config(m.potential),
        "shift": np.asarray(m.shift).tolist(),
        # one overall scale, or a list of one per coordinate
        "scale": np.asarray(m.scale, np.float64).tolist(),
        "target": record,
        "info": dict(info or {}),
    }
    if m.target_shift is not None:
        meta["target_shift"] = np.asarray(m.target_shift).tolist()
    text = json.dumps(meta, indent=2, default=_jsonable) + "\n"
    path.mkdir(parents=True, exist_ok=True)
    eqx.tree_serialise_leaves(path / "map.eqx", m.potential)
    samples = path / TARGET_SAMPLES_FILE
    if isinstance(m.target, EmpiricalTarget):  # in the user's units: y = m1 + s w
        rows = np.asarray(m.target.data, dtype=np.float64)
        if m.target_shift is not None:
            rows = np.asarray(m.target_shift, np.float64) + np.asarray(m.scale, np.float64) * rows
        np.save(samples, rows.astype(np.asarray(m.target.data).dtype))
    elif samples.is_file():  # a previous map's, in the same directory
        samples.unlink()
    (path / "map.json").write_text(text)
    return path


def _read_meta(path: Path) -> dict:
    meta_file, leaves = path / "map.json", path / "map.eqx"
    if not path.is_dir() or not meta_file.is_file() or not leaves.is_file():
        raise InputError(
            f"{str(path)!r} is not a saved map (expected a directory with map.json and "
            "map.eqx, as written by `mongeflow fit` or mongeflow.mapping.save)"
        )
    try:
        meta = json.loads(meta_file.read_text())
    except json.JSONDecodeError as err:
        raise InputError(f"{str(meta_file)!r} is not valid JSON: {err}") from None
    if not isinstance(meta, dict) or meta.get("format") not in FORMATS:
        found = meta.get("format") if isinstance(meta, dict) else None
        raise InputError(f"{str(meta_file)!r}: unknown format {found!r}")
    return meta


def load(path: str | Path, target: Target | None = None) -> MongeMap:
    """Read a map written by :func:`save` (or ``mongeflow fit``).

    Args:
        path: the map's directory.
        target: γ, overriding the saved record; needed for :meth:`MongeMap.log_density` and
            :meth:`MongeMap.sample` when the target was not saved. Target samples
            (``target.npy``, or an :class:`~mongeflow.problems.EmpiricalTarget` given here)
            are in the user's units; for a map whose target is standardised
            (``target_shift`` saved) they are posed in φ's output coordinates
            w = (y − target_shift)/scale, as :class:`MongeMap` holds them.

    Raises:
        InputError: ``path`` is not a saved map, ``map.json`` is not valid JSON or of an
            unknown format, ``map.eqx`` is truncated or does not match, or the saved target
            cannot be rebuilt (its file is gone or unreadable: give ``target=``).

    Warns:
        UserWarning: the target was not saved and none is given.
    """
    path = Path(path)
    meta = _read_meta(path)
    leaves = path / "map.eqx"
    try:
        skeleton = potential_skeleton(meta["potential"])
    except (KeyError, TypeError, ValueError) as err:
        raise InputError(
            f"{str(path / 'map.json')!r}: cannot rebuild the potential from its description: "
            f"{type(err).__name__}: {err}"
        ) from None
    try:
        potential = eqx.tree_deserialise_leaves(leaves, skeleton)
    except Exception as err:  # a truncated or mismatched file
        raise InputError(f"cannot read {str(leaves)!r}: {err}") from None
    record = meta.get("target")
    if target is None and record is not None:
        if record.get("kind") == "unsaved":
            warnings.warn(
                f"{str(path)!r}: the map's target ({record.get('type')}) was not saved with "
                "it; log_density and sample need it: load(path, target=...)",
                stacklevel=2,
            )
        else:
            try:
                target = target_from_record(record, base=path)
            except InputError as err:
                raise InputError(
                    f"{str(path)!r}: cannot rebuild the map's target: {err}; give it with "
                    "load(path, target=...)"
                ) from None
    # maps saved before target standardisation existed have no target_shift: None
    target_shift = meta.get("target_shift")
    if meta["format"] == FORMAT_TARGET_STANDARDIZED and target_shift is None:
        raise InputError(
            f"{str(path / 'map.json')!r}: format {FORMAT_TARGET_STANDARDIZED} needs "
            "'target_shift' (the target's mean), which is missing: the file is damaged"
        )
    if target_shift is not None and isinstance(target, EmpiricalTarget):
        shift1 = np.asarray(target_shift, np.float64)
        rows = (np.asarray(target.data, np.float64) - shift1) / np.asarray(
            meta["scale"], np.float64
        )
        target = EmpiricalTarget(rows.astype(np.asarray(target.data).dtype))
    return MongeMap(potential, meta["shift"], meta["scale"], target, target_shift=target_shift)


def read_info(path: str | Path) -> dict:
    """The ``info`` saved with a map (see :func:`save`); ``{}`` when none was."""
    return dict(_read_meta(Path(path)).get("info") or {})


def _jsonable(v):
    v = np.asarray(v)
    return v.item() if v.size == 1 else v.tolist()
