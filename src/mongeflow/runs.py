"""Run directories: the settings of a fit (run.json), its checkpoints, its outputs.

A run directory holds everything needed to continue a fit with ``--resume --out DIR``
alone: ``run.json`` (every setting, written before training starts, with the absolute path
and SHA-256 of each input file), ``checkpoint.bin`` (the training state), and when the fit
ends the best seed's map (``map.eqx``, ``map.json``), every seed's map in ``seeds/SEED/``,
``metrics.json``, ``history.csv`` and the figures. Every file is written atomically
(:mod:`mongeflow.files`), and ``.lock`` keeps a second fit out while one runs.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path

import equinox as eqx
import numpy as np

from mongeflow import __version__ as _version
from mongeflow.auto import (
    asks_for_drift,
    choose,
    choose_divergence,
    configure_divergence,
    rate_for_network,
    rate_rechosen,
    refinished,
    refinished_steps,
)
from mongeflow.divergences import DIVERGENCES
from mongeflow.files import (
    LOCK_FILE,
    TEMPORARY_PREFIX,
    ReadError,
    atomic_write,
    read_json,
    sha256,
    write_json,
)
from mongeflow.fit import Callback, FitResult, FitState, Run, default_batch_size
from mongeflow.io import (
    check_batch_size,
    data_problem,
    gaussian_source_problem,
    load_array,
    python_spec,
    split_array_spec,
)
from mongeflow.mapping import save
from mongeflow.maps import default_potential
from mongeflow.maps.icnn import ACTIVATIONS, NONNEGATIVITIES
from mongeflow.plot import plot_displacement, plot_history, plot_pushforward
from mongeflow.problems import PROBLEMS, get_problem
from mongeflow.progress import Progress
from mongeflow.schemes import SCHEMES
from mongeflow.settings import configure, flat, options, record, same, unknown

#: the largest --dim: a fit holds dense d × d matrices (the map's Jacobians, per sample; a
#: Gaussian's covariance), so beyond this the problem alone fills a machine's memory
MAX_DIM = 10_000
#: the values that those of fit's own options with a fixed set of them may take
OPTION_CHOICES = {
    "keep": ("all", "best"),
    "activation": ACTIVATIONS,
    "nonnegativity": NONNEGATIVITIES,
}
#: fit's own options (not scheme or divergence settings): dest -> (default, help)
FIT_OPTIONS = {
    "problem": (
        "gaussian",
        f"built-in problem: {', '.join(PROBLEMS)} (not with --source FILE)",
    ),
    "dim": (None, f"dimension d of a built-in problem, 1 to {MAX_DIM} (its default if unset)"),
    "source": (
        None,
        "source samples [n, d]: FILE.npy, FILE.npz:KEY, FILE.csv or FILE.h5ad[:X | "
        ":obsm/KEY | :layers/KEY] (AnnData, default X; needs the 'anndata' extra) (instead "
        "of --problem), or 'gaussian' for N(0, I) with --dim D (no file: the map samples "
        "the target)",
    ),
    "source_where": (
        None,
        "with --source FILE.h5ad: fit only the rows (cells) whose obs match: 'COLUMN == "
        "VALUE', 'COLUMN != VALUE' or 'COLUMN in [V1, V2]' (quote values with blanks, "
        "`backquote` such a column); no other expression is accepted, none is evaluated",
    ),
    "target": (
        "gaussian",
        "with --source: 'gaussian' (standard), 'gaussian:MEAN.npy,COV.npy', 'samples:FILE' "
        "(target samples: .npy, .npz:KEY, .csv or .h5ad[:KEY]), or 'FILE.py:NAME' with NAME "
        "a JAX function V: [d] -> scalar (target ∝ exp(-V), V convex)",
    ),
    "target_where": (
        None,
        "with --target samples:FILE.h5ad: the target's rows, selected as by --source-where",
    ),
    "standardize": (
        True,
        "train on (x - mean) / s, s one overall scale (keeps T a Brenier map), and target "
        "samples on (y - their mean) / s; the saved map applies to x in the source's units "
        "(--no-standardize: train on x as given)",
    ),
    "per_feature": (
        False,
        "with standardisation, one scale per feature (column) instead of one overall "
        "scale, so that features in very different units weigh alike. Caveat: the map is "
        "then the Brenier map of the rescaled data (for target samples, rescaled alike: "
        "optimal for the cost sum_j (x_j - y_j)^2 / s_j^2), not the one for the "
        "squared distance in the data's units (it still applies to x in those units)",
    ),
    "validation": (
        0.1,
        "with --source: fraction of the rows (and of samples:FILE target rows) held out for "
        "the final metrics, the choice of the best map and early stopping",
    ),
    "patience": (
        None,
        "stop a seed when its kept map has not changed for this many history records "
        "(0: run every step; --steps is the cap) (automatic: chosen with the scheme's "
        "schedule, 0 for one that must run every step, else 5)",
    ),
    "scheme": (
        "auto",
        f"how θ moves: auto (chosen from the problem: Adam with a decaying rate on a loss, "
        f"explicit on a velocity; semidual for a target known by samples with no divergence "
        f"named), {', '.join(SCHEMES)}",
    ),
    "divergence": (
        "auto",
        f"the lifted divergence: auto (kl when the target has a potential V; else energy, "
        f"the held-out figure of the semidual scheme, or drift when a paper scheme is named "
        f"or a drift setting given), "
        f"{', '.join(DIVERGENCES)}",
    ),
    "steps": (
        None,
        "outer steps, the total when resuming (automatic: chosen from d, the target and "
        "its training rows, "
        "a cap when the fit stops early)",
    ),
    "batch_size": (
        None,
        "mini-batch size n, at most the number of training samples (automatic: chosen from d)",
    ),
    "seed": ([0], "seed(s), trained side by side"),
    "widths": (
        None,
        "ICNN hidden widths (automatic: chosen from d, (64, 64) up to d = 32, (2d, 2d) above; "
        "semidual: (64, 64) up to d = 64)",
    ),
    "strong_convexity": (0.0, "α of an added (α/2)|x|² (∇²φ ⪰ αI)"),
    "activation": (
        None,
        "the network's activation: softplus, or beta-softplus (softplus(βu)/β, each unit's "
        "sharpness β learnt) (automatic: beta-softplus for the semidual scheme, else softplus)",
    ),
    "nonnegativity": (
        None,
        "how the network's weights stay non-negative: clamp (projected after each update) or "
        "softplus (W = softplus(W_raw)) (automatic: softplus for the semidual scheme up to "
        "d = 8 over 12 000 steps or more, else clamp)",
    ),
    "float64": (False, "compute in float64"),
    "log_every": (None, "steps between history records (default: about 20 records)"),
    "checkpoint_every": (None, "steps between checkpoints in DIR (default: each history record)"),
    "eval_size": (10_000, "fresh samples of each side for the final metrics (0: none)"),
    "keep": ("all", "with several seeds: save every seed's map (all) or only the best's"),
    "strict": (
        False,
        "exit with code 4 when the trained map does not beat the linear (Bures) map on the "
        "held-out figure (it is always said on the terminal and in metrics.json)",
    ),
}
#: options that may differ when a run is resumed
RESUMABLE = {"steps", "eval_size", "keep", "checkpoint_every", "log_every", "strict"}
#: scheme and divergence settings that the fit chooses itself when they are not given
#: (:func:`mongeflow.auto.choose`, :func:`~mongeflow.auto.choose_divergence`): dest -> the
#: one-line rule ``mongeflow fit --help`` shows. Help text only: it sets no value.
AUTOMATIC = {
    "learning_rate": "adam: 0.1 up to d = 16, then 1.6/d; semidual: 0.03 for reparametrised "
    "networks (up to d = 8), 0.01 for clamped ones up to d = 32, then 0.003",
    "bidirectional": "semidual: on up to d = 32",
    "map_steps": "semidual: 1 played both ways, 2 one way",
    "jitter": "semidual: 0 up to d = 4 or with no finite rows, then 0.1",
    "jitter_rows": "semidual, where it jitters: source up to d = 32 when the source is rows, "
    "else both",
    "jitter_keeps_variance": "semidual, where it jitters: on when only the source's rows are",
    "weight_decay": "semidual: 0.01 where it jitters and is played one way (d > 32), else 0",
    "finish_steps": "semidual, where it jitters, is played both ways and the steps are the "
    "rule's: 2000 where it chose reparametrised networks (4 < d <= 8, 12000 steps or more) "
    "and the target is a set of rows, 300 after clamped ones above d = 8 (up to 32) or for a "
    "target drawn afresh, else 0",
    "finish_rate": "semidual: 0.03 after reparametrised networks, 0.003 after clamped ones",
    "decay_steps": "the number of steps: a cosine decay to 0 over the run",
    "tau": "explicit on the drift: min(0.3, 0.6/sqrt(d)); decaying to 0 over the run",
    "inner_steps": "explicit on the drift: 200",
    "inner_decay": "on: the inner rate decays to 0 within each step",
    "temperatures": "0.01,0.02,0.05 up to d = 8, 0.01,0.05,0.2 up to d = 16, then 0.02,0.05,0.2",
}


def setting_options() -> tuple[dict, dict]:
    """The derived options of the scheme and divergence registries, by dest."""
    scheme_opts, divergence_opts = options(SCHEMES), options(DIVERGENCES)
    clash = (set(scheme_opts) & set(divergence_opts)) | (
        (set(scheme_opts) | set(divergence_opts)) & set(FIT_OPTIONS)
    )
    if clash:
        raise TypeError(f"settings {sorted(clash)} are defined twice; rename one")
    return scheme_opts, divergence_opts


RUN_FORMAT = "mongeflow-run/1"
_DAMAGED = (
    "the checkpoint is damaged: start the run again with --overwrite (or from a copy of the "
    "run directory)"
)
#: the checkpoint: one file, replaced atomically (see :meth:`Checkpoint.save`)
CHECKPOINT_FILE = "checkpoint.bin"
CHECKPOINT_MAGIC = b"mongeflow-checkpoint/1\n"
#: an older version's checkpoint, a pair of files (still read)
LEGACY_CHECKPOINT = ("checkpoint.json", "state.eqx")
#: files and folders a run writes (removed by ``--overwrite``)
RUN_FILES = (
    "run.json",
    "map.eqx",
    "map.json",
    "target.npy",
    "metrics.json",
    "history.csv",
    CHECKPOINT_FILE,
    *LEGACY_CHECKPOINT,
    "pushforward.png",
    "history.png",
    "displacement.png",
    "seeds",
)


def run_record(run: Run) -> dict:
    """What must not change between a fit and its resumption (for a target known by samples,
    also the coordinates the potential was trained in: both sides standardised, the scale)."""
    out = {
        "problem": run.problem.name,
        "dim": run.problem.dim,
        "scheme": record(run.scheme),
        "divergence": record(run.divergence),
        "batch_size": run.batch_size,
        "seeds": list(run.seeds),
    }
    if run.problem.target_shift is not None or run.problem.per_feature:
        out["target_standardized"] = run.problem.target_shift is not None
        out["scale"] = np.asarray(run.problem.scale, np.float64).tolist()
    return out


#: scheme settings added after runs were first saved, with the value that means "as before":
#: a record without one was made with that value (``jitter``: the semi-dual rows unjittered;
#: ``jitter_rows``, ``jitter_keeps_variance``: the jitter on both sides' rows, as it was;
#: ``weight_decay``: none; ``finish_steps``: no descent after the game, whatever its
#: ``finish_rate``)
ADDED_SETTINGS = {
    "semidual": {
        "jitter": 0.0,
        "jitter_rows": "both",
        "jitter_keeps_variance": False,
        "weight_decay": 0.0,
        "finish_steps": 0,
        "finish_rate": 0.03,
        "finish_batches": 32,
    }
}
_ADDED = {k: v for table in ADDED_SETTINGS.values() for k, v in table.items()}


def differences(saved: dict, now: dict, prefix: str = "") -> list[str]:
    """``key: saved -> now`` for every entry of two nested records that differs (a list
    setting saved as a string by an older version, ``"0.01,0.02"``, is the same as its
    numbers: :func:`mongeflow.settings.same`; a setting of :data:`ADDED_SETTINGS` missing from
    ``saved`` is the same as its value there)."""
    out = []
    for k in sorted(set(saved) | set(now)):
        a, b = saved.get(k), now.get(k)
        if k not in saved and k in _ADDED and same(_ADDED[k], b):
            continue
        if isinstance(a, dict) and isinstance(b, dict):
            out += differences(a, b, f"{prefix}{k}.")
        elif not same(a, b):
            out.append(f"{prefix}{k}: {a!r} -> {b!r}")
    return out


class Checkpoint(Callback):
    """A :func:`~mongeflow.fit.fit` callback writing the training state, ``checkpoint.bin``,
    into ``path`` every ``every`` steps (default: at each history record), at the end and on
    Ctrl-C; with ``resume=True`` the fit starts from the state found there (from the start
    when there is none yet: a run stopped before its first checkpoint).

    A resumed fit continues exactly as an uninterrupted one would (same map, bit for bit);
    ``steps`` is the total, so a finished fit can also be extended. Resuming with another
    scheme, divergence, batch size or seeds is refused, the differences listed.
    """

    def __init__(self, path, every: int | None = None, resume: bool = False):
        self.path = Path(path)
        self.every = every
        self.resume = resume
        self.saved_at = 0

    def on_start(self, run: Run, state: FitState) -> FitState:
        if self.resume:
            state = self.load(run, state)
        self.saved_at = state.step
        return state

    def on_chunk(self, run: Run, state: FitState) -> None:
        every = self.every or run.log_every
        if state.step - self.saved_at >= every or state.step == run.steps:
            self.save(run, state)

    def on_end(self, run: Run, state: FitState, interrupted: bool) -> None:
        if state.step > self.saved_at or not self.exists():
            self.save(run, state)

    def save(self, run: Run, state: FitState) -> None:
        """Write the state as one file, ``checkpoint.bin``, replaced atomically: a process
        killed at any moment leaves the previous checkpoint or this one, never a mix."""
        self.path.mkdir(parents=True, exist_ok=True)
        best = state.potentials if state.best is None else state.best
        meta = {
            "step": int(state.step),
            "run": run_record(run),
            "nonnegativity": getattr(state.potentials, "nonnegativity", None),
            "stopped_at": [int(v) for v in state.stopped_at],
            "history": {k: np.asarray(v).tolist() for k, v in state.history.items()},
            "best_value": None if state.best is None else np.asarray(state.best_value).tolist(),
            "best_step": None if state.best is None else np.asarray(state.best_step).tolist(),
            "early_stop": None if state.early_stop is None else state.early_stop.tolist(),
            "stop_reason": state.stop_reason,
        }
        header = json.dumps(meta).encode()

        def write(f):
            f.write(CHECKPOINT_MAGIC + len(header).to_bytes(8, "little") + header)
            eqx.tree_serialise_leaves(f, (state.potentials, state.states, state.alive, best))

        atomic_write(self.path / CHECKPOINT_FILE, write)
        for name in LEGACY_CHECKPOINT:  # an older version's pair, now stale
            (self.path / name).unlink(missing_ok=True)
        self.saved_at = state.step

    def exists(self) -> bool:
        return (self.path / CHECKPOINT_FILE).is_file() or all(
            (self.path / name).is_file() for name in LEGACY_CHECKPOINT
        )

    def meta(self) -> dict | None:
        """The record of the checkpoint in :attr:`path` (``step``, ``run``, ``history``, ...)
        without its arrays, or ``None`` when there is no checkpoint."""
        if not self.exists():
            return None
        if not (self.path / CHECKPOINT_FILE).is_file():
            return read_json(self.path / "checkpoint.json", "checkpoint", _DAMAGED)
        with open(self.path / CHECKPOINT_FILE, "rb") as f:
            return self._header(f)

    def _header(self, f) -> dict:
        """The record at the start of the open ``checkpoint.bin`` (``f`` then stands at the
        arrays)."""
        where = str(self.path / CHECKPOINT_FILE)
        head = f.read(len(CHECKPOINT_MAGIC) + 8)
        if len(head) < len(CHECKPOINT_MAGIC) + 8 or not head.startswith(CHECKPOINT_MAGIC):
            raise ReadError(f"{where} is not a mongeflow checkpoint; {_DAMAGED}")
        size = int.from_bytes(head[len(CHECKPOINT_MAGIC) :], "little")
        try:
            meta = json.loads(f.read(size))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ReadError(f"{where}: its record is not JSON ({err}); {_DAMAGED}") from None
        if not isinstance(meta, dict):
            raise ReadError(f"{where}: its record is not a JSON object; {_DAMAGED}")
        return meta

    def _read(self, template: tuple) -> tuple[dict, tuple]:
        """``(meta, leaves)`` of the checkpoint in :attr:`path` (or an older version's
        ``checkpoint.json`` + ``state.eqx`` pair)."""
        if not (self.path / CHECKPOINT_FILE).is_file():  # an older version's pair
            meta = read_json(self.path / "checkpoint.json", "checkpoint", _DAMAGED)
            source = self.path / "state.eqx"
        else:
            source = None
        try:
            if source is not None:
                return meta, eqx.tree_deserialise_leaves(source, template)
            with open(self.path / CHECKPOINT_FILE, "rb") as f:
                meta = self._header(f)
                return meta, eqx.tree_deserialise_leaves(f, template)
        except ReadError:
            raise
        except Exception as err:
            raise ReadError(
                f"the checkpoint in {str(self.path)!r} does not match this map or this "
                f"scheme's state: {err} (a checkpoint made with another network, other widths "
                "or activation, resumes with that network given: "
                "potential=mf.default_potential(d, widths, activation=...); one written by a "
                "version whose scheme kept another state, such as a semi-dual fit's before it "
                "kept its target rows' conjugates, cannot be resumed: start the run again)"
            ) from None

    def load(self, run: Run, template: FitState) -> FitState:
        if not self.exists():  # stopped before its first checkpoint: it starts afresh
            return template
        shapes = (template.potentials, template.states, template.alive, template.potentials)
        meta, leaves = self._read(shapes)
        try:
            return self._state(run, meta, leaves)
        except (KeyError, TypeError, AttributeError, IndexError) as err:
            raise ReadError(
                f"the checkpoint in {str(self.path)!r} has a damaged record "
                f"({type(err).__name__}: {err}); {_DAMAGED}"
            ) from None

    def _state(self, run: Run, meta: dict, leaves: tuple) -> FitState:
        potentials, states, alive, best = leaves
        changed = differences(meta["run"], run_record(run))
        kind = getattr(potentials, "nonnegativity", None)
        # checkpoints written before the record held it were all of clamped networks
        saved = meta.get("nonnegativity", "clamp" if kind is not None else None)
        if saved != kind:  # the same leaves would be read as other weights
            changed.append(f"network's nonnegativity: {saved!r} -> {kind!r}")
        if changed:
            raise ValueError(
                f"the checkpoint in {str(self.path)!r} was made with other settings: "
                + "; ".join(changed)
                + " (a setting shown as None did not exist in the version that made it); "
                "it cannot continue with these: start the run again with --overwrite"
            )
        history = {k: [np.asarray(r) for r in v] for k, v in meta["history"].items()}
        history["step"] = [int(v) for v in meta["history"]["step"]]
        step = int(meta["step"])
        if step > run.steps:
            raise ValueError(f"the checkpoint is at step {step}, beyond steps={run.steps}")
        stopped_at = np.asarray(meta["stopped_at"])
        reasons = meta.get("stop_reason")
        if meta.get("best_value") is None:
            return FitState(
                potentials, states, alive, step, stopped_at, history, stop_reason=reasons
            )
        best_value = np.asarray(meta["best_value"], dtype=float)
        best_step = np.asarray(meta["best_step"], dtype=int)
        early = meta.get("early_stop")
        return FitState(
            *(potentials, states, alive, step, stopped_at, history),
            *(best, best_value, best_step, None if early is None else np.asarray(early)),
            stop_reason=reasons,
        )


def _differs(a, b) -> bool:
    """Whether two setting values differ (numbers, flags, text, tuples or arrays)."""
    try:
        return not np.array_equal(np.asarray(a), np.asarray(b))
    except (TypeError, ValueError):
        return a != b


# --- the command line's runs ----------------------------------------------------------


def _jsonable(v):
    v = np.asarray(v)
    return v.item() if v.size == 1 else v.tolist()


def fit_settings(args: dict, out: Path, *, resume: bool, overwrite: bool) -> dict:
    """The settings of a ``mongeflow fit`` run: the given options over the defaults, or,
    with ``resume``, over the settings stored in ``out/run.json``. Nothing is written.

    The files a run reads (``--source``, the target's) are recorded by absolute path, and
    their contents by SHA-256 (``inputs``): a resumed run reads the same files wherever it
    is resumed from, and refuses them if their contents changed. A target ``FILE.py:NAME``
    is code: a resumed run imports it only when ``--target`` names it again.

    Raises:
        ValueError: ``out`` is not a directory; it holds a run and neither ``resume`` nor
            ``overwrite`` is given; it holds files but no run; ``resume`` without a run
            there; a resumed run given a setting other than its own, or whose input files
            changed or are gone (the differences are listed).
    """
    scheme_opts, divergence_opts = setting_options()
    known = set(FIT_OPTIONS) | set(scheme_opts) | set(divergence_opts)
    given = absolute_inputs({k: v for k, v in args.items() if k in known and v is not None})
    given = _parsed(given, scheme_opts, divergence_opts)
    check_out(out, resume=resume, overwrite=overwrite)
    if resume:
        # a list setting is stored as a JSON list (a string "0.01,0.02" by older versions)
        stored = _parsed(read_run(out)["settings"], scheme_opts, divergence_opts)
        stored.setdefault("activation", "softplus")  # the only one before the setting existed
        stored.setdefault("nonnegativity", "clamp")  # likewise
        for key, value in ADDED_SETTINGS.get(stored.get("scheme"), {}).items():
            stored.setdefault(key, value)  # saved before the setting existed
        changed = [
            f"--{k.replace('_', '-')} {stored.get(k)!r} -> {v!r}"
            for k, v in given.items()
            if k not in RESUMABLE and stored.get(k) != v
        ]
        if changed:
            raise ValueError(
                f"--resume: the run in {out} was started with other settings: "
                + "; ".join(changed)
                + " (leave them out to continue it, or start a new run)"
            )
        settings = {**stored, **given}
        try:
            _check_ranges(settings, given, scheme_opts, divergence_opts)
            check_inputs(settings, out, target_given="target" in given)
        except (KeyError, TypeError, AttributeError) as err:
            raise ReadError(
                f"{str(out / 'run.json')!r} holds a damaged setting ({type(err).__name__}: "
                f"{err}); the run cannot be resumed: start it again with --overwrite"
            ) from None
        return settings
    settings = {k: v for k, (v, _) in FIT_OPTIONS.items()}
    settings.update(given)
    if settings["source"] is None and settings["target"] != "gaussian":
        raise ValueError("--target applies to --source FILE only")
    if settings["source"] is not None:
        if "problem" in given:
            raise ValueError(
                f"--problem {given['problem']} and --source {settings['source']} exclude each "
                "other: a fit learns either a built-in problem or the map from --source to "
                "--target"
            )
        settings["problem"] = None  # no built-in problem: the data of --source
    elif settings["problem"] not in PROBLEMS:
        raise ValueError(unknown("problem", settings["problem"], PROBLEMS))
    for kind, registry in (("scheme", SCHEMES), ("divergence", DIVERGENCES)):
        if settings[kind] != "auto" and settings[kind] not in registry:
            raise ValueError(unknown(kind, settings[kind], [*registry, "auto"]))
    _check_ranges(settings, given, scheme_opts, divergence_opts)
    settings["inputs"] = record_inputs(settings)
    return settings


def _parsed(settings: dict, scheme_opts: dict, divergence_opts: dict) -> dict:
    """``settings`` with each scheme or divergence setting in its own type (a list setting
    given as ``"0.01,0.02"`` or as a list: a tuple of floats; see ``Option.parse``)."""
    opts = {**scheme_opts, **divergence_opts}
    return {k: opts[k].parse(v) if k in opts else v for k, v in settings.items()}


def _check_ranges(settings: dict, given: dict, scheme_opts: dict, divergence_opts: dict) -> None:
    """Refuse a fit option outside its range, and a given scheme or divergence setting
    outside the ranges of every value that has it (``build`` checks the one chosen)."""
    if not 0.0 <= settings["validation"] < 0.5:
        raise ValueError(f"--validation must be in [0, 0.5), got {settings['validation']}")
    if settings["patience"] is not None and settings["patience"] < 0:
        raise ValueError(f"--patience must be ≥ 0, got {settings['patience']}")
    for name, low in (
        ("dim", 1),
        ("steps", 1),
        ("checkpoint_every", 1),
        ("log_every", 1),
        ("eval_size", 0),
        ("batch_size", 1),
        ("widths", 1),  # each of them
    ):
        for value in settings[name] if isinstance(settings[name], list) else [settings[name]]:
            if value is not None and value < low:
                raise ValueError(f"--{name.replace('_', '-')} must be ≥ {low}, got {value}")
    for seed in settings["seed"] if isinstance(settings["seed"], list) else [settings["seed"]]:
        if not 0 <= seed <= 2**32 - 1:  # a PRNG key holds 32 bits of it
            raise ValueError(f"--seed must be in [0, {2**32 - 1}], got {seed}")
    if not 0.0 <= settings["strong_convexity"] < float("inf"):  # NaN too
        raise ValueError(
            f"--strong-convexity must be in [0, inf), got {settings['strong_convexity']:g}"
        )
    for dest, option in {**scheme_opts, **divergence_opts}.items():
        if dest in given:  # against every value's range; `build` checks the one chosen
            option.check(given[dest])
    if settings["dim"] is not None and settings["dim"] > MAX_DIM:
        raise ValueError(
            f"--dim {settings['dim']} is too large: expected 1 to {MAX_DIM} (a fit holds "
            "dense d × d matrices: the map's Jacobian for every sample of a batch)"
        )


def read_run(out: Path) -> dict:
    """The record of the run in ``out`` (``run.json``), checked.

    Raises:
        ReadError: no run there, or a damaged ``run.json`` (the file is named).
    """
    path = out / "run.json"
    if not path.is_file():
        raise ReadError(f"--resume: {out} holds no run (start one with `mongeflow fit`)")
    meta = read_json(
        path,
        "the run's settings",
        "the run cannot be resumed; start it again with --overwrite",
    )
    if not isinstance(meta, dict) or meta.get("format") != RUN_FORMAT:
        raise ReadError(
            f"{str(path)!r} is not a mongeflow run record (format {RUN_FORMAT!r} expected)"
        )
    if not isinstance(meta.get("settings"), dict):
        raise ReadError(f"{str(path)!r} has no settings: the file is damaged")
    return meta


def _holds_run_data(out: Path) -> bool:
    """Whether ``out`` holds anything a run computed (a checkpoint or a map)."""
    return any((out / name).exists() for name in (CHECKPOINT_FILE, *LEGACY_CHECKPOINT, "map.eqx"))


def past_the_decay(settings: dict) -> str | None:
    """For a resumed run asked for more steps than its rate (or τ) decays over: what the
    added steps are (they cannot move the map: the rate is 0 from there), else ``None``."""
    decay, steps = settings.get("decay_steps"), settings.get("steps")
    if isinstance(decay, int) and decay > 0 and isinstance(steps, int) and steps > decay:
        return (
            f"this run decays its rate (or τ) to 0 at step {decay} (--decay-steps {decay}, "
            f"set when it started), so its steps beyond {decay} do not move the map; for "
            f"{steps} steps of training, start a new run with --steps {steps}"
        )
    return None


def check_out(out: Path, *, resume: bool, overwrite: bool) -> None:
    """Refuse an ``--out`` that this fit must not write into (see :func:`fit_settings`).

    A folder holding a run that computed nothing yet (stopped before its first
    checkpoint) may be started again without ``--overwrite``; ``--overwrite`` replaces
    only a folder that holds a mongeflow run (``run.json``).
    """
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} exists and is not a directory")
    if resume:
        read_run(out)
        _no_links(out)
        return
    if not out.is_dir():
        return
    entries = [
        p.name
        for p in out.iterdir()
        if p.name != LOCK_FILE and not p.name.startswith(TEMPORARY_PREFIX)
    ]
    if not entries:
        return
    if "run.json" not in entries:
        raise ValueError(
            f"--out {out} holds files but no mongeflow run ({', '.join(sorted(entries)[:4])}"
            f"{', ...' if len(entries) > 4 else ''}): a fit writes into a new or empty folder, "
            "and --overwrite replaces only a run"
        )
    if overwrite:  # a run, even one whose record is damaged: replaced
        return
    read_run(out)  # a damaged record is named, not overwritten silently
    if not _holds_run_data(out):
        return
    raise ValueError(
        f"--out {out} holds a run; continue it with --resume, or replace it with --overwrite"
    )


def _no_links(out: Path) -> None:
    """Refuse a run directory whose files are symbolic links: a resumed run writes them, and
    must not write through a link planted in the folder."""
    names = [out / n for n in RUN_FILES]
    if (out / "seeds").is_dir() and not (out / "seeds").is_symlink():
        names += list((out / "seeds").iterdir())
    links = [str(p.relative_to(out)) for p in names if p.is_symlink()]
    if links:
        raise ValueError(
            f"--out {out}: {', '.join(links[:4])} {'is a' if len(links) == 1 else 'are'} "
            "symbolic link(s); a run directory holds plain files only (remove them, or start "
            "a new run)"
        )


def clear(out: Path) -> None:
    """Remove a run's files from ``out``; ``run.json`` last, so that a folder cleared in
    part is still recognisably a run (and ``--overwrite`` can finish the job)."""
    for name in (*[n for n in RUN_FILES if n != "run.json"], "run.json"):
        target = out / name
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        elif target.exists() or target.is_symlink():
            target.unlink()


def _absolute(spec: str) -> str:
    """An array specification (``FILE``, ``FILE.npz:KEY``, ``FILE.h5ad:obsm/KEY``) with
    ``FILE`` made absolute."""
    file, key = split_array_spec(spec)
    path = os.path.abspath(file)
    return path if key is None else f"{path}:{key}"


def absolute_inputs(settings: dict) -> dict:
    """``settings`` with the files named by ``source`` and ``target`` made absolute, so that
    a run means the same files wherever it is resumed from."""
    out = dict(settings)
    source, target = out.get("source"), out.get("target")
    if source is not None and source != "gaussian":
        out["source"] = _absolute(source)
    if target is None or target == "gaussian":
        return out
    if target.startswith("samples:"):
        out["target"] = "samples:" + _absolute(target[len("samples:") :])
    elif target.startswith("gaussian:"):
        parts = target[len("gaussian:") :].split(",")
        out["target"] = "gaussian:" + ",".join(os.path.abspath(p) for p in parts)
    elif (code := python_spec(target)) is not None:
        out["target"] = f"{os.path.abspath(code[0])}:{code[1]}"
    return out


def input_files(settings: dict) -> list[Path]:
    """The files a run reads: its ``source`` and its target's (samples, an ``.h5ad`` file
    among them, a Gaussian's mean and covariance, the Python file of V)."""
    files = []
    source, target = settings.get("source"), settings.get("target") or "gaussian"
    if source is not None and source != "gaussian":
        files.append(split_array_spec(source)[0])
    if target.startswith("samples:"):
        files.append(split_array_spec(target[len("samples:") :])[0])
    elif target.startswith("gaussian:"):
        files += [Path(p) for p in target[len("gaussian:") :].split(",")]
    elif (code := python_spec(target)) is not None:
        files.append(Path(code[0]))
    return files


def python_target(settings: dict) -> str | None:
    """The file of a target ``FILE.py:NAME`` (code), or ``None``."""
    code = python_spec(settings.get("target") or "gaussian")
    return None if code is None else code[0]


def record_inputs(settings: dict) -> dict[str, str]:
    """``absolute path -> SHA-256`` of each input file that exists (a missing one is
    reported when the problem is built)."""
    return {str(p): sha256(p) for p in input_files(settings) if p.is_file()}


def check_inputs(settings: dict, out: Path, *, target_given: bool) -> None:
    """Refuse to resume a run whose input files are gone or changed, and a run whose target
    is Python code unless ``--target`` names it again (a run directory never makes mongeflow
    import code by itself)."""
    files = input_files(settings)
    recorded = settings.get("inputs")
    if files and recorded is None:
        raise ValueError(
            f"--resume: the run in {out} did not record the contents of its input files "
            "(it was started by an older mongeflow), so resuming it cannot be checked to use "
            "the same data; start a new run"
        )
    problems = [
        f"{p} is read by the run but has no recorded SHA-256 (a damaged or edited run.json)"
        for p in sorted({str(p) for p in files} - set(recorded or {}))
    ]
    for path, digest in (recorded or {}).items():
        if not Path(path).is_file():
            problems.append(f"{path} is gone")
        elif sha256(path) != digest:
            problems.append(f"{path} has changed since the run started")
    if problems:
        raise ValueError(
            f"--resume: the run in {out} was started on other data: "
            + "; ".join(problems)
            + " (resume it with the same files, or start a new run)"
        )
    code = python_target(settings)
    if code is not None and not target_given:
        raise ValueError(
            f"--resume: the run's target is the Python file {code}, and a run directory never "
            "makes mongeflow run code by itself: to continue, name it again with --target "
            f"{settings['target']}"
        )


def build(settings: dict):
    """``(problem, scheme, divergence, potential)`` from the settings of a run; the
    effective scheme and divergence settings are added to ``settings``."""
    scheme_opts, divergence_opts = setting_options()
    try:
        problem = _problem(settings)
    except MemoryError as err:  # numpy's _ArrayMemoryError included
        size = f"d = {settings['dim']}" if settings["dim"] is not None else "these data"
        raise ValueError(
            f"not enough memory to build the problem with {size} ({err}); try a smaller "
            "--dim or fewer samples"
        ) from None
    check_batch_size(problem, settings["batch_size"])
    picked = lambda opts: {k: v for k, v in settings.items() if k in opts}
    # the automatic rules for every setting not given (on resume every stored setting is
    # given, so the stored values come back)
    name = settings["divergence"]
    named_scheme = None if settings["scheme"] == "auto" else settings["scheme"]
    given = {**picked(scheme_opts), **picked(divergence_opts)}
    if name == "auto" and named_scheme is None and asks_for_drift(problem, given):
        named_scheme = "explicit"  # a drift setting given: the constrained drifting model
        settings["scheme"] = "explicit"
    automatic = name == "auto" and named_scheme is None
    chosen = (
        choose_divergence(problem, named_scheme)
        if name == "auto"
        else configure_divergence(name, problem)
    )
    given = picked(divergence_opts)
    divergence = configure(chosen, given, f"divergence {chosen.name!r}") if given else chosen
    settings["divergence"] = divergence.name
    name = None if settings["scheme"] == "auto" else settings["scheme"]
    choice = choose(problem, divergence, settings["steps"], name, automatic)
    given = picked(scheme_opts)
    scheme = (
        configure(choice.scheme, given, f"scheme {choice.scheme.name!r}")
        if given
        else choice.scheme
    )
    steps = choice.steps
    if settings["steps"] is None:  # the rule's: the game's steps and the descent's given
        steps = refinished_steps(choice, scheme)
    settings.update(scheme=scheme.name, steps=steps)
    reasons = refinished(list(choice.reasons), choice.scheme, scheme)
    if settings.get("nonnegativity") is None:  # the rule, for the scheme as given
        settings["nonnegativity"] = scheme.default_nonnegativity(problem.dim)
    # the automatic rates, for the network trained (a rate given is kept, and listed below
    # when it differs from that rule's)
    nonnegativity = settings["nonnegativity"]
    chosen_for = choice.scheme.default_nonnegativity(problem.dim)
    automatic_scheme, why = rate_for_network(choice.scheme, nonnegativity, chosen_for)
    finish = getattr(scheme, "finish_steps", 0)
    if finish != getattr(choice.scheme, "finish_steps", 0):  # the descent's reason as run
        trained = dataclasses.replace(choice.scheme, finish_steps=finish)
        why = rate_for_network(trained, nonnegativity, chosen_for)[1]
    scheme, _ = rate_for_network(scheme, nonnegativity, chosen_for, given)
    automatic_flat, flat_scheme = flat(automatic_scheme), flat(scheme)
    changed = [f"{k} {v}" for k, v in flat_scheme.items() if _differs(automatic_flat.get(k), v)]
    if settings.get("activation") is None:
        settings["activation"] = scheme.default_activation
    elif settings["activation"] != scheme.default_activation:
        changed.append(f"activation {settings['activation']}")
    if settings["nonnegativity"] != chosen_for:
        changed.append(f"nonnegativity {settings['nonnegativity']}")
    reasons = rate_rechosen(reasons, why, choice.scheme, automatic_scheme)
    if changed:
        reasons.append("given, over the choice above: " + ", ".join(changed))
    settings.setdefault("chosen", reasons)  # a resumed run keeps its record
    if settings["patience"] is None:
        settings["patience"] = choice.patience or 0
    if settings["batch_size"] is None:
        settings["batch_size"] = default_batch_size(problem, choice.batch_size)
    widths = settings["widths"]
    widths = scheme.default_widths(problem.dim) if widths is None else tuple(widths)
    potential = default_potential(
        problem.dim,
        widths,
        settings["strong_convexity"],
        settings["activation"],
        settings["nonnegativity"],
    )
    settings.update(flat(scheme), **flat(divergence), widths=list(widths))
    return problem, scheme, divergence, potential


def _problem(settings: dict):
    """The problem of a run: built-in (``problem``, ``dim``) or read from ``source`` (its
    rows, and an ``.h5ad`` target's, selected by ``source_where`` and ``target_where``)."""
    source_where, target_where = settings.get("source_where"), settings.get("target_where")
    if source_where is not None and settings["source"] in (None, "gaussian"):
        raise ValueError("--source-where selects rows of --source FILE.h5ad (by its obs)")
    target = settings["target"] or "gaussian"
    if target_where is not None and not target.startswith("samples:"):
        raise ValueError("--target-where selects rows of --target samples:FILE.h5ad (by its obs)")
    if settings["source"] == "gaussian":
        if target_where is not None:
            raise ValueError(
                "--target-where selects the target rows of a fit from --source FILE; with "
                "--source gaussian, select them beforehand (or use --source FILE)"
            )
        return gaussian_source_problem(settings["target"], settings["dim"])
    if settings["source"] is not None:
        data = load_array(settings["source"], "source", where=source_where)
        return data_problem(
            data,
            settings["target"],
            standardize=settings["standardize"],
            validation=settings["validation"],
            per_feature=bool(settings.get("per_feature")),
            target_where=target_where,
        )
    return get_problem(settings["problem"], dim=settings["dim"])


def start(settings: dict, out: Path, *, resume: bool) -> None:
    """Write ``out/run.json`` before training, so that an interrupted run can continue; a
    new run first removes the files of the run it replaces (see :func:`check_out`). Call it
    holding ``out``'s lock (:func:`mongeflow.files.locked`)."""
    out.mkdir(parents=True, exist_ok=True)
    if not resume:
        clear(out)
    for leftover in out.glob(f"{TEMPORARY_PREFIX}*"):  # of a process killed mid-write
        leftover.unlink(missing_ok=True)
    meta = {"format": RUN_FORMAT, "version": _version, "settings": settings}
    write_json(out / "run.json", meta, default=_jsonable)


def callbacks(settings: dict, out: Path, *, resume: bool, quiet: bool) -> list[Callback]:
    from mongeflow.interrupts import TrainingCallback  # Ctrl-C: after the checkpoint's

    checkpoint = Checkpoint(out, settings["checkpoint_every"], resume=resume)
    return [Progress(not quiet), checkpoint, TrainingCallback(out)]


def mesh(devices: int | None):
    """The mesh of a fit asked for ``devices`` devices (``None``: every local device), or
    ``None`` for one device."""
    import jax

    from mongeflow.devices import data_mesh

    count = jax.local_device_count()
    if devices is None:
        devices = count
    if not 1 <= devices <= count:
        raise ValueError(
            f"--devices must be between 1 and the {count} local "
            f"{jax.local_devices()[0].platform} device(s), got {devices}"
        )
    return None if devices == 1 else data_mesh(devices)


def device_text(mesh=None) -> str:
    """The devices a fit runs on, as said on the terminal and in ``metrics.json``:
    ``"cpu (1 of 1 devices)"``, ``"gpu: NVIDIA H200 (2 of 2 devices)"``."""
    import jax

    device = jax.devices()[0]
    kind = "" if device.platform == "cpu" else f": {device.device_kind}"
    used = 1 if mesh is None else mesh.size
    return f"{device.platform}{kind} ({used} of {jax.device_count()} devices)"


def write(result: FitResult, out: Path, settings: dict, mesh=None) -> None:
    """The maps, ``metrics.json``, ``history.csv`` and the figures of a finished fit."""
    out.mkdir(parents=True, exist_ok=True)
    best = result.best
    per_seed = {
        str(seed): {k: _jsonable(np.asarray(v)[i]) for k, v in result.metrics.items()}
        for i, seed in enumerate(result.seeds)
    }
    metrics = {
        **per_seed[str(result.seeds[best])],
        "best_seed": result.seeds[best],
        "per_seed": per_seed,
        "wall_time_s": result.wall_time_s,
        "device": device_text(mesh),
        "problem": result.problem.name,
        "dim": result.problem.dim,
        "scheme": record(result.scheme),
        "divergence": record(result.divergence),
        "steps": result.steps,
        "batch_size": result.batch_size,
        "widths": settings.get("widths"),
        "standardize": settings.get("standardize"),
        "per_feature": bool(settings.get("per_feature")),
        # why the scheme and its settings were chosen, when --scheme auto chose them
        "chosen": settings.get("chosen"),
        "seeds": list(result.seeds),
        "stopped_at": [int(k) for k in result.stopped_at],  # per seed, −1: ran to the end
        # the figure that chose each seed's map, that map's step (−1: the last), the step at
        # which each seed stopped improving (−1: it did not), the last step run
        "selection": result.selection,
        "best_step": [int(k) for k in np.atleast_1d(result.best_step)],
        "early_stop": [int(k) for k in np.atleast_1d(result.early_stop)],
        "last_step": result.last_step,
        "validation_size": (
            None if result.problem.validation is None else int(result.problem.validation.shape[0])
        ),
        # the kept map against the linear (Bures) map and the starting map, held out
        "linear_comparison": _comparison_record(result),
        "version": _version,
    }
    write_json(out / "metrics.json", metrics, default=_jsonable)
    write_history(result, out / "history.csv")
    info = lambda i: {
        "seed": result.seeds[i],
        "settings": settings,
        "metrics": per_seed[str(result.seeds[i])],
    }
    save(result.map(best), out, info(best))
    if settings["keep"] == "all" and result.n_seeds > 1:
        for i, seed in enumerate(result.seeds):
            save(result.map(i), out / "seeds" / str(seed), info(i))
    plot_pushforward(result, out / "pushforward.png")
    plot_history(result, out / "history.png")
    if result.problem.dim == 2:
        plot_displacement(result, out / "displacement.png")


def _comparison_record(result: FitResult) -> dict | None:
    """``FitResult.comparison`` per seed, as JSON (non-finite figures as null), with
    ``linear_kept``."""
    cmp = result.comparison
    if cmp is None:
        return None
    number = lambda v: float(v) if np.isfinite(v) else None

    def one(c, i):
        return {
            **{k: number(c[k][i]) for k in ("map", "linear", "start", "noise")},
            "verdict": str(c["verdict"][i]),
        }

    out = {"figure": cmp["figure"], "per_seed": {}}
    for i, seed in enumerate(result.seeds):
        row = one(cmp, i)
        row["linear_kept"] = bool(result.linear_kept[i])
        if "sinkhorn_verdict" in cmp:  # the Sinkhorn divergence's own verdict
            row["figure_verdict"] = str(cmp["sinkhorn_verdict"][i])
        if "decided_by" in cmp:  # the figure whose verdict stands (a solve may fail)
            row["decided_by"] = str(cmp["decided_by"][i])
        if "energy_distance" in cmp:
            row["energy_distance"] = one(cmp["energy_distance"], i)
        out["per_seed"][str(seed)] = row
    return out


def write_history(result: FitResult, path: Path) -> None:
    """``history.csv``: one row per record and seed."""
    keys = [k for k in result.history if k != "step"]
    lines = ["step,seed," + ",".join(keys)]
    for i, step in enumerate(result.history["step"]):
        for j, seed in enumerate(result.seeds):
            row = [f"{float(np.asarray(result.history[k])[i, j]):.6g}" for k in keys]
            lines.append(f"{int(step)},{seed}," + ",".join(row))
    atomic_write(path, "\n".join(lines) + "\n")


def summary_lines(result: FitResult, out: Path) -> list[str]:
    """What the command prints: each seed's figures, the best, warnings (``mongeflow:``)."""
    advice = "try a smaller --tau / --learning-rate, or --float64"
    reasons = result.stop_reason or [None] * result.n_seeds
    diverging = [r == "diverging" for r in reasons]
    if any(diverging):
        advice += (
            "; a map that ran off with a target V means V is likely not convex away from "
            "the data (see the warning)"
            if result.problem.target.has_potential
            else ""
        )

    def what(i: int) -> str:
        if diverging[i]:
            return "a map that ran off (|T(x)| far beyond the data and the target)"
        return "a non-finite loss or map"

    if (result.stopped_at >= 0).all():
        stops = "; ".join(
            f"seed {seed}: {what(i)} at step {int(k)}"
            for i, (seed, k) in enumerate(zip(result.seeds, result.stopped_at, strict=True))
        )
        return [
            f"mongeflow: the fit stopped ({stops}). The kept map (the last within bounds, or "
            f"the linear map: see the warnings) is saved in {out}; {advice}"
        ]
    lines = []
    for i, (seed, k) in enumerate(zip(result.seeds, result.stopped_at, strict=True)):
        figures = ", ".join(f"{m} {float(np.asarray(v)[i]):.4g}" for m, v in result.metrics.items())
        if result.n_seeds > 1:
            lines.append(f"seed {seed}: {figures}")
        if k >= 0:
            lines.append(
                f"mongeflow: warning: seed {seed} hit {what(i)} at step {k}; its last map "
                f"within bounds was kept ({advice})"
            )
    best = result.best
    figures = ", ".join(f"{m} {float(np.asarray(v)[best]):.4g}" for m, v in result.metrics.items())
    cmp = result.comparison
    if cmp is not None and cmp["figure"] == "sinkhorn_divergence":  # what decided
        mine, linear = float(cmp["map"][best]), float(cmp["linear"][best])
        figures += f"{', ' if figures else ''}held-out sinkhorn_divergence {mine:.4g} "
        figures += f"(linear {linear:.4g})"
    which = f"best seed {result.seeds[best]}: " if result.n_seeds > 1 else ""
    held = result.problem.validation
    where = f"on {held.shape[0]} held-out rows, " if held is not None else ""
    chosen = ""
    if result.best_step is not None and result.best_step[best] >= 0:
        chosen = f"map of step {int(result.best_step[best])} of {result.last_step}, "
    lines.append(
        f"{which}{where}{figures}{', ' if figures else ''}{chosen}wall time "
        f"{result.wall_time_s:.1f} s -> {out}/metrics.json, {out}/map.json"
    )
    return lines
