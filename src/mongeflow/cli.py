"""Command-line interface: ``mongeflow fit ...`` (also ``python -m mongeflow``)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

EPILOG = """examples:
  mongeflow fit --problem gaussian --dim 8 --scheme natural --out runs/g8
  mongeflow fit --problem paper-gmm --scheme explicit --tau 0.4 --inner-steps 100 --out runs/p
"""

# CLI flag -> scheme field; a flag is accepted only by schemes that have the field.
SCHEME_FLAGS = {
    "tau": "tau",
    "learning_rate": "learning_rate",
    "inner_steps": "inner_steps",
    "inner_learning_rate": "inner_learning_rate",
    "damping": "damping",
    "solver": "solver",
}


class CLIError(Exception):
    """A user error: printed as one line, exit code 2."""


def _parser() -> argparse.ArgumentParser:
    from mongeflow.problems import PROBLEMS
    from mongeflow.schemes import SCHEMES

    parser = argparse.ArgumentParser(
        prog="mongeflow",
        description="Learn optimal-transport (Monge) maps T = ∇φ with constrained gradient flows.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    f = sub.add_parser(
        "fit",
        help="train a map on a built-in problem and write metrics and figures",
        description="Train a map T = ∇φ on a built-in problem; write DIR/metrics.json, "
        "DIR/history.csv, DIR/pushforward.png and DIR/history.png.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    f.add_argument("--problem", default="gaussian", help=f"one of: {', '.join(PROBLEMS)}")
    f.add_argument("--dim", type=int, default=None, help="dimension d (problem default if unset)")
    f.add_argument("--scheme", default="natural", help=f"one of: {', '.join(SCHEMES)}")
    f.add_argument("--steps", type=int, default=None, help="outer steps (scheme default if unset)")
    f.add_argument("--batch-size", type=int, default=256, help="mini-batch size n")
    f.add_argument("--seed", type=int, nargs="+", default=[0], help="seed(s), trained together")
    f.add_argument("--tau", type=float, help="time step τ (natural, explicit, implicit)")
    f.add_argument("--learning-rate", type=float, help="learning rate (euclidean, adam)")
    f.add_argument("--inner-steps", type=int, help="inner solver steps (explicit, implicit)")
    f.add_argument("--inner-learning-rate", type=float, help="inner Adam rate (explicit, implicit)")
    f.add_argument("--damping", type=float, help="Gram damping λ (natural, explicit linearised)")
    f.add_argument(
        "--solver",
        help="inner solver: explicit adam|linearised, implicit adam|lbfgs, natural auto|dense|cg",
    )
    f.add_argument(
        "--widths",
        type=int,
        nargs="+",
        default=None,
        help="ICNN hidden widths (default: the library's default map)",
    )
    f.add_argument("--strong-convexity", type=float, default=0.0, help="α of (α/2)|x|²")
    f.add_argument("--float64", action="store_true", help="compute in float64")
    f.add_argument("--out", required=True, help="run directory to write")
    f.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def _scheme(args):
    from mongeflow.schemes import SCHEMES

    if args.scheme not in SCHEMES:
        raise CLIError(f"unknown scheme {args.scheme!r}; valid schemes: {', '.join(SCHEMES)}")
    cls = SCHEMES[args.scheme]
    fields = set(getattr(cls, "__dataclass_fields__", {}))
    settings = {}
    for flag, field in SCHEME_FLAGS.items():
        value = getattr(args, flag)
        if value is None:
            continue
        if field not in fields:
            raise CLIError(f"--{flag.replace('_', '-')} does not apply to scheme {args.scheme!r}")
        settings[field] = value
    try:
        return cls(**settings)
    except ValueError as err:
        raise CLIError(str(err)) from None


def _potential(args, dim):
    if args.widths is None and not args.strong_convexity:
        return None
    from mongeflow.maps import ICNN

    widths = tuple(args.widths or (20, 20))
    if min(widths) < 1:
        raise CLIError(f"--widths must be positive, got {widths}")
    return lambda key: ICNN(
        dim,
        key,
        widths=widths,
        quadratic_rank=min(dim, 64),
        identity_init=True,
        strong_convexity=args.strong_convexity,
    )


def _jsonable(v):
    import numpy as np

    v = np.asarray(v)
    return v.item() if v.size == 1 else v.tolist()


def cmd_fit(args) -> int:
    if args.float64:
        import jax

        jax.config.update("jax_enable_x64", True)
    from mongeflow import __version__
    from mongeflow.fit import fit
    from mongeflow.plot import plot_history, plot_pushforward
    from mongeflow.problems import PROBLEMS, get_problem

    if args.problem not in PROBLEMS:
        raise CLIError(f"unknown problem {args.problem!r}; valid problems: {', '.join(PROBLEMS)}")
    if args.dim is not None and args.dim < 1:
        raise CLIError(f"--dim must be ≥ 1, got {args.dim}")
    if args.steps is not None and args.steps < 1:
        raise CLIError(f"--steps must be ≥ 1, got {args.steps}")
    if args.batch_size < 2:
        raise CLIError(f"--batch-size must be ≥ 2, got {args.batch_size}")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise CLIError(f"--out {out} exists and is not a directory")
    try:
        problem = get_problem(args.problem, dim=args.dim)
    except ValueError as err:
        raise CLIError(str(err)) from None
    scheme = _scheme(args)
    result = fit(
        problem,
        scheme,
        _potential(args, problem.dim),
        steps=args.steps,
        batch_size=args.batch_size,
        seed=args.seed,
        progress=not args.quiet,
    )
    out.mkdir(parents=True, exist_ok=True)
    metrics = {k: _jsonable(v) for k, v in result.metrics.items()}
    metrics.update(
        wall_time_s=result.wall_time_s,
        problem=problem.name,
        dim=problem.dim,
        scheme=args.scheme,
        settings={k: _jsonable(v) for k, v in vars(scheme).items()},
        steps=result.steps,
        batch_size=result.batch_size,
        seeds=list(result.seeds),
        stopped_at=_jsonable(result.stopped_at),
        version=__version__,
    )
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    _write_history(result, out / "history.csv")
    plot_pushforward(result, out / "pushforward.png")
    plot_history(result, out / "history.png")
    stopped = [s for s, k in zip(result.seeds, result.stopped_at, strict=True) if k >= 0]
    for s in stopped:
        print(
            f"mongeflow: warning: seed {s} stopped at a non-finite loss or map; its last finite "
            "map was kept (try a smaller --tau / --learning-rate, or --float64)",
            file=sys.stderr,
        )
    summary = ", ".join(f"{k} {v:.4g}" for k, v in result.summary().items())
    print(f"{summary}, wall time {result.wall_time_s:.1f} s -> {out}/metrics.json")
    return 0


def _write_history(result, path: Path) -> None:
    import numpy as np

    keys = [k for k in result.history if k != "step"]
    lines = ["step,seed," + ",".join(keys)]
    for i, step in enumerate(result.history["step"]):
        for j, seed in enumerate(result.seeds):
            row = [f"{float(np.asarray(result.history[k])[i, j]):.6g}" for k in keys]
            lines.append(f"{int(step)},{seed}," + ",".join(row))
    path.write_text("\n".join(lines) + "\n")


COMMANDS = {"fit": cmd_fit}


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return COMMANDS[args.command](args)
    except CLIError as err:
        print(f"mongeflow: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("mongeflow: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
