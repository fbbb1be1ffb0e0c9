"""Command-line interface: ``mongeflow fit | apply | sample | density | bench``.

The options of ``fit`` that set a scheme or a divergence are derived from the settings of
the registered values (:data:`~mongeflow.schemes.SCHEMES`, :data:`~mongeflow.divergences.
DIVERGENCES`): a scheme or divergence added to a registry gets its flags, defaults and
help here with no other edit.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import re
import sys
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from mongeflow import interrupts

# The registries and the settings' helpers import JAX and Equinox (seconds), numpy a tenth
# of a second: main() loads them once it has taken over Ctrl-C, so that a Ctrl-C while they
# load exits at once. Until then (for a caller of _parser(), say), the names below stand in
# for them and load them on first use.
_HEAVY = {
    "numpy": (),  # as np
    "mongeflow.problems": ("PROBLEMS",),
    "mongeflow.runs": ("AUTOMATIC", "FIT_OPTIONS", "MAX_DIM", "OPTION_CHOICES", "setting_options"),
    "mongeflow.settings": ("closest", "did_you_mean", "unknown"),
}


def _load() -> None:
    """Replace the stand-ins below by the names of :data:`_HEAVY`."""
    for module, names in _HEAVY.items():
        loaded = importlib.import_module(module)
        globals().update({name: getattr(loaded, name) for name in names})
    globals()["np"] = sys.modules["numpy"]


class _LaterModule:
    def __getattr__(self, name: str):
        _load()
        return getattr(np, name)


class _LaterMapping(Mapping):
    def __init__(self, name: str):
        self.name = name

    def _loaded(self) -> Mapping:
        _load()
        return globals()[self.name]

    def __getitem__(self, key):
        return self._loaded()[key]

    def __iter__(self):
        return iter(self._loaded())

    def __len__(self) -> int:
        return len(self._loaded())


def _later_function(name: str):
    def call(*args, **kwargs):
        _load()
        return globals()[name](*args, **kwargs)

    return call


if TYPE_CHECKING:  # what they stand for; MAX_DIM is bound by _load, which main() calls first
    import numpy as np

    from mongeflow.runs import MAX_DIM
else:
    np = _LaterModule()
PROBLEMS = _LaterMapping("PROBLEMS")
AUTOMATIC = _LaterMapping("AUTOMATIC")
FIT_OPTIONS = _LaterMapping("FIT_OPTIONS")
OPTION_CHOICES = _LaterMapping("OPTION_CHOICES")
setting_options = _later_function("setting_options")
closest = _later_function("closest")
did_you_mean = _later_function("did_you_mean")
unknown = _later_function("unknown")


def __getattr__(name: str):  # cli.MAX_DIM before _load
    if name == "MAX_DIM":
        _load()
        return globals()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


EPILOG = """examples:
  mongeflow fit --problem gaussian --dim 8 --scheme natural --out runs/g8
  mongeflow fit --source x.csv --target gaussian --standardize --scheme adam --out runs/x
  mongeflow fit --resume --out runs/x --steps 2000
  mongeflow apply runs/x --input x.csv --output y.csv
  mongeflow bench paper --seeds 100 --out bench/paper
"""


class CLIError(Exception):
    """A user error: printed as one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    """argparse, with the closest flag, command or choice suggested for a misspelt one
    (Python 3.11's argparse names the bad word only)."""

    def parse_args(self, args=None, namespace=None):
        args, extras = self.parse_known_args(args, namespace)
        if extras:
            command = getattr(args, "command", None)
            parser = _subparsers(self).get(command, self)
            flags = [f for f in parser._option_string_actions if f.startswith("--")]
            hints = []
            for word in extras:
                flag = word.split("=", 1)[0]
                if flag.startswith("-") and (close := closest(flag, flags)):
                    hints.append(f"{flag}: did you mean {' or '.join(close)}?")
            hint = "".join(f"; {h}" for h in hints)
            parser.error(f"unrecognized arguments: {' '.join(extras)}{hint}")
        return args

    def error(self, message):
        # "argument X: invalid choice: 'fitt' (choose from 'fit', 'apply', ...)"
        match = re.search(r"invalid choice: '?([^' ]*)'? \(choose from (.*)\)$", message)
        if match:
            choices = [c.strip().strip("'") for c in match.group(2).split(",")]
            message += did_you_mean(match.group(1), choices)
        super().error(message)


