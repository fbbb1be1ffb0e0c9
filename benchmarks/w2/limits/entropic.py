"""Whether the data alone give the semi-dual game a start nearer T* than its own map: the
entropic map (Sinkhorn's barycentric projection, OTT-JAX) between n rows drawn from each
side of the W2 benchmark pair's training rows (in their own coordinates), scored by its
L2-UVP on 4 096 fresh source samples. Each argument is one fit, a JSON object: ``d``,
``n``, ``eps`` (the entropic regularisation, in the squared distance's units), optionally
``seed`` (which rows). One JSON line per fit.

    python entropic.py '{"d": 8, "n": 8192, "eps": 0.1}'
"""

import json
import sys
import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np
from ott.geometry import pointcloud
from ott.problems.linear import linear_problem
from ott.solvers.linear import sinkhorn

import mongeflow as mf
from mongeflow.metrics import source_with_map

warnings.simplefilter("ignore")


def run(d, n, eps, seed=0):
    p = mf.get_problem("w2-pair", dim=d)
    x, true = source_with_map(p, jax.random.key(7), 4096)
    true = np.asarray(true)
    xs, ys = np.asarray(p.source.data), np.asarray(p.target.data)
    rng = np.random.default_rng(seed)
    xs = xs[rng.choice(len(xs), n, replace=False)]
    ys = ys[rng.choice(len(ys), n, replace=False)]
    t0 = time.perf_counter()
    geom = pointcloud.PointCloud(
        jnp.asarray(xs), jnp.asarray(ys), epsilon=eps, batch_size=4096 if n > 8192 else None
    )
    out = sinkhorn.Sinkhorn(max_iterations=5000, threshold=1e-4)(linear_problem.LinearProblem(geom))
    potentials = out.to_dual_potentials()
    mapped = [potentials.transport(jnp.asarray(x[i : i + 512])) for i in range(0, len(x), 512)]
    t = np.concatenate([np.asarray(m) for m in mapped])
    uvp = 100 * np.mean(np.sum((t - true) ** 2, 1)) / np.sum(np.var(true, 0))
    return dict(
        d=d,
        n=n,
        eps=eps,
        uvp=round(float(uvp), 4),
        converged=bool(out.converged),
        iterations=int(out.n_iters),
        wall=round(time.perf_counter() - t0),
    )


if __name__ == "__main__":
    for a in sys.argv[1:]:
        print(json.dumps(run(**json.loads(a))), flush=True)
