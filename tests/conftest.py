import os
from pathlib import Path

# The suite is mostly compilation (hundreds of small programs, each run a few times): XLA's
# CPU backend without its expensive LLVM passes compiles them faster. On the suite's
# schemes, maps, divergences and fit tests (2 cores, a cold cache) it took 166 s against
# 196 s, every test passing. Set before JAX starts its backend; flags already given win.
if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "")
        + " --xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
    ).strip()

import jax  # noqa: E402
import numpy as np
import pytest

jax.config.update("jax_numpy_rank_promotion", "raise")

# Both test workers compile many of the same programs (a fit of a 2-D problem with the
# default settings, say): a compilation cache on disk, shared by the workers, lets the
# second one load what the first compiled. Entries are keyed by the program and the JAX/XLA
# versions, so a stale entry is never used.
if not jax.config.jax_compilation_cache_dir:
    jax.config.update(
        "jax_compilation_cache_dir", str(Path(__file__).parents[1] / ".pytest_cache" / "jax")
    )
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


@pytest.fixture
def key():
    return jax.random.key(0)


def exact_moment_sample(mean, cov, n, seed=0):
    """n points whose empirical mean and covariance (1/n) are exactly ``mean`` and ``cov``.

    For affine maps and quadratic V, the log-det loss, its gradient and the Gram matrix
    depend only on these two moments, so this sample makes them exact.
    """
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, len(mean)))
    z -= z.mean(0)
    w, Q = np.linalg.eigh(z.T @ z / n)
    z = z @ Q @ np.diag(w**-0.5) @ Q.T
    w, Q = np.linalg.eigh(np.asarray(cov))
    return np.asarray(mean) + z @ (Q * np.sqrt(w)) @ Q.T
