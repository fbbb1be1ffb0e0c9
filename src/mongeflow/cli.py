"""Command-line interface: ``mongeflow fit``, ``mongeflow bench`` (or ``python -m mongeflow``)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

EPILOG = """examples:
  mongeflow fit --problem gaussian --dim 8 --scheme natural --out runs/g8
  mongeflow fit --problem paper-gmm --scheme explicit --tau 0.4 --inner-steps 100 --out runs/p
  mongeflow bench paper --seeds 100 --out bench/paper
  mongeflow bench maps --out bench/maps
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
        description="Train a map T = ∇φ on a built-in problem or on data; write the map "
        "(DIR/map.eqx, DIR/map.json), DIR/metrics.json, DIR/history.csv, DIR/pushforward.png "
        "(first two principal axes when d > 2), DIR/history.png and, for d = 2, "
        "DIR/displacement.png. Exit status: 0 done, 2 bad input, 3 every seed stopped on a "
        "non-finite loss or map (the last finite map is saved), 130 interrupted (resume with "
        "--resume).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    f.add_argument("--problem", default="gaussian", help=f"one of: {', '.join(PROBLEMS)}")
    f.add_argument(
        "--source",
        help="source samples [n, d] from a .npy, .npz or .csv file (instead of --problem), "
        "or a built-in problem name",
    )
    f.add_argument(
        "--target",
        default="gaussian",
        help="with --source FILE: 'gaussian' (standard), 'gaussian:MEAN.npy,COV.npy', or "
        "'FILE.py:NAME' with NAME a JAX function V: [d] -> scalar (target ∝ exp(-V), V convex)",
    )
    f.add_argument(
        "--standardize",
        action="store_true",
        help="with --source FILE: train on (x - mean) / std (one overall std); the saved map "
        "still applies to x in the file's units",
    )
    f.add_argument(
        "--checkpoint-every", type=int, default=None, help="steps between checkpoints in DIR"
    )
    f.add_argument(
        "--eval-size",
        type=int,
        default=10_000,
        help="fresh samples of each side for the final metrics in metrics.json (0: none)",
    )
    f.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --out from its last checkpoint (same settings; --steps is "
        "the total)",
    )
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

    a = sub.add_parser(
        "apply",
        help="apply a saved map (or its inverse) to points",
        description="Apply the map saved in RUN (a `mongeflow fit` directory) to the points "
        "of --input and write them to --output (.npy or .csv).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    _run_arguments(a, "where to write the result (.npy or .csv)", with_input=True)
    a.add_argument(
        "--inverse",
        action="store_true",
        help="apply T^-1 = grad phi* (Newton on the convex conjugate problem; prints the "
        "residual |T(x) - y|)",
    )
    sm = sub.add_parser(
        "sample",
        help="sample the source through a saved map: T^-1 of samples of the target",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    _run_arguments(sm, "where to write them (.npy or .csv)", with_input=False)
    sm.add_argument("-n", type=int, required=True, help="number of samples")
    sm.add_argument("--seed", type=int, default=0, help="random seed")
    de = sub.add_parser(
        "density",
        help="the source log-density implied by a saved map",
        description="log rho0(x) = log gamma(T(x)) + log det D^2 phi(x) at the points of "
        "--input (needs the target's normalising constant: Gaussian targets).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    _run_arguments(de, "where to write log rho0 (.npy or .csv)", with_input=True)

    b = sub.add_parser(
        "bench",
        help="run a benchmark: the paper's table, or the known-map problems",
        description="Benchmarks. 'paper': the experiment of Dumont, Lacombe & Vialard (2026), "
        "all seeds of a method in one program, plus the library's better rows; writes "
        "DIR/results.json, DIR/table.md, DIR/fig1_pushforward.png, DIR/fig2_histograms.png. "
        "'maps': every scheme and two outside baselines on problems with a known Monge map; "
        "writes DIR/results.json, DIR/table.md, DIR/l2_uvp_vs_time.png.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    b.add_argument("which", choices=["paper", "maps"], help="which benchmark")
    b.add_argument("--out", required=True, help="output directory")
    b.add_argument("--seeds", type=int, default=100, help="paper: number of seeds (0 … N−1)")
    b.add_argument("--rows", nargs="+", default=None, help="paper: only these rows (default: all)")
    b.add_argument("--dims", type=int, nargs="+", default=[2, 8, 32, 64], help="maps: dimensions")
    b.add_argument(
        "--problems",
        nargs="+",
        default=["gaussian", "known-potential"],
        help="maps: problems with a known map",
    )
    b.add_argument(
        "--quick", action="store_true", help="tiny budgets: tests the code path, measures nothing"
    )
    b.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


def _run_arguments(parser, output_help: str, with_input: bool) -> None:
    """RUN, --input and --output of the commands that use a saved map."""
    parser.add_argument("run", metavar="RUN", help="a run directory written by `mongeflow fit`")
    if with_input:
        parser.add_argument("--input", required=True, help="points [n, d] (.npy, .npz or .csv)")
    parser.add_argument("--output", required=True, help=output_help)


def cmd_bench(args) -> int:
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise CLIError(f"--out {out} exists and is not a directory")
    if args.which == "paper":
        from mongeflow.bench.paper import run_paper

        if args.seeds < 1:
            raise CLIError(f"--seeds must be ≥ 1, got {args.seeds}")
        try:
            run_paper(args.seeds, out, quick=args.quick, rows=args.rows, progress=not args.quiet)
        except ValueError as err:
            raise CLIError(str(err)) from None
        print((out / "table.md").read_text())
        return 0
    from mongeflow.bench.maps import run_maps
    from mongeflow.problems import PROBLEMS

    bad = [p for p in args.problems if p not in PROBLEMS]
    if bad:
        raise CLIError(f"unknown problem {bad[0]!r}; valid problems: {', '.join(PROBLEMS)}")
    if min(args.dims) < 1:
        raise CLIError(f"--dims must be ≥ 1, got {args.dims}")
    run_maps(
        out,
        dims=tuple(args.dims),
        problems=tuple(args.problems),
        quick=args.quick,
        progress=not args.quiet,
    )
    print((out / "table.md").read_text())
    return 0


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
    from mongeflow.fit import FitInterrupted, fit
    from mongeflow.io import load_array
    from mongeflow.plot import plot_displacement, plot_history, plot_pushforward
    from mongeflow.problems import PROBLEMS, get_problem

    if args.dim is not None and args.dim < 1:
        raise CLIError(f"--dim must be ≥ 1, got {args.dim}")
    if args.steps is not None and args.steps < 1:
        raise CLIError(f"--steps must be ≥ 1, got {args.steps}")
    if args.batch_size < 2:
        raise CLIError(f"--batch-size must be ≥ 2, got {args.batch_size}")
    if args.eval_size < 0:
        raise CLIError(f"--eval-size must be ≥ 0, got {args.eval_size}")
    if args.checkpoint_every is not None and args.checkpoint_every < 1:
        raise CLIError(f"--checkpoint-every must be ≥ 1, got {args.checkpoint_every}")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise CLIError(f"--out {out} exists and is not a directory")
    if args.resume and not (out / "checkpoint.json").is_file():
        raise CLIError(f"--resume: {out} holds no checkpoint (run `mongeflow fit` into it first)")
    source = args.source
    from_file = source is not None and source not in PROBLEMS
    if from_file:
        data = load_array(source, "source")
        problem = data
        label = f"data {source}"
    else:
        name = source or args.problem
        if name not in PROBLEMS:
            raise CLIError(f"unknown problem {name!r}; valid problems: {', '.join(PROBLEMS)}")
        if args.target != "gaussian" or args.standardize:
            raise CLIError("--target and --standardize apply to --source FILE only")
        try:
            problem = get_problem(name, dim=args.dim)
        except ValueError as err:
            raise CLIError(str(err)) from None
        label = name
    dim = data.shape[1] if from_file else problem.dim
    scheme = _scheme(args)
    try:
        result = fit(
            problem,
            scheme,
            _potential(args, dim),
            target=args.target,
            standardize=args.standardize,
            steps=args.steps,
            batch_size=args.batch_size,
            seed=args.seed,
            checkpoint=out,
            checkpoint_every=args.checkpoint_every,
            resume=args.resume,
            final_eval_size=args.eval_size,
            progress=not args.quiet,
        )
    except FitInterrupted as err:
        print(f"mongeflow: {err}: run again with --resume --out {out}", file=sys.stderr)
        return 130
    except ValueError as err:  # InputError included: bad data, target or checkpoint
        raise CLIError(str(err)) from None
    out.mkdir(parents=True, exist_ok=True)
    metrics = {k: _jsonable(v) for k, v in result.metrics.items()}
    metrics.update(
        wall_time_s=result.wall_time_s,
        problem=label,
        dim=dim,
        scheme=args.scheme,
        settings={k: _jsonable(v) for k, v in vars(scheme).items()},
        steps=result.steps,
        batch_size=result.batch_size,
        seeds=list(result.seeds),
        stopped_at=[int(k) for k in result.stopped_at],  # per seed, −1: ran to the end
        standardized=bool(args.standardize),
        version=__version__,
    )
    if from_file:
        metrics["target"] = args.target
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    _write_history(result, out / "history.csv")
    result.save(out)
    plot_pushforward(result, out / "pushforward.png")
    plot_history(result, out / "history.png")
    if dim == 2:
        plot_displacement(result, out / "displacement.png")
    advice = "try a smaller --tau / --learning-rate, or --float64"
    if (result.stopped_at >= 0).all():
        steps = ", ".join(str(k) for k in result.stopped_at)
        print(
            f"mongeflow: the fit stopped: a non-finite loss or map at step {steps} "
            f"(seed {', '.join(map(str, result.seeds))}). The last map with a finite loss is "
            f"saved in {out}; {advice}",
            file=sys.stderr,
        )
        return 3
    for s, k in zip(result.seeds, result.stopped_at, strict=True):
        if k >= 0:
            print(
                f"mongeflow: warning: seed {s} hit a non-finite loss or map at step {k}; its last "
                f"finite map was kept ({advice})",
                file=sys.stderr,
            )
    summary = ", ".join(f"{k} {v:.4g}" for k, v in result.summary().items())
    print(f"{summary}, wall time {result.wall_time_s:.1f} s -> {out}/metrics.json, {out}/map.json")
    return 0


def _load_map(run):
    from mongeflow.io import InputError
    from mongeflow.mapping import load

    try:
        return load(run)
    except InputError as err:
        raise CLIError(str(err)) from None


def _read_points(path, m):
    from mongeflow.io import InputError, load_array

    try:
        x = load_array(path, "input")
    except InputError as err:
        raise CLIError(str(err)) from None
    if x.shape[1] != m.dim:
        raise CLIError(f"--input {path}: points have dimension {x.shape[1]}, the map {m.dim}")
    return x


def _write_points(path, arr) -> None:
    import numpy as np

    p = Path(path)
    if p.suffix.lower() not in (".npy", ".csv"):
        raise CLIError(f"--output {path}: expected a .npy or .csv file name")
    p.parent.mkdir(parents=True, exist_ok=True)
    if p.suffix.lower() == ".npy":
        np.save(p, arr)
    else:
        np.savetxt(p, np.atleast_2d(arr.T).T if arr.ndim == 1 else arr, delimiter=",")


def cmd_apply(args) -> int:
    m = _load_map(args.run)
    x = _read_points(args.input, m)
    if args.inverse:
        out, residual = m.inverse(x, return_residual=True)
        print(
            f"inverse: residual |T(x) - y| median {float(np.median(residual)):.2e}, "
            f"max {float(residual.max()):.2e}"
        )
    else:
        out = m.transport(x)
    _write_points(args.output, out)
    print(f"{len(out)} points -> {args.output}")
    return 0


def cmd_sample(args) -> int:
    if args.n < 1:
        raise CLIError(f"-n must be ≥ 1, got {args.n}")
    m = _load_map(args.run)
    try:
        x, residual = m.sample(args.n, seed=args.seed, return_residual=True)
    except ValueError as err:
        raise CLIError(str(err)) from None
    _write_points(args.output, x)
    print(f"{args.n} samples -> {args.output} (inverse residual max {float(residual.max()):.2e})")
    return 0


def cmd_density(args) -> int:
    m = _load_map(args.run)
    x = _read_points(args.input, m)
    try:
        logp = m.log_density(x)
    except ValueError as err:
        raise CLIError(str(err)) from None
    _write_points(args.output, logp)
    print(f"{len(logp)} log-densities -> {args.output}")
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


COMMANDS = {
    "fit": cmd_fit,
    "apply": cmd_apply,
    "sample": cmd_sample,
    "density": cmd_density,
    "bench": cmd_bench,
}


def _compilation_cache() -> None:
    """Keep compiled programs on disk so that a repeated command skips XLA compilation.

    Compilation is most of a short command's time (about 23 s → 10 s for a 200-step fit on
    2 cores). The cache is ``$XDG_CACHE_HOME/mongeflow/jax`` (default ``~/.cache``), unless
    ``JAX_COMPILATION_CACHE_DIR`` names another; ``MONGEFLOW_NO_CACHE=1`` turns it off.
    Entries are keyed by the program and the JAX/XLA versions, so a stale one is never used.
    """
    import jax

    if os.environ.get("MONGEFLOW_NO_CACHE") or jax.config.jax_compilation_cache_dir:
        return
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    jax.config.update("jax_compilation_cache_dir", str(root / "mongeflow" / "jax"))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from mongeflow.io import InputError

    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    _compilation_cache()
    try:
        return COMMANDS[args.command](args)
    except CLIError as err:
        print(f"mongeflow: error: {err}", file=sys.stderr)
        return 2
    except InputError as err:  # bad data or target, found below the command's own checks
        print(f"mongeflow: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("mongeflow: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
