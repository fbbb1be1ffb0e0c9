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
import os
import warnings
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from mongeflow.files import atomic_write, read_json, sha256, write_json
from mongeflow.io import InputError, parse_target, target_from_record
from mongeflow.maps import ICNN, AffinePotential, Potential
from mongeflow.maps.monge import MongeMap
from mongeflow.problems.base import EmpiricalTarget, Gaussian, PotentialTarget, Target
from mongeflow.problems.standardise import Standardiser

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
    "TargetNotLoaded",
    "load",
    "potential_config",
    "potential_skeleton",
    "read_info",
    "sample_stored_rows",
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
            "activation": potential.activation,
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
            activation=config.get("activation", "softplus"),  # maps saved before it existed
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
        file = Path(os.path.abspath(target.origin[0]))
        record = {
            "kind": "python",
            "dim": target.dim,
            "file": str(file),
            "name": target.origin[1],
            "sha256": sha256(file) if file.is_file() else None,
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
    json.dumps(meta, default=_jsonable)  # fails here, before any file is replaced
    path.mkdir(parents=True, exist_ok=True)
    # each file is replaced atomically, map.json last: it records the others' SHA-256, so a
    # save cut between two files is detected by load instead of mixing two maps
    atomic_write(path / "map.eqx", lambda f: eqx.tree_serialise_leaves(f, m.potential))
    meta["map_sha256"] = sha256(path / "map.eqx")
    samples = path / TARGET_SAMPLES_FILE
    if isinstance(m.target, EmpiricalTarget):  # in the user's units: y = m1 + s w
        rows = m.standardiser.as_numpy().to_y(np.asarray(m.target.data, dtype=np.float64))
        rows = rows.astype(np.asarray(m.target.data).dtype)
        atomic_write(samples, lambda f: np.save(f, rows, allow_pickle=False))
        meta["target"]["sha256"] = sha256(samples)
    elif samples.is_file():  # a previous map's, in the same directory
        samples.unlink()
    write_json(path / "map.json", meta, default=_jsonable)
    return path


def _read_meta(path: Path) -> dict:
    meta_file, leaves = path / "map.json", path / "map.eqx"
    if not path.is_dir() or not meta_file.is_file() or not leaves.is_file():
        raise InputError(
            f"{str(path)!r} is not a saved map (expected a directory with map.json and "
            "map.eqx, as written by `mongeflow fit` or mongeflow.mapping.save)"
        )
    try:
        meta = read_json(meta_file, "the map's record", "save the map again")
    except ValueError as err:
        raise InputError(str(err)) from None
    if not isinstance(meta, dict) or meta.get("format") not in FORMATS:
        found = meta.get("format") if isinstance(meta, dict) else None
        raise InputError(f"{str(meta_file)!r}: unknown format {found!r}")
    return meta


class TargetNotLoaded(UserWarning):
    """A saved map's target was not rebuilt: it is Python code, or it was not saved."""


def load(path: str | Path, target: Target | str | None = None) -> MongeMap:
    """Read a map written by :func:`save` (or ``mongeflow fit``).

    Loading never runs code: a target that is a potential V read from a Python file is
    recorded in ``map.json`` by the file's absolute path, its SHA-256 and the function's
    name, and it is imported only when given here (``target="FILE.py:NAME"``; a file whose
    contents differ from the recorded ones gets a warning). The map itself (transport,
    inverse) never needs it.

    Args:
        path: the map's directory.
        target: γ, overriding the saved record: a :class:`~mongeflow.problems.Target` or a
            specification of :func:`mongeflow.io.parse_target` (``"FILE.py:NAME"``,
            ``"gaussian"``, ``"samples:FILE"``); needed for :meth:`MongeMap.log_density` and
            :meth:`MongeMap.sample` when the target is Python code or was not saved. Target
            samples (``target.npy``, or an :class:`~mongeflow.problems.EmpiricalTarget`
            given here) are in the user's units; for a map whose target is standardised
            (``target_shift`` saved) they are posed in φ's output coordinates
            w = (y − target_shift)/scale, as :class:`MongeMap` holds them.

    Raises:
        InputError: ``path`` is not a saved map, ``map.json`` is not valid JSON or of an
            unknown format, ``map.eqx`` is truncated, does not match, or comes from another
            save than ``map.json``, or the saved target cannot be rebuilt (its file is gone,
            changed or outside the map's folder: give ``target=``).

    Warns:
        TargetNotLoaded: the target is Python code or was not saved, and none is given.
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
    digest = meta.get("map_sha256")
    if digest is not None and sha256(leaves) != digest:
        raise InputError(
            f"{str(leaves)!r} is not the one {str(path / 'map.json')!r} was saved with (its "
            "SHA-256 differs): the two files come from different saves, e.g. a save that "
            "was interrupted; save the map again"
        )
    try:
        potential = eqx.tree_deserialise_leaves(leaves, skeleton)
    except Exception as err:  # a truncated or mismatched file
        raise InputError(f"cannot read {str(leaves)!r}: {err}") from None
    record = meta.get("target")
    if record is not None and not isinstance(record, dict):
        raise InputError(f"{str(path / 'map.json')!r}: 'target' is not a record: damaged file")
    if isinstance(target, str):
        target = _explicit_target(target, record, int(skeleton_dim(meta)))
    elif target is None and record is not None:
        if record.get("kind") in ("unsaved", "python"):
            what = (
                f"is the function {record.get('name')!r} of {record.get('file')!r}, Python "
                "code, never imported by load"
                if record.get("kind") == "python"
                else f"({record.get('type')}) was not saved with it"
            )
            how = (
                f"'{record.get('file')}:{record.get('name')}'"
                if record.get("kind") == "python"
                else "..."
            )
            warnings.warn(
                f"{str(path)!r}: the map's target {what}; log_density and sample need it: "
                f"load(path, target={how})",
                TargetNotLoaded,
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
    standardiser = Standardiser(meta["shift"], meta["scale"], target_shift)
    if standardiser.standardises_target and isinstance(target, EmpiricalTarget):
        rows = standardiser.to_w(np.asarray(target.data, np.float64))
        target = EmpiricalTarget(rows.astype(np.asarray(target.data).dtype))
    return MongeMap.lift(potential, standardiser, target)


def skeleton_dim(meta: dict) -> int:
    """The dimension d recorded in ``map.json``."""
    return int(meta["potential"]["dim"])


def target_record_of(path: str | Path) -> dict | None:
    """The target record in a saved map's ``map.json`` (``None`` when there is none)."""
    return _read_meta(Path(path)).get("target")


def _explicit_target(spec: str, record: dict | None, dim: int) -> Target:
    """The target ``spec`` names (:func:`mongeflow.io.parse_target`), given by the user; a
    Python file whose contents differ from those the map was saved with gets a warning."""
    target = parse_target(spec, dim)
    if not (
        isinstance(target, PotentialTarget)
        and target.origin is not None
        and record is not None
        and record.get("kind") == "python"
    ):
        return target
    if record.get("sha256") and sha256(target.origin[0]) != record["sha256"]:
        warnings.warn(
            f"{target.origin[0]!r} differs from the file the map was trained with "
            f"({record.get('file')!r}, SHA-256 {record['sha256'][:12]}…): the map was not "
            "fitted to this V",
            stacklevel=3,
        )
        return target
    # the same V: the saved log normaliser and convexity come back with it
    return PotentialTarget(
        target.potential_fn,
        dim,
        log_normaliser=record.get("log_normaliser"),
        convexity=record.get("convexity"),
        origin=target.origin,
    )


def sample_stored_rows(m: MongeMap, n: int, seed: int) -> tuple[np.ndarray, int]:
    """T⁻¹(y) for ``n`` of the stored rows y of a map whose target is known by samples, drawn
    without replacement up to their number K (beyond it every row once, the rest with
    replacement), and the number of distinct rows used, min(n, K): what ``mongeflow
    sample`` and :meth:`mongeflow.MongeTransport.sample` return for such a target."""
    rows = np.asarray(m.target.data)  # in φ's output coordinates
    k = rows.shape[0]
    rng = np.random.default_rng(seed)
    idx = rng.permutation(k)[:n]
    if n > k:
        idx = rng.permutation(np.concatenate([idx, rng.integers(0, k, n - k)]))
    y = m.target_to_data_units(rows[idx])  # the inverse takes points in the target's units
    return np.asarray(m.inverse(y)), min(n, k)


def read_info(path: str | Path) -> dict:
    """The ``info`` saved with a map (see :func:`save`); ``{}`` when none was."""
    return dict(_read_meta(Path(path)).get("info") or {})


def _jsonable(v):
    v = np.asarray(v)
    return v.item() if v.size == 1 else v.tolist()
