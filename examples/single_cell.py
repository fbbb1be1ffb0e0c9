r"""Worked example on single-cell data: one PBMC population mapped onto another in PCA space.

    pip install -e ".[singlecell]"
    python examples/single_cell.py       # runs/single_cell/: single_cell.png, mapped.h5ad, map/
    python examples/single_cell.py --source "CD19+ B" --target "CD4+/CD25 T Reg" --pcs 20

The data: ``10x_pbmc68k_reduced.h5ad``, the 700-cell subset of 10x Genomics' 68k peripheral
blood mononuclear cells (Zheng et al. 2017, *Nat. Commun.* 8, 14049) that scanpy ships (Wolf et
al. 2018, *Genome Biology* 19, 15), with its PCA (``obsm["X_pca"]``, 50 components) and each
cell's type (``obs["bulk_labels"]``). It is read from the installed scanpy package, with
mongeflow's own AnnData reader (``mongeflow.io.load_array("FILE.h5ad:obsm/X_pca",
where='bulk_labels == "Dendritic"')``); scanpy itself is not imported.

The default pair, CD14+ monocytes (129 cells) to dendritic cells (240), are the two largest
populations of the file, and related ones: both myeloid, monocytes being the precursors of
monocyte-derived dendritic cells. (Naive to memory CD4+ T cells, 8 and 19 cells here, are too
few to learn a map from and to judge it on held-out cells.) The map T = ∇φ between the two
laws, on the first ``--pcs`` principal components, is learnt from samples of both sides by the
automatic fit (the constrained drifting model): ``data_problem`` holds out 10 % of each
population, never trained on, and the figures printed are on those held-out cells: the energy
distance between the mapped held-out monocytes and the held-out dendritic cells, for the learnt
map, for the linear (Bures) map between the two populations' Gaussian fits (the fit's baseline)
and for the identity (no map: the populations as they are). The noise floor is the energy
distance expected between two samples of one law, of these sizes. The mapped cells are written
to ``mapped.h5ad``, a copy of the monocytes' AnnData with ``obsm["X_mongeflow"]`` added (T(x)
on the first ``--pcs`` components).

``examples/single_cell.png`` and ``examples/single_cell.txt`` are this script's output at its
defaults, on a 2-core AMD EPYC CPU in 32 s (80 steps, the automatic choice). On the 13 and 24
held-out cells the energy distance (in PCA units) is 0.977 for the learnt map, 1.039 for the
linear map and 11.146 for the identity, with a noise floor of 0.845: both maps bring the
monocytes to 1.2 times the floor (the identity: 13 times), and so few held-out cells cannot
tell the two maps apart (the fit calls it a tie). The figure shows where they differ (counted
on PCs 1-2 of this run's mapped cells): the dendritic cells form two groups, 20 % of them
beside the monocytes and the rest apart. The learnt map keeps 12 % of the monocytes in the
first group and moves the others into the second, with none in the empty band between the two
(|PC 2| < 1.5, 3 % of the dendritic cells), where the linear map puts 28 % of them; it also
sends 10 cells beyond the dendritic cells' range on PCs 1-2, the learnt map one (a monocyte at
the population's edge, taken to PC 1 = -20.7).
"""

import argparse
import importlib.util
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

import mongeflow as mf
from mongeflow.io import read_points
from mongeflow.maps import transport

FILE = "10x_pbmc68k_reduced.h5ad"
LABELS = "bulk_labels"


