"""Write dense-pair's training rows (x, y) and its held-out source rows with T* at them.

Usage: python prep.py D PROBLEM_SEED DIR [N]   (N: rows a side before 10 % are held out,
default 10 000)
"""

import sys
from pathlib import Path

import jax
import numpy as np

from mongeflow.problems import get_problem

d, seed, out = int(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3])
n = int(sys.argv[4]) if len(sys.argv) > 4 else 10000
p = get_problem("dense-pair", dim=d, n=n, seed=seed, validation=0.1)
np.save(out / "x.npy", np.asarray(p.source.data))
np.save(out / "y.npy", np.asarray(p.target.data))
np.save(out / "held_x.npy", np.asarray(p.validation))
np.save(out / "held_true.npy", np.asarray(jax.vmap(p.true_map)(p.validation)))
