import sys, time, warnings
warnings.simplefilter("ignore")
import jax, numpy as np, mongeflow as mf
from mongeflow.metrics import source_with_map, target_samples
d = int(sys.argv[1]); steps = int(sys.argv[2])
p = mf.get_problem("w2-pair", dim=d)
x, true = source_with_map(p, jax.random.key(7), 4096)
y = np.asarray(target_samples(p, jax.random.key(8), 4096))
for k in sys.argv[3:]:
    t = time.perf_counter()
    res = mf.fit(p, mf.SemiDual(map_steps=int(k), decay_steps=steps), steps=steps, fallback=False, final_eval_size=0)
    tx = np.asarray(res.transport(x)); tr = np.asarray(true)
    uvp = 100 * np.mean(np.sum((tx - tr) ** 2, 1)) / np.sum(np.var(y, 0))
    ratio = np.sum(np.var(tx, 0)) / np.sum(np.var(y, 0))
    h = res.history; 
    print(f"d={d} map_steps {k} steps {steps}: L2-UVP {uvp:.2f} % trace ratio {ratio:.3f} wall {time.perf_counter()-t:.0f} s; history l2_uvp {np.round(np.asarray(h['l2_uvp'])[::4,0],2).tolist() if 'l2_uvp' in h else None}", flush=True)