def pbmc68k_reduced() -> Path:
    """The path of scanpy's bundled ``10x_pbmc68k_reduced.h5ad``, found without importing
    scanpy (its import is slow): ``find_spec`` locates the package without running it."""
    spec = importlib.util.find_spec("scanpy")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(
            f"this example reads {FILE}, shipped with scanpy, which is not installed: "
            "pip install 'mongeflow[singlecell]'"
        )
    for folder in spec.submodule_search_locations:
        path = Path(folder) / "datasets" / FILE
        if path.is_file():
            return path
    raise SystemExit(f"scanpy is installed, but without its datasets/{FILE}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/single_cell"), help="output folder")
    parser.add_argument(
        "--steps", type=int, default=None, help="training steps (default: the automatic choice)"
    )
    parser.add_argument("--pcs", type=int, default=10, help="principal components (default 10)")
    parser.add_argument("--source", default="CD14+ Monocyte", help="the cell type mapped")
    parser.add_argument("--target", default="Dendritic", help="the cell type mapped onto")
    args = parser.parse_args(argv)

    path = pbmc68k_reduced()
    spec = f"{path}:obsm/X_pca"
    with warnings.catch_warnings():
        # anndata moves the file's old-style neighbour graph (uns → obsp) as it reads it
        warnings.filterwarnings("ignore", category=FutureWarning, module="anndata")
        cells = read_points(spec)  # all 700 cells, and the AnnData beside them
        counts = cells.adata.obs[LABELS].value_counts()
        if not 2 <= args.pcs <= cells.values.shape[1]:
            parser.error(f"--pcs must be in [2, {cells.values.shape[1]}], got {args.pcs}")
        try:
            source = read_points(spec, "source", where=f'{LABELS} == "{args.source}"')
            y = mf.load_array(spec, "target", where=f'{LABELS} == "{args.target}"')
        except mf.InputError as err:
            parser.error(str(err))
    print(f"{FILE}: {len(cells.values)} cells; {LABELS}:")
    for label, n in counts.items():
        mark = (
            " <- source" if label == args.source else " <- target" if label == args.target else ""
        )
        print(f"  {n:5d}  {label}{mark}")
    x, y = source.values[:, : args.pcs], y[:, : args.pcs]

    problem = mf.data_problem(x, target=mf.EmpiricalTarget(y), name="pbmc68k")
    result = mf.fit(problem, steps=args.steps, callbacks=[mf.Progress()])
    args.out.mkdir(parents=True, exist_ok=True)
    mf.save(result.map(), args.out / "map")

    # the held-out cells of both sides, in the fit's (standardised) coordinates: the final
    # metrics' energy distances are there; the identity map's, x itself against y, beside them
    z_held, w_held = problem.validation, problem.validation_target
    s = float(np.asarray(problem.scale))
    identity = (problem.shift - problem.target_shift) / s + z_held
    m = result.metrics
    figures = {
        "mongeflow": float(m["energy_distance"][result.best]),
        "linear map": float(m["linear_energy_distance"][result.best]),
        "identity": float(mf.energy_distance(identity, w_held)),
    }
    floor = float(m["energy_distance_floor"][result.best])
    print(
        f"{args.source} ({len(x)} cells) -> {args.target} ({len(y)}), first {args.pcs} PCs; "
        f"held out: {len(z_held)} and {len(w_held)} cells"
    )
    print(f"{'map':<12} {'energy distance':>16} {'/ noise floor':>14}")
    for name, value in figures.items():
        print(f"{name:<12} {value * s:>16.3f} {value / floor:>14.1f}")
    print(f"{'noise floor':<12} {floor * s:>16.3f}   (two samples of one law, of these sizes)")
    if result.comparison is not None:
        c, i = result.comparison, result.best
        print(
            f"the fit's verdict against the linear map on the held-out cells: {c['verdict'][i]} "
            f"(a difference within the noise floor is a tie)"
            + ("; the linear map is kept" if result.linear_kept[i] else "")
        )

    T = result.map()
    mapped = np.asarray(T.transport(x))
    linear = np.asarray(problem.target_shift) + s * np.asarray(
        transport(result.linear, (x - np.asarray(problem.shift)) / s)
    )
    fig, axes = plt.subplots(1, 2, figsize=(11, 5), sharex=True, sharey=True)
    pcs = cells.values[:, :2]
    panels = ((axes[0], mapped, "mongeflow"), (axes[1], linear, "linear map"))
    for ax, image, name in panels:
        ax.scatter(*pcs.T, s=4, c="0.85", label=f"all {len(pcs)} cells")
        ax.scatter(*x[:, :2].T, s=10, c="tab:blue", label=f"{args.source} (x)")
        ax.scatter(*y[:, :2].T, s=10, c="tab:orange", label=f"{args.target}")
        ax.scatter(*image[:, :2].T, s=14, marker="x", c="k", lw=0.8, label=f"{name}: T(x)")
        ax.set_xlabel("PC 1")
        ax.set_title(
            f"{name}: held-out energy distance {figures[name] * s:.2f} "
            f"(identity {figures['identity'] * s:.2f}, noise floor {floor * s:.2f})",
            fontsize=9,
        )
        ax.legend(fontsize=7, loc="best")
    axes[0].set_ylabel("PC 2")
    fig.suptitle(
        f"{FILE}: {args.source} → {args.target}, mapped on the first {args.pcs} PCs "
        "(shown: PCs 1 and 2)",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(args.out / "single_cell.png", dpi=120)

    # the source cells' AnnData, with T(x) beside their PCA (as `mongeflow apply --output
    # FILE.h5ad` writes it)
    adata = source.adata[source.rows].copy()
    adata.obsm["X_mongeflow"] = mapped
    adata.write_h5ad(args.out / "mapped.h5ad")
    print(
        f"-> {args.out / 'single_cell.png'}, {args.out / 'mapped.h5ad'} "
        f"(obsm['X_mongeflow']), {args.out / 'map'}"
    )


if __name__ == "__main__":
    main()
