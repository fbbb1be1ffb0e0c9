"""Worked example on real data: the iris petals (scikit-learn's bundled dataset) mapped to N(0, I).

    pip install -e ".[examples]"
    python examples/iris.py            # writes examples/iris.csv, runs/iris/, examples/iris.png

The same with the command line:

    mongeflow fit --source examples/iris.csv --standardize --scheme adam --steps 1000 \\
        --batch-size 150 --out runs/iris
    mongeflow sample runs/iris -n 1000 --output runs/iris/samples.csv
"""

from pathlib import Path

import jax
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_iris

import mongeflow as mf

here = Path(__file__).parent
iris = load_iris()
x = iris.data[:, 2:4]  # petal length and width (cm): three clusters, one well apart
np.savetxt(here / "iris.csv", x, delimiter=",", header="petal_length,petal_width", comments="")

data = mf.load_array(here / "iris.csv")
problem = mf.data_problem(data, target="gaussian", standardize=True)
result = mf.fit(
    problem,
    mf.Adam(learning_rate=0.02, decay_steps=1000),
    steps=1000,
    batch_size=150,
    seed=0,
    callbacks=[mf.Progress()],
)
mf.save(result.map(), "runs/iris")
print(result.summary())

m = mf.load("runs/iris")
y = np.asarray(m.transport(data))
gamma = m.target.sample(jax.random.key(1), 1000)
samples = np.asarray(m.inverse(gamma))  # = m.sample(jax.random.key(1), 1000)
residual = np.linalg.norm(np.asarray(m.transport(samples)) - np.asarray(gamma), axis=1)
print(f"inverse residual: max {residual.max():.1e}")

fig, ax = plt.subplots(1, 3, figsize=(12, 3.8))
ax[0].scatter(*data.T, c=iris.target, s=12, cmap="viridis")
ax[0].set(title="iris petals (cm)", xlabel="length", ylabel="width")
ax[1].scatter(*np.random.default_rng(0).normal(size=(1000, 2)).T, s=3, c="lightgray", label="γ")
ax[1].scatter(*y.T, c=iris.target, s=12, cmap="viridis", label="T(x)")
ax[1].set(title="T(x) against γ = N(0, I)")
ax[1].set_aspect("equal")
ax[2].scatter(*samples.T, s=3, c="tab:orange", label="T⁻¹(γ samples)")
ax[2].scatter(*data.T, s=8, c="k", label="data")
ax[2].set(title="samples of the learnt source model", xlabel="length", ylabel="width")
ax[2].legend(fontsize=7)
fig.tight_layout()
fig.savefig(here / "iris.png", dpi=110)
