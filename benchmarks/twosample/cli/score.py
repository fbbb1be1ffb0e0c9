"""L2-UVP = 100 E|T(x) - T*(x)|^2 / Var(y) of mapped held-out rows (Korotin et al. 2021).

Usage: python score.py DIR (with y.npy, held_true.npy and mapped.npy in DIR)
"""

import sys
from pathlib import Path

import numpy as np

run = Path(sys.argv[1])
y, true, mapped = (np.load(run / f) for f in ("y.npy", "held_true.npy", "mapped.npy"))
l2 = np.mean(np.sum((mapped - true) ** 2, axis=1))
print(f"L2-UVP {100 * l2 / np.sum(np.var(y, axis=0)):.2f} %")
