"""A mini-batch as a value, and the sampler that draws it.

A training step receives its data as an argument, a :class:`Batch`, drawn by a
:class:`Sampler` that the training loop owns; inner solvers that need fresh batches get the
same sampler. Nothing in a scheme or a divergence reaches into the dataset, so the loop can
place every batch on a device mesh (rows split over its ``data`` axis) and XLA partitions
the step, kernel sums included, across the devices.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import equinox as eqx
import jax

from mongeflow.problems.base import Problem

Array = jax.Array


class Batch(NamedTuple):
    """Source rows ``x: [n, d]`` and, for divergences that compare point clouds, target rows
    ``y: [m, d]`` (``None`` when the target is not used through samples)."""

    x: Array
    y: Array | None = None


def as_batch(batch: Batch | Array) -> Batch:
    """A :class:`Batch` from a batch or from bare source rows ``[n, d]``."""
    return batch if isinstance(batch, Batch) else Batch(batch, None)


class Sampler(eqx.Module):
    """``key -> Batch``: ``batch_size`` fresh source rows and, with ``target``, as many
    fresh target rows.

    The source rows are ``problem.source.sample(key, n)`` (for a data source, rows drawn
    from its training rows); the target rows come from a key of their own. With
    ``sharding`` (a :class:`jax.sharding.Sharding` of a ``[n, d]`` array, for example
    ``NamedSharding(mesh, PartitionSpec("data"))``), both are constrained to it: inside a
    compiled step, XLA then splits the rows, and the work on them, over the devices. The
    rows drawn do not depend on the sharding, so one device and several give the same
    batches.
    """

    problem: Problem
    batch_size: int = eqx.field(static=True)
    target: bool = eqx.field(static=True, default=False)
    sharding: Any = eqx.field(static=True, default=None)

    def __call__(self, key: Array) -> Batch:
        x = self.problem.source.sample(key, self.batch_size)
        y = None
        if self.target:
            y = self.problem.target.sample(jax.random.fold_in(key, 1), self.batch_size)
        if self.sharding is not None:
            x = jax.lax.with_sharding_constraint(x, self.sharding)
            if y is not None:
                y = jax.lax.with_sharding_constraint(y, self.sharding)
        return Batch(x, y)
