"""Which map a fit keeps, and which it could have kept: each argument is one ``mf.fit`` with
the automatic settings on a built-in pair, ``NAME:D[:ROWS[:SEED]]`` (``w2-pair:16``,
``w2-pair:16:8192``, ``dense-pair:8::1``; ``STEPS=N`` in the environment sets the steps).
One JSON line per fit: the selection figure and its tolerance, the kept step, the L2-UVP of
the returned map on 4 096 fresh source samples (``uvp``), and per history record the
selection figure (``fig``) and the L2-UVP on the held-out rows (``l2``).

    python kept.py w2-pair:4 dense-pair:8 > kept.jsonl; python kept.py --table kept.jsonl

``--table`` reads such lines back and prints, for each fit, the L2-UVP of the map kept, of
the last one, the history's lowest, and of the map each tolerance k × the figure's noise
floor would keep (the latest within k floors of the lowest figure).
"""

import json
import os
import sys
import time
import warnings

import numpy as np


def fit_line(spec: str) -> dict:
    import jax

    import mongeflow as mf
    from mongeflow.metrics import source_with_map

    parts = spec.split(":")
    name, d = parts[0], int(parts[1])
    n = int(parts[2]) if len(parts) > 2 and parts[2] else None
    seed = int(parts[3]) if len(parts) > 3 else 0
    p = mf.get_problem(name, dim=d) if n is None else mf.get_problem(name, dim=d, n=n)
    steps = os.environ.get("STEPS")
    t = time.perf_counter()
    res = mf.fit(p, seed=seed, **({"steps": int(steps)} if steps else {}))
    wall = time.perf_counter() - t
    x, true = source_with_map(p, jax.random.key(7), 4096)
    tx, true = np.asarray(res.transport(x)), np.asarray(true)
    uvp = 100 * float(np.mean(np.sum((tx - true) ** 2, 1))) / float(np.sum(np.var(true, 0)))
    h, k = res.history, len(res.history["step"])
    return dict(
        spec=spec,
        wall=wall,
        selection=res.selection,
        tolerance=float(res.tolerance),
        settles=bool(res.scheme.settles),
        best_step=int(np.asarray(res.best_step).ravel()[0]),
        uvp=uvp,
        step=[int(s) for s in h["step"]],
        fig=np.asarray(h[res.selection]).reshape(k, -1)[:, 0].tolist(),
        l2=np.asarray(h["l2_uvp"]).reshape(k, -1)[:, 0].tolist(),
    )


def kept_step(step, fig, tol):
    """The record KeepBest keeps with tolerance ``tol`` (the latest within it of the lowest
    so far; with 0, the lowest)."""
    best, kept = np.inf, None
    for s, f in zip(step, fig, strict=True):
        if np.isfinite(f) and (f <= best + tol if tol > 0 else f < best):
            kept = s
        best = min(best, f) if np.isfinite(f) else best
    return kept


def table(path: str) -> None:
    from mongeflow.fit import CLEARLY_WORSE, SINKHORN_TOLERANCE

    for line in open(path):
        r = json.loads(line)
        sel, tol = r["selection"], r["tolerance"]
        if r.get("settles"):
            floor = tol / CLEARLY_WORSE[sel]
        else:
            floor = tol / SINKHORN_TOLERANCE if sel == "sinkhorn_divergence" else tol
        l2 = dict(zip(r["step"], r["l2"], strict=True))
        steps = {k: kept_step(r["step"], r["fig"], k * floor) for k in (0.1, 0.3, 1, 3)}
        ks = " ".join(f"{k}: {s} ({l2[s]:.3f})" for k, s in steps.items())
        print(
            f"{r['spec']}  {sel}, floor {floor:.4g}; kept step {r['best_step']} "
            f"({r['uvp']:.3f} % on fresh samples); last record {l2[r['step'][-1]]:.3f}, "
            f"lowest {min(r['l2']):.3f}; kept within k floors, k = {ks}; {r['wall']:.0f} s"
        )


if __name__ == "__main__":
    if sys.argv[1] == "--table":
        table(sys.argv[2])
    else:
        warnings.simplefilter("ignore")
        for spec in sys.argv[1:]:
            print(json.dumps(fit_line(spec)), flush=True)
