"""Which default for targets known by samples: Adam on the energy distance (with and
without early stopping, batch 256 or 1024) against the drift field with the explicit
scheme, on ``dense-pair``; L2-UVP (%) on the held-out rows. Output: dense_pair.txt."""

import time, sys, warnings, jax, numpy as np, mongeflow as mf

warnings.simplefilter("ignore")


def l2uvp(p, res):
    T = res.map()
    x = p.validation
    tx = np.asarray(T.transport(x))
    tr = np.asarray(jax.vmap(p.true_map)(x))
    return 100 * np.mean(np.sum((tx - tr) ** 2, 1)) / np.asarray(p.target.data).var(0).sum()


for d in [int(a) for a in sys.argv[1:]]:
    p = mf.get_problem("dense-pair", dim=d)
    for name, kw in [
        ("energy adam", dict(divergence="energy")),
        ("energy adam patience=None", dict(divergence="energy", patience=None)),
        ("energy adam batch1024", dict(divergence="energy", batch_size=1024)),
        (
            "energy adam batch1024 patience=None",
            dict(divergence="energy", batch_size=1024, patience=None),
        ),
        ("drift explicit", dict(divergence="drift")),
        ("drift explicit batch1024", dict(divergence="drift", batch_size=1024)),
    ]:
        t = time.time()
        r = mf.fit(p, final_eval_size=0, **kw)
        print(
            d,
            name,
            "%.2f%%" % l2uvp(p, r),
            "%.0fs" % (time.time() - t),
            "last",
            r.last_step,
            flush=True,
        )
