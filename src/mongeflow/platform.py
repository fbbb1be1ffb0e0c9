"""Workarounds for the platforms JAX runs on, in one place.

XLA's CPU runtime (jaxlib 0.10) with its default "concurrency-optimised" schedule may run
two independent batched LAPACK calls (the LU of a batch of Hessians, a Cholesky, an
eigendecomposition) at the same time; each splits its batch over the CPU thread pool and
waits for its pieces, and on a 2-core machine they can wait on each other for ever.
:func:`prefer_sequential_cpu_schedule` asks for the memory-oriented schedule, which orders
them; :func:`after` adds a data dependency where an order matters even under another
schedule. Nothing else in the library needs to know about it.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import jax

SCHEDULER_FLAG = "xla_cpu_enable_concurrency_optimized_scheduler"


def prefer_sequential_cpu_schedule() -> None:
    """Add ``--xla_cpu_enable_concurrency_optimized_scheduler=false`` to ``XLA_FLAGS``.

    Takes effect if JAX has not created its CPU client yet; a value of that flag already in
    ``XLA_FLAGS`` is kept.
    """
    flags = os.environ.get("XLA_FLAGS", "")
    if SCHEDULER_FLAG not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} --{SCHEDULER_FLAG}=false".strip()


def after(a: jax.Array, b: jax.Array) -> jax.Array:
    """``a``, made to depend on ``b`` so that XLA computes ``b`` first.

    An optimisation barrier does not survive to the CPU runtime's scheduler; a data
    dependency does. The added term is ``min(|Σb|, 0) = 0`` (NaN when ``b`` is not finite,
    which the driver's finiteness guard reports anyway).
    """
    import jax.numpy as jnp  # here: importing this module (and mongeflow) stays light

    return a + jnp.minimum(jnp.abs(jnp.sum(b)), 0.0).astype(a.dtype)
