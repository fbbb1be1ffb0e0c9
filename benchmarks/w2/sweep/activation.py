"""The semi-dual game (both ways, batch 256, rate 0.01 decaying over the run) with variants
of the network, scored on 4 096 fresh source rows against T* (L2-UVP) and the pushforward's
trace ratio. Usage: [PROB=dense-pair] python activation.py D SPEC ...; SPEC is JSON with
steps, batch, seed, widths and "arch" (the keyword arguments of activation_net.QICNN: act
softplus | celu | beta | mix, quad_units); without "arch" the package's ICNN with softplus units."""
import os, sys, time, json, warnings
warnings.simplefilter("ignore")
import jax, numpy as np, mongeflow as mf
from mongeflow.metrics import source_with_map, target_samples
from mongeflow.maps.icnn import ICNN
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__))); from activation_net import QICNN
d = int(sys.argv[1])
import os; pair = mf.get_problem(os.environ.get("PROB", "w2-pair"), dim=d)
x, true = source_with_map(pair, jax.random.key(7), 4096)
y = np.asarray(target_samples(pair, jax.random.key(8), 4096))
for spec in sys.argv[2:]:
    kw = json.loads(spec)
    steps = kw.pop("steps", 12000); batch = kw.pop("batch", 256); seed = kw.pop("seed", 0)
    widths = tuple(kw.pop("widths", (max(64, 2 * d),) * 2))
    kw.setdefault("bidirectional", True)
    arch = kw.pop("arch", None)
    if arch:
        pot = lambda key, a=arch: QICNN(d, key, widths=widths, **a)
    else:
        pot = lambda key: ICNN(d, key, widths=widths, quadratic_rank=min(d, 64), identity_init=True)
    t = time.perf_counter()
    res = mf.fit(pair, mf.SemiDual(decay_steps=steps, **kw), potential=pot, steps=steps, batch_size=batch, seed=seed, fallback=False, final_eval_size=0)
    tx = np.asarray(res.transport(x)); tr = np.asarray(true)
    uvp = 100 * np.mean(np.sum((tx - tr) ** 2, 1)) / np.sum(np.var(y, 0))
    ratio = np.sum(np.var(tx, 0)) / np.sum(np.var(y, 0))
    print(f"d={d} {spec}: L2-UVP {uvp:.3f} % trace ratio {ratio:.3f} wall {time.perf_counter()-t:.0f} s", flush=True)
