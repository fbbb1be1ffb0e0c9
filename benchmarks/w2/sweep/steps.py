import sys, time, warnings
warnings.simplefilter("ignore")
import jax, numpy as np, mongeflow as mf
from mongeflow.metrics import source_with_map, target_samples
d = int(sys.argv[1])
variants = {
    "12k": dict(steps=12000),
    "24k": dict(steps=24000),
    "12k decay24k": dict(steps=12000, scheme=mf.SemiDual(decay_steps=24000)),
}
p = mf.get_problem("w2-pair", dim=d)
x, true = source_with_map(p, jax.random.key(7), 4096)
y = np.asarray(target_samples(p, jax.random.key(8), 4096))
for name in sys.argv[2:]:
    kw = dict(variants[name]); scheme = kw.pop("scheme", "semidual")
    t = time.perf_counter()
    res = mf.fit(p, scheme, fallback=False, final_eval_size=0, **kw)
    tx = np.asarray(res.transport(x)); tr = np.asarray(true)
    uvp = 100 * np.mean(np.sum((tx - tr) ** 2, 1)) / np.sum(np.var(y, 0))
    ratio = np.sum(np.var(tx, 0)) / np.sum(np.var(y, 0))
    print(f"d={d} {name}: L2-UVP {uvp:.2f} % trace ratio {ratio:.3f} best step {int(res.best_step[0])} wall {time.perf_counter()-t:.0f} s", flush=True)
