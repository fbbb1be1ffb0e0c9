"""The Wasserstein-2 benchmark's Mix3toMix10 pairs as two sample sets: ``mongeflow bench w2``.

Korotin, Li, Genevay, Solomon, Filippov & Burnaev, *Do Neural Optimal Transport Solvers Work?
A Continuous Wasserstein-2 Benchmark*, NeurIPS 2021: the pairs of :mod:`mongeflow.problems.w2`
(``w2-pair``), :data:`N_SAMPLES` unpaired rows per side, 10 % of them held out. Every row is
trained on the same training rows and scored on the same held-out source rows against the
true map, as :mod:`mongeflow.bench.twosample` does (L2-UVP, the benchmark's cos, the energy
distance to the held-out target rows, wall time): the same rows over the same harness
(:mod:`mongeflow.bench.harness`). Beside them:

- the published figures, quoted and marked as quoted: the best of the 2021 paper's solvers
  at each d (:data:`PUBLISHED`, its Table; fresh samples at every step, on a GPU) and ENOT
  (Buzun et al., NeurIPS 2024, as reported);
- for the library's fits, the wall time at which the L2-UVP on training rows (recorded at
  each history record; the fit never sees T*) first reaches twice the 2021 best.

Writes ``DIR/results.json``, ``DIR/table.md`` and ``DIR/l2_uvp_vs_dim.png``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from mongeflow.bench import twosample
from mongeflow.bench.harness import time_to
from mongeflow.bench.report import Panel, figure_vs_dim, markdown_table, page, write
from mongeflow.problems.w2 import SUPPORTED_DIMS

#: rows per side of each pair (the benchmark's own scale; 10 % held out)
N_SAMPLES = 2**16
#: rows per side with ``quick``
QUICK_N = 2**11
#: what ``bench w2`` runs when no ``--methods`` is given
DEFAULT_METHODS = ("identity", "linear", "auto", "drift-explicit", "sinkhorn-adam", "energy-adam")
#: L2-UVP (%) reported in the literature, by d (quoted, not run here)
PUBLISHED = {
    "best of Korotin et al. 2021 (quoted)": {
        2: 0.1, 4: 0.3, 8: 0.7, 16: 1.4, 32: 2.8, 64: 3.2, 128: 2.0,
    },
    "ENOT, Buzun et al. 2024 (quoted)": {
        2: 0.02, 4: 0.03, 8: 0.14, 16: 0.24, 32: 0.67, 64: 0.56, 128: 0.30,
    },
}  # fmt: skip
BEST_2021 = "best of Korotin et al. 2021 (quoted)"


def run_w2(
    out: str | Path | None = None,
    *,
    dims: Sequence[int] = (2, 4, 8, 16, 32, 64),
    methods_: Sequence[str] | None = None,
    time_cap: float = twosample.TIME_CAP,
    quick: bool = False,
    seed: int = 0,
    progress: bool = True,
) -> dict:
    """Run the rows on the W2 pairs at each d; write the outputs to ``out`` (if given).

    Raises:
        ValueError: a d without the benchmark's potentials, or what
            :func:`~mongeflow.bench.twosample.run_twosample` refuses.
    """
    bad = [d for d in dims if d not in SUPPORTED_DIMS]
    if bad:
        raise ValueError(
            f"the W2 benchmark pairs exist for d in {SUPPORTED_DIMS}; got {bad[0]} in --dims"
        )
    results = twosample.run_twosample(
        None,
        dims=(2,) if quick else tuple(dims),
        problems=("w2-pair",),
        methods_=list(methods_ or DEFAULT_METHODS),
        time_cap=time_cap,
        quick=quick,
        seed=seed,
        n=QUICK_N if quick else N_SAMPLES,
        progress=progress,
    )
    results["n_samples"] = QUICK_N if quick else N_SAMPLES
    results["published"] = {k: {str(d): v for d, v in row.items()} for k, row in PUBLISHED.items()}
    for run in results["runs"]:
        level = 2 * PUBLISHED[BEST_2021][run["dim"]]
        run["twice_2021_best"] = level
        for row in run["methods"].values():
            hist = (row.get("settings") or {}).get("history") or {}
            if "l2_uvp" in hist:
                row["time_to_twice_2021_best_s"] = time_to(hist["time_s"], hist["l2_uvp"], level)
    if out is not None:
        write(out, results, w2_table(results), {"l2_uvp_vs_dim.png": w2_figure})
    return results


def w2_table(results: dict) -> str:
    """The two-sample tables of each d, then one table of L2-UVP against d with the quoted
    figures and the time to twice the 2021 best."""
    runs = sorted(results["runs"], key=lambda r: r["dim"])
    dims = [r["dim"] for r in runs]
    names = list(dict.fromkeys(n for r in runs for n in r["methods"]))
    rows = []
    for name in names:
        cells = [name]
        for r in runs:
            row = r["methods"].get(name)
            if row is None or row["l2_uvp"] is None:
                cells.append("")
                continue
            cell = f"{row['l2_uvp']:.3g} ({row['wall_time_s']:.0f} s"
            if "time_to_twice_2021_best_s" in row:
                t = row["time_to_twice_2021_best_s"]
                cell += f"; to 2× best {'—' if t is None else f'{t:.0f} s'}"
            cells.append(cell + ")")
        rows.append(cells)
    for name, row in PUBLISHED.items():
        rows.append([name, *(f"{row[d]:g}" for d in dims)])
    summary = page(
        "The W2 benchmark's Mix3toMix10 pairs (Korotin et al. 2021), two sample sets",
        f"{results['n_samples']} unpaired rows per side, 10 % held out; L2-UVP (%) on the "
        "held-out source rows against T*. Quoted rows are the literature's (fresh samples at "
        "every step, on a GPU), not run here. 'to 2× best': wall time at which the L2-UVP on "
        "training rows first reached twice the 2021 best (— never).",
        markdown_table(["method", *(f"d = {d}" for d in dims)], rows),
    )
    return summary + "\n" + twosample.twosample_table(results)


def w2_figure(results: dict, path: Path) -> None:
    """L2-UVP against d: a line per row run here, grey lines for the quoted ones."""
    figure_vs_dim(
        results,
        path,
        [Panel("l2_uvp", "L2-UVP % (held out)", least=1e-3)],
        quoted=PUBLISHED,
        title="W2 benchmark, Mix3toMix10, two sample sets",
    )