def _subparsers(parser) -> dict:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _flag_value(value) -> str:
    """A setting's value as it is written on the command line (``0.02,0.05,0.2`` for a list
    setting), for ``--help``."""
    if isinstance(value, tuple):
        return ",".join(repr(float(v)) for v in value)
    return repr(value) if isinstance(value, str) else str(value)


def _default_text(option) -> str:
    groups: dict[str, list[str]] = {}
    for owner, value in option.defaults.items():
        groups.setdefault(_flag_value(value), []).append(owner)
    if len(groups) == 1 and len(option.defaults) > 1:
        text = f"default {next(iter(groups))}"
    else:
        text = "default " + "; ".join(f"{v} ({', '.join(owners)})" for v, owners in groups.items())
    if option.dest in AUTOMATIC:  # chosen by the fit when not given
        return f"automatic: {AUTOMATIC[option.dest]}; registered {text}"
    return text


def _add_setting(group, option) -> None:
    flag = f"--{option.flag}"
    listed = "comma-separated; " if option.kind == "floats" else ""
    text = f"{option.help} ({listed}{_default_text(option)})"
    if option.kind == "bool":
        group.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=text)
    elif option.kind in ("choice", "str"):
        group.add_argument(flag, choices=option.choices, default=None, help=text)
    elif option.kind == "floats":  # read by the setting itself (Option.parse, Option.check)
        group.add_argument(flag, default=None, help=text, metavar="X,Y,...")
    else:
        kind = int if option.kind == "int" else float
        group.add_argument(flag, type=kind, default=None, help=text, metavar=option.kind.upper())


#: the library's words for an argument, and the flag a command-line user sets instead
_FLAG_WORDS = (
    (re.compile(r"jax\.config\.update\('jax_enable_x64', True\)"), "--float64"),
    (re.compile(r"\bstandardize=False"), "--no-standardize"),
    (re.compile(r"\bper_feature=True"), "--per-feature"),
    (re.compile(r"\bbatch_size=(\d+|N)"), r"--batch-size \1"),
    (re.compile(r"\bvalidation=0\b"), "--validation 0"),
    (re.compile(r"\bdim=(-?\d+)"), r"--dim \1"),
    (re.compile(r"\bdim ≥ 1"), "--dim ≥ 1"),
    (re.compile(r"\btarget_where="), "--target-where "),
    (re.compile(r"\bsource_where="), "--source-where "),
    (re.compile(r"^(unknown target .*?)did you mean '([^']+)'"), r"\1did you mean --target \2"),
)


