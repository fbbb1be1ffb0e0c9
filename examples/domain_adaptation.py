r"""Worked example: domain adaptation on the breast-cancer data with mongeflow.MongeTransport.

    pip install -e ".[examples]"
    python examples/domain_adaptation.py              # writes runs/domain_adaptation/
    python examples/domain_adaptation.py --out DIR --steps 20

The Wisconsin breast-cancer data (scikit-learn's bundled copy: 569 tumours, 30 features of
their cell nuclei, benign or malignant) are split at random into two halves. One half is
the *target domain*: a classifier (standardisation, then logistic regression) is trained on
its features and its labels. The other half becomes the *source domain*: the same kind of
tumours, measured differently (another instrument, another protocol), which this example
imitates by a random smooth distortion of the features (see :func:`distort`); its labels
are used only to score. The classifier is scored on the source domain

- as it comes (the distorted measurements);
- carried into the target domain by the linear (Bures) map: the optimal-transport map
  between the Gaussians with the two domains' means and covariances, x ↦ m1 + A (x − m0);
- carried into the target domain by the Monge map of ``MongeTransport`` fitted on (source
  measurements, target measurements): a Brenier map T = ∇φ, φ convex, that pushes the
  source rows onto the target rows; no labels are used;

and, for reference, on the source rows before the distortion (the classifier's accuracy
without a domain shift). Each adaptation is a ``Pipeline([("adapt", ...), ("classify",
classifier)])``. The features are in very different units (areas in the hundreds,
smoothness near 0.1), so both maps are fitted with one scale per feature
(``per_feature=True``): they are optimal for the cost Σ_j (x_j − y_j)²/s_j².

Writes ``accuracy.csv`` and ``domain_adaptation.png`` (the first two principal components
of the standardised target domain, first split) into --out. At its defaults (three splits,
the library's automatic two-sample fit: 80 explicit steps on the drift) it takes about three
minutes on a 2-core AMD EPYC CPU, and measured (``examples/domain_adaptation.png`` and
``examples/domain_adaptation.csv`` are its output):

    scored on                                 mean  seed 0  seed 1  seed 2
    source before the distortion             0.974   0.968   0.979   0.975
    source as it comes (distorted)           0.804   0.944   0.512   0.954
    source mapped by the linear (Bures) map  0.970   0.975   0.954   0.979
    source mapped by the MongeTransport map  0.968   0.968   0.968   0.968

Both maps undo the shift: the classifier is back at its accuracy without one. The Monge map
matches the target domain more closely on held-out rows (energy distance 0.63, 0.50, 0.33
against the linear map's 0.79, 0.45, 0.51), but with about 256 training rows per domain in 30
dimensions that is within the noise of the comparison, and this classifier, linear in the
standardised features, gains nothing from it.
"""

import argparse
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from sklearn.base import BaseEstimator, OneToOneFeatureMixin, TransformerMixin
from sklearn.datasets import load_breast_cancer
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

import mongeflow as mf
from mongeflow.problems.gaussian import bures_map


def distort(x, rng, bend=0.5, shift=1.5):
    """The source domain's measurements: x' = μ + σ ⊙ (A g(A z) + b), z = (x − μ)/σ.

    μ, σ: each feature's mean and standard deviation over all rows; A: a random symmetric
    positive definite matrix (random eigenvectors, eigenvalues log-uniform in [1/√2, √2],
    so the linear part A² stretches by 1/2 to 2); g(u) = u + bend · u|u|/2 coordinate-wise
    (increasing: a bend of the tails); b: a random shift, N(0, shift²) per feature (in σ
    units).

    z ↦ A g(A z) + b is the gradient of the convex Σ_j G((A z)_j) + bᵀz (G' = g): in the
    σ-scaled units it is itself a Brenier map, which the Monge map between the two domains
    can undo and, with bend > 0, no linear map can.
    """
    mu, sigma = x.mean(0), x.std(0)
    z = (x - mu) / sigma
    d = x.shape[1]
    q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    a = (q * np.exp(rng.uniform(-0.5, 0.5, d) * np.log(2.0))) @ q.T
    u = z @ a
    moved = (u + bend * u * np.abs(u) / 2) @ a + shift * rng.normal(size=d)
    return mu + sigma * moved


class LinearTransport(OneToOneFeatureMixin, TransformerMixin, BaseEstimator):
    """The linear (Bures) map fitted on (source X, target samples y), in the coordinates
    of ``MongeTransport(per_feature=True)``: z = (x − m0)/s, w = (y − m1)/s with
    s_j² = ½ (var_j(X) + var_j(y)); T(x) = m1 + s ⊙ A z, A = Σ0^{-1/2} (Σ0^{1/2} Σ1
    Σ0^{1/2})^{1/2} Σ0^{-1/2} from the covariances Σ0 of z and Σ1 of w (mongeflow's
    ``bures_map``). It is what ``MongeTransport`` compares its map with, and keeps instead
    when it does better on held-out rows (``fallback``)."""

    def fit(self, X, y):
        X, y = np.asarray(X, float), np.asarray(y, float)
        self.n_features_in_ = X.shape[1]
        self.mean_, self.target_mean_ = X.mean(0), y.mean(0)
        self.scale_ = np.sqrt(0.5 * (X.var(0) + y.var(0)))
        z, w = (X - self.mean_) / self.scale_, (y - self.target_mean_) / self.scale_
        self.linear_ = bures_map(np.cov(z.T, bias=True), np.cov(w.T, bias=True))
        return self

    def transform(self, X):
        z = (np.asarray(X, float) - self.mean_) / self.scale_
        return self.target_mean_ + self.scale_ * (z @ self.linear_)  # A is symmetric


