import sys, time, json, warnings
warnings.simplefilter("ignore")
import jax, numpy as np, mongeflow as mf
from mongeflow.metrics import source_with_map, target_samples
d = int(sys.argv[1])
pair = mf.get_problem("w2-pair", dim=d)
x, true = source_with_map(pair, jax.random.key(7), 4096)
y = np.asarray(target_samples(pair, jax.random.key(8), 4096))
for spec in sys.argv[2:]:
    kw = json.loads(spec)
    steps = kw.pop("steps", 12000); batch = kw.pop("batch", None); seed = kw.pop("seed", 0)
    pot = None
    if kw.pop("softplus", False):
        from mongeflow.maps.icnn import ICNN
        pot = lambda key: ICNN(d, key, widths=(max(64, 2 * d),) * 2, quadratic_rank=min(d, 64), identity_init=True, nonnegativity="softplus")
    t = time.perf_counter()
    res = mf.fit(pair, mf.SemiDual(decay_steps=steps, **kw), potential=pot, steps=steps, batch_size=batch, seed=seed, fallback=False, final_eval_size=0)
    tx = np.asarray(res.transport(x)); tr = np.asarray(true)
    uvp = 100 * np.mean(np.sum((tx - tr) ** 2, 1)) / np.sum(np.var(y, 0))
    ratio = np.sum(np.var(tx, 0)) / np.sum(np.var(y, 0))
    print(f"d={d} {spec}: L2-UVP {uvp:.2f} % trace ratio {ratio:.3f} batch {res.batch_size} wall {time.perf_counter()-t:.0f} s", flush=True)