def _in_flags(message) -> str:
    """A library message (or error) as a command-line user reads it: arguments named by
    their flags; a setting refused by :func:`mongeflow.settings.configure` (its
    ``SettingError``) by the setting's flag, ``--tau must be in (0, 100], got 0``."""
    on_command_line = getattr(message, "on_command_line", None)
    message = on_command_line() if callable(on_command_line) else str(message)
    for pattern, flag in _FLAG_WORDS:
        message = pattern.sub(flag, message)
    return message


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="mongeflow",
        description="Learn optimal-transport (Monge) maps T = ∇φ with constrained gradient flows.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    f = sub.add_parser(
        "fit",
        help="train a map on a built-in problem or on data; write the map, metrics and figures",
        description="Train a map T = ∇φ; write into DIR the best seed's map (map.eqx, "
        "map.json; every seed's in seeds/SEED/ with several seeds), run.json (the settings), "
        "metrics.json, history.csv, checkpoint.bin, pushforward.png, "
        "history.png and, for d = 2, displacement.png. Exit status: 0 done, 2 bad input, "
        "3 every seed stopped on a non-finite loss or map or a map that ran off (the kept "
        "map is saved), "
        "4 with --strict, the kept map does not beat the linear map on held-out figures, "
        "130 interrupted (continue with --resume --out DIR). Settings marked 'automatic' "
        "are chosen by the fit from d and the target when not given (README: 'What the "
        "defaults do'; run.json's 'chosen' says what was chosen and why); a value given "
        "here always wins. 'registered' is the scheme's or divergence's own value.",
    )
    for dest, (default, text) in FIT_OPTIONS.items():
        flag = f"--{dest.replace('_', '-')}"
        shown = f"{text} (default {default})" if default not in (None, False) else text
        if default is True:
            f.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=text)
        elif isinstance(default, bool):
            f.add_argument(flag, action="store_true", default=None, help=text)
        elif isinstance(default, list) or dest == "widths":
            metavar = "W" if dest == "widths" else None
            f.add_argument(flag, type=int, nargs="+", default=None, help=shown, metavar=metavar)
        elif dest in (
            "dim",
            "steps",
            "batch_size",
            "checkpoint_every",
            "eval_size",
            "patience",
            "log_every",
        ):
            f.add_argument(flag, type=int, default=None, help=shown)
        elif dest in ("strong_convexity", "validation"):
            f.add_argument(flag, type=float, default=None, help=shown)
        elif dest in OPTION_CHOICES:
            f.add_argument(flag, choices=list(OPTION_CHOICES[dest]), default=None, help=shown)
        else:
            f.add_argument(flag, default=None, help=shown)
    f.add_argument("--out", required=True, help="the run directory")
    f.add_argument("--resume", action="store_true", help="continue the run in --out")
    f.add_argument("--overwrite", action="store_true", help="replace an existing run in --out")
    f.add_argument("--quiet", action="store_true", help="no progress bar")
    f.add_argument(
        "--devices",
        type=int,
        default=None,
        metavar="N",
        help="split each training batch over N devices (data parallelism; default: every "
        "local device). The map does not depend on N, up to the order of floating-point sums",
    )
    scheme_opts, divergence_opts = setting_options()
    group = f.add_argument_group("scheme settings (each applies to the schemes named)")
    for option in scheme_opts.values():
        _add_setting(group, option)
    group = f.add_argument_group("divergence settings")
    for option in divergence_opts.values():
        _add_setting(group, option)

    a = sub.add_parser(
        "apply",
        help="apply a saved map (or its inverse) to points",
        description="Apply the map saved in RUN (a `mongeflow fit` directory) to the points "
        "of --input and write them to --output (.npy or .csv; a .csv keeps the header of an "
        "--input .csv that has one; for an --input .h5ad, an .h5ad output is a copy of the "
        "input AnnData, of the --input-where rows only when given, with the mapped points "
        "in obsm[--output-key]). Exit status 3 when some output rows are not finite (they "
        "are written, and counted on stderr).",
    )
    _run_arguments(a, "where to write the result (.npy, .csv or .h5ad)", with_input=True)
    a.add_argument(
        "--input-where",
        default=None,
        metavar="EXPR",
        help="with --input FILE.h5ad: only the rows (cells) whose obs match: 'COLUMN == "
        "VALUE', 'COLUMN != VALUE' or 'COLUMN in [V1, V2]'; no other expression is accepted",
    )
    a.add_argument(
        "--output-key",
        default="X_mongeflow",
        metavar="KEY",
        help="with --output FILE.h5ad: the obsm key of the mapped points (default "
        "X_mongeflow; replaced if the input has it)",
    )
    a.add_argument(
        "--inverse",
        action="store_true",
        help="apply T^-1 = grad phi* (Newton on the convex conjugate problem; prints the "
        "residual |T(x) - y|)",
    )
    sm = sub.add_parser("sample", help="sample the source through a saved map: T^-1(y), y ~ γ")
    _run_arguments(sm, "where to write them (.npy or .csv)", with_input=False)
    sm.add_argument("-n", type=int, required=True, help="number of samples")
    sm.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    sm.add_argument("--target", default=None, help=TARGET_HELP)
    de = sub.add_parser(
        "density",
        help="the source log-density implied by a saved map",
        description="log rho0(x) = log gamma(T(x)) + log det DT(x) at the points of --input "
        "(needs the target's normalising constant: Gaussian targets).",
    )
    _run_arguments(de, "where to write log rho0 (.npy or .csv)", with_input=True)
    de.add_argument("--target", default=None, help=TARGET_HELP)

    b = sub.add_parser(
        "bench",
        help="run a benchmark: the paper's table, the known-map problems, or two sample sets",
        description="Benchmarks. 'paper': the experiment of Dumont, Lacombe & Vialard (2026) "
        "and the library's better rows; 'maps': every registered scheme and outside "
        "baselines on problems with a known Monge map; 'twosample': the same when both "
        "sides are given only as samples (every sample divergence × scheme, OTT-JAX's "
        "solvers, the linear map, an unconstrained drifting MLP); 'w2': the Wasserstein-2 "
        "benchmark's Mix3toMix10 pairs (Korotin et al. 2021) as two sample sets of 2^16 rows, "
        "beside the published figures (default rows: identity linear auto (the semi-dual "
        "scheme on a sample target) drift-explicit "
        "sinkhorn-adam energy-adam; d in 2 4 8 16 32 64 128). Each writes "
        "DIR/results.json and DIR/table.md, and figures.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    b.add_argument("which", choices=["paper", "maps", "twosample", "w2"], help="which benchmark")
    b.add_argument("--out", required=True, help="output directory")
    b.add_argument("--seeds", type=int, default=100, help="paper: number of seeds (0 … N−1)")
    b.add_argument("--rows", nargs="+", default=None, help="paper: only these rows (all if unset)")
    b.add_argument(
        "--dims",
        type=int,
        nargs="+",
        default=[2, 8, 16, 32, 64],
        help="maps, twosample: dimensions",
    )
    b.add_argument(
        "--problems",
        nargs="+",
        default=None,
        help="maps, twosample: registered problems with a known map (default: dense-potential "
        "for maps, dense-pair for twosample)",
    )
    b.add_argument(
        "--methods",
        nargs="+",
        default=None,
        metavar="METHOD",
        help="maps, twosample: only these rows (all if unset; an unknown name lists them): "
        "identity, linear, entropic-map, neural-dual (OTT-JAX's W2NeuralDual, needs the "
        "'bench' extra), auto, a registered scheme (maps) or DIVERGENCE-SCHEME (twosample)",
    )
    b.add_argument(
        "--time-cap",
        type=float,
        default=300.0,
        metavar="SECONDS",
        help="maps, twosample: every W2NeuralDual budget stops after this much training time",
    )
    b.add_argument(
        "--quick", action="store_true", help="tiny budgets: tests the code path, measures nothing"
    )
    b.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


TARGET_HELP = (
    "the target, when the map's is Python code (FILE.py:NAME, never imported from a run "
    "directory by itself) or was not saved; overrides the saved one"
)


def _run_arguments(parser, output_help: str, with_input: bool) -> None:
    """RUN, --input and --output of the commands that use a saved map."""
    parser.add_argument("run", metavar="RUN", help="a run directory written by `mongeflow fit`")
    if with_input:
        parser.add_argument(
            "--input",
            required=True,
            help="points [n, d] (.npy, .npz[:KEY], .csv or .h5ad[:X | :obsm/KEY | :layers/KEY])",
        )
    parser.add_argument("--output", required=True, help=output_help)


def cmd_fit(args) -> int:
    from mongeflow import runs
    from mongeflow.files import locked
    from mongeflow.fit import FitInterrupted, FitWarning, fit
    from mongeflow.io import DataWarning

    out = Path(args.out)
    settings = runs.fit_settings(vars(args), out, resume=args.resume, overwrite=args.overwrite)
    if args.resume and (note := runs.past_the_decay(settings)):
        print(f"mongeflow: warning: {note}", file=sys.stderr)
    if settings["float64"]:
        import jax

        jax.config.update("jax_enable_x64", True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        # every setting is checked and the problem built before anything is written
        problem, scheme, divergence, potential = runs.build(settings)
        mesh = runs.mesh(args.devices)
        if not args.quiet:
            print(f"mongeflow: fitting on {runs.device_text(mesh)}", file=sys.stderr)
        try:
            with locked(out):
                # again under the lock: another fit may have started here meanwhile
                runs.check_out(out, resume=args.resume, overwrite=args.overwrite)
                runs.start(settings, out, resume=args.resume)
                callbacks = runs.callbacks(settings, out, resume=args.resume, quiet=args.quiet)
                try:
                    result = fit(
                        problem,
                        scheme,
                        divergence,
                        potential,
                        steps=settings["steps"],
                        batch_size=settings["batch_size"],
                        seed=settings["seed"],
                        callbacks=callbacks,
                        final_eval_size=settings["eval_size"],
                        patience=settings["patience"] or None,
                        log_every=settings["log_every"],
                        standardize=settings["standardize"],
                        per_feature=bool(settings.get("per_feature")),
                        mesh=mesh,
                    )
                except FitInterrupted as err:
                    print(
                        f"mongeflow: {err}: continue with `mongeflow fit --resume --out {out}`",
                        file=sys.stderr,
                    )
                    return 130
                runs.write(result, out, settings, mesh)
        except OSError as err:  # a figure or a folder that could not be written
            why = "the disk is full" if err.errno == errno.ENOSPC else (err.strerror or err)
            raise CLIError(
                f"cannot write into {out}: {why}; the last checkpoint is "
                f"intact: continue with `mongeflow fit --resume --out {out}`"
            ) from None
    for line in runs.summary_lines(result, out):
        print(line, file=sys.stderr if line.startswith("mongeflow:") else sys.stdout)
    for w in caught:
        if issubclass(w.category, (FitWarning, DataWarning)):
            print(f"mongeflow: warning: {_in_flags(str(w.message))}", file=sys.stderr)
    if (result.stopped_at >= 0).all():
        return 3
    beats = result.metrics.get("beats_linear")
    if settings.get("strict") and (beats is None or not bool(beats[result.best])):
        why = (
            "no held-out comparison with the linear map was possible"
            if beats is None
            else "the kept map does not beat the linear map (see the warning above and "
            "metrics.json's 'linear_comparison')"
        )
        print(f"mongeflow: --strict: {why}", file=sys.stderr)
        return 4
    return 0


def cmd_bench(args) -> int:
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise CLIError(f"--out {out} exists and is not a directory")
    if args.which == "paper":
        from mongeflow.bench.paper import run_paper

        if args.seeds < 1:
            raise CLIError(f"--seeds must be ≥ 1, got {args.seeds}")
        run_paper(args.seeds, out, quick=args.quick, rows=args.rows, progress=not args.quiet)
    elif args.which == "w2":
        from mongeflow.bench.twosample import method_names
        from mongeflow.bench.w2 import run_w2

        bad = [m for m in args.methods or () if m not in method_names()]
        if bad:
            raise CLIError(unknown("method", bad[0], method_names()))
        if args.time_cap <= 0:
            raise CLIError(f"--time-cap must be positive, got {args.time_cap}")
        run_w2(
            out,
            dims=args.dims,
            methods_=args.methods,
            time_cap=args.time_cap,
            quick=args.quick,
            progress=not args.quiet,
        )
    else:
        if args.which == "maps":
            from mongeflow.bench.maps import method_names, missing_neural_dual
            from mongeflow.bench.maps import run_maps as run

            problems = args.problems or ["dense-potential"]
        else:
            from mongeflow.bench.twosample import method_names, missing_neural_dual
            from mongeflow.bench.twosample import run_twosample as run

            problems = args.problems or ["dense-pair"]
        bad = [p for p in problems if p not in PROBLEMS]
        if bad:
            raise CLIError(unknown("problem", bad[0], PROBLEMS))
        if min(args.dims) < 1 or max(args.dims) > MAX_DIM:
            raise CLIError(f"--dims must be in 1 … {MAX_DIM}, got {args.dims}")
        methods = args.methods or method_names()
        bad = [m for m in methods if m not in method_names()]
        if bad:
            raise CLIError(unknown("method", bad[0], method_names()))
        if {"neural-dual", "monge-gap"} & set(methods) and (why := missing_neural_dual()):
            raise CLIError(why)
        if args.time_cap <= 0:
            raise CLIError(f"--time-cap must be positive, got {args.time_cap}")
        run(
            out,
            dims=tuple(args.dims),
            problems=tuple(problems),
            methods_=tuple(methods),
            time_cap=args.time_cap,
            quick=args.quick,
            progress=not args.quiet,
        )
    print((out / "table.md").read_text())
    return 0


def _load_map(run, target: str | None = None, need_target: bool = False):
    """The map saved in ``run``; with ``need_target``, refuse a map whose target is Python
    code unless ``--target`` names it (a run directory never makes mongeflow run code)."""
    from mongeflow.mapping import TargetNotLoaded, load, target_record_of

    if need_target and target is None:
        record = target_record_of(run) or {}
        if not isinstance(record, dict):
            raise CLIError(f"{run}/map.json: its 'target' is not a record: the file is damaged")
        if record.get("kind") == "python":
            raise CLIError(
                f"the map's target is the function {record.get('name')!r} of the Python file "
                f"{record.get('file')}: a run directory never makes mongeflow run code by "
                f"itself; name it: --target {record.get('file')}:{record.get('name')}"
            )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TargetNotLoaded)  # said above, or not needed
        return load(run, target=target)


def _read_points(path, m):
    return _read_input(path, m).values


def _read_input(path, m, where: str | None = None):
    """The points of ``--input`` (:class:`mongeflow.io.Points`: with a CSV file's header and
    an ``.h5ad`` file's AnnData), checked against the map's dimension."""
    from mongeflow.io import read_points

    points = read_points(path, "input", where=where)
    x = points.values
    if x.shape[1] != m.dim:
        raise CLIError(f"--input {path}: points have dimension {x.shape[1]}, the map {m.dim}")
    return points


def _write_points(path, arr, points=None, key: str = "X_mongeflow") -> None:
    """Write ``arr`` to ``path``: ``.npy``; ``.csv`` (with the header of ``points``, the
    input, when it was a CSV file with one and ``arr`` has as many columns); ``.h5ad``, for
    an input read from an ``.h5ad`` file: a copy of its AnnData (of the selected rows only)
    with ``arr`` in ``obsm[key]``."""
    p = Path(path)
    suffix = p.suffix.lower()
    adata = getattr(points, "adata", None)
    if suffix == ".h5ad" and adata is None:
        raise CLIError(
            f"--output {path}: an .h5ad output is a copy of an --input .h5ad file with the "
            "mapped points added (mongeflow apply); write a .npy or .csv file"
        )
    if suffix not in (".npy", ".csv", ".h5ad"):
        raise CLIError(
            f"--output {path}: expected a .npy or .csv file name"
            + (" (or .h5ad)" if adata is not None else "")
        )
    from mongeflow.files import TEMPORARY_PREFIX, atomic_write

    arr = np.asarray(arr)
    p.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".npy":  # written whole or not at all (Ctrl-C, a full disk)
        atomic_write(p, lambda f: np.save(f, arr, allow_pickle=False))
    elif suffix == ".csv":
        rows = arr[:, None] if arr.ndim == 1 else arr
        names = getattr(points, "columns", None)
        if names is None or len(names) != rows.shape[1]:
            header = ""
        else:  # (quoted as CSV files quote: a name that holds a comma or a quote)
            header = ",".join(
                '"' + n.replace('"', '""') + '"' if {",", '"'} & set(n) else n for n in names
            )
        atomic_write(p, lambda f: np.savetxt(f, rows, delimiter=",", header=header, comments=""))
    else:
        if not key or "/" in key:
            raise CLIError(f"--output-key {key!r}: expected a name without '/'")
        if points.rows is not None:
            adata = adata[points.rows].copy()
        adata.obsm[key] = arr
        tmp = p.with_name(f"{TEMPORARY_PREFIX}{os.getpid()}-{p.name}")
        try:  # written whole or not at all, as the others
            adata.write_h5ad(tmp)
            os.replace(tmp, p)
        except OSError as err:
            raise CLIError(f"cannot write --output {path}: {err.strerror or err}") from None
        except Exception as err:  # anndata's own (mixed-type obs columns, say)
            raise CLIError(f"cannot write --output {path}: {type(err).__name__}: {err}") from None
        finally:
            tmp.unlink(missing_ok=True)


def cmd_apply(args) -> int:
    m = _load_map(args.run)
    points = _read_input(args.input, m, args.input_where)
    x = points.values
    if args.inverse:
        out = np.asarray(m.inverse(x))
        residual = np.linalg.norm(np.asarray(m.transport(out)) - x, axis=1)
        print(
            f"inverse: residual |T(x) - y| median {float(np.median(residual)):.2e}, "
            f"max {float(residual.max()):.2e}"
        )
    else:
        out = m.transport(x)
    _write_points(args.output, out, points, args.output_key)
    print(f"{len(out)} points -> {args.output}")
    bad = ~np.all(np.isfinite(np.asarray(out)), axis=1)
    if bad.any():
        print(
            f"mongeflow: warning: {int(bad.sum())} of {len(out)} output rows are not finite "
            f"(the first: row {int(np.flatnonzero(bad)[0])}): the map overflows there; those "
            "inputs may lie far outside the data it was trained on (or retrain with --float64)",
            file=sys.stderr,
        )
        return 3
    return 0


def cmd_sample(args) -> int:
    import jax

    from mongeflow.mapping import sample_stored_rows
    from mongeflow.problems import EmpiricalTarget

    if args.n < 1:
        raise CLIError(f"-n must be ≥ 1, got {args.n}")
    m = _load_map(args.run, args.target, need_target=True)
    if isinstance(m.target, EmpiricalTarget):
        x, distinct = sample_stored_rows(m, args.n, args.seed)
    else:
        x, distinct = np.asarray(m.sample(jax.random.key(args.seed), args.n)), None
    _write_points(args.output, x)
    if distinct is not None and distinct < args.n:
        print(
            f"mongeflow: warning: the target is known by its {distinct} stored rows (saved "
            f"with the map), and T^-1 of them gives at most {distinct} distinct points: each "
            f"row is used once, and the other {args.n - distinct} of the {args.n} samples "
            f"repeat rows drawn with replacement (only {distinct} distinct)",
            file=sys.stderr,
        )
    print(f"{args.n} samples -> {args.output}")
    return 0


def cmd_density(args) -> int:
    m = _load_map(args.run, args.target, need_target=True)
    x = _read_points(args.input, m)
    logp = m.log_density(x)
    _write_points(args.output, logp)
    print(f"{len(logp)} log-densities -> {args.output}")
    return 0


COMMANDS = {
    "fit": cmd_fit,
    "apply": cmd_apply,
    "sample": cmd_sample,
    "density": cmd_density,
    "bench": cmd_bench,
}


def _make_private_folder(folder: Path) -> None:
    """Create ``folder`` and those of its parents that are missing, each with mode 0700."""
    missing = []
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    for path in reversed(missing):
        path.mkdir(mode=0o700, exist_ok=True)


def _not_private(folder: Path) -> str | None:
    """Why someone other than this user could write into ``folder`` (``None``: no one can,
    or the platform has no user ids to compare)."""
    if not hasattr(os, "geteuid"):
        return None
    info = folder.stat()
    if info.st_uid != os.geteuid():
        return f"owned by another user (uid {info.st_uid})"
    if info.st_mode & 0o022:
        return f"writable by others than its owner (mode {info.st_mode & 0o777:o})"
    return None


def _compilation_cache() -> None:
    """Keep compiled programs on disk so that a repeated command skips XLA compilation.

    Compilation is most of a short command's time (a repeated 200-step fit: 27 s → 13 s on
    2 cores). The cache is the folder ``$MONGEFLOW_CACHE_DIR``, by default
    ``$XDG_CACHE_HOME/mongeflow/jax`` (``~/.cache/mongeflow/jax``); ``MONGEFLOW_NO_CACHE=1``
    turns it off. Entries are keyed by a hash of the program and the JAX/XLA versions, so a
    stale one is never used; but JAX runs whatever program it finds under a key, so whoever
    can write into the folder can make this command run their code. The folder is created
    with mode 0700 (its missing parents too), and one that is not owned by this user or that
    its group or others may write into is not used: a one-line warning, then the command runs
    without a cache (not checked where the platform has no user ids). A cache that JAX is
    already told to use (``JAX_COMPILATION_CACHE_DIR``, or ``jax.config`` in the calling
    program) is left as it is, unchecked: that folder is the user's choice.
    """
    import jax

    if os.environ.get("MONGEFLOW_NO_CACHE") or jax.config.jax_compilation_cache_dir:
        return
    if os.environ.get("MONGEFLOW_CACHE_DIR"):
        folder = Path(os.environ["MONGEFLOW_CACHE_DIR"]).expanduser().absolute()
    else:
        root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
        folder = root.expanduser().absolute() / "mongeflow" / "jax"
    try:
        _make_private_folder(folder)
        why = _not_private(folder)
    except OSError as err:
        why = f"not usable ({err.strerror or err})"
    if why:
        print(
            f"mongeflow: warning: compilation cache not used: {folder} is {why}, and a "
            "program put there by someone else would run as this command; remove it (it is "
            "made again, private) or choose another folder with MONGEFLOW_CACHE_DIR "
            "(MONGEFLOW_NO_CACHE=1 turns the cache off)",
            file=sys.stderr,
        )
        return
    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)