#: the rows of the table: what the classifier is scored on
ROWS = (
    "source before the distortion",
    "source as it comes (distorted)",
    "source mapped by the linear (Bures) map",
    "source mapped by the MongeTransport map",
)


def one_split(seed: int, args) -> dict:
    """Split, distort, train the classifier and the two maps, score; for seed ``seed``."""
    data = load_breast_cancer()
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(data.target))
    tgt, src = order[: len(order) // 2], order[len(order) // 2 :]
    x_target, y_target = data.data[tgt], data.target[tgt]
    x_clean, y_source = data.data[src], data.target[src]
    x_source = distort(x_clean, rng, args.bend, args.shift)

    classifier = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000))
    classifier.fit(x_target, y_target)
    monge = mf.MongeTransport(per_feature=True, max_steps=args.steps, seed=seed)
    scores = [classifier.score(x_clean, y_source), classifier.score(x_source, y_source)]
    mapped = [x_source]
    for adapt in (LinearTransport(), monge):
        with warnings.catch_warnings():
            # MongeTransport warns when its map does not beat the linear map on held-out
            # rows; the comparison is printed below instead
            warnings.simplefilter("ignore", mf.FitWarning)
            adapt.fit(x_source, x_target)  # no labels: the two domains' features
        model = Pipeline([("adapt", adapt), ("classify", classifier)])
        scores.append(model.score(x_source, y_source))
        mapped.append(adapt.transform(x_source))
    result = monge.result_
    i = result.best
    held_out = result.comparison  # the map against the linear map, on held-out rows
    note = (
        f"seed {seed}: MongeTransport ran {result.last_step} steps in {result.wall_time_s:.0f} s;"
        f" held-out energy distance {held_out['map'][i]:.3g} against the linear map's "
        f"{held_out['linear'][i]:.3g} ({held_out['verdict'][i]}, noise "
        f"{held_out['noise'][i]:.2g}); linear map kept: {bool(result.linear_kept[i])}"
    )
    return {
        "scores": scores,
        "note": note,
        "figure": (classifier[0], x_target, y_target, y_source, mapped),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("runs/domain_adaptation"),
        help="output folder (default runs/domain_adaptation)",
    )
    parser.add_argument(
        "--steps",
        type=int,
        default=None,
        help="the Monge map's max_steps (default: the library's choice, 80 explicit steps)",
    )
    parser.add_argument(
        "--repeats", type=int, default=3, help="random splits and distortions (default 3)"
    )
    parser.add_argument("--seed", type=int, default=0, help="the first split's seed (default 0)")
    parser.add_argument(
        "--shift", type=float, default=1.5, help="the distortion's shift (default 1.5)"
    )
    parser.add_argument(
        "--bend", type=float, default=0.5, help="the distortion's bend (0: affine; default 0.5)"
    )
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)

    runs = [one_split(args.seed + k, args) for k in range(args.repeats)]
    scores = np.array([run["scores"] for run in runs])  # [repeats, len(ROWS)]
    seeds = [args.seed + k for k in range(args.repeats)]
    width = max(map(len, ROWS))
    print(f"accuracy of a classifier trained on the target domain ({args.repeats} splits)")
    print(f"{'scored on':<{width}}  {'mean':>5}  " + "  ".join(f"seed {s}" for s in seeds))
    for name, column in zip(ROWS, scores.T, strict=True):
        print(f"{name:<{width}}  {column.mean():5.3f}  " + "  ".join(f"{a:6.3f}" for a in column))
    for run in runs:
        print(run["note"])
    with open(args.out / "accuracy.csv", "w", encoding="utf-8") as f:
        f.write("seed," + ",".join(ROWS) + "\n")
        for seed, row in zip(seeds, scores, strict=True):
            f.write(f"{seed}," + ",".join(f"{a:.4f}" for a in row) + "\n")

    # the first split, in the first two principal components of the standardised target
    scaler, x_target, y_target, y_source, mapped = runs[0]["figure"]
    pca = PCA(2).fit(scaler.transform(x_target))
    show = lambda x: pca.transform(scaler.transform(x))
    titles = ("source as it comes", "mapped by the linear map", "mapped by MongeTransport")
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.2), sharex=True, sharey=True)
    target_2d = show(x_target)
    for ax, title, x, acc in zip(axes, titles, mapped, scores[0, 1:], strict=True):
        ax.scatter(*target_2d.T, c=y_target, cmap="coolwarm", s=16, alpha=0.3)
        ax.scatter(*show(x).T, c=y_source, cmap="coolwarm", s=20, marker="x")
        ax.set(title=f"{title}: accuracy {acc:.3f}", xlabel="PC 1 of the target domain")
    axes[0].set_ylabel("PC 2")
    marks = [plt.Line2D([], [], ls="", marker=m, color="gray") for m in ("o", "x")]
    axes[0].legend(marks, ["target domain", "source domain"], fontsize=8, loc="upper left")
    fig.suptitle(
        f"seed {seeds[0]}: the source rows (x) against the target rows (o); blue: malignant, "
        "red: benign",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(args.out / "domain_adaptation.png", dpi=110)
    print(f"wrote {args.out / 'accuracy.csv'}, {args.out / 'domain_adaptation.png'}")


if __name__ == "__main__":
    main()
