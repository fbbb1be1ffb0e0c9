import sys, time, warnings
warnings.simplefilter("ignore")
import jax, numpy as np, mongeflow as mf
from mongeflow.metrics import source_with_map, target_samples
from mongeflow.maps.icnn import ICNN
d = int(sys.argv[1]); steps = int(sys.argv[2])
pair = mf.get_problem("w2-pair", dim=d)
x, true = source_with_map(pair, jax.random.key(7), 4096)
y = np.asarray(target_samples(pair, jax.random.key(8), 4096))
def score(res, name, t):
    tx = np.asarray(res.transport(x)); tr = np.asarray(true)
    uvp = 100 * np.mean(np.sum((tx - tr) ** 2, 1)) / np.sum(np.var(y, 0))
    ratio = np.sum(np.var(tx, 0)) / np.sum(np.var(y, 0))
    print(f"d={d} {name} steps {steps}: L2-UVP {uvp:.2f} % trace ratio {ratio:.3f} wall {time.perf_counter()-t:.0f} s", flush=True)
for which in sys.argv[3:]:
    t = time.perf_counter()
    if which == "fresh":
        p = mf.get_problem("w2-mix3to10", dim=d)
        res = mf.fit(p, "semidual", steps=steps, fallback=False, final_eval_size=0)
    elif which == "softplus":
        pot = lambda key: ICNN(d, key, widths=(64, 64), quadratic_rank=min(d, 64), identity_init=True, nonnegativity="softplus")
        res = mf.fit(pair, "semidual", potential=pot, steps=steps, fallback=False, final_eval_size=0)
    score(res, which, t)
