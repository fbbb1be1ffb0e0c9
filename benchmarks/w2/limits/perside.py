"""A jitter of its own size on each side, a prototype (not a setting of the package): the
automatic semi-dual game on the W2 benchmark pair at d = 64 (2^16 rows a side, one way,
``mf.fit``, seed 0), the target's rows jittered by the automatic 0.1 of their spread and
the source's by SIGMA_SOURCE, scored by L2-UVP on 4 096 fresh source samples (the same
scoring as ``kept.py``, whose ``w2-pair:64`` is the default's figure beside it).

    python perside.py SIGMA_SOURCE
"""

import dataclasses
import sys
import time
import warnings

import jax
import numpy as np

import mongeflow as mf
from mongeflow.auto import configure
from mongeflow.metrics import source_with_map
from mongeflow.schemes.semidual import JITTER_STREAM, jittered

warnings.simplefilter("ignore")
SIGMA_SOURCE = float(sys.argv[1])


class PerSide(mf.SemiDual):
    """The semi-dual scheme with the source's rows jittered by ``SIGMA_SOURCE``."""

    def jittered_rows(self, x, y, key):
        kx, ky = jax.random.split(jax.random.fold_in(key, JITTER_STREAM))
        return jittered(x, SIGMA_SOURCE, kx), jittered(y, self.jitter, ky)


problem = mf.get_problem("w2-pair", dim=64)
auto = configure(problem).scheme
scheme = PerSide(**{f.name: getattr(auto, f.name) for f in dataclasses.fields(auto)})
print(scheme, flush=True)
t = time.perf_counter()
res = mf.fit(problem, scheme, seed=0)
wall = time.perf_counter() - t
x, true = source_with_map(problem, jax.random.key(7), 4096)
tx, true = np.asarray(res.transport(x)), np.asarray(true)
uvp = 100 * np.mean(np.sum((tx - true) ** 2, 1)) / np.sum(np.var(true, 0))
print(f"source sigma {SIGMA_SOURCE}: L2-UVP {uvp:.3f} % wall {wall:.0f} s kept {res.best_step}")
