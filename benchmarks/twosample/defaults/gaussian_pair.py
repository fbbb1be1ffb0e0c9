"""Adam on the energy distance against the drift field with the explicit scheme on
``gaussian-pair`` (the linear map is exact there); L2-UVP (%) on the held-out rows.
Output: gaussian_pair.txt."""

import time, sys, warnings, jax, numpy as np, mongeflow as mf

warnings.simplefilter("ignore")
from mongeflow.problems.gaussian import bures_map


def l2uvp(p, tx):
    tr = np.asarray(jax.vmap(p.true_map)(p.validation))
    return (
        100
        * np.mean(np.sum((np.asarray(tx) - tr) ** 2, 1))
        / np.asarray(p.target.data).var(0).sum()
    )


for d in [8, 16]:
    p = mf.get_problem("gaussian-pair", dim=d)
    x = np.asarray(p.source.data, np.float64)
    y = np.asarray(p.target.data, np.float64)
    A = bures_map(np.cov(x.T), np.cov(y.T))
    lin = (np.asarray(p.validation) - x.mean(0)) @ A.T + y.mean(0)
    print(d, "linear %.2f%%" % l2uvp(p, lin), flush=True)
    for name, kw in [
        ("energy adam", dict(divergence="energy")),
        ("drift explicit", dict(divergence="drift")),
    ]:
        t = time.time()
        r = mf.fit(p, final_eval_size=0, **kw)
        print(
            d,
            name,
            "%.2f%%" % l2uvp(p, r.map().transport(p.validation)),
            "%.0fs" % (time.time() - t),
            "last",
            r.last_step,
            flush=True,
        )
