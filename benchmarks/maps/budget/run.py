"""Constrained schemes against Adam and gradient descent at an equal budget of mini-batch
gradient evaluations, on the hard known-map problem ``dense-potential``.

    python benchmarks/maps/budget/run.py [--dim 16] [--budget 2000] [--out benchmarks/maps/budget]

Every method trains the default map (ICNN, widths for d, PSD quadratic term, T_0 = id) in
standardised coordinates on batches of 256 fresh samples, on the exact log-det KL, with its
rate or time step decaying to 0 (cosine) over its schedule. The budget B counts mini-batch
gradients of a loss in θ: B steps of Adam or gradient descent; B/100 outer steps of 100
inner Adam steps for the explicit scheme (each outer step also evaluates one velocity,
the exact score of T#μ0, so it does B/100 more) and for the implicit scheme. The natural
scheme's step also solves a Gram system (matrix-free CG, up to 100 Jacobian products), so
it gets the wall time of the Adam run instead. Every run keeps its best map on held-out
samples, and runs every step. L2-UVP on 10 000 fresh pairs (x, T*(x)).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import jax
import numpy as np

import mongeflow as mf
from mongeflow.auto import auto_learning_rate
from mongeflow.schemes.inner import AdamInner


def run(name, problem, scheme, steps, rows):
    start = time.perf_counter()
    res = mf.fit(problem, scheme, steps=steps, patience=None)
    wall = time.perf_counter() - start
    m = res.summary()
    row = {
        "method": name,
        "steps": steps,
        "l2_uvp": m["l2_uvp"],
        "linear_l2_uvp": m["linear_l2_uvp"],
        "objective": m["objective"],
        "energy_distance": m["energy_distance"],
        "energy_distance_floor": m["energy_distance_floor"],
        "wall_s": wall,
        "kept_step": int(np.asarray(res.best_step).ravel()[0]),
    }
    rows.append(row)
    print(
        f"{name:<40} L2-UVP {row['l2_uvp']:7.3f} %  F {row['objective']:8.4f}  {wall:6.1f} s",
        flush=True,
    )
    return row


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dim", type=int, default=16)
    ap.add_argument("--budget", type=int, default=2000)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent)
    args = ap.parse_args()
    d, B = args.dim, args.budget
    problem = mf.get_problem("dense-potential", dim=d)
    outer = B // 100
    rows: list[dict] = []
    adam = run(
        f"adam (rate {auto_learning_rate(d):.3g})",
        problem,
        mf.Adam(learning_rate=auto_learning_rate(d), decay_steps=B),
        B,
        rows,
    )
    for rate in (0.025, 0.1):
        euclidean = mf.Euclidean(learning_rate=rate, decay_steps=B)
        run(f"euclidean (rate {rate})", problem, euclidean, B, rows)
    inner = AdamInner(steps=100, decay=True)
    run(
        f"explicit (τ 0.4, {outer} × 100 inner)",
        problem,
        mf.Explicit(tau=0.4, decay_steps=outer, inner=inner),
        outer,
        rows,
    )
    run(
        f"implicit (τ 0.4, {outer} × 100 inner)",
        problem,
        mf.Implicit(tau=0.4, inner=inner),
        outer,
        rows,
    )
    # natural: its time per step from two short runs (their difference removes compilation
    # and evaluation), then as many steps as fit in the Adam run's wall time
    natural = mf.get_scheme("natural")
    times = []
    for probe in (10, 40):
        start = time.perf_counter()
        mf.fit(problem, natural, steps=probe, patience=None, final_eval_size=0, log_every=probe)
        times.append(time.perf_counter() - start)
    per_step = max((times[1] - times[0]) / 30, 1e-3)
    steps = max(10, int(adam["wall_s"] / per_step))
    run("natural (τ 0.1, Adam's wall time)", problem, natural, steps, rows)
    meta = {
        "command": f"python benchmarks/maps/budget/run.py --dim {d} --budget {B}",
        "machine": f"{platform.processor() or platform.machine()}, {jax.devices()[0]}",
        "jax": jax.__version__,
        "date": time.strftime("%Y-%m-%d"),
        "rows": rows,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"results-d{d}.json").write_text(json.dumps(meta, indent=1))
    lines = [
        f"# dense-potential, d = {d}: an equal budget of {B} mini-batch gradients",
        "",
        f"`{meta['command']}`; {meta['machine']}; jax {meta['jax']}; {meta['date']}.",
        "",
        "| method | steps | L2-UVP % | linear map % | held-out F | ED / floor | wall time (s) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['method']} | {r['steps']} | {r['l2_uvp']:.3g} | {r['linear_l2_uvp']:.3g} | "
            f"{r['objective']:.4g} | {r['energy_distance'] / r['energy_distance_floor']:.2f} | "
            f"{r['wall_s']:.0f} |"
        )
    (args.out / f"table-d{d}.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
