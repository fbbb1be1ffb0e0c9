"""Write a W2 benchmark pair as a user would hold it: 2^16 (or ROWS) unpaired training rows
per side (x ~ μ, y = T*(x') for independent x'), and 4 096 fresh source rows with T* at them.

Usage: python prep.py D DIR [ROWS]
"""

import sys
from pathlib import Path

import jax
import numpy as np

from mongeflow.problems.w2 import push, w2_benchmark

d, out = int(sys.argv[1]), Path(sys.argv[2])
rows = int(sys.argv[3]) if len(sys.argv) > 3 else 2**16
mu, true_map = w2_benchmark(d)
kx, ky, kh = jax.random.split(jax.random.key(0), 3)
held = mu.sample(kh, 4096)
np.save(out / "x.npy", np.asarray(mu.sample(kx, rows)))
np.save(out / "y.npy", np.asarray(push(true_map, mu.sample(ky, rows))))
np.save(out / "held_x.npy", np.asarray(held))
np.save(out / "held_true.npy", np.asarray(push(true_map, held)))