def main(argv: list[str] | None = None) -> int:
    """The command line; returns the exit status.

    Run as the program (``argv`` None: the console script, ``python -m mongeflow``), it
    takes over Ctrl-C before it loads anything heavy (:mod:`mongeflow.interrupts`): exit
    status 130 within about two seconds, and after a Ctrl-C the process ends without the
    interpreter's finalisation.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with interrupts.handling(enabled=argv is None):
        _load()
        parser = _parser()
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help()
            return 2
        try:
            _compilation_cache()
        except (OSError, RuntimeError) as err:  # no home folder, say: run without a cache
            print(f"mongeflow: warning: compilation cache not used: {err}", file=sys.stderr)
        try:
            code = COMMANDS[args.command](args)
        except (CLIError, ValueError) as err:  # InputError included: bad data, target, settings
            print(f"mongeflow: error: {_in_flags(err)}", file=sys.stderr)
            code = 2
        except MemoryError as err:  # numpy's _ArrayMemoryError included
            print(f"mongeflow: error: out of memory: {err}", file=sys.stderr)
            code = 2
        except OSError as err:  # a file or folder that cannot be read or written
            where = f" {err.filename!r}" if getattr(err, "filename", None) else ""
            print(f"mongeflow: error:{where} {err.strerror or err}", file=sys.stderr)
            code = 2
        except KeyboardInterrupt:
            print("mongeflow: interrupted", file=sys.stderr)
            code = 130
        if interrupts.requested():
            interrupts.exit_now(code)
    return code


if __name__ == "__main__":
    sys.exit(main())
